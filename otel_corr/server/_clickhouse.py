"""The ClickHouse store (issue 21): schema, ingest, lookups by key, reads across shards, shard health.

``otel-corr serve --store clickhouse://...`` (``OTEL_CORR_STORE``): several ``serve`` replicas in front
of one cluster, every face (page, CLI, Jaeger v1/v3, search, ``why``) on the ``_store_api.TraceStore``
interface the SQLite store implements too.  Tested against a real two-shard cluster
(``tests/test_clickhouse_store.py``, ``test_clickhouse_find.py``, ``test_store_contract.py``):

- **One URL**: ``clickhouse://host:9000[,host2:9000]/db?cluster=NAME``.  Each host is a way in;
  the shards of ``NAME`` come from ``system.clusters`` (the server's ``remote_servers``) and are
  tried after the URL's hosts.
- **Schema per shard, versioned**: ClickHouse 18.16 (Debian's) runs ``ON CLUSTER`` DDL only with
  ZooKeeper, so the DDL goes to every shard in turn.  Each shard's ``schema_version`` table says
  which migrations it has; every statement is ``IF NOT EXISTS``, so a start interrupted halfway,
  or two replicas starting at once, just run them again.  Never change the shards or weights of
  ``NAME`` in place: a key's shard is ``cityHash64(key) % weights``, so existing traces would be
  looked up on the wrong shard (make a new cluster and database instead).
- **Same rows as SQLite**: :meth:`ClickHouseStore.submit` takes what ``_otlp.span_rows`` and
  ``_otlp.decode_logs`` build for the SQLite store; :meth:`resource_id` is the resource digest
  itself (as a number), so every replica gives a resource the same ID without sharing memory.
- **Sharded by trace**: spans and a trace's logs go to shard ``cityHash64(trace_id)``, the
  request-ID index to ``cityHash64(request_id)``: a lookup's answer lives on one shard.
- **Acknowledged means stored**: inserts are synchronous distributed inserts
  (``insert_distributed_sync=1``): the future resolves only once every shard the batch touches
  has written its part; a shard down fails the batch (the sender retries; what was written twice
  is read once, see :meth:`trace`).
- **A shard down is never silent**: a lookup runs on its key's shard (the Distributed table's own
  rule, ``cityHash64(key) % weights``); if that shard does not answer, :class:`ShardUnavailable`
  names it; if another shard is down, the answer is still complete.  On 18.16 a synchronous
  distributed insert opens every shard, so while any shard is down every insert is refused (503 /
  ``UNAVAILABLE``: senders keep their batches and retry).
- **Retention by day**: :meth:`ClickHouseStore.prune` drops whole day partitions on every shard.
- **Reads across shards** (schema v2: services, operations, Jaeger's search, dependencies, the
  page's list, endpoint stats, ``why``'s baseline) run on every shard's local tables at once and
  merge here, from a second copy of spans ordered by service and time (attributes as serialized
  KeyValues, compared exactly as the SQLite store compares a tag's text).  A shard that does not
  answer is left out and named (``_store_api.note_missing``): the answer is partial, never an error.

``clickhouse-driver`` is imported when a store is opened, never by ``import otel_corr.server``.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote

from .._ids import trace_id_of
from ..exceptions import StoreError, StoreUnavailable
from ._index import _BASE64, _event_rows, _kv, _View, log_doc
from ._model import LazyLogs, LogRecord, Span
from ._otlp import attribute_text, expand
from ._store import _UNREAD, _UNREAD_LIST, QueryTimeout, Recent, Served, StoreFull, _Item
from ._store_api import Shortfall, note_missing

if TYPE_CHECKING:
    from ._find import FindResult
    from ._search import Query

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ClickHouseStore",
    "ClickHouseURL",
    "ShardState",
    "ShardUnavailable",
    "exact_only",
    "key_prefix",
    "kv_candidates",
    "parse_url",
]

_T = TypeVar("_T")
_log = logging.getLogger("otel_corr.server")
#: A ``clickhouse_driver.Client`` (the driver ships no type information).
Client = Any

#: Seconds to wait for a shard to accept a connection: a down shard on a LAN refuses at once; a
#: host that vanished would otherwise hold every lookup for the driver's default 10 s.
CONNECT_TIMEOUT_S = 2.0
#: ClickHouse's error code for a query stopped by ``max_execution_time``.
_TIMEOUT_EXCEEDED = 159
#: Seconds a query may take before the driver gives up on the shard.
QUERY_TIMEOUT_S = 30.0

# The day a row belongs to (its partition: retention drops whole days on every shard).  DEFAULT,
# not MATERIALIZED: on 18.16 a MATERIALIZED column breaks inserts through the Distributed table.
_DAY = "Date DEFAULT toDate(toDateTime(intDiv({column}, 1000000000)))"
_ZERO_TRACE = bytes(16)

_V1_SPAN_COLUMNS = (
    "trace_id, span_id, parent_id, resource_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, http_status, resource"
)
#: The search copy's columns (v2), in its order.
_SEARCH_COLUMNS = (
    "service, start_ns, trace_id, span_id, parent_id, name, kind, duration_ns, status, http_status, request_id,"
    " attr_kv, texts, resource_keys, resource_values, day"
)
#: A log record's exception type and message from its attributes (JSON): what v3's ``texts`` holds.
_LOG_TEXTS = (
    "concat(visitParamExtractString(attributes, 'exception.type'), '\\n',"
    " visitParamExtractString(attributes, 'exception.message'))"
)
#: Each migration: its version and its statements (``{db}`` and ``{cluster}`` filled in), run on
#: every shard.  Idempotent by construction (``IF NOT EXISTS``): a migration interrupted on one
#: shard is run again, whole, on the next start.  Append; never edit a released one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            # Spans as the SQLite store's columns, plus the resource's attributes inline (LZ4 folds a
            # trace's repeats of one resource to almost nothing; a join-free trace read), the scope by
            # name.  One copy, ordered for lookup by trace ID; the search copy ordered by service and
            # time comes with search (see the design note).
            """CREATE TABLE IF NOT EXISTS {db}.spans_local (
                trace_id FixedString(16), span_id FixedString(8), parent_id String, resource_id UInt64,
                service String, name String, kind UInt8, start_ns UInt64, duration_ns UInt64, status UInt8,
                request_id String, scope String, detail String, http_status UInt16, resource String,
                day """
            + _DAY.format(column="start_ns")
            # Granules of 256 rows, not 8,192: a trace is a few rows, and a lookup reads one granule
            # of the trace ID per part (of every column before reads used PREWHERE).  At 200k spans
            # 29/71 ms p50/p99 at 8,192, 8.8/27 at 1,024 (design note g2); at 1M, one trace read on
            # a shard 3.96 ms at 1,024, 1.93 at 256, 1.82 at 128 (design note j).  Edited in place,
            # not a new migration: otel-corr has not been released (a store made at 1,024 keeps it).
            + """) ENGINE = MergeTree() PARTITION BY day ORDER BY (trace_id, start_ns, span_id)"""
            " SETTINGS index_granularity = 256",
            "CREATE TABLE IF NOT EXISTS {db}.spans AS {db}.spans_local"
            " ENGINE = Distributed({cluster}, {db}, spans_local, cityHash64(trace_id))",
            # The request-ID index, sharded by request ID: one shard answers a lookup.  One row per
            # trace, request ID and batch (as the SQLite store's ``traces`` ranges), never for a
            # request ID that names its own trace (every lookup tries that trace anyway).
            """CREATE TABLE IF NOT EXISTS {db}.request_ids_local (
                request_id String, trace_id FixedString(16), start_ns UInt64, day """
            + _DAY.format(column="start_ns")
            + """) ENGINE = MergeTree() PARTITION BY day ORDER BY (request_id, start_ns)""",
            "CREATE TABLE IF NOT EXISTS {db}.request_ids AS {db}.request_ids_local"
            " ENGINE = Distributed({cluster}, {db}, request_ids_local, cityHash64(request_id))",
            # Log records next to their trace's spans (same sharding key); records without a trace
            # (all-zero ID) spread by time instead of piling onto the zero ID's shard.
            """CREATE TABLE IF NOT EXISTS {db}.logs_local (
                trace_id FixedString(16), span_id String, time_ns UInt64, severity UInt8, severity_text String,
                body String, logger String, request_id String, attributes String, service String,
                resource String, day """
            + _DAY.format(column="time_ns")
            + """) ENGINE = MergeTree() PARTITION BY day ORDER BY (trace_id, time_ns)"""
            " SETTINGS index_granularity = 256",
            "CREATE TABLE IF NOT EXISTS {db}.logs AS {db}.logs_local"
            " ENGINE = Distributed({cluster}, {db}, logs_local,"
            " if(trace_id = toFixedString(unhex('00000000000000000000000000000000'), 16),"
            " time_ns, cityHash64(trace_id)))",
        ),
    ),
    (
        2,
        (
            # The search copy of spans, ordered by service and time (one sort key cannot serve both a
            # trace lookup and "service X in the last hour"): the columns the reads across shards
            # filter on, no detail and no resource JSON (those stay in spans_local, read by key).
            # Attributes as each KeyValue's serialized bytes (no value formatted at ingest; a tag
            # search compares the bytes of the few types its text can be, see ``kv_candidates``);
            # ``texts``: the span's event names, exceptions and status message (the page's word
            # search); the resource's attributes as text.  Same sharding as spans: a trace's search
            # rows sit beside its spans, so a read can join the two on one shard.
            """CREATE TABLE IF NOT EXISTS {db}.spans_search_local (
                service String, start_ns UInt64, trace_id FixedString(16), span_id FixedString(8), parent_id String,
                name String, kind UInt8, duration_ns UInt64, status UInt8, http_status UInt16, request_id String,
                attr_kv Array(String), texts String, resource_keys Array(String), resource_values Array(String),
                day Date) ENGINE = MergeTree() PARTITION BY day ORDER BY (service, start_ns)""",
            "CREATE TABLE IF NOT EXISTS {db}.spans_search AS {db}.spans_search_local"
            " ENGINE = Distributed({cluster}, {db}, spans_search_local, cityHash64(trace_id))",
            # Services (of spans and of log records, as the SQLite store's resources) and operations:
            # tiny tables read whole.  Rows repeat until merged: read with DISTINCT.
            "CREATE TABLE IF NOT EXISTS {db}.services_local (service String)"
            " ENGINE = ReplacingMergeTree() ORDER BY service",
            "CREATE TABLE IF NOT EXISTS {db}.services AS {db}.services_local"
            " ENGINE = Distributed({cluster}, {db}, services_local, cityHash64(service))",
            """CREATE TABLE IF NOT EXISTS {db}.operations_local (service String, name String, kind UInt8)
                ENGINE = ReplacingMergeTree() ORDER BY (service, name, kind)""",
            "CREATE TABLE IF NOT EXISTS {db}.operations AS {db}.operations_local"
            " ENGINE = Distributed({cluster}, {db}, operations_local, cityHash64(service))",
            # Where the writer inserts spans from v2 on: a Null table (stores nothing) whose
            # materialized views write spans_local, the search copy and the operations.  Why not
            # a view on spans_local: the attribute arrays would then be stored there too (and
            # 18.16 has no ALTER ... ADD COLUMN IF NOT EXISTS).  No alias in a view's SELECT: on
            # 18.16 an alias equal to a source column fails.
            """CREATE TABLE IF NOT EXISTS {db}.spans_in_local (
                trace_id FixedString(16), span_id FixedString(8), parent_id String, resource_id UInt64,
                service String, name String, kind UInt8, start_ns UInt64, duration_ns UInt64, status UInt8,
                request_id String, scope String, detail String, http_status UInt16, resource String,
                attr_kv Array(String), texts String, resource_keys Array(String), resource_values Array(String),
                day """
            + _DAY.format(column="start_ns")
            + ") ENGINE = Null",
            "CREATE TABLE IF NOT EXISTS {db}.spans_in AS {db}.spans_in_local"
            " ENGINE = Distributed({cluster}, {db}, spans_in_local, cityHash64(trace_id))",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.spans_local_mv TO {{db}}.spans_local"
            f" AS SELECT {_V1_SPAN_COLUMNS}, day FROM {{db}}.spans_in_local",
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {{db}}.spans_search_mv TO {{db}}.spans_search_local"
            f" AS SELECT {_SEARCH_COLUMNS} FROM {{db}}.spans_in_local",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.operations_mv TO {db}.operations_local"
            " AS SELECT DISTINCT service, name, kind FROM {db}.spans_in_local",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.services_mv TO {db}.services_local"
            " AS SELECT DISTINCT service FROM {db}.spans_in_local",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.log_services_mv TO {db}.services_local"
            " AS SELECT DISTINCT service FROM {db}.logs_local",
            # A v1 store's operations and services (its spans go into the search copy after these
            # statements, decoded in Python: ``ClickHouseStore._backfill_search``).  Run again if
            # the migration was interrupted: rows repeat until merged, and are read with DISTINCT.
            "INSERT INTO {db}.operations_local (service, name, kind) SELECT DISTINCT service, name, kind"
            " FROM {db}.spans_local",
            "INSERT INTO {db}.services_local (service) SELECT DISTINCT service FROM {db}.spans_local",
            "INSERT INTO {db}.services_local (service) SELECT DISTINCT service FROM {db}.logs_local",
        ),
    ),
    (
        3,
        (
            # A log record's words beyond its body, as the SQLite index holds them (``_index.log_doc``):
            # its exception's type and message.  The word search reads body and this instead of the
            # whole attributes JSON (stack traces, code paths: 4x the body's bytes; at 1M spans a
            # shard's scan 67 -> 11 ms).  The writer fills it; rows stored before it (and what a
            # replica still on v2 inserts) get it from this DEFAULT, computed from the attributes
            # when read until a merge writes it.  The same DEFAULT on the Distributed table, which
            # fills an insert's missing columns before sending it to the shards.
            "ALTER TABLE {db}.logs_local ADD COLUMN texts String DEFAULT " + _LOG_TEXTS,
            "ALTER TABLE {db}.logs ADD COLUMN texts String DEFAULT " + _LOG_TEXTS,
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
#: A migration's ``ALTER TABLE ... ADD COLUMN``: skipped where the column exists (18.16 has no
#: ``ADD COLUMN IF NOT EXISTS``), so an interrupted migration runs again whole.
_ADD_COLUMN = re.compile(r"ALTER TABLE \{db\}\.(\w+) ADD COLUMN (\w+) ")

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS {db}.schema_version (
    version UInt32, otel_corr String, applied_ns UInt64) ENGINE = MergeTree() ORDER BY version"""

#: What the writer inserts into ``spans_in`` (v2): the v1 columns and the search copy's own.
_SPAN_COLUMNS = _V1_SPAN_COLUMNS + ", attr_kv, texts, resource_keys, resource_values"
_LOG_COLUMNS = (
    "trace_id, span_id, time_ns, severity, severity_text, body, logger, request_id, attributes, service, resource"
)
# Keyed reads select the trace in PREWHERE: ClickHouse reads the other columns (the details) only of
# the granules that hold it, not of the one granule per part the primary key cannot rule out (18.16
# keeps primary-key conditions out of its automatic PREWHERE).  Measured at 1M spans: 60 MB -> 1.1 MB
# read and 25 -> 4.3 ms for nine traces on one shard.
_SPAN_READ = (
    "SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, resource FROM {table} PREWHERE trace_id = unhex(%(trace)s){span}"
    # A batch retried after a failed (partly written) insert is stored twice: read once.
    " ORDER BY start_ns, span_id LIMIT 1 BY span_id"
)
# The columns only (``trace(details=False)``, what ``why`` reads): no scope, no resource.
_BARE_READ = (
    "SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " detail, http_status FROM {table} PREWHERE trace_id = unhex(%(trace)s)"
    " ORDER BY start_ns, span_id LIMIT 1 BY span_id"
)
_LOG_READ = f"SELECT {_LOG_COLUMNS} FROM {{table}} PREWHERE trace_id = unhex(%(trace)s) ORDER BY time_ns, span_id, body"
# Several traces at once (``traces``/``logs_of``): ``where`` is ``trace_id IN (...)``.
_SPANS_READ = (
    "SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, resource FROM {table} PREWHERE {where}"
    " ORDER BY trace_id, start_ns, span_id LIMIT 1 BY trace_id, span_id"
)
_LOGS_READ = f"SELECT {_LOG_COLUMNS} FROM {{table}} PREWHERE {{where}} ORDER BY trace_id, time_ns, span_id, body"


class ShardUnavailable(StoreUnavailable):
    """A shard that holds (or may hold) the answer does not answer: the answer would be partial.

    ``shards`` names each one (number, address, the driver's error), so every face can say which.
    """

    def __init__(self, shards: Sequence[ShardState], what: str) -> None:
        self.shards = tuple(shards)
        names = ", ".join(f"shard {s.number} ({s.address}): {s.error}" for s in self.shards)
        super().__init__(f"{what}: {names}")


@dataclass(frozen=True, slots=True)
class ShardState:
    """One shard of the cluster as :meth:`ClickHouseStore.health` saw it."""

    number: int
    address: str
    up: bool
    error: str = ""
    version: str = ""


@dataclass(frozen=True, slots=True)
class ClickHouseURL:
    """A parsed ``clickhouse://host:port[,host2:port2...]/db?cluster=NAME`` (``user``/``password`` optional).

    Several hosts: where the store may enter the cluster (read its shard list, insert through its
    ``Distributed`` tables), in order; the shards the cluster lists are tried after them.
    """

    host: str
    port: int
    database: str
    cluster: str
    user: str = "default"
    password: str = field(default="", repr=False)
    hosts: tuple[tuple[str, int], ...] = ()

    def redacted(self) -> str:
        """The URL without its password, for status lines and messages."""
        names = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts or ((self.host, self.port),))
        user = f"{self.user}@" if self.user != "default" else ""
        return f"clickhouse://{user}{names}/{self.database}?cluster={self.cluster}"


