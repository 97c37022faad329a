"""What the ``why`` corpus apps (issue 19) share: a traced data layer, and the log lines that bracket the
untraced pauses, so that the harness (``tests/_why_corpus.py``) knows the texts the analysis must quote.

The data layer makes one CLIENT span per statement, named the way OpenTelemetry's database conventions name
them (``SELECT item``), as a database instrumentation would; the "query" itself is a sleep.  Nothing here
starts a span a real app would not have.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

__all__ = [
    "DEEP_ERRORS",
    "DeadlockDetected",
    "PAUSES",
    "DeepError",
    "aquery",
    "cached_risk",
    "hold",
    "pause_lines",
    "query",
    "raise_deep",
    "service_span",
]

tracer = trace.get_tracer("why.corpus.app")

#: The two log lines around each untraced pause, by position in the handler: (before, after), with ``{id}``.
PAUSES: dict[int, tuple[str, str]] = {
    0: ("request {id}: checking the fraud score", "request {id}: fraud score ok"),
    1: ("request {id}: recomputing tax", "request {id}: tax ready"),
    2: ("request {id}: rendering the document", "request {id}: document rendered"),
    3: ("request {id}: signing the response", "request {id}: response signed"),
}


def pause_lines(at: int, ident: int) -> tuple[str, str]:
    """The log lines logged just before and just after the pause at position ``at`` of request ``ident``."""
    before, after = PAUSES[at]
    return before.format(id=ident), after.format(id=ident)


@contextmanager
def _statement(sql: str, system: str = "postgresql") -> Iterator[Span]:
    operation, _, table = sql.partition(" ")
    attributes = {"db.system.name": system, "db.operation.name": operation, "db.collection.name": table}
    with tracer.start_as_current_span(sql, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


class DeadlockDetected(Exception):
    """The database picked this transaction as a deadlock's victim: retry it."""


def query(sql: str, ms: float, deadlock: bool = False) -> None:
    """One statement of ``ms`` milliseconds (a blocking driver); with ``deadlock``, it fails after them."""
    with _statement(sql):
        time.sleep(ms / 1000)
        if deadlock:
            raise DeadlockDetected(f"{sql}: deadlock detected")


async def aquery(sql: str, ms: float) -> None:
    """One statement of ``ms`` milliseconds (an async driver)."""
    with _statement(sql):
        await asyncio.sleep(ms / 1000)


class CacheUnavailable(Exception):
    """The cache did not answer; callers compute the value instead."""


def cached_risk(key: str) -> int | None:
    """A cache read that fails and is handled: its statement span fails, the ``cache.get`` step does not."""
    with service_span("cache.get"):
        try:
            with _statement("HGET risk_scores", system="redis"):
                raise CacheUnavailable(f"{key}: connection refused")
        except CacheUnavailable:
            return None


@contextmanager
def service_span(name: str) -> Iterator[Span]:
    """A service-layer step (``payment.authorize``): an INTERNAL span, as a traced service layer has."""
    with tracer.start_as_current_span(name) as span:
        yield span


class DeepError(Exception):
    """A failure of the data layer's own (a stale read), one of the deep errors the corpus raises."""


#: The exceptions the deep failures raise, by name (the harness asks for one by its name).
DEEP_ERRORS: dict[str, type[Exception]] = {
    "KeyError": KeyError,
    "ValueError": ValueError,
    "ZeroDivisionError": ZeroDivisionError,
    "TimeoutError": TimeoutError,
    "DeepError": DeepError,
}


def raise_deep(kind: str, what: str) -> int:
    """Fail the way ``kind`` fails in real code (a missing key, a division by zero, a bad value...)."""
    row: dict[str, int] = {"id": 1}
    if kind == "KeyError":
        return row[what]
    if kind == "ZeroDivisionError":
        return row["id"] // (len(row) - 1)
    raise DEEP_ERRORS[kind](f"{what}: no usable row")


def hold(lock: threading.Lock, ms: float) -> threading.Event:
    """Hold ``lock`` for ``ms`` in a thread of its own (a cache refresher); return once it is held."""
    held = threading.Event()

    def refresh() -> None:
        with lock:
            held.set()
            time.sleep(ms / 1000)

    threading.Thread(target=refresh, name="cache-refresher", daemon=True).start()
    return held


def locked_write(
    lock: threading.Lock,
    span_name: str,
    statement: str,
    waiter: str,
    *,
    deadlocks: int,
    backoff_ms: int,
    what: str,
    log: logging.Logger,
) -> None:
    """Run ``statement`` under ``lock`` (held by another thread when the lock wait is injected).

    ``waiter``: "bare" waits in the caller's span, "leaf" in a span of its own with nothing in it,
    anything else in a span that runs the statement, retried after each of ``deadlocks`` deadlocks
    with a growing backoff (the retry injection) and a warning naming ``what``.
    """
    if waiter == "bare":  # no span of its own: the request's span is the one that waits
        with lock:
            query(statement, 4)
        return
    with service_span(span_name), lock:
        if waiter == "leaf":
            time.sleep(0.002)
            return
        for attempt in range(1, 5):
            try:
                query(statement, 4, deadlock=attempt <= deadlocks)
                return
            except DeadlockDetected:
                log.warning("deadlock %s (attempt %d), retrying", what, attempt)
                time.sleep(backoff_ms * attempt / 1000)
