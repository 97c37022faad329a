"""``otel-corr tail``: from the log call in an app to the line on screen, what is lost, what a follower costs ingest.

A real ``otel-corr serve`` (subprocess), a load generator that logs as an app does (``otel_corr.configure_logging``
+ ``otel_corr.instrument``: otel-corr's OTLP log handler, the SDK's ``BatchLogRecordProcessor`` and OTLP/HTTP
exporter), paced at R lines/s with its send time (``time.time_ns()`` at the log call) in each line, and
``otel-corr tail --json`` (subprocess) whose stdout this script reads as a terminal would.

Parts:

- ``latency``: p50/p95/p99 from the log call to the line read from the tail's stdout at 5,000 lines/s, with
  the SDK's default export delay (``OTEL_BLRP_SCHEDULE_DELAY`` 1000 ms) and with shorter ones.
- ``path``: the same, posting OTLP batches straight to serve (no app, no export batching): serve + tail alone.
- ``loss``: 10,000 lines/s for 60 s: lines logged vs lines the tail printed vs drops it was told about.
- ``ingest``: OTLP/HTTP log batches (512 records, protobuf) posted back to back, records/s acknowledged with no
  follower, one follower reading, and one stopped follower (SIGSTOP: a terminal that does not read).

Run: ``nice python benchmarks/tail.py`` (about 4 minutes), ``--quick`` (about 40 s, smaller counts).
Targets (from issue 20): p95 <= 250 ms at 5,000 lines/s; nothing lost at 10,000 lines/s for 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import REPO_DIR, child_env, package_versions, render_table, source_state
from tests.collector import free_port, wait_for_port

#: The load generator: logs ``bench <seq> <send ns>`` at RATE lines/s for SECONDS, as an app would.
_LOADGEN = r"""
import logging, os, sys, time
import otel_corr

otel_corr.configure_logging(stream=open(os.devnull, "w"))

async def app(scope, receive, send):  # stands for the user's app: instrument() sets up OTLP export
    pass

