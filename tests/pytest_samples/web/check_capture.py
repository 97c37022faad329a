"""otel_corr.testing's capture, with the plugin on or off."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

import otel_corr
from otel_corr.testing import Capture, capture, otel_corr_capture  # noqa: F401 - the fixture, for pytest


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


def test_fixture_captures(otel_corr_capture: Capture) -> None:  # noqa: F811 - the fixture imported above
    app = otel_corr.instrument(_app(), tracer_provider=otel_corr_capture.provider)
    TestClient(app).get("/ping", headers={"X-Request-ID": "cap-1"})
    span = otel_corr_capture.server_span("cap-1")
    assert span.name == "GET /ping"
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200


def test_context_manager_captures_and_a_failure_shows_it() -> None:
    with capture() as cap:
        app = otel_corr.instrument(_app(), tracer_provider=cap.provider)
        TestClient(app).get("/ping", headers={"X-Request-ID": "cap-2"})
        assert [s.name for s in cap.server_spans()] == ["GET /ping"]
    assert cap.server_span("cap-2").attributes == {}  # fails: the span has attributes
