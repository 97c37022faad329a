"""Flask glue: name the span after the matched rule, record handled exceptions.

Flask turns an unhandled exception into its own 500 response, so the WSGI
middleware never sees the exception: ``got_request_exception`` gives it to us.
Signals are used rather than ``before_request`` because they can be connected
after the app has served its first request.
"""

from __future__ import annotations

from typing import Any

from .wsgi import EXCEPTION_KEY, ROUTE_KEY

__all__ = ["install", "uninstall"]

_HANDLERS = "_otel_corr_flask_handlers"


def _on_request_started(sender: Any, **_: Any) -> None:
    from flask import request

    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE_KEY] = rule.rule


def _on_exception(sender: Any, exception: BaseException, **_: Any) -> None:
    from flask import request

    # Recorded on the server span when it ends, like an exception that escaped.
    request.environ[EXCEPTION_KEY] = exception


def install(app: Any, middleware: Any, state_attr: str) -> None:
    from flask import got_request_exception, request_started

    original = app.wsgi_app
    app.wsgi_app = middleware
    request_started.connect(_on_request_started, app, weak=False)
    got_request_exception.connect(_on_exception, app, weak=False)
    setattr(app, state_attr, {"wsgi_app": original})


def uninstall(app: Any) -> None:
    from flask import got_request_exception, request_started

    state = app._otel_corr_state
    app.wsgi_app = state["wsgi_app"]
    request_started.disconnect(_on_request_started, app)
    got_request_exception.disconnect(_on_exception, app)
