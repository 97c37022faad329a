"""The registry of process-wide changes: patches() lists them, uninstrument() undoes them.

The main test runs ``tests/apps/patches_probe.py`` in a fresh interpreter: a snapshot taken
before ``import otel_corr`` must equal the one taken after ``otel_corr.uninstrument()``, but for
the global providers the OpenTelemetry API lets be set only once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .collector import Collector

ROOT = Path(__file__).resolve().parent.parent
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#: What stays after uninstrument(): the API sets each global provider once per process.
STAYS = ["_logs.get_logger_provider()", "trace.get_tracer_provider()"]


def _run(code_or_path: str | Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = (
        [sys.executable, str(code_or_path)] if isinstance(code_or_path, Path) else [sys.executable, "-c", code_or_path]
    )
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "X_REQUEST_ID"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    collector = Collector(tmp_path_factory.mktemp("collector"))
    try:
        env = _env(
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.http_endpoint,
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_BSP_SCHEDULE_DELAY="100",
            OTEL_BLRP_SCHEDULE_DELAY="100",
            TRACEPARENT=TRACEPARENT,
            X_REQUEST_ID="from-parent",
        )
        done = _run(ROOT / "tests" / "apps" / "patches_probe.py", env)
        assert done.returncode == 0, done.stderr[-3000:]
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["collector_logs"] = [log.body for log in collector.wait_for_logs(lambda log: log.body == "work done")]
        return result
    finally:
        collector.stop()


def test_uninstrument_puts_the_interpreter_back(probe: dict[str, Any]) -> None:
    """After FastAPI, Flask and Celery were instrumented with every link on and used, uninstrument()
    leaves every patched attribute, the record factory, makeRecord, the propagator, sys.meta_path,
    the Celery/Flask/Sentry hooks, the root logger and the current context as they were before
    ``import otel_corr``: only the two global providers differ."""
    assert probe["differences"] == STAYS
    assert [row["target"] for row in probe["left"]] == [
        "the global LoggerProvider (opentelemetry._logs)",
        "the global TracerProvider (opentelemetry.trace)",
    ]
    assert not any(row["reversible"] for row in probe["left"])
    # concurrent.futures.process was first imported inside a request, through our import finder:
    # patched then, restored now.
    assert probe["imported_before"] is False
    assert probe["pool_submit"] == "concurrent.futures.process.ProcessPoolExecutor.submit"


def test_the_changes_were_really_in_use(probe: dict[str, Any]) -> None:
    """Every link carried the request's ID while instrumented (the snapshot test would pass trivially otherwise)."""
    first = probe["results"]["fastapi"]
    assert set(first) == {"here", "pool", "thread", "subprocess", "process", "background"}
    assert set(first.values()) == {first["here"]}
    assert probe["adopted"] == "from-parent"  # TRACEPARENT/X_REQUEST_ID adopted at import
    assert probe["results"]["seen_downstream"] == [first["here"]] * 3  # httpx, requests, aiohttp
    assert probe["results"]["flask"] == "probe-flask"
    assert "work done" in probe["collector_logs"]  # the OTLP log handler delivered to a real collector


def test_instrument_works_again_after_uninstrument(probe: dict[str, Any]) -> None:
    """A second instrument() re-installs everything, and a second uninstrument() undoes it again."""
    again = probe["again_fastapi"]
    assert again == dict.fromkeys(again, "probe-fastapi")
    assert probe["again_seen_downstream"] == ["probe-fastapi"] * 3
    assert probe["again"]["flask"] == "probe-flask"
    first = {row["target"] for row in probe["peak"]}
    # Not again: the context adopted at import (once per process), and the import finder
    # (everything it waited for is imported by now, so each patch went in at once).
    assert {row["target"] for row in probe["again_peak"]} == first - {
        "the current context (importing thread)",
        "sys.meta_path",
    }
    assert probe["again_differences"] == STAYS