def _host_port(text: str, number: int) -> tuple[str, int]:
    """One ``host[:port]`` (``[v6]:port`` too) of a store URL; errors say which, never its text."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise StoreError(f"bad host number {number} in the ClickHouse store URL (an unclosed [)")
        host, port_text = text[1:end], text[end + 1 :].removeprefix(":")
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    if not host or any(c in host for c in "/?#@ :") and not text.startswith("["):
        raise StoreError(f"bad host number {number} in the ClickHouse store URL")
    if not port_text:
        return host, 9000
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise StoreError(f"bad port of host number {number} in the ClickHouse store URL (a TCP port, 1-65535)")
    return host, int(port_text)


def parse_url(url: str) -> ClickHouseURL:
    """Parse a store URL; raise :class:`StoreError` saying what is wrong with it.

    Split by hand, not by ``urlsplit``: a password holding ``/``, ``?`` or ``#`` (pasted unescaped)
    would end its netloc early and land in a message.  No message quotes any part of the URL.
    """
    scheme, sep, rest = url.strip().partition("://")
    if scheme != "clickhouse" or not sep:
        raise StoreError("not a ClickHouse store URL (clickhouse://host:9000/db?cluster=NAME)")
    # The credentials end at the last "@" (database and cluster names hold no "@").
    userinfo, at, rest = rest.rpartition("@")
    if not at:
        userinfo = ""
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    path, _, query = tail.partition("?")
    database = path.strip("/") or "otel_corr"
    cluster = (parse_qs(query).get("cluster") or [""])[0]
    if not cluster:
        raise StoreError("the ClickHouse store URL needs ?cluster=NAME (a cluster of remote_servers)")
    for name, value in (("database", database), ("cluster", cluster)):
        # Both go into DDL as identifiers: letters, digits and underscores only.
        if not value.replace("_", "").isalnum() or not value.isascii():
            raise StoreError(f"the ClickHouse {name} name may hold letters, digits and _ only")
    user, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(h.strip(), n) for n, h in enumerate(netloc.split(","), 1) if h.strip())
    return ClickHouseURL(
        host=hosts[0][0] if hosts else "127.0.0.1",
        port=hosts[0][1] if hosts else 9000,
        database=database,
        cluster=cluster,
        user=unquote(user or "default"),
        password=unquote(password),
        hosts=hosts or (("127.0.0.1", 9000),),
    )


@dataclass(frozen=True, slots=True)
class _Shard:
    number: int
    host: str
    port: int
    weight: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _driver() -> Any:
    # import_module: the driver ships no type information (mypy would need an override for it).
    try:
        clickhouse_driver = importlib.import_module("clickhouse_driver")
    except ImportError:
        raise StoreError(
            "the ClickHouse store needs clickhouse-driver: in a clone of otel-corr, pip install -e '.[clickhouse]'"
        ) from None
    return clickhouse_driver


def _city_hash64(key: bytes) -> int:
    """ClickHouse's ``cityHash64`` of one string (CityHash v1.0.2, the version ClickHouse ships)."""
    return int(_cityhash().CityHash64(key))


