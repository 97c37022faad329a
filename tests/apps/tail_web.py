"""The Flask service of the ``otel-corr tail`` tests (service name from OTEL_SERVICE_NAME), under real gunicorn."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify

import otel_corr

otel_corr.configure_logging()
app = Flask(__name__)
log = logging.getLogger("web")


@app.get("/hello/<name>")
def hello(name: str) -> Response:
    log.info("saying hello to %s", name)
    return jsonify(hello=name)


@app.get("/gone")
def gone() -> tuple[Response, int]:
    log.warning("someone asked for the gone page")
    return jsonify(error="gone"), 404


otel_corr.instrument(app)
