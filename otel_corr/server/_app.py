"""The backend's HTTP side: OTLP/HTTP ingest and Jaeger's query API (v1 and api_v3).

One ASGI app; ``serve`` binds it to both ports and :func:`dispatch_by_port`
sends OTLP paths on the OTLP port and everything else on the query port.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..exceptions import StoreUnavailable
from ._admission import Budget, Busy
from ._ids import parse_trace_id
from ._jaeger import transform_otlp, v1_envelope, v1_error, v1_trace, v3_resource_spans, v3_trace_summary
from ._model import KIND_NAMES, Span
from ._otlp import (
    BadRequest,
    Inflater,
    SpanBatch,
    TooLarge,
    decode_logs,
    max_decode_cost,
    parse_logs,
    parse_spans,
    span_row_steps,
)
from ._query import INT64_MAX, QueryError, V3Search, go_duration_ns, int_param, rfc3339_ns, tags_param, v3_search
from ._store import QueryTimeout, StoreFull
from ._store_api import TraceStore, missing, missing_header, missing_text, partial_answers
from ._tail import Hub, TailFilter, TailResponse
from ._ui import ui_routes

__all__ = ["build_app", "find_trace"]

#: Spans decoded between two returns to the event loop (about 1 ms of CPU): a query that arrives
#: meanwhile waits at most that long for the loop (lookup p99 under ingest 18-22 ms with 128).
_DECODE_STEP = 64
_THREAD_ABOVE = 1 << 20
#: Spans (or log records) in one OTLP request: 4x the 8,192 a collector's batch processor sends.
MAX_ITEMS = 32768
_KIND_BY_NAME = {v: k for k, v in KIND_NAMES.items() if k}
#: Queries answered at once, each on a thread of its own with a read-only connection: never on the
#: event loop, which keeps decoding OTLP meanwhile.  One core is left to the loop and the writer
#: (on 2 cores, one reader): a query thread per core had OTLP acknowledgements wait for the CPU
#: (figures in docs/reliability.md).  A query waiting for a reader spends its budget meanwhile.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2
_READERS = max(1, min(4, _CORES - 1))
#: Epoch microseconds / milliseconds whose nanoseconds still fit the store's int64.
_MAX_US, _MAX_MS = INT64_MAX // 1000, INT64_MAX // 1_000_000

#: The response header naming shards a partial answer lacks (a ClickHouse store with a shard down).
MISSING_HEADER = "X-Otel-Corr-Missing"

Handler = Callable[[Request], Response]
Endpoint = Callable[[Request], Awaitable[Response]]
#: The largest OTLP/JSON body ``/api/transform`` converts: parsed into dicts and messages, JSON
#: takes several times its size in memory, and the UI's upload tab is for one trace or a few.
_MAX_TRANSFORM_BODY = 8 * 1024 * 1024


def find_trace(store: TraceStore, text: str, *, details: bool = True) -> tuple[bytes, list[Span]] | None:
    """A trace by trace ID in any accepted form, else by request ID (its spans undecoded with
    ``details`` False: see ``Store.trace``)."""
    trace_id = parse_trace_id(text)
    if trace_id is not None:
        spans = store.trace(trace_id, details=details)
        if spans:
            return trace_id, spans
    for candidate in store.traces_for_request(text.strip()[:256], limit=1):
        spans = store.trace(candidate, details=details)
        if spans:
            return candidate, spans
    return None


def _v3_found(store: TraceStore, search: V3Search) -> list[list[Span]]:
    """The traces an api_v3 search finds, newest first: what runs off the event loop."""
    found_ids = store.search(
        service=search.service,
        operation=search.operation,
        tags=search.attributes,
        start_ns=search.start_ns,
        end_ns=search.end_ns,
        min_duration_ns=search.min_duration_ns,
        max_duration_ns=search.max_duration_ns,
        limit=search.limit,
    )
    found = store.traces(found_ids)
    return [found[t] for t in found_ids if t in found]


def _v3_operations(store: TraceStore, service: str | None, kind: int | None) -> list[dict[str, str]]:
    """A service's operations, or every service's (as Jaeger lists them when no service is given)."""
    services = [service] if service else store.services()
    found = {(name, k) for s in services for name, k in store.operations(s, kind)}
    return [{"name": n, "spanKind": KIND_NAMES.get(k, "internal")} for n, k in sorted(found)]


def _otlp_response(request: Request, kind: str, rejected: int, reason: str) -> Response:
    field = "rejectedSpans" if kind == "traces" else "rejectedLogRecords"
    partial = {field: str(rejected), "errorMessage": reason} if rejected else {}
    if request.headers.get("content-type", "").startswith("application/x-protobuf"):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        message: Any = ExportTraceServiceResponse() if kind == "traces" else ExportLogsServiceResponse()
        if rejected:
            setattr(message.partial_success, "rejected_spans" if kind == "traces" else "rejected_log_records", rejected)
            message.partial_success.error_message = reason
        return Response(message.SerializeToString(), media_type="application/x-protobuf")
    return JSONResponse({"partialSuccess": partial})


def _error(request: Request, status: int, message: str) -> Response:
    # OTLP/HTTP errors carry a google.rpc.Status; the message is the one-line reason.
    if request.headers.get("content-type", "").startswith("application/x-protobuf"):
        from google.rpc import status_pb2

        return Response(
            status_pb2.Status(code=3, message=message).SerializeToString(),
            status_code=status,
            media_type="application/x-protobuf",
        )
    return JSONResponse({"code": 3, "message": message}, status_code=status)


def _busy() -> Response:
    return Response("store busy, retry", status_code=503, headers={"Retry-After": "1"})


def query_error(request: Request, status: int, message: str) -> Response:
    """A query route's error in the shape its API uses: api_v3, the page's API, or v1's envelope."""
    path = request.url.path
    if path.startswith("/api/v3/"):
        return JSONResponse({"error": {"httpCode": status, "message": message}}, status_code=status)
    if path.startswith(("/api/ui/", "/api/search")):
        return JSONResponse({"error": message}, status_code=status)
    return JSONResponse(v1_error(status, message), status_code=status)


