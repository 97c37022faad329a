"""What the plugin cannot read or show in full: left out, said so, and the test's own failure shown as usual."""

from __future__ import annotations

import logging

import httpx
from apps import api
from fastapi.testclient import TestClient
from opentelemetry import trace

from otel_corr.pytest_plugin import Endpoint


def test_bad_input_is_left_out(otel_corr_endpoint: Endpoint) -> None:
    with trace.get_tracer("check").start_as_current_span("big") as span:
        span.set_attribute("blob", "x" * 100_000)  # over the backend's 64 KiB value limit
    logging.getLogger("check").info("long: %s", "y" * 5000)
    client = TestClient(api)
    for n in range(1, 13):
        client.get(f"/orders/{n}", headers={"X-Request-ID": f"many-{n}"})
    if otel_corr_endpoint.url:
        garbage = httpx.post(
            f"{otel_corr_endpoint.url}/v1/traces",
            content=b"\xffnot otlp",
            headers={"content-type": "application/x-protobuf"},
        )
        assert garbage.status_code == 400
    raise AssertionError("the test's own failure")
