"""Every log line carries the IDs: stamping, formatters, access and error lines, structlog, loguru."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI

import otel_corr
import otel_corr.structlog
from otel_corr.logging import IdsFilter, JsonFormatter, TextFormatter, _access, configure_logging, stop_queue

from .conftest import Capture

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}([+-]\d\d:\d\d|Z)")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test gets the root logger and the server loggers back as they were."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "otel_corr.access", "otel_corr.error", "app")
    others = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate, logging.getLogger(n).disabled)
        for n in names
    }
    yield
    stop_queue()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, (handlers, propagate, disabled) in others.items():
        lg = logging.getLogger(n)
        lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
    _access.set_access_log(False)


def _app(capture: Capture) -> FastAPI:
    app = FastAPI()

    @app.get("/work")
    async def work() -> dict[str, str]:
        logging.getLogger("app").info("working on it", extra={"order": 42})
        return {"ok": "yes"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    otel_corr.instrument(app, tracer_provider=capture.provider)
    return app


async def _get(app: Any, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.get(path, **kw)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


async def test_handlers_added_before_and_after_instrument_both_get_the_ids(capture: Capture) -> None:
    """A plain %-format handler added before instrument() and one added after both show the request's IDs."""
    before, after = io.StringIO(), io.StringIO()
    fmt = "%(request_id)s|%(trace_id)s|%(span_id)s|%(service_name)s|%(message)s"
    h1 = logging.StreamHandler(before)
    h1.setFormatter(logging.Formatter(fmt))
    logging.getLogger("app").addHandler(h1)
    app = _app(capture)
    h2 = logging.StreamHandler(after)
    h2.setFormatter(logging.Formatter(fmt))
    logging.getLogger("app").addHandler(h2)
    logging.getLogger("app").setLevel(logging.INFO)
    r = await _get(app, "/work", headers={"X-Request-ID": "log-1"})
    logging.getLogger("app").info("outside")
    span = capture.one()
    expected = f"log-1|{format(span.context.trace_id, '032x')}|{format(span.context.span_id, '016x')}|"
    for buf in (before, after):
        inside, outside = buf.getvalue().splitlines()
        assert inside.startswith(expected) and inside.endswith("|working on it")
        assert outside.startswith("-|-|-|")
    assert r.headers["x-request-id"] == "log-1"


def test_extra_with_our_field_names_never_raises_and_is_set_aside() -> None:
    """logger.info(..., extra={"request_id": ...}) keeps working: the stamped ID stays, the caller's is kept aside."""
    otel_corr.instrument_logging()
    record = logging.getLogger("app").makeRecord(
        "app", logging.INFO, "f", 1, "m", (), None, extra={"request_id": "mine", "other": 1}
    )
    assert record.request_id == "-" and record.other == 1 and record.trace_id == "-"
    assert record.__dict__["extra.request_id"] == "mine"


def test_extra_task_id_never_raises_inside_a_celery_task_and_stands_outside_one() -> None:
    """Inside a task the stamped task_id wins and the caller's is set aside; outside, the caller's stands."""
    from opentelemetry import context as otel_context

    from otel_corr.logging import _stamp
    from otel_corr.propagation._celery import TASK_KEY

    otel_corr.instrument_logging()
    _stamp.set_task_key(TASK_KEY)
    log = logging.getLogger("app")
    outside = log.makeRecord("app", logging.INFO, "f", 1, "m", (), None, extra={"task_id": "mine"})
    assert outside.__dict__["task_id"] == "mine"
    token = otel_context.attach(otel_context.set_value(TASK_KEY, ("t-1", None)))
    try:
        inside = log.makeRecord(
            "app", logging.INFO, "f", 1, "m", (), None, extra={"task_id": "mine", "parent_task_id": "p"}
        )
    finally:
        otel_context.detach(token)
    assert inside.__dict__["task_id"] == "t-1" and inside.__dict__["extra.task_id"] == "mine"
    assert inside.__dict__["extra.parent_task_id"] == "p"