def off_the_loop(store: TraceStore, budget_s: float) -> Callable[[Handler], Endpoint]:
    """Wrap a blocking query handler: it runs on a reader thread within ``budget_s`` seconds.

    The budget starts when the request arrives (time spent waiting for a reader counts): past
    it, the query is interrupted and the answer is 503 with the reason.  A :class:`QueryError`
    from the handler (see ``_query``) is a 400 with its one-line message.
    """
    pool = ThreadPoolExecutor(_READERS, thread_name_prefix="otel-corr-read")
    too_long = f"the query ran over its {budget_s:g} s budget; narrow the time range or name a service"

    def run(handler: Handler, request: Request, deadline: float) -> Response:
        # One scope per query: the shards its reads could not reach are noted in it (``_store_api``).
        with partial_answers() as shortfalls:
            try:
                with store.budget(deadline):
                    response = handler(request)
            except QueryError as exc:
                return query_error(request, 400, str(exc))
            except QueryTimeout:
                return query_error(request, 503, too_long)
            except StoreUnavailable as exc:  # the shard holding a looked-up key does not answer
                return query_error(request, 503, str(exc)[:2000])
            if shortfalls:
                # Every face's answer says so in a header (api_v3 has no field for it); v1's envelope
                # and the page's JSON carry it in their body too (see ``missing``).
                response.headers[MISSING_HEADER] = missing_header(shortfalls)
            return response

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            deadline = time.monotonic() + budget_s
            return await asyncio.wrap_future(pool.submit(run, handler, request, deadline))

        endpoint.__name__ = endpoint.__qualname__ = handler.__name__  # the route's name
        return endpoint

    return wrap


