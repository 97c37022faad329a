"""A FastAPI app for the logging end-to-end tests; logging set up from OTEL_CORR_LOG_* variables."""

from __future__ import annotations

import logging
import os
import sys

from fastapi import FastAPI

import otel_corr

if os.environ.get("APP_CONFIGURE_LOGGING", "1") == "1":
    otel_corr.configure_logging(stream=sys.stdout)

app = FastAPI()
log = logging.getLogger("shop")


@app.get("/work")
async def work() -> dict[str, int]:
    log.info("working on order", extra={"order": 42, "pid": os.getpid()})
    return {"pid": os.getpid()}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("payment service exploded")


otel_corr.instrument(app)
