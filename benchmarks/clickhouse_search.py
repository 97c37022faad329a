"""Reads across shards on the ClickHouse store next to the SQLite store, on the same rows (issue 21).

A small-scale check, not the 1M-span target run (``backend.py --store clickhouse://`` is that):
it starts a real 2-shard cluster (``tests/clickhouse_cluster.py``), builds traces of a few services
over ``--hours`` (a SERVER root with an HTTP status, a user and an order ID; CLIENT/SERVER pairs
into other services; some errors with an exception event), decodes each request once and feeds
the same rows to both stores.  Then, for random windows of one hour:

- Jaeger's search, service + 1 h + one attribute (``user.id``: one user in ~1,000) on both stores,
  and on ClickHouse the alternative the store does not take: one query through the Distributed
  table with ``skip_unavailable_shards=1`` plus ``health()`` to know which shards answered;
- the page's list (``entries``), ``why``'s baseline (``recent_requests``), dependencies;
- bytes per span of each ClickHouse table (``system.parts``), the search copy included.

    python benchmarks/clickhouse_search.py               # 100k spans (~2 min on a loaded 2-core box)
    python benchmarks/clickhouse_search.py --spans 10000 # smoke run

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage  # noqa: E402

from benchmarks._common import render_table  # noqa: E402
from otel_corr.server._clickhouse import ClickHouseStore, kv_candidates  # noqa: E402
from otel_corr.server._otlp import parse_spans, span_rows  # noqa: E402
from otel_corr.server._store import Store  # noqa: E402
from tests.clickhouse_cluster import ClickHouseCluster  # noqa: E402

BASE = 1_700_000_000_000_000_000
HOUR = 3600 * 10**9
SERVICES = ("front", "orders", "stock", "pay", "mail", "auth", "search")


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(
        key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )


def _requests(spans: int, hours: int, seed: int) -> list[bytes]:
    """One OTLP request per service and ~50 traces, spans spread evenly over ``hours``."""
    rng = random.Random(seed)
    per_trace = 6
    traces = spans // per_trace
    step = hours * HOUR // max(1, traces)
    bodies: list[bytes] = []
    pending: dict[str, list[Any]] = {}

    def flush() -> None:
        for service, made in pending.items():
            request = ExportTraceServiceRequest()
            rs = request.resource_spans.add()
            rs.resource.attributes.extend([_kv("service.name", service), _kv("host.name", f"{service}-1")])
            ss = rs.scope_spans.add()
            ss.scope.name = "opentelemetry.instrumentation.fastapi"
            ss.spans.extend(made)
            bodies.append(request.SerializeToString())
        pending.clear()

    for t in range(traces):
        trace = rng.randbytes(16)
        start = BASE + t * step
        entry = SERVICES[t % 3]
        callee = SERVICES[3 + rng.randrange(4)]
        status = rng.choice((200, 200, 200, 200, 201, 404, 500))
        user = f"{rng.randrange(1000):06d}"
        for i, (service, kind, parent) in enumerate(
            ((entry, 2, 0), (entry, 3, 1), (callee, 2, 2), (callee, 1, 3), (callee, 3, 3), (entry, 1, 1))
        ):
            message = SpanMessage(
                trace_id=trace,
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=parent.to_bytes(8, "big") if parent else b"",
                name=f"GET /api/{service}/{i % 3}" if kind == 2 else f"{service} step {i}",
                kind=kind,
                start_time_unix_nano=start + i * 100_000,
                end_time_unix_nano=start + i * 100_000 + rng.randrange(1_000_000, 80_000_000),
            )
            message.attributes.extend(
                [
                    _kv("http.request.method", "GET"),
                    _kv("http.route", f"/api/{service}/{i % 3}"),
                    _kv("user.id", user),
                    _kv("order.id", f"{rng.randrange(10**8):08d}"),
                    _kv("http.response.status_code", status if kind == 2 else 200),
                    _kv("net.peer.port", 40000 + rng.randrange(20000)),
                ]
            )
            if status == 500 and i == 0:
                message.status.code = 2
                event = message.events.add(time_unix_nano=start + 10, name="exception")
                event.attributes.extend(
                    [_kv("exception.type", "GatewayError"), _kv("exception.message", f"upstream {callee} timed out")]
                )
            pending.setdefault(service, []).append(message)
        if t % 50 == 49:
            flush()
    flush()
    return bodies


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
    parser.add_argument("--hours", type=int, default=24, help="the time the spans cover")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)

    bodies = _requests(args.spans, args.hours, seed=1)
    rng = random.Random(2)
    end = BASE + args.hours * HOUR
    windows = [BASE + rng.randrange(max(1, (args.hours - 1))) * HOUR + rng.randrange(HOUR) for _ in range(args.queries)]
    searches = [
        {
            "service": SERVICES[rng.randrange(3)],
            "tags": {"user.id": f"{rng.randrange(1000):06d}"},
            "start_ns": w,
            "end_ns": w + HOUR,
        }
        for w in windows
    ]
    with tempfile.TemporaryDirectory(prefix="otel-corr-ch-search-") as tmp:
        root = Path(tmp)
        sqlite = Store(root / "s.db")
        with ClickHouseCluster(root / "cluster") as cluster:
            store = ClickHouseStore(cluster.url)
            count = 0
            pending: list[Any] = []
            for i, body in enumerate(bodies):
                sqlite_batch = span_rows(parse_spans(body, "application/x-protobuf"), sqlite.resource_id)
                ch_batch = span_rows(parse_spans(body, "application/x-protobuf"), store.resource_id)
                pending.append(sqlite.submit(sqlite_batch.rows, sqlite_batch.resources))
                pending.append(store.submit(ch_batch.rows, ch_batch.resources))
                count += len(ch_batch.rows)
                if i % 20 == 19:  # within both queues' bounds; inserts of ~6k spans (group commit)
                    for future in pending:
                        future.result(timeout=300)
                    pending.clear()
            for future in pending:
                future.result(timeout=300)
            sqlite.flush(300)
            store.flush(300)
            mismatches = sum(1 for s in searches[:50] if store.search(**s) != sqlite.search(**s))  # type: ignore[arg-type]
            results: list[tuple[str, tuple[float, float], tuple[float, float]]] = []

            def both(label: str, call: Callable[[Any, Any], object], keys: list[Any]) -> None:
                results.append(
                    (label, _latency(lambda k: call(sqlite, k), keys), _latency(lambda k: call(store, k), keys))
                )

            both("search service + 1 h + user.id", lambda s, q: s.search(**q), searches)
            both("search service + 1 h", lambda s, q: s.search(**{**q, "tags": None}), searches)
            both(
                "search service + 1 h + error=true", lambda s, q: s.search(**{**q, "tags": {"error": "true"}}), searches
            )
            both("entries, last hour (page list)", lambda s, w: s.entries(since_ns=w, until_ns=w + HOUR), windows)
            both("entries, all time", lambda s, w: s.entries(), windows[:50])
            both(
                "recent_requests (why baseline, 24 h)",
                lambda s, w: s.recent_requests("front", "GET /api/front/0", w - 23 * HOUR, 300, until_ns=w + HOUR),
                windows,
            )
            both("dependencies, 1 h", lambda s, w: s.dependencies(w, w + HOUR), windows[:50])
            both("endpoint_stats, 1 h", lambda s, w: s.endpoint_stats(end - HOUR), windows[:20])

            # The road not taken: one query through the Distributed table, skip_unavailable_shards,
            # then health() to know whether every shard answered.
            db = store.url.database

            def distributed(query: dict[str, Any]) -> object:
                kvs = [kv.hex() for kv in kv_candidates("user.id", query["tags"]["user.id"])]
                rows = store._entry().execute(
                    f"SELECT trace_id, max(start_ns) AS newest FROM {db}.spans_search"
                    " WHERE service = %(service)s AND start_ns >= %(start)s AND start_ns <= %(end)s"
                    " AND hasAny(attr_kv, arrayMap(x -> unhex(x), %(kvs)s))"
                    " GROUP BY trace_id ORDER BY newest DESC LIMIT 20",
                    {"service": query["service"], "start": query["start_ns"], "end": query["end_ns"], "kvs": kvs},
                    settings={"skip_unavailable_shards": 1},
                )
                store.health()
                return rows

            through_distributed = _latency(distributed, searches)
            parts = {}
            for shard in store.shards:
                for table, size in store._on(shard).execute(
                    "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE active AND database = %(db)s"
                    " GROUP BY table",
                    {"db": db},
                ):
                    parts[table.decode()] = parts.get(table.decode(), 0) + int(size)
            store.close()
        sqlite.close()
        sqlite_bytes = sum(p.stat().st_size for p in root.glob("s.db*"))

    print(f"{count} spans over {args.hours} h, {len(bodies)} requests, 2 shards; {args.queries} queries per row")
    print(f"search answers differing from SQLite's (first 50): {mismatches}")
    print(
        render_table(
            ["p50 / p99 ms", "SQLite", "ClickHouse 2 shards", "ratio CH/SQLite p99"],
            [
                [label, f"{s[0]:.2f} / {s[1]:.2f}", f"{c[0]:.2f} / {c[1]:.2f}", f"{c[1] / s[1]:.1f}"]
                for label, s, c in results
            ],
        )
    )
    fan_out = results[0][2]
    print(
        f"search service + 1 h + user.id through the Distributed table + health(): {through_distributed[0]:.2f} /"
        f" {through_distributed[1]:.2f} ms (p99 {through_distributed[1] / fan_out[1]:.2f} x the store's per-shard path)"
    )
    total = sum(parts.values())
    print(
        render_table(
            ["bytes per span", "ClickHouse"],
            [
                *([t, f"{b / count:.1f}"] for t, b in sorted(parts.items(), key=lambda p: -p[1])),
                ["all", f"{total / count:.1f}"],
            ],
        )
    )
    print(f"SQLite file + WAL: {sqlite_bytes / count:.1f} bytes per span ({total / sqlite_bytes:.2f} x for ClickHouse)")


if __name__ == "__main__":
    main()
