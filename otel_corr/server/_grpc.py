"""OTLP/gRPC ingest, on grpcio's own server (its thread pool, not the event loop)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ..exceptions import StoreUnavailable
from ._admission import Budget, Busy
from ._otlp import BadRequest, TooLarge, decode_logs, parse_logs, parse_spans, span_rows
from ._store import StoreFull
from ._store_api import TraceStore

__all__ = ["start_grpc"]

_PROTOBUF = "application/x-protobuf"
#: Calls beyond the worker threads wait for one (their messages not yet received); past this many
#: grpcio answers RESOURCE_EXHAUSTED itself.
_MAX_CALLS = 32


def _committed(done: Future[None], context: Any) -> None:
    """OK only once committed (this handler runs on grpcio's pool, so it may wait); else UNAVAILABLE."""
    try:
        done.result(timeout=60)
    except StoreUnavailable as exc:  # a ClickHouse shard down: the reason names it
        context.abort(grpc.StatusCode.UNAVAILABLE, f"not stored, retry: {exc}"[:1000])
    except Exception:
        context.abort(grpc.StatusCode.UNAVAILABLE, "store could not commit, retry")


class _Export:
    """TraceService.Export and LogsService.Export on the request's bytes (see :func:`start_grpc`)."""

    def __init__(self, store: TraceStore, budget: Budget, max_items: int) -> None:
        self.store, self.budget, self.max_items = store, budget, max_items

    def traces(self, body: bytes, context: Any) -> Any:
        response = trace_service_pb2.ExportTraceServiceResponse()
        with self.budget.ticket() as ticket:
            try:
                ticket.need(len(body))  # already received: what the server holds while it waits for room
                batch = span_rows(
                    parse_spans(body, _PROTOBUF, max_items=self.max_items, admit=ticket.need), self.store.resource_id
                )
                _committed(self.store.submit(batch.rows, batch.resources), context)
            except (BadRequest, TooLarge) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except (StoreFull, Busy):
                context.abort(grpc.StatusCode.UNAVAILABLE, "store busy, retry")
        if batch.rejected:
            response.partial_success.rejected_spans = batch.rejected
            response.partial_success.error_message = batch.reason
        return response

    def logs(self, body: bytes, context: Any) -> Any:
        with self.budget.ticket() as ticket:
            try:
                ticket.need(len(body))
                records, _, _ = decode_logs(parse_logs(body, _PROTOBUF, max_items=self.max_items, admit=ticket.need))
                _committed(self.store.submit([], [], records), context)
            except (BadRequest, TooLarge) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except (StoreFull, Busy):
                context.abort(grpc.StatusCode.UNAVAILABLE, "store busy, retry")
        return logs_service_pb2.ExportLogsServiceResponse()


def start_grpc(store: TraceStore, host: str, port: int, max_body: int, budget: Budget, max_items: int) -> grpc.Server:
    """Start the OTLP/gRPC server; returns it (call ``stop(grace)`` at shutdown)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="otel-corr-grpc"),
        # so_reuseport 0: grpcio sets SO_REUSEPORT by default, so a second server on the same port would
        # start and share the exports with the first (each to its own store) instead of failing.
        options=[("grpc.max_receive_message_length", max_body), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=_MAX_CALLS,
    )
    # Registered by hand, without request deserializers: the body is counted and admitted against
    # the memory budget before it is parsed (see _otlp.parse_spans), and an undecodable body gets
    # INVALID_ARGUMENT with the reason.
    export = _Export(store, budget, max_items)
    for service, handler, response in (
        (
            "opentelemetry.proto.collector.trace.v1.TraceService",
            export.traces,
            trace_service_pb2.ExportTraceServiceResponse,
        ),
        ("opentelemetry.proto.collector.logs.v1.LogsService", export.logs, logs_service_pb2.ExportLogsServiceResponse),
    ):
        method = grpc.unary_unary_rpc_method_handler(handler, response_serializer=response.SerializeToString)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": method}),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address} for OTLP/gRPC: address in use (another otel-corr serve?)")
    server.start()
    return server
