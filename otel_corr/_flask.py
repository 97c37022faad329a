"""Flask glue: name the span after the matched rule, record handled exceptions.

Flask turns an unhandled exception into its own 500 response, so the WSGI
middleware never sees the exception: ``got_request_exception`` gives it to us.
Signals are used rather than ``before_request`` because they can be connected
after the app has served its first request.

Flask then logs it on the app's logger (``Exception on /path [GET]``): our error line is
written in the signal, before it, so that the filter on the app's logger
(``logging._access.ServerDuplicates``) knows it, and so that it is written even when an outer
middleware never closes the response.
"""

from __future__ import annotations

from typing import Any

from . import _patches
from ._context import current_ids
from .logging._access import log_error, mark_error, request_summary, watch_server_errors
from .wsgi import EXCEPTION_KEY, ROUTE_KEY, _all_headers

__all__ = ["install", "uninstall"]

_HANDLERS = "_otel_corr_flask_handlers"
_STATE = "_otel_corr_state"


def _on_request_started(sender: Any, **_: Any) -> None:
    from flask import request

    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE_KEY] = rule.rule


def _on_exception(sender: Any, exception: BaseException, **_: Any) -> None:
    from flask import request

    # Recorded on the server span when it ends, like an exception that escaped.
    environ = request.environ
    environ[EXCEPTION_KEY] = exception
    state = getattr(sender, _STATE, None)
    if state is None or not state.get("error_log") or "otel_corr.request_id" not in environ:
        return
    propagate = sender.config.get("PROPAGATE_EXCEPTIONS")
    if propagate or (propagate is None and (sender.testing or sender.debug)):
        return  # Flask re-raises it unlogged: the WSGI middleware writes our line
    # Written now, before Flask's ``Exception on ...`` (which the filter then drops), and not when
    # the response is closed: an outer middleware that never calls close() would leave it unwritten.
    # complete() at close finds the mark logged and writes nothing more.
    settings = state["settings"]
    get = environ.get
    remote_addr, remote_port = get("REMOTE_ADDR"), str(get("REMOTE_PORT", ""))
    client = "" if not remote_addr else f"{remote_addr}:{remote_port}" if remote_port else str(remote_addr)
    summary = request_summary(
        str(get("REQUEST_METHOD", "GET")),
        get("SCRIPT_NAME", "") + get("PATH_INFO", ""),
        str(get("QUERY_STRING", "")),
        _all_headers(environ),
        client,
        settings.header_key,
        settings.sanitize,
    )
    ids = current_ids()
    log_error(exception, summary, mark_error(exception, ids.trace_id, ids.span_id, ids.request_id), True)


_apps: set[int] = set()  # the apps our receivers are connected for


def install(app: Any, middleware: Any, state_attr: str) -> None:
    from flask import got_request_exception, request_started

    # What the instance itself held: usually nothing (the class's method), which is what uninstall puts back.
    original = vars(app).get("wsgi_app")
    app.wsgi_app = middleware
    request_started.connect(_on_request_started, app, weak=False)
    got_request_exception.connect(_on_exception, app, weak=False)
    _apps.add(id(app))
    error_log = middleware.runtime.settings.error_log
    setattr(app, state_attr, {"wsgi_app": original, "error_log": error_log, "settings": middleware.runtime.settings})
    if error_log:
        # The logger Flask's app.logger is, without making app.logger now (Flask would add its
        # default handler to it if no handler were set up yet).
        watch_server_errors(app.name, "_flask (instrument(app))")


def uninstall(app: Any) -> None:
    from flask import got_request_exception, request_started

    state = app._otel_corr_state
    _patches.undo(f"logger {app.name!r} filter")
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
