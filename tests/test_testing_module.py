"""otel_corr.testing works as its docstring says."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

import otel_corr
from otel_corr.testing import Capture, capture, otel_corr_capture  # noqa: F401 - the fixture


def _app(cap: Capture) -> FastAPI:
    app = FastAPI()

    @app.get("/x")
    async def x() -> dict[str, str]:
        return {}

    otel_corr.instrument(app, tracer_provider=cap.provider)
    return app


async def test_capture_context_manager() -> None:
    """capture() collects the server span; server_span() finds it by request ID."""
    with capture() as cap:
        transport = httpx.ASGITransport(app=_app(cap))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            await c.get("/x", headers={"X-Request-ID": "t-1"})
        assert cap.server_span("t-1").name == "GET /x"
        with pytest.raises(AssertionError, match="expected one server span"):
            cap.server_span("other")


async def test_fixture(otel_corr_capture: Capture) -> None:  # noqa: F811 - pytest injects it
    """The pytest fixture gives a fresh capture."""
    transport = httpx.ASGITransport(app=_app(otel_corr_capture))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/x")
    assert otel_corr_capture.trace_ids() == {r.headers["x-request-id"]}