@cache
def _cityhash() -> Any:
    try:
        return importlib.import_module("clickhouse_cityhash.cityhash")
    except ImportError:
        raise StoreError(
            "the ClickHouse store needs clickhouse-cityhash: in a clone of otel-corr, pip install -e '.[clickhouse]'"
        ) from None


def _own_trace(request_id: str) -> bytes | None:
    """The trace ID a request ID names (a UUID or 32 hex digits), as in the SQLite store."""
    trace_id = trace_id_of(request_id)
    return None if trace_id is None else trace_id.to_bytes(16, "big")


class ClickHouseStore:
    """A ClickHouse cluster as otel-corr's store: writer threads insert (group commit), queries run on
    per-thread clients, lookups by key on the key's shard."""

    #: Several ``serve`` replicas write one cluster: each sees only what it ingests itself.
    shared = True

    def __init__(
        self,
        url: str,
        *,
        writers: int = 2,
        group_spans: int = 16384,
        max_queued_spans: int = 65536,
    ) -> None:
        self.url = parse_url(url)
        self._driver = _driver()
        _cityhash()  # missing: fails here, at start-up, not at the first lookup
        self._local = threading.local()
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._group_spans = group_spans
        self._max_queued_spans = max_queued_spans
        self._queued_spans = 0
        self._pending = 0
        self._idle = threading.Condition()
        #: As ``Store``'s: called on a writer thread with each service this replica stores for the
        #: first time, and with each batch once the cluster has it (``otel-corr tail``).
        self.on_new_service: Callable[[str], None] | None = None
        self.on_committed: Callable[[list[tuple[Any, ...]], list[LogRecord]], None] | None = None
        self._services_seen: set[str] = set()
        self._reader_pool: ThreadPoolExecutor | None = None
        self._readers_lock = threading.Lock()
        #: Settings of every insert.  Synchronous: the insert returns once each shard has its part
        #: (what "acknowledged means stored" rests on); the benchmark sets 0 to compare.
        self.insert_settings: dict[str, Any] = {"insert_distributed_sync": 1}
        db, cluster = self.url.database, self.url.cluster
        #: Where inserts enter the cluster: the URL's hosts, then every shard; the first that answers.
        self._entries: list[tuple[str, int]] = list(self.url.hosts or ((self.url.host, self.url.port),))
        self._entry_at = 0
        rows, failures = None, []
        for host, port in self._entries:
            try:
                rows = self._client(host, port).execute(
                    "SELECT shard_num, host_address, port, shard_weight FROM system.clusters"
                    " WHERE cluster = %(cluster)s AND replica_num = 1 ORDER BY shard_num",
                    {"cluster": cluster},
                )
                break
            except self._errors() as exc:
                failures.append(f"{host}:{port}: {_reason(exc)}")
        if rows is None:
            raise StoreError(f"cannot reach ClickHouse at {self.url.redacted()}: {'; '.join(failures)}")
        if not rows:
            raise StoreError(f"ClickHouse at {self.url.redacted()} has no cluster {cluster!r} in remote_servers")
        self.shards = tuple(_Shard(int(n), _text(h), int(p), int(w)) for n, h, p, w in rows)
        self._entries += [(s.host, s.port) for s in self.shards if (s.host, s.port) not in self._entries]
        self._tables = {
            "spans": f"{db}.spans",
            "spans_in": f"{db}.spans_in",  # v2: spans_local and the search copy, through views
            "request_ids": f"{db}.request_ids",
            "logs": f"{db}.logs",
        }
        self.ensure_schema()
        self._writers = [
            threading.Thread(target=self._run, name=f"otel-corr-clickhouse-{i}", daemon=True) for i in range(writers)
        ]
        for writer in self._writers:
            writer.start()

    # --- connections -----------------------------------------------------------------------

    def _errors(self) -> tuple[type[BaseException], ...]:
        errors = self._driver.errors
        return (errors.Error, OSError, EOFError)

    def _client(self, host: str, port: int) -> Client:
        """This thread's client for one server (the driver's clients are not thread-safe)."""
        clients: dict[tuple[str, int], Client] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        client = clients.get((host, port))
        if client is None:
            client = clients[(host, port)] = self._connect(host, port)
        return client

    def _connect(self, host: str, port: int) -> Client:
        """A new client for one server: every connection the store makes is made here (the tests
        of a current release replace it with an in-process engine, ``tests/clickhouse_chdb.py``)."""
        return self._driver.Client(
            host,
            port=port,
            user=self.url.user,
            password=self.url.password,
            connect_timeout=CONNECT_TIMEOUT_S,
            send_receive_timeout=QUERY_TIMEOUT_S,
            # Bytes in and out: IDs and details are binary; the text columns are encoded here.
            settings={"strings_as_bytes": True},
        )

    def _entry(self) -> Client:
        """The client inserts go through: the current entry host (see :meth:`_next_entry`)."""
        return self._client(*self._entries[self._entry_at % len(self._entries)])

    def _next_entry(self) -> str:
        """Forget the entry host that failed and move on to the next; returns the failed one's address."""
        host, port = self._entries[self._entry_at % len(self._entries)]
        clients: dict[tuple[str, int], Client] = getattr(self._local, "clients", {})
        client = clients.pop((host, port), None)
        if client is not None:
            client.disconnect()
        self._entry_at += 1  # a race between writers only skips a host: each is tried again later
        return f"{host}:{port}"

    def _on(self, shard: _Shard) -> Client:
        """This thread's client for ``shard``, its queries bounded by the thread's :meth:`budget` if any."""
        client = self._client(shard.host, shard.port)
        if self.past_budget():
            # A handler making one query after another (a search reading each trace it found):
            # none starts past the budget, as SQLite's progress handler stops the next statement.
            raise QueryTimeout
        client.settings.pop("max_execution_time", None)
        client.settings.update(self.query_settings())  # the driver merges these into every query's
        return client

    # --- schema ----------------------------------------------------------------------------

    def ensure_schema(self) -> dict[int, int]:
        """Create or upgrade the schema on every shard; returns each shard's version before (0: new).

        Every shard must answer when there is something to create or upgrade: a schema made on
        half the cluster would fail later, on some inserts only.  When every shard that answers is
        already current, a replica starts with a shard down (a restart during an outage serves the
        live shards' part, as the running replicas do), saying so in a warning.  Refuses a shard
        whose schema is newer than this otel-corr knows.
        """
        db, cluster = self.url.database, self.url.cluster
        down = [s for s in self.health() if not s.up]
        if down:
            live = [shard for shard in self.shards if all(d.number != shard.number for d in down)]
            if not live or any(self._applied(shard) != SCHEMA_VERSION for shard in live):
                raise ShardUnavailable(down, "cannot create the ClickHouse schema: every shard must answer")
            _log.warning(
                "otel-corr serve: starting with a ClickHouse shard down (answers say what they lack): %s",
                ", ".join(f"shard {d.number} ({d.address}): {d.error}" for d in down),
            )
            return {shard.number: SCHEMA_VERSION for shard in live}
        before: dict[int, int] = {}
        for shard in self.shards:
            client = self._on(shard)
            client.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
            client.execute(_VERSION_TABLE.format(db=db))
            version = int(client.execute(f"SELECT max(version) FROM {db}.schema_version")[0][0])
            before[shard.number] = version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"shard {shard.number} ({shard.address}) holds schema version {version}; this otel-corr"
                    f" knows up to {SCHEMA_VERSION}: upgrade otel-corr"
                )
            for number, statements in MIGRATIONS:
                if number <= version:
                    continue
                for statement in statements:
                    added = _ADD_COLUMN.match(statement)
                    if added and self._has_column(client, added[1], added[2]):
                        continue
                    client.execute(statement.format(db=db, cluster=cluster))
                if number == 2 and version:  # a store made before v2: its spans into the search copy
                    self._backfill_search(shard)
                client.execute(
                    f"INSERT INTO {db}.schema_version (version, otel_corr, applied_ns) VALUES",
                    [(number, _version().encode(), time.time_ns())],
                )
        return before

    def _has_column(self, client: Client, table: str, column: str) -> bool:
        return bool(
            client.execute(
                "SELECT count() FROM system.columns"
                " WHERE database = %(db)s AND table = %(table)s AND name = %(column)s",
                {"db": self.url.database, "table": table, "column": column},
            )[0][0]
        )

    def _applied(self, shard: _Shard) -> int:
        """The newest schema version ``shard`` holds (0: none)."""
        client = self._on(shard)
        exists = client.execute(
            "SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'schema_version'",
            {"db": self.url.database},
        )[0][0]
        if not exists:
            return 0
        return int(client.execute(f"SELECT max(version) FROM {self.url.database}.schema_version")[0][0])

    def _backfill_search(self, shard: _Shard) -> None:
        """Copy a v1 store's spans (on ``shard``) into the search copy, attributes and texts decoded
        from their details as the writer does (SQL cannot): found afterwards as if stored by v2.

        Streamed (a second connection reads while this thread's inserts), 20,000 rows an insert.
        Run again if the upgrade was interrupted: a span copied twice is read once.
        """
        db = self.url.database
        reader = self._connect(shard.host, shard.port)
        writer = self._on(shard)
        insert = f"INSERT INTO {db}.spans_search_local ({_SEARCH_COLUMNS}) VALUES"
        resources: dict[bytes, tuple[list[bytes], list[bytes]]] = {}
        chunk: list[tuple[Any, ...]] = []
        try:
            for *head, detail, resource, day in reader.execute_iter(
                "SELECT service, start_ns, trace_id, span_id, parent_id, name, kind, duration_ns, status,"
                f" http_status, request_id, detail, resource, day FROM {db}.spans_local",
                settings={"max_block_size": 8192},
            ):
                pairs = resources.get(resource)
                if pairs is None:
                    pairs = _resource_arrays(_text(resource))
                    if len(resources) < 10_000:
                        resources[resource] = pairs
                chunk.append((*head, *_search_fields(detail), *pairs, day))
                if len(chunk) >= 20_000:
                    writer.execute(insert, chunk)
                    chunk.clear()
            if chunk:
                writer.execute(insert, chunk)
        finally:
            reader.disconnect()

    def schema_versions(self) -> dict[int, list[int]]:
        """Each shard's applied schema versions, in order (what the version table holds)."""
        return {
            shard.number: [
                int(r[0])
                for r in self._on(shard).execute(
                    f"SELECT version FROM {self.url.database}.schema_version ORDER BY version"
                )
            ]
            for shard in self.shards
        }

    # --- health ----------------------------------------------------------------------------

    def health(self) -> list[ShardState]:
        """Ask every shard directly whether it answers (and its version)."""
        states = []
        for shard in self.shards:
            try:
                ((version,),) = self._on(shard).execute("SELECT version()")
            except self._errors() as exc:
                self._drop(shard)
                states.append(ShardState(shard.number, shard.address, False, _reason(exc)))
            else:
                states.append(ShardState(shard.number, shard.address, True, version=_text(version)))
        return states

    def _drop(self, shard: _Shard) -> None:
        clients: dict[tuple[str, int], Client] = getattr(self._local, "clients", {})
        client = clients.pop((shard.host, shard.port), None)
        if client is not None:
            client.disconnect()

    def _unavailable(self) -> tuple[type[BaseException], ...]:
        """The driver's errors that mean "this server does not answer" (not a query it refused)."""
        errors = self._driver.errors
        return (errors.NetworkError, errors.SocketTimeoutError, OSError, EOFError)

    def _home(self, key: bytes) -> _Shard:
        """The shard a Distributed table sends ``key`` to: ``cityHash64(key) % total weight``, by weight
        ranges in shard order (ClickHouse's rule), computed here with ClickHouse's own CityHash (the
        ``clickhouse-cityhash`` package): a lookup is one round trip, to the shard that holds it."""
        slot = _city_hash64(key) % sum(s.weight for s in self.shards)
        for candidate in self.shards:
            if slot < candidate.weight:
                return candidate
            slot -= candidate.weight
        raise AssertionError("unreachable: the slot is below the total weight")  # pragma: no cover

    def _keyed(self, key: bytes, what: str, query: Callable[[Client, str], _T]) -> _T:
        """Run a lookup whose answer lives on ``key``'s shard, on that shard's local table.

        Why not through the Distributed table: it asks every shard for what one holds (twice the
        latency at 100k spans, see the design note), and fails whole when any shard is down,
        even one that cannot hold the answer.  Here a down shard matters only if it is ``key``'s:
        then :class:`ShardUnavailable` names it; otherwise the answer is complete.
        """
        home = self._home(key)
        try:
            return query(self._on(home), "_local")
        except self._unavailable() as exc:
            self._drop(home)
            state = ShardState(home.number, home.address, False, _reason(exc))
            raise ShardUnavailable(
                [state], f"cannot look up {what}: it is stored on a shard that does not answer"
            ) from None

    # --- writing ---------------------------------------------------------------------------

    def resource_id(self, digest: str, service: str) -> int:
        """A resource's ID: its digest's first 60 bits, so every replica gives it the same ID."""
        return int(digest[:15], 16)

    def submit(
        self,
        rows: list[tuple[Any, ...]],
        resources: list[tuple[int, str, str, str]],
        logs: list[LogRecord] | None = None,
    ) -> Future[None]:
        """Queue rows (from ``_otlp.span_rows``) and log records; the future resolves once every shard has them.

        Raises :class:`._store.StoreFull` instead of queueing without bound (the sender is told
        to retry later, as with SQLite).  The future fails when a shard is down or the insert
        fails: the batch must not be acknowledged (retried, it may be stored twice and is read once).
        """
        item = _Item(rows, resources, logs or [])
        with self._idle:
            if self._pending and self._queued_spans + item.size > self._max_queued_spans:
                raise StoreFull
            self._pending += 1
            self._queued_spans += item.size
        self._queue.put(item)
        return item.done

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is inserted (or failed)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _run(self) -> None:
        """A writer: one insert for whatever is queued (group commit, as the SQLite store's writer).

        Why: each insert makes a part on every shard it touches, and its cost is mostly per
        insert, not per row (one sender of 500-span requests: 3-16k spans/s; 5,000-span inserts:
        31k/s, see the design note).  Concurrent senders share an insert; a lone one gets its own.
        """
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, size = [item], item.size
            # No linger (waiting for more before inserting): measured, it did not raise the
            # throughput of eight senders on a saturated machine (11.7k vs 12.0k spans/s a replica at
            # 50 ms) and cut a lone sender's to half or less (9.3k -> 5.0k at 50 ms, 1.9k at 200 ms).
            while size < self._group_spans:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # another writer's stop signal, or ours for after this batch
                    break
                batch.append(more)
                size += more.size
            error: BaseException | None = None
            rows = [row for b in batch for row in b.rows]
            resources = [r for b in batch for r in b.resources]
            logs = [r for b in batch for r in b.logs]
            error = self._insert_group(rows, resources, logs)
            errors: list[BaseException | None] = [error] * len(batch)
            if error is not None and len(batch) > 1 and not isinstance(error, _Unreachable):
                # Not the cluster's fault: one batch's data may be what it refused.  Each alone, so
                # one sender's bad batch never takes the others' with it.
                errors = [self._insert_group(b.rows, b.resources, b.logs) for b in batch]
            with self._idle:
                self._pending -= len(batch)
                self._queued_spans -= size
                self._idle.notify_all()
            for done, failed in zip(batch, errors, strict=True):
                if failed is None:
                    done.done.set_result(None)
                else:
                    done.done.set_exception(failed)
            stored = [b for b, failed in zip(batch, errors, strict=True) if failed is None]
            if stored:
                self._after_commit(stored)

    def _insert_group(
        self, rows: list[tuple[Any, ...]], resources: list[tuple[int, str, str, str]], logs: list[LogRecord]
    ) -> StoreUnavailable | None:
        """Insert; None when stored, else the error its senders get (503 / UNAVAILABLE: retry)."""
        try:
            try:
                self._insert(rows, resources, logs)
            except self._unavailable():
                # The entry host does not answer: once more through the next one (a part it
                # took before failing is stored twice and read once).
                self._next_entry()
                self._insert(rows, resources, logs)
        except Exception as exc:  # the writer carries on
            unreachable = isinstance(exc, self._unavailable())
            if unreachable:
                self._next_entry()
            _log.warning("otel-corr serve: a ClickHouse insert failed: %s", _reason(exc))
            # Not acknowledged: a synchronous insert that failed may have stored some shards' part.
            kind = _Unreachable if unreachable or _is_network(exc) else StoreUnavailable
            return kind(f"the batch was not stored: ClickHouse refused the insert: {_reason(exc)}")
        return None

    def _after_commit(self, batch: list[_Item]) -> None:
        """The callbacks ``serve`` hangs on a stored batch; a failing one never stops the writer."""
        try:
            if self.on_new_service is not None:
                for item in batch:
                    for _, _, service, _ in item.resources:  # (id, digest, service, attributes)
                        if service not in self._services_seen:
                            self._services_seen.add(service)
                            self.on_new_service(service)
            if self.on_committed is not None:
                for item in batch:
                    self.on_committed(item.rows, item.logs)
        except Exception:
            _log.exception("otel-corr serve: a callback on a stored ClickHouse batch failed")

    def _insert(
        self, rows: list[tuple[Any, ...]], resources: list[tuple[int, str, str, str]], logs: list[LogRecord]
    ) -> None:
        client = self._entry()
        settings = self.insert_settings
        texts = {rid: text.encode() for rid, _, _, text in resources}
        # The search copy's resource arrays, once per resource (v2).
        resource_pairs = {rid: _resource_arrays(text) for rid, _, _, text in resources}
        if rows:
            columns: list[list[Any]] = [[] for _ in range(19)]
            index: dict[tuple[bytes, str], int] = {}  # (trace, request ID) -> latest start, for the index
            for row in rows:
                trace_id = bytes(row[0])
                request_id: str = row[10]
                values = (
                    trace_id,
                    bytes(row[1]),
                    bytes(row[2]),
                    row[3],
                    row[4].encode(),
                    row[5].encode(),
                    _u8(row[6]),
                    row[7],
                    row[8],
                    _u8(row[9]),
                    request_id.encode(),
                    row[11].encode(),
                    bytes(row[12]),
                    row[13] if 0 < row[13] < 65536 else 0,  # any other "status" is none (a UInt16 column)
                    texts.get(row[3], b"{}"),
                    *_search_fields(bytes(row[12])),
                    *resource_pairs.get(row[3], ([], [])),
                )
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
                if request_id and _own_trace(request_id) != trace_id:
                    key = (trace_id, request_id)
                    index[key] = max(index.get(key, 0), row[7])
            client.execute(
                f"INSERT INTO {self._tables['spans_in']} ({_SPAN_COLUMNS}) VALUES",
                columns,
                columnar=True,
                settings=settings,
            )
            if index:
                client.execute(
                    f"INSERT INTO {self._tables['request_ids']} (request_id, trace_id, start_ns) VALUES",
                    [(rid.encode(), trace, start) for (trace, rid), start in index.items()],
                    settings=settings,
                )
        if logs:
            client.execute(
                f"INSERT INTO {self._tables['logs']} ({_LOG_COLUMNS}, texts) VALUES",
                [
                    (
                        r.trace_id or _ZERO_TRACE,
                        r.span_id or b"",
                        r.time_ns,
                        _u8(r.severity_number),
                        r.severity_text.encode(),
                        r.body.encode(),
                        r.logger.encode(),
                        (r.request_id or "").encode(),
                        _dumps(r.attributes).encode(),
                        r.service.encode(),
                        _dumps(r.resource).encode(),
                        "\n".join(log_doc(r.body, r.attributes)[1:]).encode(),
                    )
                    for r in logs
                ],
                settings=settings,
            )

    def prune(self, *, max_age_ns: int | None = None, max_spans: int | None = None, now_ns: int | None = None) -> int:
        """Drop every whole day older than ``max_age_ns`` on every shard; returns the spans dropped.

        Retention by partition: a day's parts are unlinked, nothing is rewritten.  A day still
        partly inside the window is kept whole (retention keeps at least ``max_age_ns``).  Every
        shard must answer (:class:`ShardUnavailable` otherwise, before anything is dropped): a
        day dropped on half the cluster would leave half-traces.
        """
        if max_age_ns is None:
            return 0  # max_spans: refused at start-up (``serve`` names --max-spans); age only here
        down = [s for s in self.health() if not s.up]
        if down:
            raise ShardUnavailable(down, "retention skipped this pass (every shard must answer)")
        cutoff_s = ((time.time_ns() if now_ns is None else now_ns) - max_age_ns) // 1_000_000_000
        db = self.url.database
        dropped = 0
        for shard in self.shards:
            client = self._on(shard)
            # A day whose newest row is before the cutoff's day; dropped by partition ID ('20231114'),
            # which ALTER ... DROP PARTITION ID takes on 18.16 and on current releases alike.
            parts = client.execute(
                "SELECT table, partition_id, sum(if(table = 'spans_local', rows, 0)) FROM system.parts"
                " WHERE active AND database = %(db)s"
                " AND table IN ('spans_local', 'request_ids_local', 'logs_local', 'spans_search_local')"
                " AND max_date < toDate(toDateTime(%(cutoff)s)) GROUP BY table, partition_id",
                {"db": db, "cutoff": cutoff_s},
            )
            for table, partition_id, rows in parts:
                client.execute(f"ALTER TABLE {db}.{_text(table)} DROP PARTITION ID %(id)s", {"id": _text(partition_id)})
                dropped += int(rows)
        return dropped

    def close(self) -> None:
        """Finish the queued inserts, stop the writers and disconnect this thread's clients."""
        self.flush()
        for _ in self._writers:
            self._queue.put(None)
        for writer in self._writers:
            writer.join(30)
        clients: dict[tuple[str, int], Client] = getattr(self._local, "clients", {})
        for client in clients.values():
            client.disconnect()
        clients.clear()
        if self._reader_pool is not None:
            self._reader_pool.shutdown(wait=False)

    # --- reading ---------------------------------------------------------------------------

    def trace(self, trace_id: bytes, *, details: bool = True) -> list[Span]:
        """Every span of one trace, in start order (a span stored twice, once), decoded as the SQLite store does.

        With ``details`` False, as ``Store.trace(details=False)``: columns only, the detail left in
        ``raw`` for :meth:`expand`, read-only placeholders for what it holds (``why`` decodes a
        few spans of a big trace).  Raises :class:`ShardUnavailable` when the trace's shard does
        not answer.
        """
        rows = self._keyed(
            trace_id,
            f"trace {trace_id.hex()}",
            lambda client, suffix: client.execute(
                (_SPAN_READ if details else _BARE_READ).format(table=self._tables["spans"] + suffix, span=""),
                {"trace": trace_id.hex()},
            ),
        )
        if not details:
            return [
                Span(
                    trace_id=r[0],
                    span_id=r[1],
                    parent_id=r[2] or None,
                    service=_text(r[3]),
                    name=_text(r[4]),
                    kind=r[5],
                    start_ns=r[6],
                    duration_ns=r[7],
                    status=r[8],
                    request_id=_text(r[9]) or None,
                    attributes=_UNREAD,
                    events=_UNREAD_LIST,
                    links=_UNREAD_LIST,
                    resource=_UNREAD,
                    http_status=r[11] or None,
                    raw=r[10],
                )
                for r in rows
            ]
        return self._decoded(rows)

    def span(self, trace_id: bytes, span_id: bytes) -> Span | None:
        """One span of a trace, decoded (the page asks for a span's details when it is clicked in a
        trace too big to send decoded); :class:`ShardUnavailable` when the trace's shard does not answer."""
        rows = self._keyed(
            trace_id,
            f"span {span_id.hex()} of trace {trace_id.hex()}",
            lambda client, suffix: client.execute(
                _SPAN_READ.format(table=self._tables["spans"] + suffix, span=" AND span_id = unhex(%(span)s)"),
                {"trace": trace_id.hex(), "span": span_id.hex()},
            ),
        )
        spans = self._decoded(rows)
        return spans[0] if spans else None

    def _decoded(self, rows: list[tuple[Any, ...]]) -> list[Span]:
        resources: dict[bytes, dict[str, Any]] = {}
        spans = []
        for r in rows:
            resource = resources.get(r[12])
            if resource is None:
                resource = resources[r[12]] = json.loads(r[12])
            span = Span(
                trace_id=r[0],
                span_id=r[1],
                parent_id=r[2] or None,
                service=_text(r[3]),
                name=_text(r[4]),
                kind=r[5],
                start_ns=r[6],
                duration_ns=r[7],
                status=r[8],
                request_id=_text(r[9]) or None,
                scope=_text(r[10]),
                resource=resource,
            )
            expand(span, r[11])
            spans.append(span)
        return spans

    def traces_for_request(self, request_id: str, limit: int = 20) -> list[bytes]:
        """Trace IDs whose spans carry ``request_id``, newest first (by their latest such span).

        The request-ID index's shard answers for the indexed ones; a request ID naming its own
        trace (a UUID or 32 hex digits) is looked up in that trace, on its shard.  Raises
        :class:`ShardUnavailable` when either shard does not answer.
        """
        key = request_id.encode()
        newest: dict[bytes, int] = {}
        rows = self._keyed(
            key,
            f"request ID {request_id!r}",
            lambda client, suffix: client.execute(
                f"SELECT trace_id, max(start_ns) FROM {self._tables['request_ids']}{suffix}"
                " WHERE request_id = %(request)s GROUP BY trace_id",
                {"request": request_id},
            ),
        )
        for trace_id, start in rows:
            newest[trace_id] = max(newest.get(trace_id, 0), int(start))
        own = _own_trace(request_id)
        if own is not None:
            own_rows = self._keyed(
                own,
                f"trace {own.hex()} (named by request ID {request_id!r})",
                lambda client, suffix: client.execute(
                    f"SELECT max(start_ns), count() FROM {self._tables['spans']}{suffix}"
                    " PREWHERE trace_id = unhex(%(trace)s) WHERE request_id = %(request)s",
                    {"trace": own.hex(), "request": request_id},
                ),
            )
            if own_rows and own_rows[0][1]:
                newest[own] = max(newest.get(own, 0), int(own_rows[0][0]))
        return sorted(newest, key=lambda t: newest[t], reverse=True)[:limit]

    def traces(self, trace_ids: Sequence[bytes]) -> dict[bytes, list[Span]]:
        """Several traces at once (a search's results): each shard's share in one query, the shards at
        once.  Only the traces found are keys.  :class:`ShardUnavailable` names a shard that holds one
        of them and does not answer (as :meth:`trace`)."""
        return self.traces_and_logs(trace_ids, logs=False)[0]

    def traces_and_logs(
        self, trace_ids: Sequence[bytes], *, logs: bool = True
    ) -> tuple[dict[bytes, list[Span]], dict[bytes, list[LogRecord]]]:
        """:meth:`traces`, and the log records of those found (each trace's in time order): the spans'
        and the logs' query of every shard at once, so the answer costs one round trip of the slowest."""
        wanted = list(dict.fromkeys(trace_ids))
        statements = [_SPANS_READ.format(table=self._tables["spans"] + "_local", where="{where}")]
        if logs:
            statements.append(_LOGS_READ.format(table=self._tables["logs"] + "_local", where="{where}"))
        span_rows, *more = self._keyed_many(wanted, statements)
        log_rows = more[0] if more else []
        spans: dict[bytes, list[Span]] = {}
        for span in self._decoded(span_rows):
            spans.setdefault(span.trace_id, []).append(span)
        records: dict[bytes, list[LogRecord]] = {t: [] for t in wanted if t in spans} if logs else {}
        for r in log_rows:
            if r[0] in records:  # the logs of a trace without spans are not its answer (as trace + logs)
                records[r[0]].append(_log_record(r))
        return spans, records

    def _keyed_many(self, keys: Sequence[bytes], statements: Sequence[str]) -> list[list[tuple[Any, ...]]]:
        """Each of ``statements`` (a ``{where}`` for the condition on ``trace_id``) on every shard that holds
        some of ``keys`` (trace IDs), for its share; every (shard, statement) at once.  The rows of each
        statement, the shards' together.

        As :meth:`_keyed`, a shard that does not answer raises :class:`ShardUnavailable` naming it
        (the answer would lack whole traces that are known to exist).
        """
        by_shard: dict[_Shard, list[bytes]] = {}
        for key in dict.fromkeys(keys):
            by_shard.setdefault(self._home(key), []).append(key)
        if not by_shard:
            return [[] for _ in statements]
        settings = self.query_settings()

        def run(shard: _Shard, group: list[bytes], statement: str) -> list[tuple[Any, ...]] | ShardState:
            params = {f"t{i}": key.hex() for i, key in enumerate(group)}
            condition = "trace_id IN (" + ", ".join(f"unhex(%(t{i})s)" for i in range(len(group))) + ")"
            try:
                client = self._on(shard)
                client.settings.update(settings)  # the caller's budget, on a reader thread too (_on resets it)
                rows: list[tuple[Any, ...]] = client.execute(
                    statement.format(where=condition), params, settings={"max_threads": 1}
                )
                return rows
            except self._unavailable() as exc:
                self._drop(shard)
                return ShardState(shard.number, shard.address, False, _reason(exc))

        jobs = [(shard, group, statement) for statement in statements for shard, group in by_shard.items()]
        others = [self._readers().submit(run, *job) for job in jobs[1:]]
        results = [run(*jobs[0]), *(future.result() for future in others)]
        down = {r.number: r for r in results if isinstance(r, ShardState)}
        if down:
            raise ShardUnavailable(
                [down[n] for n in sorted(down)],
                "cannot read the traces found: some are stored on a shard that does not answer",
            )
        width = len(by_shard)
        return [
            [row for rows in results[i * width : (i + 1) * width] for row in rows]  # type: ignore[union-attr]
            for i in range(len(statements))
        ]

    def unpack_detail(self, detail: bytes) -> bytes:
        """A span's ``raw`` detail as received: stored uncompressed here (ClickHouse compresses the column)."""
        return detail

    def expand(self, span: Span) -> None:
        """Decode a span read with ``details=False``: its attributes, events, links, status message."""
        if span.raw:
            raw, span.raw = span.raw, b""
            expand(span, raw)

    def logs(self, trace_id: bytes) -> list[LogRecord]:
        """The log records of one trace, in time order; :class:`ShardUnavailable` when its shard does not answer."""
        return list(self.trace_logs(trace_id))

    def trace_logs(self, trace_id: bytes) -> LazyLogs:
        """The log records of one trace, in time order, each decoded when first read (as
        ``Store.trace_logs``: ``why`` bisects by time and decodes the few it looks at)."""
        if trace_id == _ZERO_TRACE:  # where records without a trace are kept: not a trace of its own
            return LazyLogs([], _no_record)
        rows = self._keyed(
            trace_id,
            f"the logs of trace {trace_id.hex()}",
            lambda client, suffix: client.execute(
                _LOG_READ.format(table=self._tables["logs"] + suffix), {"trace": trace_id.hex()}
            ),
        )

        return LazyLogs([r[2] for r in rows], lambda index: _log_record(rows[index]))

    # --- query budget ----------------------------------------------------------------------

    @contextmanager
    def budget(self, deadline: float) -> Iterator[None]:
        """As ``Store.budget``: the block's queries stop at ``deadline`` (:class:`QueryTimeout`).

        Each query is sent with ``max_execution_time`` set to what is left; a server that stops
        one for it (or a query past the deadline on return) raises :class:`QueryTimeout`.
        """
        if time.monotonic() > deadline:
            raise QueryTimeout
        self._local.deadline = deadline
        try:
            yield
        except self._driver.errors.ServerException as exc:
            if time.monotonic() > deadline or getattr(exc, "code", 0) == _TIMEOUT_EXCEEDED:
                raise QueryTimeout from None
            raise
        finally:
            self._local.deadline = None

    def past_budget(self) -> bool:
        """Whether this thread's query ran past its :meth:`budget`."""
        deadline: float | None = getattr(self._local, "deadline", None)
        return deadline is not None and time.monotonic() > deadline

    def query_settings(self) -> dict[str, Any]:
        """Settings for a read on this thread: the time left of its budget, if any."""
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            return {}
        return {"max_execution_time": max(1, int(deadline - time.monotonic() + 0.999))}

    # --- reads across shards ---------------------------------------------------------------
    #
    # Each runs on every shard's local tables at once (``_fan_out``) and merges the answers here:
    # a trace lives on one shard (spans, search copy and logs share the sharding key), so a join
    # or a parent probe within a trace is exact on its shard, and a shard that does not answer
    # is known by its own error (no second health round trip) and noted with ``note_missing``.

    def _readers(self) -> ThreadPoolExecutor:
        with self._readers_lock:
            if self._reader_pool is None:
                self._reader_pool = ThreadPoolExecutor(
                    max_workers=max(4, 4 * len(self.shards)), thread_name_prefix="otel-corr-clickhouse-read"
                )
            return self._reader_pool

    def _fan_out(
        self, query: Callable[[_Shard, Client, dict[str, Any]], _T], shards: Sequence[_Shard] | None = None
    ) -> list[tuple[_Shard, _T]]:
        """``query(shard, client, settings)`` on each shard (every shard by default) at once: the answers of
        those that answered.  A shard that does not answer is left out and noted (``note_missing``):
        the face says the answer may be partial; a read across shards never raises for it.

        Why not the Distributed tables with ``skip_unavailable_shards``: they leave a shard out
        silently (a second round of ``health()`` would be needed to say which), and a join inside
        a trace would need ``GLOBAL`` or the local table names anyway.  The first shard runs on
        the calling thread (its budget's settings are read here, on that thread).
        """
        chosen = list(self.shards if shards is None else shards)
        if not chosen:
            return []
        settings = self.query_settings()

        def run(shard: _Shard) -> tuple[_Shard, _T | None, Shortfall | None]:
            try:
                return shard, query(shard, self._on(shard), settings), None
            except self._unavailable() as exc:
                self._drop(shard)
                return shard, None, Shortfall(shard.number, shard.address, _reason(exc))

        others = [self._readers().submit(run, shard) for shard in chosen[1:]]
        results = [run(chosen[0]), *(future.result() for future in others)]
        missing = [shortfall for _, _, shortfall in results if shortfall is not None]
        if missing:
            note_missing(missing)
        return [(shard, value) for shard, value, shortfall in results if shortfall is None]  # type: ignore[misc]

    def services(self) -> list[str]:
        """Every service that sent spans or log records, by name (``Store.services``)."""
        db = self.url.database
        found: set[bytes] = set()
        for _, rows in self._fan_out(
            lambda _, client, settings: client.execute(
                f"SELECT DISTINCT service FROM {db}.services_local", settings=settings
            )
        ):
            found.update(r[0] for r in rows)
        return [_text(s) for s in sorted(found)]

    def operations(self, service: str, kind: int | None = None) -> list[tuple[str, int]]:
        """(name, kind) of every operation of ``service`` (of one kind if given), by name (``Store.operations``)."""
        sql = f"SELECT DISTINCT name, kind FROM {self.url.database}.operations_local WHERE service = %(service)s"
        params: dict[str, Any] = {"service": service}
        if kind is not None:
            sql += " AND kind = %(kind)s"
            params["kind"] = kind
        found: set[tuple[bytes, int]] = set()
        for _, rows in self._fan_out(lambda _, client, settings: client.execute(sql, params, settings=settings)):
            found.update((r[0], int(r[1])) for r in rows)
        return [(_text(name), k) for name, k in sorted(found)]

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
        """Trace IDs with a span matching every criterion, newest first (by their newest such span).

        As ``Store.search`` (Jaeger's search): ``tags`` compare an attribute's value as text
        (``error=true`` is the span status, ``http.status_code`` the HTTP status column,
        ``request.id`` the request-ID column), on the search copy ordered by service and time.
        """
        params: dict[str, Any] = {}
        where = _window(start_ns, end_ns, params)
        for clause, name, value in (
            ("service = %(service)s", "service", service or None),
            ("name = %(operation)s", "operation", operation or None),
            ("duration_ns >= %(min_duration)s", "min_duration", _u64(min_duration_ns)),
            ("duration_ns <= %(max_duration)s", "max_duration", _u64(max_duration_ns)),
        ):
            if value is not None:
                where.append(clause)
                params[name] = value
        if max_duration_ns is not None and max_duration_ns < 0:
            where.append("0")
        decoded: list[tuple[str, str]] = []  # tags matched by decoding their values
        for i, (key, value) in enumerate((tags or {}).items()):
            if key == "error" and value == "true":
                where.append("status = 2")
            elif key in ("request.id", "request_id"):
                where.append(f"request_id = %(tag{i})s")
                params[f"tag{i}"] = value
            elif key in ("http.response.status_code", "http.status_code") and value.isascii() and value.isdigit():
                code = int(value)  # a column (0 = none): the search users run most, kept cheap
                where.append(f"http_status = {code}" if 0 < code <= 0xFFFF else "0")
            elif exact_only(value):
                where.append(f"arrayExists(x -> startsWith(x, unhex(%(key{i})s)), attr_kv)")
                params[f"key{i}"] = key_prefix(key).hex()
                decoded.append((key, value))
            else:
                where.append(f"hasAny(attr_kv, arrayMap(x -> unhex(x), %(kv{i})s))")
                params[f"kv{i}"] = [kv.hex() for kv in kv_candidates(key, value)]
        wanted = max(1, limit)  # as Store.search: the first trace found is always kept
        table = f"{self.url.database}.spans_search_local"
        condition = " AND ".join(where) or "1"

        def query(_: _Shard, client: Client, settings: dict[str, Any]) -> list[tuple[bytes, int]]:
            if not decoded:
                rows = client.execute(
                    f"SELECT trace_id, max(start_ns) AS newest FROM {table} WHERE {condition}"
                    f" GROUP BY trace_id ORDER BY newest DESC, trace_id DESC LIMIT {wanted}",
                    params,
                    settings=settings,
                )
                return [(r[0], int(r[1])) for r in rows]
            # An array, a map or NaN has no single serialized form: the spans carrying the key are
            # read newest first and their value formatted, as SQLite's search does for every tag.
            # In pages (keyset: newest first, then below the last row read), so a common key never
            # brings every span carrying it into memory to find ``wanted`` traces.
            found: dict[bytes, int] = {}
            page, after, below = 512, "", dict(params)
            while True:
                rows = client.execute(
                    f"SELECT trace_id, start_ns, attr_kv FROM {table} WHERE {condition}{after}"
                    f" ORDER BY start_ns DESC, trace_id DESC LIMIT {page}",
                    below,
                    settings=settings,
                )
                for trace_id, start, kvs in rows:
                    if trace_id in found:
                        continue
                    detail = b"".join(b"\x4a" + _varint(len(kv)) + kv for kv in kvs)  # a span of those attributes
                    if all(attribute_text(detail, key) == value for key, value in decoded):
                        found[trace_id] = int(start)
                        if len(found) >= wanted:
                            return list(found.items())
                if len(rows) < page:
                    return list(found.items())
                if self.past_budget():
                    raise QueryTimeout
                last_trace, last_start = rows[-1][0], int(rows[-1][1])
                after = (
                    " AND (start_ns < %(last_start)s OR (start_ns = %(last_start)s"
                    " AND trace_id < unhex(%(last_trace)s)))"
                )
                below = {**params, "last_start": last_start, "last_trace": bytes(last_trace).hex()}
                page = min(page * 2, 8192)

        hits = [hit for _, rows in self._fan_out(query) for hit in rows]
        hits.sort(key=lambda hit: (hit[1], hit[0]), reverse=True)
        return [trace_id for trace_id, _ in hits[:wanted]]

    def find(self, query: Query, *, limit: int = 20) -> FindResult:
        """The traces a search finds, newest first (see ``_clickhouse_find``); run it inside :meth:`budget`."""
        from ._clickhouse_find import find

        return find(self, query, limit)

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        """(parent service, child service, calls) for parent/child spans of different services whose child
        started in [``start_ns``, ``end_ns``] (``Store.dependencies``).  A parent is found in its trace,
        on the trace's shard, wherever its own start is."""
        params: dict[str, Any] = {}
        window = " AND ".join([*_window(start_ns, end_ns, params), "parent_id != ''"])
        db = self.url.database
        sql = (
            "SELECT p_service, c_service, count() FROM ("
            f" SELECT trace_id, parent_id AS p_id, service AS c_service FROM {db}.spans_search_local"
            f" WHERE {window} LIMIT 1 BY trace_id, span_id"
            ") AS c ALL INNER JOIN ("
            f" SELECT trace_id, toString(span_id) AS p_id, service AS p_service FROM {db}.spans_local"
            f" WHERE trace_id IN (SELECT trace_id FROM {db}.spans_search_local WHERE {window})"
            " LIMIT 1 BY trace_id, span_id"
            ") AS p USING (trace_id, p_id) WHERE p_service != c_service GROUP BY p_service, c_service"
        )
        calls: dict[tuple[bytes, bytes], int] = {}
        for _, rows in self._fan_out(lambda _, client, settings: client.execute(sql, params, settings=settings)):
            for parent, child, count in rows:
                calls[(parent, child)] = calls.get((parent, child), 0) + int(count)
        return [(_text(parent), _text(child), calls[(parent, child)]) for parent, child in sorted(calls)]

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
        """The spans where requests entered the system, newest first, decoded (``Store.entries``).

        A root span, or a SERVER span whose parent is not stored; filtered by ``service``, that
        service's SERVER, CONSUMER and root spans.  The newest candidates of each shard are
        taken from the search copy, the SERVER ones probed for a stored parent in their trace
        (on the same shard); the chosen spans are then read whole from ``spans_local``.
        """
        if limit <= 0:
            return []
        params: dict[str, Any] = {}
        where = _window(since_ns, until_ns, params)
        if service:
            where += ["service = %(service)s", "(parent_id = '' OR kind IN (2, 5))"]
            params["service"] = service
        else:
            where.append("(parent_id = '' OR kind = 2)")
        if name_like:
            # SQLite's LIKE: a substring, ASCII letters in either case (lower() folds ASCII only).
            where.append("position(lower(name), lower(%(name_like)s)) > 0")
            params["name_like"] = name_like
        if errors_only:
            where.append("status = 2")
        if min_duration_ns is not None:
            where.append("duration_ns >= %(min_duration)s")
            params["min_duration"] = _u64(min_duration_ns)
        if status_range is not None:
            # http_status 0 is "none" (SQLite's NULL), in no range.
            where.append("http_status != 0 AND http_status >= %(status_low)s AND http_status < %(status_high)s")
            params["status_low"], params["status_high"] = status_range
        db = self.url.database
        candidates = (
            f"SELECT trace_id, span_id, start_ns, parent_id, kind FROM {db}.spans_search_local"
            f" WHERE {' AND '.join(where)} ORDER BY start_ns DESC, span_id DESC, trace_id DESC"
            " LIMIT 1 BY trace_id, span_id LIMIT {window}"
        )
        if service:
            probe = "1"
        else:
            # A SERVER span with a parent is an entry only if that parent is not stored (in its trace).
            probe = (
                f"parent_id = '' OR kind != 2 OR concat(trace_id, parent_id) NOT IN ("
                f"SELECT concat(trace_id, span_id) FROM {db}.spans_local WHERE trace_id IN ("
                f"SELECT trace_id FROM ({candidates}) WHERE parent_id != '' AND kind = 2))"
            )
        sql = f"SELECT trace_id, span_id, start_ns, {probe} AS entry FROM ({candidates})"

        def query(_: _Shard, client: Client, settings: dict[str, Any]) -> list[tuple[int, bytes, bytes]]:
            # Most candidates are entries; when too few are, look further back (fewer than asked
            # for means the shard has no more candidates).
            window = max(64, 4 * limit)
            while True:
                rows = client.execute(sql.replace("{window}", str(window)), params, settings=settings)
                found = [(int(r[2]), r[1], r[0]) for r in rows if r[3]]
                if len(found) >= limit or len(rows) < window:
                    return found[:limit]
                window *= 4

        chosen: list[tuple[int, bytes, bytes, _Shard]] = [
            (*key, shard) for shard, found in self._fan_out(query) for key in found
        ]
        chosen.sort(key=lambda c: c[:3], reverse=True)
        chosen = chosen[:limit]
        read = (
            f"SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
            f" scope, detail, resource FROM {db}.spans_local"
            # PREWHERE: the few granules of those traces are found first, and only theirs read whole
            # (the detail of every span otherwise: 2x the time at 100k spans).
            " PREWHERE trace_id IN (SELECT toFixedString(unhex(arrayJoin(%(traces)s)), 16))"
            " WHERE span_id IN (SELECT toFixedString(unhex(arrayJoin(%(spans)s)), 8)) LIMIT 1 BY trace_id, span_id"
        )
        keys: dict[int, set[tuple[bytes, bytes]]] = {}
        for _, span_id, trace_id, shard in chosen:
            keys.setdefault(shard.number, set()).add((trace_id, span_id))

        def fetch(shard: _Shard, client: Client, settings: dict[str, Any]) -> list[Span]:
            mine = keys[shard.number]
            wanted = {
                "traces": sorted({trace_id.hex() for trace_id, _ in mine}),
                "spans": sorted({span_id.hex() for _, span_id in mine}),
            }
            rows = client.execute(read, wanted, settings=settings)
            return self._decoded([r for r in rows if (r[0], r[1]) in mine])

        shards = [s for s in self.shards if s.number in keys]
        spans = {(span.trace_id, span.span_id): span for _, part in self._fan_out(fetch, shards) for span in part}
        return [spans[(t, s)] for _, s, t, _ in chosen if (t, s) in spans]

    def endpoint_stats(self, since_ns: int) -> list[Served]:
        """Every span that served a request (SERVER, CONSUMER or root) since ``since_ns``, in start order
        (``Store.endpoint_stats``; the page groups them by endpoint)."""
        params: dict[str, Any] = {}
        where = " AND ".join([*_window(since_ns, None, params), "(parent_id = '' OR kind IN (2, 5))"])
        sql = (
            "SELECT service, name, start_ns, duration_ns, status FROM"
            f" {self.url.database}.spans_search_local WHERE {where} LIMIT 1 BY trace_id, span_id"
        )
        rows = [
            row
            for _, part in self._fan_out(lambda _, c, settings: c.execute(sql, params, settings=settings))
            for row in part
        ]
        rows.sort(key=lambda r: r[2])
        return [Served(_text(r[0]), _text(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]

    def recent_requests(
        self, service: str, name: str, since_ns: int, limit: int, until_ns: int | None = None
    ) -> list[Recent]:
        """The newest ``limit`` requests of one endpoint (``service``'s served spans named ``name``) started
        from ``since_ns`` to ``until_ns`` (no end if None), newest first (``Store.recent_requests``)."""
        if limit <= 0:
            return []
        params: dict[str, Any] = {"service": service, "name": name}
        where = " AND ".join(
            [
                *_window(since_ns, until_ns, params),
                "service = %(service)s AND name = %(name)s AND (parent_id = '' OR kind IN (2, 5))",
            ]
        )
        sql = (
            f"SELECT trace_id, span_id, start_ns, duration_ns FROM {self.url.database}.spans_search_local"
            f" WHERE {where} ORDER BY start_ns DESC, span_id DESC, trace_id DESC"
            f" LIMIT 1 BY trace_id, span_id LIMIT {int(limit)}"
        )
        rows = [
            row
            for _, part in self._fan_out(lambda _, c, settings: c.execute(sql, params, settings=settings))
            for row in part
        ]
        rows.sort(key=lambda r: (r[2], r[1], r[0]), reverse=True)
        return [Recent(trace_id=r[0], start_ns=int(r[2]), duration_ns=int(r[3])) for r in rows[:limit]]

    def stats(self) -> dict[str, int]:
        """Spans and log records stored, and the bytes their parts take on disk, over every shard."""
        db = self.url.database
        spans = logs = size = 0
        for shard in self.shards:
            client = self._on(shard)
            spans += int(client.execute(f"SELECT count() FROM {db}.spans_local")[0][0])
            logs += int(client.execute(f"SELECT count() FROM {db}.logs_local")[0][0])
            size += int(
                client.execute(
                    "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = %(db)s", {"db": db}
                )[0][0]
            )
        return {"spans": spans, "logs": logs, "bytes": size}


_U64_MAX = 2**64 - 1


def _u64(value: int | None) -> int | None:
    """A bound as the UInt64 columns take it (a bad one must not fail the query)."""
    return None if value is None else min(max(int(value), 0), _U64_MAX)


def _window(since_ns: int | None, until_ns: int | None, params: dict[str, Any]) -> list[str]:
    """Conditions for ``since_ns <= start_ns <= until_ns`` (either bound optional), with the days they
    cover so that ClickHouse skips other days' partitions (it cannot derive ``day`` from ``start_ns``)."""
    where: list[str] = []
    for name, bound, op, day_op in (("since", since_ns, ">=", ">="), ("until", until_ns, "<=", "<=")):
        if bound is None:
            continue
        if bound < 0 and op == "<=":
            where.append("0")  # before any span
            continue
        params[name] = _u64(bound)
        where.append(f"start_ns {op} %({name})s")
        if params[name] // 1_000_000_000 < 4_000_000_000:  # DateTime is 32-bit: beyond, no day bound
            where.append(f"day {day_op} toDate(toDateTime(intDiv(%({name})s, 1000000000)))")
    return where


class _Unreachable(StoreUnavailable):
    """An insert failed because a server did not answer (not because of the batch's data)."""


def _is_network(exc: BaseException) -> bool:
    """A server's error that means another server did not answer (a shard down behind the entry)."""
    return getattr(exc, "code", None) in _NETWORK_CODES


#: ClickHouse error codes for "a server did not answer": NETWORK_ERROR, SOCKET_TIMEOUT,
#: ALL_CONNECTION_TRIES_FAILED, CANNOT_READ_FROM_SOCKET, CANNOT_WRITE_TO_SOCKET, TIMEOUT_EXCEEDED.
_NETWORK_CODES = frozenset({209, 210, 279, 95, 96, 159})


def _log_record(r: Sequence[Any]) -> LogRecord:
    """A log record from a row of ``_LOG_COLUMNS``."""
    return LogRecord(
        trace_id=r[0],
        span_id=r[1] or None,
        time_ns=r[2],
        severity_number=r[3],
        severity_text=_text(r[4]),
        body=_text(r[5]),
        logger=_text(r[6]),
        request_id=_text(r[7]) or None,
        attributes=json.loads(r[8]),
        service=_text(r[9]),
        resource=json.loads(r[10]),
    )


def _no_record(index: int) -> LogRecord:
    raise IndexError(index)  # an empty LazyLogs never loads one


def _u8(value: int) -> int:
    """An OTLP enum (kind, status code, severity) in its UInt8 column: an unknown one is 0 (unset)."""
    return value if 0 <= value < 256 else 0


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _reason(exc: BaseException) -> str:
    """The first line of a driver error (its messages carry a server stack trace)."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("otel-corr")
    except PackageNotFoundError:
        return "unknown"


# --- the search copy's columns (schema v2) ------------------------------------------------------


def _search_fields(detail: bytes) -> tuple[list[bytes], bytes]:
    """A span's ``attr_kv`` (each attribute's KeyValue bytes, as stored) and ``texts`` (its events'
    names and exceptions, its status message; "\n" between them) for the search copy.

    One C-level parse of three fields (``_index``'s view): no attribute value is formatted here,
    which is what keeps this to a few µs a span on the writer thread.
    """
    view = _View.FromString(detail)
    attributes: list[bytes] = list(view.attributes)
    if not (view.events or view.status):
        return attributes, b""
    words = [column for _, row in _event_rows(view) for column in row if column]
    return attributes, "\n".join(words).encode()


def _resource_arrays(text: str) -> tuple[list[bytes], list[bytes]]:
    """A resource's attribute keys and values (as ``attribute_text`` writes a value) for the search copy."""
    try:
        attributes = json.loads(text)
    except ValueError:
        return [], []
    if not isinstance(attributes, dict):
        return [], []
    keys, values = [], []
    for key, value in attributes.items():
        shown = _value_text(value)
        if shown is not None:
            keys.append(str(key).encode())
            values.append(shown.encode())
    return keys, values


def _value_text(value: Any) -> str | None:
    """A decoded attribute value as text, as ``_otlp.attribute_text`` gives it (what a tag equals)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key_prefix(key: str) -> bytes:
    """How every serialized KeyValue of ``key`` starts (field 1, its length, the key): "has the key"."""
    raw = key.encode()
    return b"\x0a" + _varint(len(raw)) + raw


def kv_candidates(key: str, text: str) -> list[bytes]:
    """The serialized KeyValues an attribute ``key`` whose value reads as ``text`` can have.

    One per type the text can be (string, int, double, bool, bytes as base64), kept only if that
    value reads back as exactly ``text`` (as ``_otlp.attribute_text`` formats it): ``42`` is the
    string and the int, not the double (``42.0``).  Serialized by protobuf, as every SDK sends
    them.  Arrays, maps and NaN have no single form: :func:`exact_only` says which texts need
    the spans' values decoded instead.
    """
    values: list[tuple[str, Any]] = [("string_value", text)]
    if text in ("true", "false"):
        values.append(("bool_value", text == "true"))
    try:
        number = int(text)
    except ValueError:
        pass
    else:
        if -(2**63) <= number < 2**63 and str(number) == text:
            values.append(("int_value", number))
    try:
        double = float(text)
    except (ValueError, OverflowError):
        pass
    else:
        if str(double) == text:
            values.append(("double_value", double))
    if _BASE64.fullmatch(text):
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            pass
        else:
            if base64.b64encode(raw).decode() == text:
                values.append(("bytes_value", raw))
    return [_kv(key, which, value) for which, value in values]


def exact_only(text: str) -> bool:
    """Whether ``text`` can only be matched by decoding values (an array, a map, NaN): see :func:`kv_candidates`."""
    return text[:1] in ("[", "{") or text == "nan"
