"""``otel-corr tail`` against a real ``otel-corr serve`` fed by two real apps (FastAPI under uvicorn, Flask
under gunicorn) exporting over OTLP: what a user following the logs of every service sees, as a subprocess.

No timing asserts: each wait is for a line to appear (a deadline only stops a hung test).
"""

from __future__ import annotations

import http.client
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_corr._tail_render import PALETTE, service_colour

from .collector import free_port, wait_for_port
from .conftest import ROOT, Server, run_cli, server_env

pytestmark = pytest.mark.e2e

_WAIT = 60.0  # seconds before a wait gives up: a hung test, not a slow one


class Backend:
    """``otel-corr serve`` on free ports of 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.http, self.grpc = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.otlp = f"http://127.0.0.1:{self.http}"
        self.log = tmp / "serve.log"
        self._out = open(self.log, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        argv = [sys.executable, "-m", "otel_corr", "serve", "--port", str(self.port)]
        argv += ["--otlp-http-port", str(self.http), "--otlp-grpc-port", str(self.grpc), "--db", str(tmp / "t.db")]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        for port in (self.port, self.http, self.grpc):
            wait_for_port(port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()


class Stack:
    def __init__(self, backend: Backend, api: Server, web: Server) -> None:
        self.backend, self.api, self.web = backend, api, web
        self.url = backend.url

    def get(self, server: Server, path: str, request_id: str) -> int:
        return httpx.get(f"{server.url}{path}", headers={"X-Request-ID": request_id}, timeout=30).status_code


def _app_env(backend: Backend, service: str) -> dict[str, str]:
    return server_env(
        None,
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=backend.otlp,
        OTEL_BLRP_SCHEDULE_DELAY="100",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tail")
    backend = Backend(tmp)
    servers: list[Server] = []
    try:
        api_port, web_port = free_port(), free_port()
        uvicorn = [sys.executable, "-m", "uvicorn", "tests.apps.tail_api:app", "--host", "127.0.0.1"]
        servers.append(
            Server([*uvicorn, "--port", str(api_port)], _app_env(backend, "tail-api"), tmp / "api.log", api_port)
        )
        gunicorn = [sys.executable, "-m", "gunicorn", "tests.apps.tail_web:app", "--workers", "1"]
        gunicorn += ["--bind", f"127.0.0.1:{web_port}"]
        servers.append(Server(gunicorn, _app_env(backend, "tail-web"), tmp / "web.log", web_port))
        yield Stack(backend, *servers)
    finally:
        for server in servers:
            server.stop()
        backend.stop()


class Tail:
    """``otel-corr tail ARGS`` as a subprocess, its stdout (a pipe, or a pseudo-terminal) and stderr collected."""

    def __init__(self, url: str, *args: str, on_pty: bool = False, **env: str) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "OTEL_CORR_URL")}
        environ.update(PYTHONPATH=str(ROOT), **env)
        argv = [sys.executable, "-m", "otel_corr", "tail", "--url", url, *args]
        self.out = b""
        self.err = b""
        self._lock = threading.Lock()
        if on_pty:
            leader, follower = pty.openpty()
            self.proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE, cwd=ROOT, env=environ)
            os.close(follower)
            reader: Callable[[], bytes] = lambda: _read_pty(leader)  # noqa: E731
        else:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=environ)
            out = self.proc.stdout
            assert out is not None
            reader = lambda: out.read1(65536)  # noqa: E731
        self._threads = [
            threading.Thread(target=self._collect, args=(reader, "out"), daemon=True),
            threading.Thread(target=self._collect, args=(self._stderr, "err"), daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.wait_err("otel-corr tail: following")

    def _stderr(self) -> bytes:
        assert self.proc.stderr is not None
        return self.proc.stderr.read1(65536)

    def _collect(self, read: Callable[[], bytes], name: str) -> None:
        while True:
            chunk = read()
            if not chunk:
                return
            with self._lock:
                setattr(self, name, getattr(self, name) + chunk)

    def text(self) -> str:
        with self._lock:
            return self.out.decode(errors="replace")

    def wait(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + _WAIT
        while not predicate(self.text()):
            assert self.proc.poll() is None or predicate(self.text()), (what, self.proc.returncode, self.err)
            assert time.monotonic() < deadline, (what, self.text()[-3000:], self.err[-2000:])
            time.sleep(0.05)
        return self.text()

    def wait_for(self, *needles: str) -> str:
        return self.wait(lambda text: all(n in text for n in needles), repr(needles))

    def wait_err(self, needle: str) -> str:
        deadline = time.monotonic() + _WAIT
        while needle.encode() not in self.err:
            assert self.proc.poll() is None, (needle, self.proc.returncode, self.err, self.out[-2000:])
            assert time.monotonic() < deadline, (needle, self.err)
            time.sleep(0.05)
        return self.err.decode(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(30)
        for t in self._threads:
            t.join(10)
        return status


def _read_pty(leader: int) -> bytes:
    try:
        return os.read(leader, 65536)
    except OSError:  # the follower's last holder exited
        return b""


@pytest.fixture
def tails() -> Iterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        if tail.proc.poll() is None:
            tail.proc.kill()
            tail.proc.wait(10)


def _line(text: str, *parts: str) -> str:
    """The one line of ``text`` that has every part, in order (fails naming what it looked for)."""
    pattern = re.compile(".*".join(map(re.escape, parts)))
    found = [line for line in text.splitlines() if pattern.search(line)]
    assert len(found) == 1, (parts, text[-3000:])
    return found[0]


def test_lines_of_both_services_with_their_request_ids_and_each_finished_request(
    stack: Stack, tails: list[Tail]
) -> None:
    tail = Tail(stack.url)
    tails.append(tail)
    assert stack.get(stack.api, "/orders/7", "t1-api") == 200
    assert stack.get(stack.web, "/hello/ann", "t1-web") == 200
    text = tail.wait_for("t1-api  GET /orders/{order_id} → 200", "t1-web  GET /hello/<name> → 200")
    text = tail.wait_for("order 7 looked up", "saying hello to ann")
    # time, service, level, request ID, message: each line whole, each service's lines with its request ID.
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} tail-api +INFO +t1-api  order 7 looked up", _line(text, "order 7"))
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} tail-web +INFO +t1-web  saying hello to ann", _line(text, "to ann"))
    # The finished request: method, route (as the app names it), status, duration.
    assert re.search(
        r" tail-api +INFO +t1-api  GET /orders/\{order_id\} → 200  \d+\.\d ms$", _line(text, "t1-api  GET")
    )
    assert re.search(r" tail-web +INFO +t1-web  GET /hello/<name> → 200  \d+\.\d ms$", _line(text, "t1-web  GET"))
    # otel-corr's access line says what the request line says: shown once, not twice.
    assert '"GET /orders/7' not in text
    assert "\x1b" not in text  # piped: no colour
    assert tail.stop() == 0  # Ctrl-C: status 0
    assert b"Traceback" not in tail.err and b"KeyboardInterrupt" not in tail.err


def test_an_error_shows_its_first_lines_and_its_request_names_it(stack: Stack, tails: list[Tail]) -> None:
    tail = Tail(stack.url)
    tails.append(tail)
    assert stack.get(stack.api, "/pay", "t2-pay") == 500
    text = tail.wait_for("t2-pay  GET /pay → 500", "ZeroDivisionError in GET /pay", "in charge")
    lines = text.splitlines()
    at = lines.index(_line(text, "ERROR", "t2-pay", "ZeroDivisionError in GET /pay"))
    # Under the error line: the exception, then its last frames (file, line, function and the code).
    assert lines[at + 1] == "    ZeroDivisionError: card limit divided by zero"
    assert re.fullmatch(r'    File ".*tail_api\.py", line \d+, in pay', lines[at + 2])
    assert lines[at + 3] == "      charge()"
    assert re.fullmatch(r'    File ".*tail_api\.py", line \d+, in charge', lines[at + 4])
    assert re.search(
        r"ERROR +t2-pay  GET /pay → 500  \d+\.\d ms  ZeroDivisionError: card limit divided by zero$",
        _line(text, "t2-pay  GET /pay"),
    )
    assert tail.stop() == 0


def test_each_filter_is_applied_by_the_server_and_json_lines_parse(stack: Stack, tails: list[Tail]) -> None:
    everything = Tail(stack.url, "--json")
    filtered = {
        "service": Tail(stack.url, "--json", "--service", "tail-web"),
        "level": Tail(stack.url, "--json", "--level", "warning"),
        "request": Tail(stack.url, "--json", "--request", "t3-a"),
        "status": Tail(stack.url, "--json", "--status", "5xx"),
        "route": Tail(stack.url, "--json", "--route", "/orders/*"),
    }
    tails.extend([everything, *filtered.values()])
    for server, path, rid in [
        (stack.api, "/orders/3", "t3-a"),
        (stack.api, "/orders/5000", "t3-b"),  # a warning
        (stack.web, "/hello/x", "t3-c"),
        (stack.web, "/gone", "t3-d"),  # a warning and a 404
        (stack.api, "/pay", "t3-e"),  # an error and a 500
    ]:
        stack.get(server, path, rid)

    def seen(tail: Tail, prefix: str = "t3-") -> set[tuple[str, str]]:
        return {(e["type"], e["request_id"]) for e in tail.events() if str(e.get("request_id")).startswith(prefix)}

    every = {(kind, f"t3-{x}") for kind in ("log", "request") for x in "abcde"}
    everything.wait(lambda _: seen(everything) == every, "every t3 line")
    # One more line that passes each filter, sent after all of the above were stored: each follower's stream is
    # in store order, so once it shows, anything the filter wrongly let through would have shown before it.
    for server, path, rid in [
        (stack.web, "/hello/s", "t3-s1"),
        (stack.api, "/orders/5001", "t3-s2"),
        (stack.api, "/orders/4", "t3-a"),
        (stack.api, "/pay", "t3-s4"),
        (stack.api, "/orders/9", "t3-s5"),
    ]:
        stack.get(server, path, rid)
    sentinels = {"service": "t3-s1", "level": "t3-s2", "status": "t3-s4", "route": "t3-s5"}
    for name, tail in filtered.items():
        if name == "request":
            tail.wait(lambda _, t=tail: sum(e["type"] == "request" for e in t.events()) == 2, "both t3-a requests")
        else:
            sentinel = sentinels[name]
            tail.wait(lambda _, t=tail, s=sentinel: any(rid == s for _, rid in seen(t, "t3-s")), sentinel)
        assert tail.stop() == 0
    assert seen(filtered["service"]) - seen(filtered["service"], "t3-s") == {
        (k, f"t3-{x}") for k in ("log", "request") for x in "cd"
    }
    # --level warning: the warning and error log records, and the requests answered 4xx/5xx.
    assert seen(filtered["level"]) - seen(filtered["level"], "t3-s") == {
        ("log", "t3-b"),
        ("log", "t3-d"),
        ("request", "t3-d"),
        ("log", "t3-e"),
        ("request", "t3-e"),
    }
    assert {e["request_id"] for e in filtered["request"].events()} == {"t3-a"}
    # --status and --route select finished requests: log records have neither.
    assert seen(filtered["status"]) - seen(filtered["status"], "t3-s") == {("request", "t3-e")}
    assert {e["type"] for e in filtered["status"].events()} == {"request"}
    assert seen(filtered["route"]) - seen(filtered["route"], "t3-s") == {("request", "t3-a"), ("request", "t3-b")}
    assert all(e["route"] == "/orders/{order_id}" for e in filtered["route"].events())
    # --json: every line a JSON object with its type; the request line's fields.
    request = next(e for e in everything.events() if e["type"] == "request" and e["request_id"] == "t3-e")
    assert request["method"] == "GET" and request["route"] == "/pay" and request["status"] == 500
    assert request["level"] == "ERROR" and request["duration_ms"] > 0 and request["service"] == "tail-api"
    log = next(e for e in everything.events() if e["request_id"] == "t3-e" and e.get("level") == "ERROR")
    assert log["exception"]["type"] == "ZeroDivisionError" and "charge()" in log["exception"]["stacktrace"]
    assert everything.stop() == 0


def test_a_terminal_gets_each_service_in_the_pages_colour_and_hostile_text_escaped(
    stack: Stack, tails: list[Tail]
) -> None:
    coloured = Tail(stack.url, on_pty=True)
    plain = Tail(stack.url, on_pty=True, NO_COLOR="1")
    piped = Tail(stack.url)
    as_json = Tail(stack.url, "--json", "--request", "t4-evil")
    tails.extend([coloured, plain, piped, as_json])
    stack.get(stack.api, "/orders/8", "t4-api")
    stack.get(stack.web, "/hello/bo", "t4-web")
    stack.get(stack.api, "/hostile", "t4-evil")
    for tail in (coloured, plain, piped):
        tail.wait_for("evil", "t4-web", "t4-api")
        tail.wait(lambda text: text.count("t4-evil") >= 2, "the hostile request's log and request lines")
    for name, colour in (("tail-api", service_colour("tail-api")), ("tail-web", service_colour("tail-web"))):
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert f"\x1b[38;2;{r};{g};{b}m{name}" in coloured.text()
    assert service_colour("tail-api") != service_colour("tail-web")  # else the test shows nothing
    assert "\x1b" not in plain.text() and "\x1b" not in piped.text()
    # --json: ASCII, every control character escaped by JSON, the message whole once parsed.
    as_json.wait(lambda _: any(e["type"] == "log" for e in as_json.events()), "the hostile log record as JSON")
    assert as_json.text().isascii() and "\x1b" not in as_json.text() and "\x7f" not in as_json.text()
    message = next(e["message"] for e in as_json.events() if e["type"] == "log")
    assert message == "evil \x1b]0;pwned\x07 \x1b[31mred\nforged line \x9b2J bidi \u202e"
    assert as_json.stop() == 0
    for tail in (coloured, plain, piped):
        text = tail.text()
        # The app's escapes arrive as text: no title set, no colour, no forged line, no C1 CSI, no bidi override.
        assert r"evil \x1b]0;pwned\x07 \x1b[31mred\nforged line \x9b2J bidi \u202e" in text
        assert "\x1b]0;" not in text and "\x07" not in text and "\x9b" not in text and "\u202e" not in text
        assert not any(line.startswith("forged line") for line in text.splitlines())
        assert tail.stop() == 0


def test_the_page_and_the_terminal_share_the_palette_and_the_hash() -> None:
    app_js = (ROOT / "otel_corr/server/static/app.js").read_text()
    palette = re.search(r"const PALETTE = \[([^\]]*)\]", app_js)
    assert palette is not None
    assert tuple(re.findall(r'"(#[0-9a-f]{6})"', palette.group(1))) == PALETTE
    # The page's hash, h = (h * 31 + charCodeAt) >>> 0, by hand: "ab" is 97 * 31 + 98 = 3105, 3105 % 10 = 5.
    assert service_colour("ab") == PALETTE[5]
    # Above U+FFFF the page hashes the high surrogate (for..of yields code points, charCodeAt(0) their first unit).
    assert service_colour("\U0001f600") == PALETTE[0xD83D % 10]


def _flood(n: int, start: int) -> bytes:
    now = time.time_ns()
    records = [
        {
            "timeUnixNano": str(now + i),
            "severityNumber": 9,
            "severityText": "INFO",
            "body": {"stringValue": f"flood {start + i} " + "x" * 1000},
        }
        for i in range(n)
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "flood"}}]}
    body = {
        "resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {"name": "flood"}, "logRecords": records}]}]
    }
    return json.dumps(body).encode()


def test_a_slow_reader_gets_a_drop_count_and_never_slows_ingest(stack: Stack, tails: list[Tail]) -> None:
    tail = Tail(stack.url, "--service", "flood")
    tails.append(tail)
    tail.proc.send_signal(signal.SIGSTOP)  # a terminal that stopped reading (scrolled back, paused)
    total, batch = 50_000, 2_000
    try:
        for start in range(0, total, batch):
            r = httpx.post(
                f"{stack.backend.otlp}/v1/logs",
                content=_flood(batch, start),
                headers={"content-type": "application/json"},
                timeout=60,
            )
            # Every export acknowledged, none refused or partly rejected: the stopped follower costs ingest nothing.
            assert r.status_code == 200 and r.json() == {"partialSuccess": {}}, r.text[:300]
    finally:
        tail.proc.send_signal(signal.SIGCONT)

    def accounted(text: str) -> int:
        dropped = sum(int(n.replace(",", "")) for n in re.findall(r"… ([\d,]+) lines dropped: terminal too slow", text))
        return dropped + text.count("  flood ")  # the message, after the request ID column ("-")

    text = tail.wait(lambda text: accounted(text) == total, f"{total} lines shown or counted as dropped")
    dropped = re.findall(r"… ([\d,]+) lines dropped: terminal too slow", text)
    assert dropped, "the reader fell behind by more than its queue: some lines must have been dropped"
    assert 0 < text.count("  flood ") < total
    # The follower carries on after the gap: a new line shows.
    r = httpx.post(
        f"{stack.backend.otlp}/v1/logs", content=_flood(1, 10**9), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200
    tail.wait_for(f"flood {10**9} ")
    assert tail.stop() == 0


def _follow(url: str) -> http.client.HTTPConnection:
    """A follower by hand: the stream opened and its hello read, then left open."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/api/tail")
    response = conn.getresponse()
    assert response.status == 200
    assert json.loads(response.readline())["type"] == "hello"
    return conn


