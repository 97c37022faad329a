"""How every face of ``serve`` says an answer is partial, or that the part holding it is down.

The store here is the real SQLite store with one read changed to behave as the ClickHouse store
does with a shard down (``note_missing`` on a read across shards, ``StoreUnavailable`` on a keyed
read); ``tests/test_store_contract.py`` does the same with a real cluster and a stopped shard.
What is checked is what a client gets: the Jaeger envelope, the header, the page's JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otel_corr.exceptions import StoreUnavailable
from otel_corr.server._app import MISSING_HEADER, build_app
from otel_corr.server._store import Store
from otel_corr.server._store_api import Shortfall, missing, note_missing, partial_answers

DOWN = Shortfall(2, "10.0.0.2:9000", "Code: 210. Connection refused")


class HalfStore(Store):
    """Shard 2 "down": reads across shards note it; a lookup of trace 0xdead... raises."""

    def services(self) -> list[str]:
        note_missing([DOWN])
        note_missing([DOWN])  # noted twice by two reads: said once
        return ["front"]

    def trace(self, trace_id: bytes, *, details: bool = True) -> list:  # type: ignore[type-arg]
        if trace_id.hex().startswith("dead"):
            raise StoreUnavailable("cannot look up trace dead...: its shard does not answer: shard 2")
        return super().trace(trace_id, details=details)


class Client:
    """GETs through the app's ASGI interface (httpx's transport), one event loop per call."""

    def __init__(self, app: object) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def one() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.get(path)

        return asyncio.run(one())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    store = HalfStore(tmp_path / "t.db")
    try:
        yield Client(build_app(store))
    finally:
        store.close()


def test_jaeger_v1_says_which_shard_is_missing_in_errors_and_a_header(client: Client) -> None:
    response = client.get("/api/services")
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == ["front"]
    assert body["errors"] == [{"code": 206, "msg": "shard 2 (10.0.0.2:9000) did not answer: results may be incomplete"}]
    assert response.headers[MISSING_HEADER] == "shard 2 (10.0.0.2:9000) did not answer: results may be incomplete"


def test_api_v3_and_the_page_say_it_too(client: Client) -> None:
    v3 = client.get("/api/v3/services")
    assert v3.json() == {"services": ["front"]} and "shard 2" in v3.headers[MISSING_HEADER]
    page = client.get("/api/ui/requests")
    body = page.json()
    assert body["services"] == ["front"]
    assert body["missing"] == [{"shard": 2, "address": "10.0.0.2:9000", "error": "Code: 210. Connection refused"}]
    assert body["warning"].startswith("shard 2 (10.0.0.2:9000) did not answer")


def test_one_querys_missing_shard_never_reaches_the_next_query(client: Client) -> None:
    assert MISSING_HEADER in client.get("/api/services").headers
    whole = client.get("/api/dependencies")  # a read that noted nothing
    assert MISSING_HEADER not in whole.headers and whole.json()["errors"] is None
    assert missing() == ()  # nor the test's own context


def test_a_keyed_lookup_on_a_down_shard_is_503_naming_it(client: Client) -> None:
    trace_id = "dead" + "0" * 28
    v1 = client.get(f"/api/traces/{trace_id}")
    assert v1.status_code == 503
    assert "shard 2" in v1.json()["errors"][0]["msg"]
    v3 = client.get(f"/api/v3/traces/{trace_id}")
    assert v3.status_code == 503 and "shard 2" in v3.json()["error"]["message"]
    page = client.get(f"/api/ui/trace/{trace_id}")
    assert page.status_code == 503 and "shard 2" in page.json()["error"]


def test_scopes_nest_and_reset() -> None:
    note_missing([DOWN])  # outside any scope: nowhere to go, never an error
    with partial_answers() as outer:
        with partial_answers() as inner:
            note_missing([DOWN])
        assert inner == [DOWN] and outer == []
    assert missing() == ()
