"""Hostile input, fuzzed: request-ID/trace-context parsing and the backend's OTLP decoding.

Each target runs ``OTEL_CORR_FUZZ_EXAMPLES`` inputs (default below).  The full
run the issue asks for, at least 100,000 inputs per target::

    OTEL_CORR_FUZZ_EXAMPLES=100000 pytest tests/stress/test_fuzz.py -p no:randomly -s

or that in shards run side by side, each with its own seeds (no two shards draw the same batch)::

    OTEL_CORR_FUZZ_EXAMPLES=50000 OTEL_CORR_FUZZ_SEED=0 pytest ... &
    OTEL_CORR_FUZZ_EXAMPLES=50000 OTEL_CORR_FUZZ_SEED=1000 pytest ...

Every target counts the inputs it really ran and prints the count and duration
(visible with ``-s``), so the figure is measured rather than assumed.  Runs are
seeded (batches of 2,000 inputs, seeds 0, 1, 2...) and use no example database,
so CI sees the same inputs each time.

Measured on the shared 2-core development machine (2026-11-23, two 50k shards per
target, seeds 0 and 1000, heavily loaded so wall times are 2-4x an idle machine's):
ID functions 100,000 inputs (one run, 352 s); ASGI middleware 100,000 (885 + 871 s);
WSGI middleware 100,000 (395 + 407 s); OTLP trace decoding 100,000 (1,246 + 1,242 s);
OTLP log decoding 100,000 (1,162 + 534 s); through the HTTP app 10,000 per signal
(98 s / 75 s, idle).  The CI default (2,000 per target, 200 through HTTP) costs about
one CPU minute for the whole file.  Found: a JSON key with a lone surrogate made the
backend answer 500 (fixed in server/_otlp.py; see the regression cases below).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import itertools
import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_corr._ids import is_safe_header_value, is_valid_request_id, trace_id_of
from otel_corr._request import Runtime
from otel_corr._settings import resolve_settings
from otel_corr.asgi import CorrelationMiddleware
from otel_corr.logging import JsonFormatter, TextFormatter
from otel_corr.propagation import RequestIdPropagator
from otel_corr.server import _otlp
from otel_corr.server._otlp import (
    BadRequest,
    TooLarge,
    decode_logs,
    decode_spans,
    decompress,
    parse_logs,
    parse_spans,
    parse_traces,
    span_rows,
)
from otel_corr.wsgi import CorrelationWSGIMiddleware

EXAMPLES = int(os.environ.get("OTEL_CORR_FUZZ_EXAMPLES", "2000"))
#: The first batch's seed: shards of a long run in parallel processes draw different inputs.
FIRST_SEED = int(os.environ.get("OTEL_CORR_FUZZ_SEED", "0"))
#: Through the real HTTP app (slower per input): a tenth of the others, at least 200.
HTTP_EXAMPLES = max(200, EXAMPLES // 10)
#: Inputs per Hypothesis run: its bookkeeping grows with the run, so 100k inputs are many seeded runs.
BATCH = 2000


def _fuzz(strategy: st.SearchStrategy[Any], check: Callable[[Any], None], examples: int = EXAMPLES) -> None:
    """Run ``check`` on ``examples`` inputs drawn from ``strategy``: batches with fixed seeds (reproducible)."""
    done = 0
    for batch in itertools.count(FIRST_SEED):
        if done >= examples:
            return
        n = min(BATCH, examples - done)

        @seed(batch)
        @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(case: Any) -> None:
            check(case)

        run()
        done += n


# The whole target, generation included, may take a while at 100k inputs.
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 20))

#: What the default validator lets through, so what a response may echo.
SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: The floor for an ID accepted by a user's validator/transformer.
SAFE_HEADER = re.compile(r"[\x21-\x7e]{1,1024}")
TRACERESPONSE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
RAW_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")


@pytest.fixture
def counted(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """A counter the target bumps once per input; reported with its duration."""
    calls = [0]
    start = time.perf_counter()
    yield calls
    elapsed = time.perf_counter() - start
    print(f"\n{request.node.name}: {calls[0]} inputs in {elapsed:.1f}s")
    expected = HTTP_EXAMPLES if "http" in request.node.name else EXAMPLES
    assert calls[0] >= expected * 0.9, f"only {calls[0]} of {expected} inputs ran"


# --- strategies --------------------------------------------------------------------------------

hex_digits = st.text("0123456789abcdefABCDEF", min_size=0, max_size=40)
uuids = st.uuids().map(str)
trace_like = st.one_of(
    uuids,
    uuids.map(str.upper),
    uuids.map(lambda u: u.replace("-", "")),
    st.just("0" * 32),
    st.just("00000000-0000-0000-0000-000000000000"),
    st.binary(min_size=16, max_size=16).map(bytes.hex),
)
traceparents = st.one_of(
    st.builds(
        lambda v, t, s, f, extra: f"{v}-{t}-{s}-{f}{extra}",
        st.sampled_from(["00", "01", "ff", "0", "zz", "cc"]),
        st.one_of(st.binary(min_size=16, max_size=16).map(bytes.hex), hex_digits, st.just("0" * 32)),
        st.one_of(st.binary(min_size=8, max_size=8).map(bytes.hex), hex_digits, st.just("0" * 16)),
        st.sampled_from(["00", "01", "ff", "1", "0g"]),
        st.sampled_from(["", "-extra", "-", " ", "\r\n", ",00-x"]),
    ),
    st.text(max_size=80),
)
hostile = st.sampled_from(
    [
        "${jndi:ldap://x/a}",
        "\x1b[31mred\x1b[0m",
        "\x1b]0;title\x07",
        "a\r\nX-Injected: 1",
        "\x00",
        "line\u2028sep\u2029",
        "é",
        "",
        " ",
        ",",
        "a" * 128,
        "a" * 129,
        "\x7f",
    ]
)
big = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "0", "\x1b", "é", "-", "\n"]), st.sampled_from([1024, 8192, 65536])
)
text_values = st.one_of(trace_like, traceparents, hostile, st.text(max_size=200), big)
raw_values = st.one_of(
    text_values.map(lambda v: v.encode("utf-8")),
    st.binary(max_size=300),
)
header_names = st.one_of(
    st.sampled_from(
        [b"x-request-id", b"X-Request-ID", b"traceparent", b"tracestate", b"baggage", b"host", b"user-agent"]
    ),
    st.binary(min_size=0, max_size=20),
)
raw_headers = st.lists(st.tuples(header_names, raw_values), max_size=8)


# --- the ID functions --------------------------------------------------------------------------


def test_id_functions_never_raise_and_agree(counted: list[int]) -> None:
    """The validator, the trace-ID mapping and the propagator's extract on any string."""
    _fuzz(text_values, lambda value: _check_id(value, counted))


