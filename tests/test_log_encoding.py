"""Every value of a log line through one encoder: no injected key or line, no lost line, the record's own IDs.

Property tests (Hypothesis, seeded, no example database) log through a real
logger and handler writing to a strict UTF-8 stream, as a log file is written:
whatever the ``extra=`` keys and values, the message and its arguments, each
record is exactly one line, the JSON line parses as strict JSON (no ``NaN``,
no repeated key) with no key that was not a field, and the IDs are the ones
the record was made with.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

import otel_corr
from otel_corr._context import bound_request_id
from otel_corr.logging import JsonFormatter, TextFormatter
from otel_corr.logging._formatters import OWN_KEYS
from otel_corr.logging._stamp import FIELDS, service_name

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_TRACER = TracerProvider().get_tracer("test_log_encoding")
#: Attribute names every LogRecord has: ``makeRecord`` refuses them in ``extra=`` (KeyError at the call).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: Characters no line may hold raw: each would split a line for some reader or drive a terminal.
_RAW_FORBIDDEN = {chr(c) for c in (*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))} | {
    "\u2028",
    "\u2029",
}

# --------------------------------------------------------------------------- what is thrown at it


class Hostile:
    """An object whose __str__ and __repr__ raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("Hostile()")  # how Hypothesis shows a failing example: it cannot use repr either


class HostileClass:
    """An object that raises when anything asks for its class (isinstance does)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("no class")

    def __repr__(self) -> str:
        return "HostileClass()"


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


HOSTILE_TEXT = [
    'x","admin":true,"y":"',
    "a\nb",
    "a\r\nINFO [admin] forged",
    "\x1b[31mred\x1b]0;title\x07",
    "\u2028\u2029\x85\x9b",
    "${jndi:ldap://x/a}",
    "\ud800 lone surrogate",
    "\x00nul",
    '\\"',
    "-",
    "x" * 5000,
]
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=30) | st.sampled_from(HOSTILE_TEXT)
leaves = (
    any_text
    | st.integers()
    | st.sampled_from([-(2**64), True, False, None])  # a huge int: in the example test (Hypothesis cannot repr it)
    | st.floats()  # nan and the infinities included
    | st.binary(max_size=20)
    | st.builds(Hostile)
    | st.builds(HostileClass)
    | st.builds(object)
    | st.builds(_circular)
    | st.builds(lambda: {1: "int key", "1": "str key"})
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(any_text | st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)
RESERVED_NAMES = [
    name
    for name in (*FIELDS, "service.name", *OWN_KEYS, "extra.trace_id", "extra.request_id")
    if name not in _RECORD_ATTRS  # "message": makeRecord refuses it at the call (KeyError), by design
]
keys = (
    st.sampled_from(RESERVED_NAMES)
    | any_text.filter(lambda k: k not in _RECORD_ATTRS)
    | st.sampled_from(["order", "user", "_private"])
    | st.integers(min_value=-5, max_value=5)
)
extras = st.dictionaries(keys, values, max_size=6)
messages = any_text | st.sampled_from(["order %s created", "%d items", "%(x)s", "100%", "%s %s"])
# A lone argument whose class cannot be asked for makes LogRecord() itself raise, at the call: not ours.
arguments = st.lists(values.filter(lambda v: type(v) is not HostileClass), max_size=2).map(tuple)

# --------------------------------------------------------------------------- the real logging path


class StrictHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler on a strict UTF-8 stream (as a log file is) that remembers every dropped line."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.raw = io.BytesIO()
        super().__init__(io.TextIOWrapper(self.raw, encoding="utf-8", errors="strict", newline="\n"))
        self.setFormatter(formatter)
        self.dropped: list[BaseException | None] = []

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped.append(sys.exc_info()[1])

    def take(self) -> list[str]:
        """The lines written since the last call."""
        self.flush()
        text = self.raw.getvalue().decode("utf-8")
        self.raw.seek(0)
        self.raw.truncate()
        return text.split("\n")[:-1]


@contextmanager
def _logger(handler: logging.Handler) -> Iterator[logging.Logger]:
    log = logging.getLogger("test_log_encoding")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        yield log
    finally:
        log.handlers.clear()


@contextmanager
def _ids(inside: bool) -> Iterator[tuple[str, str, str]]:
    """Inside a span with a bound request ID, or outside both: the IDs a record made here must carry."""
    if not inside:
        yield "-", "-", "-"
        return
    with _TRACER.start_as_current_span("req") as span, bound_request_id("req-7f3a"):
        ctx = span.get_span_context()
        yield format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), "req-7f3a"


def _strict(line: str) -> dict[str, Any]:
    """Parse as strict JSON: NaN/Infinity constants and repeated keys are refused."""

    def constant(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in pairs]
        assert len(names) == len(set(names)), f"repeated key in {names}"
        return dict(pairs)

    entry = json.loads(line, parse_constant=constant, object_pairs_hook=no_repeats)
    assert isinstance(entry, dict)
    return entry


def _one_safe_line(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    (line,) = lines
    assert not _RAW_FORBIDDEN & set(line), repr(line)
    assert "${" not in line
    line.encode("utf-8")  # no lone surrogate: a file would refuse it
    return line


def _simple(value: object) -> object:
    """What a plain value reads back as from the JSON line (None: not a plain value)."""
    if type(value) is str:
        return value[:4096]
    if type(value) is float:
        return value if value == value and abs(value) != float("inf") else repr(value)
    if type(value) is int and abs(value) < 10**100 or type(value) is bool:
        return value
    return None


@pytest.fixture(scope="module", autouse=True)
def _stamping() -> None:
    """The record factory and its extra= guard, as instrument()/instrument_logging() install them."""
    otel_corr.instrument_logging()


# --------------------------------------------------------------------------- properties


SHARED_JSON = JsonFormatter(static_fields={"env": "ci"})


@SETTINGS
@given(extra=extras, msg=messages, args=arguments, inside=st.booleans())
def test_any_extra_gives_one_strict_json_line_with_only_fields_and_the_records_ids(
    extra: dict[Any, Any], msg: str, args: tuple[Any, ...], inside: bool
) -> None:
    """Any extra= keys/values, message and arguments: one strict JSON line, only fields, the record's own IDs."""
    handler = StrictHandler(SHARED_JSON)  # one formatter for every example: what it remembers must not leak
    with _logger(handler) as log, _ids(inside) as (trace_id, span_id, request_id):
        log.info(msg, *args, extra=extra)
    assert handler.dropped == []
    entry = _strict(_one_safe_line(handler.take()))

    assert (entry["trace_id"], entry["span_id"], entry["request_id"]) == (trace_id, span_id, request_id)
    assert entry["service"] == service_name() and entry["level"] == "INFO" and entry["env"] == "ci"
    assert isinstance(entry["message"], str)
    # Every key is ours, the static field, or one extra= field (under extra.<name> when it is one of ours).
    stamped = {"trace_id": trace_id, "span_id": span_id, "request_id": request_id, "service_name": service_name()}
    kept = [  # a private name is no field; an ID-named value equal to the stamped ID adds nothing
        k
        for k, v in extra.items()
        if not (isinstance(k, str) and k.startswith("_")) and not (type(v) is str and v == stamped.get(k))
    ]
    fields = set(entry) - {*OWN_KEYS, "env"}
    assert len(fields) == len(kept), (sorted(fields), kept)
    allowed = {"extra." * n + str(k)[:256] for k in kept for n in range(4)}
    assert fields <= allowed, sorted(fields - allowed)
    # A plain value is written as itself (the caller's ID-named value too, under extra.<name>).
    written = list(entry.values())
    for k in kept:
        plain = _simple(extra[k])
        if plain is not None:
            assert plain in written, (k, plain)


