"""The one-ID rule's pure functions."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from otel_corr._context import bind_request_id, get_request_id, hex_ids, request_context, seed_hex_ids
from otel_corr._ids import format_span_id, format_trace_id, is_safe_header_value, is_valid_request_id, trace_id_of

_ALLOWED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


def test_uuid_forms_map_to_the_same_trace_id() -> None:
    """A UUID in any case, with or without dashes, is the same 128 bits."""
    u = uuid.uuid4()
    forms = [str(u), str(u).upper(), u.hex, u.hex.upper()]
    assert {trace_id_of(f) for f in forms} == {u.int}


def test_non_hex_and_zero_ids_are_not_trace_ids() -> None:
    """Only a UUID or 32 hex digits, never zero, is a trace ID."""
    assert trace_id_of("order-42.a_b") is None
    assert trace_id_of("0" * 32) is None
    assert trace_id_of(str(uuid.UUID(int=0))) is None
    assert trace_id_of("g" * 32) is None
    assert trace_id_of("a" * 31) is None
    assert trace_id_of("12345678-1234-1234-1234-1234567890ab-") is None


def test_default_validator_table() -> None:
    """The default validator: charset, length, and no all-zero trace ID."""
    assert is_valid_request_id("order-42.a_b")
    assert is_valid_request_id("a" * 128)
    assert not is_valid_request_id("a" * 129)
    assert not is_valid_request_id("")
    for bad in ["a b", "a/b", "a\x01", "<script>", "${jndi:ldap://x}", "é", "a\r\nb", "0" * 32, str(uuid.UUID(int=0))]:
        assert not is_valid_request_id(bad), bad


@given(st.text(alphabet=_ALLOWED, min_size=1, max_size=128))
def test_validator_accepts_every_allowed_string(value: str) -> None:
    """Every 1-128 string over [A-Za-z0-9._:-] is valid unless it is a zero trace ID."""
    assert is_valid_request_id(value) or set(value.replace("-", "")) == {"0"}


@given(st.text(min_size=1, max_size=300))
def test_validator_never_accepts_what_it_must_not(value: str) -> None:
    """Nothing outside the charset, over 128 chars or unsafe in a header is ever accepted (and it never raises)."""
    if is_valid_request_id(value):
        assert len(value) <= 128
        assert set(value) <= set(_ALLOWED)
        assert is_safe_header_value(value)


@given(st.text(max_size=2000))
def test_trace_id_of_never_raises(value: str) -> None:
    """Mapping any string to a trace ID never raises and yields a 128-bit value or None."""
    result = trace_id_of(value)
    assert result is None or 0 < result < 2**128


@given(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1))
def test_hex_ids_are_the_formatted_ids(trace_id: int, span_id: int) -> None:
    """Formatted once and remembered for the last span context: always the same digits as format()."""
    sc = SpanContext(trace_id, span_id, False)
    expected = (format(trace_id, "032x"), format(span_id, "016x"))
    assert hex_ids(sc) == expected and hex_ids(sc) == expected
    other = SpanContext(trace_id, span_id, False)  # equal, but another object: formatted afresh
    seed_hex_ids(other, expected[0])
    assert hex_ids(other) == expected and hex_ids(sc) == expected
    assert (format_trace_id(trace_id), format_span_id(span_id)) == expected


def test_request_context_is_the_two_step_context() -> None:
    """One copy of the parent with the span and the request ID, as set_span_in_context + bind_request_id."""
    parent = otel_context.set_value("other", 1, otel_context.Context())
    span = trace.NonRecordingSpan(SpanContext(1, 2, False))
    ours = request_context(parent, span, "req-1")
    assert ours == bind_request_id("req-1", trace.set_span_in_context(span, parent))
    assert type(ours) is otel_context.Context and trace.get_current_span(ours) is span
    assert get_request_id(ours) == "req-1" and parent == {"other": 1}