def _check_id(value: str, counted: list[int]) -> None:
    counted[0] += 1
    valid = is_valid_request_id(value)
    assert valid == bool(SAFE_ID.fullmatch(value) and trace_id_of(value) != 0 and _not_zero_trace(value))
    if valid:
        assert is_safe_header_value(value)
    tid = trace_id_of(value)
    assert tid is None or 0 < tid < 2**128
    ctx = RequestIdPropagator().extract({"x-request-id": value})
    from otel_corr._context import get_request_id

    extracted = get_request_id(ctx)
    assert extracted == (value if valid else None)


def _not_zero_trace(value: str) -> bool:
    stripped = value.replace("-", "")
    looks = bool(re.fullmatch(r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}", value))
    return not (looks and int(stripped, 16) == 0)


# --- the middlewares ---------------------------------------------------------------------------


class _Last(SpanProcessor):
    """Keeps only the last finished span (a list would grow to 100k)."""

    def __init__(self) -> None:
        self.span: ReadableSpan | None = None

    def on_end(self, span: ReadableSpan) -> None:
        self.span = span


class _Checked(logging.Handler):
    """Formats every record our code logs with both formatters and checks it stays one safe line."""

    def __init__(self) -> None:
        super().__init__()
        self.json = JsonFormatter()
        self.text = TextFormatter()
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        line = self.json.format(record)
        json.loads(line)
        assert "\n" not in line and not RAW_CONTROL.search(line), line[:200]
        assert not RAW_CONTROL.search(self.text.format(record).replace("\n", "")), record.getMessage()[:200]


@pytest.fixture(scope="module")
def provider() -> tuple[TracerProvider, _Last]:
    last = _Last()
    p = TracerProvider()
    p.add_span_processor(last)
    return p, last


@pytest.fixture
def checked_logs() -> Iterator[_Checked]:
    handler = _Checked()
    logger = logging.getLogger("otel_corr")
    old = logger.propagate, logger.level
    sdk = logging.getLogger("opentelemetry")  # the SDK's propagators warn about every bad header
    sdk_level = sdk.level
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    sdk.setLevel(logging.ERROR)
    yield handler
    logger.removeHandler(handler)
    logger.propagate, _ = old
    logger.setLevel(old[1])
    sdk.setLevel(sdk_level)


def _runtime(provider: TracerProvider, permissive: bool) -> Runtime:
    options: dict[str, Any] = {"tracer_provider": provider}
    if permissive:  # a user's validator that accepts anything, and a transformer that adds junk
        options |= {"validator": lambda v: True, "transformer": lambda v: v + "\r\n\x1b"[: len(v) % 4]}
    return Runtime(resolve_settings(options, env={}), provider)  # type: ignore[arg-type]


def _check_answer(headers: list[tuple[bytes, bytes]], last: _Last, incoming: list[bytes], permissive: bool) -> None:
    echoed = [v for k, v in headers if k.lower() == b"x-request-id"]
    assert len(echoed) == 1, headers
    rid = echoed[0].decode("latin-1")
    assert SAFE_HEADER.fullmatch(rid), rid[:200]
    if not permissive:
        assert SAFE_ID.fullmatch(rid) and is_valid_request_id(rid), rid[:200]
        if len(incoming) == 1 and is_valid_request_id(incoming[0].decode("latin-1")):
            assert rid == incoming[0].decode("latin-1")  # a good ID is kept
    tr = [v for k, v in headers if k == b"traceresponse"]
    assert len(tr) == 1
    m = TRACERESPONSE.fullmatch(tr[0].decode("latin-1"))
    assert m is not None and int(m.group(1), 16) != 0 and int(m.group(2), 16) != 0
    span = last.span
    if span is None:  # a valid traceparent that is not sampled: no span is recorded, the IDs still flow
        assert int(tr[0][-2:], 16) & 1 == 0, tr
        return
    assert span.context is not None
    assert format(span.context.trace_id, "032x") == m.group(1)
    assert span.attributes is not None and span.attributes["request.id"] == rid
    if span.parent is None and trace_id_of(rid) is not None:
        assert span.context.trace_id == trace_id_of(rid)  # the request ID is the trace ID


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-request-id", b"\x1bfrom-app")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_asgi_middleware_answers_any_headers(
    counted: list[int], provider: tuple[TracerProvider, _Last], checked_logs: _Checked
) -> None:
    """Raw header bytes (non-UTF-8, duplicates, 64 KB) into the ASGI middleware: it answers with safe IDs."""
    cases = st.tuples(
        raw_headers,
        st.one_of(st.sampled_from(["GET", "POST", "get", ""]), st.text(max_size=20)),
        st.one_of(st.just("/"), st.text(max_size=100)),
        st.binary(max_size=100),
        st.booleans(),
    )
    _fuzz(cases, lambda case: _asgi_case(*case, counted, provider))
    assert checked_logs.records  # the rejected-header warning was formatted and checked


