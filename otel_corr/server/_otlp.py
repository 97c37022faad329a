"""OTLP decoding: protobuf or JSON bodies (gzip or not) into :mod:`._model` records.

Every limit is checked before anything is stored, and every failure is a
:class:`BadRequest` with a one-line reason (HTTP 400) or :class:`TooLarge`
(HTTP 413): the body limit applies *after* decompression, inflated chunk by
chunk as the body arrives (:class:`Inflater`), so a gzip bomb costs at most the
limit in memory.

Memory is bounded by more than the body's size: a body of minimal spans decodes
to 20-25 times its size, so 16 MiB of them (under 1 MB gzipped) took 400 MB.
Before the expensive steps the parsers count the spans or log records (from a
view that costs about the body's size) and refuse more than ``max_items``; and
they tell the caller what the next step will cost (``admit``, see
``_admission.Budget``), which refuses what would go over the server's budget
before it is decoded rather than after.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, unknown_fields
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from .._ids import REQUEST_ID_ATTRIBUTE
from ._model import LogRecord, Span

__all__ = [
    "Admit",
    "BadRequest",
    "Inflater",
    "TooLarge",
    "attribute_text",
    "decode_logs",
    "decode_spans",
    "decompress",
    "SpanBatch",
    "span_row_steps",
    "span_rows",
    "expand",
    "count_items",
    "max_decode_cost",
    "parse_logs",
    "parse_spans",
    "parse_traces",
]

MAX_ATTRIBUTES = 1000
#: Separates scope name and version in the store's scope column.
SCOPE_SEPARATOR = "\x1f"
MAX_VALUE_BYTES = 64 * 1024


class BadRequest(ValueError):
    """The body is not valid OTLP (the message is the one-line reason)."""


class TooLarge(ValueError):
    """The (decompressed) body is over a limit: bytes, spans or log records, or the memory to decode it."""


#: Told what decoding a body will hold in memory (bytes, in total so far) before each step that
#: allocates it; raises to stop the decode (``_admission.Ticket.need``).
Admit = Callable[[int], None]

# What decoding holds, measured (benchmarks/backend.py bodies, 378 B/span on the wire, and minimal
# 33-51 B spans): the raw view ~1.1x the body and the heads view ~3.9x, the rows ~2.6x plus ~450 B
# a span; a log record ~1 KB besides its bytes; json.loads up to ~25x the text (`{},` is a dict).
_PARSE_COST = 3  # x body bytes: the body and its raw (or count) view
_PROTOBUF_COST = 8  # x body bytes: body, both views, rows
_SPAN_COST = 640  # per span, on top
_LOG_COST = 1024  # per log record, on top
_JSON_COST = 32  # x JSON bytes, while the JSON is parsed and converted


def max_decode_cost(max_body: int, max_items: int) -> int:
    """The memory one protobuf body at both limits takes to decode (what a budget must hold for one)."""
    return _PROTOBUF_COST * max_body + _LOG_COST * max_items


class Inflater:
    """``Content-Encoding`` (gzip, deflate or none) undone chunk by chunk as the body arrives.

    Never holds more than ``limit`` decompressed bytes (nor the compressed body: each chunk is
    inflated and dropped), so neither a big body nor a gzip bomb costs more than the limit.  The
    compressed bytes count against ``limit`` too (empty deflate blocks or a gzip comment inflate to
    nothing), and anything after the end of the compressed stream (a second gzip member, trailing
    junk) is refused: zlib would keep it in ``unused_data``, counted by no limit.
    """

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding.strip().lower()
        if self.encoding not in ("", "identity", "gzip", "deflate"):
            raise BadRequest(f"unsupported Content-Encoding {self.encoding[:32]!r}: use gzip, deflate or none")
        self.limit = limit
        self.body = bytearray()
        self._compressed = 0
        self._zlib = (
            zlib.decompressobj(wbits=31 if self.encoding == "gzip" else 15)
            if self.encoding in ("gzip", "deflate")
            else None
        )

    def feed(self, chunk: bytes) -> None:
        """Add the next chunk of the body as received; :class:`TooLarge` past the limit."""
        if self._zlib is None:
            self.body += chunk
            if len(self.body) > self.limit:
                raise TooLarge(f"body is over {self.limit} bytes")
            return
        if not chunk:
            return
        if self._zlib.eof:
            raise BadRequest(f"data after the end of the {self.encoding} stream")
        self._compressed += len(chunk)
        if self._compressed > self.limit:
            raise TooLarge(f"body is over {self.limit} bytes before decompression")
        try:
            self.body += self._zlib.decompress(chunk, self.limit + 1 - len(self.body))
        except zlib.error as exc:
            raise BadRequest(f"invalid {self.encoding} data: {exc}") from None
        if self._zlib.unused_data:
            raise BadRequest(f"data after the end of the {self.encoding} stream")
        if len(self.body) > self.limit or self._zlib.unconsumed_tail:
            raise TooLarge(f"body is over {self.limit} bytes after decompression")

    def finish(self) -> bytearray:
        """The whole decompressed body; :class:`BadRequest` if the compressed stream stopped short."""
        if self._zlib is not None and not self._zlib.eof:
            raise BadRequest(f"truncated {self.encoding} data")
        return self.body


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate or none) without ever holding more than ``limit`` bytes."""
    inflater = Inflater(encoding, limit)
    inflater.feed(body)
    return bytes(inflater.finish())


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


