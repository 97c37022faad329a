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


_apps: set[int] = set()  # the apps our receivers are connected for


def install(app: Any, middleware: Any, state_attr: str) -> None:
    from flask import got_request_exception, request_started

    # What the instance itself held: usually nothing (the class's method), which is what uninstall puts back.
    original = vars(app).get("wsgi_app")
    app.wsgi_app = middleware
    request_started.connect(_on_request_started, app, weak=False)
    got_request_exception.connect(_on_exception, app, weak=False)
    _apps.add(id(app))
    setattr(app, state_attr, {"wsgi_app": original})


def uninstall(app: Any) -> None:
    from flask import got_request_exception, request_started

    state = app._otel_corr_state
    if state["wsgi_app"] is None:
        del app.wsgi_app
    else:
        app.wsgi_app = state["wsgi_app"]
    _apps.discard(id(app))
    for signal, receiver in ((request_started, _on_request_started), (got_request_exception, _on_exception)):
        # Disconnecting for one sender leaves the receiver registered on the signal; for the last
        # app, take it off the signal altogether.
        if _apps:
            signal.disconnect(receiver, app)
        else:
            signal.disconnect(receiver)
