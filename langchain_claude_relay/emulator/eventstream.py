"""AWS event-stream encoding: the binary framing of Bedrock's ``invoke-with-response-stream``.

A message, every integer big-endian::

    total length (uint32) | headers length (uint32) | prelude CRC32 (uint32)
    headers | payload | message CRC32 (uint32)

The prelude CRC covers the first 8 bytes, the message CRC every byte before it. A header is its
name length (uint8), the name, the value type (7: string), the value length (uint16), the value.
Bedrock wraps each Anthropic stream event as the JSON payload ``{"bytes": base64(event JSON)}``
with the headers ``:event-type: chunk``, ``:content-type: application/json`` and
``:message-type: event``.

>>> frame = encode_message({":message-type": "event"}, b"{}")
>>> len(frame), int.from_bytes(frame[:4], "big")
(40, 40)
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "STRING_HEADER_TYPE",
    "MAX_PAYLOAD_BYTES",
    "encode_headers",
    "encode_message",
    "bedrock_chunk",
]

STRING_HEADER_TYPE = 7
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
"""AWS's limit on one message's payload (16 MiB)."""
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_CHUNK_HEADERS = {
    ":event-type": "chunk",
    ":content-type": "application/json",
    ":message-type": "event",
}


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Encode string-valued headers in the event-stream header format.

    Args:
        headers: header names to values (in the order to send them).

    Returns:
        The encoded header block.

    Raises:
        ValueError: if a name is longer than 255 bytes or a value longer than 65,535 bytes.

    """
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        if len(raw_name) > 0xFF:
            msg = f"event-stream header name {name[:40]!r}... is over 255 bytes: shorten it"
            raise ValueError(msg)
        if len(raw_value) > 0xFFFF:
            msg = f"event-stream header {name!r} has a value over 65,535 bytes: shorten it"
            raise ValueError(msg)
        out += bytes([len(raw_name)]) + raw_name
        out += bytes([STRING_HEADER_TYPE]) + len(raw_value).to_bytes(2, "big") + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """Encode one event-stream message.

    Args:
        headers: the message's string headers.
        payload: the message body.

    Returns:
        The framed message (prelude, prelude CRC, headers, payload, message CRC).

    Raises:
        ValueError: if the payload is over ``MAX_PAYLOAD_BYTES`` or a header is too long.

    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        msg = f"event-stream payload of {len(payload):,} bytes is over AWS's 16 MiB limit"
        raise ValueError(msg)
    head = encode_headers(headers)
    total = _PRELUDE.size + _CRC.size + len(head) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(head))
    frame = prelude + _CRC.pack(zlib.crc32(prelude)) + head + payload
    return frame + _CRC.pack(zlib.crc32(frame))


def bedrock_chunk(event: Mapping[str, Any]) -> bytes:
    """Frame one Anthropic stream event the way Bedrock sends it (a ``chunk`` event).

    Args:
        event: the event dict (``{"type": "message_start", ...}``).

    Returns:
        The event-stream message.

    """
    data = json.dumps(event, separators=(",", ":")).encode()
    payload = json.dumps({"bytes": base64.b64encode(data).decode("ascii")}).encode()
    return encode_message(_CHUNK_HEADERS, payload)