def _media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _too_many(count: int, max_items: int | None, what: str) -> None:
    if max_items is not None and count > max_items:
        raise TooLarge(f"{count} {what} in one request; the limit is {max_items} (send smaller batches)")


def _json_items(data: Any, keys: tuple[tuple[str, str], ...]) -> int:
    """How many items the parsed OTLP/JSON ``data`` holds at ``keys`` (each level: camelCase, proto name)."""
    nodes = [data]
    for level, names in enumerate(keys):
        found = []
        for node in nodes:
            if isinstance(node, dict):
                for name in dict.fromkeys(names):  # a name once where both spellings are the same
                    children = node.get(name)
                    if isinstance(children, list):
                        found.extend(children)
        if level == len(keys) - 1:
            return len(found)
        nodes = found
    return 0


_JSON_SPANS = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans"))
_JSON_LOGS = (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records"))


def _parse(
    body: bytes | bytearray,
    content_type: str,
    message: Any,
    check: Callable[[Any], None] | None = None,
    admit: Admit | None = None,
) -> Any:
    """``message`` parsed from protobuf or OTLP/JSON; ``check`` sees the JSON before protobuf is built from it."""
    ctype = _media_type(content_type)
    try:
        if ctype == "application/x-protobuf":
            message.ParseFromString(body)
        elif ctype == "application/json":
            if admit is not None:
                admit(_JSON_COST * len(body))
            data = json.loads(body)
            if check is not None:
                check(data)
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
        else:
            raise BadRequest(f"unsupported Content-Type {ctype[:64]!r}: use application/x-protobuf or application/json")
    except (BadRequest, TooLarge):
        raise
    # SystemError: protobuf's upb backend raises it for a JSON key holding a lone surrogate ("\ud800").
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError, SystemError) as exc:
        kind = "protobuf" if ctype == "application/x-protobuf" else "JSON"
        raise BadRequest(
            f"invalid OTLP {kind}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
        ) from None
    return message


def parse_traces(
    body: bytes, content_type: str, *, max_items: int | None = None, admit: Admit | None = None
) -> ExportTraceServiceRequest:
    """The whole request as OTLP's own type (the reference path; ingest uses :func:`parse_spans`)."""

    def check(data: Any) -> None:
        _too_many(_json_items(data, _JSON_SPANS), max_items, "spans")

    return _parse(body, content_type, ExportTraceServiceRequest(), check, admit)  # type: ignore[no-any-return]


def parse_logs(
    body: bytes | bytearray, content_type: str, *, max_items: int | None = None, admit: Admit | None = None
) -> ExportLogsServiceRequest:
    """An OTLP logs export request; more than ``max_items`` log records is :class:`TooLarge`, before decoding them.

    ``admit`` is told the memory decoding will take once the records are counted (protobuf: on
    the wire, see :func:`count_items`; JSON: in its parsed text).
    """

    def check(data: Any) -> None:
        count = _json_items(data, _JSON_LOGS)
        _too_many(count, max_items, "log records")
        if admit is not None:
            admit(_JSON_COST * len(body) + _LOG_COST * count)

    if _media_type(content_type) == "application/x-protobuf":
        count = count_items(body)
        if count is None:
            raise BadRequest("invalid OTLP protobuf: not an ExportLogsServiceRequest (corrupt wire format)")
        _too_many(count, max_items, "log records")
        if admit is not None:
            admit(_PROTOBUF_COST * len(body) + _LOG_COST * count)
    return _parse(body, content_type, ExportLogsServiceRequest(), check, admit)  # type: ignore[no-any-return]


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


