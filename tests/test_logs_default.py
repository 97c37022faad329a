"""Log records go where the spans go, with nothing more set (OTEL_LOGS_EXPORTER's default, otlp).

The end-to-end tests run ``tests/apps/plain_app.py`` (``otel_corr.instrument(app)`` and nothing else)
under a real uvicorn, exporting to a real collector (rotel) with the default environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_corr import _settings

from .collector import Collector
from .conftest import server_env

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.plain_app:app"


def _order(server: Any) -> tuple[str, str]:
    """GET /orders/7; the trace and server-span IDs the response names (traceresponse)."""
    r = httpx.get(f"{server.url}/orders/7", headers={"X-Request-ID": "order-7"})
    assert r.status_code == 200
    _, trace_id, span_id, _ = r.headers["traceresponse"].split("-")
    return trace_id, span_id


@pytest.mark.e2e
def test_the_apps_log_line_arrives_under_its_span_with_nothing_set(collector: Collector, start_uvicorn: Any) -> None:
    """No OTEL_LOGS_EXPORTER: the warning the request logged reaches the collector with the request's trace and
    span IDs and its request ID; the debug line below the level does not; the app's stderr still shows the line."""
    env = server_env(collector, OTEL_BLRP_SCHEDULE_DELAY="100")
    assert "OTEL_LOGS_EXPORTER" not in env
    server = start_uvicorn(env, APP)
    trace_id, span_id = _order(server)
    (record,) = collector.wait_for_logs(lambda e: e.body == "order 7 held for review")
    assert (record.trace_id, record.span_id) == (trace_id, span_id)
    assert record.attributes["request.id"] == "order-7"
    assert record.severity == "WARN"
    (span,) = collector.wait_for_spans(1, trace_id=trace_id)
    assert span.span_id == span_id and span.name == "GET /orders/{order_id}"
    server.sigterm()
    assert not [e for e in collector.logs() if e.body == "fraud score computed"]
    # Python's last-resort handler still prints it: the OTLP handler on the root logger takes nothing away.
    assert "order 7 held for review" in server.output()


@pytest.mark.e2e
def test_none_sends_no_log_record(collector: Collector, start_uvicorn: Any) -> None:
    """OTEL_LOGS_EXPORTER=none: the span arrives, no log record does (checked after the shutdown flush)."""
    server = start_uvicorn(server_env(collector, OTEL_LOGS_EXPORTER="none", OTEL_BLRP_SCHEDULE_DELAY="100"), APP)
    trace_id, _ = _order(server)
    assert server.sigterm() in (0, -15)
    assert len(collector.wait_for_spans(1, trace_id=trace_id)) == 1
    assert collector.logs() == []
    assert "order 7 held for review" in server.output()


RESOLVED = [
    ({}, ["otlp"]),
    ({"OTEL_LOGS_EXPORTER": "none"}, []),
    ({"OTEL_LOGS_EXPORTER": " console "}, ["console"]),
    ({"OTEL_LOGS_EXPORTER": "otlp,console"}, ["otlp", "console"]),
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "console"}, []),
    ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "otlp"}, ["otlp"]),
    ({"OTEL_SDK_DISABLED": "true"}, []),
    ({"OTEL_SDK_DISABLED": "on", "OTEL_LOGS_EXPORTER": "otlp"}, []),
]


@pytest.mark.parametrize(("env", "expected"), RESOLVED, ids=[str(e) for e, _ in RESOLVED])
def test_where_log_records_go(env: dict[str, str], expected: list[str]) -> None:
    """Unset, OTEL_LOGS_EXPORTER follows the spans (otlp by default); set, it decides; a disabled SDK sends none."""
    assert _settings.logs_exporters(env) == expected


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {"PYTHONPATH": str(ROOT)} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=60)


HANDLERS = """
import json, logging
import otel_corr
from fastapi import FastAPI
{setup}
otel_corr.instrument(FastAPI())
print(json.dumps([type(h).__module__ + "." + type(h).__name__ for h in logging.getLogger().handlers]))
"""
OURS = "otel_corr.logging._otlp.OTLPHandler"


