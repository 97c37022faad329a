"""Per-record cost of logging inside a request: otel-corr's stamping and formatters against the alternatives.

Methodology
-----------
* The timed call is ``logger.info("order %s created", 42)`` on the logger
  ``app.orders``, which propagates to one root ``logging.StreamHandler``
  writing to ``open(os.devnull, "w")`` (root level INFO).  Only the
  formatter, the filters and the record factory differ between rows.
* Every call is made *inside a request context*: a current SDK span that is
  recording (``start_as_current_span`` on a ``TracerProvider`` -- set global,
  ``service.name=log-bench`` -- whose only processor is a real
  ``BatchSpanProcessor`` around a no-op exporter) plus the request ID bound
  the way otel-corr binds it (``otel_corr._context.bound_request_id``).  The
  ``asgi_correlation_id.correlation_id`` contextvar is set too, so every
  row's filter or factory finds its IDs.
* Each configuration and repetition runs in a fresh subprocess (this script
  re-invoked with ``--worker NAME``), so record factories, root handlers and
  instrumentors of one row never leak into another.  ``OTEL_*`` variables
  are removed from the workers' environment (then the instrumentor row gets
  ``OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false``, see below).
* A worker logs ``--warmup`` records (default 10,000), then times ``-n``
  records (default 100,000) with ``perf_counter_ns``; GC stays on.  The
  reported figure is elapsed / n in microseconds.
* Repetitions are interleaved (``for rep: for config: run``) so slow drift of
  the machine hits every row alike; the table shows the median over
  ``--reps`` (default 5) and the min-max spread; deltas are differences of
  medians against ``plain``.
* After timing, a worker logs one more record into a ``StringIO`` through the
  same handler (so filters run) and reports it: the sample lines show the rows
  produce comparable output.  It also reports the root logger's handlers.
* ``otel-logging-instrumentor``: ``LoggingInstrumentor().instrument(
  set_logging_format=True)`` calls ``logging.basicConfig`` with
  ``DEFAULT_LOGGING_FORMAT``; the worker then points that basicConfig handler
  at ``/dev/null`` (its formatter unchanged).  Its OTLP ``LoggingHandler``
  (installed by default since 0.5x) is switched off with
  ``OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION=false`` in the worker's
  environment, and the worker checks it is absent.

* The ``-extra`` rows make the same call with ``extra=EXTRA`` (an int, a
  string and a float field): the path a record with fields of its own takes
  through the formatter, each value through its encoder.
* ``--instructions``: each configuration runs twice under valgrind's
  callgrind, with ``-n`` and ``2 x -n`` timed records after the same warm-up;
  the difference divided by ``-n`` is the instructions one record costs (start-up,
  warm-up and the sample line cancel out).  Unlike wall time it does not move
  with the machine's other load, so a before/after comparison of a few
  percent is meaningful with a small ``-n``.

* Paired cross-check (after the table): on a shared or virtualised machine
  the spread between processes can exceed the 1 us the stamping target is
  about.  One extra worker therefore alternates ``plain``,
  ``otel-corr-text``, ``otel-corr-json`` and ``python-json-logger+filter``
  in one process -- switching the record factory, ``Logger.makeRecord``,
  formatter and filters of the same handler between ``--paired-chunk``-record
  slices (default 5,000), ``--paired-rounds`` rounds (default 24) in ABBA
  order -- and prints the median of the per-round differences and ratios.
  The PASS/MISS lines use the table; the cross-check is for reading them.

* Log export rows (``+otlp``): records also leave over OTLP/HTTP, through a
  ``BatchLogRecordProcessor`` (default settings: 1 s delay, batches of 512, a
  2,048-record queue) to a sink in the runner process (a stdlib HTTP server that
  decodes each request and counts its records, so the worker pays for the real
  export: encoding and POSTs on its batch thread).  ``otel-corr-text`` has
  export off (``OTEL_LOGS_EXPORTER=none``), ``otel-corr-text+otlp`` the default
  (the variable unset); ``sdk-handler+otlp`` and ``contrib-handler+otlp`` are
  what users glue today: ``plain``'s handler plus the SDK's own
  ``LoggingHandler`` (what ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true``
  installs) or opentelemetry-instrumentation-logging's (what
  ``LoggingInstrumentor`` installs), on a ``LoggerProvider`` with the same
  processor and exporter.  The table's notes say how many records the sink got:
  a full queue drops records (the SDK's default), and a dropped record costs
  less than a sent one.
* ``CPU ns/rec``: the worker's CPU time (``process_time``, every thread) from
  the first timed record until the log records are flushed (``force_flush``):
  what the export costs on its batch thread is in it, on top of the caller's.
* ``-debug`` rows call ``logger.debug(...)`` with the root at INFO: the record
  is never created, and export must add nothing to that (``plain-debug`` against
  ``otel-corr-text+otlp-debug``).

Targets are printed with PASS/MISS for information only; the exit code is 0
unless a worker fails.  ``--profile NAME`` runs one worker under cProfile and
prints its hotspots instead of the table.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import json
import logging
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import package_versions, render_table, source_state, worker_json

SCRIPT = Path(__file__).resolve()
PACKAGES = ("opentelemetry-sdk", "opentelemetry-instrumentation-logging", "asgi-correlation-id", "python-json-logger")
REPO_DIR = SCRIPT.parent.parent
PLAIN_FMT = "%(asctime)s %(levelname)s %(name)s %(message)s"
TEXT_FMT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
CID_FMT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
REQUEST_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
LOGGER_NAME = "app.orders"
OTEL_CORR_CONFIGS = ("otel-corr-text", "otel-corr-textformatter", "otel-corr-json", "otel-corr-json-extra")
#: Rows whose records also leave over OTLP (to the runner's sink); ours with OTEL_LOGS_EXPORTER unset.
EXPORT_CONFIGS = ("otel-corr-text+otlp", "sdk-handler+otlp", "contrib-handler+otlp", "otel-corr-text+otlp-debug")
CONFIGS = (
    "plain",
    *OTEL_CORR_CONFIGS,
    "asgi-correlation-id",
    "otel-logging-instrumentor",
    "python-json-logger+filter",
    "python-json-logger+filter-extra",
    *EXPORT_CONFIGS[:3],
    "plain-debug",
    EXPORT_CONFIGS[3],
)
#: The export comparison: ``python benchmarks/log_overhead.py --configs export``.
EXPORT_SET = (
    "plain",
    "otel-corr-text",
    "otel-corr-text+otlp",
    "sdk-handler+otlp",
    "contrib-handler+otlp",
    "plain-debug",
    "otel-corr-text+otlp-debug",
)
#: What the ``-extra`` rows pass as ``extra=``: fields of the app's own on the line.
EXTRA = {"order_id": 42, "customer": "c-17", "amount": 9.5}
PAIRED = "paired"
INSTRUMENTOR_ENV = {"OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION": "false"}

# --------------------------------------------------------------------------- worker side


class _BenchHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The benchmark's own handler (a distinct class so the root-handler check can name it)."""


