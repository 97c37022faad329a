"""The same routes as a FastAPI app (``asgi``) and a Flask app (``wsgi``), for the parity and secrets tests.

Configured from the environment, read at import (each server process imports this module):

* ``PARITY_OPTIONS``: JSON keyword arguments for :func:`otel_corr.instrument`; ``"hooks": true``
  adds a validator (IDs starting ``ok-``) and a transformer (upper-case).
* ``PARITY_LOG``: a file for JSON log lines (``configure_logging``); unset: logging is left
  alone, so the library's own warnings go to stderr through Python's last-resort handler.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flask
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import baggage

import otel_corr

_OPTIONS: dict[str, Any] = json.loads(os.environ.get("PARITY_OPTIONS", "{}"))
if _OPTIONS.pop("hooks", False):
    _OPTIONS["validator"] = lambda value: value.startswith("ok-")
    _OPTIONS["transformer"] = str.upper
_HEADER = _OPTIONS.get("header_name", "X-Request-ID")

if "PARITY_LOG" in os.environ:
    otel_corr.configure_logging("json", stream=open(os.environ["PARITY_LOG"], "a", buffering=1))


def _ids(seen: str | None) -> dict[str, Any]:
    ids = otel_corr.current_ids()
    return {
        "trace_id": ids.trace_id,
        "span_id": ids.span_id,
        "request_id": ids.request_id,
        "seen": seen,  # the request-ID header as the app reads it
        "baggage": dict(baggage.get_all()),
    }


_OWN = {"X-Request-ID": "set-by-route", "traceresponse": "00-set-by-route", "X-Custom": "c-value"}

# --- ASGI ------------------------------------------------------------------------------

asgi = FastAPI()


@asgi.get("/ids")
async def asgi_ids(request: Request) -> dict[str, Any]:
    return _ids(request.headers.get(_HEADER))


@asgi.get("/own")
async def asgi_own() -> JSONResponse:
    return JSONResponse({"ok": True}, headers=_OWN)


@asgi.get("/unavailable")
async def asgi_unavailable() -> JSONResponse:
    return JSONResponse({"code": 503}, status_code=503)


@asgi.get("/boom")
async def asgi_boom() -> None:
    raise RuntimeError("boom")


@asgi.post("/login")
async def asgi_login(request: Request) -> None:
    credentials = await request.json()
    raise RuntimeError(f"login failed for user {credentials.get('user')!r}")


@asgi.get("/health")
async def asgi_health() -> dict[str, str]:
    return {"request_id": otel_corr.current_ids().request_id}


otel_corr.instrument(asgi, **_OPTIONS)

# --- WSGI ------------------------------------------------------------------------------

wsgi = flask.Flask(__name__)


@wsgi.get("/ids")
def wsgi_ids() -> Any:
    return flask.jsonify(_ids(flask.request.headers.get(_HEADER)))


@wsgi.get("/own")
def wsgi_own() -> Any:
    return flask.jsonify({"ok": True}), 200, _OWN


@wsgi.get("/unavailable")
def wsgi_unavailable() -> Any:
    return flask.jsonify({"code": 503}), 503


@wsgi.get("/boom")
def wsgi_boom() -> Any:
    raise RuntimeError("boom")


@wsgi.post("/login")
def wsgi_login() -> Any:
    credentials = flask.request.get_json()
    raise RuntimeError(f"login failed for user {credentials.get('user')!r}")


@wsgi.get("/health")
def wsgi_health() -> Any:
    return flask.jsonify({"request_id": otel_corr.current_ids().request_id})


otel_corr.instrument(wsgi, **_OPTIONS)
