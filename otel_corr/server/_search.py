"""The search language of the page's box, ``otel-corr find`` and ``/api/search``: text in, a :class:`Query` out.

One box takes whatever the person on call has (docs/local-backend.md shows it with examples)::

    GatewayError "payment declined" -retry user.id=42 service:checkout status:5xx duration>500ms since:24h

Words and phrases must appear in a log line or a span event of the trace; ``key=value`` on one of
its spans (with ``service:``, ``status:`` and ``duration`` on that same span, as Jaeger's tags are);
``-`` excludes.  A token in an ID form (a trace ID as 32 hex digits, a UUID or base64, a span ID as
16 hex digits) names a trace, and a query of one bare token is also tried as a request ID, so a
pasted ID opens its trace directly.

The parser never touches the store.  What it returns is plain values: the store binds each of
them as an SQL parameter and quotes text for FTS5 with :func:`fts_phrase`, so no clause can
inject SQL or FTS5 syntax.  Bad input is a :class:`SearchError` naming what is wrong (HTTP 400).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import NamedTuple

from .._ids import is_valid_request_id, trace_id_of
from ._query import INT64_MAX as _INT64_MAX
from ._query import QueryError, go_duration_ns, rfc3339_ns

__all__ = ["MAX_CLAUSES", "MAX_QUERY_LENGTH", "Query", "SearchError", "Term", "fts_phrase", "parse", "parse_id"]

#: The longest query the box takes, in characters.
MAX_QUERY_LENGTH = 1024
#: The most clauses in one query (each can cost an index lookup per time slice).
MAX_CLAUSES = 16
#: The shortest prefix ``pay*`` may have: a one- or two-letter prefix matches half the index.
MIN_PREFIX = 3
_DAYS = re.compile(r"(\d{1,3})d")
_HEX16 = re.compile(r"[0-9A-Fa-f]{16}")
_BASE64_ID = re.compile(r"[A-Za-z0-9+/_-]{22}(?:==)?")
# A filter clause: ``service:checkout``, ``status:5xx``, ``since:1h``, ``until:...``.
_FILTER = re.compile(r"(service|status|since|until):(.*)", re.IGNORECASE | re.DOTALL)
_DURATION = re.compile(r"duration(>=|<=|>|<)(.+)", re.IGNORECASE | re.DOTALL)
_STATUS_CLASS = re.compile(r"([1-5])xx", re.IGNORECASE)
_STATUS_CODE = re.compile(r"[1-5]\d\d")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ATTRIBUTE_KEY = re.compile(r"[^\s=\"]{1,256}")


class SearchError(QueryError):
    """A query the language cannot take (HTTP 400); the message says which part and why."""


class Term(NamedTuple):
    """A word or phrase to find in log lines and span events (``prefix``: ``pay*``)."""

    text: str
    prefix: bool = False


class Query(NamedTuple):
    """A parsed search: every field is a plain value, bound as a parameter by the store."""

    text: str
    #: Tokens in a trace- or span-ID form: the trace they name, or a log line that contains them.
    ids: tuple[str, ...] = ()
    #: The query's one bare token, when that is all it is: tried as a trace, span or request ID.
    lone: str | None = None
    terms: tuple[Term, ...] = ()
    excluded: tuple[Term, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    excluded_attributes: tuple[tuple[str, str], ...] = ()
    service: str | None = None
    #: HTTP status range [low, high): ``status:5xx`` is (500, 600).
    status: tuple[int, int] | None = None
    error: bool = False
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    since_ns: int | None = None
    until_ns: int | None = None

    @property
    def span_filters(self) -> bool:
        """Whether the query has clauses that one span must meet (attributes, service, status, duration)."""
        return bool(
            self.attributes
            or self.service
            or self.status
            or self.error
            or self.min_duration_ns is not None
            or self.max_duration_ns is not None
        )


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 string (a phrase of its words): the only way user text reaches a MATCH.

    NUL separates words, as unicode61 reads it in the indexed text (FTS5's query parser would
    take it for the end of the query).
    """
    return '"' + text.replace('"', '""').replace("\x00", " ") + '"'


