"""The ingest fast path (``span_rows``) against the readable reference decoder (``decode_spans``).

``span_rows`` takes shortcuts for speed: the detail is a slice of the span's bytes as the sender
wrote them rather than a serialization after clearing the column fields, the request ID and HTTP
status are looked up in the attributes read as a map, and NULL travels as ""/0/empty.
Hypothesis builds spans with everything that could trip those shortcuts (trace states,
non-ASCII and long names, zero times, the keys inside events and links, both status keys,
every value type), and each row must say exactly what the reference decoder says.  Spans encoded
in ways no SDK writes them (fields out of order, defaults written out) must take the reference path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

from otel_corr.server import _otlp
from otel_corr.server._otlp import decode_spans, parse_spans, span_rows

from ._wire import field

_KEYS = ["request.id", "http.response.status_code", "http.status_code", "url.path", "k"]


def _any_value(draw: st.DrawFn) -> AnyValue:
    kind = draw(st.sampled_from(["str", "digits", "int", "bool", "double", "bytes", "array"]))
    if kind == "str":
        return AnyValue(string_value=draw(st.text(max_size=300)))
    if kind == "digits":  # "²" and "٣" are digits to str.isdigit, not status codes
        return AnyValue(string_value=draw(st.sampled_from(["²", "٣"]) | st.integers(0, 999).map(str)))
    if kind == "int":
        return AnyValue(int_value=draw(st.integers(-(2**63), 2**63 - 1)))
    if kind == "bool":
        return AnyValue(bool_value=draw(st.booleans()))
    if kind == "double":
        return AnyValue(double_value=draw(st.floats(allow_nan=False)))
    if kind == "bytes":
        return AnyValue(bytes_value=draw(st.binary(max_size=40)))
    return AnyValue(array_value={"values": [AnyValue(string_value="request.id")]})


@st.composite
def _key_values(draw: st.DrawFn, max_size: int = 5) -> list[KeyValue]:
    keys = draw(st.lists(st.sampled_from(_KEYS) | st.text(max_size=20), max_size=max_size, unique=True))
    return [KeyValue(key=k, value=_any_value(draw)) for k in keys]


@st.composite
def _span(draw: st.DrawFn) -> SpanMessage:
    span = SpanMessage(
        trace_id=draw(st.binary(min_size=16, max_size=16).filter(any)),
        span_id=draw(st.binary(min_size=8, max_size=8).filter(any)),
        parent_span_id=draw(st.just(b"") | st.binary(min_size=8, max_size=8).filter(any)),
        trace_state=draw(st.just("") | st.text(max_size=20)),
        name=draw(st.text(max_size=20) | st.text(min_size=120, max_size=300) | st.just("é" * 70)),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=draw(st.just(0) | st.integers(1, 2**40)),
        attributes=draw(_key_values()),
        flags=draw(st.just(0) | st.integers(1, 2**32 - 1)),
    )
    span.end_time_unix_nano = span.start_time_unix_nano + draw(st.just(0) | st.integers(0, 2**40))
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(name=draw(st.sampled_from(_KEYS)), attributes=draw(_key_values(3)))
    if draw(st.booleans()):
        span.links.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), attributes=draw(_key_values(3)))
    if draw(st.booleans()):
        span.status.code = draw(st.integers(0, 2))
        span.status.message = draw(st.text(max_size=20))
    return span


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_span(), min_size=1, max_size=6))
def test_rows_match_the_reference_decoder(spans: list[SpanMessage]) -> None:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = "lib"
    scope_spans.spans.extend(spans)
    body = request.SerializeToString()

    expected, _, _ = decode_spans(ExportTraceServiceRequest.FromString(body))
    slow: list[object] = []
    reference_slim = _otlp._slim

    def counted_slim(span: Any) -> bytes:
        slow.append(span)
        return reference_slim(span)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_otlp, "_slim", counted_slim)
        rows = span_rows(parse_spans(body, "application/x-protobuf"), lambda digest, service: 1).rows
    # The shortcut is taken for every span without a trace state (else this test would prove nothing).
    assert len(slow) == sum(1 for s in spans if s.trace_state)

    def null(value: Any) -> Any:
        return None if value in (b"", "", 0) else value

    assert len(rows) == len(expected)
    for row, span in zip(rows, expected, strict=True):
        assert bytes(row[0]) == span.trace_id and bytes(row[1]) == span.span_id
        assert null(bytes(row[2])) == span.parent_id
        assert (row[4], row[5], row[6], row[7], row[8], row[9]) == (
            span.service,
            span.name,
            span.kind,
            span.start_ns,
            span.duration_ns,
            span.status,
        )
        assert null(row[10]) == span.request_id
        assert row[11] == span.scope
        assert bytes(row[12]) == span.raw
        assert null(row[13]) == span.http_status


def _canonical_span() -> SpanMessage:
    return SpanMessage(
        trace_id=bytes(range(1, 17)),
        span_id=bytes(range(1, 9)),
        parent_span_id=bytes(range(2, 10)),
        name="GET /orders",
        kind=2,
        start_time_unix_nano=10,
        end_time_unix_nano=20,
        attributes=[
            KeyValue(key="request.id", value=AnyValue(string_value="req-1")),
            KeyValue(key="http.response.status_code", value=AnyValue(int_value=404)),
        ],
        status={"code": 2, "message": "boom"},
    )


def _reordered() -> bytes:
    """The attributes first, then the column fields: valid protobuf (fields may come in any order)."""
    span = _canonical_span()
    attributes = SpanMessage(attributes=span.attributes).SerializeToString()
    span.ClearField("attributes")
    return attributes + span.SerializeToString()


def _default_written_out() -> bytes:
    """kind = 0 written out (a proto3 encoder leaves it out) between the name and the start time."""
    span = _canonical_span()
    span.kind = 0
    raw = span.SerializeToString()
    name_end = raw.index(b"GET /orders") + len("GET /orders")
    return raw[:name_end] + b"\x30\x00" + raw[name_end:]


def _long_length_varint() -> bytes:
    """The name's length as a two-byte varint (valid, though no encoder writes it so)."""
    raw = _canonical_span().SerializeToString()
    return raw.replace(b"\x2a\x0bGET /orders", b"\x2a\x8b\x00GET /orders")


