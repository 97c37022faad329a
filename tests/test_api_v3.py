"""Jaeger v2.20's HTTP query API as otel-corr serve answers it beyond v1: api_v3 trace summaries (the UI's
Find Traces), hex and base64 trace IDs, POST /api/transform, Jaeger's answers where ours differed, and a
one-line 4xx for every bad query value on these routes, against a real serve process."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ._jaeger_ui import CART, CART_B64, CHECKOUT, CHECKOUT_RID, RESTOCK, shop_bodies
from .test_server import Backend

pytestmark = pytest.mark.e2e

NOW = time.time_ns()
T_CHECKOUT = NOW - 300_000_000_000  # when shop_bodies(NOW) starts each trace
T_CART = NOW - 240_000_000_000
T_RESTOCK = NOW - 180_000_000_000


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


WINDOW = {"query.startTimeMin": _rfc3339(NOW - 3_600_000_000_000), "query.startTimeMax": _rfc3339(NOW)}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    backend = Backend(tmp_path_factory.mktemp("api-v3"), None, "--retention", "0")
    traces, logs = shop_bodies(NOW)
    assert backend.post("/v1/traces", json.dumps(traces).encode(), "application/json").status_code == 200
    assert backend.post("/v1/logs", json.dumps(logs).encode(), "application/json").status_code == 200
    backend.wait_trace(CHECKOUT, spans=3)
    backend.wait_trace(CART, spans=3)
    yield backend
    backend.stop()


def _summaries(shop: Backend, **params: str) -> Any:
    response = shop.get("/api/v3/trace-summaries", **{**WINDOW, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _ids(shop: Backend, **params: str) -> list[str]:
    return [s["traceId"] for s in _summaries(shop, **params).get("summaries", [])]


def test_trace_summaries_as_jaeger_computes_them(shop: Backend) -> None:
    """One summary per trace, newest first, with Jaeger's fields; zero counts left out as proto3 JSON does."""
    found = _summaries(shop, **{"query.serviceName": "shop"})["summaries"]
    assert [s["traceId"] for s in found] == [CART, CHECKOUT]
    assert found[1] == {
        "traceId": CHECKOUT,
        "rootServiceName": "shop",
        "rootOperationName": "GET /checkout/{id}",
        "minStartTimeUnixNano": str(T_CHECKOUT),
        "maxEndTimeUnixNano": str(T_CHECKOUT + 80_000_000),
        "spanCount": 3,
        "errorSpanCount": 1,
        "services": [{"name": "inventory", "spanCount": 1}, {"name": "shop", "spanCount": 2, "errorSpanCount": 1}],
    }
    # A trace whose root never arrived: no root names, its spans counted as orphans.
    orphan = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "late"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "e" * 32,
                                "spanId": "e1" * 8,
                                "parentSpanId": "ee" * 8,
                                "name": "child",
                                "startTimeUnixNano": str(T_RESTOCK),
                                "endTimeUnixNano": str(T_RESTOCK + 1000),
                            }
                        ]
                    }
                ],
            }
        ]
    }
    shop.post("/v1/traces", json.dumps(orphan).encode(), "application/json")
    shop.wait_trace("e" * 32)
    assert _summaries(shop, **{"query.serviceName": "late"})["summaries"] == [
        {
            "traceId": "e" * 32,
            "minStartTimeUnixNano": str(T_RESTOCK),
            "maxEndTimeUnixNano": str(T_RESTOCK + 1000),
            "spanCount": 1,
            "orphanSpanCount": 1,
            "services": [{"name": "late", "spanCount": 1}],
        }
    ]


