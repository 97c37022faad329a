"""Issue 21's faults, on a real two-shard ClickHouse cluster behind real ``otel-corr serve`` replicas.

- A shard stopped during ingest: a batch it should hold is refused (OTLP/HTTP 503 with the reason,
  OTLP/gRPC UNAVAILABLE), every batch acknowledged meanwhile is stored, and once the shard is back a
  retry of each refused batch is stored and read once.
- A shard stopped during queries: a lookup whose key lives on it is a 503 naming the shard (every face:
  Jaeger v1 and v3, the page, the CLI); a read across shards answers with the live shard's part and
  says that part is missing (Jaeger's ``errors``, a response header, the page's ``missing``, a CLI line).
- A replica killed (SIGKILL) while it ingests: the other keeps ingesting and answering, and everything
  either acknowledged is there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from ._stores import Serve, clickhouse_serve, shard_of, small_trace
from .clickhouse_cluster import MISSING, ClickHouseCluster, find_server
from .conftest import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(find_server() is None, reason=MISSING)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClickHouseCluster]:
    with ClickHouseCluster(tmp_path / "clickhouse") as running:
        yield running


@pytest.fixture
def replicas(tmp_path: Path, cluster: ClickHouseCluster) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    try:
        for number in (1, 2):
            started.append(clickhouse_serve(tmp_path, f"replica-{number}", cluster.url_via(number)))
        yield started
    finally:
        for serve in started:
            serve.stop()


def _placed(cluster: ClickHouseCluster, traces: list[bytes]) -> dict[int, list[bytes]]:
    """Which shard holds each trace, asked of each shard's own table."""
    return {
        shard.number: [t for t in traces if shard_of(shard.address, cluster.database, t)] for shard in cluster.shards
    }


def _whole(serve: Serve, trace: bytes) -> None:
    """The trace reads back whole and once: its three spans and its log line."""
    response = serve.get(f"/api/ui/trace/{trace.hex()}")
    assert response.status_code == 200, (serve.name, trace.hex(), response.text[:300])
    body = response.json()
    assert len(body["spans"]) == 3 and len(body["logs"]) == 1, (serve.name, body)


def test_a_shard_down_refuses_what_it_should_hold_and_a_retry_is_stored_once(
    cluster: ClickHouseCluster, replicas: list[Serve]
) -> None:
    serve = replicas[0]  # enters the cluster through shard 1, which stays up
    cluster.stop_shard(2)
    acknowledged: list[bytes] = []
    refused: list[tuple[str, bytes, bytes, bytes]] = []
    for i in range(12):
        name = f"ingest-{i}"
        trace, spans, logs = small_trace(name)
        response = serve.post("traces", spans)
        if response.status_code == 200:
            assert serve.post("logs", logs).status_code == 200  # its trace's shard is up
            acknowledged.append(trace)
            continue
        # Refused, with the reason and when to retry: a sender's log says why, not only "busy".
        assert response.status_code == 503, response.text
        assert response.headers.get("retry-after") and "not stored" in response.text, (response.headers, response.text)
        refused.append((name, trace, spans, logs))
    assert refused

    # OTLP/gRPC says UNAVAILABLE (an exporter retries it), with the reason.
    with pytest.raises(grpc.RpcError) as failed:
        serve.export_grpc("traces", refused[0][2])
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE and "not stored" in failed.value.details()

    cluster.start_shard(2)
    # Everything acknowledged while the shard was down is stored (whole: spans and the log line,
    # whose acknowledgement came after its trace's).
    for trace in acknowledged:
        response = serve.get(f"/api/ui/trace/{trace.hex()}")
        assert response.status_code == 200 and len(response.json()["spans"]) == 3, trace.hex()
    # The senders retry what was refused: stored now, and read once however many tries reached a shard.
    for _, trace, spans, logs in refused:
        assert serve.post("traces", spans).status_code == 200
        assert serve.post("logs", logs).status_code == 200
        for replica in replicas:
            _whole(replica, trace)
    # Once in every read: by request ID, and in a search across shards (a refused insert may have
    # written another shard's part before the retry wrote it again).
    for name, trace, _, _ in refused:
        (found,) = serve.get(f"/api/traces/req-{name}").json()["data"]
        assert found["traceID"].rjust(32, "0") == trace.hex() and len(found["spans"]) == 3
    listed = [t["traceID"].rjust(32, "0") for t in serve.get("/api/traces", service="shop", limit="50").json()["data"]]
    assert sorted(listed) == sorted(t.hex() for t in [*acknowledged, *(r[1] for r in refused)])
    # Every trace the stopped shard holds now was refused while it was down: nothing was taken
    # (acknowledged) for a shard that could not store it.
    on = _placed(cluster, [r[1] for r in refused] + acknowledged)
    assert on[2] and not set(on[2]) & set(acknowledged), on


