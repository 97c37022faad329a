"""A current ClickHouse release in process: chDB (ClickHouse 26.x as a library) behind clickhouse-driver's ``Client``.

Debian's ``clickhouse-server`` is 18.16; issue 21 wants the ClickHouse store to run on current
releases too, and no current server binary installs here.  chDB (PyPI ``chdb-core``) is the
ClickHouse engine of a current release embedded in Python: no server, no network.  This module
makes it look like the driver's client the store talks to, so the store's own methods (schema,
inserts, every read) run on it unchanged:

- :class:`ChdbClient` has the ``execute(query, params=None, *, columnar=False, settings=None)``
  the store calls: ``%(name)s`` parameters are substituted by clickhouse-driver's own escaping
  (what the real client does before sending), an insert's rows become a ``VALUES`` literal,
  results come back as tuples with ``String``/``FixedString`` as bytes (the store's
  ``strings_as_bytes``), and an engine error is the driver's ``ServerException`` with its code.
- :class:`ChdbEngine` opens the engine on a directory with a configuration declaring cluster
  :data:`CLUSTER` of one shard on the engine itself: its ``Distributed`` tables then work (the
  shard is local, so nothing goes over the network), which is how the store's DDL and
  distributed inserts are tested as written.
- :class:`ChdbStore` (:func:`chdb_store`) is the real :class:`ClickHouseStore` whose connections
  (``_connect``) are :class:`ChdbClient` s.

One engine per process (chDB's rule: every connection of a process is on one path): test modules
share :func:`shared_engine`, each test on a database of its own.
"""

from __future__ import annotations

import atexit
import importlib
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

# The class, not the driver: ``clickhouse_driver`` is imported when a store opens.
from otel_corr.server._clickhouse import ClickHouseStore

__all__ = ["CLUSTER", "MISSING", "ChdbClient", "ChdbEngine", "ChdbStore", "available", "chdb_store", "shared_engine"]

#: The cluster the engine's configuration declares (the store URL's ``?cluster=``).
CLUSTER = "otel_corr_current"
#: Why these tests cannot run here, for ``pytest.skip``.
MISSING = "chDB is not installed (pip install --no-deps chdb-core): no current ClickHouse engine to test the store on"

# Settings the driver keeps on its side (never sent to the server as such).
_CLIENT_ONLY = {"strings_as_bytes"}
_CODE = re.compile(r"Code: (\d+)\.")
_VALUES = re.compile(r"\bVALUES\s*$", re.IGNORECASE)
_READS = ("SELECT", "WITH", "EXPLAIN", "SHOW", "DESCRIBE", "(")


def available() -> bool:
    """Whether chDB can be imported (the tests skip with :data:`MISSING` otherwise)."""
    try:
        importlib.import_module("chdb")
    except ImportError:
        return False
    return True


def _config(cluster: str) -> str:
    # A shard on 127.0.0.1 at the engine's own tcp_port is "local": the Distributed table reads and
    # writes the shard's table in process.  Nothing listens on the port (chDB starts no server).
    return f"""<clickhouse>
    <tcp_port>9000</tcp_port>
    <remote_servers><{cluster}><shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard></{cluster}>
    </remote_servers>
</clickhouse>
"""


class ChdbEngine:
    """chDB's engine on ``root`` (data and configuration); hands out connections, closes them all."""

    def __init__(self, root: Path, *, cluster: str = CLUSTER) -> None:
        self.chdb = importlib.import_module("chdb")
        self.errors = importlib.import_module("clickhouse_driver.errors")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.xml"
        config.write_text(_config(cluster))
        self.cluster = cluster
        self._address = f"{self.root / 'data'}?config-file={config}"
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self.version = self.client().execute("SELECT version()")[0][0].decode()

    def url(self, database: str) -> str:
        """A store URL for this engine (the host is never dialled: :func:`chdb_store` swaps the clients)."""
        return f"clickhouse://127.0.0.1:9000/{database}?cluster={self.cluster}"

    def client(self) -> ChdbClient:
        """A new connection, as a driver client (one per thread, as the store uses them)."""
        return ChdbClient(self)

    def connect(self) -> Any:
        """A new chDB connection (closed by :meth:`close` if its client has not)."""
        with self._lock:
            connection = self.chdb.connect(self._address)
            self._connections.append(connection)
        return connection

    def release(self, connection: Any) -> None:
        with self._lock:
            self._connections.remove(connection)
        connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


_shared: ChdbEngine | None = None


