"""``GET /api/tail``: every log record and finished request, as it is stored, to each follower.

Why chunked JSON lines (NDJSON) and not server-sent events: the one client is ``otel-corr tail``
(urllib, no SSE parser), one JSON document per line is what ``--json`` prints and ``jq`` reads,
and uvicorn streams either the same way.  The first line is ``{"type": "hello", ...}`` (the
client knows it reached otel-corr), then ``log``, ``request``, ``dropped``, ``heartbeat`` and,
on shutdown, ``bye`` lines.

The :class:`Hub` is fed by the store's writer thread right after a commit (``Store.on_committed``),
so a line a follower sees is already in the store.  Publishing never blocks and never waits for a
follower: each has one queue bounded in lines and in bytes; what does not fit is dropped, counted
and said in-band (``{"type": "dropped", "count": N}``).  Every filter runs at publish, on the
writer thread (a finished request's span detail decoded once per batch, whatever the number of
followers), so the queue holds only what the follower asked for, the drop count is of lines it
would have seen, and the event loop only encodes.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from starlette.responses import Response

from ._model import LogRecord
from ._otlp import _attributes, _value
from ._query import QueryError

__all__ = ["LEVELS", "Hub", "Subscriber", "TailFilter", "TailResponse"]

#: Level names as ``--level`` takes them, and the lowest OTLP severity number of each.
LEVELS = {"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "critical": 21, "fatal": 21}
_LEVEL_NAMES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))
# Span rows as ``_otlp.span_row_steps`` builds them (``_store.SPAN_COLUMNS`` order).
_TRACE, _SPAN, _PARENT, _SERVICE, _NAME, _KIND, _START, _DURATION, _STATUS, _REQUEST, _DETAIL, _HTTP = (
    0,
    1,
    2,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    12,
    13,
)
_ENTRY_KINDS = (2, 5)  # server, consumer: a request or a job handled
#: otel-corr's access line says what the finished request's line says (that one with the route): not shown twice.
_ACCESS_LOGGER = "otel_corr.access"
_MAX_FILTER = 256


def _severity_name(number: int, text: str) -> str:
    if text:
        return text
    return next((name for low, name in _LEVEL_NAMES if number >= low), "")


def _status_matches(pattern: str, status: int) -> bool:
    text = str(status)
    return len(text) == len(pattern) and all(p == "x" or p == c for p, c in zip(pattern, text, strict=True))


@dataclass(frozen=True, slots=True)
class TailFilter:
    """What one follower asked for; empty fields match everything."""

    service: str = ""
    route: str = ""
    status: str = ""  # "5xx", "404", "2xx"
    request: str = ""
    level: int = 0  # the lowest severity number shown

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> TailFilter:
        """The filter in ``/api/tail``'s query string; :class:`QueryError` names a value it cannot read."""
        for name in ("service", "route", "status", "request", "level"):
            if len(params.get(name, "")) > _MAX_FILTER:
                raise QueryError(f"{name}: longer than {_MAX_FILTER} characters")
        status = params.get("status", "").strip().lower()
        if status and not (len(status) == 3 and status[0] in "12345" and all(c.isdigit() or c == "x" for c in status)):
            raise QueryError(f"status: {status[:40]!r} is not a status such as 500 or 5xx")
        level_name = params.get("level", "").strip().lower()
        if level_name and level_name not in LEVELS:
            raise QueryError(f"level: {level_name[:40]!r} is not one of {', '.join(LEVELS)}")
        return cls(
            service=params.get("service", "").strip(),
            route=params.get("route", "").strip(),
            status=status,
            request=params.get("request", "").strip(),
            level=LEVELS.get(level_name, 0),
        )

    @property
    def requests_only(self) -> bool:
        """Route and status belong to a finished request: log records have neither, so none are shown."""
        return bool(self.route or self.status)

    def log_passes(self, record: LogRecord) -> bool:
        return (
            not self.requests_only
            and record.logger != _ACCESS_LOGGER
            and (not self.service or record.service == self.service)
            and (not self.request or record.request_id == self.request)
            and record.severity_number >= self.level
        )

    def span_passes(self, row: Sequence[Any]) -> bool:
        """The checks a stored span row allows without decoding its detail (see :meth:`route_passes`)."""
        if row[_KIND] not in _ENTRY_KINDS and row[_PARENT]:
            return False
        if self.service and row[_SERVICE] != self.service:
            return False
        if self.request and row[_REQUEST] != self.request:
            return False
        if self.status and not _status_matches(self.status, row[_HTTP]):
            return False
        return not self.level or _request_severity(row[_HTTP], row[_STATUS]) >= self.level

    def route_passes(self, route: str) -> bool:
        if not self.route:
            return True
        return fnmatch.fnmatchcase(route, self.route) if "*" in self.route else route == self.route


