"""Apps that fail, for the one-error-one-line tests: a FastAPI app (``asgi``) and a Flask app (``flask_app``).

``APP_LOGGING`` picks the logging set-up: ``text`` or ``json`` (``configure_logging`` to stdout),
``none`` (only ``instrument(app)``: the server's own logging, nothing else).
``flask_unclosed`` is the Flask app behind an outer middleware that never closes its response.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import flask
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import otel_corr

MODE = os.environ.get("APP_LOGGING", "text")
if MODE in ("text", "json"):
    otel_corr.configure_logging(fmt=MODE, stream=sys.stdout)  # type: ignore[arg-type]

log = logging.getLogger("shop")
asgi = FastAPI()


@asgi.get("/boom")
async def boom() -> None:
    raise RuntimeError("payment service exploded")


@asgi.get("/late")
async def late() -> StreamingResponse:
    def body() -> Iterator[bytes]:
        yield b"first chunk\n"
        raise RuntimeError("stream broke after the response started")

    return StreamingResponse(body(), media_type="text/plain")


@asgi.get("/own")
async def own() -> dict[str, str]:
    try:
        raise ValueError("card declined")
    except ValueError:
        log.exception("the app logs its own exception")
    return {"ok": "yes"}


@asgi.get("/mark")
async def mark() -> dict[str, str]:
    log.warning("end of the test's requests")
    return {"ok": "yes"}


otel_corr.instrument(asgi)

flask_app = flask.Flask("shop_flask")


@flask_app.get("/boom")
def flask_boom() -> str:
    raise RuntimeError("payment service exploded")


@flask_app.get("/own")
def flask_own() -> str:
    try:
        raise ValueError("card declined")
    except ValueError:
        flask_app.logger.exception("the app logs its own exception")
    return "ok"


@flask_app.get("/mark")
def flask_mark() -> str:
    log.warning("end of the test's requests")
    return "ok"


otel_corr.instrument(flask_app)


def flask_unclosed(environ: dict[str, object], start_response: object) -> list[bytes]:
    """An outer middleware that buffers the body and never calls the inner response's close()."""
    return [b"".join(flask_app(environ, start_response))]  # type: ignore[arg-type]