def _known_values(attributes: Any) -> tuple[str | None, int | None]:
    """The request ID and HTTP status code (the store keeps both as columns) of a key -> AnyValue mapping."""
    request_id: str | None = None
    if REQUEST_ID_ATTRIBUTE in attributes:
        value = _value(attributes[REQUEST_ID_ATTRIBUTE])
        request_id = None if value is None else str(value)[:256] or None  # "" is no request ID
    for key in _STATUS_KEYS:  # the stable key wins over the old one when a span carries both
        if key in attributes:
            value = _value(attributes[key])
            if isinstance(value, str) and value.isascii() and value.isdigit():  # not "²", which int() refuses
                value = int(value)
            if isinstance(value, int) and value:  # 0 is no status
                return request_id, value
    return request_id, None


def _known(kvs: Any) -> tuple[str | None, int | None]:
    """:func:`_known_values` of a list of KeyValues (a key given twice: its last value, as in a map)."""
    return _known_values({kv.key: kv.value for kv in kvs if kv.key == REQUEST_ID_ATTRIBUTE or kv.key in _STATUS_KEYS})


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


# --- the ingest path: SQL rows straight from each span's own bytes -------------------------------
#
# Why not decode_spans: a Span dataclass per span, a Python loop over every attribute to find
# the two that have columns, and a serialization per span for its detail cost several times the
# parse itself.  Here the body is parsed twice, in two views of our own that match OTLP on the
# wire (see _ingest_types): in one a span's attributes are a map, so the two keys with columns are
# looked up in C; in the other each span is its raw bytes, so its detail is a slice of what the
# sender wrote, with no serialization at all.  The first view is a full parse and validates every
# span exactly as the reference parse does.