def _request_severity(http_status: int, status: int) -> int:
    """A finished request's level, for ``--level``: a 5xx or an error status is ERROR, a 4xx WARN."""
    if http_status >= 500 or status == 2:
        return 17
    return 13 if http_status >= 400 else 9


class Subscriber:
    """One follower: its filter, its bounded queue, what was dropped since it last took."""

    __slots__ = ("_wake", "dropped", "filter", "gone", "items", "loop", "queued", "queued_bytes", "waiting")

    def __init__(self, tail_filter: TailFilter, loop: asyncio.AbstractEventLoop) -> None:
        self.filter = tail_filter
        self.loop = loop
        self.items: deque[Any] = deque()
        self.queued = 0
        self.queued_bytes = 0  # roughly: what the queued lines hold alive (a log body can be 16 MiB)
        self.dropped = 0
        self.waiting = False
        self.gone = False  # the client went away: the stream ends at once, its queue is let go
        self._wake = asyncio.Event()

    def _set(self) -> None:
        self._wake.set()


class Hub:
    """Followers of the store, each with a queue of at most ``max_queued`` lines.

    ``publish`` is called on the store's writer thread; everything else on the event loop.
    """

    def __init__(
        self,
        *,
        max_subscribers: int = 16,
        max_queued: int = 20_000,
        max_queued_bytes: int = 32 << 20,
        heartbeat_s: float = 10.0,
    ) -> None:
        self.max_subscribers = max_subscribers
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.heartbeat_s = heartbeat_s
        self.closing = False
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, tail_filter: TailFilter) -> Subscriber | None:
        """A new follower, or None when ``max_subscribers`` already follow (or the server is stopping)."""
        with self._lock:
            if self.closing or len(self._subscribers) >= self.max_subscribers:
                return None
            subscriber = Subscriber(tail_filter, asyncio.get_running_loop())
            self._subscribers = [*self._subscribers, subscriber]  # publish iterates a snapshot, lock-free
            return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s is not subscriber]

    @property
    def count(self) -> int:
        return len(self._subscribers)

    def publish(self, rows: Sequence[Sequence[Any]], logs: Sequence[LogRecord]) -> None:
        """Hand one committed batch to every follower whose filter it passes; never blocks on one.

        The records are shared, not copied: a queue holds references.  A follower whose queue is
        full (in lines or in bytes) has the rest of the batch counted as dropped.
        """
        subscribers = self._subscribers
        if not subscribers:
            return
        requests: dict[int, dict[str, Any]] = {}  # a row's request line, decoded once for every follower
        for subscriber in subscribers:
            f = subscriber.filter
            chosen: list[tuple[Any, int]] = [(r, len(r.body) + _OVERHEAD) for r in logs if f.log_passes(r)]
            for row in rows:
                if not f.span_passes(row):
                    continue
                event = requests.get(id(row))
                if event is None:
                    event = requests[id(row)] = _request_event(row)
                if f.route_passes(event["route"] or event["name"]):
                    chosen.append((event, event["_size"]))
            if not chosen:
                continue
            with self._lock:
                room, room_bytes, kept = self.max_queued - subscriber.queued, self.max_queued_bytes, 0
                room_bytes -= subscriber.queued_bytes
                for item, size in chosen:
                    if kept >= room or size > room_bytes:
                        break
                    subscriber.items.append(item)
                    room_bytes -= size
                    kept += 1
                subscriber.dropped += len(chosen) - kept
                subscriber.queued += kept
                subscriber.queued_bytes = self.max_queued_bytes - room_bytes
                wake = subscriber.waiting
                subscriber.waiting = False
            if wake:
                try:
                    subscriber.loop.call_soon_threadsafe(subscriber._set)
                except RuntimeError:  # the loop closed under a follower: nothing left to wake
                    pass

    def close(self) -> None:
        """Say goodbye to every follower (on the event loop, as the server starts to stop)."""
        with self._lock:
            self.closing = True
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber._set()

    def _take(self, subscriber: Subscriber, most: int) -> tuple[list[Any], int]:
        with self._lock:
            n = min(most, len(subscriber.items))
            items = [subscriber.items.popleft() for _ in range(n)]
            subscriber.queued -= n
            subscriber.queued_bytes -= sum(
                len(i.body) + _OVERHEAD if isinstance(i, LogRecord) else i["_size"] for i in items
            )
            dropped, subscriber.dropped = subscriber.dropped, 0
            if not items and not dropped:
                subscriber.waiting = True
                subscriber._wake.clear()
        return items, dropped

    async def stream(self, subscriber: Subscriber, hello: dict[str, Any]) -> AsyncIterator[bytes]:
        """The follower's lines, chunk by chunk, until the server stops or the client goes away."""
        try:
            yield _line({"type": "hello", "heartbeat_s": self.heartbeat_s, **hello})
            while not subscriber.gone:
                if self.closing:
                    yield _line({"type": "bye", "reason": "otel-corr serve is shutting down"})
                    return
                items, dropped = self._take(subscriber, 512)
                out = [_line({"type": "dropped", "count": dropped})] if dropped else []
                out.extend(_line(_log_event(i) if isinstance(i, LogRecord) else _public(i)) for i in items)
                if out:
                    yield b"".join(out)
                    # uvicorn's send returns at once while the socket takes data: a backlog drained
                    # in one go would hold the loop (ingest, queries) for as long as it lasts.
                    await asyncio.sleep(0)
                    continue
                try:
                    await asyncio.wait_for(subscriber._wake.wait(), self.heartbeat_s)
                except TimeoutError:
                    # A quiet stream still sends: a dead client is noticed (the write fails), and a
                    # proxy that closes idle connections sees traffic.
                    yield _line({"type": "heartbeat"})
        finally:
            self.unsubscribe(subscriber)


