"""Query parameters as Jaeger parses them: Go durations, µs epochs, RFC 3339, tags."""

from __future__ import annotations

import json
import re
from datetime import datetime

__all__ = ["QueryError", "go_duration_ns", "rfc3339_ns", "tags_param"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


class QueryError(ValueError):
    """A query parameter Jaeger would reject (HTTP 400); the message names it."""


def go_duration_ns(name: str, text: str) -> int:
    """Parse a Go duration (``1.2s``, ``100ms``, ``1h30m``) into nanoseconds."""
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise QueryError(f"{name}: {text[:40]!r} is not a duration such as 100ms or 1.5s")
    return int(total)


def rfc3339_ns(name: str, text: str) -> int:
    """Parse RFC 3339 (nanoseconds allowed) into ns since the epoch."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text.strip())
    if match is None:
        raise QueryError(f"{name}: {text[:40]!r} is not an RFC 3339 time")
    try:
        base = datetime.fromisoformat(match.group(1) + match.group(3).replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: {text[:40]!r} is not an RFC 3339 time") from None
    fraction = (match.group(2) or "").ljust(9, "0")
    return int(base.timestamp()) * 1_000_000_000 + int(fraction or 0)


def tags_param(tags_json: str | None, tag_list: list[str]) -> dict[str, str]:
    """v1's ``tags={"k":"v"}`` JSON object and repeatable ``tag=k:v``, merged."""
    out: dict[str, str] = {}
    if tags_json:
        try:
            parsed = json.loads(tags_json)
        except ValueError:
            raise QueryError("tags: not a JSON object") from None
        if not isinstance(parsed, dict):
            raise QueryError("tags: not a JSON object")
        out.update({str(k): str(v) for k, v in parsed.items()})
    for item in tag_list:
        key, sep, value = item.partition(":")
        if not sep:
            raise QueryError(f"tag: {item[:40]!r} is not key:value")
        out[key] = value
    return out