def _noop_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return NoopExporter()


def make_tracer() -> Any:
    """A global SDK provider with a real batch processor around a no-op exporter; its tracer."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "log-bench"}))
    provider.add_span_processor(BatchSpanProcessor(_noop_exporter()))
    trace.set_tracer_provider(provider)
    return provider.get_tracer("log-bench")


def add_handler(formatter: logging.Formatter, filters: Iterable[logging.Filter] = ()) -> logging.Handler:
    """Put the benchmark's /dev/null handler on the root logger."""
    handler = _BenchHandler(open(os.devnull, "w"))  # lives as long as the worker
    handler.setFormatter(formatter)
    for f in filters:
        handler.addFilter(f)
    logging.getLogger().addHandler(handler)
    return handler


def _cid_filter() -> logging.Filter:
    from asgi_correlation_id import CorrelationIdFilter

    return CorrelationIdFilter()


def setup_plain() -> list[str]:
    add_handler(logging.Formatter(PLAIN_FMT))
    return []


def setup_otel_corr(formatter_name: str) -> list[str]:
    import otel_corr
    from otel_corr.logging import JsonFormatter, TextFormatter

    otel_corr.instrument_logging()
    formatter: logging.Formatter = {
        "otel-corr-text": lambda: logging.Formatter(TEXT_FMT),
        "otel-corr-textformatter": TextFormatter,
        "otel-corr-json": JsonFormatter,
        "otel-corr-json-extra": JsonFormatter,
    }[formatter_name]()
    add_handler(formatter)
    return [f"record factory: {type(logging.getLogRecordFactory()).__module__}"]