def test_json_formatter_fields_extras_exceptions_and_hostile_values() -> None:
    """One JSON object per line with every key, the traceback, extras, and repr for what JSON cannot encode."""
    otel_corr.instrument_logging()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter(static_fields={"env": "ci"}))
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    circular: list[Any] = []
    circular.append(circular)
    try:
        raise ValueError("bad thing")
    except ValueError:
        log.exception(
            "failed\nsecond line",
            extra={"order": 42, "obj": object(), "circ": circular, "weird": Unprintable(), "nested": {"a": [1, 2]}},
        )
    (line,) = buf.getvalue().splitlines()
    entry = json.loads(line)
    assert ISO.fullmatch(entry["timestamp"])
    assert entry["level"] == "ERROR" and entry["logger"] == "app"
    assert entry["message"] == "failed\nsecond line"
    assert entry["trace_id"] == "-" and entry["request_id"] == "-" and entry["service"]
    assert entry["file"].endswith("test_logging.py") and entry["function"] and entry["line"] > 0
    assert "ValueError: bad thing" in entry["exception"] and "Traceback" in entry["exception"]
    assert entry["order"] == 42 and entry["nested"] == {"a": [1, 2]} and entry["env"] == "ci"
    assert entry["obj"].startswith("<object object") and isinstance(entry["circ"], str)
    assert isinstance(entry["weird"], str)


def test_text_formatter_short_id_and_escaped_newlines(capture: Capture) -> None:
    """The text line has the short request ID in brackets; a message cannot forge a second line."""
    otel_corr.instrument_logging()
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(TextFormatter())
    log = logging.getLogger("app")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    from otel_corr._context import bound_request_id

    with bound_request_id("3f2504e0-4f89-11d3-9a0c-0305e82c3301"):
        log.info("user said: hi\n2026-01-01 00:00:00,000 INFO [admin] forged")
    (line,) = buf.getvalue().splitlines()
    assert "INFO    [3f2504e0] app: user said: hi\\n2026-01-01" in line


def test_dictconfig_with_our_formatter_and_filter() -> None:
    """The classes load from logging.config.dictConfig with '()'."""
    buf = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"ids": {"()": "otel_corr.logging.IdsFilter"}},
            "formatters": {
                "json": {"()": "otel_corr.logging.JsonFormatter"},
                "plain": {"format": "%(request_id)s %(message)s"},
            },
            "handlers": {
                "h": {"class": "logging.StreamHandler", "stream": buf, "formatter": "json", "filters": ["ids"]},
                "p": {"class": "logging.StreamHandler", "stream": buf, "formatter": "plain", "filters": ["ids"]},
            },
            "loggers": {"app": {"handlers": ["h", "p"], "level": "INFO", "propagate": False}},
        }
    )
    record = logging.LogRecord("app", logging.INFO, "f", 1, "raw record", (), None)  # not through the factory
    logging.getLogger("app").handle(record)
    json_line, plain_line = buf.getvalue().splitlines()
    assert json.loads(json_line)["request_id"] == "-"
    assert plain_line == "- raw record"
    assert isinstance(IdsFilter(), logging.Filter)


async def test_configure_logging_json_access_and_error_lines(capture: Capture) -> None:
    """Handler line, access line and ERROR line carry the response's IDs; secrets never reach the output."""
    buf = io.StringIO()
    configure_logging(fmt="json", stream=buf)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the test's own client logs its URLs
    app = _app(capture)
    rid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    ok = await _get(app, "/work?api_key=abc123", headers={"X-Request-ID": rid, "User-Agent": "ua/2"})
    bad = await _get(
        app,
        "/boom?password=hunter2&page=2",
        headers={
            "X-Request-ID": "err-1",
            "Authorization": "Bearer s3cr3t-t0ken",
            "Cookie": "session=c00kie",
            "X-Csrf-Token": "csrfval",
            "X-Tenant": "acme",
        },
    )
    lines = _lines(buf)
    work = [e for e in lines if e["message"] == "working on it"][0]
    access = [e for e in lines if e["logger"] == "otel_corr.access"]
    error = [e for e in lines if e["logger"] == "otel_corr.error"][0]
    assert work["request_id"] == rid and work["trace_id"] == rid.replace("-", "") and work["order"] == 42
    assert [a["request_id"] for a in access] == [rid, "err-1"]
    assert access[0]["trace_id"] == work["trace_id"] and access[0]["span_id"] == work["span_id"]
    assert access[0]["method"] == "GET" and access[0]["status"] == 200 and access[0]["duration_ms"] >= 0
    assert access[0]["path"] == "/work?api_key=REDACTED" and access[0]["user_agent"] == "ua/2"
    assert access[0]["client"].startswith("127.0.0.1")
    assert access[1]["status"] == 500
    assert error["level"] == "ERROR" and error["request_id"] == bad.headers["x-request-id"] == "err-1"
    assert "RuntimeError: kaboom" in error["exception"]
    assert error["request"]["headers"]["authorization"] == "[REDACTED]"
    assert error["request"]["headers"]["x-tenant"] == "acme"
    assert error["method"] == "GET" and error["path"] == "/boom"
    text = buf.getvalue()
    for secret in ("s3cr3t-t0ken", "c00kie", "hunter2", "csrfval", "abc123"):
        assert secret not in text
    assert ok.status_code == 200


