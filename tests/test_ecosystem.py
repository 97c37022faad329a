"""Fitting the ecosystem: Sentry tags, Django (ASGI and WSGI), hypercorn's access log."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import otel_corr

from .collector import free_port, wait_for_port
from .conftest import ROOT, Capture


def test_sentry_events_carry_the_ids(capture: Capture) -> None:
    """An event captured in a request has request_id, transaction_id and trace_id tags (sentry's own transport)."""
    sentry_sdk = pytest.importorskip("sentry_sdk")
    from fastapi import FastAPI
    from sentry_sdk.transport import Transport

    events: list[dict[str, Any]] = []

    class Keep(Transport):  # type: ignore[misc]
        def capture_envelope(self, envelope: Any) -> None:
            event = envelope.get_event()
            if event is not None:
                events.append(event)

    app = FastAPI()

    @app.get("/oops")
    async def oops() -> dict[str, str]:
        sentry_sdk.capture_message("something odd")
        return {}

    otel_corr.instrument(app, tracer_provider=capture.provider)
    sentry_sdk.init(dsn="https://key@sentry.invalid/1", transport=Keep, default_integrations=False)
    try:
        import asyncio

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.get("/oops", headers={"X-Request-ID": "sentry-1"})

        r = asyncio.run(go())
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
    (event,) = [e for e in events if e.get("message") == "something odd"]
    assert event["tags"]["request_id"] == event["tags"]["transaction_id"] == "sentry-1"
    assert event["tags"]["trace_id"] == r.headers["traceresponse"].split("-")[1]


DJANGO_APP = """
import os, logging
from django.conf import settings
settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test-only",
                   MIDDLEWARE=[], INSTALLED_APPS=[], LOGGING_CONFIG=None)
import django
django.setup()
from django.http import JsonResponse
from django.urls import path
import otel_corr

def ids(request):
    i = otel_corr.current_ids()
    return JsonResponse({"trace_id": i.trace_id, "request_id": i.request_id,
                         "header": request.headers.get("X-Request-ID")})

def boom(request):
    raise RuntimeError("django boom")

urlpatterns = [path("ids", ids), path("boom", boom)]
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
asgi = otel_corr.instrument(get_asgi_application())
wsgi = otel_corr.instrument(get_wsgi_application())
"""


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_django_asgi_and_wsgi(tmp_path: Path, kind: str) -> None:
    """A real Django app under uvicorn (ASGI) and gunicorn (WSGI): the one-ID rule and IDs on a 500."""
    pytest.importorskip("django")
    (tmp_path / "djapp.py").write_text(DJANGO_APP)
    port = free_port()
    if kind == "asgi":
        argv = [sys.executable, "-m", "uvicorn", "djapp:asgi", "--port", str(port), "--host", "127.0.0.1"]
    else:
        argv = [sys.executable, "-m", "gunicorn", "djapp:wsgi", "--bind", f"127.0.0.1:{port}"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}", "OTEL_TRACES_EXPORTER": "none"}
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            uid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
            r = httpx.get(f"http://127.0.0.1:{port}/ids", headers={"X-Request-ID": uid})
            assert r.json() == {"trace_id": uid.replace("-", ""), "request_id": uid, "header": uid}
            assert r.headers["x-request-id"] == uid
            boom = httpx.get(f"http://127.0.0.1:{port}/boom", headers={"X-Request-ID": "dj-err"})
            assert boom.status_code == 500 and boom.headers["x-request-id"] == "dj-err"
        finally:
            proc.terminate()
            proc.wait(10)


HYPERCORN_APP = """
import sys, otel_corr
from fastapi import FastAPI
otel_corr.configure_logging(fmt="text", stream=sys.stdout)  # in the app module: hypercorn's workers import it
app = FastAPI()

@app.get("/")
async def root():
    return {}

app = otel_corr.instrument(app)
"""


@pytest.mark.e2e
def test_hypercorn_access_log_carries_the_request_id(tmp_path: Path) -> None:
    """Under hypercorn (whose own access line is written outside the request), our access line has the ID."""
    pytest.importorskip("hypercorn")
    (tmp_path / "hcapp.py").write_text(HYPERCORN_APP)
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_CORR_ACCESS_LOG": "true",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "hcapp:app"]
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            httpx.get(f"http://127.0.0.1:{port}/", headers={"X-Request-ID": "hc-req-1"})
            time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(10)
    text = (tmp_path / "server.log").read_text()
    assert re.search(r"\[hc-req-1\] otel_corr\.access: .*\"GET /\" 200", text), text


DISTRO_APP = """
from fastapi import FastAPI
import otel_corr
app = FastAPI()

@app.get("/hello")
async def hello():
    return {"request_id": otel_corr.current_ids().request_id}

otel_corr.instrument(app)
"""


@pytest.mark.e2e
def test_under_opentelemetry_instrument_and_the_distro(tmp_path: Path, collector: Any) -> None:
    """`opentelemetry-instrument uvicorn app:app` with the OpenTelemetry distro: one provider (the distro's),
    one server span with our request ID at a real collector.  Installs into a fresh venv, as a user would."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(ROOT), "opentelemetry-distro[otlp]", "fastapi", "uvicorn"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0:
        pytest.skip(f"cannot install the distro here: {pip.stderr.strip().splitlines()[-1:]}")
    (tmp_path / "distroapp.py").write_text(DISTRO_APP)
    port = free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": str(tmp_path),
        "OTEL_SERVICE_NAME": "distro-app",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    argv = [str(venv / "bin" / "opentelemetry-instrument"), "uvicorn", "distroapp:app", "--port", str(port)]
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            r = httpx.get(f"http://127.0.0.1:{port}/hello", headers={"X-Request-ID": "distro-1"})
            assert r.json() == {"request_id": "distro-1"}
            spans = collector.wait_for_spans(1, name="GET /hello")
        finally:
            proc.terminate()
            proc.wait(20)
    assert len(spans) == 1, (tmp_path / "server.log").read_text()[-2000:]
    (span,) = spans
    assert span.attributes["request.id"] == "distro-1"
    assert span.resource["service.name"] == "distro-app"
    assert "telemetry.auto.version" in span.resource  # the distro's provider, not a second one of ours
