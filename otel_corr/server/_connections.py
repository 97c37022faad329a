"""Connection limits of ``otel-corr serve``: held sockets can neither exhaust its file descriptors nor lock users out.

uvicorn times out a kept-alive connection that stays idle after a response, but not a new one
that sends nothing or trickles its request head, nor a body that stops half-way: 1,100 such
sockets used every file descriptor (open-file limit 1,024), the page and OTLP/HTTP stopped
answering and asyncio logged a traceback per failed ``accept``.  Here:

* the soft open-file limit is raised to the hard one at start;
* a request head must arrive whole within ``header_timeout`` of the connection opening (or of the
  previous response), and a request body may pause for at most ``header_timeout`` between reads
  and must arrive whole within ``BODY_TIMEOUTS`` x ``header_timeout`` of its head (30 s by
  default: a body trickled a byte at a time never stops between reads), else 408 and closed;
* at most ``limit`` connections are open (below the open-file limit): at the limit a new one
  closes the connection that has waited longest for a request head (a held socket, never one
  whose request is being answered), else the one whose body has paused longest (408), and, if
  there is none, is answered 503 and closed;
* the first time the limit is reached (then at most once a minute) one line is logged, and
  asyncio's "out of system resource" is logged once, not per ``accept``.

The protocol subclasses uvicorn's own HTTP protocol and reads two of its attributes (``cycle``,
its ``response_complete`` / ``more_body``), which both of uvicorn's HTTP/1.1 protocols (h11 and
httptools) have had since 0.1x; without them only the connection limit applies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

__all__ = ["guarded_protocol", "raise_open_file_limit", "connection_limit"]

_log = logging.getLogger("otel_corr.server")
_TICK_S = 1.0
_RELOG_S = 60.0
#: A request body must arrive whole within this many header timeouts of its head: 30 s by default,
#: 16 MiB (the body limit) at 560 KB/s; an exporter on the same machine or network sends it in well under.
BODY_TIMEOUTS = 3
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"X-Content-Type-Options: nosniff\r\nContent-Length: 40\r\n\r\nthe request body took too long to arrive\n"
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
    b"X-Content-Type-Options: nosniff\r\nContent-Length: 39\r\n\r\ntoo many connections open, retry later\n"
)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (at most 65,536); return the limit in force (0: unknown)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return 65536 if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def connection_limit(open_files: int) -> int:
    """At most 1,024 HTTP connections, and half the open-file limit: the rest is for SQLite, gRPC and the listeners."""
    return 1024 if open_files <= 0 else max(16, min(1024, open_files // 2))


class _AcceptErrors(logging.Filter):
    """Let asyncio's "out of system resource" through once a minute (it retries ``accept`` every second)."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -_RELOG_S

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        now = time.monotonic()
        if now - self._last < _RELOG_S:
            return False
        self._last = now
        record.msg = "otel-corr serve: out of file descriptors, new connections wait (logged once a minute)"
        record.args = ()
        record.exc_info = None
        return True


class _Shared:
    """What every connection of one server shares: the limit and the once-a-minute log line."""

    def __init__(self, limit: int, header_timeout: float, open_files: int) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.open_files = open_files
        self.last_logged = -_RELOG_S
        self.shed = 0

    def at_limit(self, refused: bool) -> None:
        self.shed += 1
        now = time.monotonic()
        if now - self.last_logged < _RELOG_S:
            return
        self.last_logged = now
        action = "refusing new ones" if refused else "closing the ones that waited longest for a request"
        _log.warning(
            "otel-corr serve: %d connections open, the limit (open-file limit %s): %s; a connection must send"
            " its request within %gs (%d shed so far; logged at most once a minute)",
            self.limit,
            self.open_files or "unknown",
            action,
            self.header_timeout,
            self.shed,
        )


def guarded_protocol(limit: int, header_timeout: float, open_files: int = 0) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``http="auto"``) with the timeouts and the limit above; pass it as ``http=``."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    logging.getLogger("asyncio").addFilter(_AcceptErrors())
    shared = _Shared(limit, header_timeout, open_files)
    base: Any = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc]
        # Set before uvicorn's connection_made; read by the others (and by a newer connection's eviction).
        _refused = False
        _waiting_since: float | None = None  # when it began waiting for a request head; None while answering
        _last_read = 0.0
        _cycle: object = None  # the request whose head arrived last, and when
        _request_since = 0.0
        _tick: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            loop = asyncio.get_running_loop()
            connections = self.server_state.connections
            if len(connections) >= shared.limit:
                oldest = min(
                    (c for c in connections if getattr(c, "_waiting_since", None) is not None),
                    key=lambda c: c._waiting_since,
                    default=None,
                )
                # Else the connection whose body has paused longest: a trickled body is a held socket too.
                stalled = min(
                    (c for c in connections if getattr(c, "_receiving", lambda: False)()),
                    key=lambda c: c._last_read,
                    default=None,
                )
                shared.at_limit(refused=oldest is None and stalled is None)
                if oldest is not None:
                    oldest._close()
                elif stalled is not None:
                    stalled._time_out()
                else:
                    self._refused = True
                    transport.write(_BUSY)  # type: ignore[attr-defined]
                    transport.close()
                    return
            super().connection_made(transport)
            self._waiting_since = self._last_read = loop.time()
            self._tick = loop.call_later(_TICK_S, self._check)

        def _close(self) -> None:
            self._waiting_since = None
            if not self.transport.is_closing():
                self.transport.close()

        def _receiving(self) -> bool:
            """Reading a request body that has not been answered yet."""
            cycle = getattr(self, "cycle", None)
            return (
                cycle is not None
                and getattr(cycle, "more_body", False)
                and not getattr(cycle, "response_started", True)
                and not self.transport.is_closing()
            )

        def _time_out(self) -> None:
            """Close a connection whose body is late: 408 if nothing was answered yet."""
            cycle = getattr(self, "cycle", None)
            if not self.transport.is_closing() and not getattr(cycle, "response_started", True):
                self.transport.write(_TIMEOUT)
            self._close()

        def _check(self) -> None:
            if self.transport.is_closing():
                return
            loop = asyncio.get_running_loop()
            now = loop.time()
            cycle = getattr(self, "cycle", None)
            if cycle is None or getattr(cycle, "response_complete", False):
                if self._waiting_since is None:  # answered since the last tick: the next head's clock starts
                    self._waiting_since = now
                elif now - self._waiting_since > shared.header_timeout:
                    self._close()
                    return
            else:
                self._waiting_since = None
                receiving = getattr(cycle, "more_body", False)
                if receiving and now - self._last_read > shared.header_timeout:
                    self._close()
                    return
                if receiving and now - self._request_since > BODY_TIMEOUTS * shared.header_timeout:
                    self._time_out()
                    return
            self._tick = loop.call_later(_TICK_S, self._check)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            self._last_read = asyncio.get_running_loop().time()
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            if cycle is not None and not getattr(cycle, "response_complete", True):
                self._waiting_since = None  # a whole head arrived: the app answers it
                if cycle is not self._cycle:  # its body's clock starts
                    self._cycle, self._request_since = cycle, self._last_read

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            if self._tick is not None:
                self._tick.cancel()
            self._waiting_since = None
            super().connection_lost(exc)

    return GuardedHTTPProtocol