@SETTINGS
@given(extra=extras, msg=messages, args=arguments, inside=st.booleans())
def test_a_record_made_without_the_factory_gets_the_same_answer(
    extra: dict[Any, Any], msg: str, args: tuple[Any, ...], inside: bool
) -> None:
    """A record made by a plain LogRecord (no factory, no guard) is stamped by the formatter, the same way."""
    extra = {k: v for k, v in extra.items() if k not in ("message", "asctime")}
    with _ids(inside) as (trace_id, span_id, request_id):
        record = logging.LogRecord("plain", logging.WARNING, __file__, 1, msg, args, None)
        record.__dict__.update(extra)  # what the stock Logger.makeRecord does with extra=
        line = JsonFormatter().format(record)
    entry = _strict(_one_safe_line(line.split("\n")))
    if not {"trace_id", "span_id", "request_id"} <= extra.keys():  # all three given: taken as a stamped record
        assert (entry["trace_id"], entry["span_id"], entry["request_id"]) == (trace_id, span_id, request_id)
    assert entry["level"] == "WARNING"


@SETTINGS
@given(extra=extras, msg=messages, args=arguments, inside=st.booleans())
def test_any_extra_gives_exactly_one_text_line(
    extra: dict[Any, Any], msg: str, args: tuple[Any, ...], inside: bool
) -> None:
    """The text format names the extra= fields too: still one line, nothing raw, the record's request ID."""
    named = [k for k in extra if isinstance(k, str) and k.isidentifier()]
    fmt = "%(levelname)s [%(request_id)s] %(trace_id)s %(name)s: %(message)s" + "".join(f" %({k})s" for k in named)
    handler = StrictHandler(TextFormatter(fmt))
    with _logger(handler) as log, _ids(inside) as (trace_id, _, request_id):
        log.warning(msg, *args, extra=extra)
    assert handler.dropped == []
    line = _one_safe_line(handler.take())
    assert line.startswith(f"WARNING [{request_id}] {trace_id} test_log_encoding: ")


# --------------------------------------------------------------------------- the cases, by example


def _json_line(log_call: Any) -> dict[str, Any]:
    handler = StrictHandler(JsonFormatter())
    with _logger(handler) as log:
        log_call(log)
    assert handler.dropped == []
    return _strict(_one_safe_line(handler.take()))


