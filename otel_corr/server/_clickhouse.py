"""The ClickHouse store (groundwork for issue 21): schema, ingest, trace and request-ID lookup, shard health.

Not wired into ``otel-corr serve`` yet: the page, the CLI, Jaeger, search and ``why`` still call
the SQLite :class:`._store.Store` directly; ``docs/design/clickhouse-store.md`` lists what they use
and the interface both stores are to share.  What is here is what that interface rests on, tested
against a real two-shard cluster (``tests/test_clickhouse_store.py``):

- **One URL**: ``clickhouse://host:9000/db?cluster=NAME``.  ``host`` is any shard; the shards of
  ``NAME`` come from its ``system.clusters`` (the server's ``remote_servers``).
- **Schema per shard, versioned**: ClickHouse 18.16 (Debian's) runs ``ON CLUSTER`` DDL only with
  ZooKeeper, so the DDL goes to every shard in turn.  Each shard's ``schema_version`` table says
  which migrations it has; every statement is ``IF NOT EXISTS``, so a start interrupted halfway,
  or two replicas starting at once, just run them again.
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
  names it; if another shard is down, the answer is still complete.  A lookup does not need the
  URL's shard after start (only the shard list is read there); inserts still do (they go through
  its Distributed tables: with it down, ingest is refused).
- **Retention by day**: :meth:`ClickHouseStore.prune` drops whole day partitions on every shard.

``clickhouse-driver`` is imported when a store is opened, never by ``import otel_corr.server``.
"""

from __future__ import annotations

import importlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from .._ids import trace_id_of
from ..exceptions import StoreError, StoreUnavailable
from ._model import LazyLogs, LogRecord, Span
from ._otlp import expand
from ._store import _UNREAD, _UNREAD_LIST, QueryTimeout, Recent, Served, StoreFull, _Item

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
            + """) ENGINE = MergeTree() PARTITION BY day ORDER BY (trace_id, start_ns, span_id)""",
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
            + """) ENGINE = MergeTree() PARTITION BY day ORDER BY (trace_id, time_ns)""",
            "CREATE TABLE IF NOT EXISTS {db}.logs AS {db}.logs_local"
            " ENGINE = Distributed({cluster}, {db}, logs_local,"
            " if(trace_id = toFixedString(unhex('00000000000000000000000000000000'), 16),"
            " time_ns, cityHash64(trace_id)))",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS {db}.schema_version (
    version UInt32, otel_corr String, applied_ns UInt64) ENGINE = MergeTree() ORDER BY version"""

_SPAN_COLUMNS = (
    "trace_id, span_id, parent_id, resource_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, http_status, resource"
)
_LOG_COLUMNS = (
    "trace_id, span_id, time_ns, severity, severity_text, body, logger, request_id, attributes, service, resource"
)
_SPAN_READ = (
    "SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " scope, detail, resource FROM {table} WHERE trace_id = unhex(%(trace)s){span}"
    # A batch retried after a failed (partly written) insert is stored twice: read once.
    " ORDER BY start_ns, span_id LIMIT 1 BY span_id"
)
# The columns only (``trace(details=False)``, what ``why`` reads): no scope, no resource.
_BARE_READ = (
    "SELECT trace_id, span_id, parent_id, service, name, kind, start_ns, duration_ns, status, request_id,"
    " detail, http_status FROM {table} WHERE trace_id = unhex(%(trace)s)"
    " ORDER BY start_ns, span_id LIMIT 1 BY span_id"
)
_LOG_READ = f"SELECT {_LOG_COLUMNS} FROM {{table}} WHERE trace_id = unhex(%(trace)s) ORDER BY time_ns, span_id, body"


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
    password: str = ""
    hosts: tuple[tuple[str, int], ...] = ()

    def redacted(self) -> str:
        """The URL without its password, for status lines and messages."""
        names = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts or ((self.host, self.port),))
        user = f"{self.user}@" if self.user != "default" else ""
        return f"clickhouse://{user}{names}/{self.database}?cluster={self.cluster}"


def _host_port(text: str) -> tuple[str, int]:
    """One ``host[:port]`` (``[v6]:port`` too) of a store URL."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise StoreError(f"bad host in the ClickHouse store URL: {text!r}")
        host, port_text = text[1:end], text[end + 1 :].removeprefix(":")
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    if not host or any(c in host for c in "/?#@ "):
        raise StoreError(f"bad host in the ClickHouse store URL: {text!r}")
    if not port_text:
        return host, 9000
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise StoreError(f"bad port in the ClickHouse store URL: {text!r} (a TCP port, 1-65535)")
    return host, int(port_text)


