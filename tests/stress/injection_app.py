"""An app that hands attacker-controlled input to logging, for the log-injection test.

``/echo`` logs headers, path and query with the user's own ``%s`` log call;
``/boom`` raises with a header in the exception message; any other path is
logged by the access line only.  Logging is set up by ``OTEL_CORR_LOG_*``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

import otel_corr

otel_corr.configure_logging()

app = FastAPI()
log = logging.getLogger("shop")


@app.get("/echo")
async def echo(request: Request) -> dict[str, bool]:
    log.info(
        "user agent %s evil %s query %s path %s",
        request.headers.get("user-agent"),
        request.headers.get("x-evil"),
        request.url.query,
        request.url.path,
    )
    log.warning("evil header as extra", extra={"evil": request.headers.get("x-evil")})
    return {"ok": True}


@app.get("/boom")
async def boom(request: Request) -> None:
    raise ValueError(f"cannot handle {request.headers.get('x-evil')}")


otel_corr.instrument(app)