async def test_access_line_can_be_switched_off(capture: Capture) -> None:
    """configure_logging(access_log=False) writes no access line."""
    buf = io.StringIO()
    configure_logging(fmt="json", stream=buf, access_log=False)
    await _get(_app(capture), "/work")
    assert [e["logger"] for e in _lines(buf)] == ["app"]


@pytest.mark.parametrize("value", ["${jndi:ldap://evil/x}", "<script>x</script>", "x" * 300, "a\x01b"])
async def test_rejected_request_ids_never_reach_a_log(capture: Capture, value: str) -> None:
    """A rejected request ID is not written anywhere, not even in the error summary."""
    buf = io.StringIO()
    configure_logging(fmt="text", stream=buf, level="DEBUG")
    app = _app(capture)
    await _get(app, "/work", headers={"X-Request-ID": value})
    await _get(app, "/boom", headers={"X-Request-ID": value})
    assert value not in buf.getvalue()
    assert "ignored an invalid X-Request-ID" in buf.getvalue()


async def test_queue_handler_keeps_ids_and_exceptions(capture: Capture) -> None:
    """Through the queue listener thread the IDs and the traceback survive."""
    buf = io.StringIO()
    configure_logging(fmt="json", stream=buf, queue_handler=True)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_otel_corr_handler", False)]
    assert [type(h).__name__ for h in ours] == ["_QueueHandler"]
    r = await _get(_app(capture), "/boom", headers={"X-Request-ID": "q-1"})
    stop_queue()
    error = [e for e in _lines(buf) if e["logger"] == "otel_corr.error"][0]
    assert error["request_id"] == r.headers["x-request-id"] == "q-1"
    assert "RuntimeError: kaboom" in error["exception"]


FORGED = "\n2026-01-01 00:00:00 INFO forged"


def _log_hostile_exception(fmt: Literal["text", "json"], tmp_path: Path) -> tuple[str, str]:
    """Through the queue into a file: an exception (chained to another) whose messages carry LF and ESC."""
    configure_logging(fmt=fmt, queue_handler=True, file=str(tmp_path / "app.log"))
    message = f"boom{FORGED}\x1b[31m"
    try:
        try:
            raise RuntimeError(f"inner{FORGED} too\x1b[2J")
        except RuntimeError as inner:
            raise ValueError(message) from inner
    except ValueError:
        logging.getLogger("app").exception("failed")
    stop_queue()  # flushes the listener thread
    (path,) = tmp_path.glob("app*.log")
    return message, path.read_text(encoding="utf-8")


def test_queued_text_traceback_cannot_forge_a_line(tmp_path: Path) -> None:
    """Text through the queue: exception messages keep their escapes, so no forged line and no raw ESC."""
    message, text = _log_hostile_exception("text", tmp_path)
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if line.startswith("2026-01-01")]
    assert "ValueError: boom\\n2026-01-01 00:00:00 INFO forged\\u001b[31m" in text
    assert "RuntimeError: inner\\n2026-01-01 00:00:00 INFO forged too\\u001b[2J" in text
    assert text.count("\n") >= 8  # the traceback itself is still on lines of its own


def test_queued_json_exception_is_lossless(tmp_path: Path) -> None:
    """JSON through the queue: one record, one line, and the exception parses back exactly as raised."""
    message, text = _log_hostile_exception("json", tmp_path)
    (entry,) = [json.loads(line) for line in text.splitlines()]
    assert "\x1b" not in text
    assert entry["message"] == "failed"
    assert entry["exception"].endswith(f"\nValueError: {message}")
    assert f"RuntimeError: inner{FORGED} too\x1b[2J\n" in entry["exception"]


