"""``ClickHouseStore.find``: the search language (``_search``) on a ClickHouse cluster, with the answers of ``_find``.

SQLite answers from its FTS5 indexes; ClickHouse 18.16 has no token index (no ``hasToken``, no
skip indexes), so here SQL narrows and Python decides:

1. IDs.  A trace-ID token is looked up on its trace's shard; a span-ID token in every shard's
   spans; a query of one bare token is also tried as a request ID (``traces_for_request``).  If
   that names a trace, the answer is that trace, opened directly (as ``_find``).
2. Otherwise one clause *drives*: a word or phrase (log lines and span events), else the span
   clauses (``key=value``, service, status, duration, all on one span).  Its hits are read newest
   first, a page at a time (``ORDER BY time DESC, trace_id DESC`` with a keyset ``LIMIT``), through
   the ``Distributed`` tables; every other positive clause narrows the same query as a shard-local
   ``trace_id IN (...)`` (a trace's spans and logs share a shard: ``cityHash64(trace_id)``), so a
   page holds the traces that pass every prefilter.
3. The prefilters are supersets, never the answer: a word is a folded regular expression (case
   and diacritics as FTS5's ``unicode61`` folds them, ``_index.words``) matched against
   ``logs.body``/``logs.texts`` (v3: the exception's type and message, what SQLite indexes beyond
   the body), run in ``WHERE`` on the rows a cheap ``PREWHERE`` keeps (the word as ASCII without
   case, or a text beyond ASCII: ``_Sql.quick``), and ``spans.detail`` (the serialized span: its events and
   status message are in it as text); ``key=value`` is the attribute's ``KeyValue`` bytes in
   ``spans.detail`` (the same bytes ``_index.attribute_tokens`` hashes for SQLite) or its key in
   the resource.  Each candidate trace is then read whole (its spans and logs, one query per page
   of candidates) and every clause decided in Python with ``_index``'s own functions, as
   ``_find``'s checks decide them; its matches are the lines ``_find`` would show.

With schema v2 (``spans_search``, the copy of spans ordered by service and time), events are
matched in its ``texts`` column and the span clauses on its columns and attribute arrays instead
of ``spans.detail``; a store upgraded from v1 still looks in the details of the spans that start
before the upgrade and up to an hour after it (what replicas still on v1 wrote during a rolling
upgrade never reaches the copy).

A shard down: the fan-out reads run with ``skip_unavailable_shards`` and the shards that
``health()`` finds down are noted (``note_missing``): the answer is what the live shards hold.  A
lone trace ID whose shard is down raises ``ShardUnavailable`` (as ``ClickHouseStore.trace``).

Every value is a bound parameter (binary ones as hex, through ``unhex``); regular expressions are
built here from the query's folded words, each character escaped as ``\\x{...}``.
"""

from __future__ import annotations

import heapq
import json
import weakref
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from ._clickhouse import SCHEMA_VERSION
from ._find import FindResult, Found, Match
from ._index import (
    _fold,
    attribute_encodings,
    event_line,
    highlights,
    indexed,
    log_doc,
    log_line,
    span_docs,
    value_matches,
    words,
)
from ._model import Span
from ._otlp import detail_attributes
from ._search import Query, SearchError, Term, parse_id
from ._store_api import Shortfall, note_missing

if TYPE_CHECKING:
    from ._clickhouse import ClickHouseStore

__all__ = ["find"]

#: The longest text a match shows (as ``_find``).
_MAX_TEXT = 2000
_MAX_MATCHES = 3
#: Hits read in the first page of the driving clause; each next page is four times as many.
_FIRST_PAGE = 64
_MAX_PAGE = 16384
#: The fewest candidate traces read whole in one query (more when more results are wanted).
_MIN_CHUNK = 16
#: Log records of no trace are stored with the all-zero trace ID: never a search result.
_HAS_TRACE = "trace_id != unhex('" + "00" * 16 + "')"
#: Nanoseconds a day partition can be named for (``day`` of ``toDate``: 1970 to 2105).
_DAY_RANGE = (0, 4_000_000_000 * 1_000_000_000)

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, resource, http_status"
)


class _SpanRow(NamedTuple):
    """A span as the checks read it (the columns of ``_SPAN_COLUMNS``)."""

    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    service: str  # decoded (the other text columns stay bytes, as ``ClickHouseStore._decoded`` takes them)
    name: str
    kind: int
    start_ns: int
    duration_ns: int
    status: int
    request_id: bytes
    scope: bytes
    detail: bytes
    resource: bytes
    http_status: int | None