def test_patches_lists_every_change_with_its_origin(probe: dict[str, Any]) -> None:
    """patches() named each change, with the otel-corr feature that made it."""
    rows = {row["target"]: row for row in probe["peak"]}
    expected = {
        "the current context (importing thread)": "propagation._process (OTEL_CORR_ADOPT_ENVIRONMENT)",
        "logging.setLogRecordFactory": "logging._stamp",
        "logging.Logger.makeRecord": "logging._stamp",
        "the global LoggerProvider (opentelemetry._logs)": "logging._otlp",
        "the root logger's handlers": "logging._otlp",
        "logging.basicConfig": "logging._otlp",
        "os.register_at_fork(after_in_child)": "logging._setup (configure_logging)",
        "atexit": "logging._setup (configure_logging)",
        "the global TracerProvider (opentelemetry.trace)": "_provider",
        "sentry_sdk.scope.global_event_processors": "_sentry",
        "the global propagator (opentelemetry.propagate)": "propagation._propagator",
        "concurrent.futures.thread.ThreadPoolExecutor.submit": "propagation._threads (propagate=threads)",
        "threading.Thread.start": "propagation._threads",
        "threading.Thread._bootstrap_inner": "propagation._threads",
        "subprocess.Popen.__init__": "propagation._process (propagate=subprocess)",
        "multiprocessing.process.BaseProcess.start": "propagation._process",
        "concurrent.futures.process.ProcessPoolExecutor.submit": "propagation._process",
        "sys.meta_path": "propagation._import_hooks",
        "starlette.background.BackgroundTask.__call__": "propagation._background",
        "httpx.Client._send_single_request": "propagation._http_clients (propagate=httpx)",
        "httpx.AsyncClient._send_single_request": "propagation._http_clients (propagate=httpx)",
        "requests.sessions.Session.send": "propagation._http_clients (propagate=requests)",
        "aiohttp.client.ClientSession.__init__": "propagation._http_clients (propagate=aiohttp)",
        "FastAPI 'FastAPI'": "_instrument",
        "Flask 'probe_flask'": "_instrument",
        "Celery 'probe_celery'": "_instrument",
        "the 'uvicorn.error' logger's filters": "asgi",
        "the 'hypercorn.error' logger's filters": "asgi",
        "the 'gunicorn.error' logger's filters": "wsgi",
        "the 'probe_flask' logger's filters": "_flask",
    }
    missing = {t: by for t, by in expected.items() if t not in rows or not rows[t]["installed_by"].startswith(by)}
    assert missing == {}
    assert any(t.startswith("celery.signals (") for t in rows)
    assert [t for t, row in rows.items() if not row["reversible"]] == [
        "the global LoggerProvider (opentelemetry._logs)",
        "the global TracerProvider (opentelemetry.trace)",
    ]


