"""The WSGI middleware as a client sees it: Flask routes, errors, streaming, bare WSGI callables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, Response, abort
from opentelemetry.trace import SpanKind, StatusCode

import otel_corr

from .conftest import Capture


def _flask(capture: Capture) -> Flask:
    app = Flask(__name__)

    @app.get("/users/<int:uid>")
    def user(uid: int) -> Any:
        return {"request_id": otel_corr.current_ids().request_id}

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("flask-boom")

    @app.get("/missing")
    def missing() -> Any:
        abort(404)

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                yield f"{otel_corr.current_ids().request_id}:{i}\n"

        return Response(chunks(), mimetype="text/plain", headers={"X-Request-ID": "route-set"})

    assert otel_corr.instrument(app, tracer_provider=capture.provider) is app
    return app


def _client(app: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://testserver")


def test_flask_span_is_named_after_the_rule(capture: Capture) -> None:
    """One SERVER span 'GET /users/<int:uid>' with the route and the request ID."""
    with _client(_flask(capture)) as c:
        r = c.get("/users/3", headers={"X-Request-ID": "f-1"})
    assert r.json() == {"request_id": "f-1"}
    assert r.headers["x-request-id"] == "f-1"
    span = capture.one()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /users/<int:uid>"
    assert span.attributes["http.route"] == "/users/<int:uid>"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["url.path"] == "/users/3"


def test_flask_errors_carry_ids_and_record_the_exception(capture: Capture) -> None:
    """Flask's own 500 for an exception carries the IDs; the span has the exception event and error status."""
    with _client(_flask(capture)) as c:
        r = c.get("/boom", headers={"X-Request-ID": "f-err"})
        r404 = c.get("/missing")
    assert r.status_code == 500 and r.headers["x-request-id"] == "f-err"
    assert r404.status_code == 404 and "x-request-id" in r404.headers
    boom, missing = capture.spans()
    assert boom.status.status_code is StatusCode.ERROR
    assert boom.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in boom.events] == ["exception"]
    assert missing.status.status_code is StatusCode.UNSET


def test_streaming_keeps_the_context_until_close(capture: Capture) -> None:
    """A streamed body is generated inside the request context; the span ends after the last chunk."""
    with _client(_flask(capture)) as c:
        r = c.get("/stream", headers={"X-Request-ID": "s-9"})
    assert r.text == "s-9:0\ns-9:1\ns-9:2\n"
    assert r.headers.get_list("x-request-id") == ["s-9"]
    assert capture.one().attributes["http.response.status_code"] == 200
    assert not otel_corr.current_ids()


def test_bare_wsgi_callable_is_wrapped_and_its_exception_answered(capture: Capture) -> None:
    """A bare WSGI app is wrapped; an exception becomes a 500 with the IDs instead of a bare server error."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise KeyError("nope")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["HTTP_X_REQUEST_ID"].encode()]

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)
    assert wrapped is not app
    transport = httpx.WSGITransport(app=wrapped, raise_app_exceptions=False)
    with httpx.Client(transport=transport, base_url="http://testserver") as c:
        ok = c.get("/", headers={"X-Request-ID": "not valid!"})
        err = c.get("/boom", headers={"X-Request-ID": "w-2"})
    assert ok.text == ok.headers["x-request-id"] != "not valid!"  # rewritten into the environ
    assert err.status_code == 500 and err.headers["x-request-id"] == "w-2"
    assert capture.spans()[1].attributes["error.type"] == "KeyError"


def test_flask_uninstrument(capture: Capture) -> None:
    """uninstrument() restores Flask's wsgi_app and disconnects our signals."""
    app = _flask(capture)
    otel_corr.uninstrument(app)
    with _client(app) as c:
        r = c.get("/users/1")
    assert "x-request-id" not in r.headers
    assert capture.spans() == []


def test_a_server_without_remote_port_keeps_the_client_address(capture: Capture) -> None:
    """wsgiref-style environs carry REMOTE_ADDR only: the span and the error line still name the client."""
    import logging
    import sys
    import wsgiref.util

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "REMOTE_ADDR": "10.1.2.3"}
    wsgiref.util.setup_testing_defaults(environ)
    environ.pop("REMOTE_PORT", None)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("otel_corr.error").addHandler(handler)
    try:
        try:
            wrapped(environ, lambda status, headers, exc_info=None: None)
        except RuntimeError:
            assert sys.exc_info()[0] is RuntimeError
    finally:
        logging.getLogger("otel_corr.error").removeHandler(handler)
    assert capture.one().attributes is not None and capture.one().attributes["client.address"] == "10.1.2.3"
    assert [r.request["client"] for r in records] == ["10.1.2.3"]  # type: ignore[attr-defined]


def test_flasks_test_client_that_never_closes_leaves_no_request_behind(capture: Capture) -> None:
    """Werkzeug's test client does not close a response it was not asked to buffer: the request's
    context used to stay attached in the test's thread, so the next request (another client, even
    an explicit X-Request-ID) became its child and took its request ID."""
    app = _flask(capture)
    client = app.test_client()
    first = client.get("/users/1", headers={"X-Request-ID": "flask-one"})
    assert first.json == {"request_id": "flask-one"}
    assert not otel_corr.current_ids()  # nothing of the request is left in this thread
    second = client.get("/users/2", headers={"X-Request-ID": "flask-two"})
    assert second.json == {"request_id": "flask-two"} and second.headers["X-Request-ID"] == "flask-two"
    streamed = client.get("/stream", headers={"X-Request-ID": "flask-three"})
    assert streamed.get_data(as_text=True) == "flask-three:0\nflask-three:1\nflask-three:2\n"
    assert not otel_corr.current_ids()
    first.close()
    second.close()
    streamed.close()
    spans = capture.spans()
    assert [s.attributes["request.id"] for s in spans] == ["flask-one", "flask-two", "flask-three"]
    assert all(s.parent is None for s in spans)
    assert len({s.context.trace_id for s in spans}) == 3


def test_a_body_that_fails_at_once_or_on_close_still_ends_its_request(capture: Capture) -> None:
    """An iterable whose iter() raises left the span open and wrote no error line; a generator whose
    cleanup raised was recorded as a success.  Either way nothing of the request stays attached."""

    class FailsAtOnce:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("iter failed")

    def fails_on_close() -> Iterator[bytes]:
        try:
            yield b"a"
            yield b"b"
        except GeneratorExit:
            raise RuntimeError("cleanup failed") from None

    bodies = {"/at-once": FailsAtOnce, "/on-close": fails_on_close}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return bodies[environ["PATH_INFO"]]()

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)
    environ = {"REQUEST_METHOD": "GET", "SERVER_NAME": "h", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    with pytest.raises(RuntimeError, match="iter failed"):
        wrapped({**environ, "PATH_INFO": "/at-once"}, lambda *a: None)
    body = wrapped({**environ, "PATH_INFO": "/on-close"}, lambda *a: None)
    assert next(iter(body)) == b"a" and not otel_corr.current_ids()
    with pytest.raises(RuntimeError, match="cleanup failed"):
        body.close()  # type: ignore[attr-defined]
    assert not otel_corr.current_ids()
    at_once, on_close = capture.spans()
    assert at_once.status.status_code is StatusCode.ERROR and at_once.attributes["error.type"] == "RuntimeError"
    assert on_close.status.status_code is StatusCode.ERROR and on_close.attributes["error.type"] == "RuntimeError"
