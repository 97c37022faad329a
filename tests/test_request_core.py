"""The protocol-free request core: importing it is side-effect free, the W3C carriers are bounded."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.baggage import get_all
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_corr._request import bound_baggage, bound_tracestate

from .conftest import ROOT

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_importing_the_middlewares_reads_no_otel_variable() -> None:
    """OTEL_PROPAGATORS=bogus: the import works, building a middleware raises ConfigError, like instrument()."""
    code = """
import sys
from otel_corr.asgi import CorrelationMiddleware
from otel_corr.wsgi import CorrelationWSGIMiddleware
from otel_corr import ConfigError
assert "opentelemetry.propagate" not in sys.modules
for build in (lambda: CorrelationMiddleware(lambda *a: None), lambda: CorrelationWSGIMiddleware(lambda *a: [])):
    try:
        build()
    except ConfigError as exc:
        assert "OTEL_PROPAGATORS" in str(exc), exc
    else:
        raise SystemExit("no ConfigError")
print("ok")
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OTEL_PROPAGATORS": "bogus"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_child_with_a_bad_otel_propagators_still_imports_and_adopts_its_parents_trace() -> None:
    """import otel_corr never raises: with TRACEPARENT set and OTEL_PROPAGATORS=bogus it adopts by W3C."""
    code = """
import otel_corr
ids = otel_corr.current_ids()
print(ids.trace_id, ids.request_id)
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "OTEL_PROPAGATORS": "bogus",
        "TRACEPARENT": TRACEPARENT,
        "X_REQUEST_ID": "parent-req-1",
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4bf92f3577b34da6a3ce929d0e0e4736", "parent-req-1"], proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("a=1,b=2", "a=1,b=2"),
        (" a = 1 ; p ; q = x , b=2 ", "a=1;p;q=x,b=2"),  # white space left out: SDKs < 1.40 log it
        ("0\t=,b=2", "0=,b=2"),
        ("a=1,no-equals,b=%20", "a=1,b=%20"),
        ("a=1,${jndi:ldap://x/a},b=2", "a=1,b=2"),
        ("a=1,bad=va lue", "a=1"),
        ("a=\u00e9", None),
        ("a=1;", None),
        ("=1", None),
        ("", None),
        ("k=" + "v" * 4094, "k=" + "v" * 4094),
        ("k=" + "v" * 4095, None),
        ("a=1," + "x" * 8190, None),  # the whole header over 8192 bytes
    ],
)
def test_baggage_keeps_the_well_formed_members(header: str, kept: str | None) -> None:
    """W3C baggage: malformed members dropped, the rest kept (without optional white space); too big: nothing."""
    assert bound_baggage(header) == kept


def test_baggage_keeps_at_most_180_members() -> None:
    """W3C baggage: the first 180 list-members."""
    kept = bound_baggage(",".join(f"k{i}=v" for i in range(200)))
    assert kept is not None and kept.split(",") == [f"k{i}=v" for i in range(180)]


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        ("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", True),
        ("tenant@vendor=x, a=b ,", True),
        ("a=b,a=c", False),  # duplicate key
        (" ", False),  # nothing but empty members
        (" , ,", False),
        ("A=b", False),
        ("a=b c ", True),
        ("a=", False),
        ("a=b=c", False),
        ("a=${jndi:ldap://x}", True),  # well-formed: kept for the SDK, never logged by us
        ("a=b,${jndi:ldap://x}", False),
        (",".join(f"k{i}=v" for i in range(32)), True),
        (",".join(f"k{i}=v" for i in range(33)), False),
        ("a=" + "b" * 256, True),
        ("a=" + "b" * 257, False),
        ("a=" + "b" * 200 + ",c=" + "d" * 200 + ",e=" + "f" * 100, True),
        ("a=" + "b" * 200 + ",c=" + "d" * 200 + ",e=" + "f" * 200, False),  # over 512 characters
    ],
)
def test_tracestate_is_kept_whole_or_dropped(header: str, valid: bool) -> None:
    """W3C tracestate: one malformed member, a duplicate, > 32 members or > 512 characters drop it all.

    Empty members are left out (SDKs before 1.40 log a warning for each), and a list of nothing
    but empty members is no tracestate at all.
    """
    result = bound_tracestate(header)
    if not valid:
        assert result is None
        return
    members = [m.strip(" \t") for m in header.split(",") if m.strip(" \t")]
    assert result is not None and [m.strip(" \t") for m in result.split(",")] == members
    if "" not in [m.strip(" \t") for m in header.split(",")]:
        assert result == header  # nothing to leave out: kept whole, as sent


# Any latin-1 text, and text from the characters the grammars care about (so that many are well-formed).
_HEADERS = st.one_of(
    st.text(st.characters(codec="latin-1"), max_size=300),
    st.text(st.sampled_from("ab0=,; \t%${}:/@*-_\x01\u00e9"), max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(_HEADERS, _HEADERS)
def test_the_sdk_has_nothing_to_log_about_what_we_hand_it(baggage: str, tracestate: str) -> None:
    """Whatever came in, the SDK's W3C propagators extract what we keep without a warning."""
    carrier = {"traceparent": TRACEPARENT}
    if (kept := bound_baggage(baggage)) is not None:
        carrier["baggage"] = kept
    if (state := bound_tracestate(tracestate)) is not None:
        carrier["tracestate"] = state
    logger = logging.getLogger("opentelemetry")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        context = W3CBaggagePropagator().extract(carrier, Context())
        context = TraceContextTextMapPropagator().extract(carrier, context)
    finally:
        logger.removeHandler(handler)
    assert records == []
    if kept is not None:
        assert len(get_all(context)) == len(kept.split(","))
    span_context = get_current_span(context).get_span_context()
    assert span_context.is_valid
    if state is not None:
        assert len(span_context.trace_state) == len([m for m in state.split(",") if m.strip(" \t")])