async def test_file_output_is_per_process(capture: Capture, tmp_path: Path) -> None:
    """file= writes to app-<pid>.log, rotated daily."""
    configure_logging(fmt="json", file=str(tmp_path / "app.log"), retention_days=3)
    await _get(_app(capture), "/work", headers={"X-Request-ID": "file-1"})
    for h in logging.getLogger().handlers:
        h.flush()
    target = tmp_path / f"app-{os.getpid()}.log"
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert {e["request_id"] for e in lines} == {"file-1"}
    handler = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.TimedRotatingFileHandler)][0]
    assert handler.when == "MIDNIGHT" and handler.backupCount == 3


def test_log_file_in_a_missing_directory_is_created_and_written(tmp_path: Path) -> None:
    """A missing parent directory is made at start-up; the file itself appears with the first line."""
    configure_logging(fmt="text", file=str(tmp_path / "logs" / "deep" / "app.log"))
    directory = tmp_path / "logs" / "deep"
    assert directory.is_dir() and list(directory.iterdir()) == []  # a process that logs nothing leaves no file
    logging.getLogger("app").warning("first line")
    assert "first line" in (directory / f"app-{os.getpid()}.log").read_text()


@pytest.mark.parametrize("per_process", [True, False])
def test_unusable_log_file_fails_at_configure_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_process: bool
) -> None:
    """A directory, or a path under a regular file, fails now naming file= or OTEL_CORR_LOG_FILE, not at each write."""
    (tmp_path / "plain").write_text("not a directory")
    for bad in (tmp_path, f"{tmp_path / 'new'}/", tmp_path / "plain" / "app.log"):
        with pytest.raises(otel_corr.ConfigError) as info:
            configure_logging(file=str(bad), per_process=per_process)
        assert str(info.value).startswith(f"file={str(bad)!r} is not valid: expected a writable file path (")
        monkeypatch.setenv("OTEL_CORR_LOG_FILE", str(bad))
        with pytest.raises(otel_corr.ConfigError, match=r"^OTEL_CORR_LOG_FILE=.*a writable file path"):
            configure_logging()
        monkeypatch.delenv("OTEL_CORR_LOG_FILE")
    assert not (tmp_path / "new").exists()


def test_bad_logging_settings_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad format, level or retention names the variable."""
    monkeypatch.setenv("OTEL_CORR_LOG_FORMAT", "xml")
    with pytest.raises(otel_corr.ConfigError, match="OTEL_CORR_LOG_FORMAT"):
        configure_logging()
    with pytest.raises(otel_corr.ConfigError, match="level"):
        configure_logging(fmt="text", level="LOUD")


async def test_structlog_processor(capture: Capture) -> None:
    """structlog events get the IDs from the request context."""
    import structlog

    out = io.StringIO()
    structlog.configure(
        processors=[otel_corr.structlog.add_ids, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    app = FastAPI()

    @app.get("/s")
    async def s() -> dict[str, str]:
        structlog.get_logger().info("from structlog", request_id_hint=1)
        return {}

    otel_corr.instrument(app, tracer_provider=capture.provider)
    r = await _get(app, "/s", headers={"X-Request-ID": "sl-1"})
    entry = json.loads(out.getvalue().splitlines()[0])
    assert entry["request_id"] == r.headers["x-request-id"] == "sl-1"
    assert entry["trace_id"] == format(capture.one().context.trace_id, "032x")
    structlog.reset_defaults()


async def test_loguru_patcher(capture: Capture) -> None:
    """loguru records get the IDs in extra."""
    from loguru import logger

    import otel_corr.loguru

    out = io.StringIO()
    logger.remove()
    logger.configure(patcher=otel_corr.loguru.patcher)
    sink = logger.add(out, format="{extra[request_id]} {extra[trace_id]} {message}")
    app = FastAPI()

    @app.get("/l")
    async def lg() -> dict[str, str]:
        logger.info("from loguru")
        return {}

    otel_corr.instrument(app, tracer_provider=capture.provider)
    await _get(app, "/l", headers={"X-Request-ID": "lg-1"})
    logger.remove(sink)
    assert out.getvalue().strip() == f"lg-1 {format(capture.one().context.trace_id, '032x')} from loguru"
