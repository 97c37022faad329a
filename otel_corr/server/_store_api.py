"""What the faces of ``otel-corr serve`` (page, CLI routes, Jaeger v1/v3, search, ``why``, tail) ask of
a store, and how a store says an answer is partial.

Two implementations: ``_store.Store`` (one SQLite file) and ``_clickhouse.ClickHouseStore`` (a
ClickHouse cluster, several ``serve`` replicas in front of it).  Everything SQL stays inside them.

**Partial answers.**  A read that asks every shard (services, search, the page's list, ``why``'s
baseline, ...) may find a shard down.  It then answers with what the others hold and notes the
missing shards with :func:`note_missing`; the face that asked reads :func:`missing` and says so (the
Jaeger envelope's ``errors``, a header, a banner on the page, a line on the CLI).  The notes live
in a context variable that the query's scope (:func:`partial_answers`, opened by the routes'
wrapper around each query) sets and resets, so one query's missing shards never reach another.
A *keyed* read (a trace by ID, a request ID, a trace's logs) whose key's shard is down raises
:class:`StoreUnavailable` instead: there is nothing partial to show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..exceptions import StoreUnavailable

if TYPE_CHECKING:
    from ._find import FindResult
    from ._model import LazyLogs, LogRecord, Span
    from ._search import Query
    from ._store import Recent, Served

__all__ = [
    "Shortfall",
    "StoreUnavailable",
    "TraceStore",
    "missing",
    "missing_header",
    "missing_text",
    "note_missing",
    "open_store",
    "partial_answers",
]


class Shortfall(NamedTuple):
    """A shard that may hold part of an answer and did not answer."""

    shard: int
    address: str
    error: str


_MISSING: ContextVar[list[Shortfall] | None] = ContextVar("otel_corr_missing", default=None)


@contextmanager
def partial_answers() -> Iterator[list[Shortfall]]:
    """A query's scope: the shards its reads note as missing collect in the list it yields."""
    found: list[Shortfall] = []
    token = _MISSING.set(found)
    try:
        yield found
    finally:
        _MISSING.reset(token)


def note_missing(shortfalls: Iterable[Shortfall]) -> None:
    """Record shards the current query could not read (once each); outside a scope, nothing."""
    found = _MISSING.get()
    if found is None:
        return
    for shortfall in shortfalls:
        if all(s.shard != shortfall.shard for s in found):
            found.append(shortfall)


def missing() -> tuple[Shortfall, ...]:
    """The shards the current query's reads could not read, in the order they were noted."""
    return tuple(_MISSING.get() or ())


def missing_text(shortfalls: Iterable[Shortfall]) -> str:
    """One line naming each missing shard, as every face shows it."""
    names = ", ".join(f"shard {s.shard} ({s.address})" for s in shortfalls)
    return f"{names} did not answer: results may be incomplete"


def missing_header(shortfalls: Iterable[Shortfall]) -> str:
    """:func:`missing_text` made safe for an HTTP header (printable ASCII, bounded)."""
    text = missing_text(shortfalls)
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:1000]


class TraceStore(Protocol):
    """The store every face of ``serve`` uses (see the module's note on partial answers)."""

    #: Whether other ``serve`` processes may write to the same store (a ClickHouse cluster): then what
    #: this process sees being ingested (``otel-corr tail``) is only its own part.
    shared: bool
    #: Called on the writer thread with each service name the store sees for the first time.
    on_new_service: Callable[[str], None] | None
    #: Called on the writer thread after each commit with what it stored (``otel-corr tail``).
    on_committed: Callable[[list[tuple[Any, ...]], list[LogRecord]], None] | None

    # --- ingest --------------------------------------------------------------------------------
    def resource_id(self, digest: str, service: str) -> int:
        """The ID a resource's rows carry (the same in every replica for the same resource)."""
        ...

    def submit(
        self,
        rows: list[tuple[Any, ...]],
        resources: list[tuple[int, str, str, str]],
        logs: list[LogRecord] | None = None,
    ) -> Future[None]:
        """Queue a batch; the future resolves once it is stored (it fails if it was not).

        Raises ``StoreFull`` at once when the queue is over its bound."""
        ...

    def flush(self, timeout: float = 30.0) -> bool: ...

    def close(self) -> None: ...

    def prune(self, *, max_age_ns: int | None = None, max_spans: int | None = None) -> int: ...

    # --- reads: keyed (whole, or StoreUnavailable) -----------------------------------------------
    def budget(self, deadline: float) -> AbstractContextManager[None]:
        """Interrupt the block's queries at ``deadline`` (``time.monotonic()``) with ``QueryTimeout``."""
        ...

    def past_budget(self) -> bool: ...

    def trace(self, trace_id: bytes, *, details: bool = True) -> list[Span]: ...

    def span(self, trace_id: bytes, span_id: bytes) -> Span | None: ...

    def expand(self, span: Span) -> None: ...

    def unpack_detail(self, detail: bytes) -> bytes: ...

    def traces_for_request(self, request_id: str, limit: int = 20) -> list[bytes]: ...

    def logs(self, trace_id: bytes) -> list[LogRecord]: ...

    def trace_logs(self, trace_id: bytes) -> LazyLogs: ...

    def traces(self, trace_ids: Sequence[bytes]) -> dict[bytes, list[Span]]:
        """Several traces at once (a search's results), as :meth:`trace` each: only those found are keys."""
        ...

    def traces_and_logs(
        self, trace_ids: Sequence[bytes], *, logs: bool = True
    ) -> tuple[dict[bytes, list[Span]], dict[bytes, list[LogRecord]]]:
        """:meth:`traces`, and the log records of each trace found (as :meth:`logs`; none if not ``logs``)."""
        ...

    # --- reads: every shard (partial answers noted with note_missing) -----------------------------
    def services(self) -> list[str]: ...

    def operations(self, service: str, kind: int | None = None) -> list[tuple[str, int]]: ...

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
    ) -> list[bytes]: ...

    def find(self, query: Query, *, limit: int = 20) -> FindResult: ...

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]: ...

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
    ) -> list[Span]: ...

    def endpoint_stats(self, since_ns: int) -> list[Served]: ...

    def recent_requests(
        self, service: str, name: str, since_ns: int, limit: int, until_ns: int | None = None
    ) -> list[Recent]: ...

    def stats(self) -> dict[str, int]: ...


def open_store(spec: str, *, owner: str = "") -> TraceStore:
    """The store ``spec`` names: ``clickhouse://host:9000[,host2:9000]/db?cluster=NAME``, else a file path."""
    if spec.startswith("clickhouse://"):
        from ._clickhouse import ClickHouseStore

        return ClickHouseStore(spec)
    from pathlib import Path

    from ._store import Store

    return Store(Path(spec), owner=owner)
