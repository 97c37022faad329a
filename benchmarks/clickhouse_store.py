"""The ClickHouse store next to the SQLite store on the same rows: ingest spans/s, lookup p50/p99, bytes per span.

A small-scale check (issue 21's groundwork), not the 1M-span target run: it starts a real 2-shard
cluster (``tests/clickhouse_cluster.py``, Debian's clickhouse-server), builds OTLP requests of
``--batch`` spans (``--spans-per-trace`` per trace, a request ID on each trace's root), decodes each
once with ``_otlp.span_rows`` and feeds the same rows to both stores, one request at a time (one
sender: what one replica's ingest costs per span, not the cluster's ceiling).  Then trace-by-ID and
request-ID lookups of random traces, and a shard stopped: what a lookup costs when its trace's shard
is up (the fallback path) and when it is down (the error).

    python benchmarks/clickhouse_store.py               # 100k spans (~1-2 min on a loaded 2-core box)
    python benchmarks/clickhouse_store.py --spans 10000 # smoke run

Printed for information; the exit code is 0.  Run it niced on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402

from benchmarks._common import render_table  # noqa: E402
from otel_corr.server._clickhouse import _SPAN_READ, ClickHouseStore, ShardUnavailable  # noqa: E402
from otel_corr.server._otlp import parse_spans, span_rows  # noqa: E402
from otel_corr.server._store import Store  # noqa: E402
from tests.clickhouse_cluster import ClickHouseCluster  # noqa: E402

BASE = 1_700_000_000_000_000_000


def _requests(spans: int, batch: int, per_trace: int, seed: int) -> tuple[list[bytes], list[bytes], list[str]]:
    """OTLP request bodies, and the trace IDs and request IDs they hold."""
    rng = random.Random(seed)
    bodies, traces, request_ids = [], [], []
    made = 0
    while made < spans:
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{made % 7}")))
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        for _ in range(batch // per_trace):
            trace = rng.randbytes(16)
            request_id = f"req-{uuid.UUID(bytes=rng.randbytes(16)).hex[:20]}"
            traces.append(trace)
            request_ids.append(request_id)
            start = BASE + made * 1_000_000
            for i in range(per_trace):
                span = ss.spans.add(
                    trace_id=trace,
                    span_id=(i + 1).to_bytes(8, "big"),
                    parent_span_id=i.to_bytes(8, "big") if i else b"",
                    name=f"GET /items/{i % 5}",
                    kind=2 if i == 0 else 1,
                    start_time_unix_nano=start + i * 1000,
                    end_time_unix_nano=start + i * 1000 + 700,
                )
                span.attributes.append(KeyValue(key="http.route", value=AnyValue(string_value=f"/items/{i % 5}")))
                if i == 0:
                    span.attributes.append(KeyValue(key="request.id", value=AnyValue(string_value=request_id)))
                made += 1
        bodies.append(request.SerializeToString())
    return bodies, traces, request_ids


def _ingest(store: Any, bodies: list[bytes], senders: int = 1) -> tuple[float, int]:
    """Spans per second through ``submit`` from ``senders`` threads, each waiting for its acknowledgement
    before sending again (decoding excluded: both stores get the rows decoded once)."""
    batches = [span_rows(parse_spans(b, "application/x-protobuf"), store.resource_id) for b in bodies]
    count = sum(len(b.rows) for b in batches)

    def send(batch: Any) -> None:
        store.submit(batch.rows, batch.resources).result(timeout=120)

    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, batches))
    return count / (time.perf_counter() - started), count


def _latency(call: Callable[[Any], object], keys: list[Any]) -> tuple[float, float]:
    times = []
    for key in keys:
        started = time.perf_counter()
        call(key)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="spans per OTLP request")
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders for the second ingest run")
    parser.add_argument("--writers", type=int, default=None, help="the store's writer threads (default: its own)")
    args = parser.parse_args()
    # The driver logs each refused connection with a traceback: expected once shard 2 is stopped.
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)

    bodies, traces, request_ids = _requests(args.spans, args.batch, args.spans_per_trace, seed=1)
    rng = random.Random(2)
    picks = rng.sample(range(len(traces)), min(args.lookups, len(traces)))
    with tempfile.TemporaryDirectory(prefix="otel-corr-ch-bench-") as tmp:
        root = Path(tmp)
        half = len(bodies) // 2
        sqlite = Store(root / "s.db")
        sqlite_rate, count = _ingest(sqlite, bodies[:half])
        sqlite_many, _ = _ingest(sqlite, bodies[half:], args.senders)
        count = sum(len(span_rows(parse_spans(b, "application/x-protobuf"), sqlite.resource_id).rows) for b in bodies)
        sqlite.flush()
        sqlite_trace = _latency(sqlite.trace, [traces[i] for i in picks])
        sqlite_request = _latency(sqlite.traces_for_request, [request_ids[i] for i in picks])
        sqlite.close()
        sqlite_bytes = sum(p.stat().st_size for p in root.glob("s.db*"))

        with ClickHouseCluster(root / "cluster") as cluster:
            store = ClickHouseStore(cluster.url, **({"writers": args.writers} if args.writers else {}))
            ch_rate, _ = _ingest(store, bodies[:half])
            ch_many, _ = _ingest(store, bodies[half:], args.senders)
            ch_trace = _latency(store.trace, [traces[i] for i in picks])
            entry = store._entry()
            distributed = _latency(
                lambda t: entry.execute(_SPAN_READ.format(table="otel_corr.spans", span=""), {"trace": t.hex()}),
                [traces[i] for i in picks],
            )
            ch_request = _latency(store.traces_for_request, [request_ids[i] for i in picks])
            ch_bytes = store.stats()["bytes"]
            # Asynchronous distributed inserts (spooled on the entry shard), into a second database.
            spooled = ClickHouseStore(cluster.url.replace("/otel_corr?", "/otel_corr_async?"))
            spooled.insert_settings = {"insert_distributed_sync": 0}
            async_rate, _ = _ingest(spooled, bodies[: max(1, half // 2)])
            spooled.close()

            cluster.stop_shard(2)
            up, down = [], []
            for i in picks[:60]:
                started = time.perf_counter()
                try:
                    store.trace(traces[i])
                    up.append((time.perf_counter() - started) * 1000)
                except ShardUnavailable:
                    down.append((time.perf_counter() - started) * 1000)
            cluster.start_shard(2)
            store.close()

    print(
        f"{count} spans in requests of {args.batch} ({args.spans_per_trace} per trace): half from one sender,"
        f" half from {args.senders}; 2 shards"
    )
    print(
        render_table(
            ["", "SQLite", "ClickHouse 2 shards", "ratio CH/SQLite"],
            [
                ["ingest spans/s, 1 sender", f"{sqlite_rate:,.0f}", f"{ch_rate:,.0f}", f"{ch_rate / sqlite_rate:.2f}"],
                [
                    f"ingest spans/s, {args.senders} senders",
                    f"{sqlite_many:,.0f}",
                    f"{ch_many:,.0f}",
                    f"{ch_many / sqlite_many:.2f}",
                ],
                *(
                    [label, f"{s[0]:.2f} / {s[1]:.2f}", f"{c[0]:.2f} / {c[1]:.2f}", f"{c[1] / s[1]:.1f} (p99)"]
                    for label, s, c in (
                        ("trace by ID p50/p99 ms", sqlite_trace, ch_trace),
                        ("request ID p50/p99 ms", sqlite_request, ch_request),
                    )
                ),
                [
                    "bytes per span",
                    f"{sqlite_bytes / count:.0f}",
                    f"{ch_bytes / count:.0f}",
                    f"{ch_bytes / sqlite_bytes:.2f}",
                ],
            ],
        )
    )
    print(
        f"async (spooled) distributed insert, 1 sender: {async_rate:,.0f} spans/s = {async_rate / ch_rate:.2f} x"
        " synchronous"
    )
    print(
        f"trace by ID through the Distributed table (not the store's path) p50/p99 ms:"
        f" {distributed[0]:.2f} / {distributed[1]:.2f} = {distributed[1] / ch_trace[1]:.1f} x the home shard's p99"
    )
    if up and down:
        print(
            f"shard 2 stopped: lookup of a trace on shard 1 (answered) median {statistics.median(up):.1f} ms;"
            f" on shard 2 (ShardUnavailable) median {statistics.median(down):.1f} ms"
        )


if __name__ == "__main__":
    main()
