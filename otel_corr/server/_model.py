"""The records the backend stores and returns: one shape for spans, one for log records."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = ["KIND_NAMES", "LazyLogs", "LogRecord", "Span"]

#: OTLP span kinds (1..5) as Jaeger's ``span.kind`` tag spells them.
KIND_NAMES = {0: "internal", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(slots=True)
class Span:
    trace_id: bytes
    span_id: bytes
    parent_id: bytes | None
    service: str
    name: str
    kind: int
    start_ns: int
    duration_ns: int
    status: int  # 0 unset, 1 ok, 2 error
    request_id: str | None = None
    scope: str = ""
    scope_version: str = ""
    status_message: str = ""
    trace_state: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # {"t": ns, "n": name, "a": {...}}
    links: list[dict[str, Any]] = field(default_factory=list)  # {"t": hex, "s": hex, "a": {...}}
    resource: dict[str, Any] = field(default_factory=dict)
    http_status: int | None = None
    #: On ingest: the span's attributes, events, links, status and trace state as a serialized OTLP
    #: ``Span`` (what the store keeps); on read the fields above are decoded from it, except by
    #: ``Store.trace(details=False)``, which leaves the stored (compressed) form here for
    #: ``Store.expand`` and the fields above as read-only placeholders.
    raw: bytes = b""


@dataclass(slots=True)
class LogRecord:
    time_ns: int
    severity_number: int
    severity_text: str
    body: str
    service: str
    trace_id: bytes | None = None
    span_id: bytes | None = None
    logger: str = ""
    request_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)


class LazyLogs(Sequence[LogRecord]):
    """A trace's log records in time order, each decoded when first read.

    ``times`` is there without decoding anything: a reader that bisects by time (``_analysis``)
    decodes only the records it looks at, not a 10,000-span trace's thousands.
    """

    __slots__ = ("_cache", "_load", "times")

    def __init__(self, times: list[int], load: Callable[[int], LogRecord]) -> None:
        self.times = times
        self._load = load
        self._cache: dict[int, LogRecord] = {}

    def __len__(self) -> int:
        return len(self.times)

    @overload
    def __getitem__(self, index: int) -> LogRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[LogRecord]: ...

    def __getitem__(self, index: int | slice) -> LogRecord | list[LogRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self.times)
        if not 0 <= index < len(self.times):
            raise IndexError(index)
        record = self._cache.get(index)
        if record is None:
            record = self._cache[index] = self._load(index)
        return record
