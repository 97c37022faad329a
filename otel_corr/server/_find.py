"""``Store.find``: one query of the search language (``_search``) run against the store's indexes.

How a query runs:

1. IDs.  A token in a trace- or span-ID form names a trace (the span ID through ``span_attrs``);
   a query of one bare token is also tried as a request ID.  If that names a trace, the answer
   is that trace, opened directly.
2. Otherwise one clause *drives*: the one expected to match the fewest rows (FTS5's document
   counts, from ``fts5vocab``), among the words (``texts``), the ``key=value`` clauses
   (``span_attrs``) and, when there is neither, the span columns (service, status, duration on
   the ``spans`` indexes).  The driver walks the time window newest first, in slices of row IDs
   (the ``batches`` table maps each commit's rows to its time range), so the first results come
   from the first slice and a common word costs no more than a rare one.
3. Each trace the driver meets is checked against every other clause: the other words in its
   log lines and events (an FTS5 lookup bounded to the trace's own rows), the span clauses on one
   of its spans (decoded: every index hit is confirmed), and the exclusions.  The search stops at
   ``limit`` traces.

Every value is a bound parameter; text reaches FTS5 only as a quoted phrase (``fts_phrase``).
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from ._index import (
    EVENT_SLOTS,
    attribute_tokens,
    event_line,
    event_of,
    event_rowid,
    highlights,
    indexed,
    log_line,
    span_id_token,
    value_matches,
    words,
)
from ._model import Span
from ._search import Query, SearchError, Term, fts_phrase, parse_id

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["FindResult", "Found", "Match", "find"]

#: Rows (spans + log records) in one slice of the time window.
_SLICE_ROWS = 40_000
#: Hits of the driving clause fetched at a time.
_CHUNK = 256
#: The longest text a match shows (a log line can be long; the highlight must fall inside).
_MAX_TEXT = 2000
_MAX_MATCHES = 3
#: Hits below which a clause is walked in one pass over the window rather than slice by slice.
_RARE = 4096
#: The most rows of a second clause whose traces are collected up front to skip the rest (see ``run``).
_PREFILTER_CAP = 60_000
#: Row IDs per statement when collecting such a set.
_SET_CHUNK = 4096
#: The most failed spans counted to weigh the span driver against the others.
_COUNT_CAP = 100_000
#: The condition of the ``spans_failed`` partial index, word for word (SQLite matches it literally).
_FAILED = "(s.status = 2 OR s.http_status >= 400)"


class Match(NamedTuple):
    """Where a trace matched: a log line, an event, an attribute, a span or its ID."""

    kind: str
    span_id: bytes | None
    time_ns: int
    text: str
    highlights: tuple[tuple[int, int], ...]


class Found(NamedTuple):
    """A trace the search found, with its entry span (the list row) and up to three matches."""

    trace_id: bytes
    entry: Span
    matches: tuple[Match, ...]


class FindResult(NamedTuple):
    found: list[Found]
    #: The trace a lone ID named: the page and the CLI open it directly.
    opened: bytes | None
    #: False when the query's time budget ran out before the window was searched.
    complete: bool


class _Hit(NamedTuple):
    """A row the driving clause matched: ordered by time, newest first (``key`` is minus the time)."""

    key: int
    trace_id: bytes
    matched: Callable[[], Match | None]


class _SpanRow(NamedTuple):
    rowid: int
    trace_id: bytes
    span_id: bytes
    resource_id: int
    service: str
    name: str
    start_ns: int
    duration_ns: int
    status: int
    http_status: int | None
    detail: bytes


_SPAN_ROW = (
    "SELECT s.rowid, s.trace_id, s.span_id, s.resource_id, s.service, s.name, s.start_ns, s.duration_ns, s.status,"
    " s.http_status, s.detail FROM spans s"
)


def _phrase(term: Term) -> str:
    return fts_phrase(term.text) + (" *" if term.prefix else "")


class _Run:
    def __init__(self, store: Store, query: Query, limit: int) -> None:
        self.store = store
        self.conn = store.read_connection()
        self.query = query
        self.limit = limit
        self.found: list[Found] = []
        self.seen: set[bytes] = set()
        self._resources: dict[int, dict[str, Any]] | None = None
        #: The traces each ID-form token names (by trace ID, or by a span ID).
        self.named: dict[str, list[bytes]] = {}
        self.entries: dict[bytes, Span | None] = {}
        self.traces: dict[bytes, list[_SpanRow]] = {}
        self.current_rows: dict[bytes, set[int]] = {}
        self.decoded = 0
        #: When set, the only traces that can match (see ``run``): the others are skipped unchecked.
        self.prefilter: set[bytes] | None = None
        self.words = [(t.text, t.prefix) for t in query.terms] + [(i, False) for i in query.ids]

    # --- small reads --------------------------------------------------------------------------

    def resources(self) -> dict[int, dict[str, Any]]:
        if self._resources is None:
            self._resources = {
                rid: json.loads(text) for rid, text in self.conn.execute("SELECT id, attributes FROM resources")
            }
        return self._resources

    def fts(self, table: str, match: str, low: int, high: int, *, ascending: bool = False) -> Iterator[int]:
        """Row IDs of ``table`` matching ``match`` within [low, high], highest first (or lowest: ``ascending``).

        Newest first is highest first for log IDs and span rows, lowest first for event rows
        (negative: see ``_index.event_rowid``).
        """
        try:
            cursor = self.conn.execute(
                f"SELECT rowid FROM {table} WHERE {table} MATCH :match AND rowid BETWEEN :low AND :high"
                f" ORDER BY rowid {'ASC' if ascending else 'DESC'}",
                {"match": match, "low": low, "high": high},
            )
        except sqlite3.OperationalError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                return  # a phrase FTS5 cannot take matches nothing (every token is quoted: it should not happen)
            raise
        for (rowid,) in cursor:
            yield rowid

    def entry(self, trace_id: bytes) -> Span | None:
        """The trace's entry span (``Store.entry_span``), read once per search."""
        if trace_id not in self.entries:
            self.entries[trace_id] = self.store.entry_span(trace_id)
        return self.entries[trace_id]

    def span_rows(self, where: str, params: dict[str, Any]) -> list[_SpanRow]:
        return [_SpanRow(*r) for r in self.conn.execute(f"{_SPAN_ROW} {where}", params)]

    def trace_spans(self, trace_id: bytes) -> list[_SpanRow]:
        """The trace's spans as ``Store.trace`` reads them back: a span stored twice (a retried batch)
        counts once, as its last copy in (start, row) order (read once per search)."""
        rows = self.traces.get(trace_id)
        if rows is None:
            latest: dict[bytes, _SpanRow] = {}
            for row in self.span_rows(
                "JOIN (SELECT DISTINCT first_row, last_row FROM traces WHERE trace_id = :trace) t"
                " ON s.rowid BETWEEN t.first_row AND t.last_row WHERE s.trace_id = :trace ORDER BY s.start_ns, s.rowid",
                {"trace": trace_id},
            ):
                latest[row.span_id] = row
            rows = self.traces[trace_id] = list(latest.values())
        return rows

    def current(self, row: _SpanRow) -> bool:
        """Whether a span row is the copy of its span that the trace reads back (not an earlier duplicate)."""
        rows = self.current_rows.get(row.trace_id)
        if rows is None:
            rows = self.current_rows[row.trace_id] = {r.rowid for r in self.trace_spans(row.trace_id)}
        return row.rowid in rows

    def attributes(self, row: _SpanRow) -> dict[str, Any]:
        # Decoding is Python, where SQLite's progress handler cannot stop it: the deadline is
        # looked at here too, so a trace of 100k spans cannot run the query past its budget.
        self.decoded += 1
        if self.decoded % 256 == 0 and self.store.past_budget():
            raise sqlite3.OperationalError("interrupted")
        return self.store.span_attributes(row.detail)

    # --- clauses on one span ---------------------------------------------------------------------

    def span_ok(self, row: _SpanRow) -> Match | None:
        """The span clauses on this span: a match naming the first attribute clause, or None."""
        q = self.query
        if q.service is not None and row.service != q.service:
            return None
        if not self.in_window(row.start_ns):
            return None
        if q.error and row.status != 2:
            return None
        if q.status is not None and not (row.http_status is not None and q.status[0] <= row.http_status < q.status[1]):
            return None
        if q.min_duration_ns is not None and row.duration_ns < q.min_duration_ns:
            return None
        if q.max_duration_ns is not None and row.duration_ns > q.max_duration_ns:
            return None
        if not q.attributes:
            return Match("span", row.span_id, row.start_ns, _span_text(row), ())
        resource = self.resources().get(row.resource_id, {})
        attributes: dict[str, Any] | None = None  # decoded only if a clause is not met by the resource
        for key, text in q.attributes:
            if key in resource and value_matches(resource[key], text):
                continue
            if attributes is None:
                attributes = self.attributes(row)
            if not (key in attributes and value_matches(attributes[key], text)):
                return None
        key, text = q.attributes[0]
        shown = f"{key}={text}"
        return Match("attribute", row.span_id, row.start_ns, shown, ((0, len(shown)),))

    def excluded_attribute(self, rows: list[_SpanRow]) -> bool:
        """Whether a span of the trace in the window has an excluded ``key=value`` (``-word`` looks there too)."""
        for row in rows:
            if not self.in_window(row.start_ns):
                continue
            attributes = self.attributes(row)
            resource = self.resources().get(row.resource_id, {})
            for key, text in self.query.excluded_attributes:
                for source in (attributes, resource):
                    if key in source and value_matches(source[key], text):
                        return True
        return False

    # --- text in one trace ---------------------------------------------------------------------

    def text_in_trace(self, trace_id: bytes, term: Term) -> Match | None:
        """A log line or event of the trace, in the window, with ``term``; None if there is none.

        FTS5 lookups bounded to the trace's own row ranges (its log IDs; its spans' event rows).
        """
        match = _phrase(term)
        for first, last in self.conn.execute(
            "SELECT DISTINCT first_id, last_id FROM log_ranges WHERE trace_id = :trace", {"trace": trace_id}
        ):
            for rowid in self.fts("texts", match, first, last):
                found = self.log_match(rowid, trace_id)
                if found is not None and self.in_window(found.time_ns):
                    return found
        for first, last in self.conn.execute(
            "SELECT DISTINCT first_row, last_row FROM traces WHERE trace_id = :trace", {"trace": trace_id}
        ):
            for rowid in self.fts("texts", match, event_rowid(last, EVENT_SLOTS - 1), event_rowid(first, 0)):
                row, slot = event_of(rowid)
                for span in self.span_rows("WHERE s.rowid = :row", {"row": row}):
                    if span.trace_id == trace_id and self.in_window(span.start_ns) and self.current(span):
                        return self.event_match(span, slot)
        return None

    def log_match(self, log_id: int, trace_id: bytes | None = None) -> Match | None:
        """The log record as a match (None if it is gone, or is not of ``trace_id`` when given)."""
        row = self.conn.execute(
            "SELECT span_id, time_ns, record, trace_id FROM logs WHERE id = :id", {"id": log_id}
        ).fetchone()
        if row is None or (trace_id is not None and row[3] != trace_id):
            return None
        _, body, _, _, attributes = self.store.log_record(row[2])
        text = log_line(body, attributes)[:_MAX_TEXT]
        return Match("log", row[0], row[1], text, highlights(text, self.words))

    def current_event(self, row: _SpanRow, slot: int) -> Match | None:
        """:meth:`event_match` of a span row that is its span's current copy, else None."""
        return self.event_match(row, slot) if self.current(row) else None

    def event_match(self, row: _SpanRow, slot: int) -> Match:
        """The span's event (or status message) that matched, as a line."""
        line, at = event_line(self.store.unpack_detail(row.detail), slot)
        text = line[:_MAX_TEXT]
        return Match("event", row.span_id, row.start_ns if at is None else at, text, highlights(text, self.words))

    # --- a candidate trace -----------------------------------------------------------------------

    def check(self, trace_id: bytes, first: Match, driver: object) -> None:
        """Add the trace if every clause other than the driver holds."""
        if trace_id in self.seen:
            return
        self.seen.add(trace_id)
        if self.prefilter is not None and trace_id not in self.prefilter:
            return
        q = self.query
        matches = [first]
        rows: list[_SpanRow] | None = None
        if q.span_filters:
            # On the spans as read back (a driver's row may be an earlier copy of a retried span).
            rows = self.trace_spans(trace_id)
            hit = next((m for m in map(self.span_ok, rows) if m is not None), None)
            if hit is None:
                return
            if driver != "span":
                matches.append(hit)
        if q.excluded_attributes:
            rows = self.trace_spans(trace_id) if rows is None else rows
            if self.excluded_attribute(rows):
                return
        for token in q.ids:  # the trace it names (with a span in the window), or a line with it
            named = trace_id in self.named.get(token, ())
            if named and (q.since_ns is not None or q.until_ns is not None):
                rows = self.trace_spans(trace_id) if rows is None else rows
                named = any(self.in_window(row.start_ns) for row in rows)
            if not named and self.text_in_trace(trace_id, Term(token)) is None:
                return
        for term in q.terms:
            if term is driver:
                continue
            found = self.text_in_trace(trace_id, term)
            if found is None:
                return
            if found.kind in ("log", "event") and len(matches) < _MAX_MATCHES and found not in matches:
                matches.append(found)
        for term in q.excluded:
            if self.text_in_trace(trace_id, term) is not None:
                return
        entry = self.entry(trace_id)
        if entry is None:
            return
        matches.sort(key=lambda m: m.kind in ("attribute", "span"))  # the text a user typed first
        self.found.append(Found(trace_id, entry, tuple(matches[:_MAX_MATCHES])))

    @property
    def full(self) -> bool:
        return len(self.found) >= self.limit

    # --- time slices -------------------------------------------------------------------------------

    def slices(self, whole: bool = False) -> Iterator[tuple[int, int, int, int]]:
        """(first span row, last span row, first log row, last log row) of the window, newest first.

        Consecutive commits are merged up to ``_SLICE_ROWS`` rows (``whole``: into one slice, for
        a clause so rare that walking its few hits at once beats a lookup per slice).  A commit
        with no spans (or no logs) has an empty range (first > last), which adds nothing.
        """
        size = 2**62 if whole else _SLICE_ROWS
        q = self.query
        params = {
            "since": q.since_ns if q.since_ns is not None else -(2**63),
            "until": q.until_ns if q.until_ns is not None else 2**63 - 1,
        }
        empty = (2**62, -(2**62))
        spans, logs, rows = empty, empty, 0
        for first_span, last_span, first_log, last_log in self.conn.execute(
            "SELECT first_span, last_span, first_log, last_log FROM batches"
            " WHERE max_ns >= :since AND min_ns <= :until ORDER BY id DESC",
            params,
        ):
            if first_span <= last_span:
                spans = (min(spans[0], first_span), max(spans[1], last_span))
                rows += last_span - first_span + 1
            if first_log <= last_log:
                logs = (min(logs[0], first_log), max(logs[1], last_log))
                rows += last_log - first_log + 1
            if rows >= size:
                yield spans[0], spans[1], logs[0], logs[1]
                spans, logs, rows = empty, empty, 0
        if rows:
            yield spans[0], spans[1], logs[0], logs[1]

    def in_window(self, time_ns: int) -> bool:
        q = self.query
        return (q.since_ns is None or time_ns >= q.since_ns) and (q.until_ns is None or time_ns <= q.until_ns)

    # --- drivers --------------------------------------------------------------------------------------

    def log_hits(self, match: str, first: int, last: int) -> Iterator[_Hit]:
        """Log records matching ``match`` among IDs [first, last], newest commit first."""
        if first > last:  # a slice of spans only
            return
        for chunk in _chunks(self.fts("texts", match, first, last)):
            for log_id, trace_id, time_ns in self.conn.execute(
                "SELECT id, trace_id, time_ns FROM logs WHERE id IN (SELECT value FROM json_each(:ids))"
                " ORDER BY id DESC",
                {"ids": json.dumps(chunk)},
            ):
                if trace_id is not None and self.in_window(time_ns):
                    yield _Hit(-time_ns, trace_id, partial(self.log_match, log_id))

    def event_hits(self, match: str, first: int, last: int) -> Iterator[_Hit]:
        """Spans whose events or status message match ``match`` among rows [first, last], newest commit first."""
        if first > last:  # a slice of log records only
            return
        rowids = self.fts("texts", match, event_rowid(last, EVENT_SLOTS - 1), event_rowid(first, 0), ascending=True)
        for chunk in _chunks(rowids):
            # Span row -> its lowest matching slot (a span's slots come highest first: the last one stays).
            slots = dict(map(event_of, chunk))
            rows = self.span_rows(
                "WHERE s.rowid IN (SELECT value FROM json_each(:ids)) ORDER BY s.rowid DESC",
                {"ids": json.dumps(list(slots))},
            )
            for row in rows:
                if self.in_window(row.start_ns):
                    yield _Hit(-row.start_ns, row.trace_id, partial(self.current_event, row, slots[row.rowid]))

    def drive_text(self, term: Term, rare: bool = False) -> None:
        """Walk the log lines and events with ``term``, newest first; check each new trace they belong to.

        The two streams are read lazily, a chunk at a time, and merged by time: a common word
        costs the hits up to the ``limit``-th trace that passes, not every hit of the slice.
        """
        match = _phrase(term)
        for first_span, last_span, first_log, last_log in self.slices(whole=rare):
            hits = heapq.merge(
                self.log_hits(match, first_log, last_log),
                self.event_hits(match, first_span, last_span),
                key=_hit_time,
            )
            for hit in hits:
                if hit.trace_id in self.seen or (self.prefilter is not None and hit.trace_id not in self.prefilter):
                    continue  # before the line is decoded: most hits of a common word end here
                first = hit.matched()
                if first is not None:
                    self.check(hit.trace_id, first, term)
                if self.full:
                    return

    def drive_attribute(self, key: str, text: str, rare: bool = False) -> None:
        match = " OR ".join(fts_phrase(t) for t in attribute_tokens(key, text))
        for first_span, last_span, _, _ in self.slices(whole=rare):
            for chunk in _chunks(self.fts("span_attrs", match, first_span, last_span)):
                rows = self.span_rows(
                    "WHERE s.rowid IN (SELECT value FROM json_each(:ids)) ORDER BY s.start_ns DESC",
                    {"ids": json.dumps(chunk)},
                )
                if self.walk_spans(rows):
                    return

    def drive_spans(self) -> None:
        """Service/status/duration (and resource attributes) alone: the span indexes, newest first."""
        source, where, params = self.span_filters()
        cursor = self.conn.execute(
            f"{_SPAN_ROW.replace('spans s', source)} WHERE {' AND '.join(where)} ORDER BY s.start_ns DESC", params
        )
        self.walk_spans(_SpanRow(*raw) for raw in cursor)

    def walk_spans(self, rows: Iterable[_SpanRow]) -> bool:
        """Check the trace of each span that meets the span clauses, in order; True once the search is full."""
        for row in rows:
            if row.trace_id in self.seen or (self.prefilter is not None and row.trace_id not in self.prefilter):
                continue  # before the span is decoded
            hit = self.span_ok(row)  # the window too
            if hit is not None:
                self.check(row.trace_id, hit, "span")
                if self.full:
                    return True
        return False

    def span_filters(self) -> tuple[str, list[str], dict[str, Any]]:
        """(source, conditions, parameters) of the query's span columns: window, service, status, duration."""
        q = self.query
        where = ["s.start_ns >= :since", "s.start_ns <= :until"]
        params: dict[str, Any] = self.window()
        source = "spans s"
        if self.failed_only:
            # The partial index of failed spans (a few percent of them): its condition word for word.
            source = "spans s INDEXED BY spans_failed"
            where.append(_FAILED)
        if q.service is not None:
            where.append("s.service = :service")
            params["service"] = q.service
        if q.error:
            where.append("s.status = 2")
        if q.status is not None:
            where.append("s.http_status >= :low AND s.http_status < :high")
            params["low"], params["high"] = q.status
        if q.min_duration_ns is not None:
            where.append("s.duration_ns >= :min_duration")
            params["min_duration"] = q.min_duration_ns
        if q.max_duration_ns is not None:
            where.append("s.duration_ns <= :max_duration")
            params["max_duration"] = q.max_duration_ns
        return source, where, params

    # --- IDs ----------------------------------------------------------------------------------------------

    def id_traces(self) -> list[bytes]:
        """The traces the query's ID-form tokens (and a lone request ID) name, newest first."""
        out: list[bytes] = []
        for token in self.query.ids:
            parsed = parse_id(token)
            if parsed is None:
                continue
            kind, raw = parsed
            named = self.named.setdefault(token, [])
            if kind == "trace":
                if self.entry(raw) is not None:
                    named.append(raw)
            else:
                for rowid in self.fts("span_attrs", fts_phrase(span_id_token(raw)), -(2**63), 2**63 - 1):
                    for row in self.span_rows("WHERE s.rowid = :row", {"row": rowid}):
                        if row.span_id == raw and row.trace_id not in named:
                            named.append(row.trace_id)
            out.extend(t for t in named if t not in out)
        if self.query.lone and not out:
            out.extend(self.store.traces_for_request(self.query.lone, limit=self.limit))
        return out

    def run(self) -> bytes | None:
        q = self.query
        named = self.id_traces()
        if q.lone and named:
            parsed = parse_id(q.lone)
            span_id = parsed[1] if parsed is not None and parsed[0] == "span" else None  # opens on that span
            for trace_id in named[: self.limit]:
                entry = self.entry(trace_id)
                if entry is not None and trace_id not in self.seen:
                    self.seen.add(trace_id)
                    self.found.append(Found(trace_id, entry, (Match("id", span_id, entry.start_ns, q.lone, ()),)))
            return named[0]
        for token, traces in self.named.items():
            for trace_id in traces:
                self.check(trace_id, Match("id", None, 0, token, ()), "id")
            if self.full:
                return None
        # The driver: the clause with the fewest rows to walk.  Each option: (rows at most, walk it,
        # the traces it holds for in the window).
        options: list[tuple[int, Callable[[], None], Callable[[], set[bytes]]]] = []
        for term in (*q.terms, *(Term(i) for i in q.ids)):
            words = _vocab_terms(term)
            if words:
                count = min(self.vocab("texts", w, term.prefix and w == words[-1]) for w in words)
                # The vocabulary is looked up with Python's folding of the words; should it differ
                # from FTS5's for some character, FTS5 itself has the last word on "none at all".
                if not count and next(self.fts("texts", _phrase(term), -(2**63), 2**63 - 1), None) is not None:
                    count = 1
                options.append((count, partial(self.drive_text, term, count <= _RARE), partial(self.text_traces, term)))
        resources = self.resources()
        for key, text in q.attributes:
            if any(key in r and value_matches(r[key], text) for r in resources.values()) or not indexed(text):
                continue  # a resource attribute (spans carry no token for it), or a value without a token
            tokens = attribute_tokens(key, text)
            count = sum(self.vocab("span_attrs", t, False) for t in tokens)
            options.append(
                (
                    count,
                    partial(self.drive_attribute, key, text, count <= _RARE),
                    partial(self.attribute_traces, key, text),
                )
            )
        if self.failed_only:
            options.append((self.failed_spans(), self.drive_spans, self.failed_traces))
        if not options:
            if q.span_filters:
                self.drive_spans()
            return None
        options.sort(key=lambda o: o[0])
        count, drive, _ = options[0]
        if not count:  # a word or value no row holds: nothing to walk
            return None
        if count > _RARE and len(options) > 1 and options[1][0] <= _PREFILTER_CAP:
            # A common driver and a second clause of at most a few tens of thousands of rows: the
            # traces that clause holds for, collected at once, let the walk skip every other trace
            # without checking it (a phrase and a status that never meet: one set, no checks).
            self.prefilter = options[1][2]()
        drive()
        return None

    def text_traces(self, term: Term) -> set[bytes]:
        """Every trace with a log line or event in the window holding ``term`` (a superset is fine)."""
        match = _phrase(term)
        found: set[bytes] = set()
        for first_span, last_span, first_log, last_log in self.slices(whole=True):
            for chunk in _chunks(self.fts("texts", match, first_log, last_log), _SET_CHUNK):
                found.update(
                    r[0]
                    for r in self.conn.execute(
                        "SELECT trace_id FROM logs WHERE id IN (SELECT value FROM json_each(:ids))"
                        " AND time_ns >= :since AND time_ns <= :until AND trace_id IS NOT NULL",
                        {"ids": json.dumps(chunk), **self.window()},
                    )
                )
            if first_span <= last_span:
                low, high = event_rowid(last_span, EVENT_SLOTS - 1), event_rowid(first_span, 0)
                for chunk in _chunks(self.fts("texts", match, low, high), _SET_CHUNK):
                    rows = sorted({event_of(r)[0] for r in chunk})
                    found.update(self.span_traces(rows))
        return found

    def attribute_traces(self, key: str, text: str) -> set[bytes]:
        """Every trace with a span in the window carrying a ``key=value`` token (a superset is fine)."""
        match = " OR ".join(fts_phrase(t) for t in attribute_tokens(key, text))
        found: set[bytes] = set()
        for first_span, last_span, _, _ in self.slices(whole=True):
            for chunk in _chunks(self.fts("span_attrs", match, first_span, last_span), _SET_CHUNK):
                found.update(self.span_traces(chunk))
        return found

    def span_traces(self, rows: list[int]) -> set[bytes]:
        return {
            r[0]
            for r in self.conn.execute(
                "SELECT trace_id FROM spans WHERE rowid IN (SELECT value FROM json_each(:ids))"
                " AND start_ns >= :since AND start_ns <= :until",
                {"ids": json.dumps(rows), **self.window()},
            )
        }

    def failed_traces(self) -> set[bytes]:
        """Every trace with a failed span in the window that meets the span columns (service, status, duration)."""
        source, where, params = self.span_filters()
        return {r[0] for r in self.conn.execute(f"SELECT s.trace_id FROM {source} WHERE {' AND '.join(where)}", params)}

    def window(self) -> dict[str, int]:
        q = self.query
        return {
            "since": q.since_ns if q.since_ns is not None else -(2**63),
            "until": q.until_ns if q.until_ns is not None else 2**63 - 1,
        }

    @property
    def failed_only(self) -> bool:
        """Whether the span clauses ask for failed spans only (an error status, or HTTP 4xx/5xx)."""
        q = self.query
        return q.error or (q.status is not None and q.status[0] >= 400)

    def failed_spans(self) -> int:
        """How many failed spans in the window meet the span columns (at most _COUNT_CAP): the span driver's cost."""
        source, where, params = self.span_filters()
        row = self.conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {' AND '.join(where)} LIMIT :cap)",
            {**params, "cap": _COUNT_CAP},
        ).fetchone()
        return int(row[0])

    def vocab(self, table: str, word: str, prefix: bool) -> int:
        if prefix:
            row = self.conn.execute(
                f"SELECT sum(doc) FROM (SELECT doc FROM {table}_vocab WHERE term >= :word AND term < :end LIMIT 1000)",
                {"word": word, "end": word + "\U0010ffff"},
            ).fetchone()
        else:
            row = self.conn.execute(f"SELECT doc FROM {table}_vocab WHERE term = :word", {"word": word}).fetchone()
        return int(row[0] or 0) if row else 0


