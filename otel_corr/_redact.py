"""What is secret, decided once: header, field and query names that are never logged or recorded as they are.

Used by the span's ``url.query`` and captured headers, the error line's request summary and the
outbound client spans' ``url.full``.  Names match case-insensitively, anywhere in the name
(``X-Api-Key``, ``session_id``, ``csrftoken``).
"""

from __future__ import annotations

import re

__all__ = ["SENSITIVE_NAMES", "redact_query", "sensitive_pattern"]

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


def sensitive_pattern(*extra: str) -> re.Pattern[str]:
    """The names above plus ``extra`` (regexes), as one case-insensitive pattern."""
    return re.compile("|".join(f"(?:{name})" for name in (*SENSITIVE_NAMES, *extra) if name), re.IGNORECASE)


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
