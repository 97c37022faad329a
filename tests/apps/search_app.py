"""A shop for the search tests (``tests/test_search_e2e.py``): ``otel_corr.instrument(app)``, its log lines exported
over OTLP by default, a user ID set as a span attribute, and an exception raised out of a handler."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from opentelemetry import trace

import otel_corr

app = FastAPI()
log = logging.getLogger("shop.search")


class GatewayError(RuntimeError):
    """The payment provider did not answer."""


@app.get("/orders/{order_id}")
async def order(order_id: int, user: int = 0) -> dict[str, int]:
    if user:
        trace.get_current_span().set_attribute("user.id", user)
    # WARNING: with no logging set up, Python's root level lets WARNING and above through.
    log.warning("order %s held for review by the fraud desk", order_id)
    return {"order_id": order_id}


@app.get("/cache/{key}")
async def cache(key: str) -> dict[str, str]:
    log.warning("cache miss for %s, refilling", key)
    return {"key": key}


@app.get("/pay/{order_id}")
async def pay(order_id: int) -> dict[str, int]:
    raise GatewayError(f"upstream timed out paying order {order_id}")


otel_corr.instrument(app)
