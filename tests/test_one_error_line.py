"""One error, one line: an unhandled exception is written once, with its IDs and traceback, by real servers.

Each server we support runs ``tests/apps/errors_app.py`` as a subprocess; its whole output (stdout and
stderr) is read back and the tracebacks are counted.  Before, uvicorn, hypercorn and gunicorn's uvicorn
worker wrote ``Exception in ASGI application``/``Error in ASGI Framework`` beside our line, and Flask wrote
``Exception on /boom [GET]`` beside it: two tracebacks for one error.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import otel_corr

from .collector import free_port
from .conftest import Capture, Server, server_env

BOOM = "RuntimeError: payment service exploded"
LATE = "RuntimeError: stream broke after the response started"
OWN = "ValueError: card declined"
MARK = "end of the test's requests"

SERVERS: dict[str, tuple[str, list[str]]] = {
    # name: (kind, argv with {port})
    "uvicorn": ("asgi", ["-m", "uvicorn", "tests.apps.errors_app:asgi", "--host", "127.0.0.1", "--port", "{port}"]),
    "gunicorn-uvicorn-worker": (
        "asgi",
        [
            "-m",
            "gunicorn",
            "tests.apps.errors_app:asgi",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-b",
            "127.0.0.1:{port}",
        ],
    ),
    "hypercorn": ("asgi", ["-m", "hypercorn", "tests.apps.errors_app:asgi", "--bind", "127.0.0.1:{port}"]),
    "gunicorn-sync-flask": ("wsgi", ["-m", "gunicorn", "tests.apps.errors_app:flask_app", "-b", "127.0.0.1:{port}"]),
    "gunicorn-sync-flask-unclosed": (
        "wsgi",
        ["-m", "gunicorn", "tests.apps.errors_app:flask_unclosed", "-b", "127.0.0.1:{port}"],
    ),
    "flask-run-werkzeug": (
        "wsgi",
        ["-m", "flask", "--app", "tests.apps.errors_app:flask_app", "run", "--port", "{port}"],
    ),
}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        try:
            server.sigterm(15)  # gunicorn stops its workers on SIGTERM; a SIGKILL would orphan them
        except Exception:
            pass
        server.stop()


def _serve(servers: list[Server], tmp_path: Path, name: str, mode: str) -> tuple[str, Server]:
    kind, template = SERVERS[name]
    port = free_port()
    argv = [sys.executable, *(part.format(port=port) for part in template)]
    if mode == "none":
        # The defaults, untouched: traces and logs exported over OTLP (here to a port nobody listens
        # on), so instrument(app) puts its OTLP log handler on the root logger.
        env = server_env(None, APP_LOGGING=mode, PYTHONUNBUFFERED="1")
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    else:
        env = server_env(None, APP_LOGGING=mode, OTEL_TRACES_EXPORTER="none", PYTHONUNBUFFERED="1")
    server = Server(argv, env, tmp_path / f"{name}-{mode}.log", port)
    servers.append(server)
    return kind, server


def _wait_for(server: Server, text: str) -> str:
    """The server's output once ``text`` is in it (its log lines are written a moment after the response)."""
    deadline = time.monotonic() + 10
    while True:
        output = server.output()
        if text in output or time.monotonic() > deadline:
            return output
        time.sleep(0.05)


def _exercise(server: Server, kind: str, name: str) -> tuple[httpx.Response, str]:
    # A connection each: the server closes one after an error.
    boom = httpx.get(f"{server.url}/boom", headers={"X-Request-ID": "boom-1"})
    assert boom.status_code == 500 and boom.headers["x-request-id"] == "boom-1"
    assert httpx.get(f"{server.url}/own", headers={"X-Request-ID": "own-1"}).status_code == 200
    if kind == "asgi":
        with pytest.raises(httpx.HTTPError):  # the body breaks off: the response had started
            httpx.get(f"{server.url}/late", headers={"X-Request-ID": "late-1"})
    if name == "uvicorn":  # a protocol error: uvicorn's to report, not a request's
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            sock.recv(1024)
        _wait_for(server, "Invalid HTTP request received.")
    _wait_for(server, LATE if kind == "asgi" else OWN)
    # A server's own line for the same error would be written before the line of a later request.
    assert httpx.get(f"{server.url}/mark").status_code == 200
    return boom, _wait_for(server, MARK)


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["text", "json", "none"])
@pytest.mark.parametrize("name", list(SERVERS))
def test_an_unhandled_error_is_one_line_with_its_ids(
    servers: list[Server], tmp_path: Path, name: str, mode: str
) -> None:
    """Under each server, with configure_logging (text, JSON) and without it (only instrument(app)): the
    error's traceback is written once, on a line carrying the response's request ID and trace ID; the app's
    own ``logger.exception``, an exception raised after the response started and (uvicorn) a protocol
    error are still written."""
    if name == "hypercorn":
        pytest.importorskip("hypercorn")
    kind, server = _serve(servers, tmp_path, name, mode)
    boom, output = _exercise(server, kind, name)
    trace_id = boom.headers["traceresponse"].split("-")[1]

    assert output.count(BOOM) == 1, output
    assert output.count(OWN) == 1, output
    if kind == "asgi":
        assert output.count(LATE) == 1, output
    if name == "uvicorn":
        assert "Invalid HTTP request received." in output, output
    if mode == "json":
        entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        (error,) = [e for e in entries if BOOM in e.get("exception", "")]
        assert (error["logger"], error["message"]) == ("otel_corr.error", "Unhandled RuntimeError in GET /boom")
        assert (error["request_id"], error["trace_id"]) == ("boom-1", trace_id)
    elif mode == "text":
        (line,) = [line for line in output.splitlines() if "Unhandled RuntimeError in GET /boom" in line]
        assert line.endswith("ERROR   [boom-1] otel_corr.error: Unhandled RuntimeError in GET /boom"), line
        assert "\\n" not in output.replace("\\n * Running on", ""), output  # werkzeug's banner is one record
    else:
        # Nothing set up but the server's own logging: its line is the one, naming the IDs.
        (line,) = [line for line in output.splitlines() if "request_id=boom-1" in line]
        assert line.endswith(f"(request_id=boom-1 trace_id={trace_id})"), line
        following = output.split(line, 1)[1].lstrip("\n")
        assert following.startswith("Traceback (most recent call last):"), following[:200]


