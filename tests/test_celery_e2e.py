"""Celery end to end: a real Redis broker, a real worker (solo with embedded beat, and prefork),
a request that publishes a task, the worker's own JSON output and the spans at a real collector."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .collector import Collector, free_port, wait_for_port
from .conftest import ROOT, Server, server_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="needs Debian's redis-server (.ci/run installs it)"
    ),
]


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    workers: list[Server] = []

    def start(env: dict[str, str], *args: str) -> Server:
        log = tmp_path / f"worker-{len(workers)}.log"
        out = open(log, "w")
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.apps.celery_app",
            "worker",
            "-l",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *args,
        ]
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        server = Server.__new__(Server)
        server.port, server.url, server.log, server._out, server.proc = 0, "", log, out, proc
        workers.append(server)
        deadline = time.monotonic() + 60
        while "ready" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        return server

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.proc.terminate()
            try:
                w.proc.wait(20)
            except subprocess.TimeoutExpired:
                w.proc.kill()
        w._out.close()


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _wait_lines(server: Server, predicate: Callable[[dict[str, Any]], bool], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        found = [e for e in _lines(server.output()) if predicate(e)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _publish_from_request(frontend: Server) -> tuple[str, str, str]:
    rid = str(uuid.uuid4())
    r = httpx.get(f"{frontend.url}/celery", headers={"X-Request-ID": rid}, timeout=60)
    assert r.status_code == 200, r.text
    return rid, rid.replace("-", ""), r.json()["task_id"]


def test_task_from_a_request_solo_worker_with_beat(
    redis_url: str, collector: Collector, start_uvicorn: Any, start_worker: Callable[..., Server]
) -> None:
    """A task published in a request runs with its trace and request ID; its child task too; beat gets fresh IDs."""
    env = server_env(collector, CELERY_BROKER_URL=redis_url, OTEL_SERVICE_NAME="worker", BEAT_EVERY="1")
    worker = start_worker(
        env, "-P", "solo", "-B", "-s", str(Path(worker_tmp := env.get("TMPDIR", "/tmp")) / f"beat-{uuid.uuid4().hex}")
    )
    del worker_tmp
    frontend = start_uvicorn(
        server_env(collector, CELERY_BROKER_URL=redis_url, OTEL_SERVICE_NAME="frontend"), "tests.apps.frontend_app:app"
    )
    rid, trace_id, task_id = _publish_from_request(frontend)

    charge = _wait_lines(worker, lambda e: e.get("message") == "charging order", 1)
    receipt = _wait_lines(worker, lambda e: e.get("message") == "sending receipt", 1)
    assert (charge[0]["request_id"], charge[0]["trace_id"], charge[0]["task_id"]) == (rid, trace_id, task_id)
    assert (receipt[0]["request_id"], receipt[0]["trace_id"]) == (rid, trace_id)
    assert receipt[0]["parent_task_id"] == task_id != receipt[0]["task_id"]
    # Celery's own lines in the worker's output keep the chosen (JSON) format and the IDs.
    succeeded = _wait_lines(worker, lambda e: e.get("logger") == "celery.app.trace" and task_id in e["message"], 1)
    assert succeeded and succeeded[0]["request_id"] == rid

    spans = collector.wait_for_spans(6, trace_id=trace_id)
    by_name = {s.name: s for s in spans}
    server = by_name["GET /celery"]
    send_charge, process_charge = by_name["send shop.charge"], by_name["process shop.charge"]
    send_receipt, process_receipt = by_name["send shop.receipt"], by_name["process shop.receipt"]
    assert send_charge.parent_id == server.span_id and send_charge.kind == "SPAN_KIND_PRODUCER"
    assert process_charge.parent_id == send_charge.span_id and process_charge.kind == "SPAN_KIND_CONSUMER"
    assert send_receipt.parent_id == process_charge.span_id
    assert process_receipt.parent_id == send_receipt.span_id
    assert process_receipt.attributes["celery.parent_id"] == task_id
    assert process_charge.resource["service.name"] == "worker"

    ticks = _wait_lines(worker, lambda e: e.get("message") == "beat tick", 2)
    assert len(ticks) >= 2
    assert all(t["request_id"] == t["trace_id"] != "-" for t in ticks)
    assert ticks[0]["request_id"] != ticks[1]["request_id"] and rid not in {t["request_id"] for t in ticks}


def test_task_from_a_request_prefork_worker(
    redis_url: str, collector: Collector, start_uvicorn: Any, start_worker: Callable[..., Server]
) -> None:
    """The prefork pool: the forked children log with the IDs and export their spans."""
    env = server_env(collector, CELERY_BROKER_URL=redis_url, OTEL_SERVICE_NAME="worker")
    worker = start_worker(env, "-P", "prefork", "-c", "2")
    frontend = start_uvicorn(server_env(collector, CELERY_BROKER_URL=redis_url), "tests.apps.frontend_app:app")
    rid, trace_id, task_id = _publish_from_request(frontend)
    charge = _wait_lines(worker, lambda e: e.get("message") == "charging order", 1)
    assert (charge[0]["request_id"], charge[0]["trace_id"], charge[0]["task_id"]) == (rid, trace_id, task_id)
    spans = collector.wait_for_spans(1, trace_id=trace_id, name="process shop.charge")
    assert spans and spans[0].attributes["request.id"] == rid


@pytest.mark.parametrize("plain", [False, True], ids=["configure_logging", "instrument_only"])
def test_the_worker_exports_its_task_log_records(
    plain: bool, redis_url: str, collector: Collector, start_worker: Callable[..., Server]
) -> None:
    """The worker empties the root logger's handlers at start (worker_hijack_root_logger): the OTLP log handler
    is put back, with configure_logging() and with instrument(app) alone, and a task's line reaches the
    collector (before: log export stopped silently in every worker)."""
    from celery import Celery

    env = server_env(collector, CELERY_BROKER_URL=redis_url, OTEL_BLRP_SCHEDULE_DELAY="100")
    if plain:
        env["PLAIN_LOGGING"] = "1"
    start_worker(env, "-P", "solo")
    client = Celery("client", broker=redis_url)
    try:
        client.send_task("shop.receipt", args=[41])
    finally:
        client.close()
    (record,) = collector.wait_for_logs(lambda e: e.body == "sending receipt")
    assert record.attributes.get("order") == "41"
