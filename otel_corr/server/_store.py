"""The embedded store: one SQLite file (WAL), written by one thread in batched transactions.

Why SQLite: it ships with Python, keeps everything in one file that survives
restarts, and in WAL mode readers never wait for the writer.  Spans live in a
rowid table (random trace-ID keys would leave a clustered table's pages half
full).  The writer sorts each transaction's spans by trace, so a trace's spans
of one transaction get consecutive rowids, and the ``traces`` table maps a
trace ID (and its request ID) to those row ranges: one index entry per trace
and transaction rather than one per span.  Random-key index entries are what an
insert pays most for (every one dirties an index page that the commit writes
out, twice with WAL), so this cuts the writer's CPU by about a third at 1M
spans.  Indexes on service/time and time serve the searches, and a small
``operations`` table replaces a third span index.  Attributes, events and links
are kept per span as a slim serialized OTLP ``Span`` (decoded only when a trace
is read).

Ingest never touches the database on the event loop: rows built from the
protobuf (``_otlp.span_rows``) are put on a bounded queue and the writer thread
commits whatever is waiting in one transaction (group commit).  Each request
gets a future resolved after its commit, and the sender is answered only then:
with WAL and ``synchronous=NORMAL`` a committed transaction survives the
process being killed, so an acknowledged batch is never lost to a crash.  A full
queue is reported to the sender as "retry later" (HTTP 503 / gRPC
UNAVAILABLE), which OTLP exporters honour.  Checkpoints run on a thread of
their own, never on the writer's (and so the senders') path.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from .._ids import trace_id_of
from ..exceptions import StoreError
from ._codec import Codec
from ._find import FindResult, find
from ._index import attribute_tokens, event_rowid, indexed, log_doc, span_docs
from ._model import LazyLogs, LogRecord, Span
from ._otlp import attribute_text, detail_attributes, expand, resource_key
from ._search import Query, fts_phrase
from ._storefile import APPLICATION_ID, StoreLock, check_store_file

__all__ = ["QueryTimeout", "Store", "StoreFull"]

_log = logging.getLogger("otel_corr.server")

SCHEMA_VERSION = 6
# Column order as the primary key's: SQLite 3.40's integrity_check reports false NULLs in a WITHOUT
# ROWID table whose NOT NULL columns do not follow it.
_TRACES_TABLE = """CREATE TABLE IF NOT EXISTS traces(
    trace_id BLOB NOT NULL, first_row INTEGER NOT NULL, request_id TEXT NOT NULL, last_row INTEGER NOT NULL,
    PRIMARY KEY (trace_id, first_row, request_id)) WITHOUT ROWID"""
# Format 6 keeps a log record's text, logger, severity text and attributes in one compressed
# ``record`` (see _codec; most of a record is the same keys and words again), and finds a trace's
# records by ranges of their IDs, as spans by ``traces``: the writer numbers each commit's records
# trace by trace, so ``log_ranges`` needs one entry per trace and commit, not one per record.
# Scope names ("opentelemetry.instrumentation.fastapi" and a version) are kept once, in ``scopes``.
_LOGS_TABLE = """CREATE TABLE IF NOT EXISTS logs(
    id INTEGER PRIMARY KEY, trace_id BLOB, span_id BLOB, time_ns INTEGER NOT NULL, severity INTEGER NOT NULL,
    resource_id INTEGER NOT NULL, record BLOB NOT NULL)"""
_LOG_RANGES_TABLE = """CREATE TABLE IF NOT EXISTS log_ranges(
    trace_id BLOB NOT NULL, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL, PRIMARY KEY (trace_id, first_id))
    WITHOUT ROWID"""
_SCOPES_TABLE = "CREATE TABLE IF NOT EXISTS scopes(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"
# Format 6: the search indexes (see _index) and what maps a time window to row IDs.  ``batches``
# has one row per commit: the span and log rows it added and the time range they cover, so a
# window becomes row-ID ranges, the one constraint both FTS5 tables can seek on.  ``dicts``
# holds the compression dictionaries (see _codec) for the store's life.
_SEARCH_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS dicts(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, data BLOB NOT NULL);
{_LOG_RANGES_TABLE};
{_SCOPES_TABLE};
CREATE TABLE IF NOT EXISTS batches(
    id INTEGER PRIMARY KEY, first_span INTEGER NOT NULL, last_span INTEGER NOT NULL, first_log INTEGER NOT NULL,
    last_log INTEGER NOT NULL, min_ns INTEGER NOT NULL, max_ns INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS span_attrs USING fts5(kv, content='', detail='none', columnsize=0, tokenize='ascii');
CREATE VIRTUAL TABLE IF NOT EXISTS span_attrs_vocab USING fts5vocab(span_attrs, 'row');
CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(text, type, message, content='', columnsize=0);
CREATE VIRTUAL TABLE IF NOT EXISTS texts_vocab USING fts5vocab(texts, 'row');
"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS resources(
    id INTEGER PRIMARY KEY, digest TEXT UNIQUE NOT NULL, service TEXT NOT NULL, attributes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spans(
    trace_id BLOB NOT NULL, span_id BLOB NOT NULL, parent_id BLOB, resource_id INTEGER NOT NULL,
    service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL, start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL, status INTEGER NOT NULL, request_id TEXT, scope INTEGER NOT NULL,
    detail BLOB NOT NULL, http_status INTEGER);
{_TRACES_TABLE};
CREATE INDEX IF NOT EXISTS traces_request ON traces(request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS spans_service ON spans(service, start_ns);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
CREATE INDEX IF NOT EXISTS spans_failed ON spans(start_ns) WHERE status = 2 OR http_status >= 400;
CREATE INDEX IF NOT EXISTS spans_served ON spans(service, name, start_ns) WHERE parent_id IS NULL OR kind IN (2, 5);
CREATE TABLE IF NOT EXISTS operations(
    service TEXT NOT NULL, name TEXT NOT NULL, kind INTEGER NOT NULL, PRIMARY KEY (service, name, kind))
    WITHOUT ROWID;
{_LOGS_TABLE};
{_SEARCH_SCHEMA}
"""

