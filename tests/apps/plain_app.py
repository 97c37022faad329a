"""An app as a new user writes it: ``otel_corr.instrument(app)`` and nothing else (no logging set up)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

import otel_corr

app = FastAPI()
log = logging.getLogger("shop.orders")


@app.get("/orders/{order_id}")
async def hold(order_id: int) -> dict[str, int]:
    # WARNING: with no logging set up, Python's root level lets WARNING and above through.
    log.warning("order %s held for review", order_id)
    log.debug("fraud score computed")  # below the root level: never created, never sent
    return {"order_id": order_id}


otel_corr.instrument(app)
