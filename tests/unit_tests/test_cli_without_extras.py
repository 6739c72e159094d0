"""``claude-relay`` without the optional extras: the commands that need none work, the others say
which extra to install (one line, exit 2), never a traceback. Before, the parser imported the
emulator, so every command (``--help`` included) died on ``No module named 'uvicorn'``."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Block the extras' packages in a fresh interpreter, as if they were not installed.
_RUN = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None
from langchain_claude_relay.cli import main
sys.exit(main(sys.argv[1:]))
"""
EMULATOR = ("uvicorn", "starlette")


def _cli(*args: str, blocked: tuple[str, ...] = EMULATOR) -> subprocess.CompletedProcess[str]:
    code = _RUN.format(blocked=blocked)
    return subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("args", [("--help",), ("models",), ("emulator", "--help")])
def test_commands_that_need_no_extra_work_without_them(args: tuple[str, ...]) -> None:
    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "blocked", "extra"),
    [
        (("emulator",), EMULATOR, "emulator"),
        (("bench", "--help"), EMULATOR, "emulator"),
        (("demo",), EMULATOR, "demo"),
        (("demo",), ("langchain",), "demo"),
    ],
)
def test_commands_that_need_an_extra_name_it(
    args: tuple[str, ...], blocked: tuple[str, ...], extra: str
) -> None:
    done = _cli(*args, blocked=blocked)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"pip install 'langchain-claude-relay[{extra}]'" in done.stderr


def test_importing_the_emulator_without_its_extra_says_what_to_install() -> None:
    code = "import sys\nsys.modules['uvicorn'] = None\nimport langchain_claude_relay.emulator"
    done = subprocess.run(  # noqa: S603 -- our own interpreter and script
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "needs the emulator extra" in done.stderr
