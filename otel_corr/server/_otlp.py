"""OTLP decoding: protobuf or JSON bodies (gzip or not) into :mod:`._model` records.

Every limit is checked before anything is stored, and every failure is a
:class:`BadRequest` with a one-line reason (HTTP 400) or :class:`TooLarge`
(HTTP 413): the body limit applies *after* decompression, read in bounded
chunks, so a gzip bomb costs at most the limit in memory.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .._ids import REQUEST_ID_ATTRIBUTE
from ._model import LogRecord, Span

__all__ = [
    "BadRequest",
    "TooLarge",
    "attribute_text",
    "decode_logs",
    "decode_spans",
    "decompress",
    "expand",
    "parse_logs",
    "parse_traces",
]

MAX_ATTRIBUTES = 1000
#: Separates scope name and version in the store's scope column.
SCOPE_SEPARATOR = "\x1f"
MAX_VALUE_BYTES = 64 * 1024


class BadRequest(ValueError):
    """The body is not valid OTLP (the message is the one-line reason)."""


class TooLarge(ValueError):
    """The (decompressed) body is over the limit."""


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or none) without ever holding more than ``limit`` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise TooLarge(f"body is {len(body)} bytes; the limit is {limit}")
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding[:32]!r}: use gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"invalid {encoding} data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"body is over {limit} bytes after decompression")
    if not inflater.eof:
        raise BadRequest(f"truncated {encoding} data")
    return out


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes IDs as hex; protobuf's JSON parser expects base64."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
                except ValueError:
                    raise BadRequest(f"{key} {value[:40]!r} is not hex") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def _parse(body: bytes, content_type: str, message: Any) -> Any:
    ctype = content_type.split(";")[0].strip().lower()
    try:
        if ctype == "application/x-protobuf":
            message.ParseFromString(body)
        elif ctype == "application/json":
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True)
        else:
            raise BadRequest(f"unsupported Content-Type {ctype[:64]!r}: use application/x-protobuf or application/json")
    except BadRequest:
        raise
    # SystemError: protobuf's upb backend raises it for a JSON key holding a lone surrogate ("\ud800").
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError, SystemError) as exc:
        kind = "protobuf" if ctype == "application/x-protobuf" else "JSON"
        raise BadRequest(
            f"invalid OTLP {kind}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
        ) from None
    return message


def parse_traces(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    return _parse(body, content_type, ExportTraceServiceRequest())  # type: ignore[no-any-return]


def parse_logs(body: bytes, content_type: str) -> ExportLogsServiceRequest:
    return _parse(body, content_type, ExportLogsServiceRequest())  # type: ignore[no-any-return]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        if len(v.string_value) > MAX_VALUE_BYTES:
            raise BadRequest(f"an attribute value is {len(v.string_value)} characters; the limit is {MAX_VALUE_BYTES}")
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    if kind == "bytes_value":
        if len(v.bytes_value) > MAX_VALUE_BYTES:
            raise BadRequest(f"a bytes value is {len(v.bytes_value)} bytes; the limit is {MAX_VALUE_BYTES}")
        return base64.b64encode(v.bytes_value).decode()
    return None


def _attributes(kvs: Any) -> dict[str, Any]:
    if len(kvs) > MAX_ATTRIBUTES:
        raise BadRequest(f"{len(kvs)} attributes on one item; the limit is {MAX_ATTRIBUTES}")
    return {kv.key: _value(kv.value) for kv in kvs}


def _id(raw: bytes, size: int, what: str, allow_empty: bool = False) -> bytes | None:
    if not raw and allow_empty:
        return None
    if len(raw) != size or not any(raw):
        raise BadRequest(f"{what} must be {size} bytes and not all zero (got {len(raw)} bytes)")
    return raw


def _check_limits(span: Any) -> None:
    """The limits, without building dicts: counts always, value sizes only for a span big enough to break them."""
    if len(span.attributes) > MAX_ATTRIBUTES:
        raise BadRequest(f"{len(span.attributes)} attributes on one item; the limit is {MAX_ATTRIBUTES}")
    for event in span.events:
        if len(event.attributes) > MAX_ATTRIBUTES:
            raise BadRequest(f"{len(event.attributes)} attributes on one item; the limit is {MAX_ATTRIBUTES}")
    if span.ByteSize() > MAX_VALUE_BYTES:
        _attributes(span.attributes)
        for event in span.events:
            _attributes(event.attributes)
        for link in span.links:
            _attributes(link.attributes)


_STATUS_KEYS = ("http.response.status_code", "http.status_code")


def _known(kvs: Any) -> tuple[str | None, int | None]:
    """The request ID and HTTP status code (the store keeps both as columns), in one pass."""
    request_id: str | None = None
    status: int | None = None
    for kv in kvs:
        key = kv.key
        if key == REQUEST_ID_ATTRIBUTE:
            value = _value(kv.value)
            request_id = None if value is None else str(value)[:256]
        elif key in _STATUS_KEYS:
            value = _value(kv.value)
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                status = int(value)
    return request_id, status


def _slim(span: Any) -> bytes:
    """What the store keeps of a span beyond its columns: attributes, events, links, status, trace state.

    Why protobuf and not JSON: serializing is one C call (JSON meant a dict per attribute on
    ingest, the main cost), and it is smaller on disk.  The span is ours to change: the fields
    that have columns are cleared before serializing.
    """
    for name in ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_time_unix_nano", "end_time_unix_nano"):
        span.ClearField(name)
    return span.SerializeToString()  # type: ignore[no-any-return]


def decode_spans(request: ExportTraceServiceRequest) -> tuple[list[Span], int, str]:
    """Records for every valid span; returns (spans, rejected count, reason for the rejections)."""
    spans: list[Span] = []
    rejected = 0
    reason = ""
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        for ss in rs.scope_spans:
            scope = f"{ss.scope.name}{SCOPE_SEPARATOR}{ss.scope.version}" if ss.scope.version else ss.scope.name
            for s in ss.spans:
                trace_id = _id(s.trace_id, 16, "traceId")
                span_id = _id(s.span_id, 8, "spanId")
                parent = _id(s.parent_span_id, 8, "parentSpanId", allow_empty=True)
                start, end = s.start_time_unix_nano, s.end_time_unix_nano
                if end < start:
                    rejected += 1
                    reason = "a span ends before it starts"
                    continue
                _check_limits(s)
                request_id, http_status = _known(s.attributes)
                spans.append(
                    Span(
                        trace_id=trace_id,  # type: ignore[arg-type]
                        span_id=span_id,  # type: ignore[arg-type]
                        parent_id=parent,
                        service=service,
                        name=s.name[:1024],
                        kind=s.kind,
                        start_ns=start,
                        duration_ns=end - start,
                        status=s.status.code,
                        request_id=request_id,
                        http_status=http_status,
                        scope=scope,
                        resource=resource,
                        raw=_slim(s),
                    )
                )
    return spans, rejected, reason


def expand(span: Span, detail: bytes) -> None:
    """Fill a stored span's attributes, events, links, status message and trace state from ``detail``."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

    pb = SpanMessage.FromString(detail)
    span.attributes = _attributes(pb.attributes)
    span.events = [{"t": e.time_unix_nano, "n": e.name, "a": _attributes(e.attributes)} for e in pb.events]
    span.links = [
        {"t": link.trace_id.hex(), "s": link.span_id.hex(), "a": _attributes(link.attributes)} for link in pb.links
    ]
    span.status_message = pb.status.message
    span.trace_state = pb.trace_state
    if SCOPE_SEPARATOR in span.scope:
        span.scope, span.scope_version = span.scope.split(SCOPE_SEPARATOR, 1)


