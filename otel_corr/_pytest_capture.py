"""Which test a span or a log record belongs to, and keeping it until the test's report is made.

Loaded only when the pytest plugin is enabled (``--otel-corr``).  The owner of everything started while a
test runs is a :class:`TestRun`, found in this order:

1. a span continuing a trace that began in a test belongs to that test, whichever thread or test runs now;
2. the per-test ContextVar :data:`current`, set in pytest's thread for the whole test and carried wherever a
   context is copied: asyncio tasks, anyio's portal and worker threads (Starlette's ``TestClient``), and --
   through :func:`install`'s two wrappers -- threads the test starts and work it submits to a
   ``ThreadPoolExecutor`` (a pool thread outlives the test that started it: each work item runs as the test
   that submitted it, or as none);
3. the test running now, for threads no test started (a server a session fixture started).

Why not a span per test: a real ``test <nodeid>`` span in the test's context would make every client request
the test makes carry its ``traceparent`` (otel-corr's HTTP client propagation injects inside a trace only),
so the app's request IDs, parents and trace IDs would differ with the plugin on.  The ContextVar changes
nothing the app can see.

Fixtures wider than a function (a server started once per session) are set up with no owner, so what they
start belongs to no single test and falls to rule 3.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from . import _patches

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

    from .server._model import LogRecord as ReceivedLog
    from .server._model import Span as ReceivedSpan

__all__ = ["BY", "MAX_ITEMS", "Keeper", "TestRun", "current"]

#: ``installed_by`` of every change the plugin makes (``otel_corr.patches()``, undone at session end).
BY = "pytest_plugin (--otel-corr)"
#: Spans, and log records, kept per test at most: a test that makes 100,000 requests keeps its last
#: ones' worth of memory, and its section says how many were left out.
MAX_ITEMS = 5000
#: Traces remembered by their first test (rule 1), at most: a long session's map stays bounded.
_MAX_TRACES = 65536

_log = logging.getLogger("otel_corr")


class TestRun:
    """What one test produced: its spans and log records, in-process and received from live servers."""

    __slots__ = ("nodeid", "spans", "records", "received_spans", "received_logs", "dropped", "start_ns", "done")
    __test__ = False  # not a test class, whatever pytest's python_classes says

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.spans: list[ReadableSpan] = []
        #: (record, trace ID, span ID): the IDs of the span the record was written in, 0 outside one.
        self.records: list[tuple[logging.LogRecord, int, int]] = []
        self.received_spans: list[ReceivedSpan] = []
        self.received_logs: list[ReceivedLog] = []
        self.dropped = 0  # spans and records over MAX_ITEMS
        self.start_ns = time.time_ns()
        self.done = False

    def keep(self, bucket: list[Any], item: Any) -> None:
        """Append ``item`` unless the test is over; past MAX_ITEMS of that kind, the oldest goes (the
        request or line that explains a failure is most often the last one)."""
        if self.done:
            return
        if len(bucket) >= MAX_ITEMS:
            self.dropped += 1
            del bucket[0]  # a memmove of MAX_ITEMS pointers: microseconds, and only past the cap
        bucket.append(item)

    def release(self) -> None:
        """The test is over: drop what it kept (its report is made) and keep nothing more."""
        self.done = True
        self.spans = []
        self.records = []
        self.received_spans = []
        self.received_logs = []


#: The test whose code is running in this context (see the module docstring).
current: ContextVar[TestRun | None] = ContextVar("otel_corr_pytest_test", default=None)


class Keeper(SpanProcessor):
    """A span processor and a logging handler that hand each span and record to its test.

    Cheap on every span: a dict look-up and a store at start, a pop and an append at end; nothing is
    converted or formatted unless the test fails.
    """

    def __init__(self) -> None:
        self.running: TestRun | None = None  # the test pytest's thread runs now (rule 3)
        self.active = True
        self._traces: dict[int, TestRun] = {}  # trace ID -> the test it began in (rule 1)
        self._open: dict[int, tuple[TestRun, Any]] = {}  # span ID -> (owner, span), from on_start to on_end
        self._providers: weakref.WeakSet[Any] = weakref.WeakSet()  # the providers this processor was added to
        self.handler = _Handler(self)
        #: With ``--otel-corr-url``: every span and record also goes to the backend through these.
        self.export: SpanProcessor | None = None
        self.send_log: Callable[[logging.LogRecord], None] | None = None

    # -- who owns what --------------------------------------------------------------------
    def owner(self) -> TestRun | None:
        """The test the calling code belongs to (rules 2 and 3)."""
        return current.get() or self.running

    def trace_owner(self, trace_id: int) -> TestRun | None:
        return self._traces.get(trace_id)

    def claim(self, trace_id: int, test: TestRun) -> None:
        """Remember that ``trace_id`` began in ``test`` (the first test to see a trace keeps it)."""
        traces = self._traces
        if trace_id not in traces:
            if len(traces) >= _MAX_TRACES:
                del traces[next(iter(traces))]  # the oldest: dicts keep insertion order
            traces[trace_id] = test

    def begin(self, nodeid: str) -> TestRun:
        test = TestRun(nodeid)
        self.running = test
        return test

    def end(self, test: TestRun) -> None:
        """``test`` is over: forget its traces (a later test may send the same ``traceparent``) and its data."""
        if self.running is test:
            self.running = None
        test.release()
        for trace_id in [k for k, v in list(self._traces.items()) if v is test]:
            self._traces.pop(trace_id, None)
        for span_id in [k for k, (owner, _) in list(self._open.items()) if owner is test]:
            self._open.pop(span_id, None)

    def open_spans(self, test: TestRun) -> list[ReadableSpan]:
        """The spans ``test`` started that have not ended, as they are now, named ``... (not ended)``.

        A request still running when the test failed (a hung call, a background task), or one whose server
        waits for ``close()`` on a response the test client never closes.
        """
        now = time.time_ns()
        out = []
        for owner, span in list(self._open.values()):
            if owner is not test:
                continue
            try:
                out.append(
                    ReadableSpan(
                        name=f"{span.name} (not ended)",
                        context=span.context,
                        parent=span.parent,
                        resource=span.resource,
                        attributes=dict(span.attributes or {}),
                        events=tuple(span.events) if isinstance(span, ReadableSpan) else (),
                        kind=span.kind,
                        status=span.status,
                        start_time=span.start_time,
                        end_time=max(now, span.start_time or now),
                        instrumentation_scope=span.instrumentation_scope,
                    )
                )
            except Exception:  # a span type we cannot read while it runs: left out
                _log.debug("otel-corr pytest: open span not read", exc_info=True)
        return out

    # -- SpanProcessor --------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if not self.active:
            return
        try:
            context = span.context
            owner = self._traces.get(context.trace_id) if span.parent is not None else None
            if owner is None:
                owner = current.get() or self.running
                if owner is None or owner.done:  # no test, or one already over: not kept
                    return
                self.claim(context.trace_id, owner)
            elif owner.done:
                return
            self._open[context.span_id] = (owner, span)
        except Exception:  # a span we cannot read is left out, never an error in the test
            _log.debug("otel-corr pytest: span not kept", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        started = self._open.pop(context.span_id, None)
        if started is not None:
            owner = started[0]
            owner.keep(owner.spans, span)
        export = self.export
        if export is not None and self.active:
            try:
                export.on_end(span)
            except Exception:
                _log.debug("otel-corr pytest: span not sent", exc_info=True)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- the global provider ----------------------------------------------------------------
    def watch(self, provider: Any) -> None:
        """Add this processor to ``provider`` if it is an SDK provider we are not on yet."""
        add = getattr(provider, "add_span_processor", None)
        if add is None or not self.active or provider in self._providers:
            return
        try:
            self._providers.add(provider)
            add(self)
        except Exception:
            _log.warning("otel-corr pytest: cannot watch the spans of %r", provider, exc_info=True)

    def watch_global(self) -> None:
        """Watch the global TracerProvider if one was set since we last looked (an app instrumented)."""
        self.watch(trace.get_tracer_provider())


class _Handler(logging.Handler):
    """Every log record created while a test runs, kept with the IDs of the span it was written in."""

    def __init__(self, keeper: Keeper) -> None:
        super().__init__()
        self._keeper = keeper

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock: each record is one append to its test's list.
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        keeper = self._keeper
        if not keeper.active:
            return
        try:
            trace_id, span_id = _ids(record)
            owner = keeper.trace_owner(trace_id) if trace_id else None
            if owner is None:
                owner = keeper.owner()
            if owner is not None:
                owner.keep(owner.records, (record, trace_id, span_id))
            if keeper.send_log is not None:
                keeper.send_log(record)
        except Exception:  # a record we cannot place is left out, never an error in the test
            pass


def _ids(record: logging.LogRecord) -> tuple[int, int]:
    """The trace and span IDs otel-corr stamped on ``record``, else those of the current span."""
    stamped = record.__dict__.get("trace_id")
    if isinstance(stamped, str) and len(stamped) == 32:
        span = record.__dict__.get("span_id")
        try:
            return int(stamped, 16), int(span, 16) if isinstance(span, str) and len(span) == 16 else 0
        except ValueError:
            return 0, 0
    context = trace.get_current_span().get_span_context()
    return (context.trace_id, context.span_id) if context.is_valid else (0, 0)


# -- the process-wide changes, each through otel-corr's registry ------------------------------------


def _bound(fn: Callable[..., Any], owner: TestRun | None) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        token = current.set(owner)
        try:
            return fn(*args, **kwargs)
        finally:
            current.reset(token)

    return run


def _wrap_start(original: Any) -> Any:
    def start(self: threading.Thread) -> None:
        owner = current.get()
        if owner is not None:
            self.run = _bound(self.run, owner)  # type: ignore[method-assign]
        original(self)

    return start


def _wrap_submit(original: Any) -> Any:
    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # Bound even to no test: a pool thread started by one test must not lend it to later work.
        return original(self, _bound(fn, current.get()), *args, **kwargs)

    return submit


def _wrap_set_provider(keeper: Keeper) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def set_tracer_provider(*args: Any, **kwargs: Any) -> None:
            original(*args, **kwargs)
            keeper.watch_global()

        return set_tracer_provider

    return make


#: The enabled plugin's keeper: ``otel_corr.testing.capture()`` hands it its provider too.
current_keeper: Keeper | None = None


def install(keeper: Keeper) -> None:
    """Make the plugin's process-wide changes, each recorded in otel-corr's registry (undone by :func:`uninstall`)."""
    global current_keeper
    current_keeper = keeper
    keeper.watch_global()
    _patches.replace(
        trace,
        "set_tracer_provider",
        _wrap_set_provider(keeper),
        what="adds the plugin's span processor to the provider being set",
        by=BY,
    )
    root = logging.getLogger()
    handler = keeper.handler
    root.addHandler(handler)
    _patches.record(
        "pytest_plugin log handler",
        "the root logger's handlers",
        "a handler keeping each log record with the test it was written in",
        BY,
        lambda: root.removeHandler(handler),
    )
    _patches.replace(threading.Thread, "start", _wrap_start, what="the thread runs as the test that started it", by=BY)
    _patches.replace(
        ThreadPoolExecutor, "submit", _wrap_submit, what="the work runs as the test that submitted it", by=BY
    )

    def stop() -> None:
        # The SDK has no way to take a span processor off a provider: ours stays, and does nothing.
        global current_keeper
        keeper.active = False
        current_keeper = None

    _patches.record(
        "pytest_plugin span processor",
        "the global TracerProvider's span processors",
        "a processor keeping each span with the test it began in (inert once undone: the SDK cannot remove one)",
        BY,
        stop,
    )


def uninstall() -> None:
    """Undo every change :func:`install` made, newest first."""
    _patches.undo_where(BY)