def _asgi_case(
    headers: list[tuple[bytes, bytes]],
    method: str,
    path: str,
    query: bytes,
    permissive: bool,
    counted: list[int],
    provider: tuple[TracerProvider, _Last],
) -> None:
    counted[0] += 1
    tp, last = provider
    app = CorrelationMiddleware(_ok_app, runtime=_runtimes(tp)[permissive])
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "query_string": query,
        "headers": list(headers),
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
        "http_version": "1.1",
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    last.span = None
    _LOOP.run_until_complete(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    incoming = [v for k, v in headers if k.lower() == b"x-request-id"]
    _check_answer(sent[0]["headers"], last, incoming, permissive)


_LOOP = asyncio.new_event_loop()
_RUNTIMES: dict[int, tuple[Runtime, Runtime]] = {}


def _runtimes(tp: TracerProvider) -> tuple[Runtime, Runtime]:
    if id(tp) not in _RUNTIMES:
        _RUNTIMES.clear()
        _RUNTIMES[id(tp)] = (_runtime(tp, False), _runtime(tp, True))
    return _RUNTIMES[id(tp)]


def _ok_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("X-Request-ID", "\x1bfrom-app"), ("Content-Type", "text/plain")])
    return [b"ok"]


def test_wsgi_middleware_answers_any_headers(
    counted: list[int], provider: tuple[TracerProvider, _Last], checked_logs: _Checked
) -> None:
    """The same for WSGI: environ values are latin-1 strings (PEP 3333), a duplicate header is comma-joined."""
    cases = st.tuples(raw_headers, st.text(max_size=12), st.text(max_size=60), st.booleans())
    _fuzz(cases, lambda case: _wsgi_case(*case, counted, provider))
    assert checked_logs.records