def test_followers_are_capped_with_a_clear_answer_and_a_place_frees_when_one_leaves(
    stack: Stack, tails: list[Tail]
) -> None:
    followers = [_follow(stack.url) for _ in range(16)]
    try:
        out = run_cli("tail", "--url", stack.url)
        assert out.returncode == 3
        assert "answered 503: 16 tails already follow this server; stop one and retry" in out.stderr
        r = httpx.get(f"{stack.url}/api/tail", timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        followers.pop().close()  # one leaves: its place is free at once (its disconnect is watched)
        tail = Tail(stack.url)  # waits for "following"
        tails.append(tail)
        assert tail.stop() == 0
    finally:
        for conn in followers:
            conn.close()


def test_bad_arguments_unreachable_and_not_otel_corr_exit_as_the_other_commands(tmp_path: Path) -> None:
    from .conftest import other_program

    with other_program(tmp_path) as other:
        out = run_cli("tail", "--url", other)
        assert out.returncode == 4
        assert f"otel-corr tail: {other} is not otel-corr serve with tail" in out.stderr
    port = free_port()
    out = run_cli("tail", "--url", f"http://127.0.0.1:{port}")
    assert out.returncode == 3
    assert f"otel-corr tail: cannot reach otel-corr serve at http://127.0.0.1:{port} (Connection refused)" in out.stderr


def test_a_bad_filter_is_a_usage_error_naming_it(stack: Stack) -> None:
    # Checked before connecting (no server needed), as the server checks them for any other client.
    out = run_cli("tail", "--url", "http://127.0.0.1:9", "--level", "loud")
    assert out.returncode == 2
    assert out.stderr.startswith("otel-corr: --level='loud' is not valid: expected one of trace, debug, info")
    out = run_cli("tail", "--url", stack.url, "--status", "5x")
    assert out.returncode == 2 and "--status='5x' is not valid: expected a status such as 500 or 5xx" in out.stderr
    r = httpx.get(f"{stack.url}/api/tail", params={"level": "loud"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"].startswith("level: 'loud' is not one of trace, debug, info")
    r = httpx.get(f"{stack.url}/api/tail", params={"status": "5x"}, timeout=10)
    assert r.status_code == 400 and r.json() == {"error": "status: '5x' is not a status such as 500 or 5xx"}


def test_a_page_elsewhere_cannot_read_the_stream(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/api/tail", headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403
    r = httpx.get(f"{stack.url}/api/tail", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 403
    # A page elsewhere loading it as an image or frame sends no Origin, but the browser says cross-site.
    for site in ("cross-site", "same-site"):
        r = httpx.get(f"{stack.url}/api/tail", headers={"Sec-Fetch-Site": site}, timeout=10)
        assert r.status_code == 403 and "other sites" in r.json()["error"]


def test_server_shutdown_with_an_open_tail_ends_the_stream_and_the_tail_reconnects(
    tmp_path: Path, tails: list[Tail]
) -> None:
    backend = Backend(tmp_path)
    try:
        tail = Tail(backend.url)
        tails.append(tail)
        backend.proc.send_signal(signal.SIGTERM)
        assert backend.proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped for
        # The stream was ended by the server, not cut when uvicorn's graceful shutdown gave up on it.
        assert "timeout graceful shutdown exceeded" not in backend.log.read_text()
        tail.wait_err("otel-corr tail: connection lost (otel-corr serve is shutting down); reconnecting…")
        assert tail.proc.poll() is None  # still waiting for the server to come back
        assert tail.stop() == 0
        assert b"Traceback" not in tail.err
    finally:
        backend.stop()


async def test_a_follower_is_bounded_in_bytes_and_its_route_is_filtered_before_it_is_queued() -> None:
    """A follower that stops reading holds at most max_queued_bytes (64 KiB bodies held 20,000 deep were
    1.3 GB per follower), the rest counted as dropped; a request of another route is never queued (it
    was decoded on the event loop for each follower, and counted as dropped when the queue was full)."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage

    from otel_corr.server._model import LogRecord
    from otel_corr.server._tail import Hub, TailFilter

    hub = Hub(max_queued_bytes=1 << 20)
    everything = hub.subscribe(TailFilter())
    routed = hub.subscribe(TailFilter(route="/orders/*"))
    assert everything is not None and routed is not None
    hub.publish([], [LogRecord(i, 9, "INFO", "x" * 65536, "shop") for i in range(100)])
    assert everything.queued == 15 and everything.dropped == 85 and everything.queued_bytes <= 1 << 20

    def row(route: str) -> tuple[Any, ...]:
        detail = SpanMessage(attributes=[KeyValue(key="http.route", value=AnyValue(string_value=route))])
        return (
            b"t" * 16,
            b"s" * 8,
            None,
            0,
            "shop",
            "GET " + route,
            2,
            1,
            2,
            0,
            "rid",
            0,
            detail.SerializeToString(),
            200,
        )

    hub.publish([row("/health"), row("/orders/{id}")], [])
    assert routed.queued == 1 and routed.dropped == 0
    lines = []
    async for chunk in hub.stream(routed, {}):
        lines += [json.loads(line) for line in chunk.splitlines()]
        if len(lines) == 2:
            break
    assert [line["type"] for line in lines] == ["hello", "request"]
    assert lines[1]["route"] == "/orders/{id}" and "_size" not in lines[1]


def test_json_output_never_passes_a_raw_control_character_from_a_foreign_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--json` printed a line as it came when it looked like one of ours: a program at --url that is not
    otel-corr could send ESC and BEL (a terminal title, a cleared screen) straight to the terminal."""
    from otel_corr import cli

    class Stream:
        def __init__(self, *chunks: bytes) -> None:
            self.chunks = list(chunks)

        def read1(self, n: int) -> bytes:
            return self.chunks.pop(0) if self.chunks else b""

    hostile = b'{"type":"log","message":"\x1b]0;pwned\x07\x1b[2J hi"}\n'  # not even JSON: left out
    c1 = '{"type":"log","message":"\x7f\x9b31m hi"}\n'.encode()  # DEL and a C1 CSI: JSON, printed re-encoded
    assert cli._tail_follow(Stream(hostile, c1), True, False, None) == "the server closed the stream"
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out and "\x7f" not in out and "\x9b" not in out
    assert json.loads(out)["message"] == "\x7f\x9b31m hi"
    assert (
        cli._tail_follow(Stream(b'{"type":"log"' + b"x" * (2 << 20)), True, False, None) == "a line longer than 1 MiB"
    )
