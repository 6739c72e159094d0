"""The emulator's guard (issue 14, row 13): named responses, admin routes a web page cannot drive.

A web page can make a browser send a ``text/plain`` (or bodiless) ``POST`` to any loopback port
without a CORS preflight; the admin routes therefore take JSON only and refuse foreign origins.
``--require-key`` makes every route want a key, and a non-loopback ``--host`` draws a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from langchain_claude_relay.emulator import RelayEmulator, server
from langchain_claude_relay.emulator.server import is_loopback_host, serve

NAME = ("x-relay-emulator", "langchain-claude-relay")


def test_every_response_names_the_emulator(http: httpx.Client) -> None:
    for response in (
        http.get("/v1/models"),
        http.get("/admin/billing"),
        http.get("/nowhere"),
        http.post("/v1/chat/completions", json={"model": "claude-sonnet-4-6", "messages": []}),
        http.post("/admin/reset", content=b"", headers={"content-type": "text/plain"}),
    ):
        assert response.headers.get(NAME[0]) == NAME[1], response.status_code


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_admin_posts_must_be_json(
    emu: RelayEmulator, http: httpx.Client, headers: dict[str, str]
) -> None:
    body = b'{"fault_rate": 1}'
    response = http.post("/admin/config", content=body, headers=headers)
    assert response.status_code == 415
    assert emu.settings.fault_rate == 0
    assert http.post("/admin/reset", headers=headers).status_code == 415
    assert (
        http.post("/admin/faults", content=b'{"kind": "529"}', headers=headers).status_code == 415
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://127.0.0.1:1"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
    ],
)
def test_admin_routes_refuse_other_origins(
    emu: RelayEmulator, http: httpx.Client, headers: dict[str, str]
) -> None:
    response = http.post("/admin/config", json={"fault_rate": 1}, headers=headers)
    assert response.status_code == 403
    assert http.get("/admin/billing", headers=headers).status_code == 403
    assert emu.settings.fault_rate == 0


def test_same_origin_json_still_works(emu: RelayEmulator, http: httpx.Client) -> None:
    origin = emu.root_url
    response = http.post(
        "/admin/config", json={"first_byte_delay": 0.0}, headers={"origin": origin}
    )
    assert response.status_code == 200
    assert http.post("/admin/reset", json={}).status_code == 200


@pytest.fixture
def keyed() -> Iterator[RelayEmulator]:
    with RelayEmulator(require_key="emu-key-123") as emu:
        yield emu


def test_require_key_refuses_requests_without_it(keyed: RelayEmulator) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }
    with httpx.Client(base_url=keyed.root_url, timeout=10) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 401
        wrong = {"authorization": "Bearer nope"}
        assert http.post("/v1/chat/completions", json=body, headers=wrong).status_code == 401
        assert http.get("/admin/billing").status_code == 401
        for headers in (
            {"authorization": "Bearer emu-key-123"},
            {"x-api-key": "emu-key-123"},
            {"api-key": "emu-key-123"},
        ):
            assert http.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
            assert http.get("/admin/billing", headers=headers).status_code == 200
    assert len(keyed.billing_log) == 3  # refused requests never reached the engine


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),  # noqa: S104 -- a host name under test, nothing is bound
        ("::", False),
        ("192.168.1.10", False),
        ("relay.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_serving_beyond_loopback_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    class Server:  # runs nothing
        def __init__(self, config: object, core: object) -> None:
            pass

        def run(self, sockets: object = None) -> None:
            pass

    class Socket:  # binds nothing
        def getsockname(self) -> tuple[str, int]:
            return ("0.0.0.0", 8787)  # noqa: S104

    monkeypatch.setattr(uvicorn, "Config", lambda *args, **kwargs: None)  # logging left alone
    monkeypatch.setattr(server, "_ForegroundServer", Server)
    monkeypatch.setattr(server, "bind", lambda host, port: Socket())
    records = _Records()
    logging.getLogger("uvicorn.error").addHandler(records)
    try:
        serve("0.0.0.0", 8787)  # noqa: S104 -- nothing is bound: the server does not run
        serve("127.0.0.1", 8787)
        serve("0.0.0.0", 8787, require_key="k")  # noqa: S104
    finally:
        logging.getLogger("uvicorn.error").removeHandler(records)
    assert len(records.messages) == 2
    assert "not only on loopback" in records.messages[0]
    assert "--require-key" in records.messages[0]
    assert "requires the key" in records.messages[1]
