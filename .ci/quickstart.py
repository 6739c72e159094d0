"""Run the README's "Try it without a key" example as it is written (CI runs it on every Python)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

text = README.read_text(encoding="utf-8")
section = text.split("### Try it without a key", 1)[1]
match = re.search(r"```python\n(.*?)```", section, re.S)
if match is None:
    sys.exit("README has no python block under 'Try it without a key'")
code = match.group(1)
print(f"running the README quickstart on Python {sys.version.split()[0]}:")
exec(compile(code, "README.md (Try it without a key)", "exec"), {"__name__": "__quickstart__"})  # noqa: S102
print("quickstart ok")