def test_trace_summaries_every_query_field_the_ui_sends(shop: Backend) -> None:
    """Service, operation (and its aliases), attributes, duration bounds, time range, search depth."""
    assert _ids(shop, **{"query.serviceName": "shop", "query.operationName": "GET /cart"}) == [CART]
    assert _ids(shop, **{"query.service_name": "shop", "query.operation_name": "GET /cart"}) == [CART]
    assert _ids(shop, **{"query.serviceName": "shop", "query.span_name": "GET /checkout/{id}"}) == [CHECKOUT]
    status_500 = json.dumps({"http.response.status_code": "500"})
    assert _ids(shop, **{"query.serviceName": "shop", "query.attributes": status_500}) == [CHECKOUT]
    errors = json.dumps({"error": "true"})
    assert _ids(shop, **{"query.serviceName": "shop", "query.attributes": errors}) == [CHECKOUT]
    rid = json.dumps({"request.id": CHECKOUT_RID})
    assert _ids(shop, **{"query.serviceName": "inventory", "query.attributes": rid}) == [CHECKOUT]
    slow = {"query.serviceName": "inventory", "query.durationMin": "100ms"}
    assert _ids(shop, **slow) == [RESTOCK.rjust(32, "0")]
    assert _ids(shop, **{"query.serviceName": "inventory", "query.durationMax": "6ms"}) == [CART]
    assert _ids(
        shop, **{"query.serviceName": "inventory", "query.duration_min": "20ms", "query.duration_max": "1s"}
    ) == [
        RESTOCK.rjust(32, "0"),
        CHECKOUT,
    ]
    assert _ids(shop, **{"query.serviceName": "shop", "query.searchDepth": "1"}) == [CART]
    assert _ids(shop, **{"query.serviceName": "shop", "query.num_traces": "1"}) == [CART]
    before_cart = {"query.startTimeMin": _rfc3339(T_CHECKOUT - 1000), "query.startTimeMax": _rfc3339(T_CART - 1000)}
    assert _ids(shop, **{"query.serviceName": "shop", **before_cart}) == [CHECKOUT]
    # Nothing found: 200 and {} (an empty list is no field in proto3 JSON); the UI shows "No trace results".
    assert _summaries(shop, **{"query.serviceName": "shop", "query.operationName": "nope"}) == {}


