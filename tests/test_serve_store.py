"""One store, one writer, one port: ``otel-corr serve`` and its store file, as a user meets them.

Every test runs the real command: SIGTERM then the file alone; a second server on the same file or
port; store files that are not ours, truncated or unwritable (one line, exit 2, never modified).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .collector import free_port
from .conftest import ROOT
from .test_server import TRACE, Backend, _otlp_json

pytestmark = pytest.mark.e2e


def _serve(db: Path, *extra: str, preexec: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    """``otel-corr serve`` that is expected to refuse to start (a timeout fails the test)."""
    ports = ["--port", str(free_port()), "--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "otel_corr", "serve", "--db", str(db), *ports, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        preexec_fn=preexec,
    )


def _one_line_refusal(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    for word in words:
        assert word in out.stderr, out.stderr


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path, None, "--retention", "0")
    yield b
    if b.proc.poll() is None:
        b.stop()


def test_after_sigterm_the_store_file_alone_holds_every_span(running: Backend, tmp_path: Path) -> None:
    """SIGTERM, then copy only the .db file elsewhere: a server on the copy finds the spans."""
    assert running.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json").status_code == 200
    running.wait_trace(TRACE)
    running.proc.terminate()
    running.proc.wait(30)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(running.db, elsewhere / "copy.db")  # the file a user moves; no -wal, no -shm
    copy = Backend(elsewhere, elsewhere / "copy.db", "--retention", "0")
    try:
        assert copy.wait_trace("order-42.a_b")["traceID"] == TRACE
    finally:
        copy.stop()


def test_a_second_server_on_the_same_store_is_refused_naming_the_first(running: Backend) -> None:
    """Same store file: exit 2 and one line naming the running server; the first keeps storing."""
    out = _serve(running.db)
    _one_line_refusal(out, "in use by another otel-corr serve", f"pid {running.proc.pid}", running.url)
    ok = running.post("/v1/traces", json.dumps(_otlp_json()).encode(), "application/json")
    assert ok.status_code == 200 and running.wait_trace(TRACE)


@pytest.mark.parametrize("which", ["--otlp-grpc-port", "--otlp-http-port", "--port"])
def test_a_second_server_on_the_same_port_is_refused(running: Backend, tmp_path: Path, which: str) -> None:
    """Same port (gRPC included, which grpcio would share through SO_REUSEPORT): exit 2, one line naming it."""
    port = {"--otlp-grpc-port": running.grpc, "--otlp-http-port": running.http, "--port": running.port}[which]
    out = _serve(tmp_path / "other.db", which, str(port))
    _one_line_refusal(out, f"127.0.0.1:{port}", "in use")
    assert running.proc.poll() is None


def _without_root_override() -> None:
    """As root, drop the capabilities that ignore file permissions, so a read-only file is read-only."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set: gone after exec
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _store_with_spans(db: Path) -> None:
    from otel_corr.server._otlp import parse_spans, span_rows
    from otel_corr.server._store import Store

    store = Store(db)
    body = json.dumps(_otlp_json()).encode()
    for _ in range(50):  # a few pages
        batch = span_rows(parse_spans(body, "application/json"), store.resource_id)
        store.submit(batch.rows, batch.resources).result(30)
    store.close()


def _foreign(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes(text) VALUES ('mine')")
        conn.execute("PRAGMA user_version = 42")
    conn.close()
    return "another program's SQLite database"


def _text(db: Path) -> str:
    db.write_text("name,count\nspans,3\n" * 100)
    return "not an SQLite database"


def _truncated(db: Path) -> str:
    _store_with_spans(db)
    with open(db, "r+b") as file:
        file.truncate(db.stat().st_size // 2)
    return "is truncated"


def _read_only(db: Path) -> str:
    _store_with_spans(db)
    db.chmod(0o444)
    return "is read-only"


def _read_only_directory(db: Path) -> str:
    _store_with_spans(db)
    db.parent.chmod(0o555)
    return "read-only directory"


@pytest.mark.parametrize("make", [_foreign, _text, _truncated, _read_only, _read_only_directory])
def test_a_store_that_is_not_ours_or_not_usable_is_refused_and_left_alone(
    tmp_path: Path, make: Callable[[Path], str]
) -> None:
    """Not ours, not SQLite, truncated, read-only file or directory: one line, exit 2, not a byte changed."""
    home = tmp_path / "store"
    home.mkdir()
    db = home / "traces.db"
    reason = make(db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    files = sorted(p.name for p in home.iterdir() if p.name != "traces.db.lock")
    try:
        out = _serve(db, preexec=_without_root_override if os.geteuid() == 0 else None)
    finally:
        home.chmod(0o755)
    _one_line_refusal(out, reason, str(db))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in home.iterdir() if p.name != "traces.db.lock") == files
