"""What the stress tests and ``benchmarks/stress.py`` share: the collector, the load, the checks.

- :class:`Serve` runs ``otel-corr serve`` on a temporary SQLite file: a real
  OTLP receiver whose store can be read after the run (50,000 spans are too
  many to scrape from a debug dump).  It can be SIGKILLed and started again on
  the same ports.
- :class:`Blackhole` accepts TCP connections and never reads or answers.
- :func:`run_load` is an asyncio client (aiohttp) with ``concurrency``
  connections, each request with its own ``X-Request-ID``.
- :func:`check` joins every response with its log lines and its exported span
  and counts mismatches by kind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from otel_corr.server._codec import Codec

from ..collector import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent.parent
WORK_ROUTE = "GET /work/{n}"
_ACCESS_PATH = re.compile(r"^/work/(\d+)$")


def delivered(serve: Serve, answered: int, timeout: float) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Once ``answered`` requests' spans and 3 log records each have arrived: per request ID, the
    server spans, the app's own log records and the access log records the collector stored."""
    serve.wait_for(serve.span_count, answered, timeout=timeout)
    serve.wait_for(lambda: len(serve.logs()), 3 * answered, timeout=timeout)
    spans = Counter(rid for rid, _, _ in serve.spans())
    logs = serve.logs()
    app_logs = Counter(rid for rid, _, _, attributes in logs if attributes.get("n") is not None)
    access = Counter(rid for rid, _, _, attributes in logs if attributes.get("status") == 200)
    return spans, app_logs, access


def app_env(endpoint: str, logs: Path, **extra: str) -> dict[str, str]:
    """The stress app's environment: spans to ``endpoint``, JSON log lines to ``logs/app.log``.

    Log records stay out of the collector (``OTEL_LOGS_EXPORTER=none``, since issue 17 they would follow
    the spans by default): these runs count spans; pass ``OTEL_LOGS_EXPORTER="otlp"`` to send them too.
    """
    from ..conftest import server_env

    return server_env(
        None,
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_CORR_LOG_FORMAT="json",
        OTEL_CORR_LOG_FILE=str(logs / "app.log"),
        **{"OTEL_LOGS_EXPORTER": "none", **extra},
    )


class Serve:
    """``otel-corr serve`` on free loopback ports with its store in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db = workdir / "traces.db"
        self.http_port, self.grpc_port, self.ui_port = free_port(), free_port(), free_port()
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        out = open(self.workdir / f"serve-{self.starts}.out", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "otel_corr", "serve", "--db", str(self.db), "--port", str(self.ui_port)]
        argv += ["--otlp-http-port", str(self.http_port), "--otlp-grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        out.close()
        wait_for_port(self.http_port, self.proc)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the exporters, connections just die."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read the store directly (WAL: readers never wait for the writer)."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet
            return []
        finally:
            conn.close()

    def spans(self) -> list[tuple[str, str, str]]:
        """(request_id, trace_id, span_id) of every stored server span of the stress route."""
        rows = self.query(
            "SELECT request_id, lower(hex(trace_id)), lower(hex(span_id)) FROM spans WHERE name = ?", (WORK_ROUTE,)
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def logs(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(request_id, trace_id, span_id, attributes) of every stored log record."""
        rows = self.query("SELECT lower(hex(trace_id)), lower(hex(span_id)), record FROM logs")
        # The record (request ID, attributes...) is compressed with the store's log dictionary.
        codec = Codec("log", lambda: {r[0]: r[1] for r in self.query("SELECT id, data FROM dicts WHERE kind = 'log'")})
        out = []
        for trace_id, span_id, record in rows:
            _, _, _, request_id, attributes = json.loads(codec.unpack(record))
            out.append((request_id, trace_id, span_id, attributes))
        return out

    def wait_for(self, count: Callable[[], int], expected: int, timeout: float, settle: float = 2.0) -> int:
        """Poll ``count()`` until it reaches ``expected`` or stops growing for ``settle`` s within ``timeout``."""
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = count()
            if now >= expected:
                return now
            if now != last:
                last, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > settle and now > 0:
                return now
            time.sleep(0.2)
        return count()

    def span_count(self) -> int:
        rows = self.query("SELECT count(*) FROM spans WHERE name = ?", (WORK_ROUTE,))
        return int(rows[0][0]) if rows else 0


