"""What is secret, decided once: header, field and query names that are never logged or recorded as they are.

Used by the span's ``url.query`` and captured headers, the error line's request summary and the
outbound client spans' ``url.full``.  Names match case-insensitively, anywhere in the name
(``X-Api-Key``, ``session_id``, ``csrftoken``).  An application's ``sanitize_fields`` extend the
pattern for everything that summarises its requests (span and error line alike).

``baggage`` and ``tracestate`` are never shown as they came in, whatever the pattern: they are
free-form data any caller can fill (user IDs, tokens, ``${jndi:...}`` strings).
"""

from __future__ import annotations

import re

__all__ = ["OPAQUE_HEADERS", "SENSITIVE_NAMES", "is_sensitive_header", "redact_query", "sensitive_pattern"]

SENSITIVE_NAMES = (
    "authorization",
    "cookie",
    "set-cookie",
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "session",
    "csrf",
    "credential",
)

#: Request headers whose value is never logged or recorded, whatever the names above.
OPAQUE_HEADERS = frozenset({"baggage", "tracestate"})


def sensitive_pattern(*extra: str) -> re.Pattern[str]:
    """The names above plus ``extra`` (regexes), as one case-insensitive pattern."""
    return re.compile("|".join(f"(?:{name})" for name in (*SENSITIVE_NAMES, *extra) if name), re.IGNORECASE)


def is_sensitive_header(name: str, pattern: re.Pattern[str]) -> bool:
    """Whether a (lower-case) header's value must be redacted under ``pattern``."""
    return name in OPAQUE_HEADERS or pattern.search(name) is not None


def redact_query(
    query: str, pattern: re.Pattern[str], *, max_items: int | None = None, max_length: int | None = None
) -> str:
    """``a=1&token=x`` → ``a=1&token=REDACTED``; optionally bounded in items and item length."""
    items = query.split("&") if max_items is None else query.split("&", max_items)[:max_items]
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        text = f"{key}=REDACTED" if sep and pattern.search(key) else item
        out.append(text if max_length is None else text[:max_length])
    return "&".join(out)
