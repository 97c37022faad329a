"""Page load time of one 500-span trace (with 1,000 log lines) in headless Chromium, against a real
``otel-corr serve``; and the endpoints view's query time on the same store.

Method: start ``otel-corr serve`` on free loopback ports with a fresh database, post one trace of
N spans across 5 services (and 2 log records per span) over OTLP/JSON, then open ``/trace/<id>`` in
Debian's Chromium (Playwright, executable_path) R times, each in a fresh page, and time from
navigation start to the last span row being rendered. Prints median and p95.

    python benchmarks/page_load.py [--spans 500] [--runs 10] [--db PATH-of-an-existing-store]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def _trace(n: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    trace = f"{random.getrandbits(128):032x}"
    now = time.time_ns()
    ids = [f"{random.getrandbits(64) | 1:016x}" for _ in range(n)]
    resource_spans, resource_logs = [], []
    for i, sid in enumerate(ids):
        parent = ids[(i - 1) // 3] if i else ""
        service = f"svc-{i % 5}"
        start = now + i * 100_000
        span = {
            "traceId": trace,
            "spanId": sid,
            "parentSpanId": parent,
            "name": f"GET /items/{{id}} #{i}",
            "kind": 2 if i % 2 == 0 else 3,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 5_000_000),
            "status": {"code": 2 if i % 50 == 0 else 0},
            "attributes": [{"key": f"k{j}", "value": {"stringValue": f"value {j}"}} for j in range(10)],
        }
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        resource_spans.append({"resource": resource, "scopeSpans": [{"scope": {"name": "bench"}, "spans": [span]}]})
        logs = [
            {
                "timeUnixNano": str(start + k * 1000),
                "severityText": "INFO",
                "severityNumber": 9,
                "body": {"stringValue": f"log line {k} of span {i}"},
                "traceId": trace,
                "spanId": sid,
            }
            for k in range(2)
        ]
        resource_logs.append({"resource": resource, "scopeLogs": [{"scope": {"name": "app"}, "logRecords": logs}]})
    return trace, {"resourceSpans": resource_spans}, {"resourceLogs": resource_logs}


def _post(url: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--db", help="use an existing store (e.g. one filled by benchmarks/backend.py)")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        print("needs Debian's chromium (apt-get install chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp())
    db = Path(args.db) if args.db else work / "page.db"
    ui, otlp, grpc = _free(), _free(), _free()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otel_corr",
            "serve",
            "--port",
            str(ui),
            "--otlp-http-port",
            str(otlp),
            "--otlp-grpc-port",
            str(grpc),
            "--db",
            str(db),
            "--retention",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(ui)
        trace, spans, logs = _trace(args.spans)
        _post(f"http://127.0.0.1:{otlp}/v1/traces", spans)
        _post(f"http://127.0.0.1:{otlp}/v1/logs", logs)
        time.sleep(1)
        timings, in_page = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            for _ in range(args.runs):
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{ui}/trace/{trace}")
                page.locator("#view[data-rendered]").wait_for()  # the CSP forbids eval-based waits
                page.locator(".span-row").nth(args.spans - 1).wait_for()
                timings.append((time.perf_counter() - t0) * 1000)
                in_page.append(float(page.evaluate("document.getElementById('view').dataset.rendered")))
                page.close()
            browser.close()
        q = []
        for _ in range(20):
            t0 = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{ui}/api/ui/endpoints?window=86400", timeout=120).read()
            q.append((time.perf_counter() - t0) * 1000)
        timings.sort()
        q.sort()
        print(f"trace page, {args.spans} spans + {2 * args.spans} log lines, {args.runs} loads in Chromium:")
        in_page.sort()
        print(
            "  in the page (navigation start -> waterfall and logs in the DOM):"
            f" median {statistics.median(in_page):.0f} ms, p95 {in_page[int(0.95 * (len(in_page) - 1))]:.0f} ms"
        )
        print(
            "  seen by the test driver (goto -> last row visible):"
            f" median {statistics.median(timings):.0f} ms, p95 {timings[int(0.95 * (len(timings) - 1))]:.0f} ms"
        )
        print(
            f"endpoints view query (window 24 h, store {db.name}): median {statistics.median(q):.0f} ms,"
            f" p95 {q[int(0.95 * (len(q) - 1))]:.0f} ms"
        )
    finally:
        server.terminate()
        server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