def _wsgi_case(
    headers: list[tuple[bytes, bytes]],
    method: str,
    path: str,
    permissive: bool,
    counted: list[int],
    provider: tuple[TracerProvider, _Last],
) -> None:
    counted[0] += 1
    tp, last = provider
    app = CorrelationWSGIMiddleware(_ok_wsgi, runtime=_runtimes(tp)[permissive])
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path.encode("utf-8", "surrogatepass").decode("latin-1"),
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    merged: dict[str, list[bytes]] = {}
    for name, value in headers:
        key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        merged.setdefault(key, []).append(value)
    for key, values in merged.items():
        environ[key] = b",".join(values).decode("latin-1")
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer.append((status, response_headers))

    last.span = None
    body = app(environ, start_response)
    assert b"".join(body) == b"ok"
    getattr(body, "close", lambda: None)()
    assert answer[0][0] == "200 OK"
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer[0][1]]
    incoming = [environ_value.encode("latin-1") for k, environ_value in environ.items() if k == "HTTP_X_REQUEST_ID"]
    _check_answer(out, last, incoming, permissive)


# --- the backend's OTLP decoding ---------------------------------------------------------------

LIMIT = 256 * 1024

any_value = st.deferred(
    lambda: st.one_of(
        st.builds(lambda s: {"string_value": s}, st.text(max_size=30)),
        st.builds(lambda b: {"bool_value": b}, st.booleans()),
        st.builds(lambda i: {"int_value": i}, st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda d: {"double_value": d}, st.floats()),
        st.builds(lambda b: {"bytes_value": b}, st.binary(max_size=20)),
        st.builds(lambda vs: {"array_value": {"values": vs}}, st.lists(any_value, max_size=3)),
        st.builds(lambda kvs: {"kvlist_value": {"values": kvs}}, st.lists(key_values, max_size=3)),
    )
)
key_values = st.builds(
    lambda k, v: {"key": k, "value": v},
    st.one_of(st.sampled_from(["request.id", "http.response.status_code", "service.name"]), st.text(max_size=10)),
    any_value,
)
ids16 = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16), st.binary(max_size=20))
ids8 = st.one_of(st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8), st.binary(max_size=10))
nanos = st.integers(0, 2**64 - 1)
span_dicts = st.builds(
    lambda t, s, p, n, k, a, b, attrs, events: {
        "trace_id": t,
        "span_id": s,
        "parent_span_id": p,
        "name": n,
        "kind": k,
        "start_time_unix_nano": a,
        "end_time_unix_nano": b,
        "attributes": attrs,
        "events": events,
    },
    ids16,
    ids8,
    st.one_of(st.just(b""), ids8),
    st.text(max_size=20),
    st.integers(0, 5),
    nanos,
    nanos,
    st.lists(key_values, max_size=4),
    st.lists(
        st.builds(lambda n, a: {"name": n, "attributes": a}, st.text(max_size=8), st.lists(key_values, max_size=2)),
        max_size=2,
    ),
)
resource = st.builds(lambda kvs: {"attributes": kvs}, st.lists(key_values, max_size=3))


def _trace_request(spans: list[dict[str, Any]], res: dict[str, Any]) -> bytes:
    from google.protobuf import json_format

    msg = ExportTraceServiceRequest()
    json_format.ParseDict(
        {"resource_spans": [{"resource": _b64(res), "scope_spans": [{"scope": {"name": "s"}, "spans": _b64(spans)}]}]},
        msg,
    )
    return msg.SerializeToString()  # type: ignore[no-any-return]


def _log_request(records: list[dict[str, Any]], res: dict[str, Any]) -> bytes:
    from google.protobuf import json_format

    msg = ExportLogsServiceRequest()
    json_format.ParseDict(
        {
            "resource_logs": [
                {"resource": _b64(res), "scope_logs": [{"scope": {"name": "l"}, "log_records": _b64(records)}]}
            ]
        },
        msg,
    )
    return msg.SerializeToString()  # type: ignore[no-any-return]


def _b64(node: Any) -> Any:
    """json_format wants bytes fields base64-encoded and 64-bit integers as they are."""
    if isinstance(node, bytes):
        return base64.b64encode(node).decode()
    if isinstance(node, dict):
        return {k: _b64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_b64(v) for v in node]
    if isinstance(node, float) and node != node:
        return "NaN"
    if isinstance(node, float) and node in (float("inf"), float("-inf")):
        return "Infinity" if node > 0 else "-Infinity"
    return node


