"""The sample project's apps: a FastAPI app and a Flask app, each instrumented with otel-corr."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, HTTPException
from flask import Flask, abort

import otel_corr

# No collector in the tests: spans stay in the process (the plugin sees them through the provider).
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
os.environ.setdefault("OTEL_SERVICE_NAME", "shop")

log = logging.getLogger("shop")
log.setLevel(logging.INFO)  # its INFO lines also where no one configured logging (the live server)

api = FastAPI()


@api.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    log.info("loading order %d", order_id)
    if order_id == 0:
        log.warning("order %d does not exist", order_id)
        raise HTTPException(404)
    return {"order": order_id}


@api.get("/sync/{order_id}")
def sync_order(order_id: int) -> dict[str, int]:
    log.info("loading order %d in a worker thread", order_id)
    return {"order": order_id}


otel_corr.instrument(api)

web = Flask("shop_web")


@web.get("/pages/<int:page>")
def page(page: int) -> dict[str, int]:
    log.info("rendering page %d", page)
    if page == 0:
        abort(404)
    return {"page": page}


otel_corr.instrument(web)
