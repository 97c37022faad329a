"""``_otlp.count_items``: the spans or log records of a body counted on the wire agree with a real parse.

The count decides what is refused before decoding (too many items) and what the decoding is
admitted to hold, so it must match what protobuf would find, for every way a sender may encode
the same request: unknown fields of each wire type, long tags, groups, empty messages.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_corr.server._otlp import count_items

from ._wire import field

UNKNOWN = [
    b"\x78\x05",  # field 15, varint
    b"\x81\x01" + bytes(8),  # field 16 (a two-byte tag), fixed64
    b"\x7d" + bytes(4),  # field 15, fixed32
    field(14, b"x" * 200),  # length-delimited, a two-byte length
    b"\x7b\x08\x01\x7c",  # field 15 as a group holding a varint
    b"\x7b\x12\x00\x7c",  # a group holding a field 2 (not an item: inside the group)
]


def _traces(rng: random.Random) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(rng.randrange(4)):
        rs = request.resource_spans.add()
        rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="svc")))
        for _ in range(rng.randrange(4)):
            ss = rs.scope_spans.add()
            ss.scope.name = "scope"
            for _ in range(rng.randrange(300)):
                ss.spans.add(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="x" * rng.randrange(200))
    return request.SerializeToString()  # type: ignore[no-any-return]


def _logs(rng: random.Random) -> bytes:
    request = ExportLogsServiceRequest()
    for _ in range(rng.randrange(4)):
        rl = request.resource_logs.add()
        for _ in range(rng.randrange(4)):
            sl = rl.scope_logs.add()
            for i in range(rng.randrange(300)):
                sl.log_records.add(time_unix_nano=i, body=AnyValue(string_value="y" * rng.randrange(100)))
    return request.SerializeToString()  # type: ignore[no-any-return]


def _with_unknown(body: bytes, rng: random.Random) -> bytes:
    """The same request with unknown fields appended at each of its three levels (protobuf keeps them)."""
    message = ExportTraceServiceRequest.FromString(body)
    out = b""
    for rs in message.resource_spans:
        inner = field(1, rs.resource.SerializeToString())
        for ss in rs.scope_spans:
            inner += field(2, ss.SerializeToString() + rng.choice(UNKNOWN))
        out += field(1, inner + rng.choice(UNKNOWN))
    return out + rng.choice(UNKNOWN)


@pytest.mark.parametrize("seed", range(20))
def test_the_wire_count_is_what_protobuf_finds(seed: int) -> None:
    """Random traces and logs requests, with and without unknown fields: the same count as a real parse."""
    rng = random.Random(seed)
    traces = _traces(rng)
    spans = sum(
        len(ss.spans) for rs in ExportTraceServiceRequest.FromString(traces).resource_spans for ss in rs.scope_spans
    )
    assert count_items(traces) == spans
    odd = _with_unknown(traces, rng)
    parsed = ExportTraceServiceRequest.FromString(odd)
    assert count_items(odd) == sum(len(ss.spans) for rs in parsed.resource_spans for ss in rs.scope_spans) == spans
    logs = _logs(rng)
    records = ExportLogsServiceRequest.FromString(logs)
    assert count_items(bytearray(logs)) == sum(
        len(sl.log_records) for rl in records.resource_logs for sl in rl.scope_logs
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a",
        b"\x0a\x05\x12",
        b"\x0a\x02\x12\x05",
        b"\x7b",
        b"\x7c",
        b"\x0f",
        b"\x08\xff",
        b"\x0a\xff\xff\xff\xff\xff\x0f",
    ],
    ids=[
        "no-length",
        "short-resource",
        "short-scope",
        "open-group",
        "stray-end-group",
        "wire-type-7",
        "cut-varint",
        "huge-length",
    ],
)
def test_a_body_that_is_not_well_formed_has_no_count(body: bytes) -> None:
    """Cut or corrupt framing: None (the caller answers 400), never an exception or a wrong number."""
    with pytest.raises(DecodeError):  # protobuf refuses it too
        ExportTraceServiceRequest.FromString(body)
    assert count_items(body) is None


def test_empty_bodies_count_zero() -> None:
    """An empty request and empty messages at each level hold no items."""
    assert count_items(b"") == 0
    assert count_items(field(1, b"")) == 0
    assert count_items(field(1, field(2, b""))) == 0
    assert count_items(field(1, field(2, field(2, b"")))) == 1  # an empty span is still one span