def test_one_formatter_writes_each_requests_own_ids() -> None:
    """Records of two requests, interleaved, through one formatter: each line has its own request's IDs."""
    handler = StrictHandler(JsonFormatter())
    seen = []
    with _logger(handler) as log:
        for _ in range(2):
            with _ids(True) as first:
                log.info("a")
                with _ids(True) as second:
                    log.info("b")
                log.info("c")
            seen += [first, second, first]
        log.info("outside")
    entries = [_strict(line) for line in handler.take()]
    assert [(e["trace_id"], e["span_id"], e["request_id"]) for e in entries] == [*seen, ("-", "-", "-")]


def test_a_quote_in_an_extra_id_cannot_add_a_key() -> None:
    """extra={"trace_id": 'x","admin":true,"y":"'}: no admin key; the real trace ID stays, the value is kept aside."""
    forged = 'x","admin":true,"y":"'
    with _ids(True) as (trace_id, _, _):
        entry = _json_line(lambda log: log.info("x", extra={"trace_id": forged}))
    assert "admin" not in entry and "y" not in entry
    assert entry["trace_id"] == trace_id and entry["extra.trace_id"] == forged


def test_a_non_string_id_in_extra_keeps_the_line() -> None:
    """extra={"span_id": 123} used to raise TypeError inside the formatter and lose the line."""
    with _ids(True) as (_, span_id, _):
        entry = _json_line(lambda log: log.info("x", extra={"span_id": 123}))
    assert entry["span_id"] == span_id and entry["extra.span_id"] == 123


def test_an_extra_named_like_our_keys_cannot_replace_them() -> None:
    """level, message, service.name... from extra= are written under extra.<name>; the line's own stay."""
    entry = _json_line(
        lambda log: log.error("real", extra={"level": "DEBUG", "service.name": "other", "extra.level": 1})
    )
    assert entry["level"] == "ERROR" and entry["message"] == "real"
    assert (
        entry["extra.level"] == "DEBUG" and entry["extra.service.name"] == "other" and entry["extra.extra.level"] == 1
    )


def test_values_json_has_no_form_for_are_strings() -> None:
    """nan/inf, bytes, hostile objects, huge ints, deep and circular structures: strict JSON, never NaN."""
    deep: list[Any] = []
    for _ in range(20):
        deep = [deep]
    entry = _json_line(
        lambda log: log.info(
            "x",
            extra={
                "nan": float("nan"),
                "inf": [float("-inf")],
                "raw": b"\x00\xff",
                "bad": Hostile(),
                "huge": 10**5000,
                "deep": deep,
                "loop": _circular(),
            },
        )
    )
    assert entry["nan"] == "nan" and entry["inf"] == ["-inf"] and entry["raw"] == "b'\\x00\\xff'"
    assert entry["bad"] == "<unrepresentable Hostile>" and entry["huge"].startswith("<unrepresentable")
    assert isinstance(entry["deep"], str) and entry["loop"] == "[1, [...]]"


def test_a_message_whose_arguments_do_not_fit_is_still_written() -> None:
    """log.info("%d", "x") would print a traceback to stderr and drop the line; it is written, marked."""
    entry = _json_line(lambda log: log.info("%d items", "many"))
    assert entry["message"].startswith("%d items [arguments not formatted (TypeError): ('many',)")


def test_a_static_field_named_like_ours_is_refused() -> None:
    """static_fields={"level": ...} would write the key twice: refused at start-up, naming it."""
    with pytest.raises(otel_corr.ConfigError, match="static_fields='level'"):
        JsonFormatter(static_fields={"level": "x"})


def test_text_fields_are_escaped_and_a_missing_field_is_a_dash() -> None:
    """Any field fmt names is escaped like the message; one the record lacks is '-', not a lost line."""
    handler = StrictHandler(TextFormatter("%(user)s %(order)s: %(message)s"))
    with _logger(handler) as log:
        log.info("hi", extra={"user": "eve\nINFO forged line\x1b[2J"})
        log.info("no user")
        log.info("hostile", extra={"user": Hostile(), "order": 1})
    assert handler.dropped == []
    first, second, third = handler.take()
    assert first == "eve\\nINFO forged line\\u001b[2J -: hi"
    assert second == "- -: no user"
    assert third == "<unrepresentable Hostile> 1: hostile"  # its str and repr raise: a placeholder


def test_structlog_and_loguru_keep_our_ids_and_set_the_apps_aside() -> None:
    """A value the app binds under an ID name is kept as extra.<name>; the ID itself stays otel-corr's."""
    import otel_corr.loguru
    import otel_corr.structlog

    with _ids(True) as (trace_id, _, request_id):
        event = otel_corr.structlog.add_ids(None, "info", {"event": "x", "request_id": "forged", "trace_id": trace_id})
        record: dict[str, Any] = {"extra": {"request_id": "forged"}}
        otel_corr.loguru.patcher(record)
    assert event["request_id"] == request_id and event["extra.request_id"] == "forged"
    assert event["trace_id"] == trace_id and "extra.trace_id" not in event  # the same value: nothing to keep
    assert record["extra"]["request_id"] == request_id and record["extra"]["extra.request_id"] == "forged"
