"""OTLP/gRPC ingest, on grpcio's own server (its thread pool, not the event loop)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from ._otlp import BadRequest, decode_logs, decode_spans
from ._store import Store, StoreFull

__all__ = ["start_grpc"]


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:
        try:
            spans, rejected, reason = decode_spans(request)
            self.store.add(spans)
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
            self.store.add([], records)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreFull:
            context.abort(grpc.StatusCode.UNAVAILABLE, "store busy, retry")
        return logs_service_pb2.ExportLogsServiceResponse()


def start_grpc(store: Store, host: str, port: int, max_body: int) -> grpc.Server:
    """Start the OTLP/gRPC server; returns it (call ``stop(grace)`` at shutdown)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="otel-corr-grpc"),
        options=[("grpc.max_receive_message_length", max_body)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(store), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(store), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    server.start()
    return server
