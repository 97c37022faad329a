"""A second service, instrumented with otel-corr, called by frontend_app over HTTP."""

from __future__ import annotations

import logging
import sys

from fastapi import FastAPI, Request

import otel_corr

otel_corr.configure_logging(fmt="json", stream=sys.stdout)
app = FastAPI()


@app.get("/echo")
async def echo(via: str, request: Request) -> dict[str, str]:
    logging.getLogger("downstream").info("downstream handled", extra={"via": via})
    ids = otel_corr.current_ids()
    return {
        "trace_id": ids.trace_id,
        "request_id": ids.request_id,
        "via": via,
        "traceparent": request.headers.get("traceparent", ""),
    }


otel_corr.instrument(app)