def parse_id(text: str) -> tuple[str, bytes] | None:
    """("trace", 16 bytes) or ("span", 8 bytes) for a token in an ID form, else None.

    Trace IDs: 32 hex digits (any case), a UUID with dashes, base64 (standard or URL-safe, with or
    without ``==``) of the 16 bytes, as OTLP/JSON and some exporters print them.  Span IDs: 16 hex.
    All-zero IDs are invalid in W3C trace context and name nothing.
    """
    value = trace_id_of(text)
    if value is not None:
        return "trace", value.to_bytes(16, "big")
    if _HEX16.fullmatch(text):
        raw = bytes.fromhex(text)
        return ("span", raw) if any(raw) else None
    if _BASE64_ID.fullmatch(text) and any(c.isdigit() or c.isupper() for c in text):
        try:
            raw = base64.b64decode(text.rstrip("=").replace("-", "+").replace("_", "/") + "==", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) == 16 and any(raw):
            return "trace", raw
    return None


def _words(text: str) -> bool:
    # What FTS5's unicode61 tokenizer keeps: letters and digits (underscore and punctuation separate).
    return any(c.isalnum() for c in text)


class _Token(NamedTuple):
    text: str
    negated: bool
    quoted: bool


def _tokens(text: str) -> list[_Token]:
    """Split on whitespace outside quotes: ``word``, ``-word``, ``"a phrase"``, ``key="a value"``."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if negated:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise SearchError(f"a quote at character {i + 1} is not closed")
            out.append(_Token(text[i + 1 : end], negated, True))
            i = end + 1
            continue
        start = i
        while i < n and not text[i].isspace():
            if text[i] == '"':  # key="value with spaces": the quoted part belongs to this token
                end = text.find('"', i + 1)
                if end < 0:
                    raise SearchError(f"a quote at character {i + 1} is not closed")
                i = end
            i += 1
        out.append(_Token(text[start:i], negated, False))
    return out


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _time(name: str, text: str, now_ns: int) -> int:
    """``1h`` / ``7d`` back from now, or an RFC 3339 time."""
    days = _DAYS.fullmatch(text)
    if days:
        return now_ns - int(days.group(1)) * 86_400_000_000_000
    if text[:1].isdigit() and "-" in text[:5]:
        return rfc3339_ns(name, text)
    ago = go_duration_ns(name, text)
    if ago <= 0:
        raise SearchError(f"{name}: {text[:40]!r} is not a positive duration such as 1h, or an RFC 3339 time")
    return now_ns - ago


def _status(text: str) -> tuple[tuple[int, int] | None, bool]:
    lowered = text.lower()
    if lowered in ("error", "err", "failed"):
        return None, True
    match = _STATUS_CLASS.fullmatch(lowered)
    if match:
        low = int(match.group(1)) * 100
        return (low, low + 100), False
    if _STATUS_CODE.fullmatch(lowered):
        return (int(lowered), int(lowered) + 1), False
    raise SearchError(f"status: {text[:40]!r} is not a status such as 5xx, 404 or error")


def parse(text: str, *, now_ns: int | None = None, service: str | None = None, since_ns: int | None = None) -> Query:
    """Parse the box's text (``service`` and ``since_ns`` come from the page's filters or CLI flags).

    Raises :class:`SearchError` for a query too long, with too many clauses, an unclosed quote, a
    prefix shorter than three characters, a filter value it cannot read, or nothing to look for.
    """
    # A lone surrogate (from argv's undecodable bytes, or a direct caller) cannot be bound in
    # SQLite: it becomes U+FFFD, as a browser's or HTTP's decoding would have made it.
    text = _SURROGATE.sub("\ufffd", text)
    if len(text) > MAX_QUERY_LENGTH:
        raise SearchError(f"the query is {len(text):,} characters long; at most {MAX_QUERY_LENGTH:,}")
    now = time.time_ns() if now_ns is None else now_ns
    tokens = _tokens(text)
    if len(tokens) > MAX_CLAUSES:
        raise SearchError(f"the query has {len(tokens)} parts; at most {MAX_CLAUSES}")
    ids: list[str] = []
    terms: list[Term] = []
    excluded: list[Term] = []
    attributes: list[tuple[str, str]] = []
    excluded_attributes: list[tuple[str, str]] = []
    status: tuple[int, int] | None = None
    error = False
    min_duration = max_duration = until_ns = None
    lone = None
    for token in tokens:
        value = token.text
        if len(tokens) == 1 and token.negated and not token.quoted and parse_id("-" + value) is not None:
            # A URL-safe base64 trace ID can begin with "-" (1 in 64): alone, an ID (an exclusion
            # alone would be refused); in a longer query "-" + 21 letters is an excluded word.
            token = _Token("-" + value, False, False)
            value = token.text
        if token.quoted:
            if _words(value):
                (excluded if token.negated else terms).append(Term(value))
            continue
        key, eq, attr_value = value.partition("=")
        flt = _FILTER.fullmatch(value)
        dur = _DURATION.fullmatch(value)
        if dur:
            if token.negated:
                raise SearchError(f"{value[:40]!r}: a duration cannot be excluded (write the opposite bound)")
            op, amount = dur.groups()
            ns = go_duration_ns("duration", amount)
            # Bounded to int64 (the store's nanoseconds): "> the longest duration" matches nothing, not a 500.
            if op.startswith(">"):
                min_duration = min(ns + (op == ">"), _INT64_MAX)
            else:
                max_duration = max(ns - (op == "<"), -_INT64_MAX)
        elif flt:
            name, arg = flt.group(1).lower(), _unquote(flt.group(2))
            if not arg:
                raise SearchError(f"{name}: needs a value, as in {name}:{_EXAMPLES[name]}")
            if token.negated:
                raise SearchError(f"{name}: cannot be excluded")
            if name == "service":
                service = arg
            elif name == "status":
                status, is_error = _status(arg)
                error = error or is_error
            elif name == "since":
                since_ns = _time("since", arg, now)
            else:
                until_ns = _time("until", arg, now)
        elif not token.negated and parse_id(value) is not None:
            ids.append(value)
            lone = value if len(tokens) == 1 else None
        elif eq and key and _ATTRIBUTE_KEY.fullmatch(key):
            pair = (key, _unquote(attr_value))
            (excluded_attributes if token.negated else attributes).append(pair)
        elif value.endswith("*"):
            stem = value.rstrip("*")
            if len(stem) < MIN_PREFIX or not stem.isalnum():
                raise SearchError(f"{value[:40]!r}: a prefix search needs at least {MIN_PREFIX} letters or digits")
            (excluded if token.negated else terms).append(Term(stem, prefix=True))
        elif _words(value):
            (excluded if token.negated else terms).append(Term(value))
            if len(tokens) == 1 and not token.negated and is_valid_request_id(value):
                lone = value  # one bare word: perhaps a request ID (a filter or key=value never is)
    durations = min_duration is not None or max_duration is not None
    if not (ids or terms or attributes or lone or service or status or error or durations):
        if excluded or excluded_attributes:
            raise SearchError("a query of exclusions only matches almost everything: add a word or a key=value")
        raise SearchError("nothing to search for: type a word, an ID or key=value")
    if since_ns is not None and until_ns is not None and until_ns < since_ns:
        raise SearchError("until: is before since:")
    return Query(
        text=text,
        ids=tuple(ids),
        lone=lone,
        terms=tuple(terms),
        excluded=tuple(excluded),
        attributes=tuple(attributes),
        excluded_attributes=tuple(excluded_attributes),
        service=service or None,
        status=status,
        error=error,
        min_duration_ns=min_duration,
        max_duration_ns=max_duration,
        since_ns=since_ns,
        until_ns=until_ns,
    )


_EXAMPLES = {"service": "checkout", "status": "5xx", "since": "1h", "until": "2026-12-01T10:00:00Z"}
