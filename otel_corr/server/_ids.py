"""IDs as the backend accepts them: Jaeger's rules, plus UUIDs with dashes.

Lives with the server, but the request-ID rule itself is ``otel_corr._ids``:
a lookup that is not a trace ID is tried as a request ID.
"""

from __future__ import annotations

import re

__all__ = ["parse_trace_id", "jaeger_trace_id"]

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_trace_id(text: str) -> bytes | None:
    """A trace ID as Jaeger accepts it (1-32 hex, any case, leading zeros optional) or a UUID with dashes.

    Returns the 16 bytes, or ``None`` if ``text`` is not a trace ID (it may still be a request ID).
    """
    text = text.strip()
    if _UUID.fullmatch(text):
        text = text.replace("-", "")
    elif not _HEX.fullmatch(text):
        return None
    value = int(text, 16)
    return value.to_bytes(16, "big") if value else None


def jaeger_trace_id(trace_id: bytes) -> str:
    """Jaeger v1's printed form: 16 hex digits when the high half is zero, else 32."""
    value = int.from_bytes(trace_id, "big")
    return format(value, "016x") if value >> 64 == 0 else format(value, "032x")
