"""IDs as the backend accepts them: Jaeger's rules, plus UUIDs with dashes.

Lives with the server, but the request-ID rule itself is ``otel_corr._ids``:
a lookup that is not a trace ID is tried as a request ID.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["jaeger_trace_id", "parse_trace_id"]

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Standard or URL-safe base64, padded or not, of 8 or 16 bytes (11-12 or 22-24 characters).
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{11,24}={0,2}")


def _from_base64(text: str) -> bytes | None:
    # Jaeger v2.20 (TraceIDFromString in its api_v3 gateway) tries base64 once hex has failed,
    # on at most 24 characters: the protobuf-JSON form of an ID that clients such as the
    # OTel Collector's debug output print.  Both alphabets, with or without padding.
    if len(text) > 24 or not _BASE64.fullmatch(text):
        return None
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) == 8:
        return bytes(8) + raw  # a 64-bit ID is the low half
    return raw if len(raw) == 16 else None


def parse_trace_id(text: str) -> bytes | None:
    """A trace ID as Jaeger v2.20 accepts it, or a UUID with dashes.

    Jaeger's forms: 1-32 hex digits (any case, leading zeros optional) or, when that fails,
    base64 (standard or URL-safe, padded or not) of 8 or 16 bytes.  Returns the 16 bytes, or
    ``None`` if ``text`` is not a trace ID (it may still be a request ID).
    """
    text = text.strip()
    if _UUID.fullmatch(text):
        text = text.replace("-", "")
    elif not _HEX.fullmatch(text):
        raw = _from_base64(text)
        return raw if raw is not None and any(raw) else None
    value = int(text, 16)
    return value.to_bytes(16, "big") if value else None


def jaeger_trace_id(trace_id: bytes) -> str:
    """Jaeger v1's printed form: 16 hex digits when the high half is zero, else 32."""
    value = int.from_bytes(trace_id, "big")
    return format(value, "016x") if value >> 64 == 0 else format(value, "032x")
