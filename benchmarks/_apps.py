"""The benchmarked applications, shared by ``request_overhead.py`` and uvicorn.

Every configuration is built by :func:`build` from its name.  All of them log
one line per request through the same root handler (a formatter writing to
``/dev/null``), and every tracer provider is an SDK ``TracerProvider`` with a
real ``BatchSpanProcessor`` around a no-op exporter (``_tracing.py``), so spans
go through the normal batching path and are then thrown away.  The bare
configurations never import the SDK.

For the end-to-end mode uvicorn imports ``_apps:app``; the configuration comes
from the ``BENCH_APP_CONFIG`` environment variable and is built on first
access (module ``__getattr__``), so importing this module builds nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK is imported only by the traced configurations (see _tracing.py)
    from _tracing import NoopExporter
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["APP_CONFIGS", "CONFIG_ENV", "Bench", "build", "setup_logging"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONFIG_ENV = "BENCH_APP_CONFIG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
BODY = b'{"message":"hello"}'
_app_log = logging.getLogger("app")


@dataclass
class Bench:
    """One built configuration: the ASGI app and, when traced, its provider and exporter."""

    app: ASGIApp
    provider: TracerProvider | None = None
    exporter: NoopExporter | None = None


def setup_logging() -> logging.Handler:
    """The logging every configuration pays for: one root handler, a formatter, ``/dev/null``."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # lives as long as the process
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def fastapi_app(telemetry: dict[str, Any] | None = None) -> Any:
    """A FastAPI app with one ``async def`` GET route returning a small dict, logging one line."""
    from fastapi import FastAPI

    app = FastAPI(telemetry=telemetry)  # type: ignore[arg-type]

    @app.get("/")
    async def hello() -> dict[str, str]:
        _app_log.info("hello")
        return {"message": "hello"}

    return app


async def raw_asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI callable: a 200 JSON response and one log line per HTTP request."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    _app_log.info("hello")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message["type"].rsplit(".", 1)[-1]  # "startup" or "shutdown"
        await send({"type": f"lifespan.{kind}.complete"})
        if kind == "shutdown":
            return


def django_app() -> ASGIApp:
    """Django's ASGI handler: one ``async def`` view under ``articles/<int:year>/`` in a nested ``include()``,
    logging one line, behind the middleware of ``startproject`` that needs no installed app."""
    from django.conf import settings
    from django.http import JsonResponse
    from django.urls import include, path

    async def hello(request: Any, year: int) -> JsonResponse:
        _app_log.info("hello")
        return JsonResponse({"message": "hello"})

    class Urls:  # ROOT_URLCONF may be any object with urlpatterns
        urlpatterns = [path("shop/", include([path("articles/<int:year>/", hello)]))]

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=Urls,
        INSTALLED_APPS=[],
        LOGGING_CONFIG=None,
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
    )
    from django.core.asgi import get_asgi_application

    return get_asgi_application()  # type: ignore[no-any-return]


DJANGO_PATH = "/shop/articles/2024/"


def as_server(app: ASGIApp) -> ASGIApp:
    """What a server does for Django: the scope of ``DJANGO_PATH``, the body once, then ``receive`` waits.

    Django listens for a disconnect while the view runs; the harness's ``receive`` would answer it with
    another request body.  Outside every middleware, so the bare and the instrumented rows pay it alike.
    """
    import asyncio

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        first = True
        if scope["type"] == "http":
            scope = {**scope, "path": DJANGO_PATH, "raw_path": DJANGO_PATH.encode()}

        async def receive_once() -> Message:
            nonlocal first
            if first:
                first = False
                return await receive()
            await asyncio.Event().wait()  # cancelled by Django once the response is sent
            raise AssertionError("unreachable")

        await app(scope, receive_once, send)

    return served


def _bare_django(handler: logging.Handler) -> Bench:
    return Bench(as_server(django_app()))