_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def _ingest_types() -> tuple[Any, Any]:
    """Two views of ``ExportTraceServiceRequest`` for ingest: (heads, raw).

    Built from the installed opentelemetry-proto descriptors, so they follow its version.  In
    the heads view each span is a ``SpanHead``: ``Span`` with ``attributes`` as a
    ``map<string, AnyValue>`` (a ``KeyValue`` is a map entry on the wire: key 1, value 2; a key
    given twice keeps its last value).  In the raw view ``ScopeSpans.spans`` is ``repeated bytes``:
    each span's bytes as the sender wrote them.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    package = "otel_corr.ingest"
    file = descriptor_pb2.FileDescriptorProto(
        name="otel_corr/ingest.proto",
        package=package,
        syntax="proto3",  # strings are checked to be UTF-8, as in the real types
        dependency=[m.DESCRIPTOR.name for m in (common_pb2, resource_pb2, trace_pb2)],
    )

    def copy(descriptor: Any, name: str, **retype: str | None) -> Any:
        message = file.message_type.add()
        descriptor.CopyToProto(message)
        message.name = name
        del message.nested_type[:], message.enum_type[:]  # fields name them fully qualified, so the originals
        for field_ in message.field:
            if field_.name in retype:
                if retype[field_.name] is None:
                    field_.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
                    field_.ClearField("type_name")
                else:
                    field_.type_name = f".{package}.{retype[field_.name]}"
        return message

    head = copy(trace_pb2.Span.DESCRIPTOR, "SpanHead", attributes="SpanHead.AttributesEntry")
    entry = head.nested_type.add(name="AttributesEntry")
    entry.options.map_entry = True
    for kv_field in (common_pb2.KeyValue.DESCRIPTOR.fields_by_number[n] for n in (1, 2)):  # a map entry has two
        added_field = entry.field.add(
            name=kv_field.name,
            number=kv_field.number,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
            json_name=kv_field.json_name,
        )
        added_field.type = kv_field.type
        if kv_field.message_type is not None:
            added_field.type_name = f".{kv_field.message_type.full_name}"
    for view, spans in (("", "SpanHead"), ("Raw", None)):
        copy(trace_pb2.ScopeSpans.DESCRIPTOR, f"{view}ScopeSpans", spans=spans)
        copy(trace_pb2.ResourceSpans.DESCRIPTOR, f"{view}ResourceSpans", scope_spans=f"{view}ScopeSpans")
        copy(ExportTraceServiceRequest.DESCRIPTOR, f"{view}Request", resource_spans=f"{view}ResourceSpans")
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())  # returns None under the pure-Python backend: look it up
    added = pool.FindFileByName(file.name).message_types_by_name
    return message_factory.GetMessageClass(added["Request"]), message_factory.GetMessageClass(added["RawRequest"])


_Heads, _Raw = _ingest_types()


def parse_spans(
    body: bytes | bytearray, content_type: str, *, max_items: int | None = None, admit: Admit | None = None
) -> tuple[Any, Any]:
    """An OTLP trace export request as :func:`span_rows` reads it: (heads, raw), see :func:`_ingest_types`.

    The heads view is a full parse (every string checked to be UTF-8, every nested message to
    be well formed), so a body that passes it passes the reference parse too.  The raw view
    comes first: it costs about the body's size and counts the spans, so a body of more than
    ``max_items`` spans is :class:`TooLarge` before the heads view (~4x the body) or any row
    (~450 B a span) is built; ``admit`` is told each step's memory before it is taken.
    """
    if _media_type(content_type) != "application/x-protobuf":
        # JSON (or an unsupported type, which parse_traces reports): through the real types, then their bytes.
        body = parse_traces(bytes(body), content_type, max_items=max_items, admit=admit).SerializeToString()
    # A big body is counted on the wire first (no copy; ~1 us a span against ~14 to decode it), so
    # one of too many spans costs nothing more than its bytes; a small one is counted from its raw view.
    count = count_items(body) if len(body) > _WALK_ABOVE else None
    try:
        if count is not None:
            _too_many(count, max_items, "spans")
        if admit is not None:
            admit(_PARSE_COST * len(body) if count is None else _PROTOBUF_COST * len(body) + _SPAN_COST * count)
        raw = _Raw.FromString(body)
        if count is None:
            count = sum(len(ss.spans) for rs in raw.resource_spans for ss in rs.scope_spans)
            _too_many(count, max_items, "spans")
            if admit is not None:
                admit(_PROTOBUF_COST * len(body) + _SPAN_COST * count)
        return _Heads.FromString(body), raw
    except (DecodeError, ValueError) as exc:  # ValueError: the pure-Python backend's UnicodeDecodeError
        if isinstance(exc, TooLarge):
            raise
        raise BadRequest(
            "invalid OTLP protobuf: not an ExportTraceServiceRequest (corrupt wire format, or a string"
            " that is not UTF-8)"
        ) from None


_WALK_ABOVE = 1 << 20


def count_items(body: bytes | bytearray) -> int | None:
    """The spans (or log records) of an export request, counted on the wire; None if it is not well formed.

    Traces and logs nest alike: request > field 1 (resource) > field 2 (scope) > field 2 (item).
    Nothing is copied or decoded: each field's tag and length are read and the field skipped.
    """
    buf = memoryview(body)
    count = 0
    # (start, end, depth): the messages still to walk; depth 0 is the request.
    stack = [(0, len(buf), 0)]
    while stack:
        i, end, depth = stack.pop()
        wanted = 1 if depth == 0 else 2
        groups = 0  # inside this many (deprecated, unknown) groups, whose fields are skipped
        while i < end:
            tag = buf[i]
            i += 1
            if tag & 0x80:  # a tag over one byte: no field we look for
                shift, tag = 7, tag & 0x7F
                while True:
                    if i >= end:
                        return None
                    byte = buf[i]
                    i += 1
                    tag |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
            wire = tag & 7
            if wire == 2:
                if i >= end:
                    return None
                size = buf[i]
                i += 1
                if size & 0x80:
                    shift, size = 7, size & 0x7F
                    while True:
                        if i >= end or shift > 35:
                            return None
                        byte = buf[i]
                        i += 1
                        size |= (byte & 0x7F) << shift
                        shift += 7
                        if not byte & 0x80:
                            break
                if i + size > end:
                    return None
                if tag >> 3 == wanted and not groups:
                    if depth == 2:
                        count += 1
                    else:
                        stack.append((i, i + size, depth + 1))
                i += size
            elif wire == 0:
                while True:
                    if i >= end:
                        return None
                    i += 1
                    if not buf[i - 1] & 0x80:
                        break
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 3:
                groups += 1
            elif wire == 4 and groups:
                groups -= 1
            else:
                return None
        if i > end or groups:
            return None
    return count


# Tags of the fields kept as columns (1, 2 and 4-8) and of the trace state (3): none may follow the prefix.
_PREFIX_TAGS = frozenset(b"\x0a\x12\x1a\x22\x2a\x30\x39\x41")


def _detail_offset(raw: bytes, parent: bytes, name: str, kind: int, start: int, end: int) -> int:
    """Where a span's detail starts in its bytes: after the column fields; -1 if they are not a prefix.

    The column fields (1 and 2, then 4-8; never 3, the trace state) come first in every encoder
    we know of, as they are written in field-number order.  The detail -- what the store keeps
    beyond its columns -- is then the rest of the span's bytes as they came.  Each column field is
    checked to be where and as long as the parsed values say (``raw`` came from the sender, not
    from us); anything else (another order, a default written out, a long varint) returns -1 and
    the span takes the reference path.
    """
    try:
        if raw[0] != 0x0A or raw[1] != 16 or raw[18] != 0x12 or raw[19] != 8:
            return -1
        i = 28
        if parent:
            if raw[i] != 0x22 or raw[i + 1] != 8:
                return -1
            i += 10
        if name:
            size = len(name) if name.isascii() else len(name.encode())
            if raw[i] != 0x2A:
                return -1
            if size < 0x80 and raw[i + 1] == size:
                i += 2 + size
            elif 0x80 <= size < 0x4000 and raw[i + 1] == 0x80 | (size & 0x7F) and raw[i + 2] == size >> 7:
                i += 3 + size
            else:
                return -1
        if kind:
            # A one-byte varint only: the first byte of a longer one can equal the kind (200 -> 0xc8 0x01).
            if not 0 < kind < 0x80 or raw[i] != 0x30 or raw[i + 1] != kind:
                return -1
            i += 2
        if start:
            if raw[i] != 0x39:
                return -1
            i += 9
        if end:
            if raw[i] != 0x41:
                return -1
            i += 9
    except IndexError:
        return -1
    if i < len(raw) and raw[i] in _PREFIX_TAGS or i > len(raw):
        return -1
    return i


# The limits of _check_limits hold for any span whose detail is at most this size: each attribute
# takes at least two bytes on the wire, and a value over the byte limit makes the span bigger than
# that limit.  So only bigger spans are checked one by one.
_CHECKED_ABOVE = 2 * MAX_ATTRIBUTES
_REQUEST_KEY, _STATUS_KEY, _OLD_STATUS_KEY = REQUEST_ID_ATTRIBUTE, *_STATUS_KEYS


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


def span_rows(request: tuple[Any, Any], resource_id: Callable[[str, str], int]) -> SpanBatch:
    """The store's row for every valid span of a :func:`parse_spans` request, in ``_store.SPAN_COLUMNS`` order.

    ``resource_id(digest, service)`` gives the store's ID for a resource.  Invalid IDs or an
    undecodable span reject the whole request (:class:`BadRequest`); a span that ends before it
    starts is rejected alone.
    """
    batch = SpanBatch()
    for _ in span_row_steps(request, resource_id, batch, 1 << 62):
        pass
    return batch


def span_row_steps(
    request: tuple[Any, Any], resource_id: Callable[[str, str], int], batch: SpanBatch, step: int
) -> Iterator[None]:
    """:func:`span_rows` into ``batch``, pausing (yielding) after every ``step`` spans.

    Why: the HTTP handler decodes on the event loop, where a 512-span body is several ms of CPU;
    giving the loop back every ``step`` spans lets a query that arrives meanwhile run in between.
    """
    heads, raws = request
    rows = batch.rows
    append = rows.append
    count = 0
    for rs, raw_rs in zip(heads.resource_spans, raws.resource_spans, strict=True):
        resource = _attributes(rs.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        text, digest = resource_key(resource)
        rid = resource_id(digest, service)
        batch.resources.append((rid, digest, service, text))
        for ss, raw_ss in zip(rs.scope_spans, raw_rs.scope_spans, strict=True):
            scope = f"{ss.scope.name}{SCOPE_SEPARATOR}{ss.scope.version}" if ss.scope.version else ss.scope.name
            for s, raw in zip(ss.spans, raw_ss.spans, strict=True):
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
                offset = -1 if s.trace_state else _detail_offset(raw, parent, name, kind, start, end)
                if offset < 0 or len(raw) - offset > _CHECKED_ABOVE:
                    full = SpanMessage.FromString(raw)  # valid: the heads view parsed the same bytes
                    _check_limits(full)
                    detail = _slim(full) if offset < 0 else raw[offset:]
                else:
                    detail = raw[offset:]
                attributes = s.attributes
                if len(attributes) != raw.count(0x4A) and len(unknown_fields.UnknownFieldSet(s)):
                    # upb keeps a KeyValue with a field besides key and value (key_strindex, or one a newer
                    # OTLP adds) out of the map, as an unknown field of the span.  Every attribute has a
                    # 0x4a tag byte, so a map as long as the count of those bytes lost none (88 % of spans).
                    request_id, http_status = _known(SpanMessage.FromString(raw).attributes)
                elif _REQUEST_KEY in attributes or _STATUS_KEY in attributes or _OLD_STATUS_KEY in attributes:
                    request_id, http_status = _known_values(attributes)
                else:
                    request_id = http_status = None
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


def detail_attributes(detail: bytes) -> dict[str, Any]:
    """A stored span's attributes (its detail as the store keeps it, uncompressed)."""
    return _attributes(SpanMessage.FromString(detail).attributes)


def attribute_text(detail: bytes, key: str) -> str | None:
    """An attribute of a stored span as text (the SQL function tag search uses)."""
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
