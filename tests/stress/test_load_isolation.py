"""Isolation at load: thousands of concurrent requests never see each other's IDs.

uvicorn with 2 workers, an asyncio client with 64 connections, each request with
its own ``X-Request-ID`` (UUIDs, 32 hex, arbitrary strings).  Every response is
joined with the JSON log lines both workers wrote and with the server span
``otel-corr serve`` stored.  The full-size run (50,000 requests) with its
figures is ``python benchmarks/stress.py isolation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ._load import Serve, app_env, check, read_log_lines, request_ids, rss_kb, run_load, wait_for_workers

pytestmark = pytest.mark.e2e

WARMUP, REQUESTS = 2_000, 8_000


def test_no_request_sees_another_requests_ids(tmp_path: Path, start_uvicorn: Any) -> None:
    """Header, body (loop and thread), every log line and the exported span agree for every request; no 5xx."""
    serve = Serve(tmp_path)
    logs = tmp_path / "logs"
    try:
        env = app_env(serve.http_endpoint, logs, OTEL_SERVICE_NAME="stress", OTEL_BSP_SCHEDULE_DELAY="500")
        server = start_uvicorn(env, "tests.apps.stress_app:app", "--workers", "2", "--log-level", "warning")
        wait_for_workers(server.url, 2)
        ids = request_ids(WARMUP + REQUESTS)
        warm = run_load(server.url, ids[:WARMUP])
        pids = {r.body["pid"] for r in warm if r.body}
        rss_before = {pid: rss_kb(pid) for pid in pids}
        results = run_load(server.url, ids[WARMUP:], first=WARMUP)
        rss_after = {pid: rss_kb(pid) for pid in pids}
        assert server.sigterm() in (0, -15)
        serve.wait_for(serve.span_count, WARMUP + REQUESTS, timeout=60)
        report = check([*warm, *results], read_log_lines(logs), serve.spans())
    finally:
        serve.stop()

    assert len(pids) == 2, f"both workers should have served requests: {pids}"
    assert report.requests == WARMUP + REQUESTS
    assert report.status_5xx == 0 and report.failed == 0, report
    assert report.total_mismatches == 0, (report.mismatches, report.examples)
    # A leak of even a few hundred bytes per request would show over thousands of requests.
    growth = {pid: rss_after[pid] / rss_before[pid] - 1 for pid in pids}
    assert all(g <= 0.05 for g in growth.values()), (rss_before, rss_after)
