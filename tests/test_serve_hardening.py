"""otel-corr serve attacked as a hostile neighbour would (issue 16, findings 1, 2, 4 and 5), each against a
real ``otel-corr serve`` process: a foreign Host or Origin, queries past their budget, held and trickling
connections at the connection limit, hostile query values on every query route, the security headers."""

from __future__ import annotations

import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .collector import free_port, wait_for_port
from .conftest import ROOT
from .test_server import TRACE, Backend, _otlp_json

pytestmark = pytest.mark.e2e

GOOD_MIN, GOOD_MAX = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path)
    yield b
    if b.proc.poll() is None:
        b.stop()


def _served(backend: Backend, trace: str = TRACE) -> None:
    body = json.dumps(_otlp_json(trace)).encode()
    assert backend.post("/v1/traces", body, "application/json").status_code == 200
    backend.wait_trace(trace)


def _secure(response: httpx.Response) -> None:
    assert "default-src 'none'" in response.headers.get("content-security-policy", ""), response.headers
    assert response.headers.get("x-content-type-options") == "nosniff", response.headers


def _reason(response: httpx.Response) -> str:
    """The one-line reason of an error answer, whichever API shape it has."""
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body.get("errors"), list):
            reason = body["errors"][0]["msg"]
        elif isinstance(body.get("error"), dict):
            reason = body["error"]["message"]
        else:
            reason = body["error"]
    else:
        reason = response.text.rstrip("\n")
    assert isinstance(reason, str) and reason.strip(), response.text[:300]
    assert "\n" not in reason and len(reason) <= 300, reason
    return reason


# --- finding 1: only the right Host (and Origin) ----------------------------------------------


def test_a_foreign_host_is_refused_on_every_port_and_logged_once(backend: Backend) -> None:
    """DNS rebinding: Host evil.example gets 403 on the page, the API and OTLP, nothing is stored, one log line."""
    _served(backend)
    other = "1" * 32
    for _ in range(5):
        for path in ("/", "/api/services", f"/api/traces/{TRACE}", "/api/ui/requests", "/api/v3/services"):
            r = httpx.get(f"{backend.url}{path}", headers={"Host": "evil.example"}, timeout=10)
            assert r.status_code == 403, (path, r.status_code)
            assert "evil.example" in _reason(r) and "--allow-host" in _reason(r)
            _secure(r)
        r = httpx.post(
            f"{backend.otlp}/v1/traces",
            content=json.dumps(_otlp_json(other)).encode(),
            headers={"content-type": "application/json", "Host": f"evil.example:{backend.http}"},
            timeout=10,
        )
        assert r.status_code == 403
    # The loopback names, with and without a port, are served.
    for host in ("localhost", f"localhost:{backend.port}", "127.0.0.1", "127.1.2.3:80", f"[::1]:{backend.port}"):
        r = httpx.get(f"{backend.url}/api/services", headers={"Host": host}, timeout=10)
        assert r.status_code == 200, host
        assert "access-control-allow-origin" not in r.headers  # no CORS unless asked for
    assert backend.get(f"/api/traces/{other}").status_code == 404  # the refused POST stored nothing
    refusals = [line for line in backend.log.read_text().splitlines() if "refused a request" in line]
    assert len(refusals) == 1, refusals  # 30 refused requests, one name: one line
    assert "--allow-host evil.example" in refusals[0]


