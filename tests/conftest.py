"""Shared fixtures: an in-memory span capture for in-process tests, real servers for e2e ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .collector import Collector, free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


class Capture:
    """Spans finished through ``provider``, for in-process tests."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def one(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    """Every test starts and ends outside any span or request."""
    token = otel_context.attach(otel_context.Context())
    yield
    otel_context.detach(token)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "FASTAPI_OTEL")):
            monkeypatch.delenv(key)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path)
    yield c
    c.stop()


class Server:
    """A real server process on 127.0.0.1 with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._out = open(log, "w")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT)
        wait_for_port(port, self.proc)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sigterm(self, timeout: float = 30.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()


#: A program answering every GET with ``STATUS`` and the JSON ``BODY`` (given in its environment).
_ANSWERING = """
import http.server, os, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["BODY"].encode()
        self.send_response(int(os.environ["STATUS"]))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m otel_corr ARGS`` as a user runs it: this checkout's code, NO_COLOR and
    OTEL_CORR_URL from the test runner's environment dropped (``env`` sets them), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "otel_corr", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "OTEL_CORR_URL")}, **env},
    )


@contextmanager
def other_program(tmp: Path, status: int | None = None, body: str = "") -> Iterator[str]:
    """The URL of a program that is not otel-corr, on a free port of 127.0.0.1, stopped on exit: Python's
    ``http.server`` serving ``tmp`` (404 and HTML for an API path), or with ``status``, one answering every
    GET with that status and ``body``."""
    port = free_port()
    if status is None:
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    else:
        argv = [sys.executable, "-c", _ANSWERING, str(port)]
    env = {**os.environ, "STATUS": str(status), "BODY": body}
    other = subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, other)
        yield f"http://127.0.0.1:{port}"
    finally:
        other.terminate()
        other.wait(10)


def server_env(collector: Collector | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    if collector is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.http_endpoint
    env["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    env.update(extra)
    return env


@pytest.fixture
def start_uvicorn(tmp_path: Path) -> Iterator[object]:
    servers: list[Server] = []

    def start(env: dict[str, str], app: str = "tests.apps.fastapi_app:app", *args: str) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args]
        server = Server(argv, env, tmp_path / f"uvicorn-{port}.log", port)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[object]:
    servers: list[Server] = []

    def start(env: dict[str, str], app: str = "tests.apps.flask_app:app", *args: str) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", "1", *args]
        server = Server(argv, env, tmp_path / f"gunicorn-{port}.log", port)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