# --- in-process: what the filter keeps, with the real middleware and the real loggers ---------


async def _raise_in_request(exc: BaseException, capture: Capture) -> BaseException:
    """Run one request that raises ``exc`` through the real ASGI middleware; return what escaped."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise exc

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    scope = {"type": "http", "method": "GET", "path": "/boom", "headers": [(b"x-request-id", b"ip-1")]}
    try:
        await wrapped(scope, receive, send)
    except Exception as escaped:  # what the server gets
        return escaped
    raise AssertionError("the middleware did not re-raise")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[tuple[str, str]]:
        return [(r.name, r.getMessage()) for r in self.records if r.levelno >= logging.ERROR]


@pytest.fixture
def loggers() -> Iterator[tuple[_Collect, _Collect]]:
    """A root handler, and a handler of uvicorn's own that stops there (as uvicorn's default config has it)."""
    root, server = logging.getLogger(), logging.getLogger("uvicorn")
    at_root, own = _Collect(), _Collect()
    saved = (root.level, server.propagate)
    root.addHandler(at_root)
    root.setLevel(logging.INFO)
    yield at_root, own
    otel_corr.uninstrument()
    root.removeHandler(at_root)
    server.removeHandler(own)
    root.level, server.propagate = saved


async def test_the_servers_record_stays_where_ours_did_not_go(
    loggers: tuple[_Collect, _Collect], capture: Capture
) -> None:
    """uvicorn's logger with a handler of its own, which our line does not reach: uvicorn's record is
    not lost there; it carries the request's IDs and names them.  Root has our line alone."""
    at_root, own = loggers
    logging.getLogger("uvicorn").addHandler(own)
    logging.getLogger("uvicorn").propagate = False
    escaped = await _raise_in_request(RuntimeError("boom"), capture)
    logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=escaped)  # as uvicorn
    assert at_root.errors() == [("otel_corr.error", "Unhandled RuntimeError in GET /boom")]
    (kept,) = own.records
    trace_id = kept.__dict__["trace_id"]
    assert kept.getMessage() == f"Exception in ASGI application (request_id=ip-1 trace_id={trace_id})"
    assert kept.__dict__["request_id"] == "ip-1" and trace_id == at_root.records[-1].__dict__["trace_id"]


async def test_records_otel_corr_did_not_write_pass_untouched(
    loggers: tuple[_Collect, _Collect], capture: Capture
) -> None:
    """An error with no exception, an exception otel-corr never saw (start-up), and the same exception
    object raised again outside a request all pass; only the duplicate of our line is dropped."""
    at_root, _ = loggers
    error = RuntimeError("cached instance")
    escaped = await _raise_in_request(error, capture)
    server = logging.getLogger("uvicorn.error")
    server.error("Exception in ASGI application\n", exc_info=escaped)  # the duplicate: dropped
    server.error("ASGI callable returned without completing response.")
    try:
        raise ValueError("at start-up")
    except ValueError:
        server.exception("Error loading ASGI app")
    try:
        raise error  # the same object, raised again: a new traceback, not the one our line wrote
    except RuntimeError:
        server.exception("Exception in ASGI application\n")
    assert at_root.errors() == [
        ("otel_corr.error", "Unhandled RuntimeError in GET /boom"),
        ("uvicorn.error", "ASGI callable returned without completing response."),
        ("uvicorn.error", "Error loading ASGI app"),
        ("uvicorn.error", "Exception in ASGI application\n"),
    ]