def test_a_cross_site_page_cannot_post_spans(backend: Backend) -> None:
    """A request carrying another site's Origin (or a sandboxed frame's "null") is 403; a loopback page's is not."""
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        r = httpx.post(
            f"{backend.otlp}/v1/traces",
            content=json.dumps(_otlp_json()).encode(),
            headers={"content-type": "application/json", "Origin": origin},
            timeout=10,
        )
        assert r.status_code == 403, origin
        assert "--allow-origin" in _reason(r)
    r = httpx.get(f"{backend.url}/api/services", headers={"Origin": "http://localhost:5173"}, timeout=10)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_allowed_hosts_and_origins(tmp_path: Path) -> None:
    """--allow-host serves that name (and *.domain its subdomains); --allow-origin gets CORS answers, others 403."""
    b = Backend(
        tmp_path,
        None,
        "--allow-host",
        "My-Laptop.local",
        "--allow-host",
        "*.dev.example",
        "--allow-origin",
        "http://localhost:3000",
    )
    try:
        for host, status in (("my-laptop.local:16686", 200), ("api.dev.example", 200), ("dev.example.evil", 403)):
            r = httpx.get(f"{b.url}/api/services", headers={"Host": host}, timeout=10)
            assert r.status_code == status, host
        preflight = {
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        r = httpx.options(f"{b.otlp}/v1/traces", headers=preflight, timeout=10)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:3000"
        # Private Network Access is answered where the installed Starlette can (0.51.0 and later).
        from otel_corr.server._guard import _PRIVATE_NETWORK

        r = httpx.options(
            f"{b.otlp}/v1/traces", headers={**preflight, "Access-Control-Request-Private-Network": "true"}, timeout=10
        )
        assert r.status_code == 200
        if _PRIVATE_NETWORK:
            assert r.headers["access-control-allow-private-network"] == "true"
        r = httpx.options(f"{b.otlp}/v1/traces", headers={**preflight, "Origin": "https://evil.example"}, timeout=10)
        assert r.status_code == 403
    finally:
        b.stop()


_OLD_STARLETTE_CORS = '''
import asyncio
from starlette.middleware import cors

class OldCORSMiddleware(cors.CORSMiddleware):
    """CORSMiddleware as Starlette before 0.51.0 declared it: no allow_private_network."""

    def __init__(self, app, allow_origins=(), allow_methods=("GET",), allow_headers=(), allow_credentials=False,
                 allow_origin_regex=None, expose_headers=(), max_age=600):
        super().__init__(app, allow_origins=allow_origins, allow_methods=allow_methods, allow_headers=allow_headers,
                         allow_credentials=allow_credentials, allow_origin_regex=allow_origin_regex,
                         expose_headers=expose_headers, max_age=max_age)

cors.CORSMiddleware = OldCORSMiddleware
from otel_corr.server._guard import Guard

async def app(scope, receive, send):
    raise AssertionError("a preflight is answered by the CORS middleware")

sent = []
async def send(message):
    sent.append(message)
async def receive():
    return {"type": "http.request", "body": b""}
headers = [(b"host", b"127.0.0.1"), (b"origin", b"http://localhost:3000"),
           (b"access-control-request-method", b"POST")]
scope = {"type": "http", "method": "OPTIONS", "path": "/v1/traces", "headers": headers, "query_string": b"",
         "scheme": "http", "server": ("127.0.0.1", 4318), "client": ("127.0.0.1", 5000)}
asyncio.run(Guard(app, allowed_origins=["http://localhost:3000"])(scope, receive, send))
print(sent[0]["status"], dict(sent[0]["headers"])[b"access-control-allow-origin"].decode())
'''


def test_allow_origin_works_with_the_oldest_declared_starlette() -> None:
    """--allow-origin with a CORSMiddleware without allow_private_network (Starlette < 0.51.0) still answers CORS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _OLD_STARLETTE_CORS], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["200", "http://localhost:3000"]


# --- finding 2: queries never hold the event loop, and have a budget --------------------------


def test_a_query_past_its_budget_is_a_503_with_the_reason_and_ingest_goes_on(tmp_path: Path) -> None:
    """With a budget no query can meet, every query route answers 503 with one line; the page and OTLP still answer."""
    b = Backend(tmp_path, None, "--query-timeout", "0.000001")
    try:
        for path in (
            "/api/dependencies",
            "/api/services",
            f"/api/traces/{TRACE}",
            "/api/v3/services",
            "/api/ui/requests",
        ):
            r = b.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text[:200])
            assert "budget" in _reason(r)
            _secure(r)
        assert b.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json").status_code == 200
        assert b.get("/").status_code == 200
    finally:
        b.stop()
    assert "Traceback" not in b.log.read_text()


def test_the_store_interrupts_a_query_at_its_deadline(tmp_path: Path) -> None:
    """Store.budget stops a statement that would run for seconds (10^9 rows) at its deadline, as QueryTimeout."""
    from otel_corr.server._store import QueryTimeout, Store

    store = Store(tmp_path / "t.db")
    try:
        endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1e9) SELECT count(*) FROM n"
        with pytest.raises(QueryTimeout), store.budget(time.monotonic() + 0.05):
            store._read().execute(endless).fetchone()
        with store.budget(time.monotonic() + 60):  # the connection is usable afterwards
            assert store.services() == []
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._read().execute("DELETE FROM spans")  # reads cannot write
    finally:
        store.close()


# --- finding 4: held connections --------------------------------------------------------------


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed (or refused) the connection; False while it is still open."""
    try:
        while True:
            data = sock.recv(4096, socket.MSG_DONTWAIT)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def small_serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``otel-corr serve`` with an open-file limit of 256 (soft and hard) and a 2 s header timeout."""
    for proc, port, _, log in _small_serve(tmp_path):
        yield proc, port, log


@pytest.fixture
def small_serve_otlp(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """As ``small_serve`` (the header timeout from ``@pytest.mark.parametrize(..., indirect=True)``, else 2 s);
    yields the process, the query port and the OTLP/HTTP port."""
    for proc, port, http, _ in _small_serve(tmp_path, getattr(request, "param", 2.0)):
        yield proc, port, http


def _small_serve(
    tmp_path: Path, header_timeout: float = 2.0
) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    port, http, grpc = free_port(), free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = str(ROOT)
    argv = [sys.executable, "-m", "otel_corr", "serve", "--port", str(port), "--otlp-http-port", str(http)]
    argv += ["--otlp-grpc-port", str(grpc), "--db", str(tmp_path / "t.db"), "--header-timeout", str(header_timeout)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
        )
    try:
        wait_for_port(port, proc)
        wait_for_port(http, proc)
        yield proc, port, http, log
    finally:
        proc.terminate()
        proc.wait(20)


def test_held_and_trickling_connections_are_shed_and_said_once(
    small_serve: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    """300 sockets against a limit of 128 (open files 256): the page still answers, every held socket is closed
    within the header timeout, and the log says so once, with no traceback."""
    proc, port, log = small_serve
    silent: list[socket.socket] = []
    trickling: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 3 == 0:  # slowloris: a request head that never ends
                sock.sendall(b"GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                trickling.append(sock)
            else:
                silent.append(sock)
        # At the limit a new client still gets in: the connection that waited longest makes room.
        r = httpx.get(f"http://127.0.0.1:{port}/api/services", timeout=10)
        assert r.status_code == 200
        deadline = time.monotonic() + 15  # header timeout 2 s + the 1 s check, with room for a busy machine
        while time.monotonic() < deadline:
            for sock in trickling:
                try:
                    sock.send(b"X")
                except OSError:
                    pass
            if all(_closed_by_server(s) for s in silent + trickling):
                break
            time.sleep(0.3)
        still_open = sum(not _closed_by_server(s) for s in silent + trickling)
        assert still_open == 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/services", timeout=10).status_code == 200
    finally:
        for sock in silent + trickling:
            sock.close()
    assert proc.poll() is None
    text = log.read_text()
    assert len([line for line in text.splitlines() if "connections open, the limit" in line]) == 1, text[-2000:]
    assert "128 connections open" in text and "open-file limit 256" in text
    assert "Too many open files" not in text and "Traceback" not in text
    assert len(text) < 4000


_BODY_HEAD = (
    b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
    b"Content-Length: 1000\r\n\r\n"
)


def _answer(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server sent on ``sock`` so far, without waiting, and whether it closed the connection."""
    data = b""
    sock.settimeout(0)  # with a timeout, recv would wait for data even with MSG_DONTWAIT
    try:
        while chunk := sock.recv(4096):
            data += chunk
        return data, True
    except BlockingIOError:
        return data, False
    except OSError:
        return data, True
    finally:
        sock.settimeout(5)


def test_a_trickled_body_gets_408_after_three_header_timeouts(
    small_serve_otlp: tuple[subprocess.Popen[bytes], int, int],
) -> None:
    """A body sent a byte a second (never pausing past the 2 s header timeout) is answered 408 and closed once
    three header timeouts (6 s) have passed since its head; nothing is stored."""
    proc, port, http = small_serve_otlp
    with socket.create_connection(("127.0.0.1", http), timeout=5) as sock:
        sock.sendall(_BODY_HEAD + b"\0")
        answer = b""
        for _ in range(25):  # 25 s at most; without a body deadline it would never end
            time.sleep(1)
            data, closed = _answer(sock)
            answer += data
            if answer or closed:
                break
            try:
                sock.send(b"\0")
            except OSError:
                break
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"the request body took too long to arrive" in answer
    assert httpx.get(f"http://127.0.0.1:{port}/api/services", timeout=10).json()["data"] == []
    assert proc.poll() is None


# A 10 s header timeout: on a loaded machine no body here pauses long enough to be closed for it.
@pytest.mark.parametrize("small_serve_otlp", [10.0], indirect=True)
def test_at_the_limit_a_stalled_body_makes_room(small_serve_otlp: tuple[subprocess.Popen[bytes], int, int]) -> None:
    """128 connections (the limit) each trickling a body: a new client still gets its page, and one of them (the
    one whose body paused longest) is closed to make room, with a 408."""
    proc, port, http = small_serve_otlp
    socks: list[socket.socket] = []
    try:
        for _ in range(128):
            sock = socket.create_connection(("127.0.0.1", http), timeout=5)
            sock.sendall(_BODY_HEAD + b"\0")
            socks.append(sock)
        for sock in socks:  # each has read within the header timeout: none is closed for pausing
            sock.sendall(b"\0")
        time.sleep(0.5)  # the server has read every head: the one to close is a stalled body, answered 408
        r = httpx.get(f"http://127.0.0.1:{port}/api/services", timeout=10)
        assert r.status_code == 200, r.text
        time.sleep(0.5)
        closed = [data for data, eof in map(_answer, socks) if eof or data]
        assert len(closed) == 1 and closed[0].startswith(b"HTTP/1.1 408 "), closed
    finally:
        for sock in socks:
            sock.close()
    assert proc.poll() is None


# --- finding 5: hostile query values, security headers ----------------------------------------

_DEEP = '{"a":' + "[" * 3000 + "]" * 3000 + "}"
_V1 = {"service": "orders"}
_V3 = {"query.start_time_min": GOOD_MIN, "query.start_time_max": GOOD_MAX, "query.service_name": "orders"}
#: (path, query) pairs each of which must be refused with 4xx and a one-line reason.
HOSTILE: list[tuple[str, dict[str, str]]] = [
    *[("/api/traces", {**_V1, "tags": v}) for v in (_DEEP, "[" * 5000, '{"a":{"b":"c"}}', '{"a":null}', "[1]", "{")],
    ("/api/traces", {**_V1, "tags": json.dumps({f"k{i}": "v" for i in range(40)})}),
    ("/api/traces", {**_V1, "tag": "no-colon"}),
    *[("/api/traces", {**_V1, "start": v}) for v in ("99999999999999999999999", "-1", "1e9", "nan", "0x10")],
    *[("/api/traces", {**_V1, "end": v}) for v in ("9223372036854775808", "inf", "12.5")],
    *[("/api/traces", {**_V1, "limit": v}) for v in ("-5", "1e3", "9" * 40)],
    *[("/api/traces", {**_V1, "minDuration": v}) for v in ("9" * 40 + "h", "nan", "1.5", "1e3ms", "1s5")],
    ("/api/traces", {**_V1, "maxDuration": "9" * 400 + "s"}),
    ("/api/traces", {**_V1, "minDuration": "2s", "maxDuration": "1s"}),
    ("/api/traces", {"start": "1"}),  # no service
    *[("/api/dependencies", {"endTs": v}) for v in ("99999999999999999999", "-1", "now")],
    *[("/api/dependencies", {"lookback": v}) for v in ("9223372036854775807000", "1.5", "nan")],
    *[("/api/v3/traces", {**_V3, "query.start_time_min": v}) for v in ("0001-01-01T00:00:00Z", "yesterday")],
    *[
        ("/api/v3/traces", {**_V3, "query.start_time_max": v})
        for v in (
            "9999-12-31T23:59:59Z",
            "2024-13-45T00:00:00Z",
            "2024-01-01T00:00:00+99:99",
            "0001-01-01T00:00:00+01:00",
        )
    ],
    ("/api/v3/traces", {**_V3, "query.start_time_max": "2023-01-01T00:00:00Z"}),  # before the start
    ("/api/v3/traces", {**_V3, "query.attributes": _DEEP}),
    *[("/api/v3/traces", {**_V3, "query.duration_min": v}) for v in ("nan", "9" * 30 + "h")],
    *[("/api/v3/traces", {**_V3, "query.search_depth": v}) for v in ("-1", "1e99", "x")],
    ("/api/v3/traces", {"query.service_name": "orders"}),  # no time range
    ("/api/v3/operations", {"spanKind": "bogus"}),
    ("/api/operations", {}),
    *[("/api/ui/requests", {"min_ms": v}) for v in ("nan", "inf", "-inf", "1e300", "-1", "x")],
    *[("/api/ui/requests", {"limit": v}) for v in ("x", "1e5", "9" * 40)],
    *[("/api/ui/requests", {"lookback": v}) for v in ("x", "0", "-1h", "999d", "9" * 30 + "h")],
    *[("/api/ui/requests", {"start": v}) for v in ("yesterday", "0001-01-01T00:00:00+01:00", "1e300")],
    ("/api/ui/requests", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),  # end before start
    ("/api/ui/requests", {"lookback": "1h", "end": "2026-01-01T00:00:00Z"}),  # both kinds of range
    *[("/api/ui/endpoints", {"window": v}) for v in ("x", "1e300", "-" + "9" * 30)],
    # Lookups of what is not there are 404s with a reason.
    *[(f"/api/traces/{v}", {}) for v in ("%00", "z" * 300, "%F0%9F%92%A5", "0" * 32)],
    *[(f"/api/v3/traces/{v}", {}) for v in ("%00", "not-a-trace")],
    ("/api/ui/trace/%00", {}),
]


def test_hostile_query_values_get_a_4xx_with_a_one_line_reason(backend: Backend) -> None:
    """Every row of the table, on its route: 4xx (never 500), a one-line reason, the security headers."""
    _served(backend)
    assert len(HOSTILE) >= 60
    failures = []
    with httpx.Client(base_url=backend.url, timeout=15) as client:
        for path, params in HOSTILE:
            r = client.get(path, params=params)
            if not 400 <= r.status_code < 500:
                failures.append((path, {k: v[:50] for k, v in params.items()}, r.status_code, r.text[:200]))
                continue
            _reason(r)
            _secure(r)
    assert failures == []
    assert backend.get("/api/services").json()["data"] == ["orders"]  # still answering
    assert "Traceback" not in backend.log.read_text()


def test_every_kind_of_response_carries_the_security_headers(backend: Backend) -> None:
    """200 (page, API, OTLP), 404 (route, wrong port), 400, 405 and a 500 from a damaged store all have them."""
    _served(backend)
    responses = [
        backend.get("/"),
        backend.get("/api/services"),
        backend.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json"),
        backend.get("/no/such/page"),
        backend.get("/v1/traces"),  # OTLP path on the query port
        httpx.get(f"{backend.otlp}/api/services", timeout=10),  # query path on the OTLP port
        backend.get("/api/traces", service="orders", start="x"),
        backend.post("/v1/traces", b"{", "application/json"),
        httpx.delete(f"{backend.url}/api/services", timeout=10),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 404, 404, 400, 400, 405]
    with sqlite3.connect(backend.db) as conn:  # another program damages the store under the server
        conn.execute("DROP TABLE operations")
    damaged = backend.get("/api/operations", service="orders")
    assert damaged.status_code == 500
    for r in [*responses, damaged]:
        _secure(r)


def test_a_closed_stdout_never_fails_ingest(tmp_path: Path) -> None:
    """`otel-corr serve | head -3`: once the reader is gone, a new service's first spans are still
    stored and answered 200 (the "first spans from service" line has nowhere to go)."""
    port, http, grpc = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_corr", "serve", "--port", str(port), "--otlp-http-port", str(http),
         "--otlp-grpc-port", str(grpc), "--db", str(tmp_path / "t.db")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        for p in (port, http, grpc):
            wait_for_port(p, proc)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader goes away: the next print() meets a broken pipe
        for i, service in enumerate(["first", "second", "third"]):
            body = _otlp_json(f"{i + 1:032x}")
            body["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] = service
            r = httpx.post(f"http://127.0.0.1:{http}/v1/traces", json=body, timeout=30)
            assert r.status_code == 200, r.text
        for i in range(3):
            deadline = time.monotonic() + 15
            while httpx.get(f"http://127.0.0.1:{port}/api/traces/{i + 1:032x}", timeout=10).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)
