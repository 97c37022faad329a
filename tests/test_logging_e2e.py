"""Logging end to end: a real uvicorn, its output file read back, a real collector for OTLP logs."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from .collector import Collector
from .conftest import server_env

pytestmark = pytest.mark.e2e
SECRETS = ("Bearer s3cr3t-t0ken-value", "sess=c00kie-value", "hunter2-password")


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _exercise(url: str) -> tuple[httpx.Response, httpx.Response]:
    rid = str(uuid.uuid4())
    with httpx.Client(base_url=url) as c:
        ok = c.get("/work", headers={"X-Request-ID": rid})
        bad = c.get(
            "/boom?password=hunter2-password",
            headers={"X-Request-ID": "err-42", "Authorization": SECRETS[0], "Cookie": SECRETS[1]},
        )
    return ok, bad


def test_uvicorn_json_lines_carry_the_response_ids(collector: Collector, start_uvicorn: Any) -> None:
    """Handler, access and ERROR lines in uvicorn's real output carry the IDs of the response headers."""
    env = server_env(collector, OTEL_CORR_LOG_FORMAT="json", OTEL_LOGS_EXPORTER="otlp", OTEL_SERVICE_NAME="shop")
    server = start_uvicorn(env, "tests.apps.logging_app:app")
    ok, bad = _exercise(server.url)
    server.sigterm()
    text = server.output()
    lines = _json_lines(text)
    rid, trace_id = ok.headers["x-request-id"], ok.headers["traceresponse"].split("-")[1]
    work = [e for e in lines if e["message"] == "working on order"]
    access = [e for e in lines if e["logger"] == "otel_corr.access"]
    errors = [e for e in lines if e["logger"] == "otel_corr.error"]
    assert len(work) == 1 and work[0]["request_id"] == rid and work[0]["trace_id"] == trace_id == rid.replace("-", "")
    assert work[0]["service"] == "shop" and work[0]["order"] == 42
    assert [(a["request_id"], a["status"]) for a in access] == [(rid, 200), ("err-42", 500)]
    assert access[0]["trace_id"] == trace_id
    assert len(errors) == 1 and errors[0]["request_id"] == bad.headers["x-request-id"] == "err-42"
    assert errors[0]["trace_id"] == bad.headers["traceresponse"].split("-")[1]
    assert "RuntimeError: payment service exploded" in errors[0]["exception"]
    assert not [e for e in lines if e["logger"] == "uvicorn.access"]  # silenced: ours replaces it
    assert any(e["logger"] == "uvicorn.error" for e in lines)  # uvicorn's own lines are JSON too
    for secret in SECRETS:
        assert secret not in text
    # The same record reached the collector as an OTLP log, tied to the request's trace.
    (received,) = collector.wait_for_logs(lambda e: e.body == "working on order")
    assert received.trace_id == trace_id and received.attributes["request.id"] == rid
    assert received.resource["service.name"] == "shop"


def test_uvicorn_log_config_with_our_formatter(tmp_path: Path, start_uvicorn: Any) -> None:
    """uvicorn --log-config with otel_corr.logging.JsonFormatter: the app's lines carry the IDs."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": "otel_corr.logging.IdsFilter"}},
        "formatters": {"json": {"()": "otel_corr.logging.JsonFormatter"}},
        "handlers": {
            "out": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["ids"],
            }
        },
        "root": {"handlers": ["out"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
    path = tmp_path / "log-config.json"
    path.write_text(json.dumps(config))
    env = server_env(None, APP_CONFIGURE_LOGGING="0", OTEL_CORR_ACCESS_LOG="true", OTEL_TRACES_EXPORTER="none")
    server = start_uvicorn(env, "tests.apps.logging_app:app", "--log-config", str(path))
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/work", headers={"X-Request-ID": "cfg-1"})
    server.sigterm()
    lines = _json_lines(server.output())
    assert [e["request_id"] for e in lines if e["message"] == "working on order"] == ["cfg-1"]
    assert [e["request_id"] for e in lines if e["logger"] == "otel_corr.access"] == ["cfg-1"]
    assert r.headers["x-request-id"] == "cfg-1"
    assert all(e["request_id"] == "-" for e in lines if e["logger"] == "uvicorn.error")


def test_two_uvicorn_workers_write_their_own_files(tmp_path: Path, start_uvicorn: Any) -> None:
    """With --workers 2 and a log file, each worker writes its own app-<pid>.log; lines never interleave."""
    env = server_env(
        None,
        OTEL_CORR_LOG_FORMAT="json",
        OTEL_CORR_LOG_FILE=str(tmp_path / "logs" / "app.log"),
        OTEL_TRACES_EXPORTER="none",
    )
    server = start_uvicorn(env, "tests.apps.logging_app:app", "--workers", "2")
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client(base_url=server.url) as c:  # a new connection each time: the kernel spreads them
            pids.add(c.get("/work").json()["pid"])
    server.sigterm()
    assert len(pids) == 2
    files = sorted((tmp_path / "logs").glob("app-*.log"))
    assert {int(f.stem.split("-")[1]) for f in files} >= pids
    for f in files:
        pid = int(f.stem.split("-")[1])
        for entry in _json_lines(f.read_text()):
            if entry["message"] == "working on order":
                assert entry["pid"] == pid