def _vocab_terms(term: Term) -> list[str]:
    """The words of a term as ``texts_vocab`` holds them (folded like unicode61)."""
    return [w for _, _, w in words(term.text)]


def _span_text(row: _SpanRow) -> str:
    """The span a service/status/duration clause matched, as the list shows it: name, status, duration."""
    parts = [f"{row.service}: {row.name}"]
    if row.http_status is not None:
        parts.append(str(row.http_status))
    if row.status == 2:
        parts.append("error")
    parts.append(f"{row.duration_ns / 1e6:.1f} ms")
    return " ".join(parts)


def _hit_time(hit: _Hit) -> int:
    return hit.key


def _chunks(rowids: Iterator[int], size: int = _CHUNK) -> Iterator[list[int]]:
    chunk: list[int] = []
    for rowid in rowids:
        chunk.append(rowid)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def find(store: Store, query: Query, limit: int) -> FindResult:
    """Run ``query``; past the thread's query budget, answer what was found so far (``complete=False``)."""
    run = _Run(store, query, max(1, limit))
    try:
        opened = run.run()
    except sqlite3.OperationalError as exc:
        if str(exc) != "interrupted":
            raise
        return FindResult(run.found, None, False)
    except OverflowError:  # a number past SQLite's int64 that the parser let through: a bad query, not a 500
        raise SearchError("a number in the query is out of range") from None
    return FindResult(run.found, opened, True)
