"""The IDs cross every boundary, end to end: a real frontend and downstream service under uvicorn,
their JSON log lines, and the spans a real collector received."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .collector import Collector, ReceivedSpan
from .conftest import Server, server_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def services(collector: Collector, start_uvicorn: Any) -> Iterator[tuple[Server, Server]]:
    downstream = start_uvicorn(server_env(collector, OTEL_SERVICE_NAME="downstream"), "tests.apps.downstream_app:app")
    frontend = start_uvicorn(
        server_env(collector, OTEL_SERVICE_NAME="frontend", DOWNSTREAM_URL=downstream.url),
        "tests.apps.frontend_app:app",
    )
    yield frontend, downstream


def _lines(server: Server) -> list[dict[str, Any]]:
    out = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _call(server: Server, path: str) -> tuple[httpx.Response, str, str]:
    rid = str(uuid.uuid4())
    r = httpx.get(f"{server.url}{path}", headers={"X-Request-ID": rid}, timeout=120)
    assert r.status_code == 200, r.text
    return r, rid, rid.replace("-", "")


def _assert_lines(server: Server, tags: list[str], rid: str, trace_id: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        lines = {e["message"]: e for e in _lines(server) if e["message"] in tags}
        if set(lines) == set(tags) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(lines) == sorted(tags)
    for tag, entry in lines.items():
        assert (entry["request_id"], entry["trace_id"]) == (rid, trace_id), tag


def test_asyncio_tasks(services: tuple[Server, Server]) -> None:
    """create_task, gather and TaskGroup see the request's IDs (native contextvars)."""
    frontend, _ = services
    r, rid, trace_id = _call(frontend, "/asyncio")
    tags = ["create_task", "gather-1", "gather-2", "taskgroup"]
    assert [x["request_id"] for x in r.json()["results"]] == [rid] * 4
    _assert_lines(frontend, tags, rid, trace_id)


def test_threads(services: tuple[Server, Server]) -> None:
    """to_thread, run_in_executor, a ThreadPoolExecutor, Thread, a Thread subclass and carry() all keep the IDs."""
    frontend, _ = services
    r, rid, trace_id = _call(frontend, "/threads")
    tags = ["to_thread", "run_in_executor", "thread_pool", "thread", "thread_subclass", "carry"]
    assert [(x["request_id"], x["trace_id"]) for x in r.json()["results"]] == [(rid, trace_id)] * 6
    _assert_lines(frontend, tags, rid, trace_id)
    # A later request with no ID on the same pool threads never sees this one's.
    again = httpx.get(f"{frontend.url}/threads", timeout=60).json()
    assert {x["request_id"] for x in again["results"]} == {again["request"]["request_id"]} != {rid}


def test_sync_endpoint(services: tuple[Server, Server]) -> None:
    """A sync FastAPI endpoint (run in a thread pool) has the IDs."""
    frontend, _ = services
    r, rid, trace_id = _call(frontend, "/sync")
    assert r.json()["results"][0]["request_id"] == rid
    _assert_lines(frontend, ["sync_endpoint"], rid, trace_id)


def test_background_task_has_ids_and_its_own_child_span(services: tuple[Server, Server], collector: Collector) -> None:
    """BackgroundTasks run after the response with the IDs, in a child span; the request span excludes them."""
    frontend, _ = services
    r, rid, trace_id = _call(frontend, "/background")
    _assert_lines(frontend, ["background_work"], rid, trace_id)
    spans = collector.wait_for_spans(2, trace_id=trace_id)
    server = [s for s in spans if s.kind == "SPAN_KIND_SERVER"][0]
    background = [s for s in spans if s.name.startswith("BackgroundTask")][0]
    assert background.parent_id == server.span_id
    assert background.attributes["request.id"] == rid
    assert _duration(background) >= 0.3 > _duration(server)


def _duration(span: ReceivedSpan) -> float:
    return (int(span.attributes["_end"]) - int(span.attributes["_start"])) / 1e9


def test_subprocesses(services: tuple[Server, Server]) -> None:
    """subprocess.run (Python and sh), multiprocessing (spawn and fork) and ProcessPoolExecutor continue the IDs."""
    frontend, _ = services
    r, rid, trace_id = _call(frontend, "/subprocess")
    body = r.json()
    assert [(x["tag"], x["request_id"], x["trace_id"]) for x in body["results"]] == [
        (tag, rid, trace_id)
        for tag in ("subprocess_run", "multiprocessing_spawn", "multiprocessing_fork", "process_pool")
    ]
    traceparent, env_rid = body["env_child"].split("|")
    assert traceparent.startswith(f"00-{trace_id}-") and env_rid == rid
    # The children's own JSON log lines (written to the server's stdout, or captured) carry the IDs.
    child_line = [json.loads(x) for x in body["child_stdout"].splitlines() if x.startswith('{"timestamp"')][0]
    assert (child_line["request_id"], child_line["trace_id"]) == (rid, trace_id)
    _assert_lines(frontend, ["multiprocessing_spawn", "multiprocessing_fork", "process_pool"], rid, trace_id)


def test_outbound_http_one_trace_across_services(services: tuple[Server, Server], collector: Collector) -> None:
    """httpx (sync, async), requests, aiohttp send traceparent and X-Request-ID; the downstream continues both."""
    frontend, downstream = services
    r, rid, trace_id = _call(frontend, "/outbound")
    results = r.json()["results"]
    assert [(x["via"], x["request_id"], x["trace_id"]) for x in results] == [
        (via, rid, trace_id) for via in ("httpx-sync", "httpx-async", "requests", "aiohttp")
    ]
    downstream_lines = [e for e in _lines(downstream) if e["message"] == "downstream handled"]
    assert {(e["via"], e["request_id"], e["trace_id"]) for e in downstream_lines} == {
        (via, rid, trace_id) for via in ("httpx-sync", "httpx-async", "requests", "aiohttp")
    }
    spans = collector.wait_for_spans(9, trace_id=trace_id)
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.parent_id == ""]
    assert root.resource["service.name"] == "frontend" and root.name == "GET /outbound"
    clients = [s for s in spans if s.kind == "SPAN_KIND_CLIENT"]
    servers = [s for s in spans if s.kind == "SPAN_KIND_SERVER" and s.resource["service.name"] == "downstream"]
    assert len(clients) == 4 and len(servers) == 4
    assert all(c.parent_id == root.span_id and c.attributes["http.response.status_code"] == "200" for c in clients)
    assert sorted(by_id[s.parent_id].span_id for s in servers) == sorted(c.span_id for c in clients)
    assert all(s.attributes["request.id"] == rid for s in servers)
