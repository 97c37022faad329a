"""Protobuf wire bytes by hand, for bodies no encoder writes (garbage spans, unusual encodings)."""

from __future__ import annotations

__all__ = ["field"]


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field holding ``payload`` exactly as given."""
    size, length = len(payload), b""
    while size >= 0x80:
        length += bytes([0x80 | (size & 0x7F)])
        size >>= 7
    return bytes([number << 3 | 2]) + length + bytes([size]) + payload