def test_a_shard_down_during_queries_is_said_by_every_face(
    cluster: ClickHouseCluster, replicas: list[Serve], tmp_path: Path
) -> None:
    serve = replicas[0]
    traces = []
    for i in range(10):
        trace, spans, logs = small_trace(f"query-{i}")
        assert serve.post("traces", spans).status_code == 200
        assert serve.post("logs", logs).status_code == 200
        traces.append(trace)
    on = _placed(cluster, traces)
    assert on[1] and on[2], on
    cluster.stop_shard(2)
    shard2 = cluster.shards[1].address
    named = f"shard 2 ({shard2})"

    # A keyed lookup on the live shard is whole; on the down shard, a 503 naming it, on every face.
    _whole(serve, on[1][0])
    down = on[2][0].hex()
    for path, reason in (
        (f"/api/traces/{down}", lambda b: b["errors"][0]["msg"]),
        (f"/api/v3/traces/{down}", lambda b: b["error"]["message"]),
        (f"/api/ui/trace/{down}", lambda b: b["error"]),
        (f"/api/ui/why/{down}", lambda b: b["error"]),
        (f"/api/traces/req-query-{traces.index(on[2][0])}", lambda b: b["errors"][0]["msg"]),
    ):
        response = serve.get(path)
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        assert named in reason(response.json()), (path, response.text[:300])
    cli = run_cli("trace", down, "--url", serve.url)
    assert cli.returncode == 3 and named in cli.stderr, (cli.returncode, cli.stderr)

    # A read across shards: the live shard's part, and the missing shard said; also by the replica
    # whose URL names the stopped shard (a load balancer may send the user there).
    live = {t.hex() for t in on[1]}
    for replica in replicas:
        services = replica.get("/api/services")
        assert services.status_code == 200 and services.json()["data"] == ["shop"], (replica.name, services.text)
        (warning,) = services.json()["errors"]
        assert named in warning["msg"], warning
        assert named in services.headers.get("x-otel-corr-missing", ""), dict(services.headers)
        rows = replica.get("/api/ui/requests")
        assert rows.status_code == 200 and {r["trace_id"] for r in rows.json()["rows"]} == live, replica.name

    # api_v3 has no field for it: the header says it.
    v3 = serve.get("/api/v3/services")
    assert v3.status_code == 200 and v3.json()["services"] == ["shop"], v3.text[:300]
    assert named in v3.headers.get("x-otel-corr-missing", ""), dict(v3.headers)

    found = serve.get("/api/traces", service="shop", limit="50")
    assert found.status_code == 200, found.text[:300]
    assert {t["traceID"].rjust(32, "0") for t in found.json()["data"]} == live
    assert named in found.json()["errors"][0]["msg"]

    rows = serve.get("/api/ui/requests")
    assert rows.status_code == 200, rows.text[:300]
    assert {r["trace_id"] for r in rows.json()["rows"]} == live
    assert [m["shard"] for m in rows.json()["missing"]] == [2], rows.json()["missing"]

    search = serve.get("/api/search", q="looked up")
    assert search.status_code == 200, search.text[:300]
    assert {r["trace_id"] for r in search.json()["results"]} == live
    assert [m["shard"] for m in search.json()["missing"]] == [2], search.json()

    cli = run_cli("find", "looked", "up", "--url", serve.url)
    assert cli.returncode == 0, cli.stderr
    assert f"warning: {named}" in cli.stderr and "incomplete" in cli.stderr, cli.stderr
    assert all(t in cli.stdout for t in live), cli.stdout

    # why on a live trace: its comparison with normal reads every shard, and says one was missing.
    why = serve.get(f"/api/ui/why/{on[1][0].hex()}")
    assert why.status_code == 200 and named in why.json()["warning"], why.text[:300]
    cli = run_cli("why", on[1][0].hex(), "--url", serve.url)
    assert cli.returncode == 0 and f"warning: {named}" in cli.stderr, (cli.returncode, cli.stderr)

    endpoints = serve.get("/api/ui/endpoints")
    assert endpoints.status_code == 200 and [m["shard"] for m in endpoints.json()["missing"]] == [2]
    assert sum(e["count"] for e in endpoints.json()["endpoints"]) == len(live)

    # The shard back: whole answers again, no warning.
    cluster.start_shard(2)
    assert serve.get("/api/services").json()["errors"] is None
    assert len(serve.get("/api/traces", service="shop", limit="50").json()["data"]) == len(traces)


def test_a_replica_killed_mid_ingest_loses_nothing_it_acknowledged(
    cluster: ClickHouseCluster, replicas: list[Serve]
) -> None:
    doomed, survivor = replicas
    acknowledged: dict[str, list[bytes]] = {doomed.name: [], survivor.name: []}
    failures: dict[str, list[str]] = {doomed.name: [], survivor.name: []}
    killed = threading.Event()
    enough = threading.Event()

    def sender(serve: Serve, prefix: str, count: int) -> None:
        for i in range(count):
            trace, spans, logs = small_trace(f"{prefix}-{i}")
            try:
                if serve.post("traces", spans).status_code == 200 and serve.post("logs", logs).status_code == 200:
                    acknowledged[serve.name].append(trace)
            except httpx.TransportError as exc:  # the killed replica: no acknowledgement
                failures[serve.name].append(repr(exc))
            if serve is doomed and len(acknowledged[serve.name]) >= 5:
                enough.set()
            if killed.is_set() and serve is doomed and failures[serve.name]:
                return

    threads = [
        threading.Thread(target=sender, args=(doomed, "doomed", 400)),
        threading.Thread(target=sender, args=(survivor, "survivor", 30)),
    ]
    for thread in threads:
        thread.start()
    assert enough.wait(60)
    doomed.kill()  # SIGKILL, mid-stream: whatever it had not acknowledged, its sender retries elsewhere
    killed.set()
    for thread in threads:
        thread.join(120)
    assert failures[doomed.name], "the sender saw the kill"
    assert not failures[survivor.name] and len(acknowledged[survivor.name]) == 30

    # The survivor keeps ingesting and answering, and has everything either replica acknowledged.
    after, spans, logs = small_trace("after-the-kill")
    assert survivor.post("traces", spans).status_code == 200 and survivor.post("logs", logs).status_code == 200
    for trace in [*acknowledged[doomed.name], *acknowledged[survivor.name], after]:
        _whole(survivor, trace)
    assert survivor.get("/api/services").json()["data"] == ["shop"]
