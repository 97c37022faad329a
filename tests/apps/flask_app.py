"""The Flask app the end-to-end tests run under a real gunicorn (configured by OTEL_* variables)."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, Response, jsonify

import otel_corr

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id: int) -> Response:
    ids = otel_corr.current_ids()
    return jsonify(trace_id=ids.trace_id, span_id=ids.span_id, request_id=ids.request_id)


@app.get("/boom")
def boom() -> Response:
    raise RuntimeError("boom")


@app.get("/stream")
def stream() -> Response:
    def chunks() -> Iterator[str]:
        for i in range(3):
            yield f"{otel_corr.current_ids().request_id}:{i}\n"

    return Response(chunks(), mimetype="text/plain")


otel_corr.instrument(app)