def test_import_alone_changes_nothing_but_the_adopted_context() -> None:
    """``import otel_corr`` with no TRACEPARENT in the environment makes no process-wide change:
    no at-exit hook (configure_logging's moved out of import), no finder, no factory, nothing listed.
    (The OpenTelemetry API is imported first: before 1.42 its importlib_metadata backport adds a finder.)"""
    code = (
        "import atexit, logging, sys, opentelemetry.context; n = atexit._ncallbacks(); meta = list(sys.meta_path); "
        "factory, make = logging.getLogRecordFactory(), logging.Logger.makeRecord; import otel_corr; "
        "print(atexit._ncallbacks() - n, sys.meta_path == meta, logging.getLogRecordFactory() is factory, "
        "logging.Logger.makeRecord is make, len(otel_corr.patches()))"
    )
    done = _run(code, _env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True", "True", "True", "0"]


@pytest.mark.parametrize("value", ["off", "false", "0", "no", "OFF"])
def test_adopt_environment_off_in_the_one_boolean_grammar(value: str) -> None:
    """Each false spelling turns adoption off (``off`` used to pass validation and be ignored)."""
    code = "import otel_corr; print(otel_corr.current_ids().request_id or '-', len(otel_corr.patches()))"
    done = _run(code, _env(TRACEPARENT=TRACEPARENT, X_REQUEST_ID="from-parent", OTEL_CORR_ADOPT_ENVIRONMENT=value))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["-", "0"]


def test_adopted_context_is_listed_and_undone() -> None:
    """The context adopted at import is a change like the others: listed, and detached by uninstrument()."""
    code = (
        "import otel_corr; a = otel_corr.current_ids().request_id; rows = otel_corr.patches(); "
        "otel_corr.uninstrument(); print(a, [r.target for r in rows], repr(otel_corr.current_ids().request_id))"
    )
    done = _run(code, _env(TRACEPARENT=TRACEPARENT, X_REQUEST_ID="from-parent", OTEL_CORR_ADOPT_ENVIRONMENT="on"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from-parent ['the current context (importing thread)'] ''"


def test_doctor_prints_the_changes_and_the_settings() -> None:
    """``otel-corr doctor`` instruments a stand-in and prints patches() and the resolved settings."""
    done = _run(
        "import sys; from otel_corr.cli import main; sys.exit(main(['doctor', '--json']))",
        _env(OTEL_TRACES_EXPORTER="none", OTEL_CORR_REQUEST_ID_HEADER="X-Correlation-ID"),
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    targets = [row["target"] for row in out["patches"]]
    assert "threading.Thread.start" in targets and "logging.setLogRecordFactory" in targets
    assert out["settings"]["header_name"] == "X-Correlation-ID"
    assert out["settings"]["traces_exporter"] == "none"
    text = _run(
        "import sys; from otel_corr.cli import main; sys.exit(main(['doctor']))", _env(OTEL_TRACES_EXPORTER="none")
    )
    assert text.returncode == 0, text.stderr
    assert "threading.Thread.start" in text.stdout and "propagation._threads" in text.stdout
    assert "header_name" in text.stdout


def test_doctor_reports_a_bad_setting() -> None:
    """A setting instrument() would refuse is refused by doctor too, naming it (exit status 2)."""
    done = _run(
        "import sys; from otel_corr.cli import main; sys.exit(main(['doctor']))",
        _env(OTEL_CORR_ADOPT_ENVIRONMENT="sometimes"),
    )
    assert done.returncode == 2
    assert "OTEL_CORR_ADOPT_ENVIRONMENT" in done.stderr


FALLBACKS = """
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import httpx
import otel_corr, otel_corr._compat as compat
from otel_corr._context import bound_request_id

if {public}:
    compat.THREAD_BOOTSTRAP = None
    compat.httpx_send = lambda cls: "send"
seen = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("X-Request-ID"))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()

class Worker(threading.Thread):  # overrides run(): the bootstrap path covers it, so must the fallback
    def run(self):
        self.got = otel_corr.current_ids().request_id

async def app(scope, receive, send):
    pass

otel_corr.instrument(app)
with bound_request_id("r-fallback"):
    worker = Worker(); worker.start(); worker.join()
    httpx.get(f"http://127.0.0.1:{{server.server_address[1]}}/")
outside = Worker(); outside.start(); outside.join()
targets = sorted(p.target for p in otel_corr.patches() if "Thread" in p.target or "httpx" in p.target)
otel_corr.uninstrument()
print(json.dumps([worker.got, outside.got, seen, targets]))
"""


@pytest.mark.parametrize("public", [False, True], ids=["private-shortcut", "public-fallback"])
def test_patch_targets_have_a_public_fallback(public: bool) -> None:
    """Without CPython's Thread._bootstrap_inner or httpx's Client._send_single_request, the public
    paths (the thread's own run(), Client.send) carry the request ID the same way."""
    done = _run(FALLBACKS.format(public=public), _env(OTEL_TRACES_EXPORTER="none"))
    assert done.returncode == 0, done.stderr
    got, outside, seen, targets = json.loads(done.stdout)
    assert (got, outside, seen) == ("r-fallback", "", ["r-fallback"])
    if public:
        assert targets == [
            "concurrent.futures.thread.ThreadPoolExecutor.submit",
            "httpx.AsyncClient.send",
            "httpx.Client.send",
            "threading.Thread.start",
        ]
    else:
        assert "threading.Thread._bootstrap_inner" in targets and "httpx.Client._send_single_request" in targets


def test_a_patch_wrapped_again_by_someone_else_is_left_in_place() -> None:
    """Undoing ours would remove theirs: the chain stays, still listed, with a warning."""
    code = """
import threading, otel_corr
async def app(scope, receive, send): pass
otel_corr.instrument(app)
ours = threading.Thread.start
def theirs(self): return ours(self)
threading.Thread.start = theirs
otel_corr.uninstrument()
print(threading.Thread.start is theirs, [p.target for p in otel_corr.patches() if "Thread" in p.target])
"""
    done = _run(code, _env(OTEL_TRACES_EXPORTER="none"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True ['threading.Thread.start']"
    assert "threading.Thread.start was changed again since otel-corr changed it" in done.stderr
