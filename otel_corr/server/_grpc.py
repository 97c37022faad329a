"""OTLP/gRPC ingest, on grpcio's own server (its thread pool, not the event loop)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from ._otlp import BadRequest, decode_logs, parse_spans, span_rows
from ._store import Store, StoreFull

__all__ = ["start_grpc"]


def _committed(done: Future[None], context: Any) -> None:
    """OK only once committed (this handler runs on grpcio's pool, so it may wait); else UNAVAILABLE."""
    try:
        done.result(timeout=60)
    except Exception:
        context.abort(grpc.StatusCode.UNAVAILABLE, "store could not commit, retry")


class _Traces:
    """TraceService.Export on the request's bytes (see :func:`start_grpc`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def Export(self, body: bytes, context: Any) -> Any:
        try:
            batch = span_rows(parse_spans(body, "application/x-protobuf"), self.store.resource_id)
            rejected, reason = batch.rejected, batch.reason
            _committed(self.store.submit(batch.rows, batch.resources), context)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreFull:
            context.abort(grpc.StatusCode.UNAVAILABLE, "store busy, retry")
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = reason
        return response


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:
        try:
            records, _, _ = decode_logs(request)
            _committed(self.store.submit([], [], records), context)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreFull:
            context.abort(grpc.StatusCode.UNAVAILABLE, "store busy, retry")
        return logs_service_pb2.ExportLogsServiceResponse()


def start_grpc(store: Store, host: str, port: int, max_body: int) -> grpc.Server:
    """Start the OTLP/gRPC server; returns it (call ``stop(grace)`` at shutdown)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="otel-corr-grpc"),
        # so_reuseport 0: grpcio sets SO_REUSEPORT by default, so a second server on the same port would
        # start and share the exports with the first (each to its own store) instead of failing.
        options=[("grpc.max_receive_message_length", max_body), ("grpc.so_reuseport", 0)],
    )
    # Traces are registered by hand, without a request deserializer: ingest parses each span from
    # its own bytes (see _otlp.span_rows), and an undecodable body gets INVALID_ARGUMENT with the reason.
    export = grpc.unary_unary_rpc_method_handler(
        _Traces(store).Export, response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString
    )
    service = "opentelemetry.proto.collector.trace.v1.TraceService"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {"Export": export}),))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(store), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address} for OTLP/gRPC: address in use (another otel-corr serve?)")
    server.start()
    return server
