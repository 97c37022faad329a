"""OTLP decoding: protobuf or JSON bodies (gzip or not) into :mod:`._model` records.

Every limit is checked before anything is stored, and every failure is a
:class:`BadRequest` with a one-line reason (HTTP 400) or :class:`TooLarge`
(HTTP 413): the body limit applies *after* decompression, read in bounded
chunks, so a gzip bomb costs at most the limit in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from .._ids import REQUEST_ID_ATTRIBUTE
from ._model import LogRecord, Span

__all__ = [
    "BadRequest",
    "TooLarge",
    "attribute_text",
    "decode_logs",
    "decode_spans",
    "decompress",
    "SpanBatch",
    "span_row_steps",
    "span_rows",
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
_COLUMN_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_time_unix_nano", "end_time_unix_nano")


def _known(kvs: Any) -> tuple[str | None, int | None]:
    """The request ID and HTTP status code (the store keeps both as columns), in one pass."""
    request_id: str | None = None
    statuses: dict[str, int] = {}
    for kv in kvs:
        key = kv.key
        if key == REQUEST_ID_ATTRIBUTE:
            value = _value(kv.value)
            request_id = None if value is None else str(value)[:256] or None  # "" is no request ID
        elif key in _STATUS_KEYS:
            value = _value(kv.value)
            if (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) and int(value):
                statuses[key] = int(value)  # 0 is no status
    # The stable key wins over the old one when a span carries both.
    return request_id, statuses.get(_STATUS_KEYS[0], statuses.get(_STATUS_KEYS[1]))


def _slim(span: Any) -> bytes:
    """What the store keeps of a span beyond its columns: attributes, events, links, status, trace state.

    Why protobuf and not JSON: serializing is one C call (JSON meant a dict per attribute on
    ingest, the main cost), and it is smaller on disk.  The span is ours to change: the fields
    that have columns are cleared before serializing.
    """
    for name in _COLUMN_FIELDS:
        span.ClearField(name)
    return span.SerializeToString()  # type: ignore[no-any-return]


def decode_spans(request: ExportTraceServiceRequest) -> tuple[list[Span], int, str]:
    """Records for every valid span; returns (spans, rejected count, reason for the rejections).

    The readable reference decoder (benchmarks/backend.py checks its patched bodies with it);
    ingest itself uses :func:`span_rows`, which gives the same columns without the objects.
    """
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


# --- the ingest path: SQL rows straight from the protobuf spans --------------------------------
#
# Why not decode_spans: a Span dataclass per span, a Python loop over every attribute to find
# the two that have columns, and ByteSize() for the limits cost ~4x the parse itself.  Here each
# span is read field by field into the store's row tuple; the attribute loop runs only for a span
# whose serialized bytes contain one of the keys, and the limits are checked from the serialized
# size (exact, see _CHECKED_ABOVE).

_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def _key_needle(key: str) -> bytes:
    """How a KeyValue with this key starts on the wire: field 1 (tag 0x0a), length, UTF-8 bytes."""
    raw = key.encode()
    return b"\x0a" + bytes([len(raw)]) + raw  # every key here is shorter than 128 bytes: one length byte


_REQUEST_NEEDLE = _key_needle(REQUEST_ID_ATTRIBUTE)
_STATUS_NEEDLES = tuple(_key_needle(k) for k in _STATUS_KEYS)
# A key found in the bytes may sit in an event, a link, a nested value or inside a string: only
# one framed as the span's own attribute counts (see _attribute_end).


def _raw_attributes_class() -> Any:
    """A message that reads a serialized ``Span``'s field 9 (attributes) as raw bytes, skipping the rest in C."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="otel_corr_span_attributes.proto", package="otel_corr")
    message = proto.message_type.add(name="SpanAttributes")
    message.field.add(
        name="attributes",
        number=9,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    return message_factory.GetMessageClass(pool.Add(proto).message_types_by_name["SpanAttributes"])


_SpanAttributes = _raw_attributes_class()


def _kv_value(kv: bytes, key_size: int) -> Any:
    """The value of a serialized KeyValue whose key field takes ``key_size`` bytes.

    A short string or an int is read straight from the bytes (our own serialization, so well
    formed); anything else goes through protobuf.
    """
    n = key_size
    if len(kv) > n + 3 and kv[n] == 0x12 and kv[n + 1] == len(kv) - n - 2:  # field 2, AnyValue, 1-byte length
        tag = kv[n + 2]
        if tag == 0x0A and kv[n + 3] == len(kv) - n - 4:  # string_value, 1-byte length
            return kv[n + 4 :].decode(errors="replace")
        if tag == 0x18:  # int_value: a varint to the end
            value = 0
            shift = 0
            for b in kv[n + 3 :]:
                value |= (b & 0x7F) << shift
                shift += 7
            return value - (1 << 64) if value >= 1 << 63 else value
    try:
        return _value(KeyValue.FromString(kv).value)
    except DecodeError:  # crafted bytes that only looked like an attribute
        return None


# A span's own attribute is field 9: tag 0x4a, the KeyValue's length as a varint (at most three
# bytes below MAX_VALUE_BYTES), then the KeyValue, whose key field comes first.  The same key in an
# event (tag 0x1a), a link (0x22) or a nested value (0x0a) has another tag in front, so it is not
# taken; only bytes crafted inside a string value could pass for an attribute, and the sender of
# such a span could as well have set the attribute itself.  One C pass over the span finds every
# candidate, and for the usual encodings (a short string, an int) captures the value too: field 2
# (0x12, the AnyValue, one length byte), then a string (0x0a, its length) or an int (0x18, a varint).
_FRAMED_KEYS = re.compile(
    b"\x4a([\x80-\xff]{0,2}[\x00-\x7f])("
    + b"|".join(re.escape(n) for n in (_REQUEST_NEEDLE, *_STATUS_NEEDLES))
    + b")(?:\x12[\x00-\x7f](?:\x0a([\x00-\x7f])|\x18([\x80-\xff]{0,9}[\x00-\x7f])))?"
)


def _framed_value(detail: bytes, match: re.Match[bytes]) -> Any:
    """The value of the attribute ``match`` found, or None if it is not framed as one."""
    length, key, text_size, varint = match.groups()
    start = match.start(2)
    if len(length) == 1:
        size = length[0]
        if text_size is not None and size == len(key) + 4 + text_size[0]:
            return detail[match.end() : match.end() + text_size[0]].decode(errors="replace")
        if varint is not None and size == len(key) + 3 + len(varint):
            value = 0
            for shift, b in enumerate(varint):
                value |= (b & 0x7F) << (7 * shift)
            return value - (1 << 64) if value >= 1 << 63 else value
    else:
        size = sum((b & 0x7F) << (7 * i) for i, b in enumerate(length))
    if start + size > len(detail):
        return None
    return _kv_value(detail[start : start + size], len(key))


def _known_from_bytes(detail: bytes) -> tuple[str | None, int | None]:
    """The request ID and HTTP status of a serialized span (both None for most spans)."""
    if b"request.id" not in detail and b"status_code" not in detail:
        return None, None  # most spans: two substring searches, cheaper than the regex's scan
    request_id: str | None = None
    statuses: dict[bytes, int] = {}
    for match in _FRAMED_KEYS.finditer(detail):
        value = _framed_value(detail, match)
        if value is None:
            continue
        key = match.group(2)
        if key == _REQUEST_NEEDLE:
            if request_id is None:
                request_id = str(value)[:256] or None  # "" is no request ID
        elif (isinstance(value, int) or (isinstance(value, str) and value.isdigit())) and int(value):
            statuses.setdefault(key, int(value))  # 0 is no status
    if not statuses:
        return request_id, None
    # The stable key wins over the old one when a span carries both.
    return request_id, statuses.get(_STATUS_NEEDLES[0], statuses.get(_STATUS_NEEDLES[1]))


# The tags of the fields kept as columns (1, 2 and 4-8): a byte that can start the first field after them.
_COLUMN_TAGS = frozenset(b"\x0a\x12\x22\x2a\x30\x39\x41")


def _detail(s: Any, parent: bytes, name: str, kind: int, start: int, end: int) -> bytes:
    """What :func:`_slim` returns, with one serialization and no ``ClearField`` calls.

    Protobuf writes a message's fields in field-number order (upb and the pure-Python encoder
    alike), so the column fields (1 and 2, then 4-8) are a prefix of the serialized span whose
    length follows from their values; the detail is what follows it.  A span with a trace state
    (field 3, inside that prefix) or an unusual kind takes the reference path; so does any span
    whose bytes do not continue with a non-column field right after the computed prefix.
    """
    if s.trace_state or not 0 <= kind < 128:
        return _slim(s)
    raw: bytes = s.SerializeToString()
    size = len(name) if name.isascii() else len(name.encode())
    prefix = 28 + (10 if parent else 0) + (2 if kind else 0) + (9 if start else 0) + (9 if end else 0)
    if size:
        prefix += size + (2 if size < 128 else 1 + (size.bit_length() + 6) // 7)  # tag, varint length, bytes
    if prefix < len(raw) and raw[prefix] in _COLUMN_TAGS or prefix > len(raw):
        return _slim(s)
    return raw[prefix:]


# The limits of _check_limits hold for any span whose serialized detail is at most this size: each
# attribute takes at least two bytes on the wire, and a value over the byte limit makes the span
# bigger than that limit.  So only bigger spans are checked one by one.
_CHECKED_ABOVE = 2 * MAX_ATTRIBUTES


@dataclass(slots=True)
class SpanBatch:
    """One request's spans as the store's rows, plus what the writer needs alongside them."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: (resource ID, digest, service, attributes JSON) of every resource the rows use.
    resources: list[tuple[int, str, str, str]] = field(default_factory=list)
    rejected: int = 0
    reason: str = ""


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def resource_key(attributes: dict[str, Any]) -> tuple[str, str]:
    """(attributes as JSON, their digest): how the store recognizes a resource it has seen."""
    text = _dumps(attributes)
    return text, hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def span_rows(request: ExportTraceServiceRequest, resource_id: Callable[[str, str], int]) -> SpanBatch:
    """The store's row for every valid span, in the column order of ``_store.SPAN_COLUMNS``.

    ``resource_id(digest, service)`` gives the store's ID for a resource.  Invalid IDs reject the
    whole request (:class:`BadRequest`); a span that ends before it starts is rejected alone.
    """
    batch = SpanBatch()
    for _ in span_row_steps(request, resource_id, batch, 1 << 62):
        pass
    return batch


def span_row_steps(
    request: ExportTraceServiceRequest, resource_id: Callable[[str, str], int], batch: SpanBatch, step: int
) -> Iterator[None]:
    """:func:`span_rows` into ``batch``, pausing (yielding) after every ``step`` spans.

    Why: the HTTP handler decodes on the event loop, where a 512-span body is several ms of CPU;
    giving the loop back every ``step`` spans lets a query that arrives meanwhile run in between.
    """
    rows = batch.rows
    append = rows.append
    count = 0
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        text, digest = resource_key(resource)
        rid = resource_id(digest, service)
        batch.resources.append((rid, digest, service, text))
        for ss in rs.scope_spans:
            scope = f"{ss.scope.name}{SCOPE_SEPARATOR}{ss.scope.version}" if ss.scope.version else ss.scope.name
            for s in ss.spans:
                trace_id, span_id, parent = s.trace_id, s.span_id, s.parent_span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    _id(trace_id, 16, "traceId")
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    _id(span_id, 8, "spanId")
                if parent and (len(parent) != 8 or parent == _ZERO_SPAN):
                    _id(parent, 8, "parentSpanId")
                start, end = s.start_time_unix_nano, s.end_time_unix_nano
                if end < start:
                    batch.rejected += 1
                    batch.reason = "a span ends before it starts"
                    continue
                name, kind, status = s.name, s.kind, s.status.code
                detail = _detail(s, parent, name, kind, start, end)  # without the fields kept as columns
                if len(detail) > _CHECKED_ABOVE:
                    _check_limits(s)
                request_id, http_status = _known_from_bytes(detail)
                # bytearray, "" and 0 rather than bytes and None: the sqlite3 module binds those
                # directly, where bytes and None go through its adapter lookup (about 1.5k
                # instructions a value); the INSERT turns the empty ones back into NULL.
                append(
                    (
                        bytearray(trace_id),
                        bytearray(span_id),
                        bytearray(parent),
                        rid,
                        service,
                        name[:1024],
                        kind,
                        start,
                        end - start,
                        status,
                        request_id or "",
                        scope,
                        bytearray(detail),
                        http_status or 0,
                    )
                )
                count += 1
                if count % step == 0:
                    yield


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