log_dicts = st.builds(
    lambda t, s, time_, sev, body, attrs: {
        "trace_id": t,
        "span_id": s,
        "time_unix_nano": time_,
        "severity_number": sev,
        "body": body,
        "attributes": attrs,
    },
    st.one_of(st.just(b""), ids16),
    st.one_of(st.just(b""), ids8),
    nanos,
    st.integers(0, 24),
    any_value,
    st.lists(key_values, max_size=4),
)
valid_traces = st.builds(_trace_request, st.lists(span_dicts, max_size=3), resource)
valid_logs = st.builds(_log_request, st.lists(log_dicts, max_size=3), resource)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid message with bytes flipped, inserted, deleted or the tail cut."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "varint"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and at < len(data):
            del data[at]
        elif op == "truncate":
            del data[at:]
        elif op == "varint":  # a huge or overlong length prefix
            data[at:at] = b"\x0a" + b"\xff" * draw(st.integers(1, 10)) + b"\x01"
    return bytes(data)


def _json_body(kind: str) -> st.SearchStrategy[bytes]:
    ids = st.one_of(st.binary(max_size=17).map(bytes.hex), st.text(max_size=34), st.integers(), st.none())
    span = st.fixed_dictionaries(
        {},
        optional={
            "traceId": ids,
            "spanId": ids,
            "parentSpanId": ids,
            "name": st.one_of(st.text(max_size=10), st.integers()),
            "kind": st.one_of(st.integers(-3, 9), st.text(max_size=12)),
            "startTimeUnixNano": st.one_of(st.integers(-5, 2**70), st.text(max_size=22)),
            "endTimeUnixNano": st.one_of(st.integers(-5, 2**70), st.text(max_size=22)),
            "attributes": st.lists(
                st.fixed_dictionaries(
                    {"key": st.text(max_size=10)},
                    optional={
                        "value": st.dictionaries(
                            st.sampled_from(["stringValue", "intValue", "arrayValue", "kvlistValue", "x"]),
                            st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.none(), max_size=2)),
                            max_size=2,
                        )
                    },
                ),
                max_size=3,
            ),
        },
    )
    if kind == "traces":
        doc = st.builds(
            lambda spans, svc: {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                        "scopeSpans": [{"scope": {"name": "s"}, "spans": spans}],
                    }
                ]
            },
            st.lists(span, max_size=3),
            st.text(max_size=10),
        )
    else:
        record = st.fixed_dictionaries(
            {},
            optional={
                "traceId": ids,
                "spanId": ids,
                "body": st.dictionaries(
                    st.sampled_from(["stringValue", "intValue", "boolValue"]),
                    st.one_of(st.text(max_size=5), st.integers(), st.booleans()),
                ),
                "severityNumber": st.one_of(st.integers(-2, 30), st.text(max_size=8)),
                "timeUnixNano": st.one_of(st.integers(-5, 2**70), st.text(max_size=22)),
            },
        )
        doc = st.builds(
            lambda rs: {"resourceLogs": [{"scopeLogs": [{"logRecords": rs}]}]}, st.lists(record, max_size=3)
        )
    junk = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=12), children, max_size=3)
        ),
        max_leaves=10,
    )
    encoded = st.one_of(doc, junk).map(lambda d: json.dumps(d).encode())
    deep = st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(encoded, mutated(encoded), deep, st.binary(max_size=200))


def _bodies(kind: str) -> st.SearchStrategy[tuple[bytes, str, str]]:
    valid = valid_traces if kind == "traces" else valid_logs
    protobuf = st.one_of(valid, mutated(valid), st.binary(max_size=300))
    pairs = st.one_of(
        st.tuples(protobuf, st.just("application/x-protobuf")),
        st.tuples(_json_body(kind), st.just("application/json")),
        st.tuples(
            st.binary(max_size=100),
            st.one_of(
                st.sampled_from(["", "text/plain", "application/json; charset=utf-8", "APPLICATION/X-PROTOBUF"]),
                st.text(max_size=30),
            ),
        ),
    )
    return st.builds(
        _encode,
        pairs,
        st.sampled_from(["", "identity", "gzip", "deflate", "br", "GZIP ", "gzip-garbage", "deflate-garbage"]),
    )