@pytest.mark.parametrize(
    ("env", "handlers"),
    [
        ({}, [OURS]),
        ({"OTEL_LOGS_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_the_handler_is_there_only_when_records_go_somewhere(env: dict[str, str], handlers: list[str]) -> None:
    """instrument() adds the OTLP handler by default; with log export off nothing is added (no cost at all)."""
    done = _run(HANDLERS.format(setup=""), OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == handlers


SDK_HANDLER = """
import logging
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
provider = LoggerProvider()
set_logger_provider(provider)
logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
"""
CONTRIB_HANDLER = """
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.instrumentation.logging import LoggingInstrumentor
set_logger_provider(LoggerProvider())
LoggingInstrumentor().instrument()
"""


@pytest.mark.parametrize(
    ("setup", "needs"),
    [(SDK_HANDLER, None), (CONTRIB_HANDLER, "opentelemetry.instrumentation.logging")],
    ids=["sdk", "contrib"],
)
def test_an_opentelemetry_logging_handler_already_there_is_not_doubled(setup: str, needs: str | None) -> None:
    """With the SDK's LoggingHandler, or contrib's LoggingInstrumentor (opentelemetry-instrument), already
    sending records, ours is not added: every record would reach the collector twice.  The SDK's case
    runs everywhere; contrib's where its package is installed (the ``bench`` extra)."""
    if needs:
        pytest.importorskip(needs)
    done = _run(HANDLERS.format(setup=setup), OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    (handler,) = json.loads(done.stdout.splitlines()[-1])
    assert handler.rsplit(".", 1)[1] == "LoggingHandler" and handler.startswith("opentelemetry.")


@pytest.mark.parametrize("call", ["otel_corr.configure_logging()", "otel_corr.instrument(FastAPI())"])
def test_an_unknown_logs_exporter_fails_at_start_up(call: str) -> None:
    """OTEL_LOGS_EXPORTER=otlp,otlpp: ConfigError naming the variable, the value and what it accepts, from
    instrument() and from configure_logging() alone (before: log export silently off there)."""
    code = f"""
import otel_corr
from fastapi import FastAPI
try:
    {call}
except otel_corr.ConfigError as exc:
    print("ConfigError:", exc)
"""
    done = _run(code, OTEL_LOGS_EXPORTER="otlp,otlpp")
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith("ConfigError:") and "OTEL_LOGS_EXPORTER" in message and "otlpp" in message, message
    assert all(name in message for name in ("otlp", "console", "none"))


BASIC_CONFIG = """
import logging, sys
import otel_corr
from fastapi import FastAPI
otel_corr.instrument(FastAPI())
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="CUSTOM %(levelname)s %(name)s: %(message)s")
logging.getLogger("myapp").info("hello info")
"""


@pytest.mark.e2e
def test_basic_config_after_instrument_still_configures_logging(collector: Collector) -> None:
    """instrument(app) then logging.basicConfig(level=INFO, format=...): the INFO line is printed in that format
    (before: basicConfig saw our OTLP handler on the root logger and did nothing), and still reaches the
    collector."""
    done = _run(BASIC_CONFIG, OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint, OTEL_BLRP_SCHEDULE_DELAY="100")
    assert done.returncode == 0, done.stderr
    assert "CUSTOM INFO myapp: hello info" in done.stdout.splitlines(), done.stdout + done.stderr
    collector.wait_for_logs(lambda e: e.body == "hello info")


DEBUG_APP = """
import logging, sys, time
import otel_corr
from fastapi import FastAPI
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")
otel_corr.instrument(FastAPI())
logging.getLogger("myapp").info("one line")
time.sleep(3)
"""


@pytest.mark.e2e
def test_debug_logging_does_not_feed_log_export_with_its_own_requests(collector: Collector) -> None:
    """basicConfig(DEBUG): the HTTP client's DEBUG lines about the export's own POSTs (urllib3, on the export
    thread) are not exported; before, each export logged a line that made the next export, forever."""
    done = _run(DEBUG_APP, OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint, OTEL_BLRP_SCHEDULE_DELAY="100")
    assert done.returncode == 0, done.stderr
    assert "/v1/logs" in done.stdout  # urllib3 did log the POSTs: they are printed, only not exported
    collector.wait_for_logs(lambda e: e.body == "one line")
    bodies = [e.body for e in collector.logs()]
    assert not [b for b in bodies if "/v1/" in b or "HTTP connection" in b], bodies


CELERY_SETUP = """
import json, logging
import otel_corr
from celery import Celery
{setup}
app = Celery("t", broker="memory://")
otel_corr.instrument(app)
app.log.setup(loglevel=logging.INFO)  # what a worker does at start: worker_hijack_root_logger empties root
print(json.dumps([type(h).__name__ for h in logging.getLogger().handlers]))
"""


@pytest.mark.parametrize("setup", ["otel_corr.configure_logging()", ""], ids=["configure_logging", "instrument_only"])
def test_celery_worker_logging_setup_keeps_the_otlp_handler(setup: str) -> None:
    """Celery's logging set-up (worker start) empties the root logger's handlers; the OTLP handler is put back
    (before: only configure_logging's handler was, and log export stopped silently)."""
    done = _run(CELERY_SETUP.format(setup=setup), OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "OTLPHandler" in json.loads(done.stdout.splitlines()[-1])


EXIT_WITHOUT_COLLECTOR = """
import atexit, logging
import otel_corr
from opentelemetry._logs import get_logger_provider
shut_down = []
atexit.register(lambda: print("provider shut down:", len(shut_down), flush=True))  # runs after ours (LIFO)
otel_corr.configure_logging()
provider = get_logger_provider()
real = provider.shutdown
provider.shutdown = lambda: (shut_down.append(1), real())[1]
logging.getLogger("myapp").warning("one line")
"""


def test_exit_without_a_collector_is_bounded_by_the_shutdown_timeout() -> None:
    """configure_logging(), a line, no collector: at exit our hook shuts the LoggerProvider down (once, not the
    SDK's own unbounded hook too), gives up after OTEL_CORR_SHUTDOWN_TIMEOUT saying so, and nothing answers
    "Shutdown called, ignoring Log." (before: the SDK's hook waited for the exporter's retries, then that line)."""
    # A collector that accepts the connection and never answers: the export hangs in every SDK version
    # (a refused connection gives up at once in some, leaving nothing to bound).
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        done = _run(
            EXIT_WITHOUT_COLLECTOR,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{silent.getsockname()[1]}",
            OTEL_CORR_SHUTDOWN_TIMEOUT="1",
        )
    assert done.returncode == 0, done.stderr
    assert "provider shut down: 1" in done.stdout
    assert "Shutdown called, ignoring" not in done.stderr
    assert "log records not exported within 1.0 s at exit (OTEL_CORR_SHUTDOWN_TIMEOUT)" in done.stderr