class _LogRow(NamedTuple):
    span_id: bytes
    time_ns: int
    body: str
    attributes: dict[str, Any]


_SPANS_OF = (
    f"SELECT {_SPAN_COLUMNS} FROM {{table}} PREWHERE trace_id IN ({{keys}})"
    " ORDER BY trace_id, start_ns, span_id LIMIT 1 BY trace_id, span_id"
)
_LOGS_OF = (
    "SELECT trace_id, span_id, time_ns, body, attributes FROM {table} PREWHERE trace_id IN ({keys})"
    " ORDER BY time_ns DESC, span_id, body"
)


def _span_row(raw: Sequence[Any]) -> _SpanRow:
    r = list(raw)
    r[3], r[4], r[13] = _text(r[3]), _text(r[4]), r[13] or None
    return _SpanRow._make(r)


def _log_row(raw: Sequence[Any]) -> _LogRow:
    return _LogRow(raw[1], raw[2], _text(raw[3]), json.loads(raw[4]))


class _Trace:
    """A candidate trace read whole: its spans (each once, in (start, span ID) order) and its log records."""

    def __init__(self) -> None:
        self.spans: list[_SpanRow] = []
        self.logs: list[_LogRow] = []  # newest first
        self._attributes: dict[bytes, dict[str, Any]] = {}
        self._resources: dict[bytes, dict[str, Any]] = {}
        self._texts: dict[bytes, list[tuple[int, tuple[str, str, str]]]] = {}

    def attributes(self, row: _SpanRow) -> dict[str, Any]:
        found = self._attributes.get(row.span_id)
        if found is None:
            found = self._attributes[row.span_id] = detail_attributes(row.detail)
        return found

    def resource(self, row: _SpanRow) -> dict[str, Any]:
        found = self._resources.get(row.resource)
        if found is None:
            found = self._resources[row.resource] = json.loads(row.resource) if row.resource else {}
        return found

    def texts(self, row: _SpanRow) -> list[tuple[int, tuple[str, str, str]]]:
        """The span's ``texts`` rows as SQLite indexes them: (slot, (event name, exception type, message))."""
        found = self._texts.get(row.span_id)
        if found is None:
            found = self._texts[row.span_id] = span_docs(row.detail, row.span_id)[1]
        return found


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _phrase_words(text: str) -> list[str]:
    return [w for _, _, w in words(text)]


def _has(tokens: Sequence[str], phrase: Sequence[str], prefix: bool) -> bool:
    """FTS5 phrase semantics on folded tokens: the phrase's words in a row, the last a prefix for ``pay*``."""
    n = len(phrase)
    if not n:
        return False
    for i in range(len(tokens) - n + 1):
        if all(tokens[i + k] == phrase[k] for k in range(n - 1)) and (
            tokens[i + n - 1].startswith(phrase[-1]) if prefix else tokens[i + n - 1] == phrase[-1]
        ):
            return True
    return False


def _says(columns: Sequence[str], phrase: Sequence[str], prefix: bool) -> bool:
    """Whether one of a ``texts`` row's columns holds the phrase (a phrase never runs from one column into the next)."""
    return any(column and _has(_phrase_words(column), phrase, prefix) for column in columns)


# --- the regular expressions a word is prefiltered with ---------------------------------------------------