class Blackhole:
    """A TCP server that accepts every connection and never reads or answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def wait_for_workers(url: str, workers: int, timeout: float = 60.0) -> set[int]:
    """Ask ``/pid`` on a new connection each time until ``workers`` processes have answered.

    uvicorn's port is open as soon as the first worker listens; a load started then hands every
    keep-alive connection to that worker, and the others never serve a request.
    """
    import httpx

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(seen)} of {workers} workers answered in {timeout:.0f} s: {seen}")
        try:
            seen.add(int(httpx.get(f"{url}/pid", headers={"Connection": "close"}, timeout=5).json()["pid"]))
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    return seen


def request_ids(count: int, start: int = 0) -> list[str]:
    """A mix of the ID forms a client sends: UUIDs (some upper-case), 32 hex digits, arbitrary safe strings."""
    ids = []
    for n in range(start, start + count):
        form = n % 4
        if form == 0:
            ids.append(str(uuid.uuid4()))
        elif form == 1:
            ids.append(str(uuid.uuid4()).upper())
        elif form == 2:
            ids.append(uuid.uuid4().hex)
        else:
            ids.append(f"order-{n}.{uuid.uuid4().hex[:8]}:x")
    return ids


def one_id(request_id: str) -> str | None:
    """The trace ID the one-ID rule promises for this request ID (UUID or 32 hex), else None."""
    digits = request_id.replace("-", "").lower()
    if len(digits) == 32 and all(c in "0123456789abcdef" for c in digits):
        dashed = request_id.count("-") == 4 and len(request_id) == 36
        if dashed or "-" not in request_id:
            return digits
    return None


@dataclass
class Result:
    n: int
    sent: str
    status: int  # -1: the request raised
    header: str | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0
    started: float = 0.0
    error: str = ""


async def _load(
    url: str, ids: Sequence[str], first: int, concurrency: int, stop: threading.Event | None
) -> list[Result]:
    results: list[Result] = []
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            sent_here = 0
            while stop is None or not stop.is_set():
                i = next(counter)
                if i >= len(ids):
                    return
                n, sent = first + i, ids[i]
                headers = {"X-Request-ID": sent}
                sent_here += 1
                if sent_here % 50 == 0:
                    # A fresh connection now and then: one worker's accept loop can take all 64 connections at
                    # once, and without reconnects the other worker would sit idle for the whole run.
                    headers["Connection"] = "close"
                started = time.perf_counter()
                result = Result(n, sent, -1, started=started)
                try:
                    async with session.get(f"{url}/work/{n}", headers=headers) as r:
                        result.status = r.status
                        result.header = r.headers.get("x-request-id")
                        raw = await r.read()
                        if r.status == 200:
                            result.body = json.loads(raw)
                except Exception as exc:  # counted, not raised: a failing request is a finding
                    result.error = f"{type(exc).__name__}: {exc}"
                result.seconds = time.perf_counter() - started
                results.append(result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def run_load(
    url: str, ids: Sequence[str], *, first: int = 0, concurrency: int = 64, stop: threading.Event | None = None
) -> list[Result]:
    """Send ``GET /work/<first+i>`` with ``X-Request-ID: ids[i]`` for every i, ``concurrency`` at a time.

    ``stop`` (set from another thread) ends the run early: requests already sent finish.
    """
    return asyncio.run(_load(url, ids, first, concurrency, stop))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(pid)


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def read_log_lines(log_dir: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        for raw in path.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                lines.append(json.loads(raw))
    return lines


@dataclass
class Report:
    requests: int = 0
    ok: int = 0
    status_5xx: int = 0
    failed: int = 0  # raised (connection error, timeout) or another status
    mismatches: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self.mismatches[kind] += 1
        self.examples.setdefault(kind, example)

    @property
    def total_mismatches(self) -> int:
        return sum(self.mismatches.values())


def check(
    results: Sequence[Result],
    log_lines: Sequence[dict[str, Any]] | None,
    spans: Sequence[tuple[str, str, str]] | None,
) -> Report:
    """Every response against its header, its body, its log lines and its exported span.

    Log lines are joined to a request by ``n`` (the app logs it; the access line has it in the
    path), which the middleware never touches: a line stamped with another request's IDs shows up
    as a mismatch instead of silently joining the wrong request.  Spans are joined by request ID;
    a request ID that was mixed up leaves one request with no span and another with two.
    """
    report = Report(requests=len(results))
    by_n: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in log_lines or ():
        n = line.get("n")
        if n is None and line.get("logger") == "otel_corr.access":
            m = _ACCESS_PATH.match(str(line.get("path", "")))
            n = int(m.group(1)) if m else None
        if isinstance(n, int):
            by_n[n].append(line)
    spans_by_rid: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for span in spans or ():
        spans_by_rid[span[0]].append(span)
    for r in results:
        if r.status >= 500:
            report.status_5xx += 1
        if r.status != 200:
            report.failed += 1
            continue
        report.ok += 1
        if r.header != r.sent:
            report.add("header", f"n={r.n} sent {r.sent!r} got {r.header!r}")
        body = r.body or {}
        loop, thread = body.get("loop", {}), body.get("thread", {})
        if body.get("n") != r.n or loop.get("request_id") != r.sent:
            report.add("body-loop", f"n={r.n} sent {r.sent!r} body {body!r}")
        if thread != loop:
            report.add("body-thread", f"n={r.n} loop {loop!r} thread {thread!r}")
        expected_trace = one_id(r.sent)
        if expected_trace is not None and loop.get("trace_id") != expected_trace:
            report.add("one-id", f"n={r.n} sent {r.sent!r} trace {loop.get('trace_id')!r}")
        trace_id, span_id = loop.get("trace_id"), loop.get("span_id")
        if log_lines is not None:
            lines = by_n.get(r.n, [])
            messages = sorted(str(line.get("message", ""))[:9] for line in lines if line.get("logger") == "stress")
            if messages != ["in loop", "in thread"] or len(lines) != 3:
                report.add("log-count", f"n={r.n}: {len(lines)} lines {messages}")
            for line in lines:
                if (line.get("request_id"), line.get("trace_id"), line.get("span_id")) != (r.sent, trace_id, span_id):
                    report.add("log-ids", f"n={r.n} sent {r.sent!r} trace {trace_id} line {line!r}")
        if spans is not None:
            found = spans_by_rid.get(r.sent, [])
            if len(found) != 1:
                report.add("span-count", f"n={r.n} rid {r.sent!r}: {len(found)} spans")
            elif found[0][1:] != (trace_id, span_id):
                report.add("span-ids", f"n={r.n} rid {r.sent!r} body {trace_id}/{span_id} span {found[0]}")
    return report