def _kind_over_127() -> bytes:
    """Kind 200 (a two-byte varint whose first byte is 200) and no times: the varint must not be cut in two."""
    span = _canonical_span()
    span.kind, span.start_time_unix_nano, span.end_time_unix_nano = 200, 0, 0
    return span.SerializeToString()  # type: ignore[no-any-return]


def _attribute_with_a_third_field() -> bytes:
    """request.id in a KeyValue that also carries field 3 (key_strindex in recent OTLP, unknown in older)."""
    span = _canonical_span()
    request_id = span.attributes[0].SerializeToString() + b"\x18\x05"
    status = span.status.SerializeToString()
    del span.attributes[0]
    span.ClearField("status")
    return span.SerializeToString() + field(9, request_id) + field(15, status)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "encode", [_reordered, _default_written_out, _long_length_varint, _kind_over_127, _attribute_with_a_third_field]
)
def test_spans_not_encoded_canonically_take_the_reference_path(encode: Any) -> None:
    """Encodings no SDK writes: the detail is sliced from the sender's bytes only when the column fields are
    exactly a prefix, and the request ID and status are found even where the attribute map cannot hold them."""
    span_bytes = encode()
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(SpanMessage.FromString(span_bytes))
    (expected,), _, _ = decode_spans(request)
    body = field(1, field(2, field(2, span_bytes)))  # request > resource spans > scope spans > span
    (row,) = span_rows(parse_spans(body, "application/x-protobuf"), lambda digest, service: 1).rows
    assert bytes(row[12]) == expected.raw  # the slice would have kept column fields, or cut a field
    assert (row[5], row[6], row[10], row[13]) == (expected.name, expected.kind, "req-1", 404)


_ROWS_SCRIPT = """
import json, sys
from otel_corr.server._otlp import BadRequest, parse_spans, span_rows
from google.protobuf.internal import api_implementation
try:
    rows = span_rows(parse_spans(bytes.fromhex(sys.stdin.read()), "application/x-protobuf"), lambda d, s: 1).rows
except BadRequest as exc:
    print(json.dumps([api_implementation.Type(), str(exc)]))
else:
    cells = [[bytes(v).hex() if isinstance(v, bytearray) else v for v in r] for r in rows]
    print(json.dumps([api_implementation.Type(), cells]))
"""


def test_the_pure_python_protobuf_backend_reads_the_same_rows() -> None:
    """The ingest views are built at import from descriptors; protobuf's pure-Python backend must take them too."""
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.append(_canonical_span())
    spans.append(SpanMessage.FromString(_reordered()))
    body = request.SerializeToString()
    expected = [
        [bytes(v).hex() if isinstance(v, bytearray) else v for v in row]
        for row in span_rows(parse_spans(body, "application/x-protobuf"), lambda digest, service: 1).rows
    ]
    assert _pure_python_rows(body) == ["python", expected] and len(expected) == 2
    # A name that is not UTF-8: that backend raises UnicodeDecodeError, which must be a BadRequest too.
    bad = body.replace(b"GET /orders", b"GET /\xff\xfeders")
    assert _pure_python_rows(bad)[1].startswith("invalid OTLP protobuf")


def _pure_python_rows(body: bytes) -> list[Any]:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    out = subprocess.run(
        [sys.executable, "-c", _ROWS_SCRIPT], input=body.hex(), env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result: list[Any] = json.loads(out.stdout)
    return result
