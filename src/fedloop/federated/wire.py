"""The binary frame format between fedloop processes: a JSON header plus raw tensor bytes.

A frame is ``b"FLW1"``, the header length and the payload length (two unsigned 32-bit
big-endian ints), the UTF-8 JSON header, then the payload (a safetensors image). Nothing is
pickled; every length is bounded before memory is allocated.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from fedloop.core import InvalidInput

__all__ = ["MAX_HEADER_BYTES", "MAX_PAYLOAD_BYTES", "read_frame", "write_frame"]

_MAGIC = b"FLW1"
_PREFIX = struct.Struct(">4sII")
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = (1 << 32) - 1


def write_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> int:
    """Write one frame and flush; return the bytes written.

    Parameters
    ----------
    stream : binary file
        A pipe or socket file.
    header : dict
        JSON-serializable fields.
    payload : bytes
        Tensor bytes (may be empty).

    Returns
    -------
    int
        Frame size in bytes.
    """
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(head) > MAX_HEADER_BYTES or len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidInput("frame too large to send.", field="frame")
    stream.write(_PREFIX.pack(_MAGIC, len(head), len(payload)))
    stream.write(head)
    if payload:
        stream.write(payload)
    stream.flush()
    return _PREFIX.size + len(head) + len(payload)


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the peer closed the stream mid-frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(
    stream: IO[bytes], *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
) -> tuple[dict[str, Any], bytes]:
    """Read one frame.

    Parameters
    ----------
    stream : binary file
        A pipe or socket file.
    max_payload_bytes : int
        Refuse larger payloads before reading them.

    Returns
    -------
    tuple of (dict, bytes)
        The header and the payload.

    Raises
    ------
    EOFError
        When the stream ends before a frame starts or mid-frame.
    InvalidInput
        For a bad magic, an oversized header or payload, or a header that is not a JSON object.
    """
    prefix = stream.read(_PREFIX.size)
    if not prefix:
        raise EOFError("the peer closed the stream")
    if len(prefix) < _PREFIX.size:
        prefix += _read_exact(stream, _PREFIX.size - len(prefix))
    magic, head_len, payload_len = _PREFIX.unpack(prefix)
    if magic != _MAGIC:
        raise InvalidInput("not a fedloop frame (bad magic).", field="frame")
    if head_len > MAX_HEADER_BYTES or payload_len > max_payload_bytes:
        raise InvalidInput(
            f"frame too large: header {head_len} B, payload {payload_len} B.", field="frame"
        )
    try:
        header = json.loads(_read_exact(stream, head_len))
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"frame header is not JSON: {err}.", field="frame") from err
    if not isinstance(header, dict):
        raise InvalidInput("frame header must be a JSON object.", field="frame")
    return header, _read_exact(stream, payload_len) if payload_len else b""
