"""The one-ID rule as pure functions: validate, generate, map a request ID to a trace ID.

Shared by the middlewares, and later by the backend's lookups and the CLI, so
that "what counts as the same ID" is written once.

A request ID is *valid* when it is 1-128 characters from ``[A-Za-z0-9._:-]``
and, if it looks like a trace ID (a UUID or 32 hex digits), is not all zeros.
A valid request ID that is a UUID (any case, with or without dashes) or 32 hex
digits *is* a trace ID: its 128 bits become the trace ID of the server span.
"""

from __future__ import annotations

import re

__all__ = [
    "INVALID_SPAN_ID",
    "INVALID_TRACE_ID",
    "MAX_REQUEST_ID_LENGTH",
    "REQUEST_ID_ATTRIBUTE",
    "format_span_id",
    "format_trace_id",
    "is_safe_header_value",
    "is_valid_request_id",
    "trace_id_of",
]

#: The span attribute (and log field) that carries the request ID.
REQUEST_ID_ATTRIBUTE = "request.id"
MAX_REQUEST_ID_LENGTH = 128
INVALID_TRACE_ID = "0" * 32
INVALID_SPAN_ID = "0" * 16

_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# A UUID in its canonical 8-4-4-4-12 form, or its 32 hex digits without dashes.
_TRACE_LIKE = re.compile(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# Whatever a user-supplied validator accepts, we never echo a value with
# control characters, non-ASCII or absurd length into a response header.
_SAFE = re.compile(r"[\x21-\x7e]{1,1024}")


def trace_id_of(request_id: str) -> int | None:
    """Return the 128-bit trace ID a request ID stands for, or ``None``.

    ``None`` when the request ID is not a UUID / 32-hex string, or is all zeros
    (the W3C invalid trace ID).
    """
    if len(request_id) not in (32, 36) or _TRACE_LIKE.fullmatch(request_id) is None:
        return None
    value = int(request_id.replace("-", ""), 16)
    return value or None


def is_valid_request_id(value: str) -> bool:
    """The default validator: 1-128 of ``[A-Za-z0-9._:-]``, not an all-zero trace ID."""
    if len(value) > MAX_REQUEST_ID_LENGTH or _VALID.fullmatch(value) is None:
        return False
    if len(value) in (32, 36) and _TRACE_LIKE.fullmatch(value) is not None:
        return trace_id_of(value) is not None
    return True


def is_safe_header_value(value: str) -> bool:
    """The floor every request ID must pass before it is echoed: visible ASCII, ≤ 1024 chars."""
    return _SAFE.fullmatch(value) is not None


# printf-style on purpose: the same digits as format(value, "032x") for about two thirds of
# the instructions (no format-spec parsing); every request formats a trace ID and a span ID.
def format_trace_id(trace_id: int) -> str:
    """A trace ID as 32 lower-case hex digits."""
    return "%032x" % trace_id  # noqa: UP031


def format_span_id(span_id: int) -> str:
    """A span ID as 16 lower-case hex digits."""
    return "%016x" % span_id  # noqa: UP031
