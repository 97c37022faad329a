"""Stress figures for issue 9: isolation at load, collector faults, SIGTERM under load.

Every run starts ``uvicorn tests.apps.stress_app:app --workers 2`` on 127.0.0.1
(this checkout first on ``PYTHONPATH``), a real collector (``otel-corr serve`` on
a temporary SQLite file) and an asyncio client (aiohttp) with ``--concurrency``
connections, each request with its own ``X-Request-ID`` (UUIDs, upper-case
UUIDs, 32 hex digits, arbitrary strings in turn).  The app awaits, hops to a
thread and logs from both (JSON, one file per worker).

``isolation``   --requests (default 50,000) after --warmup (2,000): every
                response joined with its log lines and its stored span;
                mismatches by kind, 5xx, workers' RSS after warm-up and at the
                end, req/s, p50/p99.
``faults``      the same load three times side by side: ``healthy``;
                ``killed`` (collector SIGKILLed at 1/3 of the requests and
                restarted on its port at 2/3); ``blackhole`` (a TCP server
                that accepts and never answers).  p50/p99/max and their ratio
                to healthy; p99 inside the outage window; the otel-corr warning
                lines and the drop counts they report.  ``--reps`` repeats the
                three in turn; the table shows each repetition.
``shutdown``    SIGTERM after --seconds of load: answered requests, their
                spans and OTLP log records at the collector, exit time vs the
                bound (``OTEL_CORR_SHUTDOWN_TIMEOUT``).

The machine is shared: compare ratios within one invocation, not absolute numbers.

    python benchmarks/stress.py isolation --requests 50000
    python benchmarks/stress.py faults --requests 20000 --reps 2
    python benchmarks/stress.py shutdown --seconds 8
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import REPO_DIR, package_versions, render_table, source_state

sys.path.insert(0, str(REPO_DIR))

from tests.collector import free_port
from tests.conftest import Server
from tests.stress._load import (
    Blackhole,
    Result,
    Serve,
    app_env,
    check,
    delivered,
    percentile,
    read_log_lines,
    request_ids,
    rss_kb,
    run_load,
)

APP = "tests.apps.stress_app:app"


def start_server(workdir: Path, endpoint: str, **extra: str) -> Server:
    port = free_port()
    env = app_env(endpoint, workdir / "logs", OTEL_SERVICE_NAME="stress", **extra)
    argv = [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "2", "--log-level", "warning"]
    return Server(argv, env, workdir / "uvicorn.log", port)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def latency(results: list[Result]) -> tuple[float, float, float]:
    times = [r.seconds for r in results]
    return percentile(times, 0.50), percentile(times, 0.99), max(times, default=float("nan"))


def header(args: argparse.Namespace) -> None:
    print(f"# benchmarks/stress.py {args.command}  ({source_state()})")
    print(f"# {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"# {package_versions(['uvicorn', 'fastapi', 'opentelemetry-sdk', 'aiohttp'])}")


def isolation(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        work = Path(tmp)
        serve = Serve(work)
        server = start_server(work, serve.http_endpoint, OTEL_BSP_SCHEDULE_DELAY="500")
        try:
            ids = request_ids(args.warmup + args.requests)
            warm = run_load(server.url, ids[: args.warmup], concurrency=args.concurrency)
            pids = sorted({r.body["pid"] for r in warm if r.body})
            rss_start = {pid: rss_kb(pid) for pid in pids}
            began = time.perf_counter()
            results = run_load(server.url, ids[args.warmup :], first=args.warmup, concurrency=args.concurrency)
            elapsed = time.perf_counter() - began
            rss_end = {pid: rss_kb(pid) for pid in pids}
            served = Counter(r.body["pid"] for r in results if r.body)
            server.sigterm(60)
            stored = serve.wait_for(serve.span_count, len(ids), timeout=120)
            report = check([*warm, *results], read_log_lines(work / "logs"), serve.spans())
        finally:
            server.stop()
            serve.stop()
    p50, p99, worst = latency(results)
    print(f"\n## isolation: {args.requests} requests after {args.warmup} warm-up, concurrency {args.concurrency}\n")
    rows = [
        ["requests checked (warm-up + run)", str(report.requests)],
        ["responses 200", str(report.ok)],
        ["5xx", str(report.status_5xx)],
        ["failed (other status or error)", str(report.failed)],
        ["spans stored", str(stored)],
        ["mismatches (all kinds)", str(report.total_mismatches)],
        *[[f"  mismatch: {kind}", str(n)] for kind, n in sorted(report.mismatches.items())],
        ["req/s (run)", f"{len(results) / elapsed:.0f}"],
        ["p50 / p99 / max ms", f"{ms(p50)} / {ms(p99)} / {ms(worst)}"],
    ]
    for pid in pids:
        growth = (rss_end[pid] / rss_start[pid] - 1) * 100
        rows.append(
            [
                f"worker {pid} RSS start/end MB (growth)",
                f"{rss_start[pid] / 1024:.1f} / {rss_end[pid] / 1024:.1f} ({growth:+.2f} %), served {served[pid]}",
            ]
        )
    print(render_table(["figure", "value"], rows))
    for kind, example in report.examples.items():
        print(f"example {kind}: {example}")


def _fault_run(kind: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    work.mkdir()
    serve = Serve(work) if kind != "blackhole" else None
    hole = Blackhole() if kind == "blackhole" else None
    endpoint = serve.http_endpoint if serve else hole.endpoint  # type: ignore[union-attr]
    server = start_server(work, endpoint, OTEL_BSP_SCHEDULE_DELAY="200")
    window: list[float] = []
    try:
        run_load(server.url, request_ids(args.warmup), concurrency=args.concurrency)
        results: list[Result] = []

        def load() -> None:
            ids = request_ids(args.requests, start=args.warmup)
            results.extend(run_load(server.url, ids, first=args.warmup, concurrency=args.concurrency))

        thread = threading.Thread(target=load, daemon=True)
        thread.start()
        if kind == "killed" and serve is not None:
            time.sleep(args.outage_at)
            serve.kill()
            window.append(time.perf_counter())
            time.sleep(args.outage)
            serve.start()
            window.append(time.perf_counter())
        thread.join()
        began = time.perf_counter()
        server.sigterm(60)
        shutdown = time.perf_counter() - began
    finally:
        server.stop()
        if serve:
            serve.stop()
        if hole:
            hole.close()
    lines = read_log_lines(work / "logs")
    report = check(results, lines, None)
    ours = [line["message"] for line in lines if line.get("logger") == "otel_corr"]
    return {"results": results, "report": report, "ours": ours, "window": window, "shutdown": shutdown}


def faults(args: argparse.Namespace) -> None:
    rows = []
    notes = []
    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        for rep in range(args.reps):
            healthy_p50 = healthy_p99 = float("nan")
            for kind in ("healthy", "killed", "blackhole"):
                run = _fault_run(kind, args, Path(tmp) / f"{kind}-{rep}")
                results, report = run["results"], run["report"]
                p50, p99, worst = latency(results)
                if kind == "healthy":
                    healthy_p50, healthy_p99 = p50, p99
                outage = ""
                if len(run["window"]) == 2:
                    lo, hi = run["window"]
                    inside = [r for r in results if lo <= r.started <= hi]
                    outage = f"{ms(percentile([r.seconds for r in inside], 0.99))} (n={len(inside)})"
                warnings = [m for m in run["ours"] if " unreachable; " in m]
                resumed = [m for m in run["ours"] if " resumed; " in m]
                final = [m for m in run["ours"] if "still unreachable at shutdown" in m]
                rows.append(
                    [
                        f"{kind} #{rep + 1}",
                        str(report.ok),
                        str(report.status_5xx + report.failed),
                        str(report.total_mismatches),
                        ms(p50),
                        ms(p99),
                        ms(worst),
                        f"{p50 / healthy_p50:.2f}",
                        f"{p99 / healthy_p99:.2f}",
                        outage or "-",
                        f"{len(warnings)}/{len(resumed)}/{len(final)}",
                        f"{run['shutdown']:.1f}",
                    ]
                )
                notes.extend(f"{kind} #{rep + 1}: {m}" for m in run["ours"])
    print(
        f"\n## faults: {args.requests} requests per run after {args.warmup} warm-up, concurrency {args.concurrency};"
        f" killed: collector SIGKILLed {args.outage_at} s into the run, restarted {args.outage} s later\n"
    )
    print(
        render_table(
            [
                "run",
                "200",
                "failed",
                "mismatch",
                "p50 ms",
                "p99 ms",
                "max ms",
                "p50/healthy",
                "p99/healthy",
                "p99 in outage ms",
                "warn/resumed/final",
                "SIGTERM s",
            ],
            rows,
        )
    )
    print("\nevery otel_corr log line of the runs (expected: one warning per worker per outage, one resumed line):")
    for note in notes:
        print(f"  {note}")


def shutdown(args: argparse.Namespace) -> None:
    bound = float(args.shutdown_timeout)
    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        work = Path(tmp)
        serve = Serve(work)
        server = start_server(
            work,
            serve.http_endpoint,
            OTEL_BSP_SCHEDULE_DELAY="60000",
            OTEL_BLRP_SCHEDULE_DELAY="60000",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_CORR_SHUTDOWN_TIMEOUT=str(bound),
        )
        try:
            results = run_load(server.url, request_ids(args.warmup), concurrency=args.concurrency)
            stop = threading.Event()
            ids = request_ids(int(args.seconds * 2_000) + 20_000, start=args.warmup)  # more than it can send
            thread = threading.Thread(
                target=lambda: results.extend(
                    run_load(server.url, ids, first=args.warmup, concurrency=args.concurrency, stop=stop)
                ),
                daemon=True,
            )
            thread.start()
            time.sleep(args.seconds)
            began = time.perf_counter()
            server.sigterm(120)
            took = time.perf_counter() - began
            stop.set()
            thread.join(60)
            answered = [r for r in results if r.status != -1]
            spans, app_logs, access = delivered(serve, len(answered), timeout=120)
            ours = [line["message"] for line in read_log_lines(work / "logs") if line.get("logger") == "otel_corr"]
        finally:
            server.stop()
            serve.stop()
    rows = [
        ["requests sent", str(len(results))],
        ["answered (any status)", str(len(answered))],
        ["answered 200", str(sum(r.status == 200 for r in answered))],
        ["answered without their span", str(sum(spans[r.sent] != 1 for r in answered))],
        ["answered without their 2 app log records", str(sum(app_logs[r.sent] != 2 for r in answered))],
        ["answered without their access record", str(sum(access[r.sent] != 1 for r in answered))],
        ["exit after SIGTERM s", f"{took:.2f}"],
        ["bound: OTEL_CORR_SHUTDOWN_TIMEOUT s", f"{bound:.1f} (+ in-flight requests + process exit)"],
    ]
    print(f"\n## shutdown: SIGTERM after {args.seconds} s of load, concurrency {args.concurrency}, 60 s batch delays\n")
    print(render_table(["figure", "value"], rows))
    print("otel_corr log lines (a flush cut short by the bound says so):", ours or "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, requests in (("isolation", 50_000), ("faults", 15_000), ("shutdown", 0)):
        p = sub.add_parser(name)
        p.add_argument("--requests", type=int, default=requests)
        p.add_argument("--warmup", type=int, default=2_000)
        p.add_argument("--concurrency", type=int, default=64)
        if name == "faults":
            p.add_argument("--reps", type=int, default=1)
            p.add_argument("--outage-at", type=float, default=3.0, help="seconds into the run (default 3)")
            # longer than the exporter's 10 s of retries, or the SDK rides it out and nothing is lost
            p.add_argument("--outage", type=float, default=12.0, help="seconds the collector stays down (default 12)")
        if name == "shutdown":
            p.add_argument("--seconds", type=float, default=6.0)
            p.add_argument("--shutdown-timeout", type=float, default=5.0)
    args = parser.parse_args()
    header(args)
    {"isolation": isolation, "faults": faults, "shutdown": shutdown}[args.command](args)


if __name__ == "__main__":
    main()
