"""Query parameters as Jaeger parses them: Go durations, µs epochs, RFC 3339, tags, api_v3 searches.

Every bad value is a :class:`QueryError` whose message names the parameter (the routes answer it
as HTTP 400): numbers and times are bounded to what the store's int64 nanoseconds can hold.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

__all__ = [
    "INT64_MAX",
    "QueryError",
    "V3Search",
    "attributes_param",
    "float_param",
    "go_duration_ns",
    "int_param",
    "rfc3339_ns",
    "tags_param",
    "time_range",
    "v3_search",
]

_INT64_MAX = INT64_MAX = 2**63 - 1
#: At most this many tag conditions in one search (each is checked against every candidate span).
_MAX_TAGS = 32
_INTEGER = re.compile(r"[+-]?\d{1,30}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Go's time.ParseDuration grammar: an optional sign, then number+unit pairs (``1h30m``, ``.5s``).
_DURATION = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu; Go accepts both
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")
#: The longest ``lookback`` the page's lists take: a year (the store holds int64 ns; this is a sanity bound).
_MAX_LOOKBACK_NS = 366 * 86_400 * 1_000_000_000
#: Most traces one search returns, whatever the client asks (Jaeger caps it per storage too).
MAX_SEARCH_DEPTH = 1500


class QueryError(ValueError):
    """A query parameter Jaeger would reject (HTTP 400); the message names it."""


def _shown(text: str) -> str:
    return repr(text[:40]) + ("..." if len(text) > 40 else "")


def int_param(name: str, text: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` (else :class:`QueryError` naming ``name`` and the range)."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise QueryError(f"{name}: {_shown(text)} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise QueryError(f"{name}: {_shown(text)} is outside {low}..{high}")
    return value


def float_param(name: str, text: str, low: float, high: float) -> float:
    """A finite number in ``low..high`` (NaN, infinities and 1e300 are :class:`QueryError`)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise QueryError(f"{name}: {_shown(text)} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise QueryError(f"{name}: {_shown(text)} is outside {low:g}..{high:g}")
    return value


def go_duration_ns(name: str, text: str) -> int:
    """Parse a Go duration (``1.2s``, ``100ms``, ``1h30m``, ``-5s``, ``0``) into nanoseconds."""
    bad = QueryError(f"{name}: {text[:40]!r} is not a duration such as 100ms or 1.5s")
    body = text.strip()
    sign = -1 if body[:1] == "-" else 1
    body = body[1:] if body[:1] in "+-" and body else body
    if body == "0":
        return 0
    if not body or len(body) > 64:
        raise bad
    pos, total = 0, 0
    for match in _DURATION.finditer(body):
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        if match.start() != pos or not (whole or fraction):
            raise bad
        # Integer arithmetic: a float would round 2562047h47m16.854775807s.
        total += int(whole or 0) * _UNITS[unit] + int(fraction or 0) * _UNITS[unit] // 10 ** len(fraction)
        pos = match.end()
    if pos != len(body):
        raise bad
    if total > _INT64_MAX:
        raise QueryError(f"{name}: {text[:40]!r} is longer than the largest duration (about 292 years)")
    return sign * total


def rfc3339_ns(name: str, text: str) -> int:
    """Parse RFC 3339 (nanoseconds allowed) into ns since the epoch, within 1678-2262 (int64 ns)."""
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise QueryError(f"{name}: {text[:40]!r} is not an RFC 3339 time such as 2026-01-02T15:04:05Z")
    date, clock, fraction, zone = match.groups()
    try:
        base = datetime.fromisoformat(f"{date}T{clock}{'+00:00' if zone in 'Zz' else zone}")
    except ValueError:
        raise QueryError(f"{name}: {text[:40]!r} is not a valid date and time") from None
    delta = base - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
    if not -_INT64_MAX <= ns <= _INT64_MAX:
        raise QueryError(f"{name}: {text[:40]!r} is outside the years 1678-2262 that nanosecond times can hold")
    return ns


def time_range(q: Mapping[str, str], now_ns: int) -> tuple[int | None, int | None]:
    """The page's time range: ``lookback`` (a Go duration back from now, e.g. ``15m``, ``7d`` as ``168h``)
    or ``start`` and/or ``end`` (RFC 3339), as inclusive (since, until) ns bounds; (None, None) for any time.

    ``lookback`` also takes a whole number of days (``7d``), which Go durations cannot say.
    """
    lookback = (q.get("lookback") or "").strip()
    start = (q.get("start") or "").strip()
    end = (q.get("end") or "").strip()
    if lookback and (start or end):
        raise QueryError("lookback: give either lookback or start/end, not both")
    if lookback:
        days = re.fullmatch(r"(\d{1,3})d", lookback)
        ns = int(days.group(1)) * 86_400 * 1_000_000_000 if days else go_duration_ns("lookback", lookback)
        if not 1_000_000_000 <= ns <= _MAX_LOOKBACK_NS:
            raise QueryError(f"lookback: {_shown(lookback)} is outside 1s..366d")
        return now_ns - ns, None
    since = rfc3339_ns("start", start) if start else None
    until = rfc3339_ns("end", end) if end else None
    if since is not None and until is not None and until < since:
        raise QueryError(f"end: {_shown(end)} is before start {_shown(start)}")
    return since, until


def tags_param(tags_json: str | None, tag_list: list[str]) -> dict[str, str]:
    """v1's ``tags={"k":"v"}`` JSON object and repeatable ``tag=k:v``, merged."""
    out: dict[str, str] = {}
    if tags_json:
        try:
            parsed = json.loads(tags_json)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." a few thousand deep
            raise QueryError("tags: not a JSON object") from None
        if not isinstance(parsed, dict):
            raise QueryError("tags: not a JSON object")
        for key, value in parsed.items():
            if isinstance(value, (dict, list)) or value is None:
                raise QueryError(f"tags: the value of {_shown(key)} is not a string, number or boolean")
            out[key] = json.dumps(value) if isinstance(value, bool) else str(value)
    for item in tag_list:
        key, sep, value = item.partition(":")
        if not sep:
            raise QueryError(f"tag: {_shown(item)} is not key:value")
        out[key] = value
    if len(out) > _MAX_TAGS:
        raise QueryError(f"tags: {len(out)} conditions, at most {_MAX_TAGS}")
    return out


def attributes_param(name: str, text: str) -> dict[str, str]:
    """api_v3's ``query.attributes``: a JSON object of strings, as Jaeger's ``map[string]string``."""
    bad = QueryError(f'{name}: not a JSON object of strings such as {{"http.route":"/users","error":"true"}}')
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise bad from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise bad
    return parsed


class V3Search(NamedTuple):
    """An api_v3 search (``/api/v3/traces`` and ``/api/v3/trace-summaries``), validated."""

    service: str
    operation: str | None
    attributes: dict[str, str]
    start_ns: int
    end_ns: int
    min_duration_ns: int | None
    max_duration_ns: int | None
    limit: int


def _go_bool(name: str, text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise QueryError(f"{name}: {text[:40]!r} is not true or false")


def v3_search(q: Mapping[str, str]) -> V3Search:
    """The ``query.*`` parameters as Jaeger v2.20's api_v3 gateway reads them.

    Each has a canonical camelCase name and a deprecated snake_case alias; the UI's older
    ``query.span_name`` is accepted for the operation too.  The time range is required.
    """

    def param(*names: str) -> tuple[str, str | None]:
        for name in names:
            if q.get(name):
                return name, q[name]
        return names[0], None

    service = param("query.serviceName", "query.service_name")[1]
    operation = param("query.operationName", "query.operation_name", "query.span_name")[1]
    attributes = param("query.attributes")
    tmin_name, tmin = param("query.startTimeMin", "query.start_time_min")
    tmax_name, tmax = param("query.startTimeMax", "query.start_time_max")
    if not tmin or not tmax:
        raise QueryError("query.startTimeMin and query.startTimeMax are required")
    start_ns, end_ns = rfc3339_ns(tmin_name, tmin), rfc3339_ns(tmax_name, tmax)
    if start_ns >= end_ns:
        raise QueryError("query.startTimeMin must be before query.startTimeMax")
    depth_name, depth = param("query.searchDepth", "query.search_depth", "query.num_traces")
    if depth is not None and not (depth.isascii() and depth.isdigit() and len(depth) <= 9 and int(depth) > 0):
        raise QueryError(f"{depth_name}: {depth[:40]!r} is not a positive integer")
    dmin_name, dmin = param("query.durationMin", "query.duration_min")
    dmax_name, dmax = param("query.durationMax", "query.duration_max")
    raw_name, raw = param("query.rawTraces", "query.raw_traces")
    if raw is not None:
        _go_bool(raw_name, raw)  # accepted and validated; the store keeps spans as sent, nothing to adjust
    if not service:
        # Jaeger's storages refuse a search without a service ("service name must be set").
        raise QueryError("query.serviceName is required")
    return V3Search(
        service=service,
        operation=operation,
        attributes=attributes_param(attributes[0], attributes[1]) if attributes[1] else {},
        start_ns=start_ns,
        end_ns=end_ns,
        min_duration_ns=go_duration_ns(dmin_name, dmin) if dmin else None,
        max_duration_ns=go_duration_ns(dmax_name, dmax) if dmax else None,
        limit=min(int(depth or 100), MAX_SEARCH_DEPTH),
    )
