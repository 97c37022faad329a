"""Django glue: name the span after the resolved URL pattern, record the exceptions Django answers itself.

``instrument(get_asgi_application())`` / ``instrument(get_wsgi_application())`` wrap the handler in the
generic ASGI/WSGI middleware, which cannot see Django's URL patterns nor the exceptions of its views
(Django turns those into its own 500 response).  So the handler *instance* is changed as well, nothing
process-wide but one signal receiver:

- its ``resolve_request`` is wrapped: the matched ``ResolverMatch.route`` (the whole pattern, through
  nested ``include()``) goes into the scope or environ, where the middleware reads the route when the
  span ends.  Django's own format, as OpenTelemetry's Django instrumentation names spans
  (``GET articles/<int:year>/``); the root pattern (``""``) is ``/``.  No match (a 404): no route.
- its ``get_response``/``get_response_async`` is wrapped to tag the request (so the signal below knows
  it is ours) and give it an exception-reporter filter (``request.exception_reporter_filter``, which
  Django honours per request): the one the project configured, plus otel-corr's secret header names,
  so ``DEBUG``'s technical 500 page never shows a header the application named secret.
- ``got_request_exception`` (connected once, recorded in the patch registry) puts the exception where
  the middleware records it on the span, and writes the error line before Django's
  ``Internal Server Error: /path`` on ``django.request``, whose filter then knows it (one error, one line).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any

from . import _patches
from ._context import current_ids
from ._redact import OPAQUE_HEADERS, is_sensitive_header
from .logging._access import ServerDuplicates, log_error, mark_error, request_summary, watch_server_errors
from .wsgi import EXCEPTION_KEY, ROUTE_KEY

if TYPE_CHECKING:
    from ._request import Runtime
    from ._settings import Settings
    from ._types import Receive, Scope, Send

__all__ = ["DjangoDuplicates", "Lifespan", "SecretHeadersFilter", "install", "route_of", "uninstall", "wrapper_of"]

_STATE = "_otel_corr_state"
_SIGNAL_KEY = "django got_request_exception receiver"
#: On a request served by an instrumented handler: that handler's settings.
_REQUEST_ATTR = "_otel_corr_settings"
_ID_KEY = "otel_corr.request_id"  # set by both middlewares in the scope/environ
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_handlers: set[int] = set()  # the handlers instrumented now: the receiver stays connected while any is


def _is_asgi(handler: Any) -> bool:
    from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped]

    return isinstance(handler, ASGIHandler)


def route_of(match: Any) -> str | None:
    """The route of a ``ResolverMatch``: the pattern as Django writes it, ``/`` for the root one."""
    route = getattr(match, "route", None)
    if not isinstance(route, str):
        return None
    return route or "/"


def _carrier(request: Any) -> dict[str, Any] | None:
    """The scope (ASGI) or environ (WSGI) the middleware reads the route and exception from."""
    carrier = getattr(request, "scope", None)
    if carrier is None:
        carrier = getattr(request, "environ", None)
    return carrier if isinstance(carrier, dict) else None


class Lifespan:
    """Django's ``ASGIHandler`` with the ASGI lifespan answered (Django refuses it).

    Why: the middleware flushes queued spans when the server says ``lifespan.shutdown``; without
    lifespan, uvicorn stops on SIGTERM without it, and the spans of the last seconds are lost.
    """

    __slots__ = ("app",)

    def __init__(self, handler: Any) -> None:
        self.app = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        received = False

        async def receive_once_seen() -> Any:
            nonlocal received
            received = True
            return await receive()

        try:  # a Django that handles lifespan itself (its startup and shutdown hooks) keeps it
            await self.app(scope, receive_once_seen, send)
            return
        except ValueError:  # "Django can only handle ASGI/HTTP connections, not lifespan."
            if received:
                raise
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def wrapper_of(handler: Any) -> Any:
    """The middleware :func:`install` put around ``handler`` (what ``instrument()`` returned)."""
    return getattr(handler, _STATE)["wrapper"]


def install(handler: Any, runtime: Runtime) -> Any:
    """Instrument ``handler`` in place and return the middleware to serve instead of it."""
    from django.core.signals import got_request_exception  # type: ignore[import-untyped]

    settings = runtime.settings
    if _is_asgi(handler):
        from .asgi import CorrelationMiddleware

        wrapper: Any = CorrelationMiddleware(Lifespan(handler), runtime=runtime)
    else:
        from .wsgi import CorrelationWSGIMiddleware

        wrapper = CorrelationWSGIMiddleware(handler, runtime=runtime)
    saved = {name: vars(handler).get(name) for name in ("resolve_request", "get_response", "get_response_async")}
    # BaseHandler.resolve_request (Django 3.2+) gives the route as soon as the URL resolves, before a
    # view's exception is written up; it is not documented, so a Django without it still gets the route
    # from the documented request.resolver_match once the response is made (before its body is sent).
    resolve = getattr(handler, "resolve_request", None)
    if callable(resolve):

        def resolve_request(request: Any) -> Any:
            match = resolve(request)  # Resolver404 (no route) goes on to Django's 404
            _note_route(request, match)
            return match

        handler.resolve_request = resolve_request
    if _is_asgi(handler):
        get_response_async = handler.get_response_async

        async def tagged_async(request: Any) -> Any:
            _tag(request, settings)
            response = await get_response_async(request)
            _note_route(request, getattr(request, "resolver_match", None))
            return response

        handler.get_response_async = tagged_async
    else:
        get_response = handler.get_response

        def tagged(request: Any) -> Any:
            _tag(request, settings)
            response = get_response(request)
            _note_route(request, getattr(request, "resolver_match", None))
            return response

        handler.get_response = tagged
    setattr(handler, _STATE, {"wrapper": wrapper, "saved": saved})
    _handlers.add(id(handler))
    if not _patches.active(_SIGNAL_KEY):
        got_request_exception.connect(_on_exception, dispatch_uid=_SIGNAL_KEY)
        _patches.record(
            _SIGNAL_KEY,
            "django.core.signals.got_request_exception",
            "records the exception Django answers with its 500 on the server span; writes the error line",
            "_django (instrument(app))",
            lambda: got_request_exception.disconnect(dispatch_uid=_SIGNAL_KEY),
        )
    if settings.error_log:
        watch_server_errors("django.request", "_django (instrument(app))", DjangoDuplicates)
    return wrapper


def uninstall(handler: Any) -> None:
    """Put back what :func:`install` changed on ``handler``; the receiver goes with the last handler."""
    state = getattr(handler, _STATE)
    for name, value in state["saved"].items():
        if value is None:
            vars(handler).pop(name, None)
        else:
            setattr(handler, name, value)
    _handlers.discard(id(handler))
    if not _handlers:
        _patches.undo(_SIGNAL_KEY)
        _patches.undo("logger 'django.request' filter")


def _note_route(request: Any, match: Any) -> None:
    """Put the matched URL pattern where the middleware names the span from (once: the first wins)."""
    carrier = _carrier(request)
    if match is None or carrier is None or ROUTE_KEY in carrier:
        return
    route = route_of(match)
    if route is not None:
        carrier[ROUTE_KEY] = route


def _tag(request: Any, settings: Settings) -> None:
    setattr(request, _REQUEST_ATTR, settings)
    # Per request, as Django allows; a middleware or view that sets its own filter later replaces this one.
    request.exception_reporter_filter = SecretHeadersFilter(settings)


def _on_exception(sender: Any, request: Any = None, **_: Any) -> None:
    """``got_request_exception``: Django is about to answer an exception with its 500 (and log it).

    Django sends it with ``send``, not ``send_robust``: an exception out of here would replace Django's
    own 500 handling (handler500, the DEBUG page, mail_admins).  So none leaves."""
    try:
        _record_exception(request)
    except Exception:
        logging.getLogger("otel_corr").debug("otel-corr: could not record a Django exception", exc_info=True)


def _record_exception(request: Any) -> None:
    settings: Settings | None = getattr(request, _REQUEST_ATTR, None)
    exc = sys.exc_info()[1]  # the signal is sent inside Django's except block (asgiref re-raises it in its thread)
    carrier = _carrier(request)
    if settings is None or exc is None or carrier is None or _ID_KEY not in carrier:
        return  # not a request of an instrumented handler (Django's test client, another one), or an excluded URL
    carrier[EXCEPTION_KEY] = exc  # recorded on the server span when it ends, like an exception that escaped
    if not settings.error_log:
        return
    from django.conf import settings as django_settings  # type: ignore[import-untyped]

    if getattr(django_settings, "DEBUG_PROPAGATE_EXCEPTIONS", False):
        return  # Django re-raises it unlogged: the middleware writes our line
    # Written now, before Django's ``Internal Server Error: /path`` (which the filter then knows); ``reraised``:
    # Django logs it too, so with no handler set up ours goes to the OTLP export only and Django's carries the IDs.
    meta = request.META
    remote_addr, remote_port = meta.get("REMOTE_ADDR"), str(meta.get("REMOTE_PORT", ""))
    client = "" if not remote_addr else f"{remote_addr}:{remote_port}" if remote_port else str(remote_addr)
    summary = request_summary(
        str(request.method),
        str(request.path),
        str(meta.get("QUERY_STRING", "")),
        {name.lower(): value for name, value in request.headers.items()},
        client,
        settings.header_key,
        settings.sanitize,
    )
    ids = current_ids()
    log_error(exc, summary, mark_error(exc, ids.trace_id, ids.span_id, ids.request_id), True)


class DjangoDuplicates(ServerDuplicates):
    """The ``django.request`` filter: Django's copy of an error our line was written for.

    Django's default logging gives its ``django`` logger two handlers of its own: ``console``, only
    when ``DEBUG`` (a ``require_debug_true`` filter), and ``mail_admins``, only when not (and it sends
    nothing without ``ADMINS``).  A handler that would turn the record away, or mail nobody, is no
    destination: without this, every 500 was written twice to a root handler (ours, then Django's
    propagated copy) in a project that left Django's logging as it is.
    """

    def destinations(self, record: logging.LogRecord) -> set[logging.Handler]:
        from django.conf import settings as django_settings
        from django.utils.log import AdminEmailHandler  # type: ignore[import-untyped]

        mails = bool(getattr(django_settings, "ADMINS", None))
        return {
            h
            for h in super().destinations(record)
            if h.filter(record) and (mails or not isinstance(h, AdminEmailHandler))
        }


class SecretHeadersFilter:
    """An exception-reporter filter: the project's own, with otel-corr's secret headers cleansed as well.

    Django's ``SafeExceptionReporterFilter`` hides ``request.META`` keys matching
    ``API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|COOKIE``; otel-corr's names (``session``, ``csrf``,
    ``credential`` and the application's ``sanitize_fields``) are hidden too.  ``baggage`` and
    ``tracestate`` are never shown as they came in; nor is a request-ID header or ``traceparent``
    otel-corr did not accept (its length is shown instead).  Everything else is the inner filter's.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: Any = None

    def _filter(self) -> Any:
        # The project's DEFAULT_EXCEPTION_REPORTER_FILTER, made only when a page is rendered (not per request).
        if self._inner is None:
            from django.views.debug import get_default_exception_reporter_filter  # type: ignore[import-untyped]

            self._inner = get_default_exception_reporter_filter()
        return self._inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._filter(), name)

    def get_safe_request_meta(self, request: Any) -> dict[str, Any]:
        """``request.META`` as the inner filter shows it, with otel-corr's secret headers cleansed."""
        inner = self._filter()
        meta: dict[str, Any] = inner.get_safe_request_meta(request)
        substitute = getattr(inner, "cleansed_substitute", "********************")
        request_id = (_carrier(request) or {}).get(_ID_KEY)  # the request ID the middleware accepted or made
        shown = {}
        for key, value in meta.items():
            if key.startswith("HTTP_") and isinstance(value, str):
                name = key[5:].lower().replace("_", "-")
                if name == self._settings.header_key:
                    value = value if value == request_id else f"[not used: {len(value)} characters]"
                elif name == "traceparent":
                    value = value if _TRACEPARENT.fullmatch(value) else f"[not used: {len(value)} characters]"
                elif name in OPAQUE_HEADERS or is_sensitive_header(name, self._settings.sanitize):
                    value = substitute
            shown[key] = value
        return shown
