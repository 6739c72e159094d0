"""Fixtures for the fleet tests: a real ``redis-server`` on a free loopback port.

The server runs in a temporary directory with no persistence (``--save '' --appendonly no``)
unless a test asks for an append-only file (to kill it and restart it with its data). Tests skip
with the reason when ``redis-server`` or the ``redis`` package is missing (``make test``
installs the package, ``.ci/run`` also the server).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")
try:
    import redis  # noqa: F401 -- only whether it is installed
except ImportError:
    SKIP_REASON: str | None = "the redis client is not installed (the 'redis' extra)"
else:
    SKIP_REASON = (
        None
        if REDIS_SERVER is not None
        else "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the fleet tests, with the reason, when Redis cannot be started here."""
    if SKIP_REASON is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


_used_ports: set[int] = set()


def free_port() -> int:
    """A free loopback port not used before in this session.

    Each server gets its own port, so the process-wide Redis health and its one warning (kept
    per server address) start fresh for each test that kills its server.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, which a test may kill and start again."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(  # noqa: S603 -- a fixed command line
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10.0
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save (what a crash does)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis shared by the fleet tests (each test uses its own namespace)."""
    with tempfile.TemporaryDirectory(prefix="claude-relay-redis-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, with an append-only file (it survives SIGKILL and restart)."""
    with tempfile.TemporaryDirectory(prefix="claude-relay-redis-") as directory:
        server = RedisServer(Path(directory), appendonly=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def namespace() -> str:
    """A fresh key namespace per test."""
    return "t" + uuid.uuid4().hex[:12]
