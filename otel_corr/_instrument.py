"""``instrument(obj)``: recognise what ``obj`` is and wire otel-corr into it.

FastAPI and Starlette are instrumented in place, outermost: their
``build_middleware_stack`` is wrapped so our middleware sits *outside*
Starlette's ``ServerErrorMiddleware`` and the 500 it produces still carries
the IDs.  Flask is instrumented in place by wrapping ``app.wsgi_app``.  A Django
``ASGIHandler``/``WSGIHandler`` is wrapped like any callable and changed in place too
(``_django``: spans named by the resolved URL pattern).  Any
other ASGI or WSGI callable is wrapped and the wrapper returned.
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from . import _patches
from ._compat import fastapi_telemetry
from ._provider import ensure_tracer_provider
from ._settings import Options, check_otel_environment, resolve_settings
from .exceptions import ConfigError

if TYPE_CHECKING:
    from ._request import Runtime

__all__ = ["instrument", "uninstrument"]

_STATE = "_otel_corr_state"
App = TypeVar("App")


def _is_starlette(app: Any) -> bool:
    return hasattr(app, "build_middleware_stack") and hasattr(app, "user_middleware")


def _is_flask(app: Any) -> bool:
    return hasattr(app, "wsgi_app") and hasattr(app, "url_map")


def _is_django(app: Any) -> bool:
    """A Django ``ASGIHandler``/``WSGIHandler`` (never imports Django: a handler means it is imported)."""
    base = sys.modules.get("django.core.handlers.base")
    return base is not None and isinstance(app, base.BaseHandler)


def _is_asgi(app: Any) -> bool:
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(getattr(app, "__call__", None))  # noqa: B004


def _positional(fn: Any) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _is_celery(app: Any) -> bool:
    return type(app).__module__.split(".")[0] == "celery" and hasattr(app, "tasks") and hasattr(app, "conf")


def _framework(app: Any) -> str:
    module = type(app).__module__.split(".")[0]
    return {"fastapi": "FASTAPI", "starlette": "STARLETTE", "flask": "FLASK", "django": "DJANGO"}.get(module, "")


def instrument(app: App, **options: Unpack[Options]) -> App:
    """Give every request of ``app`` one server span and one request ID.

    ``app`` may be a FastAPI or Starlette application, any ASGI callable, a
    Flask application, any WSGI callable, or Django's ``get_asgi_application()``
    / ``get_wsgi_application()``.  FastAPI, Starlette and Flask are
    instrumented in place and returned; a bare callable is wrapped and the
    wrapper returned, so both ``instrument(app)`` and ``app = instrument(app)``
    work.  A Django handler is wrapped and also changed in place (spans named
    by its URL patterns): serve what is returned.  Calling it twice does
    nothing more.

    Settings come from the arguments, then ``OTEL_CORR_*`` variables, then
    defaults; OpenTelemetry's own come from the standard ``OTEL_*`` variables.
    A bad value raises :class:`~otel_corr.ConfigError` here, before the app
    takes traffic.

    Args:
        app: the application.
        header_name: the request-ID header (``OTEL_CORR_REQUEST_ID_HEADER``,
            default ``X-Request-ID``).
        generator: makes a request ID when none came in (default: the trace ID).
        validator: decides whether an incoming ID is acceptable (default:
            1-128 of ``[A-Za-z0-9._:-]``).
        transformer: rewrites an accepted incoming ID before use.
        update_request_header: write the chosen ID into the request's headers
            (``OTEL_CORR_UPDATE_REQUEST_HEADER``, default true).
        trace_response: add a W3C ``traceresponse`` header
            (``OTEL_CORR_TRACE_RESPONSE``, default true).
        excluded_urls: regexes searched in the full URL; matching requests are
            not traced (default ``OTEL_PYTHON_<FRAMEWORK>_EXCLUDED_URLS``, then
            ``OTEL_PYTHON_EXCLUDED_URLS``).
        capture_request_headers, capture_response_headers: header-name regexes
            recorded as span attributes (default
            ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``/``_RESPONSE``).
        sanitize_fields: more header-name regexes to redact, on top of
            authorization, cookies and anything with token/key/secret/password.
        service_name: ``service.name`` when otel-corr builds the provider
            (default ``OTEL_SERVICE_NAME``).
        tracer_provider: use this provider instead of the global one.
        shutdown_timeout: seconds the shutdown flush may take
            (``OTEL_CORR_SHUTDOWN_TIMEOUT``, default 5).

    Returns:
        The instrumented application.

    Raises:
        ConfigError: a setting has a value otel-corr cannot use.

    .. versionadded:: 0.1
    """
    if getattr(app, _STATE, None) is not None or _is_wrapper(app):
        if _is_django(app):
            from . import _django

            return _django.wrapper_of(app)  # type: ignore[no-any-return]
        return app
    if inspect.isclass(app) or not (callable(app) or _is_celery(app)):
        raise ConfigError("app", type(app).__name__, "a FastAPI, Starlette or Flask app, or an ASGI/WSGI callable")
    check_otel_environment()
    # Imported only now: opentelemetry.propagate reads OTEL_PROPAGATORS at import and
    # would fail with a bare ValueError before check_otel_environment() could explain.
    from ._request import Runtime

    settings = resolve_settings(options, _framework(app))
    provider = ensure_tracer_provider(settings)
    runtime = Runtime(settings, provider)
    from . import propagation
    from .logging import instrument_logging

    instrument_logging(settings.service_name)
    from . import _sentry

    _sentry.install()
    propagation.install(settings.propagate, settings.header_name, provider)

    if _is_celery(app):
        from .logging import _stamp
        from .propagation import _celery

        _stamp.set_task_key(_celery.TASK_KEY)
        if "celery" in settings.propagate:
            _celery.install()
        setattr(app, _STATE, {})
        _record_app(app, "celery signals handled for its tasks")
        return app
    if _is_starlette(app):
        _instrument_starlette(app, runtime)
        telemetry = "; FastAPI's own tracing off (app._telemetry)" if getattr(app, _STATE) else ""
        _record_app(app, "build_middleware_stack wrapped: our middleware outermost" + telemetry)
        return app
    if _is_django(app):
        from . import _django

        wrapper = _django.install(app, runtime)
        _record_app(app, "resolve_request and get_response wrapped; got_request_exception connected")
        return wrapper  # type: ignore[no-any-return]
    if _is_flask(app):
        from . import _flask
        from .wsgi import CorrelationWSGIMiddleware

        _flask.install(app, CorrelationWSGIMiddleware(app.wsgi_app, runtime=runtime), _STATE)  # type: ignore[attr-defined]
        _record_app(app, "wsgi_app wrapped; request_started/got_request_exception connected")
        return app
    if _is_asgi(app):
        from .asgi import CorrelationMiddleware

        return CorrelationMiddleware(app, runtime=runtime)  # type: ignore[return-value,arg-type]
    if len(_positional(app)) >= 2:
        from .wsgi import CorrelationWSGIMiddleware

        return CorrelationWSGIMiddleware(app, runtime=runtime)  # type: ignore[return-value,arg-type]
    raise ConfigError("app", type(app).__name__, "a FastAPI, Starlette or Flask app, or an ASGI/WSGI callable")


def _is_wrapper(app: Any) -> bool:
    return type(app).__name__ in ("CorrelationMiddleware", "CorrelationWSGIMiddleware") and type(
        app
    ).__module__.startswith("otel_corr")


def _instrument_starlette(app: Any, runtime: Runtime) -> None:
    from .asgi import CorrelationMiddleware

    original = app.build_middleware_stack  # the bound method

    def build_middleware_stack() -> Any:
        return CorrelationMiddleware(original(), runtime=runtime)

    saved: dict[str, Any] = {}
    telemetry = fastapi_telemetry(app)
    if telemetry is not None:
        # FastAPI >= 0.16x traces natively as soon as an SDK provider exists: a server span
        # plus operation spans.  Ours is the one server span; switch its spans off, and its
        # exception log records too while our error line writes them (metrics stay as they are).
        keys = ["tracing", "operation_spans"] + (["logs"] if runtime.settings.error_log else [])
        for key in keys:
            if key in telemetry:
                saved[key] = telemetry[key]
                telemetry[key] = False
    app.build_middleware_stack = build_middleware_stack
    app.middleware_stack = None  # rebuilt, with us outermost, on the next call
    setattr(app, _STATE, saved)


def _app_key(app: Any) -> str:
    return f"app {id(app)}"


def _record_app(app: Any, what: str) -> None:
    """Record an app instrumented in place, so that uninstrument() with no argument undoes it too."""
    key = _app_key(app)
    try:
        # The registry must not keep an app alive; a dead app leaves nothing to undo.
        ref: Callable[[], Any] = weakref.ref(app, lambda _: _patches.forget(key))
    except TypeError:
        ref = lambda: app  # noqa: E731
    name = getattr(app, "import_name", None) or getattr(app, "main", None) or getattr(app, "title", None)

    def undo() -> None:
        target = ref()
        if target is not None:
            _uninstrument_app(target)

    target = f"{type(app).__qualname__} {name!r}" if name else f"{type(app).__qualname__} at {id(app):#x}"
    _patches.record(key, target, what, "_instrument (instrument(app))", undo)


def uninstrument(app: Any = None) -> Any:
    """Undo :func:`instrument`: for one app, or with no argument for the whole process.

    ``uninstrument(app)`` undoes that app only and returns the original application
    (for a wrapped bare callable, pass the wrapper: the wrapped app is returned).

    ``uninstrument()`` undoes every process-wide change otel-corr made, newest first
    (every app instrumented in place, every patch, the record factory, the import
    finder, the hooks, the context adopted at import, the logging set-up of
    :func:`~otel_corr.configure_logging`), so the interpreter is as it was before.
    What the OpenTelemetry API allows only once per process stays: a global
    TracerProvider or LoggerProvider otel-corr installed (see :func:`~otel_corr.patches`).
    A later :func:`instrument` works again.  Returns ``None``.

    .. versionadded:: 0.1
    """
    if app is None:
        _patches.undo_all()
        return None
    if _is_wrapper(app):
        inner = app.app
        handler = getattr(inner, "app", None) if type(inner).__module__ == "otel_corr._django" else inner
        if _is_django(handler):
            uninstrument(handler)  # the handler was changed in place too
            return handler
        return inner
    if getattr(app, _STATE, None) is None:
        return app
    if not _patches.undo(_app_key(app)):
        _uninstrument_app(app)
    return app


def _uninstrument_app(app: Any) -> None:
    saved = getattr(app, _STATE, None)
    if saved is None:
        return
    if _is_starlette(app):
        if "build_middleware_stack" in vars(app):
            del app.build_middleware_stack
        app.middleware_stack = None
        telemetry = fastapi_telemetry(app)
        if telemetry is not None:
            telemetry.update(saved)
    elif _is_flask(app):
        from . import _flask

        _flask.uninstall(app)
    elif _is_django(app):
        from . import _django

        _django.uninstall(app)
    elif _is_celery(app):
        from .propagation import _celery

        _celery.uninstall()
    delattr(app, _STATE)