def shared_engine() -> ChdbEngine:
    """The process's engine, on a temporary directory removed at exit (every test module uses this one)."""
    global _shared
    if _shared is None:
        root = Path(tempfile.mkdtemp(prefix="otel-corr-chdb-"))
        _shared = ChdbEngine(root)
        atexit.register(_close_shared, _shared)
    return _shared


def _close_shared(engine: ChdbEngine) -> None:
    engine.close()
    shutil.rmtree(engine.root, ignore_errors=True)


def _literal(value: Any) -> str:
    """``value`` as a ClickHouse literal in a ``VALUES`` list (bytes byte for byte, as the driver sends them)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "'" + "".join(f"\\x{b:02x}" for b in bytes(value)) + "'"
    if isinstance(value, str):
        return _literal(value.encode())
    if isinstance(value, datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S}'"
    if isinstance(value, date):
        return f"'{value:%Y-%m-%d}'"
    if isinstance(value, list | tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    raise TypeError(f"no ClickHouse literal for {type(value).__name__}")


def _setting(value: Any) -> str:
    return repr(value) if isinstance(value, int | float) else "'" + str(value).replace("'", "\\'") + "'"


class ChdbClient:
    """clickhouse-driver's ``Client`` as far as the store uses it, on one chDB connection."""

    def __init__(self, engine: ChdbEngine) -> None:
        self.engine = engine
        self.connection = engine.connect()
        #: Merged into every query's settings (the store sets ``max_execution_time`` here).
        self.settings: dict[str, Any] = {"strings_as_bytes": True}
        #: Every statement as sent to the engine (what a test may want to look at).
        self.sent: list[str] = []

    def execute(
        self,
        query: str,
        params: dict[str, Any] | Iterable[Any] | None = None,
        *,
        columnar: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> list[Any]:
        merged = {k: v for k, v in {**self.settings, **(settings or {})}.items() if k not in _CLIENT_ONLY}
        clause = ", ".join(f"{k} = {_setting(v)}" for k, v in merged.items())
        if params is not None and not isinstance(params, dict):
            return self._insert(query, params, columnar=columnar, clause=clause)
        if params is not None:
            escape = importlib.import_module("clickhouse_driver.util.escape")
            query = query % escape.escape_params(params, None)  # the driver's own substitution
        head = query.lstrip().upper()
        if clause and head.startswith(_READS):
            query += f", {clause}" if re.search(r"\bSETTINGS\b", query[-400:], re.IGNORECASE) else f" SETTINGS {clause}"
        elif clause:
            # DDL and ALTER take no query SETTINGS clause (CREATE's would be the table's): set them
            # on the connection, as the driver's client settings stay on its session.
            for name, value in merged.items():
                self._run(f"SET {name} = {_setting(value)}")
        rows = _decode(self._run(query))
        if columnar:
            return list(zip(*rows, strict=True))
        return rows

    def execute_iter(
        self, query: str, params: dict[str, Any] | None = None, *, settings: dict[str, Any] | None = None
    ) -> Iterator[Any]:
        """The driver's streaming read: here the whole answer, then its rows one by one."""
        return iter(self.execute(query, params, settings=settings))

    def _insert(self, query: str, data: Iterable[Any], *, columnar: bool, clause: str) -> list[Any]:
        if not _VALUES.search(query):
            raise ValueError(f"an insert with data must end in VALUES: {query[:200]}")
        rows: Sequence[Sequence[Any]] = list(zip(*data, strict=True)) if columnar else list(data)
        if not rows:
            return []
        head = _VALUES.sub("", query).rstrip()
        if clause:
            head += f" SETTINGS {clause}"
        self._run(f"{head} VALUES " + ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows))
        return []

    def _run(self, query: str) -> bytes:
        self.sent.append(query)
        try:
            return bytes(self.connection.query(query, "RowBinaryWithNamesAndTypes").bytes())
        except self.engine.chdb.ChdbError as exc:
            # A query that fails after its output began (a timeout) leaves part of it in the
            # connection, read as the next answer (chDB 26.9): go on with a fresh connection.
            self.engine.release(self.connection)
            self.connection = self.engine.connect()
            message = str(exc)
            found = _CODE.search(message)
            raise self.engine.errors.ServerException(message, int(found.group(1)) if found else None) from None

    def disconnect(self) -> None:
        """The driver's ``disconnect``: the connection stays open for the engine to close."""