def _otel_corr_django(handler: logging.Handler) -> Bench:
    import _tracing

    import otel_corr

    provider, exporter = _tracing.make_provider(set_global=False)
    return Bench(as_server(otel_corr.instrument(django_app(), tracer_provider=provider)), provider, exporter)


def _bare_fastapi(handler: logging.Handler) -> Bench:
    return Bench(fastapi_app())


def _otel_corr_fastapi(handler: logging.Handler) -> Bench:
    import _tracing

    import otel_corr

    provider, exporter = _tracing.make_provider(set_global=False)
    app = fastapi_app()
    otel_corr.instrument(app, tracer_provider=provider)
    return Bench(app, provider, exporter)


def _stacked_fastapi(handler: logging.Handler) -> Bench:
    """asgi-correlation-id + contrib's FastAPI and logging instrumentors, as users stack them today."""
    import _tracing
    from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    provider, exporter = _tracing.make_provider(set_global=True)
    # A global SDK provider switches FastAPI's native telemetry on; keep only contrib's spans.
    app = fastapi_app({"tracing": False, "operation_spans": False})
    app.add_middleware(CorrelationIdMiddleware)
    handler.addFilter(CorrelationIdFilter())
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    # Trace IDs on log records only: no OTel log handler (no log export in any row).
    LoggingInstrumentor().instrument(
        tracer_provider=provider, inject_trace_context=True, enable_log_auto_instrumentation=False
    )
    return Bench(app, provider, exporter)


def _fastapi_builtin_span(handler: logging.Handler) -> Bench:
    import _tracing

    provider, exporter = _tracing.make_provider(set_global=True)
    app = fastapi_app({"operation_spans": False, "metrics": False, "logs": False})
    return Bench(app, provider, exporter)


def _bare_asgi(handler: logging.Handler) -> Bench:
    return Bench(raw_asgi_app)


def _otel_corr_asgi(handler: logging.Handler) -> Bench:
    import _tracing

    import otel_corr

    provider, exporter = _tracing.make_provider(set_global=False)
    return Bench(otel_corr.instrument(raw_asgi_app, tracer_provider=provider), provider, exporter)


def _asgi_span_floor(handler: logging.Handler) -> Bench:
    """The raw app inside a middleware that only starts and ends one plain SDK span.

    ``sdk-span-floor`` measures the same span in a tight loop, where the SDK's
    code and data stay hot in the CPU caches; this row is that floor paid
    inside a real request path, interleaved with the app's own work.
    """
    import _tracing
    from opentelemetry.trace import SpanKind

    provider, exporter = _tracing.make_provider(set_global=False)
    tracer = provider.get_tracer("bench")

    async def span_only(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await raw_asgi_app(scope, receive, send)
            return
        span = tracer.start_span("GET /", kind=SpanKind.SERVER)
        try:
            await raw_asgi_app(scope, receive, send)
        finally:
            span.end()

    return Bench(span_only, provider, exporter)


_BUILDERS: dict[str, Callable[[logging.Handler], Bench]] = {
    "bare-fastapi": _bare_fastapi,
    "otel-corr-fastapi": _otel_corr_fastapi,
    "stacked-fastapi": _stacked_fastapi,
    "fastapi-builtin-span": _fastapi_builtin_span,
    "bare-asgi": _bare_asgi,
    "otel-corr-asgi": _otel_corr_asgi,
    "asgi-span-floor": _asgi_span_floor,
    "bare-django": _bare_django,
    "otel-corr-django": _otel_corr_django,
}
APP_CONFIGS: tuple[str, ...] = tuple(_BUILDERS)


def build(config: str, handler: logging.Handler) -> Bench:
    """Build the named configuration; ``handler`` is the one from :func:`setup_logging`."""
    return _BUILDERS[config](handler)


def __getattr__(name: str) -> Any:
    """``_apps:app`` for uvicorn: the configuration named by ``BENCH_APP_CONFIG``."""
    if name != "app":
        raise AttributeError(name)
    bench = build(os.environ[CONFIG_ENV], setup_logging())
    globals()["app"] = bench.app
    return bench.app
