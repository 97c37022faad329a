"""The query values the Jaeger routes parse, as properties: every form of a trace ID Jaeger v2.20 takes maps to
the same 16 bytes, and no text makes a parser raise anything but a QueryError (answered as a one-line 400)."""

from __future__ import annotations

import base64
import string
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from otel_corr.server._ids import parse_trace_id
from otel_corr.server._query import QueryError, go_duration_ns, rfc3339_ns, v3_search

INT64 = 2**63 - 1
NONZERO_16 = st.binary(min_size=16, max_size=16).filter(any)


@given(NONZERO_16)
def test_every_form_of_a_trace_id_is_the_same_bytes(raw: bytes) -> None:
    """Hex in both cases and without leading zeros, and base64 standard/URL-safe, padded or not."""
    b64 = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    forms = [raw.hex(), raw.hex().upper(), raw.hex().lstrip("0"), b64, b64.rstrip("="), url, url.rstrip("=")]
    assert {parse_trace_id(form) for form in forms} == {raw}


@given(st.binary(min_size=8, max_size=8).filter(any))
def test_a_64_bit_id_in_base64_is_the_low_half(raw: bytes) -> None:
    assert parse_trace_id(base64.b64encode(raw).decode()) == bytes(8) + raw


def test_what_is_not_a_trace_id() -> None:
    """Zero, other lengths of base64, and request IDs that happen to use the base64 alphabet."""
    for text in ["0", "0" * 32, "AAAAAAAAAAAAAAAAAAAAAA==", "order-42.a_b", "req-1234", "a" * 33, "YWJj", ""]:
        assert parse_trace_id(text) is None, text


NUMBERED = st.builds("{}{}".format, st.integers(0, 10**25), st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h"]))


@given(st.text(max_size=80) | st.text(alphabet=string.digits + ".hmsunµ-+", max_size=40) | NUMBERED)
def test_durations_are_bounded_or_refused(text: str) -> None:
    try:
        value = go_duration_ns("d", text)
    except QueryError as exc:
        assert "\n" not in str(exc)
    else:
        assert -INT64 <= value <= INT64


#: RFC 3339 times in every year Python can write, nanoseconds included.
TIMES = st.builds(
    lambda d, ns: f"{d.year:04d}-{d:%m-%dT%H:%M:%S}.{ns:09d}Z",
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(0, 10**9 - 1),
)


@given(st.text(max_size=60) | TIMES)
def test_times_are_bounded_or_refused(text: str) -> None:
    try:
        value = rfc3339_ns("t", text)
    except QueryError as exc:
        assert "\n" not in str(exc)
    else:
        assert -INT64 <= value <= INT64


KEYS = st.sampled_from(
    [
        "query.serviceName",
        "query.operationName",
        "query.attributes",
        "query.startTimeMin",
        "query.startTimeMax",
        "query.durationMin",
        "query.durationMax",
        "query.searchDepth",
        "query.rawTraces",
    ]
)


#: Values that are sometimes valid, so that searches get past the first check as well.
VALUES = st.text(max_size=40) | st.sampled_from(
    ["shop", "2026-01-01T00:00:00Z", "2026-06-01T00:00:00.5+02:00", "100ms", "20", "true", '{"a":"b"}', "0"]
)


@given(st.dictionaries(KEYS, VALUES))
def test_an_api_v3_search_is_valid_or_one_query_error(params: dict[str, str]) -> None:
    try:
        search = v3_search(params)
    except QueryError as exc:
        assert "\n" not in str(exc)
    else:
        assert search.service and search.start_ns < search.end_ns and 1 <= search.limit <= 1500