# --- RowBinaryWithNamesAndTypes, decoded as the driver decodes the native protocol -------------------
# (What chDB answers in without pyarrow or pandas: the engine alone, ``pip install --no-deps chdb-core``.)

_Reader = Callable[[memoryview, int], tuple[Any, int]]
_FIXED = {
    "UInt8": "<B",
    "UInt16": "<H",
    "UInt32": "<I",
    "UInt64": "<Q",
    "Int8": "<b",
    "Int16": "<h",
    "Int32": "<i",
    "Int64": "<q",
    "Float32": "<f",
    "Float64": "<d",
}
_EPOCH = date(1970, 1, 1)


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _arguments(spec: str) -> list[str]:
    """The top-level arguments of ``Name(a, b(c, d))``: ``["a", "b(c, d)"]``."""
    inner, parts, depth, start = spec[spec.index("(") + 1 : -1], [], 0, 0
    for i, char in enumerate(inner):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(inner[start:i].strip())
            start = i + 1
    parts.append(inner[start:].strip())
    return parts


def _reader(spec: str) -> _Reader:
    """A decoder of one value of ClickHouse type ``spec`` (the types the store reads and writes)."""
    name = spec.split("(", 1)[0]
    if name in _FIXED:
        packer = struct.Struct(_FIXED[name])
        return lambda data, at: (packer.unpack_from(data, at)[0], at + packer.size)
    if name == "Bool":
        return lambda data, at: (bool(data[at]), at + 1)
    if name == "String":

        def string(data: memoryview, at: int) -> tuple[Any, int]:
            size, at = _varint(data, at)
            return bytes(data[at : at + size]), at + size

        return string
    if name == "FixedString":
        width = int(_arguments(spec)[0])
        return lambda data, at: (bytes(data[at : at + width]), at + width)
    if name == "Date":
        return lambda data, at: (_EPOCH + timedelta(days=int.from_bytes(data[at : at + 2], "little")), at + 2)
    if name in ("LowCardinality", "SimpleAggregateFunction"):
        return _reader(_arguments(spec)[-1])
    if name == "Nullable":
        inner = _reader(_arguments(spec)[0])
        return lambda data, at: (None, at + 1) if data[at] else inner(data, at + 1)
    if name in ("Array", "Map"):
        items = [_reader(a) for a in _arguments(spec)]

        def collection(data: memoryview, at: int) -> tuple[Any, int]:
            count, at = _varint(data, at)
            values = []
            for _ in range(count):
                value = []
                for item in items:
                    one, at = item(data, at)
                    value.append(one)
                values.append(value[0] if name == "Array" else tuple(value))
            return (values if name == "Array" else dict(values)), at

        return collection
    if name == "Tuple":
        fields = [_reader(a.split(" ", 1)[-1] if re.match(r"\w+ \w", a) else a) for a in _arguments(spec)]

        def record(data: memoryview, at: int) -> tuple[Any, int]:
            values = []
            for field in fields:
                value, at = field(data, at)
                values.append(value)
            return tuple(values), at

        return record
    raise TypeError(f"no decoder for ClickHouse type {spec} in tests/clickhouse_chdb.py")


def _decode(answer: bytes) -> list[tuple[Any, ...]]:
    """The rows of a ``RowBinaryWithNamesAndTypes`` answer as tuples (``b""``: a statement without rows)."""
    if not answer:
        return []
    data = memoryview(answer)
    count, at = _varint(data, 0)
    specs = []
    for _ in range(2 * count):  # the names, then the types
        size, at = _varint(data, at)
        specs.append(bytes(data[at : at + size]).decode())
        at += size
    readers = [_reader(spec) for spec in specs[count:]]
    rows = []
    while at < len(data):
        row = []
        for read in readers:
            value, at = read(data, at)
            row.append(value)
        rows.append(tuple(row))
    return rows


class ChdbStore(ClickHouseStore):
    """The real :class:`ClickHouseStore` on ``database`` of ``engine``: only its per-thread clients differ."""

    def __init__(self, engine: ChdbEngine, database: str, **kwargs: Any) -> None:
        self.engine = engine
        super().__init__(engine.url(database), **kwargs)

    def _connect(self, host: str, port: int) -> Any:
        return self.engine.client()  # every host of the one-shard cluster is the engine


def chdb_store(engine: ChdbEngine, database: str, **kwargs: Any) -> ChdbStore:
    """A :class:`ClickHouseStore` on ``database`` whose per-thread clients run on ``engine``."""
    return ChdbStore(engine, database, **kwargs)
