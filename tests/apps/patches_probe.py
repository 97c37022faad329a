"""Run as a script by tests/test_patches.py: does uninstrument() put the interpreter back?

Takes a snapshot of everything otel-corr may change *before* ``import otel_corr``, instruments
a FastAPI, a Flask and a Celery app with everything on (Sentry initialised, logging configured,
OTLP logs on), exercises every propagation link once, calls ``otel_corr.uninstrument()``, takes
the snapshot again, then instruments and uninstruments once more.  Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing.process
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import celery
import celery.signals
import fastapi
import flask
import httpx
import requests
import sentry_sdk
import sentry_sdk.scope
import sentry_sdk.transport
from fastapi.testclient import TestClient
from opentelemetry import _logs, context, propagate, trace
from starlette.background import BackgroundTask

# --- the application as it is before otel-corr: Sentry on, three apps, a downstream server ----

EVENTS: list[Any] = []


class _Transport(sentry_sdk.transport.Transport):
    def capture_envelope(self, envelope: Any) -> None:
        EVENTS.append(envelope)


sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=_Transport)  # events stay in EVENTS

SEEN: list[str | None] = []  # the X-Request-ID each outbound call carried


class _Downstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name for it
        SEEN.append(self.headers.get("X-Request-ID"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


downstream = ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
threading.Thread(target=downstream.serve_forever, daemon=True).start()
DOWN = f"http://127.0.0.1:{downstream.server_address[1]}/"


def _ids() -> str:
    import otel_corr

    return otel_corr.current_ids().request_id


def _child_pid_and_id() -> str:
    return _ids()


fast = fastapi.FastAPI()
RESULTS: dict[str, Any] = {}


@fast.get("/work")
async def work(tasks: fastapi.BackgroundTasks) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor  # first import: through the import finder

    seen: dict[str, Any] = {"here": _ids()}
    with ThreadPoolExecutor(1) as pool:
        seen["pool"] = pool.submit(_ids).result()
    thread = threading.Thread(target=lambda: seen.__setitem__("thread", _ids()))
    thread.start()
    thread.join()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('X_REQUEST_ID'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    seen["subprocess"] = child.stdout.strip()
    with ProcessPoolExecutor(1) as processes:
        seen["process"] = processes.submit(_child_pid_and_id).result()
    await asyncio.to_thread(httpx.get, DOWN)
    await asyncio.to_thread(requests.get, DOWN)
    async with aiohttp.ClientSession() as session, session.get(DOWN) as response:
        await response.read()
    sentry_sdk.capture_message("inside a request")
    logging.getLogger("probe").info("work done")
    tasks.add_task(lambda: seen.__setitem__("background", _ids()))
    RESULTS["fastapi"] = seen
    return {"request_id": _ids()}


web = flask.Flask("probe_flask")


@web.get("/hello")
def hello() -> str:
    return _ids()


worker = celery.Celery("probe_celery", broker="memory://")
worker.conf.task_always_eager = True


@worker.task
def add(x: int, y: int) -> str:
    return _ids()


# --- the snapshot ------------------------------------------------------------------------------

OWNERS: list[Any] = [
    ThreadPoolExecutor,
    threading.Thread,
    subprocess.Popen,
    multiprocessing.process.BaseProcess,
    BackgroundTask,
    httpx.Client,
    httpx.AsyncClient,
    requests.Session,
    aiohttp.ClientSession,
    logging.Logger,
    logging.LogRecord,
    fastapi.FastAPI,
    flask.Flask,
    celery.Celery,
]
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "hypercorn.error",
    "celery",
    "probe_flask",  # the Flask app's logger
)


def snapshot() -> dict[str, Any]:
    """Every observable process-wide thing by identity (tuples: each item by identity)."""
    snap: dict[str, Any] = {}
    for owner in OWNERS:
        for name, value in vars(owner).items():
            snap[f"{owner.__module__}.{owner.__qualname__}.{name}"] = value
    snap["logging.getLogRecordFactory()"] = logging.getLogRecordFactory()
    snap["logging.basicConfig"] = logging.basicConfig
    snap["trace.get_tracer_provider()"] = trace.get_tracer_provider()
    snap["_logs.get_logger_provider()"] = _logs.get_logger_provider()
    snap["propagate.get_global_textmap()"] = propagate.get_global_textmap()
    snap["sys.meta_path"] = tuple(sys.meta_path)
    snap["context.get_current()"] = context.get_current()
    # Not atexit: CPython's count of callbacks does not go down on atexit.unregister().
    snap["sentry global event processors"] = tuple(sentry_sdk.scope.global_event_processors)
    for name in dir(celery.signals):
        signal = getattr(celery.signals, name)
        if isinstance(signal, celery.utils.dispatch.Signal):
            snap[f"celery.signals.{name}"] = tuple(r[1] for r in signal.receivers)
    snap["flask request_started receivers"] = tuple(flask.request_started.receivers)
    snap["flask got_request_exception receivers"] = tuple(flask.got_request_exception.receivers)
    root = logging.getLogger()
    snap["root handlers"] = tuple(root.handlers)
    snap["root level"] = root.level
    for name in SERVER_LOGGERS:
        lg = logging.getLogger(name)
        snap[f"logger {name}"] = (*lg.handlers, lg.propagate, lg.disabled)
        snap[f"logger {name} filters"] = tuple(lg.filters)
    snap["fastapi app: own build_middleware_stack"] = "build_middleware_stack" in vars(fast)
    snap["fastapi app: _telemetry"] = repr(sorted(getattr(fast, "_telemetry", {}).items()))  # FastAPI >= 0.16x
    snap["flask app: own wsgi_app"] = vars(web).get("wsgi_app")
    return snap


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(
            x is y or (isinstance(x, (int, str)) and x == y) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, (int, str)):
        return bool(a == b)
    return a is b


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    absent = object()
    return sorted(k for k in before.keys() | after.keys() if not _same(before.get(k, absent), after.get(k, absent)))


BEFORE = snapshot()
IMPORTED_BEFORE = "concurrent.futures.process" in sys.modules

import otel_corr  # noqa: E402 - after the snapshot, which is the point

ADOPTED = otel_corr.current_ids().request_id  # TRACEPARENT/X_REQUEST_ID in our environment


def instrument_everything() -> dict[str, Any]:
    otel_corr.configure_logging(fmt="json", stream=sys.stderr)
    otel_corr.instrument(fast)
    otel_corr.instrument(web)
    otel_corr.instrument(worker)
    out: dict[str, Any] = {}
    with TestClient(fast) as client:
        response = client.get("/work", headers={"X-Request-ID": "probe-fastapi"})
        out["fastapi_status"] = response.status_code
    with web.test_client().get("/hello", headers={"X-Request-ID": "probe-flask"}) as reply:  # closed: span ends
        out["flask"] = reply.get_data(as_text=True)
    with otel_corr._context.bound_request_id("probe-celery"):
        out["celery"] = add.delay(1, 2).get()
    return out


RESULTS.update(instrument_everything())
RESULTS["seen_downstream"] = list(SEEN)
FIRST = json.loads(json.dumps(RESULTS))
RESULTS["sentry_tags"] = [
    item.payload.json.get("tags", {}) for envelope in EVENTS for item in envelope.items if item.payload.json
]
PEAK = [p._asdict() for p in otel_corr.patches()]
otel_corr.flush(5)

otel_corr.uninstrument()
AFTER = snapshot()
LEFT = [p._asdict() for p in otel_corr.patches()]

from concurrent.futures import ProcessPoolExecutor  # noqa: E402

submit = vars(ProcessPoolExecutor)["submit"]

# Again: instrument, exercise, undo.
SEEN.clear()
AGAIN = instrument_everything()
AGAIN_PEAK = [p._asdict() for p in otel_corr.patches()]
otel_corr.uninstrument()
AFTER_AGAIN = snapshot()

print(
    json.dumps(
        {
            "imported_before": IMPORTED_BEFORE,
            "adopted": ADOPTED,
            "results": FIRST,
            "peak": PEAK,
            "left": LEFT,
            "differences": differences(BEFORE, AFTER),
            "pool_submit": f"{submit.__module__}.{submit.__qualname__}",
            "again": AGAIN,
            "again_fastapi": RESULTS["fastapi"],
            "again_seen_downstream": list(SEEN),
            "again_peak": AGAIN_PEAK,
            "again_differences": differences(BEFORE, AFTER_AGAIN),
            "context_after_again": repr(dict(context.get_current())),
        }
    )
)