otel_corr.instrument(app)
log = logging.getLogger("bench")
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
total = int(rate * seconds)
start = time.monotonic()
sent = 0
while sent < total:
    due = min(total, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        log.info("bench %d %d", sent, time.time_ns())
        sent += 1
    time.sleep(0.001)
print(sent, flush=True)
"""


class Serve:
    def __init__(self, tmp: Path) -> None:
        self.port, self.http, self.grpc = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.otlp = f"http://127.0.0.1:{self.http}"
        argv = [sys.executable, "-m", "otel_corr", "serve", "--port", str(self.port), "--otlp-http-port"]
        self.db = tmp / f"t-{self.port}.db"
        argv += [str(self.http), "--otlp-grpc-port", str(self.grpc), "--db", str(self.db)]
        self.proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in (self.port, self.http, self.grpc):
            wait_for_port(port, self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def stored_logs(self) -> int:
        """Log records in the store (after :meth:`stop`): what reached the backend."""
        import sqlite3

        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])


class Reader:
    """``otel-corr tail --json`` and a thread reading its stdout: bench lines' latencies, drops told."""

    def __init__(self, url: str, *args: str) -> None:
        argv = [sys.executable, "-m", "otel_corr", "tail", "--json", "--url", url, *args]
        self.proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.latencies_ms: list[float] = []
        self.lines = 0
        self.dropped = 0
        assert self.proc.stderr is not None
        self.proc.stderr.readline()  # "otel-corr tail: following ...": subscribed
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            now = time.time_ns()
            event = json.loads(raw)
            if event["type"] == "dropped":
                self.dropped += event["count"]
            elif event["type"] == "log" and event["message"].startswith("bench "):
                self.lines += 1
                self.latencies_ms.append((now - int(event["message"].split()[2])) / 1e6)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        # SIGTERM, not SIGINT: started from a shell's background job, this script and its children ignore SIGINT.
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"(tail did not stop on SIGTERM within 30 s; killed; it had shown {self.lines:,} lines)")
            self.proc.kill()
            self.proc.wait(10)
        self.thread.join(10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def _load(serve: Serve, rate: float, seconds: float, **env: str) -> int:
    environ = {**child_env(), "OTEL_SERVICE_NAME": "bench", "OTEL_EXPORTER_OTLP_ENDPOINT": serve.otlp, **env}
    out = subprocess.run(
        [sys.executable, "-c", _LOADGEN, str(rate), str(seconds)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=seconds * 3 + 60,
        check=True,
    )
    return int(out.stdout.split()[-1])


def _settle(reader: Reader, expected: int, quiet_s: float = 3.0) -> None:
    """Wait until the reader has every line (or nothing came for ``quiet_s``)."""
    last, since = -1, time.monotonic()
    while reader.lines + reader.dropped < expected:
        if reader.lines != last:
            last, since = reader.lines, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.1)


def latency(tmp: Path, rate: float, seconds: float, delays: list[str]) -> list[list[str]]:
    rows = []
    for delay in delays:
        serve = Serve(tmp)
        reader = Reader(serve.url, "--service", "bench")
        try:
            env = {}
            if delay != "default":
                env["OTEL_BLRP_SCHEDULE_DELAY"], _, batch = delay.partition("/")
                if batch:
                    env["OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"] = batch
            sent = _load(serve, rate, seconds, **env)
            _settle(reader, sent)
            lat = reader.latencies_ms[int(len(reader.latencies_ms) * 0.1) :]  # the first 10 %: warm-up
            rows.append(
                [
                    "defaults (1000 ms, 512)" if delay == "default" else f"{delay.replace('/', ' ms, ')}",
                    f"{rate:,.0f}",
                    f"{sent:,}",
                    f"{reader.lines:,}",
                    f"{_pct(lat, 50):.0f}",
                    f"{_pct(lat, 95):.0f}",
                    f"{_pct(lat, 99):.0f}",
                    "PASS" if _pct(lat, 95) <= 250 else "MISS",
                ]
            )
        finally:
            reader.stop()
            serve.stop()
    return rows


def loss(tmp: Path, rate: float, seconds: float, delay: str, queue: str) -> list[str]:
    serve = Serve(tmp)
    reader = Reader(serve.url, "--service", "bench")
    env = {"OTEL_BLRP_SCHEDULE_DELAY": delay} | ({"OTEL_BLRP_MAX_QUEUE_SIZE": queue} if queue != "2048" else {})
    try:
        sent = _load(serve, rate, seconds, **env)
        _settle(reader, sent, quiet_s=5.0)
    finally:
        reader.stop()
        serve.stop()
    stored = serve.stored_logs()  # the load generator's lines, and a few lines of its own start-up
    return [
        f"{rate:,.0f}/s x {seconds:.0f} s (delay {delay} ms, queue {queue})",
        f"{sent:,}",
        f"{stored:,}",
        f"{reader.lines:,}",
        f"{reader.dropped:,}",
        f"{sent - reader.lines - reader.dropped:,}",
        "PASS" if reader.lines == sent else "MISS",
    ]


def backend_path(tmp: Path, rate: float, seconds: float, per_batch: int) -> list[str]:
    """Batches posted straight to OTLP/HTTP at ``rate`` records/s, each record carrying its post time: the
    latency of serve + tail alone, without the app's export batching."""
    serve = Serve(tmp)
    reader = Reader(serve.url, "--service", "bench")
    sent = 0
    try:
        start = time.monotonic()
        interval = per_batch / rate
        while time.monotonic() - start < seconds:
            body = _batch(per_batch, "bench", lambda i, base=sent: f"bench {base + i} {time.time_ns()}")
            req = urllib.request.Request(
                f"{serve.otlp}/v1/logs", data=body, headers={"content-type": "application/x-protobuf"}
            )
            with urllib.request.urlopen(req, timeout=60):
                pass
            sent += per_batch
            time.sleep(max(0.0, start + sent / rate - time.monotonic()))
        _settle(reader, sent)
        lat = reader.latencies_ms[int(len(reader.latencies_ms) * 0.1) :]
        return [
            f"{per_batch} records every {interval * 1000:.0f} ms",
            f"{rate:,.0f}",
            f"{sent:,}",
            f"{reader.lines:,}",
            f"{_pct(lat, 50):.0f}",
            f"{_pct(lat, 95):.0f}",
            f"{_pct(lat, 99):.0f}",
        ]
    finally:
        reader.stop()
        serve.stop()


def _batch(records: int, service: str = "ingest", body: Any = None) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    sl = rl.scope_logs.add()
    sl.scope.name = "bench"
    now = time.time_ns()
    for i in range(records):
        r = sl.log_records.add()
        r.time_unix_nano = now + i
        r.severity_number, r.severity_text = 9, "INFO"
        r.body.string_value = body(i) if body else f"ingest line {i} with some words to index like an app's message"
    return request.SerializeToString()  # type: ignore[no-any-return]


def ingest(tmp: Path, batches: int) -> list[list[str]]:
    body = _batch(512)
    rows = []
    base = None
    for mode in ("no follower", "1 follower reading", "1 follower stopped (SIGSTOP)"):
        serve = Serve(tmp)
        reader = None if mode == "no follower" else Reader(serve.url, "--service", "ingest")
        if reader is not None and "stopped" in mode:
            reader.proc.send_signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            acked = 0
            for _ in range(batches):
                req = urllib.request.Request(
                    f"{serve.otlp}/v1/logs", data=body, headers={"content-type": "application/x-protobuf"}
                )
                with urllib.request.urlopen(req, timeout=60) as response:
                    acked += 512 if response.status == 200 else 0
            elapsed = time.monotonic() - start
            per_s = acked / elapsed
            base = base or per_s
            rows.append([mode, f"{acked:,}", f"{elapsed:.1f}", f"{per_s:,.0f}", f"{per_s / base:.2f}"])
        finally:
            if reader is not None:
                reader.stop()
            serve.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument(
        "--loss-queues",
        default="2048,16384",
        help="the app's OTEL_BLRP_MAX_QUEUE_SIZE per loss row",
    )
    parser.add_argument("--parts", default="latency,path,loss,ingest", help="which parts, comma-separated")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    loss_seconds = 10.0 if args.quick else 60.0
    batches = 40 if args.quick else 200
    print(f"otel-corr tail benchmark; {source_state()}; cores: {len(os.sched_getaffinity(0))}")
    print(package_versions(["opentelemetry-sdk", "uvicorn", "starlette"]))
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "latency" in parts:
            print(f"\nlatency: log call -> line read from `otel-corr tail --json`, {seconds:.0f} s per row (ms)")
            rows = latency(tmp, 5000, seconds, ["default", "200", "100", "100/128"])
            headers = ["OTEL_BLRP_ delay, batch", "lines/s", "sent", "shown", "p50", "p95", "p99", "p95<=250"]
            print(render_table(headers, rows))
        if "path" in parts:
            print(f"\npath: OTLP/HTTP post -> line read from `otel-corr tail --json`, {seconds:.0f} s per row (ms)")
            rows = [backend_path(tmp, 5000, seconds, n) for n in (512, 100)]
            print(render_table(["posted", "lines/s", "sent", "shown", "p50", "p95", "p99"], rows))
        if "loss" in parts:
            print(f"\nloss: 10,000 lines/s for {loss_seconds:.0f} s, count in vs count out")
            rows = [loss(tmp, 10000, loss_seconds, "100", queue) for queue in args.loss_queues.split(",")]
            headers = ["load", "logged", "stored", "shown", "dropped (told)", "missing", "nothing lost"]
            print(render_table(headers, rows))
        if "ingest" in parts:
            print(f"\ningest: {batches} OTLP/HTTP batches of 512 log records, back to back")
            rows = ingest(tmp, batches)
            print(render_table(["followers", "records acked", "seconds", "records/s", "vs none"], rows))
    print(f"\n(checkout {REPO_DIR})")


if __name__ == "__main__":
    main()
