"""A hostile relay on a loopback port: huge bodies, endless streams, trickles, redirects, a proxy.

Each path plays one attack on ``ChatClaudeRelay`` (base URL ``http://127.0.0.1:PORT/<path>/v1``).
Every request's headers are recorded (``HostileRelay.seen``, names in lower case), so a test can
tell what reached which server. Used by ``test_hardening_transport.py`` and by
``benchmarks/hostile_relay_bench.py`` (which measures memory and time; unit tests never time
anything).

Paths (the part before ``/v1``):

* ``ok``: a valid chat completion.
* ``big-json``: a 200 OK JSON body of ``BIG`` bytes.
* ``big-error``: a 500 error page of ``BIG`` bytes (the SDK reads error bodies itself).
* ``big-line``: an event stream whose first line is ``BIG`` bytes long.
* ``endless-fast``: an event stream of valid chunks, as fast as the socket takes them, for ever.
* ``endless-slow``: one valid chunk every 0.2 s, for ever.
* ``trickle``: a 200 OK JSON body, one byte every 0.5 s.
* ``trickle-headers``: the status line, then one byte of a header every 0.5 s (for 30 s).
* ``trickle-headers-later``: a valid answer first, then, on the same kept-alive connection,
  the answer to the next request as ``trickle-headers``.
* ``gzip-error`` / ``gzip-json`` / ``gzip-stream``: a 500 error page, a 200 JSON body, an event
  stream, each ``content-encoding: gzip``, 50 KiB on the wire that unpack to ``GZIP_BIG`` bytes.
* ``absurd-usage``: a valid chat completion whose usage reports ``10**12`` tokens each way.
* ``silent``: reads the request, then answers nothing (a relay busy with a long answer).
* ``redirect``: 307 to ``redirect_to`` (another server's origin), path ``/ok/...``.

As a proxy (``HTTP_PROXY=http://127.0.0.1:PORT``) it records what it is sent and answers 502.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BIG = 200 * 2**20
GZIP_BIG = 50 * 2**20

_CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "model": "claude-sonnet-4-6",
    "choices": [{"index": 0, "delta": {"content": "ab"}, "finish_reason": None}],
}
_EVENT = f"data: {json.dumps(_CHUNK)}\n\n".encode()
_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "claude-sonnet-4-6",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
).encode()


_ABSURD = json.loads(_COMPLETION)
_ABSURD["usage"] = {"prompt_tokens": 10**12, "completion_tokens": 10**12}
_ABSURD_COMPLETION = json.dumps(_ABSURD).encode()


@functools.cache
def _gzip_bomb(head: bytes, unit: bytes, tail: bytes = b"") -> bytes:
    """``head``, ``unit`` repeated to ``GZIP_BIG`` bytes, ``tail``: gzip-compressed (~50 KiB)."""
    return gzip.compress(head + unit * (GZIP_BIG // len(unit)) + tail, 9)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.relay.seen.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        if self.path.startswith("http://"):  # a proxy request: absolute URL
            self._send(502, b"proxy", "text/plain")
            return
        kind = self.path.strip("/").split("/")[0]
        try:
            getattr(self, "_" + kind.replace("-", "_"), self._ok)()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _ok(self) -> None:
        self._send(200, _COMPLETION, "application/json")

    def _redirect(self) -> None:
        self.send_response(307)
        target = self.path.replace("/redirect/", "/ok/", 1)
        self.send_header("location", self.server.relay.redirect_to + target)
        self.send_header("content-length", "0")
        self.end_headers()

    def _big_json(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(BIG + 2))
        self.end_headers()
        self.wfile.write(b'"')
        block = b"a" * 2**20
        for _ in range(BIG // len(block)):
            self.wfile.write(block)
        self.wfile.write(b'"')

    def _big_error(self) -> None:
        self.send_response(500)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(BIG))
        self.end_headers()
        block = b"a" * 2**20
        for _ in range(BIG // len(block)):
            self.wfile.write(block)

    def _stream_head(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _big_line(self) -> None:
        self._stream_head()
        self.wfile.write(b'data: {"x": "')
        block = b"a" * 2**20
        for _ in range(BIG // len(block)):
            self.wfile.write(block)
        self.wfile.write(b'"}\n\n')

    def _endless_fast(self) -> None:
        self._stream_head()
        burst = _EVENT * 200
        while not self.server.relay.stopping.is_set():
            self.wfile.write(burst)

    def _endless_slow(self) -> None:
        self._stream_head()
        while not self.server.relay.stopping.is_set():
            self.wfile.write(_EVENT)
            self.wfile.flush()
            time.sleep(0.2)

    def _trickle(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(_COMPLETION)))
        self.end_headers()
        for byte in _COMPLETION:
            if self.server.relay.stopping.is_set():
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.5)

    def _trickle_headers(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        self.wfile.flush()
        for _ in range(60):  # 30 s at most, then the server gives up on its own
            if self.server.relay.stopping.is_set():
                break
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.5)
        self.close_connection = True

    def _trickle_headers_later(self) -> None:
        served = getattr(self, "served", 0)
        self.served = served + 1
        if served == 0:
            self._ok()
        else:
            self._trickle_headers()

    def _send_gzip(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-encoding", "gzip")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _gzip_error(self) -> None:
        self._send_gzip(500, _gzip_bomb(b"<html>", b" "), "text/html")

    def _gzip_json(self) -> None:
        self._send_gzip(200, _gzip_bomb(b'"', b"a", b'"'), "application/json")

    def _gzip_stream(self) -> None:
        self._send_gzip(200, _gzip_bomb(b"", _EVENT), "text/event-stream")

    def _absurd_usage(self) -> None:
        self._send(200, _ABSURD_COMPLETION, "application/json")

    def _stall(self) -> None:
        """The answer's first 8 bytes, one every 0.3 s, then silence (a relay that hangs)."""
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(_COMPLETION)))
        self.end_headers()
        for byte in _COMPLETION[:8]:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.3)
        self.server.relay.stopping.wait()

    def _silent(self) -> None:
        """Nothing: the request was read, the answer never comes (until the server stops)."""
        self.server.relay.stopping.wait()

    def _short_stream(self) -> None:
        """Three events and the end."""
        self._stream_head()
        self.wfile.write(_EVENT * 3 + b"data: [DONE]\n\n")
        self.wfile.flush()

    def _stall_stream(self) -> None:
        """An event every 0.3 s for 2.4 s, then silence."""
        self._stream_head()
        for _ in range(8):
            self.wfile.write(_EVENT)
            self.wfile.flush()
            time.sleep(0.3)
        self.server.relay.stopping.wait()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    relay: HostileRelay


class HostileRelay:
    """The server, started on a free loopback port (a context manager)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.redirect_to = ""
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.relay = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, kind: str = "ok") -> str:
        """The base URL of one behaviour (``http://127.0.0.1:PORT/<kind>/v1``)."""
        return f"http://127.0.0.1:{self.port}/{kind}/v1"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