def _encode(pair: tuple[bytes, str], encoding: str) -> tuple[bytes, str, str]:
    body, ctype = pair
    if encoding.strip().lower() == "gzip":
        body = gzip.compress(body, compresslevel=1)
    elif encoding == "deflate":
        body = zlib.compress(body, 1)
    elif encoding == "gzip-garbage":
        encoding, body = "gzip", gzip.compress(body, compresslevel=1)[: max(0, len(body) // 2)] + body[:5]
    elif encoding == "deflate-garbage":
        encoding = "deflate"
    return body, ctype, encoding


def _decode(kind: str, body: bytes, ctype: str, encoding: str) -> int:
    """What POST /v1/{kind} does before storing; the number of records it produced.

    Traces go through the server's path (parse_spans, span_rows) and the reference decoder, which
    must agree: both refuse the body with the same kind of error, or both take the same spans.
    """
    raw = decompress(body, encoding, LIMIT)
    if kind == "traces":
        try:
            spans, rejected, _ = decode_spans(parse_traces(raw, ctype))
        except (BadRequest, TooLarge) as refused:
            with pytest.raises(type(refused)):
                span_rows(parse_spans(raw, ctype), lambda digest, service: 1)
            raise
        batch = span_rows(parse_spans(raw, ctype), lambda digest, service: 1)
        assert (len(batch.rows), batch.rejected) == (len(spans), rejected)
        for row, span in zip(batch.rows, spans, strict=True):
            # The detail is the sender's bytes: equal to the reference as a message (a mutated body may
            # repeat a field, which the reference's serialization merges), so compare it re-serialized.
            detail = _otlp._slim(SpanMessage.FromString(bytes(row[12])))
            assert (bytes(row[0]), bytes(row[1]), detail) == (span.trace_id, span.span_id, span.raw)
            assert len(span.trace_id) == 16 and len(span.span_id) == 8 and any(span.trace_id)
        return len(spans) + rejected
    logs, _, _ = decode_logs(parse_logs(raw, ctype))
    return len(logs)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("traces", b'{"\\uda00":null}'),  # found by the fuzzer: upb raised SystemError, the app answered 500
        ("logs", b'{"resourceLogs":[{"\\udfff":1}]}'),
        ("traces", b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\\ud800"}]}]}]}'),
        ("logs", b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"\\udfff"}}]}]}]}'),
    ],
)
def test_otlp_json_with_lone_surrogates_is_a_bad_request(kind: str, body: bytes) -> None:
    """JSON may spell a lone UTF-16 surrogate (\\ud800); protobuf strings cannot hold one: 400, not 500."""
    with pytest.raises(BadRequest):
        _decode(kind, body, "application/json", "")


@pytest.mark.parametrize("kind", ["traces", "logs"])
def test_otlp_decoding_raises_only_its_own_errors(kind: str, counted: list[int]) -> None:
    """Random bytes, mutated protobuf, JSON variants, gzip/deflate of garbage: BadRequest/TooLarge or records."""
    outcomes = {"ok": 0, "BadRequest": 0, "TooLarge": 0}

    def check(case: tuple[bytes, str, str]) -> None:
        counted[0] += 1
        try:
            _decode(kind, *case)
            outcomes["ok"] += 1
        except (BadRequest, TooLarge) as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 1024
            outcomes[type(exc).__name__] += 1

    _fuzz(_bodies(kind), check)
    print(f" {kind} outcomes: {outcomes}")
    assert outcomes["ok"] and outcomes["BadRequest"]  # the generator reaches both sides


@pytest.mark.parametrize("kind", ["traces", "logs"])
def test_otlp_http_answers_400_413_never_500(kind: str, counted: list[int], tmp_path: Any) -> None:
    """Through the real Starlette app: every answer is 200, 400, 413 or 415."""
    import httpx

    from otel_corr.server._app import build_app
    from otel_corr.server._store import Store

    store = Store(tmp_path / "fuzz.db")
    statuses: dict[int, int] = {}
    transport = httpx.ASGITransport(app=build_app(store, max_body=LIMIT), raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://otlp")

    def check(case: tuple[bytes, str, str]) -> None:
        counted[0] += 1
        body, ctype, encoding = case
        headers = {
            k: v.encode("latin-1")
            for k, v in {"content-type": ctype, "content-encoding": encoding}.items()
            if _latin1(v)
        }
        response = _LOOP.run_until_complete(client.post(f"/v1/{kind}", content=body, headers=headers))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400, 413, 415), (response.status_code, response.text[:300])

    try:
        _fuzz(_bodies(kind), check, HTTP_EXAMPLES)
    finally:
        _LOOP.run_until_complete(client.aclose())
    store.close()
    print(f" {kind} statuses: {statuses}")


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return "\r" not in value and "\n" not in value