def test_a_message_ending_in_a_newline_is_one_readable_text_line() -> None:
    """uvicorn ends ``Exception in 'lifespan' protocol\\n`` with a newline to put the traceback below:
    the text line shows no literal ``\\n``; a newline inside a message is still escaped."""
    from otel_corr.logging import TextFormatter

    try:
        raise RuntimeError("startup failed")
    except RuntimeError:
        exc_info = sys.exc_info()
    formatter = TextFormatter(fmt="%(name)s: %(message)s")
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, "Exception in 'lifespan' protocol\n", (), exc_info
    )
    first, second, *_ = formatter.format(record).splitlines()
    assert (first, second) == ("uvicorn.error: Exception in 'lifespan' protocol", "Traceback (most recent call last):")
    forged = logging.LogRecord("app", logging.INFO, __file__, 1, "a\nERROR forged\n", (), None)
    assert formatter.format(forged) == "app: a\\nERROR forged"


async def test_the_servers_record_stays_when_our_logger_is_off(
    loggers: tuple[_Collect, _Collect], capture: Capture
) -> None:
    """A dictConfig run after ``import otel_corr`` disables ``otel_corr.error`` (disable_existing_loggers):
    our line is not written, so uvicorn's is not dropped; it names the IDs."""
    at_root, _ = loggers
    logging.getLogger("otel_corr.error").disabled = True
    try:
        escaped = await _raise_in_request(RuntimeError("boom"), capture)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=escaped)
    finally:
        logging.getLogger("otel_corr.error").disabled = False
    ((name, message),) = at_root.errors()
    assert name == "uvicorn.error" and message.startswith("Exception in ASGI application (request_id=ip-1 trace_id=")


async def test_the_servers_record_stays_when_a_filter_turns_our_line_away(
    loggers: tuple[_Collect, _Collect], capture: Capture
) -> None:
    """A filter on the handler that our line would reach drops it (a user muting ``otel_corr.error`` on the
    console): uvicorn's record is not dropped too, it is written there with the request's IDs."""
    at_root, _ = loggers
    at_root.addFilter(lambda record: record.name != "otel_corr.error")
    escaped = await _raise_in_request(RuntimeError("boom"), capture)
    logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=escaped)  # as uvicorn
    ((name, message),) = at_root.errors()
    assert name == "uvicorn.error" and message.startswith("Exception in ASGI application (request_id=ip-1 "), message


def test_hypercorns_error_log_file_is_written(tmp_path: Path) -> None:
    """configure_logging, then hypercorn's logger set up to write a file only (a log config with a
    FileHandler and propagate off): the error reaches the file; only hypercorn's default console
    handler is ever taken off its logger."""
    server = logging.getLogger("hypercorn.error")
    saved = (server.handlers[:], server.propagate)
    try:
        otel_corr.configure_logging(stream=io.StringIO())
        to_file = logging.FileHandler(tmp_path / "error.log")
        server.handlers, server.propagate = [to_file], False
        server.error("Error in ASGI Framework")
        to_file.close()
        assert (tmp_path / "error.log").read_text() == "Error in ASGI Framework\n"
    finally:
        otel_corr.uninstrument()
        server.handlers[:], server.propagate = saved


async def test_a_kept_exception_instance_does_not_hold_the_request_s_frames(
    loggers: tuple[_Collect, _Collect], capture: Capture
) -> None:
    """An exception instance the app keeps and raises again: once the server's record of one raise was
    seen, otel-corr's mark on the instance no longer holds that request's frames (and their locals)."""
    import gc
    import weakref

    class Payload:
        pass

    kept = RuntimeError("kept and reused")
    alive: list[weakref.ref[Payload]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        payload = Payload()  # a local of the failing frame
        alive.append(weakref.ref(payload))
        raise kept

    wrapped = otel_corr.instrument(app, tracer_provider=capture.provider)

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    # Handlers that are cleared below: a record's exc_info holds the frames too (pytest's would keep them).
    _, own = loggers
    ours, server = logging.getLogger("otel_corr.error"), logging.getLogger("uvicorn")
    server.addHandler(own)
    server.propagate = ours.propagate = False
    ours.addHandler(own)
    try:
        scope = {"type": "http", "method": "GET", "path": "/boom", "headers": []}
        try:
            await wrapped(scope, receive, send)
        except RuntimeError as escaped:
            logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=escaped)
    finally:
        ours.removeHandler(own)
        ours.propagate = True
    assert [r.name for r in own.records] == ["otel_corr.error"]  # the server's copy: recognised, dropped
    own.records.clear()
    kept.__traceback__ = None  # what the app's own reference keeps is the instance alone
    gc.collect()
    assert alive[0]() is None
