"""Server process models: every worker exports its spans (uvicorn --workers, gunicorn + uvicorn workers,
with and without --preload), and flushes them when the server stops."""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx
import pytest

from .collector import Collector, free_port
from .conftest import Server, server_env

pytestmark = pytest.mark.e2e


def _spread(url: str) -> dict[str, int]:
    """Send requests on fresh connections until two different workers answered; request ID -> pid."""
    served: dict[str, int] = {}
    deadline = time.monotonic() + 40
    while len(set(served.values())) < 2 and time.monotonic() < deadline:
        with httpx.Client() as client:
            r = client.get(f"{url}/pid")
            served[r.headers["x-request-id"]] = r.json()["pid"]
    assert len(set(served.values())) == 2, served
    return served


def _check(collector: Collector, served: dict[str, int]) -> None:
    spans = collector.wait_for_spans(len(served), name="GET /pid", timeout=30)
    received = {s.attributes["request.id"] for s in spans}
    missing = {rid: pid for rid, pid in served.items() if rid not in received}
    assert not missing, f"spans never arrived from workers {sorted(set(missing.values()))}"


def test_uvicorn_workers(collector: Collector, start_uvicorn: Any) -> None:
    """uvicorn --workers 2 (spawned workers): spans from both, flushed at SIGTERM even with a 60 s batch delay."""
    server = start_uvicorn(
        server_env(collector, OTEL_BSP_SCHEDULE_DELAY="60000"), "tests.apps.workers_app:app", "--workers", "2"
    )
    served = _spread(server.url)
    server.sigterm()
    _check(collector, served)


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-import", "preload"])
def test_gunicorn_uvicorn_workers(collector: Collector, tmp_path: Any, preload: bool) -> None:
    """gunicorn -k uvicorn_worker.UvicornWorker -w 2, with and without --preload (the batch thread after fork)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "tests.apps.workers_app:app",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        *(["--preload"] if preload else []),
    ]
    server = Server(argv, server_env(collector, OTEL_BSP_SCHEDULE_DELAY="60000"), tmp_path / "gunicorn.log", port)
    try:
        served = _spread(server.url)
        assert server.sigterm() == 0
        _check(collector, served)
    finally:
        server.stop()