def setup_otel_corr_export() -> list[str]:
    """otel-corr with OTEL_LOGS_EXPORTER unset (the default: otlp) and the text format of ``otel-corr-text``."""
    from otel_corr.logging import _otlp

    notes = setup_otel_corr("otel-corr-text")
    if not any(isinstance(h, _otlp.OTLPHandler) for h in logging.getLogger().handlers):
        raise RuntimeError("no OTLP handler: log export is not on by default")
    return [*notes, f"OTEL_LOGS_EXPORTER unset; OTLP/HTTP to {os.environ['OTEL_EXPORTER_OTLP_ENDPOINT']}"]


def _sdk_provider() -> Any:
    """A global LoggerProvider with a BatchLogRecordProcessor and the OTLP/HTTP exporter: what users build."""
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": "log-bench"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    set_logger_provider(provider)
    return provider


def setup_sdk_handler(which: str) -> list[str]:
    """``plain``'s handler, plus an OpenTelemetry LoggingHandler on the root logger (the SDK's or contrib's)."""
    import warnings

    setup_plain()
    provider = _sdk_provider()
    if which == "sdk":
        from opentelemetry.sdk._logs import LoggingHandler

        with warnings.catch_warnings():  # deprecated in the SDK, still what the auto-instrumentation switch installs
            warnings.simplefilter("ignore")
            handler: logging.Handler = LoggingHandler(level=logging.NOTSET, logger_provider=provider)
    else:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler as ContribHandler

        handler = ContribHandler(level=logging.NOTSET, logger_provider=provider)
    logging.getLogger().addHandler(handler)
    return [f"{type(handler).__module__}.LoggingHandler; OTLP/HTTP to {os.environ['OTEL_EXPORTER_OTLP_ENDPOINT']}"]


def setup_asgi_correlation_id() -> list[str]:
    add_handler(logging.Formatter(CID_FMT), [_cid_filter()])
    return []


def setup_instrumentor() -> list[str]:
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.instrumentation.logging.constants import DEFAULT_LOGGING_FORMAT

    root = logging.getLogger()
    assert not root.handlers, "basicConfig would be a no-op"
    LoggingInstrumentor().instrument(set_logging_format=True)
    otlp = LoggingInstrumentor._logging_handler
    others = [h for h in root.handlers if type(h) is not logging.StreamHandler]
    if otlp is not None or others:
        raise RuntimeError(f"OTLP LoggingHandler installed despite the switch: {otlp!r} {others!r}")
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.formatter is not None
    if handler.formatter._fmt != DEFAULT_LOGGING_FORMAT:
        raise RuntimeError(f"unexpected instrumentor format {handler.formatter._fmt!r}")
    handler.setStream(open(os.devnull, "w"))  # lives as long as the worker
    switch = ", ".join(f"{k}={os.environ.get(k)}" for k in INSTRUMENTOR_ENV)
    return [
        "basicConfig's StreamHandler (DEFAULT_LOGGING_FORMAT) re-pointed to /dev/null",
        f"OTLP LoggingHandler not installed ({switch}; checked root handlers)",
    ]


