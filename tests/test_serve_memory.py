"""Memory bounded by the limits, whatever the shape of the body: amplified bodies against a real serve.

A body of minimal spans decodes to 20-25 times its size: 16 MiB of them (under 1 MB gzipped)
took the server from 49 to 462 MB, four at once to 1.3 GB.  Here four such bodies (and four valid
ones at the span limit) arrive at once over OTLP/HTTP or gRPC; the server's peak RSS (VmHWM) must
stay under 300 MB, and the query API must answer while they are in flight.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ._wire import field
from .test_server import Backend

pytestmark = pytest.mark.e2e

PEAK_LIMIT_MB = 300
AMPLIFIED_SPANS = 322_637  # 16.45 MB of spans, under the 16 MiB body limit
AT_LIMIT_SPANS = 32_768  # the server's spans-per-request limit
START = 1_764_000_000_000_000_000


def _spans(count: int, seed: int) -> bytes:
    """An ExportTraceServiceRequest of ``count`` minimal valid spans (51 bytes each), one trace per 64 spans."""
    spans = []
    for i in range(count):
        trace_id = (seed << 64 | i // 64 | 1 << 120).to_bytes(16, "big")
        span = (
            b"\x0a\x10" + trace_id + b"\x12\x08" + (i + 1).to_bytes(8, "big") + b"\x2a\x01x"
            b"\x39" + START.to_bytes(8, "little") + b"\x41" + (START + 1000).to_bytes(8, "little")
        )
        spans.append(field(2, span))
    return field(1, field(2, b"".join(spans)))


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _in_flight(backend: Backend, send: Callable[[int], object]) -> tuple[list[object], list[float]]:
    """Four ``send(i)`` at once; meanwhile ``/api/services`` is asked every 50 ms (its latencies returned)."""
    results: list[object] = [None] * 4
    done = threading.Event()

    def run(i: int) -> None:
        try:
            results[i] = send(i)
        except Exception as exc:  # a refused connection is an answer too; kept for the assertion message
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    latencies = []
    with httpx.Client(timeout=30) as client:
        while any(t.is_alive() for t in threads):
            started = time.monotonic()
            assert client.get(f"{backend.url}/api/services").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.05)
    for t in threads:
        t.join()
    done.set()
    return results, latencies


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path, None, "--retention", "0")
    yield b
    if b.proc.poll() is None:
        b.stop()


def _http(backend: Backend, bodies: list[bytes]) -> Callable[[int], object]:
    def send(i: int) -> object:
        r = httpx.post(
            f"{backend.otlp}/v1/traces",
            content=bodies[i],
            headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
            timeout=120,
        )
        return r.status_code, r.headers.get("retry-after"), r.content[:300]

    return send


def test_four_amplified_gzip_bodies_are_refused_before_decoding(backend: Backend) -> None:
    """Four 0.9 MB gzip bodies of 322k spans each: 413 (too many spans) or 503, peak RSS <= 300 MB."""
    body = _spans(AMPLIFIED_SPANS, 1)
    assert len(body) > 16_000_000
    bodies = [gzip.compress(body, 6)] * 4
    assert len(bodies[0]) < 1_000_000
    results, latencies = _in_flight(backend, _http(backend, bodies))
    peak = _vm_hwm_mb(backend.proc.pid)
    assert peak <= PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    answers = [r for r in results if isinstance(r, tuple)]
    assert len(answers) == 4 and all(status in (413, 503) for status, _, _ in answers), results
    assert any(status == 413 and b"322637 spans in one request" in body for status, _, body in answers), results
    assert all(retry == "1" for status, retry, _ in answers if status == 503), results
    assert backend.get("/api/services").json()["data"] == []  # nothing stored
    print(f"\npeak RSS {peak:.0f} MB; /api/services meanwhile: {len(latencies)} answers, max {max(latencies):.3f} s")


def test_four_bodies_at_the_span_limit_share_the_budget(backend: Backend) -> None:
    """Four valid bodies of 32,768 minimal spans: each stored (200) or refused for later (503); peak <= 300 MB."""
    bodies = [gzip.compress(_spans(AT_LIMIT_SPANS, i + 1), 6) for i in range(4)]
    results, latencies = _in_flight(backend, _http(backend, bodies))
    peak = _vm_hwm_mb(backend.proc.pid)
    assert peak <= PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    statuses = [r[0] for r in results if isinstance(r, tuple)]
    assert len(statuses) == 4 and set(statuses) <= {200, 503} and 200 in statuses, results
    print(f"\npeak RSS {peak:.0f} MB; statuses {statuses}; /api/services max {max(latencies):.3f} s")


def test_four_amplified_grpc_exports_are_refused_before_decoding(backend: Backend) -> None:
    """The same four bodies over OTLP/gRPC: INVALID_ARGUMENT (too many spans) or UNAVAILABLE; peak <= 300 MB."""
    import grpc

    body = _spans(AMPLIFIED_SPANS, 1)
    channel = grpc.insecure_channel(
        f"127.0.0.1:{backend.grpc}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")

    def send(i: int) -> object:
        try:
            export(body, timeout=120)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
        return grpc.StatusCode.OK, ""

    try:
        results, _ = _in_flight(backend, send)
    finally:
        channel.close()
    peak = _vm_hwm_mb(backend.proc.pid)
    assert peak <= PEAK_LIMIT_MB, f"peak RSS {peak:.0f} MB"
    codes = {r[0] for r in results if isinstance(r, tuple)}
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE}, results
    assert any("322637 spans in one request" in str(r) for r in results), results
    assert backend.get("/api/services").json()["data"] == []
    print(f"\npeak RSS {peak:.0f} MB; {results}")


def _json_spans(count: int) -> bytes:
    return b'{"resourceSpans":[{"scopeSpans":[{"spans":[' + b",".join([b"{}"] * count) + b"]}]}]}"


def _protobuf_logs(count: int) -> bytes:
    return field(1, field(2, field(2, b"\x09" + bytes(8)) * count))  # records holding only time_unix_nano = 0


@pytest.mark.parametrize(
    ("path", "body", "ctype", "reason"),
    [
        ("/v1/traces", _json_spans(40_000), "application/json", "40000 spans in one request; the limit is 32768"),
        ("/v1/logs", _protobuf_logs(40_000), "application/x-protobuf", "40000 log records in one request"),
        ("/v1/traces", b" " * 6_000_000 + b"{}", "application/json", "the server decodes at most 160 MiB at once"),
    ],
    ids=["json-spans", "protobuf-logs", "json-over-the-budget"],
)
def test_other_shapes_over_the_limits_get_413_with_the_reason(
    backend: Backend, path: str, body: bytes, ctype: str, reason: str
) -> None:
    """JSON (which costs ~30x its size to parse) and log records are held to the same limits, with a reason."""
    from google.rpc import status_pb2

    r = backend.post(path, body, ctype)
    protobuf = r.headers["content-type"] == "application/x-protobuf"
    message = status_pb2.Status.FromString(r.content).message if protobuf else r.json()["message"]
    assert r.status_code == 413 and reason in message, message
    assert backend.post(path, b"{}", "application/json").status_code == 200  # and the next one is served
