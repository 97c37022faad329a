"""The search box (``find``) on the ClickHouse store next to the SQLite store, on the same rows: p50/p99 per query kind.

A small-scale check for issue 21 (the 1M-span run is ``benchmarks/backend.py --store clickhouse://...``'s):
it starts a real 2-shard cluster (``tests/clickhouse_cluster.py``), builds OTLP requests of spans spread
over the last 24 h (10 per trace, a request ID and a ``user.id`` on each root, an exception event on a
few) and log records (a few per trace, words from a small vocabulary, a rare word in a few), decodes
each request once and feeds the same rows to both stores.  Then each query kind runs ``--runs`` times
with a different word, user, trace or request ID each time:

- a common word over 24 h (in ~1 log line of 20), a rare word over 24 h (in ~10 lines in all),
- ``key=value`` (one user's ~20 traces), a word + ``service:``, a lone trace ID, a lone request ID.

    python benchmarks/clickhouse_find.py                          # 100k spans + 50k log records
    python benchmarks/clickhouse_find.py --spans 10000 --logs 5000 --runs 5   # smoke run

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

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402

from benchmarks._common import render_table  # noqa: E402
from otel_corr.server._clickhouse import ClickHouseStore  # noqa: E402
from otel_corr.server._otlp import decode_logs, parse_logs, parse_spans, span_rows  # noqa: E402
from otel_corr.server._search import parse  # noqa: E402
from otel_corr.server._store import Store  # noqa: E402
from tests.clickhouse_cluster import ClickHouseCluster  # noqa: E402

DAY_NS = 86_400 * 10**9
PER_TRACE = 10
WORDS = (
    "checkout cart payment inventory order shipping user session cache database query retry connection pool"
    " request response handler worker queue message publish consume started finished processing validated"
    " loaded saved updated deleted created found missing invalid accepted rejected pending scheduled"
).split()
COMMON = ["timeout", "declined", "throttled", "overloaded"]  # each in ~1 line of 20
RARE = [f"zx{i:03d}q" for i in range(40)]  # each in a few lines


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(
        key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )


def _data(spans: int, logs: int, now: int, seed: int) -> tuple[list[bytes], list[bytes], dict[str, list[Any]]]:
    """OTLP trace and log request bodies, and what the queries pick from."""
    rng = random.Random(seed)
    traces = spans // PER_TRACE
    logs_per_trace = max(1, logs // traces)
    span_bodies, log_bodies = [], []
    picks: dict[str, list[Any]] = {"trace": [], "request": [], "user": [], "rare": []}
    per_request = 50  # traces per OTLP request
    for first in range(0, traces, per_request):
        request = ExportTraceServiceRequest()
        log_request = ExportLogsServiceRequest()
        service = f"svc-{first // per_request % 7}"
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", service))
        ss = rs.scope_spans.add(scope={"name": "bench"})
        rl = log_request.resource_logs.add()
        rl.resource.attributes.append(_kv("service.name", service))
        sl = rl.scope_logs.add(scope={"name": "bench"})
        for t in range(first, min(first + per_request, traces)):
            trace_id = rng.randbytes(16)
            request_id = f"req-{rng.randbytes(8).hex()}"
            user = rng.randrange(traces // 20 + 1)
            start = now - DAY_NS + t * (DAY_NS // traces)  # oldest first, as they would arrive
            if rng.random() < 0.01:
                picks["trace"].append(trace_id)
                picks["request"].append(request_id)
            for i in range(PER_TRACE):
                span = ss.spans.add(
                    trace_id=trace_id,
                    span_id=(i + 1).to_bytes(8, "big"),
                    parent_span_id=i.to_bytes(8, "big") if i else b"",
                    name=f"GET /items/{i % 5}",
                    kind=2 if i == 0 else 1,
                    start_time_unix_nano=start + i * 1_000_000,
                    end_time_unix_nano=start + i * 1_000_000 + 700_000,
                )
                span.attributes.append(_kv("http.route", f"/items/{i % 5}"))
                if i == 0:
                    span.attributes.extend([_kv("request.id", request_id), _kv("user.id", user)])
                if rng.random() < 0.02:
                    event = span.events.add(time_unix_nano=start + i * 1_000_000 + 10, name="exception")
                    event.attributes.extend(
                        [
                            _kv("exception.type", "GatewayError"),
                            _kv("exception.message", " ".join(rng.sample(WORDS, 4))),
                        ]
                    )
            for k in range(logs_per_trace):
                words = rng.sample(WORDS, 6)
                if rng.random() < 0.05:
                    words[2] = rng.choice(COMMON)
                if rng.random() < 40 * 3 / logs:
                    words[3] = rng.choice(RARE)
                sl.log_records.add(
                    time_unix_nano=start + k * 100_000,
                    severity_number=9,
                    body=AnyValue(string_value=" ".join(words)),
                    trace_id=trace_id,
                    span_id=(k % PER_TRACE + 1).to_bytes(8, "big"),
                )
            picks["user"].append(user)
        span_bodies.append(request.SerializeToString())
        log_bodies.append(log_request.SerializeToString())
    return span_bodies, log_bodies, picks


def _ingest(store: Any, span_bodies: list[bytes], log_bodies: list[bytes]) -> None:
    for spans, logs in zip(span_bodies, log_bodies, strict=True):
        batch = span_rows(parse_spans(spans, "application/x-protobuf"), store.resource_id)
        records, _, _ = decode_logs(parse_logs(logs, "application/x-protobuf"))
        store.submit(batch.rows, batch.resources, records).result(timeout=120)


def _latency(store: Any, texts: list[str], now: int) -> tuple[float, float, float]:
    """p50, p99 ms and the mean number of results of ``texts`` run one after another."""
    times, found = [], []
    for text in texts:
        query = parse(text, now_ns=now)
        started = time.perf_counter()
        with store.budget(time.monotonic() + 30):
            result = store.find(query, limit=20)
        times.append((time.perf_counter() - started) * 1000)
        found.append(len(result.found))
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], statistics.mean(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--logs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30, help="queries of each kind")
    args = parser.parse_args()
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)
    now = time.time_ns()
    span_bodies, log_bodies, picks = _data(args.spans, args.logs, now, seed=1)
    rng = random.Random(2)
    n = args.runs
    kinds: list[tuple[str, Callable[[], str]]] = [
        ("common word, 24 h", lambda: f"{rng.choice(COMMON)} since:24h"),
        ("rare word, 24 h", lambda: f"{rng.choice(RARE)} since:24h"),
        ("key=value (user.id)", lambda: f"user.id={rng.choice(picks['user'])}"),
        ("word + service:, 24 h", lambda: f"{rng.choice(COMMON)} service:svc-{rng.randrange(7)} since:24h"),
        ("lone trace ID", lambda: rng.choice(picks["trace"]).hex()),
        ("lone request ID", lambda: rng.choice(picks["request"])),
    ]
    texts = {label: [make() for _ in range(n)] for label, make in kinds}
    with tempfile.TemporaryDirectory(prefix="otel-corr-ch-find-") as tmp:
        root = Path(tmp)
        sqlite = Store(root / "s.db")
        started = time.perf_counter()
        _ingest(sqlite, span_bodies, log_bodies)
        sqlite.flush()
        sqlite_ingest = time.perf_counter() - started
        results = {label: [_latency(sqlite, texts[label], now)] for label in texts}
        sqlite.close()
        with ClickHouseCluster(root / "cluster") as cluster:
            store = ClickHouseStore(cluster.url)
            started = time.perf_counter()
            _ingest(store, span_bodies, log_bodies)
            ch_ingest = time.perf_counter() - started
            for label in texts:
                _latency(store, texts[label][:2], now)  # warm: the first query of a kind reads its columns cold
                results[label].append(_latency(store, texts[label], now))
            stats = store.stats()
            store.close()
    print(
        f"{stats['spans']:,} spans + {stats['logs']:,} log records over 24 h; 2 shards; {n} queries per kind, limit 20"
        f" (ingest: SQLite {sqlite_ingest:.0f} s, ClickHouse {ch_ingest:.0f} s, one sender)"
    )
    rows = []
    for label, (s, c) in results.items():
        rows.append(
            [
                label,
                f"{s[0]:.1f} / {s[1]:.1f}",
                f"{c[0]:.1f} / {c[1]:.1f}",
                f"{c[0] / max(s[0], 0.01):.1f} / {c[1] / max(s[1], 0.01):.1f}",
                f"{s[2]:.1f} / {c[2]:.1f}",
            ]
        )
    print(
        render_table(
            ["query", "SQLite p50 / p99 ms", "ClickHouse p50 / p99 ms", "ratio CH/SQLite p50 / p99", "results S / CH"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
