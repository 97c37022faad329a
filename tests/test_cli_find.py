"""`otel-corr find` as a person at a terminal (or a script) sees it: a real subprocess against a real
`otel-corr serve` fed over OTLP/HTTP.  Piped: plain text, no escape codes; on a pseudo-terminal: the
matched words bold and reversed; `--json`: the server's answer; every exit status; stored escapes escaped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._pty import run_on_pty
from ._search_data import ESC, OLD, PAY, PAY_RID, seed
from .collector import free_port
from .conftest import ROOT, other_program, run_cli
from .test_server import Backend

pytestmark = pytest.mark.e2e

HIGHLIGHT = b"\x1b[1;7m"  # bold + reverse: how a matched word looks on a terminal


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    served = Backend(tmp_path_factory.mktemp("find"), None, "--retention", "0")
    try:
        seed(served)
        yield served
    finally:
        served.stop()


def _find(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("find", *args, **env)


def _on_terminal(*args: str, **env: str) -> tuple[int, bytes]:
    """``otel-corr find ARGS`` with stdout on a pseudo-terminal: (its status, the bytes the terminal got)."""
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "OTEL_CORR_URL")}
    status, out, _ = run_on_pty(["find", *args], {**base, "COLUMNS": "200", "TERM": "xterm-256color", **env})
    return status, out


def test_piped_output_is_plain_newest_first_with_how_to_open_one(backend: Backend) -> None:
    """`find declined`: a block per request, newest first (the payment, then the two-day-old one), each with
    time, service, name, status, duration, trace and request ID, its matched line indented; no escape codes."""
    out = _find("declined", "--url", backend.url)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and out.stderr == ""
    blocks = out.stdout.strip().split("\n\n")
    assert len(blocks) == 3, out.stdout
    head, line = blocks[0].splitlines()
    assert f"  shop  POST /pay/{{id}}  502  812.0 ms  trace {PAY}  request {PAY_RID}" in head
    assert line == "    log        payment declined by the gateway: GatewayError"
    assert f"trace {OLD}" in blocks[1] and "    log        payment declined long ago" in blocks[1]
    assert blocks[2] == f"2 requests found; open one with: otel-corr trace {PAY} --url {backend.url}"


def test_on_a_terminal_the_matched_words_are_highlighted(backend: Backend) -> None:
    """On a pty the matched word is bold+reversed (and only it); NO_COLOR turns every style off."""
    status, raw = _on_terminal("declined", "--since", "1h", "--url", backend.url)
    assert status == 0, raw
    assert raw.count(HIGHLIGHT) == 1 and HIGHLIGHT + b"declined\x1b[0m by the gateway" in raw
    assert PAY.encode() in raw and OLD.encode() not in raw  # --since 1h
    status, raw = _on_terminal("declined", "--url", backend.url, NO_COLOR="1")
    assert status == 0 and b"\x1b" not in raw and b"payment declined by the gateway" in raw


def test_json_is_the_servers_answer(backend: Backend) -> None:
    """`--json` prints one JSON document: the query, opened, complete and each result with its matches."""
    out = _find("user.id=42", "--json", "--url", backend.url)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["opened"] is None and answer["complete"] is True and answer["query"] == "user.id=42"
    assert [r["trace_id"] for r in answer["results"]] == [PAY]
    match = answer["results"][0]["matches"][0]
    assert "user.id=42" in match["text"] and match["highlights"]


def test_an_id_prints_its_trace(backend: Backend) -> None:
    """A request ID names a trace: said so, then the trace as `otel-corr trace` prints it."""
    out = _find(PAY_RID, "--url", backend.url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{PAY_RID} names trace {PAY}:"
    assert lines[1].startswith(f"trace {PAY}  request {PAY_RID}  2 spans, 1 service")
    assert "payment declined by the gateway: GatewayError" in out.stdout
    assert lines[-1] == f"open {backend.url}/trace/{PAY}"


def test_stored_escapes_and_control_characters_come_out_escaped(backend: Backend) -> None:
    """ESC, U+009B, BEL and a newline in a stored log line and span name: escaped piped and on a terminal,
    the forged line kept on its record's line."""
    out = _find("ansiword", "--url", backend.url)
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x9b" not in out.stdout and "\x07" not in out.stdout
    assert f"GET /\\x1b]0;pwned\\x07  -  3.0 ms  trace {ESC}" in out.stdout
    assert "    log        ansiword \\x1b[2J cleared \\x9b31m red \\x07 bell\\nforged line\n" in out.stdout
    status, raw = _on_terminal("ansiword", "--url", backend.url)
    assert status == 0
    assert b"\x1b[2J" not in raw and b"\x1b]0" not in raw and "\x9b".encode() not in raw and b"\x07" not in raw
    assert HIGHLIGHT + b"ansiword\x1b[0m \\x1b[2J cleared" in raw