@cache
def _folding() -> tuple[dict[str, str], frozenset[str]]:
    """Every character that folds (as ``_index.words`` folds: lower case, diacritics removed) into each
    character, and the characters that only come out of a multi-character folding (Hangul jamo, some
    Indic vowel signs), for which no class of single characters is a superset."""
    inverse: dict[str, list[str]] = {}
    multiple: set[str] = set()
    for code in range(0x30000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        folded = _fold(char)
        if len(folded) == 1:
            inverse.setdefault(folded, []).append(char)
        elif folded:
            multiple.update(folded)
    return {k: "".join(v) for k, v in inverse.items()}, frozenset(multiple)


def _word_regex(word: str) -> str | None:
    """A regular expression (re2) that every text whose folded words contain ``word`` (folded) matches,
    or None when there is none to build (then the word narrows nothing)."""
    inverse, multiple = _folding()
    parts = []
    for char in word:
        if char in multiple:
            return None
        variants = inverse.get(char, "") or char
        if char not in variants:
            variants += char
        parts.append("[" + "".join(f"\\x{{{ord(c):X}}}" for c in variants) + "]")
    # Combining marks may follow any letter of decomposed text (folded away by _index.words).
    return "\\p{M}*".join(parts)


class _Pre(str):
    """A condition to run as ``PREWHERE`` (:meth:`_Run.hits`): a cheap superset that ClickHouse
    decides first, so the costly ones (the folded regular expressions) run only on the rows it keeps
    (18.16 evaluates every condition of a ``WHERE`` on every row: no short circuit)."""

    __slots__ = ()


class _Sql:
    """Conditions with their parameters, named ``p0``, ``p1``, ... (all bound, never formatted in)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"%({name})s"

    def word(self, column: str, word: str) -> str:
        """A superset of the rows whose ``column`` holds ``word`` (folded) in a word, or "1"."""
        regex = _word_regex(word)
        return "1" if regex is None else f"match({column}, {self.bind(regex)})"

    def term(self, columns: Sequence[str], term: Term) -> str:
        """Every word of the term in one of the columns (a superset of the phrase in one column)."""
        conditions = []
        for word in _phrase_words(term.text):
            conditions.append("(" + " OR ".join(self.word(c, word) for c in columns) + ")")
        return " AND ".join(conditions) or "0"

    def quick(self, columns: Sequence[str], term: Term) -> _Pre:
        """A cheap superset of :meth:`term`: its longest word (likely the rarest), case-insensitively, in
        one of the columns, or a column with a character beyond ASCII (only there does folding do more
        than lower ASCII case, so only there can a word match that a plain search misses).  One word
        only: each is a scan of every row, and :meth:`term` checks the others on the rows kept."""
        narrowing = [w for w in _phrase_words(term.text) if _word_regex(w) is not None]  # as term() narrows
        if not narrowing:
            return _Pre("1")
        word = max(narrowing, key=len)
        bound = self.bind(word) if word.isascii() else None
        alternatives = [
            *(f"positionCaseInsensitive({c}, {bound}) > 0" for c in columns if bound is not None),
            *(f"lengthUTF8({c}) != length({c})" for c in columns),
        ]
        return _Pre("(" + " OR ".join(alternatives) + ")")

    def window(self, column: str, query: Query) -> list[str]:
        """The time window on ``column`` and on the day partitions it spans (so whole days are skipped)."""
        out = []
        if query.since_ns is not None:
            out.append(f"{column} >= {self.bind(max(query.since_ns, 0))}")
            if _DAY_RANGE[0] <= query.since_ns < _DAY_RANGE[1]:
                out.append(f"day >= toDate(toDateTime(intDiv({self.bind(query.since_ns)}, 1000000000)))")
        if query.until_ns is not None:
            if query.until_ns < 0:
                out.append("0")
            else:
                out.append(f"{column} <= {self.bind(query.until_ns)}")
                if query.until_ns < _DAY_RANGE[1]:
                    out.append(f"day <= toDate(toDateTime(intDiv({self.bind(query.until_ns)}, 1000000000)))")
        return out

    def span_clauses(self, query: Query, *, search_copy: bool = False) -> list[str]:
        """The clauses one span must meet (``_Run.span_ok``) as SQL: exact on columns, a superset for
        ``key=value`` (on ``spans``' details, or on the search copy's attribute arrays)."""
        out = self.window("start_ns", query)
        if query.service is not None:
            out.append(f"service = {self.bind(query.service)}")
        if query.error:
            out.append("status = 2")
        if query.status is not None:
            out.append(f"http_status >= {self.bind(query.status[0])} AND http_status < {self.bind(query.status[1])}")
        if query.min_duration_ns is not None:
            out.append(f"duration_ns >= {self.bind(max(query.min_duration_ns, 0))}")
        if query.max_duration_ns is not None:
            out.append("0" if query.max_duration_ns < 0 else f"duration_ns <= {self.bind(query.max_duration_ns)}")
        for key, text in query.attributes:
            out.append(self.search_attribute(key, text) if search_copy else self.attribute(key, text))
        return out

    def search_attribute(self, key: str, text: str) -> str:
        """:meth:`attribute` on the search copy (schema v2): the span's ``KeyValue`` bytes are ``attr_kv``'s
        elements, the resource's keys ``resource_keys``."""
        from opentelemetry.proto.common.v1.common_pb2 import KeyValue

        in_resource = f"has(resource_keys, {self.bind(key)})"
        if indexed(text):
            values = ", ".join(f"unhex({self.bind(kv.hex())})" for kv in attribute_encodings(key, text))
            return f"(hasAny(attr_kv, [{values}]) OR {in_resource})"
        prefix = self.bind(KeyValue(key=key).SerializeToString().hex())
        return f"(arrayExists(x -> position(x, unhex({prefix})) = 1, attr_kv) OR {in_resource})"

    def attribute(self, key: str, text: str) -> str:
        """A superset of the spans with ``key`` = ``text``: one of the value's ``KeyValue`` encodings in the
        detail (SQLite hashes the same bytes), or the key in the resource's attributes."""
        from opentelemetry.proto.common.v1.common_pb2 import KeyValue

        if indexed(text):
            needles = [kv.hex() for kv in attribute_encodings(key, text)]
        else:  # an array, a map, a NaN: the key, as the KeyValue's first field
            needles = [KeyValue(key=key).SerializeToString().hex()]
        in_detail = " OR ".join(f"position(detail, unhex({self.bind(n)})) > 0" for n in needles)
        in_resource = f"position(resource, {self.bind(json.dumps(key, ensure_ascii=False) + ':')}) > 0"
        return f"({in_detail} OR {in_resource})"


#: Whether the schema has chsearch's search copy of spans (``spans_search``: v2), which ``ensure_schema``
#: made on every shard before the store opened.
_SEARCH_COPY = SCHEMA_VERSION >= 2
#: A rolling upgrade: replicas still on v1 write spans without the search copy for a while after the
#: first v2 replica migrated the schema; spans up to this long after the migration are looked up in
#: their details too.
_UPGRADE_SLACK_NS = 3600 * 10**9
#: Versions applied further apart than this were applied by two starts: the store was upgraded (a new
#: store applies every migration in one start, within a second or two).
_UPGRADE_GAP_NS = 10 * 10**9
_V1_UNTIL: weakref.WeakKeyDictionary[Any, tuple[int | None]] = weakref.WeakKeyDictionary()


def _v1_until(store: ClickHouseStore, read: Any) -> int | None:
    """For a store upgraded from v1: the start time before which a span may be missing from the search copy,
    or be in it without texts and attributes (the migration's copy of the v1 spans; what replicas still on
    v1 write during a rolling upgrade), plus :data:`_UPGRADE_SLACK_NS`.  None for a store made at v2."""
    known = _V1_UNTIL.get(store)
    if known is None:
        rows = read(
            f"SELECT version, min(applied_ns) FROM {store.url.database}.schema_version"
            " WHERE version IN (1, 2) GROUP BY version",
            {},
        )
        applied = {int(v): int(t) for v, t in rows}
        upgraded = 1 in applied and 2 in applied and applied[2] - applied[1] > _UPGRADE_GAP_NS
        known = _V1_UNTIL[store] = (applied[2] + _UPGRADE_SLACK_NS if upgraded else None,)
    return known[0]


class _Stop(Exception):
    """The query's budget ran out: answer what was found (``complete`` False)."""


class _Run:
    def __init__(self, store: ClickHouseStore, query: Query, limit: int) -> None:
        self.store = store
        self.query = query
        self.limit = limit
        self.found: list[Found] = []
        self.seen: set[bytes] = set()
        self.named: dict[str, list[bytes]] = {}
        self.words = [(t.text, t.prefix) for t in query.terms] + [(i, False) for i in query.ids]
        self.db = store.url.database
        self._client: Any = None
        #: Traces read on their own shard (the IDs the query names).
        self.keyed: dict[bytes, _Trace] = {}

    # --- reads ---------------------------------------------------------------------------------

    def fanout(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A read across shards through the ``Distributed`` tables, on a live shard, skipping the down ones.

        The first one asks every shard whether it answers and notes the down ones (``note_missing``):
        their rows are missing from the answer.  A shard that stops answering during the search is
        noted, and the read runs again on the live ones.
        """
        if self.store.past_budget():
            raise _Stop
        for attempt in range(2):
            if self._client is None or attempt:
                self._connect()
            if self._client is None:
                return []  # no shard answers: nothing to search, every shard noted
            settings = {**self.store.query_settings(), "skip_unavailable_shards": 1}
            try:
                rows: list[tuple[Any, ...]] = self._client.execute(sql, params, settings=settings)
            except self.store._unavailable():
                if attempt:
                    raise
                continue
            return rows
        return []  # unreachable: the loop returns or raises

    def _connect(self) -> None:
        states = self.note_down()
        live = [s for s in self.store.shards if any(t.number == s.number and t.up for t in states)]
        self._client = self.store._on(live[0]) if live else None

    def note_down(self) -> list[Any]:
        """Ask every shard whether it answers; note the down ones (their rows are missing)."""
        states = self.store.health()
        down = [Shortfall(s.number, s.address, s.error) for s in states if not s.up]
        if down:
            note_missing(down)
        return states

    def table(self, name: str) -> str:
        return f"{self.db}.{name}"

    def load(self, trace_ids: Sequence[bytes]) -> dict[bytes, _Trace]:
        """The traces read whole, across shards: their spans (each span once) and, when the query has
        text, their log records (traces read by :meth:`load_keyed` before are not read again)."""
        out = {t: self.keyed.get(t) or _Trace() for t in trace_ids}
        wanted = [t for t in trace_ids if t not in self.keyed]
        if not wanted:
            return out
        sql = _Sql()
        keys = ", ".join(f"unhex({sql.bind(t.hex())})" for t in wanted)
        for raw in self.fanout(_SPANS_OF.format(table=self.table("spans"), keys=keys), sql.params):
            row = _span_row(raw)
            out[row.trace_id].spans.append(row)
        if self.query.terms or self.query.excluded or self.query.ids:
            for raw in self.fanout(_LOGS_OF.format(table=self.table("logs"), keys=keys), sql.params):
                out[raw[0]].logs.append(_log_row(raw))
        return out

    def load_keyed(self, trace_id: bytes) -> _Trace:
        """One trace read whole on its own shard (``ShardUnavailable`` when that shard does not answer):
        an ID's trace is complete or an error, never a partial answer."""
        trace = self.keyed.get(trace_id)
        if trace is not None:
            return trace
        settings = self.store.query_settings()
        key = {"p0": trace_id.hex()}

        def read(client: Any, suffix: str) -> _Trace:
            found = _Trace()
            keys = "unhex(%(p0)s)"
            spans = client.execute(
                _SPANS_OF.format(table=self.table("spans") + suffix, keys=keys), key, settings=settings
            )
            found.spans = [_span_row(raw) for raw in spans]
            if found.spans:  # no spans, no trace: its logs do not matter
                logs = client.execute(
                    _LOGS_OF.format(table=self.table("logs") + suffix, keys=keys), key, settings=settings
                )
                found.logs = [_log_row(raw) for raw in logs]
            return found

        trace = self.keyed[trace_id] = self.store._keyed(trace_id, f"trace {trace_id.hex()}", read)
        return trace

    # --- the checks on one trace (``_find._Run``'s, on a trace read whole) ------------------------

    def in_window(self, time_ns: int) -> bool:
        q = self.query
        return (q.since_ns is None or time_ns >= q.since_ns) and (q.until_ns is None or time_ns <= q.until_ns)

    def span_ok(self, trace: _Trace, row: _SpanRow) -> Match | None:
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
        resource = trace.resource(row)
        for key, text in q.attributes:
            if key in resource and value_matches(resource[key], text):
                continue
            attributes = trace.attributes(row)
            if not (key in attributes and value_matches(attributes[key], text)):
                return None
        key, text = q.attributes[0]
        shown = f"{key}={text}"
        return Match("attribute", row.span_id, row.start_ns, shown, ((0, len(shown)),))

    def excluded_attribute(self, trace: _Trace) -> bool:
        for row in trace.spans:
            if not self.in_window(row.start_ns):
                continue
            for key, text in self.query.excluded_attributes:
                for source in (trace.attributes(row), trace.resource(row)):
                    if key in source and value_matches(source[key], text):
                        return True
        return False

    def log_match(self, log: _LogRow) -> Match:
        text = log_line(log.body, log.attributes)[:_MAX_TEXT]
        return Match("log", log.span_id or None, log.time_ns, text, highlights(text, self.words))

    def event_match(self, row: _SpanRow, slot: int) -> Match:
        line, at = event_line(row.detail, slot)
        text = line[:_MAX_TEXT]
        return Match("event", row.span_id, row.start_ns if at is None else at, text, highlights(text, self.words))

    def log_lines(self, trace: _Trace, term: Term) -> Iterator[Match]:
        """The trace's log lines in the window with ``term``, newest first."""
        phrase = _phrase_words(term.text)
        for log in trace.logs:
            if self.in_window(log.time_ns) and _says(log_doc(log.body, log.attributes), phrase, term.prefix):
                yield self.log_match(log)

    def event_lines(self, trace: _Trace, term: Term) -> Iterator[tuple[int, Match]]:
        """(span start, match) of the trace's span events and status messages with ``term``, its spans in
        the window in start order (an event counts at its span's start, as SQLite indexes it)."""
        phrase = _phrase_words(term.text)
        for row in trace.spans:
            if not self.in_window(row.start_ns):
                continue
            for slot, columns in trace.texts(row):
                if _says(columns, phrase, term.prefix):
                    yield row.start_ns, self.event_match(row, slot)
                    break  # the span's first matching slot, as SQLite's lookup of a span's rows

    def text_in_trace(self, trace: _Trace, term: Term) -> Match | None:
        """A log line (newest first) or else an event of the trace, in the window, with ``term``."""
        line = next(self.log_lines(trace, term), None)
        if line is not None:
            return line
        event = next(self.event_lines(trace, term), None)
        return None if event is None else event[1]

    def newest_line(self, trace: _Trace, term: Term) -> Match | None:
        """The driving term's first hit in the walk: the trace's newest line or event with it (a log line
        first at equal times, as ``_find`` merges the two)."""
        events = sorted(self.event_lines(trace, term), key=lambda pair: -pair[0])
        merged = heapq.merge(
            ((-m.time_ns, m) for m in self.log_lines(trace, term)),
            ((-start, m) for start, m in events),
            key=lambda pair: pair[0],
        )
        return next((m for _, m in merged), None)

    def check(self, trace_id: bytes, trace: _Trace, first: Match | None, driver: object) -> None:
        """Add the trace if every clause holds (``_find._Run.check``, the driver's match first)."""
        q = self.query
        if not trace.spans:
            return  # gone (retention), or on a shard that stopped answering
        if first is None:
            if isinstance(driver, Term):
                first = self.newest_line(trace, driver)
            elif driver == "span":
                # The newest span that meets the span clauses (the walk goes newest first).
                first = next((m for m in (self.span_ok(trace, r) for r in reversed(trace.spans)) if m), None)
            if first is None:
                return
        matches = [first]
        if q.span_filters:
            hit = next((m for m in (self.span_ok(trace, r) for r in trace.spans) if m is not None), None)
            if hit is None:
                return
            if driver != "span":
                matches.append(hit)
        if q.excluded_attributes and self.excluded_attribute(trace):
            return
        for token in q.ids:
            named = trace_id in self.named.get(token, ())
            if named and (q.since_ns is not None or q.until_ns is not None):
                named = any(self.in_window(row.start_ns) for row in trace.spans)
            if not named and self.text_in_trace(trace, Term(token)) is None:
                return
        for term in q.terms:
            if term is driver:
                continue
            found = self.text_in_trace(trace, term)
            if found is None:
                return
            if found.kind in ("log", "event") and len(matches) < _MAX_MATCHES and found not in matches:
                matches.append(found)
        for term in q.excluded:
            if self.text_in_trace(trace, term) is not None:
                return
        matches.sort(key=lambda m: m.kind in ("attribute", "span"))  # the text a user typed first
        self.found.append(Found(trace_id, _entry(self.store, trace), tuple(matches[:_MAX_MATCHES])))

    @property
    def full(self) -> bool:
        return len(self.found) >= self.limit

    # --- IDs -----------------------------------------------------------------------------------------

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
                if self.trace_exists(raw, alone=token == self.query.lone):
                    named.append(raw)
            else:
                sql = _Sql()
                for (trace_id,) in self.fanout(
                    f"SELECT trace_id FROM {self.table('spans')} WHERE span_id = unhex({sql.bind(raw.hex())})"
                    " GROUP BY trace_id ORDER BY min(start_ns), trace_id",
                    sql.params,
                ):
                    if trace_id not in named:
                        named.append(trace_id)
            out.extend(t for t in named if t not in out)
        if self.query.lone and not out:
            from ._clickhouse import ShardUnavailable

            try:
                out.extend(self.store.traces_for_request(self.query.lone, limit=self.limit))
            except ShardUnavailable as exc:
                # A word that may be a request ID: the index's shard is down, the word is still searched.
                note_missing(Shortfall(s.number, s.address, s.error) for s in exc.shards)
        return out

    def trace_exists(self, trace_id: bytes, *, alone: bool) -> bool:
        """Whether a trace has spans: on its shard (a lone ID whose shard is down raises ``ShardUnavailable``;
        an ID among other clauses names nothing then, and the shard is noted as missing)."""
        from ._clickhouse import ShardUnavailable

        try:
            return bool(self.load_keyed(trace_id).spans)
        except ShardUnavailable as exc:
            if alone:
                raise
            note_missing(Shortfall(s.number, s.address, s.error) for s in exc.shards)
            return False

    # --- drivers -----------------------------------------------------------------------------------

    def span_sources(self, sql: _Sql, *, term: Term | None = None) -> list[tuple[str, list[str]]]:
        """(table, conditions) whose rows hold every span with ``term`` in an event (or, without a term,
        every span that may meet the span clauses).

        Schema v1: the spans' details.  Schema v2 (chsearch's search copy, ordered by service and
        time): its ``texts`` and attribute arrays, and the details only for spans stored before the
        copy existed (its migration copied them without texts or attributes).
        """
        q = self.query
        out = []
        v1_until = _v1_until(self.store, self.fanout) if _SEARCH_COPY else None
        if v1_until is not None and q.since_ns is not None and q.since_ns >= v1_until:
            v1_until = None  # the window starts after every span the search copy may lack
        if _SEARCH_COPY:
            if term is not None:
                conditions = [*sql.window("start_ns", q), sql.quick(("texts",), term), sql.term(("texts",), term)]
            else:
                conditions = sql.span_clauses(q, search_copy=True)  # the window included
            out.append(("spans_search", conditions))
        if not _SEARCH_COPY or v1_until is not None:
            if term is not None:
                conditions = [*sql.window("start_ns", q), sql.term(("detail",), term)]
            else:
                conditions = sql.span_clauses(q)
            if v1_until is not None:
                conditions.append(f"start_ns < {sql.bind(v1_until)}")
                if v1_until < _DAY_RANGE[1]:  # whole later days skipped
                    conditions.append(f"day <= toDate(toDateTime(intDiv({sql.bind(v1_until)}, 1000000000)))")
            out.append(("spans", conditions))
        return out

    def narrowing(self, sql: _Sql, driver: object) -> list[str]:
        """Every positive clause but the driver, as shard-local ``trace_id IN (...)`` conditions (prefilters)."""
        q = self.query
        out = []
        for term in q.terms:
            if term is not driver:
                out.append(f"trace_id IN ({self.text_traces(sql, term)})")
        if q.span_filters and driver != "span":
            parts = [
                f"SELECT trace_id FROM {self.table(table + '_local')} WHERE {' AND '.join(where) or '1'}"
                for table, where in self.span_sources(sql)
            ]
            out.append(f"trace_id IN ({' UNION ALL '.join(parts)})")
        return out

    def text_traces(self, sql: _Sql, term: Term) -> str:
        """A shard-local subquery: the traces with a log line or a span event in the window that may hold ``term``."""
        logs = " AND ".join([*sql.window("time_ns", self.query), sql.term(("body", "texts"), term), _HAS_TRACE])
        parts = [f"SELECT trace_id FROM {self.table('logs_local')} WHERE {logs}"]
        for table, where in self.span_sources(sql, term=term):
            parts.append(f"SELECT trace_id FROM {self.table(table + '_local')} WHERE {' AND '.join(where)}")
        return " UNION ALL ".join(parts)

    def hits(self, sources: list[tuple[str, str, list[str]]], params: dict[str, Any]) -> Iterator[list[bytes]]:
        """Pages of the traces of the rows meeting each source's conditions, newest first, as
        (table, time column, conditions): one query per page for all of them (``UNION ALL``, each part
        sorted and limited on its shards), keyset-paged on (time, trace)."""
        page = _FIRST_PAGE
        after: tuple[int, bytes] | None = None
        while True:
            sql = _Sql()
            sql.params.update(params)
            parts = []
            for table, column, where in sources:
                pre = [c for c in where if isinstance(c, _Pre)]
                conditions = [c for c in where if not isinstance(c, _Pre)]
                if after is not None:
                    t, trace = sql.bind(after[0]), sql.bind(after[1].hex())
                    conditions.append(f"({column} < {t} OR ({column} = {t} AND trace_id < unhex({trace})))")
                prewhere = f" PREWHERE {' AND '.join(pre)}" if pre else ""
                parts.append(
                    f"SELECT {column} AS t, trace_id FROM {self.table(table)}{prewhere}"
                    f" WHERE {' AND '.join(conditions) or '1'}"
                    f" ORDER BY t DESC, trace_id DESC LIMIT {page}"
                )
            if len(parts) == 1:
                sql_text = parts[0]
            else:
                union = " UNION ALL ".join(f"SELECT * FROM ({part})" for part in parts)
                sql_text = f"SELECT t, trace_id FROM ({union}) ORDER BY t DESC, trace_id DESC LIMIT {page}"
            rows = self.fanout(sql_text, sql.params)
            yield [trace_id for _, trace_id in rows]
            if len(rows) < page:
                return
            after = (int(rows[-1][0]), rows[-1][1])
            page = min(page * 4, _MAX_PAGE)

    def walk(self, pages: Iterator[list[bytes]], driver: object) -> None:
        """Check the trace of each hit, newest first, until ``limit``: the new traces of a page in chunks of
        what is still wanted (each chunk read whole in one query per table)."""
        for page in pages:
            fresh = [t for t in dict.fromkeys(page) if t not in self.seen]
            while fresh:
                wanted = max(self.limit - len(self.found), _MIN_CHUNK)
                chunk, fresh = fresh[:wanted], fresh[wanted:]
                self.seen.update(chunk)
                self.check_all(chunk, driver)
                if self.full:
                    return

    def check_all(self, trace_ids: list[bytes], driver: object) -> None:
        loaded = self.load(trace_ids)
        for trace_id in trace_ids:
            if self.full:
                return
            self.check(trace_id, loaded[trace_id], None, driver)

    def drive_text(self, term: Term) -> None:
        sql = _Sql()
        narrowing = self.narrowing(sql, term)
        logs = [
            *sql.window("time_ns", self.query),
            sql.quick(("body", "texts"), term),
            sql.term(("body", "texts"), term),
            _HAS_TRACE,
            *narrowing,
        ]
        sources = [("logs", "time_ns", logs)]
        sources += [(table, "start_ns", [*where, *narrowing]) for table, where in self.span_sources(sql, term=term)]
        self.walk(self.hits(sources, sql.params), term)

    def drive_spans(self) -> None:
        sql = _Sql()
        narrowing = self.narrowing(sql, "span")
        sources = [(table, "start_ns", [*where, *narrowing]) for table, where in self.span_sources(sql)]
        self.walk(self.hits(sources, sql.params), "span")

    def run(self) -> bytes | None:
        q = self.query
        named = self.id_traces()
        if q.lone and named:
            parsed = parse_id(q.lone)
            span_id = parsed[1] if parsed is not None and parsed[0] == "span" else None  # opens on that span
            for trace_id in named[: self.limit]:
                trace = self.load_keyed(trace_id)
                if trace.spans and trace_id not in self.seen:
                    self.seen.add(trace_id)
                    entry = _entry(self.store, trace)
                    self.found.append(Found(trace_id, entry, (Match("id", span_id, entry.start_ns, q.lone, ()),)))
            return named[0]
        ids = [t for traces in self.named.values() for t in traces]
        if ids:
            loaded = self.load(list(dict.fromkeys(ids)))
            for token, traces in self.named.items():
                for trace_id in traces:
                    if trace_id not in self.seen:
                        self.seen.add(trace_id)
                        self.check(trace_id, loaded[trace_id], Match("id", None, 0, token, ()), "id")
                if self.full:
                    return None
        terms = [*(Term(i) for i in q.ids), *sorted(q.terms, key=lambda t: -len(t.text))]
        if terms:
            # The ID tokens first (a hex ID in a log line is rare), else the longest word: likely the rarest.
            self.drive_text(terms[0])
        elif q.span_filters:
            self.drive_spans()
        return None


def _entry(store: ClickHouseStore, trace: _Trace) -> Span:
    """The span a trace is listed by: its root (the earliest, if several), else its earliest span."""
    row = min(trace.spans, key=lambda r: (bool(r.parent_id), r.start_ns, r.span_id))
    return store._decoded([row[:13]])[0]


def _span_text(row: _SpanRow) -> str:
    """The span a service/status/duration clause matched, as the list shows it (``_find._span_text``)."""
    parts = [f"{row.service}: {row.name}"]
    if row.http_status is not None:
        parts.append(str(row.http_status))
    if row.status == 2:
        parts.append("error")
    parts.append(f"{row.duration_ns / 1e6:.1f} ms")
    return " ".join(parts)


def find(store: ClickHouseStore, query: Query, limit: int) -> FindResult:
    """Run ``query`` on the cluster; past the query's budget, answer what was found so far (``complete`` False)."""
    run = _Run(store, query, max(1, limit))
    try:
        opened = run.run()
        if run._client is not None:
            # Once more at the end: a shard that stopped answering during the search was skipped by
            # skip_unavailable_shards without a word; it is noted if it is still down now.
            run.note_down()
    except _Stop:
        return FindResult(run.found, None, False)
    except store._driver.errors.ServerException as exc:
        if getattr(exc, "code", 0) != 159 and not store.past_budget():
            raise
        return FindResult(run.found, None, False)
    except OverflowError:
        raise SearchError("a number in the query is out of range") from None
    return FindResult(run.found, opened, True)