def _pjl_formatter() -> tuple[logging.Formatter, str]:
    """python-json-logger's formatter with timestamp, level, logger, message (+ the correlation ID)."""
    try:
        module = importlib.import_module("pythonjsonlogger.json")
    except ImportError:  # python-json-logger < 3.1
        module = importlib.import_module("pythonjsonlogger.jsonlogger")
    json_formatter: Any = module.JsonFormatter
    formatter: logging.Formatter = json_formatter(
        "%(levelname)s %(name)s %(message)s %(correlation_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )
    return formatter, f"{module.__name__}.JsonFormatter"


def setup_python_json_logger() -> list[str]:
    formatter, name = _pjl_formatter()
    add_handler(formatter, [_cid_filter()])
    return [f"formatter: {name}"]


SETUPS: dict[str, Callable[[], list[str]]] = {
    "plain": setup_plain,
    "otel-corr-text": lambda: setup_otel_corr("otel-corr-text"),
    "otel-corr-textformatter": lambda: setup_otel_corr("otel-corr-textformatter"),
    "otel-corr-json": lambda: setup_otel_corr("otel-corr-json"),
    "otel-corr-json-extra": lambda: setup_otel_corr("otel-corr-json-extra"),
    "asgi-correlation-id": setup_asgi_correlation_id,
    "otel-logging-instrumentor": setup_instrumentor,
    "python-json-logger+filter": setup_python_json_logger,
    "python-json-logger+filter-extra": setup_python_json_logger,
    "otel-corr-text+otlp": setup_otel_corr_export,
    "sdk-handler+otlp": lambda: setup_sdk_handler("sdk"),
    "contrib-handler+otlp": lambda: setup_sdk_handler("contrib"),
    "plain-debug": setup_plain,
    "otel-corr-text+otlp-debug": setup_otel_corr_export,
}


@contextmanager
def request_context(tracer: Any) -> Iterator[None]:
    """A recording SDK span made current, otel-corr's request ID bound, asgi-correlation-id's ID set."""
    from asgi_correlation_id import correlation_id

    from otel_corr._context import bound_request_id

    token = correlation_id.set(REQUEST_ID)
    try:
        with tracer.start_as_current_span("GET /orders") as span, bound_request_id(REQUEST_ID):
            if not span.is_recording():
                raise RuntimeError("the request span is not recording")
            yield
    finally:
        correlation_id.reset(token)


def log_loop(n: int, extra: dict[str, object] | None = None, debug: bool = False) -> int:
    """The timed loop: ``n`` records (with ``extra=`` if given; at DEBUG if asked); returns the elapsed ns."""
    logger = logging.getLogger(LOGGER_NAME)
    info = logger.debug if debug else logger.info
    if extra is None:
        start = time.perf_counter_ns()
        for _ in range(n):
            info("order %s created", 42)
    else:
        start = time.perf_counter_ns()
        for _ in range(n):
            info("order %s created", 42, extra=extra)
    return time.perf_counter_ns() - start


def sample_line(extra: dict[str, object] | None = None) -> str:
    """Log one record through the root handler into a string: the exact line the rows write."""
    (handler,) = [h for h in logging.getLogger().handlers if type(h) in (_BenchHandler, logging.StreamHandler)]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    old = handler.setStream(buffer)
    try:
        logging.getLogger(LOGGER_NAME).info("order %s created", 42, extra=extra)
    finally:
        handler.setStream(old)
    return buffer.getvalue().rstrip("\n")


def root_handlers() -> list[str]:
    return [f"{type(h).__module__}.{type(h).__qualname__}" for h in logging.getLogger().handlers]


def run_worker(config: str, n: int, warmup: int) -> dict[str, Any]:
    logging.getLogger().setLevel(logging.INFO)
    tracer = make_tracer()
    notes = SETUPS[config]()
    handlers = root_handlers()
    extra = EXTRA if config.endswith("-extra") else None
    debug = config.endswith("-debug")
    with request_context(tracer):
        log_loop(warmup, extra, debug)
        flush_logs()
        cpu = time.process_time_ns()
        elapsed = log_loop(n, extra, debug)
        flush_logs()  # the export those records cost, on the batch thread, is counted in the CPU time
        cpu = time.process_time_ns() - cpu
        sample = sample_line(extra)
    return {"us": elapsed / n / 1000, "cpu_us": cpu / n / 1000, "sample": sample, "handlers": handlers, "notes": notes}


def flush_logs() -> None:
    """Export every queued log record now (rows without log export: nothing to do)."""
    from opentelemetry._logs import get_logger_provider

    force_flush = getattr(get_logger_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush()


@dataclass
class Mode:
    """One configuration expressed as switches on a single handler (for the paired worker)."""

    stamped: bool
    formatter: logging.Formatter
    filters: list[logging.Filter]


def paired_modes() -> dict[str, Mode]:
    from otel_corr.logging import JsonFormatter

    return {
        "plain": Mode(False, logging.Formatter(PLAIN_FMT), []),
        "otel-corr-text": Mode(True, logging.Formatter(TEXT_FMT), []),
        "otel-corr-json": Mode(True, JsonFormatter(), []),
        "python-json-logger+filter": Mode(False, _pjl_formatter()[0], [_cid_filter()]),
    }


def run_paired_worker(rounds: int, chunk: int, warmup: int) -> dict[str, Any]:
    """Alternate the paired modes in ``chunk``-record slices in one process (ABBA order); chunk timings per mode."""
    import otel_corr

    logging.getLogger().setLevel(logging.INFO)
    tracer = make_tracer()
    handler = add_handler(logging.Formatter(PLAIN_FMT))
    off = (logging.getLogRecordFactory(), logging.Logger.makeRecord)
    otel_corr.instrument_logging()
    on = (logging.getLogRecordFactory(), logging.Logger.makeRecord)
    modes = paired_modes()

    def apply(mode: Mode) -> None:
        factory, make_record = on if mode.stamped else off
        logging.setLogRecordFactory(factory)
        setattr(logging.Logger, "makeRecord", make_record)  # noqa: B010 - mypy refuses a method assignment
        handler.setFormatter(mode.formatter)
        handler.filters = list(mode.filters)

    times: dict[str, list[float]] = {name: [] for name in modes}
    with request_context(tracer):
        for mode in modes.values():
            apply(mode)
            log_loop(warmup)
        for r in range(rounds):
            for name in list(modes) if r % 2 == 0 else list(reversed(modes)):
                apply(modes[name])
                times[name].append(log_loop(chunk) / chunk / 1000)
    return times


def profile_worker(config: str, n: int, warmup: int, top: int = 25) -> None:
    """Run one worker under cProfile; print the hotspots by own time and the otel_corr ones by cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(run_worker, config, n, warmup)
    for key, restrict in (("tottime", top), ("cumulative", "otel_corr")):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(restrict)
        print(out.getvalue())


# --------------------------------------------------------------------------- runner side


def instructions(config: str, n: int, warmup: int) -> int:
    """Instructions callgrind counts for one worker process logging ``n`` timed records."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(SCRIPT)]
        cmd += ["--worker", config, "-n", str(n), "--warmup", str(warmup)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(config), timeout=1800, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"valgrind worker {config} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no callgrind summary for {config}")


def run_instructions(configs: Sequence[str], n: int, warmup: int) -> None:
    """Instructions per record: (run with 2n - run with n) / n, for each configuration."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    print(f"# log_overhead --instructions: (callgrind run with {2 * n:,} - run with {n:,} records) / {n:,}")
    print(f"# Python {platform.python_version()}; {package_versions(PACKAGES)}")
    print(f"# {source_state()}\n")
    per: dict[str, float] = {}
    for config in configs:
        per[config] = (instructions(config, 2 * n, warmup) - instructions(config, n, warmup)) / n
        print(f"  {config}: {per[config]:,.0f} instructions/record", file=sys.stderr, flush=True)
    plain = per.get("plain")
    rows = [
        [
            c,
            f"{v:,.0f}",
            f"{v - plain:+,.0f}" if plain else "n/a",
            f"{v / plain:.2f}x" if plain else "n/a",
        ]
        for c, v in per.items()
    ]
    print(render_table(["config", "instr/record", "delta vs plain", "x plain"], rows))


@dataclass
class Summary:
    config: str
    values: list[float]
    sample: str
    handlers: list[list[str]]
    notes: list[str]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Check:
    label: str
    detail: str
    ok: bool


def child_env(config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH", "")]))
    if config == "otel-logging-instrumentor":
        env.update(INSTRUMENTOR_ENV)
    if config in EXPORT_CONFIGS:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = _sink().url  # OTEL_LOGS_EXPORTER stays unset: the default
    else:
        env["OTEL_LOGS_EXPORTER"] = "none"  # the stamping and formatting rows: nothing leaves the process
    return env


class Sink:
    """An OTLP/HTTP log sink in the runner process: answers 200, counts the records it decodes."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        sink = self
        self.records = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = ExportLogsServiceRequest.FromString(body)
                sink.records += sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


_SINKS: list[Sink] = []


def _sink() -> Sink:
    if not _SINKS:
        _SINKS.append(Sink())
    return _SINKS[0]


def spawn_worker(config: str, n: int, warmup: int, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(SCRIPT), "--worker", config, "-n", str(n), "--warmup", str(warmup), *extra]
    env = child_env(config)
    before = _sink().records if config in EXPORT_CONFIGS else 0
    result = worker_json(cmd, env, 300, config)
    if config in EXPORT_CONFIGS:  # the worker flushed at exit (the LoggerProvider's own at-exit shutdown)
        written = 1 if config.endswith("-debug") else warmup + n + 1  # + the sample line
        result["notes"] = [*result["notes"], f"sink received {_sink().records - before:,} of {written:,} records"]
    return result


def collect(configs: Sequence[str], reps: int, n: int, warmup: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(reps):
        for config in configs:
            results[config].append(spawn_worker(config, n, warmup))
        print(f"  rep {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    return results


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Summary]:
    return {
        c: Summary(
            c,
            [r["us"] for r in rs],
            rs[0]["sample"],
            [r["handlers"] for r in rs],
            rs[0]["notes"],
            [r["cpu_us"] for r in rs],
        )
        for c, rs in results.items()
    }


def result_rows(s: dict[str, Summary]) -> list[list[str]]:
    """One row per configuration; ``-debug`` rows against ``plain-debug`` (a filtered call), the rest ``plain``."""
    rows = []
    for c, summary in s.items():
        base_name = "plain-debug" if c.endswith("-debug") else "plain"
        base = s[base_name].median if base_name in s else None
        delta = f"{summary.median - base:+.2f}" if base is not None else "n/a"
        spread = f"{min(summary.values):.2f}-{max(summary.values):.2f}"
        ratio = f"{summary.median / base:.2f}x" if base else "n/a"
        cpu = statistics.median(summary.cpu) * 1000
        rows.append([c, f"{summary.median * 1000:,.0f}", f"{summary.median:.2f}", spread, delta, ratio, f"{cpu:,.0f}"])
    return rows


def checks(s: dict[str, Summary]) -> list[Check]:
    out: list[Check] = []
    if "plain" in s and "otel-corr-text" in s:
        d = s["otel-corr-text"].median - s["plain"].median
        detail = f"{d:+.2f} us ({d / s['plain'].median:+.0%} of plain)"
        out.append(Check("otel-corr text stamping over plain <= 1.00 us/record", detail, d <= 1.0))
    if "otel-corr-json" in s and "python-json-logger+filter" in s:
        ours_json, theirs = s["otel-corr-json"].median, s["python-json-logger+filter"].median
        r = ours_json / theirs
        detail = f"{r:.2f}"
        if "plain" in s:  # the shared floor: what the ratio would be if our stamping and JSON cost nothing
            plain = s["plain"].median
            over = (ours_json - plain) / (theirs - plain)
            detail += f" (plain / theirs: {plain / theirs:.2f}; overheads over plain: {over:.2f})"
        out.append(Check("otel-corr-json / python-json-logger+filter <= 0.60", detail, r <= 0.6))
    if "otel-corr-text" in s and "otel-corr-text+otlp" in s:
        d = s["otel-corr-text+otlp"].median - s["otel-corr-text"].median
        out.append(Check("otel-corr OTLP export (default) over export off", f"{d:+.2f} us/record", True))
    for theirs in ("sdk-handler+otlp", "contrib-handler+otlp"):
        if "otel-corr-text+otlp" in s and theirs in s:
            r = s["otel-corr-text+otlp"].median / s[theirs].median
            detail = f"{r:.2f}"
            if "plain" in s and "otel-corr-text" in s:  # export alone: each row over its own no-export floor
                ours_only = s["otel-corr-text+otlp"].median - s["otel-corr-text"].median
                theirs_only = s[theirs].median - s["plain"].median
                detail += f" (export alone: {ours_only:.2f} vs {theirs_only:.2f} us, {ours_only / theirs_only:.2f})"
            out.append(Check(f"otel-corr-text+otlp / {theirs} <= 1.00", detail, r <= 1.0))
    if "plain-debug" in s and "otel-corr-text+otlp-debug" in s:
        ours_debug, plain_debug = s["otel-corr-text+otlp-debug"].median, s["plain-debug"].median
        r = ours_debug / plain_debug
        detail = f"{r:.2f} ({ours_debug * 1000:.0f} vs {plain_debug * 1000:.0f} ns)"
        out.append(Check("a filtered log.debug costs nothing extra with export on: ratio <= 1.10", detail, r <= 1.1))
    ours = [c for c in OTEL_CORR_CONFIGS if c in s]
    if ours:
        bad = {c: hs for c in ours for hs in s[c].handlers if hs != [f"__main__.{_BenchHandler.__qualname__}"]}
        detail = "root handlers == [benchmark handler] in every otel-corr worker" if not bad else repr(bad)
        out.append(Check("no extra handler on the root logger", detail, not bad))
    return out


def paired_lines(times: dict[str, list[float]], rounds: int, chunk: int) -> list[str]:
    """Medians of the per-round differences / ratios of the paired worker's chunk timings."""
    lines = [f"Paired in-process cross-check (one process, {rounds} rounds of {chunk:,}-record chunks, ABBA order):"]
    if {"plain", "otel-corr-text"} <= times.keys():
        plain, text = times["plain"], times["otel-corr-text"]
        d = statistics.median(b - a for a, b in zip(plain, text, strict=True))
        lines.append(f"  otel-corr-text - plain: {d:+.2f} us (plain chunk median {statistics.median(plain):.2f} us)")
    if {"otel-corr-json", "python-json-logger+filter"} <= times.keys():
        pairs = zip(times["otel-corr-json"], times["python-json-logger+filter"], strict=True)
        r = statistics.median(a / b for a, b in pairs)
        lines.append(f"  otel-corr-json / python-json-logger+filter: {r:.2f}")
    return lines


def report(s: dict[str, Summary], reps: int, n: int, warmup: int, cross_check: Sequence[str]) -> None:
    print(f"# log_overhead: {n:,} records x {reps} interleaved reps after {warmup:,} warm-up, one subprocess each")
    print(
        f"# Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs;"
        f" {package_versions(PACKAGES)}"
    )
    print(f"# load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print('# call: logging.getLogger("app.orders").info("order %s created", 42) inside a recording SDK span')
    print("#       + bound request ID; root StreamHandler -> /dev/null; -debug rows: .debug() with the root at INFO")
    print("#       (their delta and ratio are against plain-debug). ns/us: wall time of the calling thread;")
    print("#       CPU ns/rec: the process's CPU time (every thread) for the timed records and their export\n")
    headers = ["config", "median ns/rec", "median us/rec", "min-max", "delta vs plain", "x plain", "CPU ns/rec"]
    print(render_table(headers, result_rows(s)))
    print("\nTargets (informational):")
    for check in checks(s):
        print(f"  [{'PASS' if check.ok else 'MISS'}] {check.label}: {check.detail}")
    if cross_check:
        print("\n" + "\n".join(cross_check))
    print("\nRoot handlers (first rep) and notes:")
    for c, summary in s.items():
        print(f"  {c}: {summary.handlers[0]}")
        for note in summary.notes:
            print(f"      {note}")
    print("\nSample lines:")
    for c, summary in s.items():
        print(f"  {c}:\n    {summary.sample}")


def config_list(value: str) -> list[str]:
    if value.strip() == "export":
        return list(EXPORT_SET)
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown configurations: {', '.join(unknown)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--records", type=int, default=None, help="timed records per rep (default 100,000)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up records per worker (default 10,000)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: N=10,000, reps=2, warm-up 1,000")
    p.add_argument("--configs", type=config_list, default=list(CONFIGS), help="comma-separated subset, or 'export'")
    p.add_argument("--paired-rounds", type=int, default=None, help="paired cross-check rounds (default 24, 0: skip)")
    p.add_argument("--paired-chunk", type=int, default=None, help="records per paired chunk (default 5,000)")
    p.add_argument("--worker", choices=(*CONFIGS, PAIRED), help=argparse.SUPPRESS)
    p.add_argument("--profile", choices=CONFIGS, help="run one worker under cProfile and print its hotspots")
    p.add_argument(
        "--instructions", action="store_true", help="instructions per record under valgrind (-n default 2,000)"
    )
    args = p.parse_args(argv)
    args.records = args.records or (10_000 if args.quick else 2_000 if args.instructions else 100_000)
    args.warmup = args.warmup if args.warmup is not None else (1_000 if args.quick else 10_000)
    args.reps = args.reps or (2 if args.quick else 5)
    args.paired_rounds = args.paired_rounds if args.paired_rounds is not None else (4 if args.quick else 24)
    args.paired_chunk = args.paired_chunk or (1_000 if args.quick else 5_000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == PAIRED:
        print(json.dumps(run_paired_worker(args.paired_rounds, args.records, args.warmup)))
        return 0
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.records, args.warmup)))
        return 0
    if args.profile:
        os.environ.clear()
        os.environ.update(child_env(args.profile))
        profile_worker(args.profile, args.records, args.warmup)
        return 0
    if args.instructions:
        run_instructions(args.configs, args.records, min(args.warmup, 1_000))
        return 0
    started = time.perf_counter()
    results = collect(args.configs, args.reps, args.records, args.warmup)
    cross_check: list[str] = []
    if args.paired_rounds > 0:
        rounds, chunk = args.paired_rounds, args.paired_chunk
        times = spawn_worker(PAIRED, chunk, args.warmup // 5, "--paired-rounds", str(rounds))
        cross_check = paired_lines(times, rounds, chunk)
    report(summarise(results), args.reps, args.records, args.warmup, cross_check)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