def test_service_and_limit_narrow_the_list(backend: Backend) -> None:
    """`--service` keeps requests with a span of that service; `--limit 1` lists the newest one only."""
    out = _find("declined", "--service", "inventory", "--url", backend.url)
    assert out.returncode == 1 and out.stdout == ""
    out = _find("declined", "--service", "shop", "--limit", "1", "--url", backend.url)
    assert out.returncode == 0, out.stderr
    assert f"trace {PAY}" in out.stdout and OLD not in out.stdout and "\n1 request found;" in out.stdout


def test_nothing_found_exits_1_and_says_how_to_widen(backend: Backend) -> None:
    out = _find("declined", "nosuchword", "--since", "15m", "--url", backend.url)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("no request matches declined nosuchword in the last 15m at ")
    assert "a longer --since" in out.stderr and "fewer words" in out.stderr
    out = _find("nosuchword", "--json", "--url", backend.url)
    assert out.returncode == 1 and json.loads(out.stdout)["results"] == []


def test_a_bad_query_exits_2_with_the_servers_message(backend: Backend) -> None:
    """Only exclusions, a query past 1024 characters, a bad since: the server's 400 message, status 2; a bad
    --limit or --since is refused before asking (status 2 too)."""
    for args in (["-declined"], ["x" * 2000], ["declined", "since:forever"]):
        out = _find(*args, "--url", backend.url)
        assert out.returncode == 2 and out.stdout == "", (args[0][:20], out.stderr)
        assert out.stderr.startswith("otel-corr find: ") and len(out.stderr) < 700, out.stderr
        assert "Traceback" not in out.stderr
    out = _find("declined", "--limit", "0", "--url", backend.url)
    assert (
        out.returncode == 2
        and out.stderr == "otel-corr: --limit=0 is not valid: expected a whole number of requests, 1 or more\n"
    )
    out = _find("declined", "--since", "forever", "--url", backend.url)
    assert out.returncode == 2 and "--since='forever' is not valid: expected an age such as 15m" in out.stderr
    out = _find(" ", "--url", backend.url)
    assert out.returncode == 2 and "the query is empty" in out.stderr


def test_unreachable_exits_3_and_not_otel_corr_exits_4(tmp_path: Path) -> None:
    """Nothing listening: status 3 naming the URL and how to start the backend; another program: status 4."""
    url = f"http://127.0.0.1:{free_port()}"
    out = _find("declined", "--url", url)
    assert out.returncode == 3 and out.stdout == ""
    assert f"otel-corr find: cannot reach otel-corr serve at {url} (Connection refused)" in out.stderr
    assert "`otel-corr serve`" in out.stderr and "OTEL_CORR_URL" in out.stderr
    out = _find("declined", OTEL_CORR_URL=url)
    assert out.returncode == 3 and f"at {url} " in out.stderr
    with other_program(tmp_path) as other:
        out = _find("declined", "--url", other)
    assert out.returncode == 4, out.stderr
    assert f"{other} is not otel-corr serve" in out.stderr


def test_help_lists_find_with_examples() -> None:
    """`otel-corr --help` lists find; `find --help` shows the language by example and what --json prints."""
    top = subprocess.run([sys.executable, "-m", "otel_corr", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "\n    find " in top.stdout and "trace, find, why, tail: the backend cannot be reached" in top.stdout
    out = _find("--help")
    assert out.returncode == 0
    for example in ("GatewayError", "'\"payment declined\"'", "user.id=42 status:5xx", "--json", "OTEL_CORR_URL"):
        assert example in out.stdout, example