def build_app(
    store: TraceStore,
    *,
    max_body: int = 16 * 1024 * 1024,
    otlp_ports: tuple[int, int] | None = None,
    max_items: int = MAX_ITEMS,
    budget: Budget | None = None,
    query_budget: float = 5.0,
    tail_hub: Hub | None = None,
) -> Starlette:
    """The Starlette app with every route; run it with :func:`otel_corr.server.serve`.

    ``otlp_ports`` (HTTP, gRPC) are what ``/api/otel-corr/info`` tells a client that found this
    server on its query port (``otel-corr demo`` sends its spans there).  ``budget`` is the
    decoding memory OTLP requests share (with gRPC's: pass the same one); by default, enough
    for one body at both limits (``max_body`` bytes, ``max_items`` spans or log records).
    ``tail_hub`` feeds ``/api/tail`` (by default one of its own, fed by ``store``; ``serve`` passes
    its own to close it when it stops).
    """
    budget = budget or Budget(max_decode_cost(max_body, max_items))
    if tail_hub is None:
        tail_hub = Hub()
        store.on_committed = tail_hub.publish
    hub = tail_hub
    reads = off_the_loop(store, query_budget)

    async def ingest(request: Request, kind: str) -> Response:
        if budget.full:  # refused before a byte of the body is read
            return _busy()
        with budget.ticket() as ticket:
            try:
                # Inflated as it arrives, the ticket growing with it: memory is admitted before it is taken.
                inflater = Inflater(request.headers.get("content-encoding", ""), max_body)
                async for chunk in request.stream():
                    inflater.feed(chunk)
                    ticket.need(len(inflater.body))
                body = inflater.finish()
                ctype = request.headers.get("content-type", "")
                # A big body is parsed on a thread: its spans are counted on the wire by Python code
                # (~0.5 s for 16 MiB of minimal spans), which there gives the loop the GIL every 0.5 ms.
                in_thread = len(body) > _THREAD_ABOVE
                if kind == "traces":
                    parse = functools.partial(parse_spans, body, ctype, max_items=max_items, admit=ticket.need)
                    views = await asyncio.to_thread(parse) if in_thread else parse()
                    del body, inflater, parse  # the views hold what is needed
                    batch = SpanBatch()
                    for _ in span_row_steps(views, store.resource_id, batch, _DECODE_STEP):
                        await asyncio.sleep(0)  # queries waiting on the loop run between steps
                    del views
                    rejected, reason = batch.rejected, batch.reason
                    committed = store.submit(batch.rows, batch.resources)
                else:
                    parse_l = functools.partial(parse_logs, body, ctype, max_items=max_items, admit=ticket.need)
                    logs, rejected, reason = decode_logs(await asyncio.to_thread(parse_l) if in_thread else parse_l())
                    committed = store.submit([], [], logs)
            except TooLarge as exc:
                return _error(request, 413, str(exc))
            except BadRequest as exc:
                return _error(request, 400, str(exc))
            except (StoreFull, Busy):
                return _busy()
            # Acknowledge only once committed: a sender that got its 200 never loses the batch to a crash.
            # The writer groups what concurrent senders queued into one transaction, so this costs a
            # lone sequential sender the most (see docs/local-backend.md).  The ticket is held until
            # then: the rows waiting for the writer are memory too.
            try:
                await asyncio.wrap_future(committed)
            except StoreUnavailable as exc:  # a ClickHouse shard down: the sender retries, told why
                return Response(f"not stored, retry: {exc}"[:2000], status_code=503, headers={"Retry-After": "5"})
            except Exception:
                return _busy()  # logged by the writer; the batch is not stored, so the sender should retry
            return _otlp_response(request, kind, rejected, reason)

    async def v1_traces_post(request: Request) -> Response:
        return await ingest(request, "traces")

    async def v1_logs_post(request: Request) -> Response:
        return await ingest(request, "logs")

    # --- Jaeger v1 --------------------------------------------------------------------------

    def v1_json(data: Any, status: int = 200) -> JSONResponse:
        shortfalls = missing()
        if shortfalls and isinstance(data, dict) and "errors" in data:
            # Jaeger's envelope has room for it: the UI shows these messages over the results.
            data["errors"] = [*(data["errors"] or []), {"code": 206, "msg": missing_text(shortfalls)}]
        return JSONResponse(data, status_code=status)

    def api_services(request: Request) -> Response:
        services = store.services()
        return v1_json(v1_envelope(services, total=len(services)))

    def api_service_operations(request: Request) -> Response:
        names = sorted({name for name, _ in store.operations(request.path_params["service"])})
        return v1_json(v1_envelope(names, total=len(names)))

    def api_operations(request: Request) -> Response:
        service = request.query_params.get("service")
        if not service:
            return v1_json(v1_error(400, "parameter 'service' is required"), 400)
        kind_name = request.query_params.get("spanKind")
        kind = _KIND_BY_NAME.get(kind_name) if kind_name else None
        ops = [{"name": n, "spanKind": KIND_NAMES.get(k, "internal")} for n, k in store.operations(service, kind)]
        return v1_json(v1_envelope(ops, total=len(ops)))

    def api_trace(request: Request) -> Response:
        found = find_trace(store, request.path_params["trace_id"])
        if found is None:
            return v1_json(v1_error(404, "trace not found"), 404)
        trace_id, spans = found
        return v1_json(v1_envelope([v1_trace(spans, store.logs(trace_id))]))

    def api_traces(request: Request) -> Response:
        q = request.query_params
        try:
            ids = q.getlist("traceID")
            if ids:
                data, errors = [], []
                for text in ids:
                    found = find_trace(store, text)
                    if found is None:
                        errors.append({"code": 404, "msg": "trace not found", "traceID": text})
                    else:
                        data.append(v1_trace(found[1], store.logs(found[0])))
                return v1_json(v1_envelope(data, errors=errors or None))
            service = q.get("service")
            if not service:
                raise QueryError("parameter 'service' is required")
            now_us = time.time_ns() // 1000
            start_us = int_param("start", q["start"], 0, _MAX_US) if q.get("start") else now_us - 2 * 86_400_000_000
            end_us = int_param("end", q["end"], 0, _MAX_US) if q.get("end") else now_us
            min_d = go_duration_ns("minDuration", q["minDuration"]) if q.get("minDuration") else None
            max_d = go_duration_ns("maxDuration", q["maxDuration"]) if q.get("maxDuration") else None
            if min_d is not None and max_d is not None and max_d < min_d:
                raise QueryError("maxDuration must be greater than minDuration")
            limit = min(int_param("limit", q["limit"], 0, INT64_MAX) if q.get("limit") else 100, 1500) or 100
            found_ids = store.search(
                service=service,
                operation=q.get("operation") or None,
                tags=tags_param(q.get("tags"), q.getlist("tag")),
                start_ns=start_us * 1000,
                end_ns=end_us * 1000,
                min_duration_ns=min_d,
                max_duration_ns=max_d,
                limit=limit,
            )
        except QueryError as exc:
            return v1_json(v1_error(400, str(exc)), 400)
        # The traces found, in one read per shard (not one after another): a search's cost is its own
        # query plus one round, whatever the limit.
        spans, logs = store.traces_and_logs(found_ids)
        data = [v1_trace(spans[t], logs[t]) for t in found_ids if t in spans]
        return v1_json(v1_envelope(data))

    def api_dependencies(request: Request) -> Response:
        q = request.query_params
        end_ms = int_param("endTs", q["endTs"], 0, _MAX_MS) if q.get("endTs") else time.time_ns() // 1_000_000
        lookback_ms = int_param("lookback", q["lookback"], 0, _MAX_MS) if q.get("lookback") else 86_400_000
        deps = store.dependencies(max(0, end_ms - lookback_ms) * 1_000_000, end_ms * 1_000_000)
        service = q.get("service")
        data = [{"parent": p, "child": c, "callCount": n} for p, c, n in deps if not service or service in (p, c)]
        return v1_json(v1_envelope(data))

    # --- Jaeger api_v3 ----------------------------------------------------------------------

    def v3_error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"httpCode": status, "message": message}}, status_code=status)

    def v3_services(request: Request) -> Response:
        return JSONResponse({"services": store.services()})

    def v3_operations(request: Request) -> Response:
        q = request.query_params
        kind_name = q.get("spanKind") or q.get("span_kind")
        kind = _KIND_BY_NAME.get(kind_name) if kind_name else None
        if kind_name and kind is None:
            return v3_error(400, f"spanKind: {kind_name[:40]!r} is not one of {', '.join(sorted(_KIND_BY_NAME))}")
        return JSONResponse({"operations": _v3_operations(store, q.get("service"), kind)})

    def v3_trace(request: Request) -> Response:
        q = request.query_params
        try:
            # Validated as Jaeger does; the store answers a trace by ID alone, so they narrow nothing.
            for names in (("startTime", "start_time"), ("endTime", "end_time")):
                for name in names:
                    if q.get(name):
                        rfc3339_ns(name, q[name])
                        break
        except QueryError as exc:
            return v3_error(400, str(exc))
        found = find_trace(store, request.path_params["trace_id"])
        if found is None:
            return v3_error(404, "No traces found")
        return JSONResponse({"result": {"resourceSpans": v3_resource_spans(found[1])}})

    def v3_traces(request: Request) -> Response:
        try:
            search = v3_search(request.query_params)
        except QueryError as exc:
            return v3_error(400, str(exc))
        traces = _v3_found(store, search)
        if not traces:
            return v3_error(404, "No traces found")  # api_v3 answers an empty search with 404, as Jaeger
        return JSONResponse({"result": {"resourceSpans": v3_resource_spans([s for t in traces for s in t])}})

    def v3_trace_summaries(request: Request) -> Response:
        # Since v2.19 the Jaeger UI's Find Traces reads this (jaeger-ui #3943): one summary per trace.
        try:
            search = v3_search(request.query_params)
        except QueryError as exc:
            return v3_error(400, str(exc))
        traces = _v3_found(store, search)
        # An empty list is `{}` and 200 here (proto3 JSON drops empty lists), unlike /api/v3/traces.
        return JSONResponse({"summaries": [v3_trace_summary(t) for t in traces]} if traces else {})

    async def api_transform(request: Request) -> Response:
        # The UI's upload tab posts OTLP/JSON here (as text/plain) and shows the v1 traces it gets back.
        # Its decoding memory comes out of the budget OTLP ingest shares, admitted before it is taken.
        if budget.full:
            return v1_json(v1_error(503, "busy decoding other bodies, retry"), 503)
        with budget.ticket() as ticket:
            try:
                body = bytearray()
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > _MAX_TRANSFORM_BODY:
                        return v1_json(v1_error(413, f"body is over {_MAX_TRANSFORM_BODY} bytes"), 413)
                    ticket.need(len(body))
                convert = functools.partial(transform_otlp, bytes(body), max_items=max_items, admit=ticket.need)
                traces = await run_in_threadpool(convert)
            except BadRequest as exc:
                return v1_json(v1_error(400, f"cannot unmarshal OTLP: {exc}"), 400)
            except TooLarge as exc:
                return v1_json(v1_error(413, str(exc)), 413)
            except Busy:
                return v1_json(v1_error(503, "busy decoding other bodies, retry"), 503)
        return v1_json(v1_envelope(traces))

    async def info(request: Request) -> Response:
        from .._version import __version__

        http_port, grpc_port = otlp_ports or (None, None)
        return JSONResponse({"version": __version__, "otlp_http": http_port, "otlp_grpc": grpc_port})

    async def tail(request: Request) -> Response:
        from .._version import __version__

        if request.headers.get("sec-fetch-site", "none") not in ("none", "same-origin"):
            # A page elsewhere loading the stream as an image or a frame sends no Origin for the
            # guard to refuse; browsers do send this.  The CLI sends neither.
            return JSONResponse({"error": "the stream is not for other sites' pages"}, status_code=403)
        try:
            wanted = TailFilter.from_query(request.query_params)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        subscriber = hub.subscribe(wanted)
        if subscriber is None:
            reason = (
                "otel-corr serve is shutting down"
                if hub.closing
                else f"{hub.max_subscribers} tails already follow this server; stop one and retry"
            )
            return JSONResponse({"error": reason}, status_code=503, headers={"Retry-After": "5"})
        hello: dict[str, Any] = {"version": __version__}
        if store.shared:  # never silent: a tail of one replica is not the cluster's
            hello["note"] = (
                "this serve shares its store with other replicas: the stream holds what this one receives;"
                " follow each replica (or send the stream's senders to one) to see everything"
            )
        return TailResponse(hub, subscriber, hello)

    routes = [
        Route("/api/otel-corr/info", info),
        Route("/api/tail", tail),
        Route("/v1/traces", v1_traces_post, methods=["POST"]),
        Route("/v1/logs", v1_logs_post, methods=["POST"]),
        Route("/api/services", reads(api_services)),
        Route("/api/services/{service:path}/operations", reads(api_service_operations)),
        Route("/api/operations", reads(api_operations)),
        Route("/api/traces", reads(api_traces)),
        # :path so that a base64 trace ID with "/" (sent as %2F) still reaches the handler.
        Route("/api/traces/{trace_id:path}", reads(api_trace)),
        Route("/api/transform", api_transform, methods=["POST"]),
        Route("/api/dependencies", reads(api_dependencies)),
        Route("/api/v3/services", reads(v3_services)),
        Route("/api/v3/operations", reads(v3_operations)),
        Route("/api/v3/traces", reads(v3_traces)),
        Route("/api/v3/traces/{trace_id:path}", reads(v3_trace)),
        Route("/api/v3/trace-summaries", reads(v3_trace_summaries)),
        *ui_routes(store, find_trace, reads),
    ]
    return Starlette(routes=routes)


def dispatch_by_port(app: Callable[..., Awaitable[None]], otlp_port: int) -> Callable[..., Awaitable[None]]:
    """OTLP paths only on the OTLP port; everything else only on the query port."""

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server") or ("", 0)
            on_otlp_port = server[1] == otlp_port
            if on_otlp_port != scope["path"].startswith("/v1/"):
                await send(
                    {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"Not Found"})
                return
        await app(scope, receive, send)

    return dispatch
