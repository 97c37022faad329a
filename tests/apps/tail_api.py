"""The FastAPI service of the ``otel-corr tail`` tests (service name from OTEL_SERVICE_NAME), under real uvicorn."""

from __future__ import annotations

import logging

from fastapi import FastAPI

import otel_corr

otel_corr.configure_logging()
app = FastAPI()
log = logging.getLogger("orders")


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    log.info("order %d looked up", order_id)
    if order_id > 1000:
        log.warning("order %d is very large", order_id)
    return {"order": order_id}


@app.get("/pay")
async def pay() -> None:
    log.info("charging the card")
    charge()


def charge() -> None:
    raise ZeroDivisionError("card limit divided by zero")


@app.get("/hostile")
async def hostile() -> dict[str, bool]:
    # What an attacker controls ends up in a log line: an OSC title, a colour, a forged line, a C1 CSI.
    log.info("evil \x1b]0;pwned\x07 \x1b[31mred\nforged line \x9b2J bidi \u202e")
    return {"ok": True}


@app.get("/burst/{count}")
def burst(count: int) -> dict[str, int]:
    for i in range(count):
        log.info("burst line %d %s", i, "x" * 900)
    return {"count": count}


otel_corr.instrument(app)