def test_trace_ids_hex_and_base64_on_every_route_that_takes_one(shop: Backend) -> None:
    """32 or fewer hex digits, UUIDs, and base64 (standard or URL-safe, padded or not, 16 or 8 bytes)."""
    raw = bytes.fromhex(CART)
    forms = [
        CART,
        CART.upper(),
        base64.b64encode(raw).decode(),
        CART_B64,  # unpadded, with a "+"
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    assert "+" in CART_B64 and "-" in forms[-1]
    for form in forms:
        assert shop.get(f"/api/traces/{form}").json()["data"][0]["traceID"] == CART, form
        v3 = shop.get(f"/api/v3/traces/{form}").json()["result"]["resourceSpans"]
        assert {s["traceId"] for rs in v3 for ss in rs["scopeSpans"] for s in ss["spans"]} == {CART}, form
    both = httpx.get(f"{shop.url}/api/traces", params=[("traceID", CART_B64), ("traceID", "bm90LWEtdHJhY2U=")])
    assert [t["traceID"] for t in both.json()["data"]] == [CART]
    assert both.json()["errors"] == [{"code": 404, "msg": "trace not found", "traceID": "bm90LWEtdHJhY2U="}]
    # A "/" in base64 reaches the route as %2F, decoded before routing.
    slash = "5b8efff798038103d269b633813fc60c"
    body = {"resourceSpans": [_otlp(slash, "slashed", "vault")]}
    assert shop.post("/v1/traces", json.dumps(body).encode(), "application/json").status_code == 200
    shop.wait_trace(slash)
    slash_b64 = base64.b64encode(bytes.fromhex(slash)).decode()
    assert "/" in slash_b64
    quoted = slash_b64.replace("/", "%2F").replace("=", "%3D")
    assert shop.get(f"/api/traces/{quoted}").json()["data"][0]["traceID"] == slash
    assert shop.get(f"/api/v3/traces/{quoted}").status_code == 200
    # A 64-bit ID as 8 base64 bytes; v1 prints it as Jaeger does, 16 hex digits.
    restock_b64 = base64.b64encode(bytes.fromhex(RESTOCK)).decode()
    assert shop.get(f"/api/traces/{restock_b64}").json()["data"][0]["traceID"] == RESTOCK
    # Not an ID of either kind: still looked up as a request ID, then Jaeger's not-found answers.
    assert shop.get(f"/api/traces/{CHECKOUT_RID}").json()["data"][0]["traceID"] == CHECKOUT
    assert shop.get("/api/v3/traces/AAAAAAAAAAAAAAAAAAAAAA").json() == {
        "error": {"httpCode": 404, "message": "No traces found"}
    }


def _otlp(trace_id: str, name: str, service: str, parent: str = "") -> dict[str, Any]:
    return {
        "resource": {
            "attributes": [
                {"key": "service.name", "value": {"stringValue": service}},
                {"key": "host.name", "value": {"stringValue": "box"}},
            ]
        },
        "scopeSpans": [
            {
                "scope": {"name": "lib", "version": "1.2"},
                "spans": [
                    {
                        "traceId": trace_id,
                        "spanId": (name.encode().hex() * 8)[:16],
                        "parentSpanId": parent,
                        "name": name,
                        "kind": 3,
                        "startTimeUnixNano": "1706678909209712000",
                        "endTimeUnixNano": "1706678909209835000",
                        "attributes": [{"key": "n", "value": {"intValue": "7"}}],
                        "events": [{"timeUnixNano": "1706678909209800000", "name": "some-event"}],
                        "status": {"code": 2, "message": "boom"},
                    }
                ],
            }
        ],
    }


def test_transform_turns_otlp_json_into_the_uis_jaeger_json(shop: Backend) -> None:
    """POST /api/transform (the Upload tab, sent as text/plain): v1 traces per trace ID, nothing stored."""
    body = {"resourceSpans": [_otlp("83a9efd15c1c98a977e0711cc93ee28b", "a", "up"), _otlp("1" * 32, "b", "down")]}
    answer = httpx.post(f"{shop.url}/api/transform", content=json.dumps(body), headers={"content-type": "text/plain"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    data = answer.json()
    assert (data["total"], data["limit"], data["offset"], data["errors"]) == (0, 0, 0, None)
    assert [t["traceID"] for t in data["data"]] == ["83a9efd15c1c98a977e0711cc93ee28b", "1" * 32]
    first = data["data"][0]
    assert first["processes"] == {
        "p1": {"serviceName": "up", "tags": [{"key": "host.name", "type": "string", "value": "box"}]}
    }
    span = first["spans"][0]
    assert (span["operationName"], span["startTime"], span["duration"], span["references"]) == (
        "a",
        1706678909209712,
        123,
        [],
    )
    tags = {t["key"]: t["value"] for t in span["tags"]}
    assert tags == {
        "n": 7,
        "span.kind": "client",
        "otel.scope.name": "lib",
        "otel.scope.version": "1.2",
        "otel.status_code": "ERROR",
        "otel.status_description": "boom",
        "error": True,
    }
    assert span["logs"] == [
        {"timestamp": 1706678909209800, "fields": [{"key": "event", "type": "string", "value": "some-event"}]}
    ]
    assert "up" not in shop.get("/api/v3/services").json()["services"]
    empty = httpx.post(f"{shop.url}/api/transform", content=b"{}")
    assert empty.json()["data"] == []


def test_transform_shares_ingests_limits(shop: Backend) -> None:
    """More spans than one OTLP request may carry, or more bytes than an upload: 413 with the reason."""
    span = {"traceId": "1" * 32, "spanId": "2" * 16, "name": "x", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    many = {"resourceSpans": [{"scopeSpans": [{"spans": [span] * 32769}]}]}
    answer = httpx.post(f"{shop.url}/api/transform", content=json.dumps(many), timeout=60)
    assert answer.status_code == 413 and "32769 spans" in answer.json()["errors"][0]["msg"], answer.text[:300]
    big = httpx.post(f"{shop.url}/api/transform", content=b" " * (8 * 1024 * 1024 + 1), timeout=60)
    assert big.status_code == 413 and big.json()["errors"][0]["msg"] == "body is over 8388608 bytes"
    assert httpx.post(f"{shop.url}/api/transform", content=json.dumps({"resourceSpans": []})).status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "cannot unmarshal OTLP: invalid OTLP JSON"),
        (b"[" * 5000 + b"]" * 5000, "cannot unmarshal OTLP: invalid OTLP JSON"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd"}]}]}]}', "traceId must be 16 bytes"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', "traceId 'zz' is not hex"),
    ],
)
def test_transform_refuses_what_is_not_otlp_json_in_one_line(shop: Backend, body: bytes, reason: str) -> None:
    answer = httpx.post(f"{shop.url}/api/transform", content=body)
    assert answer.status_code == 400
    message = answer.json()["errors"][0]["msg"]
    assert reason in message and "\n" not in message and answer.json()["errors"][0]["code"] == 400


def test_where_jaeger_answers_differently_we_answer_as_jaeger(shop: Backend) -> None:
    """A search needs a service; operations without one lists every service's; nothing found is 'No traces found'."""
    no_service = shop.get("/api/v3/traces", **WINDOW)
    assert no_service.status_code == 400
    assert no_service.json() == {"error": {"httpCode": 400, "message": "query.serviceName is required"}}
    assert shop.get("/api/v3/trace-summaries", **WINDOW).status_code == 400
    operations = shop.get("/api/v3/operations").json()["operations"]
    assert {"name": "POST /restock", "spanKind": "server"} in operations
    assert {"name": "GET /cart", "spanKind": "server"} in operations and {
        "name": "GET",
        "spanKind": "client",
    } in operations
    assert shop.get("/api/v3/operations", service="shop", spanKind="client").json() == {
        "operations": [{"name": "GET", "spanKind": "client"}]
    }
    nothing = shop.get("/api/v3/traces", **{**WINDOW, "query.serviceName": "nobody"})
    assert nothing.status_code == 404 and nothing.json() == {"error": {"httpCode": 404, "message": "No traces found"}}
    # v1 stays for Grafana's Jaeger data source and older UIs.
    assert {"inventory", "shop"} <= set(shop.get("/api/services").json()["data"])


DEEP = "[" * 3000 + "]" * 3000
HOSTILE = [
    ("/api/v3/trace-summaries", {"query.startTimeMin": "0001-01-01T00:00:00Z"}, "years 1678-2262"),
    ("/api/v3/trace-summaries", {"query.startTimeMax": "99999-01-01T00:00:00Z"}, "not an RFC 3339 time"),
    ("/api/v3/trace-summaries", {"query.startTimeMin": "1" + "0" * 30}, "not an RFC 3339 time"),
    ("/api/v3/trace-summaries", {"query.startTimeMax": "2026-02-30T00:00:00Z"}, "not a valid date"),
    ("/api/v3/trace-summaries", {"query.startTimeMin": WINDOW["query.startTimeMax"]}, "must be before"),
    ("/api/v3/trace-summaries", {"query.startTimeMin": ""}, "are required"),
    ("/api/v3/trace-summaries", {"query.durationMin": "fast"}, "not a duration"),
    ("/api/v3/trace-summaries", {"query.durationMin": "nan"}, "not a duration"),
    ("/api/v3/trace-summaries", {"query.durationMax": "1e30s"}, "not a duration"),
    ("/api/v3/trace-summaries", {"query.durationMax": "9" * 30 + "h"}, "largest duration"),
    ("/api/v3/trace-summaries", {"query.durationMax": "9999999h"}, "largest duration"),
    ("/api/v3/trace-summaries", {"query.searchDepth": "abc"}, "not a positive integer"),
    ("/api/v3/trace-summaries", {"query.searchDepth": "0"}, "not a positive integer"),
    ("/api/v3/trace-summaries", {"query.searchDepth": "1" * 30}, "not a positive integer"),
    ("/api/v3/trace-summaries", {"query.attributes": DEEP}, "JSON object of strings"),
    ("/api/v3/trace-summaries", {"query.attributes": '{"a": {"b": "c"}}'}, "JSON object of strings"),
    ("/api/v3/trace-summaries", {"query.attributes": "[1]"}, "JSON object of strings"),
    ("/api/v3/trace-summaries", {"query.rawTraces": "maybe"}, "not true or false"),
    ("/api/v3/traces", {"query.startTimeMin": "0001-01-01T00:00:00Z"}, "years 1678-2262"),
    ("/api/v3/traces", {"query.attributes": DEEP}, "JSON object of strings"),
    ("/api/v3/traces", {"query.durationMin": "-"}, "not a duration"),
    (f"/api/v3/traces/{CART}", {"startTime": "0001-01-01T00:00:00Z"}, "years 1678-2262"),
    (f"/api/v3/traces/{CART}", {"end_time": "yesterday"}, "not an RFC 3339 time"),
    ("/api/v3/operations", {"spanKind": "sideways"}, "is not one of"),
]


@pytest.mark.parametrize(("path", "params", "reason"), HOSTILE, ids=[f"{p}-{list(q)[0]}" for p, q, _ in HOSTILE])
def test_bad_query_values_are_a_4xx_with_a_one_line_reason(
    shop: Backend, path: str, params: dict[str, str], reason: str
) -> None:
    answer = shop.get(path, **{**WINDOW, "query.serviceName": "shop", **params})
    assert answer.status_code == 400, answer.text[:300]
    error = answer.json()["error"]
    assert error["httpCode"] == 400 and reason in error["message"] and "\n" not in error["message"]
    assert len(error["message"]) < 200