#: The row tuples of ``_otlp.span_rows`` follow this order; they carry "" / 0 / empty for NULL (see there).
SPAN_COLUMNS = (
    "trace_id, span_id, parent_id, resource_id, service, name, kind, start_ns, duration_ns, status, request_id, "
    "scope, detail, http_status"
)
_ROW = "(?, ?, ?, nullif(?, x''), ?, ?, ?, ?, ?, ?, ?, nullif(?, ''), ?, ?, nullif(?, 0))"
# Rows go in 64 to a statement: the sqlite3 module releases the GIL once per statement step, so
# SQLite's share of the insert runs beside the event loop's decoding instead of waiting for the
# GIL after every row, and the per-row statement overhead shrinks (about 15% fewer instructions
# per span).  64 x 15 = 960 parameters, under the 999 of the oldest SQLite builds.
_ROWS_PER_INSERT = 64
_INSERT_SPANS = f"INSERT INTO spans(rowid, {SPAN_COLUMNS}) VALUES " + ", ".join([_ROW] * _ROWS_PER_INSERT)
_INSERT_SPAN = f"INSERT INTO spans(rowid, {SPAN_COLUMNS}) VALUES {_ROW}"
#: Where the scope and the detail are in a numbered row (rowid, then SPAN_COLUMNS).
_SCOPE, _DETAIL = 12, 13
#: Spans carrying a tag below which a tag search starts from the attribute index (see ``search``).
_INDEX_DRIVES_BELOW = 20_000
# The log ID ranges of trace ``:trace`` (``logs l`` is joined after it, on the range).
_LOG_RANGES = "(SELECT DISTINCT first_id, last_id FROM log_ranges WHERE trace_id = :trace) t"
_INSERT_TEXT = "INSERT INTO texts(rowid, text, type, message) VALUES (?, ?, ?, ?)"
_DELETE_TEXT = "INSERT INTO texts(texts, rowid, text, type, message) VALUES ('delete', ?, ?, ?, ?)"
#: Rows deleted per retention transaction.
_PRUNE_ROWS = 2000
_trace_of = itemgetter(0)
# A trace's row ranges (one per request ID it carried: the same range may come several times).
# Joined with CROSS JOIN wherever the ranges must be the outer loop (SQLite keeps that order) and
# to ``spans NOT INDEXED`` (only the rowid range is used): otherwise the planner would happily scan
# the spans, or build an automatic index over all of them, and probe the ranges.
_RANGES = "SELECT DISTINCT first_row, last_row, trace_id FROM traces"
# The spans ``s`` of trace ``?1`` (``spans s`` comes before it).
_TRACE_ROWS = (
    f"JOIN ({_RANGES} WHERE trace_id = ?1) t ON s.rowid BETWEEN t.first_row AND t.last_row WHERE s.trace_id = ?1"
)
# The ranges of a request ID (params: the request ID, and the trace ID it names or None; see
# _own_trace).  ``!= ''`` lets the planner use the partial index traces_request.
_REQUEST_RANGES = f"({_RANGES} WHERE request_id = ? AND request_id != '' OR trace_id = ?) t"
# The spans ``s`` in those ranges (filter on ``s.request_id`` for the ones that carry it).
_REQUEST_ROWS = (
    f"{_REQUEST_RANGES} CROSS JOIN spans s NOT INDEXED"
    " ON s.rowid BETWEEN t.first_row AND t.last_row AND s.trace_id = t.trace_id"
)
# The stored parent of span ``s``, through its trace's row ranges.
_PARENT_ROWS = (
    "traces t CROSS JOIN spans p NOT INDEXED ON p.rowid BETWEEN t.first_row AND t.last_row"
    " WHERE t.trace_id = s.trace_id AND p.trace_id = s.trace_id AND p.span_id = s.parent_id"
)


#: What a span read undecoded holds until :meth:`Store.expand` replaces it: shared, and read-only so
#: a mistaken write fails loudly rather than reaching every such span (four containers fewer per
#: span of a 10,000-span read, and as many fewer objects for the garbage collector to walk).
_UNREAD: dict[str, Any] = cast(dict[str, Any], MappingProxyType({}))
_UNREAD_LIST: list[Any] = cast(list[Any], ())


class Recent(NamedTuple):
    """One request of an endpoint, as :meth:`Store.recent_requests` returns it."""

    trace_id: bytes
    start_ns: int
    duration_ns: int


class Served(NamedTuple):
    """A span that served a request, as :meth:`Store.endpoint_stats` returns it."""

    service: str
    name: str
    start_ns: int
    duration_ns: int
    status: int


#: Services ``on_new_service`` is called for, at most (and the size of the set remembering them).
_SERVICES_NOTED = 1000
#: A span that served a request: SERVER (2) or CONSUMER (5), or a root span of any kind.  Only span
#: columns: the ``spans_start``/``spans_service`` range scans, no parent lookup per span.  Word for
#: word the condition of the partial index ``spans_served`` (SQLite matches it literally, and
#: ``recent_requests`` names the index: a drift is "no query solution" on every why).
_SERVED_SPAN = "(s.parent_id IS NULL OR s.kind IN (2, 5))"
# Where a request entered the system: span ``s`` is a root, or a SERVER span whose parent is not stored.
_ENTRY_SPAN = f"(s.parent_id IS NULL OR (s.kind = 2 AND NOT EXISTS (SELECT 1 FROM {_PARENT_ROWS})))"