def parse_url(url: str) -> ClickHouseURL:
    """Parse a store URL; raise :class:`StoreError` saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme != "clickhouse":
        raise StoreError("not a ClickHouse store URL (clickhouse://host:9000/db?cluster=NAME)")
    database = parts.path.strip("/") or "otel_corr"
    cluster = (parse_qs(parts.query).get("cluster") or [""])[0]
    if not cluster:
        raise StoreError("the ClickHouse store URL needs ?cluster=NAME (a cluster of remote_servers)")
    for name, value in (("database", database), ("cluster", cluster)):
        # Both go into DDL as identifiers: letters, digits and underscores only.
        if not value.replace("_", "").isalnum() or not value.isascii():
            raise StoreError(f"the ClickHouse {name} name may hold letters, digits and _ only: {value[:80]!r}")
    userinfo, _, netloc = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    hosts = tuple(_host_port(h.strip()) for h in netloc.split(",") if h.strip()) or (("127.0.0.1", 9000),)
    return ClickHouseURL(
        host=hosts[0][0],
        port=hosts[0][1],
        database=database,
        cluster=cluster,
        user=unquote(user or "default"),
        password=unquote(password),
        hosts=hosts,
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


def _own_trace(request_id: str) -> bytes | None:
    """The trace ID a request ID names (a UUID or 32 hex digits), as in the SQLite store."""
    trace_id = trace_id_of(request_id)
    return None if trace_id is None else trace_id.to_bytes(16, "big")


class ClickHouseStore:
    """A ClickHouse cluster as otel-corr's store: writer threads insert (group commit), queries run on
    per-thread clients, lookups by key on the key's shard."""

    #: Several ``serve`` replicas write one cluster: each sees only what it ingests itself.
    shared = True

    def __init__(self, url: str, *, writers: int = 2, group_spans: int = 16384, max_queued_spans: int = 65536) -> None:
        self.url = parse_url(url)
        self._driver = _driver()
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
        self._tables = {"spans": f"{db}.spans", "request_ids": f"{db}.request_ids", "logs": f"{db}.logs"}
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
            client = clients[(host, port)] = self._driver.Client(
                host,
                port=port,
                user=self.url.user,
                password=self.url.password,
                connect_timeout=CONNECT_TIMEOUT_S,
                send_receive_timeout=QUERY_TIMEOUT_S,
                # Bytes in and out: IDs and details are binary; the text columns are encoded here.
                settings={"strings_as_bytes": True},
            )
        return client

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
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            client.settings.pop("max_execution_time", None)
        else:  # the driver merges these into every query's settings
            client.settings["max_execution_time"] = max(1, int(deadline - time.monotonic() + 0.999))
        return client

    # --- schema ----------------------------------------------------------------------------

    def ensure_schema(self) -> dict[int, int]:
        """Create or upgrade the schema on every shard; returns each shard's version before (0: new).

        Every shard must answer: a schema made on half the cluster would fail later, on some
        inserts only.  Refuses a shard whose schema is newer than this otel-corr knows.
        """
        down = [s for s in self.health() if not s.up]
        if down:
            raise ShardUnavailable(down, "cannot create the ClickHouse schema: every shard must answer")
        db, cluster = self.url.database, self.url.cluster
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
                    client.execute(statement.format(db=db, cluster=cluster))
                client.execute(
                    f"INSERT INTO {db}.schema_version (version, otel_corr, applied_ns) VALUES",
                    [(number, _version().encode(), time.time_ns())],
                )
        return before

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

    def _home(self, key: bytes, what: str) -> _Shard:
        """The shard a Distributed table sends ``key`` to: ``cityHash64(key) % total weight``, by weight
        ranges in shard order (ClickHouse's rule).  The hash is computed by the first shard that
        answers (one light round trip; the driver has no CityHash of its own)."""
        down: list[ShardState] = []
        for shard in self.shards:
            try:
                ((digest,),) = self._on(shard).execute("SELECT cityHash64(unhex(%(key)s))", {"key": key.hex()})
            except self._unavailable() as exc:
                self._drop(shard)
                down.append(ShardState(shard.number, shard.address, False, _reason(exc)))
                continue
            slot = int(digest) % sum(s.weight for s in self.shards)
            for candidate in self.shards:
                if slot < candidate.weight:
                    return candidate
                slot -= candidate.weight
        raise ShardUnavailable(down, f"cannot look up {what}: no shard answers")

    def _keyed(self, key: bytes, what: str, query: Callable[[Client, str], _T]) -> _T:
        """Run a lookup whose answer lives on ``key``'s shard, on that shard's local table.

        Why not through the Distributed table: it asks every shard for what one holds (twice the
        latency at 100k spans, see the design note), and fails whole when any shard is down,
        even one that cannot hold the answer.  Here a down shard matters only if it is ``key``'s:
        then :class:`ShardUnavailable` names it; otherwise the answer is complete.
        """
        home = self._home(key, what)
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
            try:
                try:
                    self._insert(rows, resources, logs)
                except self._unavailable():
                    # The entry host does not answer: once more through the next one (a part it
                    # took before failing is stored twice and read once).
                    self._next_entry()
                    self._insert(rows, resources, logs)
            except Exception as exc:  # the senders are told (503 / UNAVAILABLE: retry); the writer carries on
                if isinstance(exc, self._unavailable()):
                    self._next_entry()
                _log.warning("otel-corr serve: a ClickHouse insert failed: %s", _reason(exc))
                # Not acknowledged: a synchronous insert that failed may have stored some shards' part.
                error = StoreUnavailable(f"the batch was not stored: ClickHouse refused the insert: {_reason(exc)}")
            with self._idle:
                self._pending -= len(batch)
                self._queued_spans -= size
                self._idle.notify_all()
            for done in batch:
                if error is None:
                    done.done.set_result(None)
                else:
                    done.done.set_exception(error)
            if error is None:
                self._after_commit(batch)

    def _after_commit(self, batch: list[_Item]) -> None:
        """The callbacks ``serve`` hangs on a stored batch; a failing one never stops the writer."""
        try:
            if self.on_new_service is not None:
                for item in batch:
                    for _, service, _, _ in item.resources:
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
        if rows:
            columns: list[list[Any]] = [[] for _ in range(15)]
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
                    row[6],
                    row[7],
                    row[8],
                    row[9],
                    request_id.encode(),
                    row[11].encode(),
                    bytes(row[12]),
                    row[13],
                    texts.get(row[3], b"{}"),
                )
                for column, value in zip(columns, values, strict=True):
                    column.append(value)
                if request_id and _own_trace(request_id) != trace_id:
                    key = (trace_id, request_id)
                    index[key] = max(index.get(key, 0), row[7])
            client.execute(
                f"INSERT INTO {self._tables['spans']} ({_SPAN_COLUMNS}) VALUES",
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
                f"INSERT INTO {self._tables['logs']} ({_LOG_COLUMNS}) VALUES",
                [
                    (
                        r.trace_id or _ZERO_TRACE,
                        r.span_id or b"",
                        r.time_ns,
                        r.severity_number,
                        r.severity_text.encode(),
                        r.body.encode(),
                        r.logger.encode(),
                        (r.request_id or "").encode(),
                        _dumps(r.attributes).encode(),
                        r.service.encode(),
                        _dumps(r.resource).encode(),
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
                " WHERE active AND database = %(db)s AND table IN ('spans_local', 'request_ids_local', 'logs_local')"
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
                    " WHERE trace_id = unhex(%(trace)s) AND request_id = %(request)s",
                    {"trace": own.hex(), "request": request_id},
                ),
            )
            if own_rows and own_rows[0][1]:
                newest[own] = max(newest.get(own, 0), int(own_rows[0][0]))
        return sorted(newest, key=lambda t: newest[t], reverse=True)[:limit]

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
        rows = self._keyed(
            trace_id,
            f"the logs of trace {trace_id.hex()}",
            lambda client, suffix: client.execute(
                _LOG_READ.format(table=self._tables["logs"] + suffix), {"trace": trace_id.hex()}
            ),
        )

        def load(index: int) -> LogRecord:
            r = rows[index]
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

        return LazyLogs([r[2] for r in rows], load)

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

    # --- reads across shards (chsearch / chfind fill these) --------------------------------

    def services(self) -> list[str]:
        raise NotImplementedError

    def operations(self, service: str, kind: int | None = None) -> list[tuple[str, int]]:
        raise NotImplementedError

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
        raise NotImplementedError

    def find(self, query: Query, *, limit: int = 20) -> FindResult:
        """The traces a search finds, newest first (see ``_clickhouse_find``); run it inside :meth:`budget`."""
        from ._clickhouse_find import find

        return find(self, query, limit)

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        raise NotImplementedError

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
        raise NotImplementedError

    def endpoint_stats(self, since_ns: int) -> list[Served]:
        raise NotImplementedError

    def recent_requests(
        self, service: str, name: str, since_ns: int, limit: int, until_ns: int | None = None
    ) -> list[Recent]:
        raise NotImplementedError

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
