"""SIGTERM in the middle of a load: every request that got a response has its span and its log records at
the collector, and the server exits.  How long the exit takes against the documented bound is a
figure of ``benchmarks/stress.py shutdown``, not an assertion here (a timing assert fails on a loaded
machine and proves nothing on a quiet one).

The batch delays are 60 s, so what arrives was delivered by the shutdown flush (or by full batches),
never by the timer.  The bound (docs/usage.md, "Shutdown"): uvicorn finishes the requests in flight
(at most ``--timeout-graceful-shutdown`` seconds), then otel-corr's flush at lifespan shutdown waits
at most ``OTEL_CORR_SHUTDOWN_TIMEOUT`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ._load import Serve, app_env, delivered, request_ids, run_load, wait_for_workers

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT = 5.0
# uvicorn's own bound on finishing the requests in flight (without it, uvicorn waits for them forever).
GRACEFUL = 5.0


def test_sigterm_under_load_loses_nothing_that_was_answered(tmp_path: Path, start_uvicorn: Any) -> None:
    serve = Serve(tmp_path)
    env = app_env(
        serve.http_endpoint,
        tmp_path / "logs",
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_BLRP_SCHEDULE_DELAY="60000",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_CORR_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT),
    )
    try:
        server = start_uvicorn(
            env,
            "tests.apps.stress_app:app",
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--timeout-graceful-shutdown",
            str(int(GRACEFUL)),
        )
        # Both workers up (they import after the port opens; a load started before the second
        # listens goes to the first alone), then a first round of requests.
        wait_for_workers(server.url, 2)
        results = run_load(server.url, request_ids(200))
        warm = len(results)
        stop = threading.Event()
        ids = request_ids(50_000, start=warm)
        client = threading.Thread(
            target=lambda: results.extend(run_load(server.url, ids, first=warm, stop=stop)),
            daemon=True,
        )
        client.start()
        time.sleep(4)  # a few thousand requests in, the queues hold spans and records
        exit_code = server.sigterm(timeout=60)
        stop.set()
        client.join(60)
        answered = [r for r in results if r.status != -1]
        spans, logs, access = delivered(serve, len(answered), timeout=60)
    finally:
        serve.stop()

    print(f"answered {len(answered)} of {len(results)} sent")
    assert exit_code in (0, -15)
    assert len(answered) > 500, "the load should have been running when SIGTERM came"
    assert len(answered) < len(results), "SIGTERM should have come in the middle of the load"
    assert all(r.status == 200 for r in answered), Counter(r.status for r in answered)
    assert len({r.body["pid"] for r in answered if r.body}) == 2
    missing_spans = [r.sent for r in answered if spans[r.sent] != 1]
    missing_logs = [r.sent for r in answered if logs[r.sent] != 2 or access[r.sent] != 1]
    assert not missing_spans, f"{len(missing_spans)} of {len(answered)} answered requests have no span"
    assert not missing_logs, f"{len(missing_logs)} of {len(answered)} answered requests lack log records"