def _upgrade_from_4(conn: sqlite3.Connection, path: Path) -> None:
    """Store format 4 (a span index on trace ID and one on request ID) to 5 (the ``traces`` table).

    Every existing span becomes a range of its own; the two span indexes go.  One transaction:
    an interrupted upgrade leaves format 4, to be upgraded again on the next start.
    """
    _log.warning("otel-corr serve: upgrading %s to store format %d (once; large stores take a while)", path, 5)
    # An explicit transaction: the sqlite3 module would run the CREATE TABLE outside of one.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_TRACES_TABLE)
        conn.execute("DELETE FROM traces")
        conn.execute("INSERT INTO traces SELECT trace_id, rowid, coalesce(request_id, ''), rowid FROM spans")
        conn.execute("DROP INDEX IF EXISTS spans_id")
        conn.execute("DROP INDEX IF EXISTS spans_request")
        conn.execute("PRAGMA user_version = 5")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _upgrade_from_5(conn: sqlite3.Connection, path: Path) -> None:
    """Store format 5 to 6: the search indexes, the ``batches`` time map, and compressed details.

    Every span's detail is rewritten (compressed with a dictionary trained on the store's own
    spans, or marked as stored raw), indexed for attribute search, and each log record and span
    event for text search.  One transaction, as for format 4: interrupted, the store stays 5.
    About 5 s per 100k spans on a loaded 2-core machine (docs/design/search-index-research.md).
    """
    _log.warning("otel-corr serve: upgrading %s to store format %d (once; large stores take a while)", path, 6)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SEARCH_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        total = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        step = max(1, total // 4000)
        samples = [
            bytes(r[0])
            for r in conn.execute("SELECT detail FROM spans WHERE rowid % :step = 0 LIMIT 4000", {"step": step})
        ]
        codec = Codec("span", dict)
        trained = codec.train_now(samples)
        del samples
        if trained is not None:
            dict_id = conn.execute("INSERT INTO dicts(kind, data) VALUES ('span', :data)", {"data": trained}).lastrowid
            codec.adopt(int(dict_id or 0), trained)
        last = 0
        windows: list[tuple[int, int, int, int, int, int]] = []
        while chunk := conn.execute(
            "SELECT rowid, span_id, detail, start_ns FROM spans WHERE rowid > :last ORDER BY rowid LIMIT 10000",
            {"last": last},
        ).fetchall():
            attr_docs: list[tuple[int, str]] = []
            event_docs: list[tuple[Any, ...]] = []
            packed: list[tuple[bytes, int]] = []
            for rowid, span_id, detail, _ in chunk:
                attributes, events = span_docs(detail, span_id)
                attr_docs.append((rowid, attributes))
                event_docs.extend((event_rowid(rowid, slot), *columns) for slot, columns in events)
                packed.append((codec.pack(detail), rowid))
            conn.executemany("UPDATE spans SET detail = ? WHERE rowid = ?", packed)
            conn.executemany("INSERT INTO span_attrs(rowid, kv) VALUES (?, ?)", attr_docs)
            conn.executemany(_INSERT_TEXT, event_docs)
            starts = [r[3] for r in chunk]
            windows.append((chunk[0][0], chunk[-1][0], 1, 0, min(starts), max(starts)))
            last = chunk[-1][0]
        conn.execute("INSERT INTO scopes(name) SELECT DISTINCT scope FROM spans")
        conn.execute("UPDATE spans SET scope = (SELECT id FROM scopes WHERE name = spans.scope)")
        # Logs: a new table (the text columns become one compressed record), the same IDs.
        conn.execute("ALTER TABLE logs RENAME TO logs_format_5")
        conn.execute(_LOGS_TABLE)
        logs = Codec("log", dict)
        total = conn.execute("SELECT count(*) FROM logs_format_5").fetchone()[0]
        step = max(1, total // 4000)
        samples = [
            _dumps([r[0], r[1], r[2], r[3], json.loads(r[4])]).encode()
            for r in conn.execute(
                "SELECT severity_text, body, logger, request_id, attributes FROM logs_format_5 WHERE id % :step = 0"
                " LIMIT 4000",
                {"step": step},
            )
        ]
        trained = logs.train_now(samples)
        if trained is not None:
            dict_id = conn.execute("INSERT INTO dicts(kind, data) VALUES ('log', :data)", {"data": trained}).lastrowid
            logs.adopt(int(dict_id or 0), trained)
        last = 0
        while chunk := conn.execute(
            "SELECT id, trace_id, span_id, time_ns, severity, resource_id, severity_text, body, logger, request_id,"
            " attributes FROM logs_format_5 WHERE id > :last ORDER BY id LIMIT 10000",
            {"last": last},
        ).fetchall():
            rows: list[tuple[Any, ...]] = []
            docs: list[tuple[Any, ...]] = []
            ranges: list[tuple[bytes, int, int]] = []
            for (
                log_id,
                trace_id,
                span_id,
                time_ns,
                severity,
                rid,
                severity_text,
                body,
                logger,
                request_id,
                text,
            ) in chunk:
                attributes = json.loads(text)
                record = _dumps([severity_text, body, logger, request_id, attributes]).encode()
                rows.append((log_id, trace_id, span_id, time_ns, severity, rid, logs.pack(record)))
                docs.append((log_id, *log_doc(body, attributes)))
                if trace_id is not None:
                    if ranges and ranges[-1][0] == trace_id and ranges[-1][2] == log_id - 1:
                        ranges[-1] = (trace_id, ranges[-1][1], log_id)
                    else:
                        ranges.append((trace_id, log_id, log_id))
            conn.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT OR IGNORE INTO log_ranges VALUES (?, ?, ?)", ranges)
            conn.executemany(_INSERT_TEXT, docs)
            times = [r[3] for r in chunk]
            windows.append((1, 0, chunk[0][0], chunk[-1][0], min(times), max(times)))
            last = chunk[-1][0]
        conn.execute("DROP TABLE logs_format_5")
        windows.sort(key=lambda w: w[5])  # newest last: the search walks batches by descending ID
        conn.executemany(
            "INSERT INTO batches(first_span, last_span, first_log, last_log, min_ns, max_ns) VALUES (?, ?, ?, ?, ?, ?)",
            windows,
        )
        conn.execute("PRAGMA user_version = 6")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    # The old log table's pages are free now (most of the file, with logs): give them back, so the
    # store is the size the new format makes it.  After the commit: interrupted, it is just redone.
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if free * 4 > conn.execute("PRAGMA page_count").fetchone()[0]:
        conn.execute("VACUUM")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _own_trace(request_id: str) -> bytes | None:
    """The trace ID a request ID names (a UUID or 32 hex digits), as stored; None for any other."""
    trace_id = trace_id_of(request_id)
    return None if trace_id is None else trace_id.to_bytes(16, "big")


class StoreFull(Exception):
    """The ingest queue is full: the sender should retry later."""


class QueryTimeout(Exception):
    """A query ran past its :meth:`Store.budget` and was interrupted."""


#: SQLite virtual-machine steps between two looks at the query's deadline (a few hundred µs of work).
_BUDGET_STEPS = 20_000


class _Item:
    """One request's records on their way to the writer, and the future its sender awaits."""

    __slots__ = ("done", "logs", "resources", "rows", "size")

    def __init__(
        self, rows: list[tuple[Any, ...]], resources: list[tuple[int, str, str, str]], logs: list[LogRecord]
    ) -> None:
        self.rows, self.resources, self.logs = rows, resources, logs
        self.size = len(rows) + len(logs)
        self.done: Future[None] = Future()
        # Running from the start: a sender that goes away cancels its await, never this future, so
        # the writer can always resolve it (set_result on a cancelled future would raise).
        self.done.set_running_or_notify_cancel()


class Store:
    """One SQLite file; ``submit`` never blocks on disk, queries run on per-thread read connections."""

    #: One process writes the file (``_storefile`` refuses a second): it sees everything ingested.
    shared = False

    def __init__(
        self,
        path: str | Path,
        *,
        queue_size: int = 256,
        max_queued_spans: int = 32768,
        group_spans: int = 16384,
        checkpoint_spans: int = 16384,
        owner: str = "",
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One server per file, and only a file that is ours: both settled before SQLite writes a byte.
        new = check_store_file(self.path)
        self._lock = StoreLock(self.path, owner or f"pid {os.getpid()}")
        try:
            self._open(new, queue_size, max_queued_spans, group_spans, checkpoint_spans)
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None
        except BaseException:
            self._lock.release()
            raise

    def _open(self, new: bool, queue_size: int, max_queued_spans: int, group_spans: int, checkpoint_spans: int) -> None:
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._resources: dict[str, int] = {}
        self._resource_lock = threading.Lock()
        self._pending = 0
        # Queued rows hold their serialized detail (about the wire size): bound the queue by spans, not requests.
        self._queued_spans = 0
        self._max_queued_spans = max_queued_spans
        self._group_spans = group_spans
        self._idle = threading.Condition()
        if new:
            # Marker, tables and format in one transaction, before WAL: an interrupted first start leaves
            # an empty file (ours to create again), never a half-made one that the checks would refuse.
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE; PRAGMA application_id = {APPLICATION_ID}; {_SCHEMA};"
                    f" PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            finally:
                conn.close()
        writer = self._connect()
        # A bigger page cache for the one writer: random trace/request-ID keys touch a page per span,
        # and keeping hot index pages in memory cuts insert cost by about a third at 1M spans.
        writer.execute("PRAGMA cache_size = -32768")  # KiB: 32 MiB
        version = writer.execute("PRAGMA user_version").fetchone()[0]
        has_spans = writer.execute("SELECT 1 FROM sqlite_master WHERE name = 'spans'").fetchone() is not None
        if has_spans and version == 4:
            _upgrade_from_4(writer, self.path)
            version = 5
        if has_spans and version == 5:
            _upgrade_from_5(writer, self.path)
            version = SCHEMA_VERSION
        if has_spans and version != SCHEMA_VERSION:
            writer.close()
            raise StoreError(
                f"{self.path} was written by another version of otel-corr (store format {version}, this one reads"
                f" {SCHEMA_VERSION}); move it aside or pass --db with a new file"
            )
        writer.executescript(_SCHEMA)
        writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        writer.execute(f"PRAGMA application_id = {APPLICATION_ID}")  # a store written before the marker
        writer.commit()
        # Checkpoints copy the WAL into the database (and fsync): on the writer they would stall every
        # commit that crosses the threshold, and with acknowledge-after-commit the senders with it.
        # A thread of its own runs them instead (SQLite lets a checkpoint run beside the writer).
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        # A WAL that grew in a burst is cut back to 64 MiB when reset; below that it is reused, not
        # truncated and re-grown (which showed up as a tenth of the server's kernel time).
        writer.execute("PRAGMA journal_size_limit = 67108864")
        self._next_resource = int(writer.execute("SELECT coalesce(max(id), 0) FROM resources").fetchone()[0]) + 1
        for rid, digest in writer.execute("SELECT id, digest FROM resources"):
            self._resources[digest] = int(rid)
        self._operations: set[tuple[str, str, int]] = set(writer.execute("SELECT service, name, kind FROM operations"))
        # Never an ID a ``log_ranges`` entry still covers (its record may have been pruned alone): a
        # new record there would join another trace's lines.
        self._next_log = 1 + int(
            writer.execute(
                "SELECT max((SELECT coalesce(max(id), 0) FROM logs),"
                " (SELECT coalesce(max(last_id), 0) FROM log_ranges),"
                " (SELECT coalesce(max(last_log), 0) FROM batches))"
            ).fetchone()[0]
        )
        self._prune_lock = threading.Lock()
        self._details = Codec("span", partial(self._dictionaries, "span"))
        self._log_records = Codec("log", partial(self._dictionaries, "log"))
        self._scopes: dict[str, int] = {name: int(i) for i, name in writer.execute("SELECT id, name FROM scopes")}
        # Rowids are the writer's to give (see _write): never one a range in ``traces`` still covers.
        self._next_row = 1 + int(
            writer.execute(
                "SELECT max((SELECT coalesce(max(rowid), 0) FROM spans),"
                " (SELECT coalesce(max(last_row), 0) FROM traces),"
                " (SELECT coalesce(max(last_span), 0) FROM batches))"
            ).fetchone()[0]
        )
        self._writer_conn = writer
        #: Called on the writer thread with a service's name once its first spans are stored (``serve`` notes it).
        self.on_new_service: Callable[[str], None] | None = None
        #: Called on the writer thread with each committed request's span rows and log records, after
        #: its sender was acknowledged (``otel-corr tail``'s hub: see ``_tail.Hub.publish``).
        self.on_committed: Callable[[list[tuple[Any, ...]], list[LogRecord]], None] | None = None
        self._services_seen: set[str] = set()
        self._closed = False
        self._closing = threading.Event()
        self._checkpoint_spans = checkpoint_spans
        self._since_checkpoint = 0
        self._thread = threading.Thread(target=self._run, name="otel-corr-store", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="otel-corr-checkpoint", daemon=True)
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit is in the WAL file once it returns, so it survives the process being killed
        # (not a power cut); FULL would add an fsync per commit.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.create_function("otel_attr", 2, self._attribute_text, deterministic=True)
        return conn

    def _attribute_text(self, detail: bytes, key: str) -> str | None:
        return attribute_text(self._details.unpack(detail), key)

    def _dictionaries(self, kind: str) -> dict[int, bytes]:
        """The store's compression dictionaries of one kind (read by a codec, on whichever thread needs one)."""
        rows = self._read().execute("SELECT id, data FROM dicts WHERE kind = :kind", {"kind": kind})
        return {r[0]: r[1] for r in rows}

    # --- writing ---------------------------------------------------------------------------

    def resource_id(self, digest: str, service: str) -> int:
        """The ID of a resource (by the digest of its attributes), assigned here on first sight.

        Assigned in memory so that decoding can put it straight into each row; the writer inserts
        the resource row in the same transaction as the spans that use it.
        """
        with self._resource_lock:
            rid = self._resources.get(digest)
            if rid is None:
                rid = self._resources[digest] = self._next_resource
                self._next_resource += 1
            return rid

    def submit(
        self,
        rows: list[tuple[Any, ...]],
        resources: list[tuple[int, str, str, str]],
        logs: list[LogRecord] | None = None,
    ) -> Future[None]:
        """Queue rows (from :func:`._otlp.span_rows`) and log records for the writer.

        Returns a future resolved once they are committed (so an acknowledgement sent after it
        survives the process being killed); raises :class:`StoreFull` instead of blocking.
        """
        item = _Item(rows, resources, logs or [])
        with self._idle:
            if self._pending and self._queued_spans + item.size > self._max_queued_spans:
                raise StoreFull
            self._pending += 1
            self._queued_spans += item.size
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._queued_spans -= item.size
            raise StoreFull from None
        return item.done

    def _note_new_services(self, batch: list[_Item]) -> None:
        """Call ``on_new_service`` for each service whose first spans ``batch`` committed.

        On the writer thread, after the commit: never on the event loop, never for a batch that
        failed.  One set lookup per resource of an item with spans (not per span).  The set stops
        growing at ``_SERVICES_NOTED`` names, so a sender making names up cannot grow it without
        bound.  The callback's failures (a closed stdout: ``serve | head``) are logged once, never
        raised into the writer.
        """
        callback = self.on_new_service
        if callback is None:
            return
        for item in batch:
            if not item.rows:
                continue
            for _, _, service, _ in item.resources:
                if service in self._services_seen or len(self._services_seen) >= _SERVICES_NOTED:
                    continue
                self._services_seen.add(service)
                try:
                    callback(service)
                except Exception:
                    _log.debug("otel-corr serve: could not note a new service", exc_info=True)
                    self.on_new_service = None
                    return

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is committed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        """Commit what is queued, copy the WAL into the file, close and unlock (a second call does nothing).

        The last step matters to users: a store is "one file" only once the WAL is checkpointed
        into it; a copy of the file alone taken before would hold none of the recent spans.
        SQLite checkpoints on its own only when the last connection closes, and read connections
        of other threads may still be open, so this one does it explicitly.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            self._queue.put(None)
            self._thread.join(30)
            self._closing.set()
            self._checkpointer.join(30)
            with self._readers_lock:  # an open read transaction would keep the checkpoint from finishing
                for conn in self._readers:
                    conn.close()
            try:
                busy, _, _ = self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy:
                    _log.warning("otel-corr serve: a reader kept the last checkpoint from finishing")
            except sqlite3.Error:
                _log.exception("otel-corr serve: the last checkpoint failed (the data is safe in the -wal file)")
            self._writer_conn.close()
        finally:
            self._lock.release()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            # Group commit: one transaction for whatever else is already waiting, up to group_spans.
            # A lone sequential sender gets one commit per request; concurrent senders share them.
            batch = [item]
            size = item.size
            stop = False
            while size < self._group_spans:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
                size += more.size
            error: BaseException | None = None
            try:
                self._write(batch)
            except Exception as exc:  # never let one bad batch stop the writer
                _log.exception("otel-corr serve: could not store a batch")
                error = exc
            else:
                self._note_new_services(batch)
            with self._idle:
                self._since_checkpoint += size
                self._pending -= len(batch)
                self._queued_spans -= size
                self._idle.notify_all()
            for done in batch:
                if error is None:
                    done.done.set_result(None)
                else:
                    done.done.set_exception(error)
            if error is None and self.on_committed is not None:
                for done in batch:
                    try:
                        self.on_committed(done.rows, done.logs)
                    except Exception:  # a follower's failure never stops the writer
                        _log.exception("otel-corr serve: could not hand a batch to otel-corr tail")
            if stop:
                return

    def _checkpoints(self) -> None:
        """Copy committed WAL frames into the database, off the writer's path.

        After every ``checkpoint_spans`` committed records (or 5 s after the last one): a large
        checkpoint costs the same two fsyncs as a small one, and PASSIVE never blocks the writer
        or readers (what it cannot copy yet is copied next time).
        """
        conn: sqlite3.Connection | None = None
        last = time.monotonic()
        while not self._closing.wait(0.05):
            with self._idle:
                written = self._since_checkpoint
                if written < self._checkpoint_spans and not (written and time.monotonic() - last > 5):
                    continue
                self._since_checkpoint = 0
            last = time.monotonic()
            try:
                conn = conn or self._connect()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error:
                _log.exception("otel-corr serve: checkpoint failed")
        if conn is not None:
            conn.close()

    def _adopt_dictionaries(self) -> None:
        """Store any dictionary trained since the last batch, and compress with it from now on.

        Its own transaction, before any blob names it: a failed batch must not take it along.
        """
        for codec in (self._details, self._log_records):
            trained = codec.take_new()
            if trained is not None:
                try:
                    with self._writer_conn as conn:
                        insert = conn.execute(
                            "INSERT INTO dicts(kind, data) VALUES (:kind, :data)", {"kind": codec.kind, "data": trained}
                        )
                except sqlite3.Error:
                    codec.give_back(trained)  # stored with the next batch instead
                    raise
                codec.adopt(int(insert.lastrowid or 0), trained)

    def _log_rows(
        self, batch: Sequence[_Item], resources: dict[int, tuple[int, str, str, str]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[bytes, int, int]]]:
        """The batch's log rows numbered trace by trace, their ``texts`` documents, and their ``log_ranges``."""
        records = sorted((r for item in batch for r in item.logs), key=lambda r: r.trace_id or b"")
        pack = self._log_records.pack
        rows: list[tuple[Any, ...]] = []
        docs: list[tuple[Any, ...]] = []
        ranges: list[tuple[bytes, int, int]] = []
        log_id = self._next_log
        # Records of one export request share one resource dict: its key is computed once.
        known: dict[int, int] = {}
        for trace_id, group in groupby(records, key=lambda r: r.trace_id):
            first = log_id
            for r in group:
                rid = known.get(id(r.resource), 0)
                if not rid:
                    text, digest = resource_key(r.resource)
                    rid = known[id(r.resource)] = self.resource_id(digest, r.service)
                    resources[rid] = (rid, digest, r.service, text)
                record = _dumps([r.severity_text, r.body, r.logger, r.request_id, r.attributes]).encode()
                rows.append((log_id, r.trace_id, r.span_id, r.time_ns, r.severity_number, rid, pack(record)))
                docs.append((log_id, *log_doc(r.body, r.attributes)))
                log_id += 1
            if trace_id is not None:
                ranges.append((trace_id, first, log_id - 1))
        return rows, docs, ranges

    def _scope_id(self, name: str, new: list[tuple[int, str]]) -> int:
        """The ID of a scope name, assigned here on first sight (and added to ``new``, to be inserted)."""
        scope_id = self._scopes.get(name)
        if scope_id is None:
            scope_id = self._scopes[name] = len(self._scopes) + 1
            new.append((scope_id, name))
        return scope_id

    def _forget_scopes(self, scopes: list[tuple[int, str]]) -> None:
        """Scopes a failed batch named first were not stored: the next batch that uses them inserts them."""
        for _, name in scopes:
            del self._scopes[name]

    def _write(self, batch: Sequence[_Item]) -> None:
        conn = self._writer_conn
        self._adopt_dictionaries()
        resources = {r[0]: r for item in batch for r in item.resources}
        log_rows, log_docs, log_ranges = self._log_rows(batch, resources)
        operations = {(r[4], r[5], r[6]) for item in batch for r in item.rows} - self._operations
        rows, ranges = self._number([row for item in batch for row in item.rows])
        # The search documents come from the detail as received; the row keeps it compressed, and
        # its scope by ID.
        scopes: list[tuple[int, str]] = []
        attr_docs = []
        event_docs: list[tuple[Any, ...]] = []
        pack = self._details.pack
        scope_ids = self._scopes
        try:
            for i, row in enumerate(rows):
                attributes, events = span_docs(row[_DETAIL], row[2])
                attr_docs.append((row[0], attributes))
                if events:
                    event_docs.extend((event_rowid(row[0], slot), *columns) for slot, columns in events)
                scope_id = scope_ids.get(row[_SCOPE]) or self._scope_id(row[_SCOPE], scopes)
                rows[i] = (*row[:_SCOPE], scope_id, pack(row[_DETAIL]), row[_DETAIL + 1])
        except BaseException:
            self._forget_scopes(scopes)
            raise
        times = [row[8] for row in rows] + [r[3] for r in log_rows]
        try:
            with conn:
                if operations:
                    conn.executemany(
                        "INSERT OR IGNORE INTO operations(service, name, kind) VALUES (?, ?, ?)", operations
                    )
                if resources:  # every resource the batch uses, even if known: a failed batch may have been the first
                    conn.executemany(
                        "INSERT OR IGNORE INTO resources(id, digest, service, attributes) VALUES (?, ?, ?, ?)",
                        resources.values(),
                    )
                if scopes:
                    conn.executemany("INSERT INTO scopes(id, name) VALUES (?, ?)", scopes)
                whole = len(rows) - len(rows) % _ROWS_PER_INSERT
                for i in range(0, whole, _ROWS_PER_INSERT):
                    conn.execute(_INSERT_SPANS, list(chain.from_iterable(rows[i : i + _ROWS_PER_INSERT])))
                if whole < len(rows):
                    conn.executemany(_INSERT_SPAN, rows[whole:])
                if ranges:
                    conn.executemany("INSERT OR IGNORE INTO traces VALUES (?, ?, ?, ?)", ranges)  # in column order
                if log_rows:
                    conn.executemany(
                        "INSERT INTO logs(id, trace_id, span_id, time_ns, severity, resource_id, record)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        log_rows,
                    )
                    conn.executemany("INSERT OR IGNORE INTO log_ranges VALUES (?, ?, ?)", log_ranges)
                conn.executemany("INSERT INTO span_attrs(rowid, kv) VALUES (?, ?)", attr_docs)
                conn.executemany(_INSERT_TEXT, event_docs + log_docs)
                if times:
                    conn.execute(
                        "INSERT INTO batches(first_span, last_span, first_log, last_log, min_ns, max_ns)"
                        " VALUES (:first_span, :last_span, :first_log, :last_log, :min_ns, :max_ns)",
                        {
                            "first_span": self._next_row,
                            "last_span": self._next_row + len(rows) - 1,
                            "first_log": self._next_log,
                            "last_log": self._next_log + len(log_rows) - 1,
                            "min_ns": min(times),
                            "max_ns": max(times),
                        },
                    )
        except BaseException:
            self._forget_scopes(scopes)
            raise
        self._operations |= operations  # only once committed: a failed batch leaves them to the next one
        self._next_row += len(rows)
        self._next_log += len(log_rows)

    def _number(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows sorted by trace, each with its rowid in front; and the ``traces`` rows for them.

        One ``traces`` row per trace in this transaction (one per request ID when its spans carry
        several), covering the trace's consecutive rowids.  A request ID that is the trace's own ID
        (otel-corr's rule for UUID and 32-hex request IDs) is not indexed: every lookup of a request
        ID also tries the trace it names, and the index is what ingest pays most for.
        """
        rows.sort(key=_trace_of)
        numbered = []
        ranges = []
        row_id = self._next_row
        for trace_id, spans in groupby(rows, key=_trace_of):
            first = row_id
            request_ids = set()
            for row in spans:
                numbered.append((row_id, *row))
                if row[10]:
                    request_ids.add(row[10])
                row_id += 1
            request_ids = {r for r in request_ids if _own_trace(r) != trace_id}
            for request_id in request_ids or ("",):
                ranges.append((trace_id, first, request_id, row_id - 1))
        return numbered, ranges

    def prune(self, *, max_age_ns: int | None = None, max_spans: int | None = None) -> int:
        """Delete what retention no longer keeps (whole traces by age, oldest spans by count), index entries included.

        In transactions of ``_PRUNE_ROWS`` rows, so the writer (and so the senders) never waits
        long: the search indexes are contentless, and deleting an entry means giving FTS5 its
        document again, rebuilt from the row (a few µs a row).
        """
        # One prune at a time: two would hand FTS5 the same "delete" twice, which corrupts a
        # contentless index (every later delete then fails as "malformed").
        with self._prune_lock:
            return self._prune(max_age_ns, max_spans)

    def _prune(self, max_age_ns: int | None, max_spans: int | None) -> int:
        # A connection of its own (reads are read-only): WAL lets it write between writer batches.
        conn = self._connect()
        try:
            cutoff = None if max_age_ns is None else time.time_ns() - max_age_ns
            if max_spans is not None:
                count = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
                if count > max_spans:
                    row = conn.execute(
                        "SELECT start_ns FROM spans ORDER BY start_ns LIMIT 1 OFFSET :skip", {"skip": count - max_spans}
                    ).fetchone()
                    if row is not None:
                        cutoff = row[0] if cutoff is None else max(cutoff, row[0])
            if cutoff is None:
                return 0
            removed = 0
            while chunk := conn.execute(
                "SELECT rowid, span_id, detail FROM spans WHERE start_ns < :cutoff LIMIT :rows",
                {"cutoff": cutoff, "rows": _PRUNE_ROWS},
            ).fetchall():
                with conn:
                    attr_docs: list[tuple[int, str]] = []
                    event_docs: list[tuple[Any, ...]] = []
                    for rowid, span_id, detail in chunk:
                        attributes, events = span_docs(self._details.unpack(detail), span_id)
                        attr_docs.append((rowid, attributes))
                        event_docs.extend((event_rowid(rowid, slot), *columns) for slot, columns in events)
                    conn.executemany("INSERT INTO span_attrs(span_attrs, rowid, kv) VALUES ('delete', ?, ?)", attr_docs)
                    conn.executemany(_DELETE_TEXT, event_docs)
                    conn.execute(
                        "DELETE FROM spans WHERE rowid IN (SELECT value FROM json_each(:rows))",
                        {"rows": json.dumps([r[0] for r in chunk])},
                    )
                removed += len(chunk)
            # Records by ID up to the last commit that began before the cutoff (no index on time:
            # the IDs follow the commits), each checked against the cutoff itself.
            last_log = conn.execute(
                "SELECT coalesce(max(last_log), 0) FROM batches WHERE min_ns < :cutoff", {"cutoff": cutoff}
            ).fetchone()[0]
            while chunk := conn.execute(
                "SELECT id, record FROM logs WHERE id <= :last AND time_ns < :cutoff LIMIT :rows",
                {"last": last_log, "cutoff": cutoff, "rows": _PRUNE_ROWS},
            ).fetchall():
                with conn:
                    docs = []
                    for log_id, record in chunk:
                        _, body, _, _, log_attributes = self.log_record(record)
                        docs.append((log_id, *log_doc(body, log_attributes)))
                    conn.executemany(_DELETE_TEXT, docs)
                    conn.execute(
                        "DELETE FROM logs WHERE id IN (SELECT value FROM json_each(:rows))",
                        {"rows": json.dumps([r[0] for r in chunk])},
                    )
            with conn:
                # Ranges and batches wholly below the oldest row left (one partly deleted still finds the rest).
                conn.execute("DELETE FROM traces WHERE last_row < (SELECT coalesce(min(rowid), 1 << 62) FROM spans)")
                conn.execute("DELETE FROM log_ranges WHERE last_id < (SELECT coalesce(min(id), 1 << 62) FROM logs)")
                conn.execute(
                    "DELETE FROM batches WHERE last_span < (SELECT coalesce(min(rowid), 1 << 62) FROM spans)"
                    " AND last_log < (SELECT coalesce(min(id), 1 << 62) FROM logs)"
                )
            return removed
        finally:
            conn.close()

    # --- reading ---------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        """This thread's read-only connection (WAL: it reads the last commit, never waits for the writer)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            conn.create_function("otel_attr", 2, self._attribute_text, deterministic=True)
            conn.set_progress_handler(self._past_deadline, _BUDGET_STEPS)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def past_budget(self) -> bool:
        """Whether this thread's query ran past its :meth:`budget` (for work SQLite cannot interrupt)."""
        return bool(self._past_deadline())

    def _past_deadline(self) -> int:
        # SQLite calls this on the thread running the statement: non-zero interrupts it.
        deadline: float | None = getattr(self._local, "deadline", None)
        return 1 if deadline is not None and time.monotonic() > deadline else 0

    @contextmanager
    def budget(self, deadline: float) -> Iterator[None]:
        """Interrupt this thread's queries in the block at ``deadline`` (``time.monotonic()``): QueryTimeout."""
        if time.monotonic() > deadline:
            raise QueryTimeout
        self._local.deadline = deadline
        try:
            yield
        except sqlite3.OperationalError as exc:
            if str(exc) == "interrupted" and time.monotonic() > deadline:
                raise QueryTimeout from None
            raise
        finally:
            self._local.deadline = None

    def _spans(self, sql: str, params: Iterable[Any] | Mapping[str, Any], *, details: bool = True) -> list[Span]:
        """Spans read back whole, or with ``details`` False, their columns only (:meth:`_bare_spans`;
        ``_analysis`` needs a few spans' details, decoded by :meth:`expand`)."""
        if not details:
            return self._bare_spans(sql, params)
        rows = (
            self._read()
            .execute(
                f"SELECT s.trace_id, s.span_id, s.parent_id, s.service, s.name, s.kind, s.start_ns, s.duration_ns, "
                f"s.status, s.request_id, (SELECT name FROM scopes WHERE id = s.scope), s.detail, r.attributes"
                " FROM spans s "
                f"JOIN resources r ON r.id = s.resource_id {sql}",
                params if isinstance(params, Mapping) else tuple(params),
            )
            .fetchall()
        )
        out = []
        # One decoded resource per distinct resource: a 10,000-span trace has a handful. The dicts
        # are shared between the spans that carry them, and nothing here changes one after reading.
        resources: dict[str, dict[str, Any]] = {}
        for row in rows:
            resource = resources.get(row[12])
            if resource is None:
                resource = resources[row[12]] = json.loads(row[12])
            span = Span(
                trace_id=row[0],
                span_id=row[1],
                parent_id=row[2],
                service=row[3],
                name=row[4],
                kind=row[5],
                start_ns=row[6],
                duration_ns=row[7],
                status=row[8],
                request_id=row[9],
                scope=row[10],
                resource=resource,
            )
            expand(span, self._details.unpack(row[11]))
            out.append(span)
        return out

    def _bare_spans(self, sql: str, params: Iterable[Any] | Mapping[str, Any]) -> list[Span]:
        """Span columns only: the detail left compressed in ``raw`` for :meth:`expand`, no resource,
        no scope (a 10,000-span trace's decoding and joins are most of its read)."""
        rows = (
            self._read()
            .execute(
                "SELECT s.trace_id, s.span_id, s.parent_id, s.service, s.name, s.kind, s.start_ns, s.duration_ns,"
                f" s.status, s.request_id, s.detail, s.http_status FROM spans s {sql}",
                params if isinstance(params, Mapping) else tuple(params),
            )
            .fetchall()
        )
        unread, unread_list = _UNREAD, _UNREAD_LIST
        # Positional, in Span's field order (half the cost of keywords over 10,000 rows; the test
        # that compares this read with the decoded one fails if the order changes).
        return [
            Span(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                "",
                "",
                "",
                "",
                unread,
                unread_list,
                unread_list,
                unread,
                r[11] or None,
                r[10],
            )  # fmt: skip
            for r in rows
        ]

    def expand(self, span: Span) -> None:
        """Decode a span read with ``details=False``: its attributes, events, links, status message."""
        if span.raw:
            raw, span.raw = span.raw, b""
            expand(span, self._details.unpack(raw))

    def read_connection(self) -> sqlite3.Connection:
        """This thread's read-only connection (for ``_find``, which runs its statements on it)."""
        return self._read()

    def unpack_detail(self, detail: bytes) -> bytes:
        """A stored span's detail as received (the column holds it compressed)."""
        return self._details.unpack(detail)

    def span_attributes(self, detail: bytes) -> dict[str, Any]:
        """The attributes of a stored span, from its ``detail`` column."""
        return detail_attributes(self._details.unpack(detail))

    def entry_span(self, trace_id: bytes) -> Span | None:
        """The span a trace is listed by: its root (the earliest, if several), else its earliest span."""
        order = "s.parent_id IS NOT NULL, s.start_ns, s.span_id, s.rowid"
        spans = self._spans(f"{_TRACE_ROWS} ORDER BY {order} LIMIT 1", (trace_id,))
        return spans[0] if spans else None

    def find(self, query: Query, *, limit: int = 20) -> FindResult:
        """The traces a search finds, newest first (see ``_find``); run it inside :meth:`budget`.

        Past the budget it answers what it found so far, with ``complete`` False.
        """
        return find(self, query, limit)

    def trace(self, trace_id: bytes, *, details: bool = True) -> list[Span]:
        """Every span of one trace, in start order (a span an exporter sent twice, once); with
        ``details`` False, undecoded and in stored order (see :meth:`_spans`)."""
        # Undecoded reads are for analysis, which orders what it needs itself: row order is the
        # range scan's own (no sort), and a duplicate's later copy is still the later row.
        # Equal start times by span ID, as the ClickHouse store orders them (the same answer on both).
        order = "s.start_ns, s.span_id, s.rowid" if details else "s.rowid"
        spans = self._spans(f"{_TRACE_ROWS} ORDER BY {order}", (trace_id,), details=details)
        # Rows are not unique by span ID (no unique index to maintain on ingest): a batch retried
        # after a lost acknowledgement is stored twice, and read back once, the later copy.
        unique = {span.span_id: span for span in spans}
        return spans if len(unique) == len(spans) else [s for s in spans if unique[s.span_id] is s]

    def span(self, trace_id: bytes, span_id: bytes) -> Span | None:
        """One span of a trace, decoded (its later copy, as :meth:`trace` keeps): the page asks for a
        span's details when it is clicked in a trace too big to send decoded."""
        spans = self._spans(f"{_TRACE_ROWS} AND s.span_id = ?2 ORDER BY s.rowid DESC LIMIT 1", (trace_id, span_id))
        return spans[0] if spans else None

    def traces_for_request(self, request_id: str, limit: int = 20) -> list[bytes]:
        """Trace IDs whose spans carry ``request_id``, newest first."""
        rows = (
            self._read()
            .execute(
                f"SELECT t.trace_id, max(s.start_ns) m FROM {_REQUEST_ROWS}"
                " WHERE s.request_id = ? GROUP BY t.trace_id ORDER BY m DESC LIMIT ?",
                (request_id, _own_trace(request_id), request_id, limit),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def logs(self, trace_id: bytes) -> list[LogRecord]:
        """The log records of one trace, in time order, every one decoded."""
        return list(self.trace_logs(trace_id))

    def traces(self, trace_ids: Sequence[bytes]) -> dict[bytes, list[Span]]:
        """Several traces, as :meth:`trace` each (one local file: nothing to gain from one query)."""
        found = ((t, self.trace(t)) for t in dict.fromkeys(trace_ids))
        return {t: spans for t, spans in found if spans}

    def traces_and_logs(
        self, trace_ids: Sequence[bytes], *, logs: bool = True
    ) -> tuple[dict[bytes, list[Span]], dict[bytes, list[LogRecord]]]:
        """:meth:`traces`, and the log records of those found (as :meth:`logs` each)."""
        spans = self.traces(trace_ids)
        return spans, {t: self.logs(t) for t in spans} if logs else {}

    def trace_logs(self, trace_id: bytes) -> LazyLogs:
        """The log records of one trace, in time order, each decoded when first read (see
        :class:`LazyLogs`): what ``why`` reads, which looks at a few of a big trace's records."""
        rows = (
            self._read()
            .execute(
                "SELECT l.time_ns, l.span_id, l.severity, l.record, l.resource_id"
                f" FROM {_LOG_RANGES} CROSS JOIN logs l ON l.id BETWEEN t.first_id AND t.last_id"
                " WHERE l.trace_id = :trace ORDER BY l.time_ns, l.id",
                {"trace": trace_id},
            )
            .fetchall()
        )
        resources: dict[int, tuple[str, dict[str, Any]]] = {}

        def load(index: int) -> LogRecord:
            time_ns, span_id, severity, record, resource_id = rows[index]
            if resource_id not in resources:
                service, attributes = (
                    self._read()
                    .execute("SELECT service, attributes FROM resources WHERE id = :id", {"id": resource_id})
                    .fetchone()
                )
                resources[resource_id] = (service, json.loads(attributes))
            service, resource = resources[resource_id]
            severity_text, body, logger, request_id, attributes = self.log_record(record)
            return LogRecord(
                trace_id=trace_id,
                span_id=span_id,
                time_ns=time_ns,
                severity_number=severity,
                severity_text=severity_text,
                body=body,
                logger=logger,
                request_id=request_id,
                attributes=attributes,
                service=service,
                resource=resource,
            )

        return LazyLogs([r[0] for r in rows], load)

    def log_record(self, record: bytes) -> tuple[str, str, str, str | None, dict[str, Any]]:
        """A stored log record's (severity text, body, logger, request ID, attributes)."""
        severity_text, body, logger, request_id, attributes = json.loads(self._log_records.unpack(record))
        return severity_text, body, logger, request_id, attributes

    def services(self) -> list[str]:
        return [r[0] for r in self._read().execute("SELECT DISTINCT service FROM resources ORDER BY service")]

    def operations(self, service: str, kind: int | None = None) -> list[tuple[str, int]]:
        sql = "SELECT name, kind FROM operations WHERE service = ?"
        params: list[Any] = [service]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return [(r[0], r[1]) for r in self._read().execute(sql + " ORDER BY name", params)]

    def search(
        self,
        *,
        service: str | None = None,
        operation: str | None = None,
        tags: dict[str, str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        min_duration_ns: int | None = None,
        max_duration_ns: int | None = None,
        limit: int = 20,
    ) -> list[bytes]:
        """Trace IDs with a span matching every criterion, newest first."""
        where = []
        params: list[Any] = []
        source = "spans s"
        rarest: tuple[int, str] | None = None  # (spans at most, MATCH) of the tag fewest spans carry
        for clause, value in (
            ("service = ?", service or None),
            ("name = ?", operation or None),
            ("start_ns >= ?", start_ns),
            ("start_ns <= ?", end_ns),
            ("duration_ns >= ?", min_duration_ns),
            ("duration_ns <= ?", max_duration_ns),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        for key, value in (tags or {}).items():
            if key == "error" and value == "true":
                where.append("status = 2")
            elif key in ("request.id", "request_id") and source == "spans s":
                # Through the traces' request index to their rows, then the other criteria.
                source = _REQUEST_ROWS
                params[:0] = [value, _own_trace(value)]
                where.append("s.request_id = ?")
                params.append(value)
            elif key in ("request.id", "request_id"):
                where.append("s.request_id = ?")
                params.append(value)
            elif key in ("http.response.status_code", "http.status_code") and value.isascii() and value.isdigit():
                where.append("http_status = ?")  # a column: the search users run most, kept cheap
                params.append(int(value))
            else:
                tokens = attribute_tokens(key, value)
                count = self._documents("span_attrs", tokens) if indexed(value) else _INDEX_DRIVES_BELOW + 1
                if rarest is None or count < rarest[0]:
                    rarest = (count, " OR ".join(map(fts_phrase, tokens)))
                where.append("otel_attr(detail, ?) = ?")  # exact, as Jaeger compares: every hit decoded
                params.extend([key, value])
        failed = "status = 2" in where or any(
            key in ("http.response.status_code", "http.status_code")
            and value.isascii()
            and value.isdigit()
            and int(value) >= 400
            for key, value in (tags or {}).items()
        )
        if rarest is not None and rarest[0] <= _INDEX_DRIVES_BELOW and source == "spans s":
            # The spans carrying the rarest tag (in any type), from the attribute index, are the
            # outer loop (CROSS JOIN keeps that order): a few thousand rows sorted by time instead
            # of the whole window walked.  A tag on many spans is met at once walking the window
            # newest first, so it is left to the time index.
            source = (
                "(SELECT rowid AS r FROM span_attrs WHERE span_attrs MATCH ?) a CROSS JOIN spans s ON s.rowid = a.r"
            )
            params.insert(0, rarest[1])
        elif failed and source == "spans s":
            # An error or a 4xx/5xx status: the partial index of failed spans (a few percent of all),
            # newest first, rather than every span of the service in the window.
            source = "spans s INDEXED BY spans_failed"
            where.append("(s.status = 2 OR s.http_status >= 400)")  # the index's condition, word for word
        # Newest span first, on the (service, start_ns) or start_ns index, stopping at `limit`
        # distinct traces: the first hit of a trace is its newest matching span, so the order is
        # the same as "GROUP BY trace ORDER BY max(start)", without visiting the whole window.
        sql = f"SELECT s.trace_id FROM {source}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.start_ns DESC"
        found: list[bytes] = []
        seen: set[bytes] = set()
        for (trace_id,) in self._read().execute(sql, params):
            if trace_id not in seen:
                seen.add(trace_id)
                found.append(trace_id)
                if len(found) >= limit:
                    break
        return found

    def _documents(self, table: str, tokens: list[str]) -> int:
        """How many rows of an FTS5 table hold any of ``tokens`` (at most: a row may hold several)."""
        conn = self._read()
        total = 0
        for token in tokens:
            row = conn.execute(f"SELECT doc FROM {table}_vocab WHERE term = :token", {"token": token}).fetchone()
            total += int(row[0]) if row else 0
        return total

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        """(parent service, child service, calls) for parent/child spans of different services."""
        rows = (
            self._read()
            .execute(
                "SELECT p.service, c.service, count(DISTINCT c.rowid) FROM spans c"
                " CROSS JOIN traces t ON t.trace_id = c.trace_id"
                " CROSS JOIN spans p NOT INDEXED ON p.rowid BETWEEN t.first_row AND t.last_row"
                " AND p.trace_id = c.trace_id AND p.span_id = c.parent_id"
                " WHERE c.start_ns BETWEEN ? AND ? AND p.service != c.service GROUP BY 1, 2 ORDER BY 1, 2",
                (start_ns, end_ns),
            )
            .fetchall()
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def entries(
        self,
        *,
        service: str | None = None,
        name_like: str | None = None,
        errors_only: bool = False,
        min_duration_ns: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        status_range: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> list[Span]:
        """The spans where requests entered the system, newest first.

        A root span, or a SERVER span whose parent is not stored (the caller sent a
        traceparent from outside): one row per request as a user thinks of it.  Filtered by
        ``service``, the rows are the requests that service served: its SERVER and CONSUMER spans
        and its root spans, so a service only ever called by another (the demo's inventory, a
        service-map node) lists its own requests rather than none.  ``since_ns`` and ``until_ns``
        bound the start time (both inclusive).
        """
        params: dict[str, Any] = {"limit": limit}
        if service:
            where = ["s.service = :service", _SERVED_SPAN]
            params["service"] = service
        else:
            where = [_ENTRY_SPAN]
        if name_like:
            where.append("s.name LIKE :name_like ESCAPE '\\'")
            params["name_like"] = "%" + name_like.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        if errors_only:
            where.append("s.status = 2")
        if min_duration_ns is not None:
            where.append("s.duration_ns >= :min_duration_ns")
            params["min_duration_ns"] = min_duration_ns
        if since_ns is not None:
            where.append("s.start_ns >= :since_ns")
            params["since_ns"] = since_ns
        if until_ns is not None:
            where.append("s.start_ns <= :until_ns")
            params["until_ns"] = until_ns
        if status_range is not None:
            where.append("s.http_status >= :status_low AND s.http_status < :status_high")
            params["status_low"], params["status_high"] = status_range
        # Equal starts by span ID (as the ClickHouse store); a span stored twice (a retried batch)
        # listed once: a few more rows are read than shown, for the copies to drop.
        params["limit"] = limit + min(limit, 64)
        spans = self._spans(
            "WHERE " + " AND ".join(where) + " ORDER BY s.start_ns DESC, s.span_id DESC LIMIT :limit", params
        )
        seen: set[tuple[bytes, bytes]] = set()
        unique = []
        for span in spans:
            if (span.trace_id, span.span_id) not in seen:
                seen.add((span.trace_id, span.span_id))
                unique.append(span)
        return unique[:limit]

    def endpoint_stats(self, since_ns: int) -> list[Served]:
        """Every span that served a request since ``since_ns``.

        A SERVER or CONSUMER span, or a root span of any kind: each service's own endpoints, the ones
        called by another stored service included (the entry spans of :meth:`entries` leave out a
        service only ever called by another, like the demo's inventory).  Only span columns are
        tested: the ``spans_start`` range scan, no parent lookup per span.
        """
        rows = (
            self._read()
            .execute(
                "SELECT s.service, s.name, s.start_ns, s.duration_ns, s.status, s.trace_id, s.span_id FROM spans s"
                f" WHERE s.start_ns >= :since AND {_SERVED_SPAN}",
                {"since": since_ns},
            )
            .fetchall()
        )
        # A span stored twice (a retried batch) is one request: counted once.
        seen: set[tuple[bytes, bytes]] = set()
        served = []
        for r in rows:
            if (r[5], r[6]) not in seen:
                seen.add((r[5], r[6]))
                served.append(Served(*r[:5]))  # the SELECT's first columns, in Served's order
        return served

    def recent_requests(
        self, service: str, name: str, since_ns: int, limit: int, until_ns: int | None = None
    ) -> list[Recent]:
        """The newest ``limit`` requests of one endpoint (``service``'s spans named ``name`` that
        served a request, as :meth:`endpoint_stats` counts them) started from ``since_ns`` to
        ``until_ns`` (no end if None), newest first.

        The partial index ``spans_served`` (the served spans only, by endpoint and time), read
        backwards: the latest requests of a rare endpoint of a busy service without walking the
        service's day (657 ms for 300 requests among 437k spans through ``spans_service``).
        """
        rows = (
            self._read()
            .execute(
                "SELECT s.trace_id, s.start_ns, s.duration_ns FROM spans s INDEXED BY spans_served"
                f" WHERE s.service = :service AND s.start_ns BETWEEN :since AND :until AND s.name = :name"
                f" AND {_SERVED_SPAN} ORDER BY s.start_ns DESC LIMIT :limit",
                {
                    "service": service,
                    "since": since_ns,
                    "until": 2**63 - 1 if until_ns is None else until_ns,
                    "name": name,
                    "limit": limit,
                },
            )
            .fetchall()
        )
        return [Recent(trace_id=r[0], start_ns=r[1], duration_ns=r[2]) for r in rows]

    def stats(self) -> dict[str, int]:
        conn = self._read()
        return {
            "spans": conn.execute("SELECT count(*) FROM spans").fetchone()[0],
            "logs": conn.execute("SELECT count(*) FROM logs").fetchone()[0],
            "bytes": self.path.stat().st_size,
        }