class TailResponse(Response):
    """The ASGI response of ``/api/tail``: the hub's stream for one follower, as chunked NDJSON.

    Why not Starlette's ``StreamingResponse``: a follower that goes away must free its place at
    once, not at the next heartbeat's failed write, and its queue with it; here ``http.disconnect``
    is watched for the whole stream and ends it.
    """

    def __init__(self, hub: Hub, subscriber: Subscriber, hello: dict[str, Any]) -> None:
        super().__init__(media_type="application/x-ndjson")
        self.hub, self.subscriber, self.hello = hub, subscriber, hello

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        subscriber = self.subscriber

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            subscriber.gone = True
            subscriber._set()

        watcher = asyncio.create_task(watch())
        try:
            headers = [
                (b"content-type", b"application/x-ndjson"),
                # No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering): each line as it comes.
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for chunk in self.hub.stream(subscriber, self.hello):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke mid-write
            pass
        finally:
            watcher.cancel()
            self.hub.unsubscribe(subscriber)


_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _line(event: dict[str, Any]) -> bytes:
    # ASCII: JSON escapes every control character below U+0020 and everything past ASCII (C1 controls
    # and bidi overrides included), so one event is one line, and ``tail --json`` can print it as it is.
    return (_encode(event) + "\n").encode("ascii")


def _exception(attributes: Mapping[str, Any]) -> dict[str, str] | None:
    kind, message, stack = (attributes.get(f"exception.{k}") for k in ("type", "message", "stacktrace"))
    if not (kind or message or stack):
        return None
    return {"type": str(kind or ""), "message": str(message or "")[:2000], "stacktrace": str(stack or "")[:20000]}


def _log_event(record: LogRecord) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "log",
        "time_ns": record.time_ns,
        "service": record.service,
        "level": _severity_name(record.severity_number, record.severity_text),
        "severity": record.severity_number,
        "request_id": record.request_id,
        "trace_id": record.trace_id.hex() if record.trace_id else None,
        "span_id": record.span_id.hex() if record.span_id else None,
        "logger": record.logger,
        "message": record.body[:20000],
    }
    exception = _exception(record.attributes)
    if exception:
        event["exception"] = exception
    return event


# A queued line's size beyond its text (the event's other fields, the queue's own reference).
_OVERHEAD = 200


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "_size"}


def _request_event(row: Sequence[Any]) -> dict[str, Any]:
    """A finished request's line from its stored row (the route and method from its detail), with its
    approximate size in ``_size`` (for the follower's byte bound; not sent)."""
    detail = SpanMessage.FromString(bytes(row[_DETAIL]))
    attributes = _attributes(detail.attributes)
    route = str(attributes.get("http.route") or "")
    method = attributes.get("http.request.method") or attributes.get("http.method") or ""
    exception = None
    for e in detail.events:
        if e.name == "exception":
            exception = _exception({kv.key: _value(kv.value) for kv in e.attributes})
            break
    event: dict[str, Any] = {
        "type": "request",
        "time_ns": row[_START] + row[_DURATION],
        "service": row[_SERVICE],
        "request_id": row[_REQUEST] or None,
        "trace_id": bytes(row[_TRACE]).hex(),
        "span_id": bytes(row[_SPAN]).hex(),
        "name": row[_NAME],
        "method": str(method),
        "route": route,
        "status": row[_HTTP] or None,
        "error": row[_STATUS] == 2,
        "duration_ms": round(row[_DURATION] / 1e6, 3),
        "level": _severity_name(_request_severity(row[_HTTP], row[_STATUS]), ""),
    }
    if exception:
        event["exception"] = exception
    event["_size"] = _OVERHEAD + len(route) + len(row[_NAME]) + sum(len(v) for v in (exception or {}).values())
    return event
