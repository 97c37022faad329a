"""otel-corr serve killed with SIGKILL mid-ingest keeps every batch it acknowledged.

A real server process on a real file, senders posting real OTLP/HTTP protobuf bodies from
several threads (as several SDK exporters would), SIGKILL while they post, a restart on the
same file: the database must be intact and every span of every acknowledged batch must come
back from the Jaeger API.  Acknowledged means HTTP 200; what was in flight may or may not be
there, and nothing else is asserted about it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from ..collector import free_port, wait_for_port
from ..conftest import Server, server_env

pytestmark = pytest.mark.e2e

SENDERS = 4
TRACES_PER_BODY = 40
SPANS_PER_TRACE = 6  # 240 spans per body: a typical exporter batch


def _body(rng: random.Random, now_ns: int) -> tuple[bytes, dict[str, int]]:
    """One ExportTraceServiceRequest of fresh traces; returns it and {trace ID hex: spans}."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="durable")))
    ss = rs.scope_spans.add()
    ss.scope.name = "stress"
    traces: dict[str, int] = {}
    for _ in range(TRACES_PER_BODY):
        trace_id = rng.randbytes(16)
        parent = b""
        for i in range(SPANS_PER_TRACE):
            span = ss.spans.add(
                trace_id=trace_id,
                span_id=rng.randbytes(8),
                parent_span_id=parent,
                name=f"step {i}",
                kind=2 if i == 0 else 1,
                start_time_unix_nano=now_ns + i * 1000,
                end_time_unix_nano=now_ns + i * 1000 + 500,
            )
            span.attributes.append(KeyValue(key="request.id", value=AnyValue(string_value=f"req-{trace_id.hex()}")))
            parent = span.span_id
        traces[trace_id.hex()] = SPANS_PER_TRACE
    return request.SerializeToString(), traces


class Serve:
    """``otel-corr serve`` on fresh ports and a given store file."""

    def __init__(self, tmp: Path, db: Path, run: int) -> None:
        self.port, self.otlp, grpc = free_port(), free_port(), free_port()
        argv = [sys.executable, "-m", "otel_corr", "serve", "--db", str(db), "--retention", "0"]
        argv += ["--port", str(self.port), "--otlp-http-port", str(self.otlp), "--otlp-grpc-port", str(grpc)]
        self.server = Server(argv, server_env(None), tmp / f"serve-{run}.log", self.port)
        wait_for_port(self.otlp, self.server.proc)


def _send(otlp: int, seed: int, acked: dict[str, int], lock: threading.Lock, stop: threading.Event) -> None:
    """Post bodies until the server dies; record the traces of every body answered with 200."""
    rng = random.Random(seed)
    with httpx.Client(base_url=f"http://127.0.0.1:{otlp}", timeout=30) as client:
        while not stop.is_set():
            body, traces = _body(rng, time.time_ns())
            try:
                r = client.post("/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
            except httpx.HTTPError:
                return  # the server was killed: this body is not acknowledged
            if r.status_code == 200:
                with lock:
                    acked.update(traces)
            elif r.status_code == 503:
                time.sleep(0.02)  # back-pressure, as an exporter would back off
            else:
                raise AssertionError(f"HTTP {r.status_code}: {r.text[:200]}")


def _missing(port: int, acked: dict[str, int]) -> list[str]:
    """Acknowledged traces the Jaeger API does not return whole (asked 50 at a time)."""
    ids = sorted(acked)
    missing = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for i in range(0, len(ids), 50):
            chunk = ids[i : i + 50]
            data = client.get("/api/traces", params=[("traceID", t) for t in chunk]).json()
            found = {t["traceID"].rjust(32, "0"): len(t["spans"]) for t in data["data"]}
            missing += [t for t in chunk if found.get(t) != acked[t]]
    return missing


def test_sigkill_mid_ingest_loses_no_acknowledged_batch(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    acked: dict[str, int] = {}
    lock = threading.Lock()
    for run in range(3):
        serve = Serve(tmp_path, db, run)
        try:
            if run:  # the previous run's acknowledged traces survived the kill
                conn = sqlite3.connect(db)
                try:
                    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
                finally:
                    conn.close()
                assert _missing(serve.port, acked) == [], f"run {run}: acknowledged traces lost"
            before = len(acked)
            stop = threading.Event()
            senders = [
                threading.Thread(target=_send, args=(serve.otlp, run * 100 + i, acked, lock, stop), daemon=True)
                for i in range(SENDERS)
            ]
            for t in senders:
                t.start()
            # Kill at a random moment once batches are flowing, so some are queued or mid-commit.
            deadline = time.monotonic() + 30
            while len(acked) < before + 10 * TRACES_PER_BODY and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(random.uniform(0.05, 0.5))
            os.kill(serve.server.proc.pid, signal.SIGKILL)
            serve.server.proc.wait(10)
            stop.set()
            for t in senders:
                t.join(30)
            assert len(acked) >= before + 10 * TRACES_PER_BODY, "too few batches acknowledged before the kill"
            new = len(acked) - before
            print(
                f"kill {run + 1}: {new // TRACES_PER_BODY} batches ({new * SPANS_PER_TRACE} spans) acked, then SIGKILL"
            )
        finally:
            serve.server.stop()  # also when an assertion above failed: no server left behind
    final = Serve(tmp_path, db, 3)
    try:
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        assert _missing(final.port, acked) == [], "acknowledged traces lost"
        print(f"after 3 kills: integrity_check ok; {len(acked) * SPANS_PER_TRACE} acknowledged spans, all found")
        # and the request ID index agrees (the ID a customer quotes finds the trace)
        some = sorted(acked)[len(acked) // 2]
        r = httpx.get(f"http://127.0.0.1:{final.port}/api/traces/req-{some}", timeout=10)
        assert r.status_code == 200 and len(r.json()["data"][0]["spans"]) == SPANS_PER_TRACE
    finally:
        final.server.stop()