def attribute_text(detail: bytes, key: str) -> str | None:
    """An attribute of a stored span as text (the SQL function tag search uses)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

    for kv in SpanMessage.FromString(detail).attributes:
        if kv.key == key:
            value = _value(kv.value)
            if isinstance(value, bool):
                return "true" if value else "false"
            return None if value is None else (json.dumps(value) if isinstance(value, (list, dict)) else str(value))
    return None


def decode_logs(request: ExportLogsServiceRequest) -> tuple[list[LogRecord], int, str]:
    records: list[LogRecord] = []
    for rl in request.resource_logs:
        resource = _attributes(rl.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        for sl in rl.scope_logs:
            for r in sl.log_records:
                attributes = _attributes(r.attributes)
                body = _value(r.body)
                rid = attributes.get(REQUEST_ID_ATTRIBUTE)
                records.append(
                    LogRecord(
                        time_ns=r.time_unix_nano or r.observed_time_unix_nano,
                        severity_number=r.severity_number,
                        severity_text=r.severity_text[:32],
                        body=body if isinstance(body, str) else json.dumps(body, default=str),
                        service=service,
                        trace_id=_id(r.trace_id, 16, "traceId", allow_empty=True),
                        span_id=_id(r.span_id, 8, "spanId", allow_empty=True),
                        logger=sl.scope.name,
                        request_id=str(rid)[:256] if rid is not None else None,
                        attributes=attributes,
                        resource=resource,
                    )
                )
    return records, 0, ""
