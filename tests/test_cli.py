"""The ``otel-corr`` command as a person at a terminal (or a script) sees it: real subprocesses, real backend."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from otel_corr import __version__, cli

from ._pty import run_on_pty
from .collector import free_port
from .conftest import ROOT, other_program, run_cli
from .test_server import Backend

pytestmark = pytest.mark.e2e

TRACE = "5b8efff798038103d269b633813fc60c"
ONE = "6c8efff798038103d269b633813fc60d"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, **env)


def _on_terminal(columns: int, *args: str) -> str:
    """``otel-corr ARGS`` with its stdout on a pseudo-terminal ``columns`` wide; its output without colours."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", _raw_on_terminal(columns, *args).decode()).replace("\r\n", "\n")


def _raw_on_terminal(columns: int, *args: str) -> bytes:
    """``otel-corr ARGS`` with its stdout on a pseudo-terminal ``columns`` wide: the bytes the terminal gets."""
    status, out, err = run_on_pty(args, {**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"})
    assert status == 0, err
    return out


# --- the parser ----------------------------------------------------------------------------------


def test_no_command_prints_the_help() -> None:
    """`otel-corr` alone prints the help on stdout and exits 0, as pip does, not an argparse error."""
    for argv in ([sys.executable, "-m", "otel_corr"], [sys.executable, "-c", "from otel_corr.cli import main; main()"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        assert out.stdout.startswith("usage: otel-corr") and "error:" not in out.stdout
        for command in ("serve", "trace", "find", "why", "tail", "demo", "doctor"):
            assert f"\n    {command} " in out.stdout
        assert (
            "exit statuses:" in out.stdout
            and "  3    trace, find, why, tail: the backend cannot be reached (or answered with a server error)"
            in out.stdout
        )


def test_version() -> None:
    out = _cli("--version")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"otel-corr {__version__}\n", "")


def test_a_misspelt_flag_without_a_command_is_an_error() -> None:
    """`otel-corr --verison`: an error naming the flag, status 2, not the help and success."""
    out = _cli("--verison")
    assert out.returncode == 2 and out.stdout == "", out.stdout
    assert out.stderr.startswith("usage: otel-corr") and "error: unrecognized arguments: --verison" in out.stderr


def test_the_docs_exit_status_table_is_the_codes_table() -> None:
    """docs/local-backend.md lists exactly the statuses cli.EXIT_STATUSES has, nothing the code never returns."""
    doc = (ROOT / "docs" / "local-backend.md").read_text()
    table = doc[doc.index("### Exit statuses") :].split("\n\n")[1]
    assert [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)] == list(cli.EXIT_STATUSES)


def _actions(parser: argparse.ArgumentParser, where: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        found.append((where, action))
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _actions(sub, f"{where} {name}")
    return found


def test_every_flag_and_command_has_help() -> None:
    """Walks the whole parser: every option, positional and command says what it is for."""
    actions = _actions(cli._parser(), "otel-corr")
    assert len(actions) >= 30  # every command walked
    missing = [
        f"{where}: {action.option_strings or action.dest}"
        for where, action in actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    ]
    commands = [a for _, a in actions if isinstance(a, argparse._SubParsersAction)]
    missing += [f"command {c.dest}" for a in commands for c in a._choices_actions if not c.help]
    assert missing == []


def test_serve_help_lists_its_variables_and_how_to_stop() -> None:
    """`serve --help` lists each OTEL_CORR_* variable serve reads, with what it accepts; the docs' table agrees."""
    out = _cli("serve", "--help")
    assert out.returncode == 0
    listed = set(re.findall(r"^  (OTEL_CORR_[A-Z_]+) +\S", out.stdout, re.M))
    assert listed == {var for var, _ in cli.SERVE_VARIABLES.values()} and len(listed) == 14
    assert "  OTEL_CORR_RETENTION       an age such as 7d, 12h, 30m, 2w; 0 keeps everything" in out.stdout
    assert "Ctrl-C" in out.stdout
    # Every variable serve reads in cli.py goes through the table (no name read beside it).
    source = (ROOT / "otel_corr" / "cli.py").read_text()
    serve_code = source[source.index("def _serve_config") : source.index("def _fetch")]
    assert re.findall(r"OTEL_CORR_[A-Z_]+", serve_code) == []
    doc = (ROOT / "docs" / "local-backend.md").read_text()
    flags_table = doc[doc.index("## Flags and variables") : doc.index("## Ingest")]
    assert set(re.findall(r"`(OTEL_CORR_[A-Z_]+)", flags_table)) == listed


def test_a_commands_error_shows_its_own_usage() -> None:
    """`serve --prot 1`: serve's usage and the unknown flag, not the top-level usage."""
    out = _cli("serve", "--prot", "1")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("usage: otel-corr serve [-h] [--host HOST]"), out.stderr
    assert "otel-corr serve: error: unrecognized arguments: --prot 1" in out.stderr
    out = _cli("trace", "a", "b")
    assert out.returncode == 2 and out.stderr.startswith("usage: otel-corr trace")


# --- otel-corr trace: what goes wrong ------------------------------------------------------------------


def test_trace_with_an_empty_id_is_a_usage_error() -> None:
    out = _cli("trace", "  ", "--url", "http://127.0.0.1:9")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("usage: otel-corr trace") and "the ID is empty" in out.stderr
    assert "no trace found" not in out.stderr


def test_trace_at_an_unreachable_url_says_how_to_start_the_backend() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = _cli("trace", "order-1", "--url", url)
    assert out.returncode == 3 and out.stdout == ""
    assert f"cannot reach otel-corr serve at {url} (Connection refused)" in out.stderr
    assert "`otel-corr serve`" in out.stderr and "OTEL_CORR_URL" in out.stderr
    # The default URL, from OTEL_CORR_URL.
    out = _cli("trace", "order-1", OTEL_CORR_URL=url)
    assert out.returncode == 3 and f"at {url} " in out.stderr


def test_trace_at_a_url_that_is_not_otel_corr(tmp_path: Path) -> None:
    """Another program on the port (here Python's http.server: 404 and HTML): said so, status 4."""
    with other_program(tmp_path) as url:
        out = _cli("trace", "order-1", "--url", url)
        assert out.returncode == 4, out.stderr
        assert f"{url} is not otel-corr serve (GET /api/otel-corr/info answered 404)" in out.stderr
        assert "no trace found" not in out.stderr and "--jaeger" in out.stderr


# --- otel-corr trace: what it prints ------------------------------------------------------------------

STACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/server.py", line 80, in handle\n'
    "    return route(request)\n"
    '  File "/srv/app/routes.py", line 31, in route\n'
    "    return views[name](request)\n"
    '  File "/srv/app/views.py", line 12, in pay\n'
    "    ratio = total / count\n"
    "            ~~~~~~^~~~~~~\n"
    '  File "/srv/app/views.py", line 40, in divide_the_bill_between_everyone_at_the_table\n'
    "    return a / b\n"
    "ZeroDivisionError: division by zero\n"
)


CAUGHT = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/stock.py", line 9, in lookup\n'
    "    return client.get(url)\n"
    "ConnectionError: stock unreachable\n"
)


def _attrs(**values: Any) -> list[dict[str, Any]]:
    def value(v: Any) -> dict[str, Any]:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}

    return [{"key": k, "value": value(v)} for k, v in values.items()]


def _spans(service: str, *spans: dict[str, Any]) -> dict[str, Any]:
    resource = {"attributes": _attrs(**{"service.name": service})}
    return {"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": list(spans)}]}


def _post_traces(backend: Backend) -> None:
    t0 = 1_706_678_909_000_000_000
    server = {
        "traceId": TRACE,
        "spanId": "1000000000000001",
        "name": "POST /checkout/{basket}/payment-with-a-rather-long-route-name",
        "kind": 2,
        "startTimeUnixNano": str(t0),
        "endTimeUnixNano": str(t0 + 80_000_000),
        "attributes": _attrs(**{"request.id": "pay-7", "http.response.status_code": 500}),
        "status": {"code": 2},
        "events": [
            {
                "timeUnixNano": str(t0 + 70_000_000),
                "name": "exception",
                "attributes": _attrs(
                    **{
                        "exception.type": "ZeroDivisionError",
                        "exception.message": "division by zero",
                        "exception.stacktrace": STACK,
                    }
                ),
            }
        ],
    }
    client = {
        "traceId": TRACE,
        "spanId": "1000000000000002",
        "parentSpanId": "1000000000000001",
        "name": "GET",
        "kind": 3,
        "startTimeUnixNano": str(t0 + 10_000_000),
        "endTimeUnixNano": str(t0 + 30_000_000),
        "attributes": _attrs(**{"url.full": "http://stock:8080/sku/7?fresh=1", "http.response.status_code": 200}),
    }
    alone = {
        "traceId": ONE,
        "spanId": "2000000000000001",
        "name": "GET /health",
        "kind": 2,
        "startTimeUnixNano": str(t0),
        "endTimeUnixNano": str(t0 + 1_000_000),
        "attributes": _attrs(**{"request.id": "health-1"}),
    }
    body = {"resourceSpans": [_spans("shop", server, client), _spans("probe", alone)]}
    r = backend.post("/v1/traces", json.dumps(body).encode(), "application/json")
    assert r.status_code == 200, r.text

    def record(span_id: str, at_ms: int, logger: str, message: str, stack: str) -> dict[str, Any]:
        return {
            "scope": {"name": logger},
            "logRecords": [
                {
                    "timeUnixNano": str(t0 + at_ms * 1_000_000),
                    "severityNumber": 17,
                    "severityText": "ERROR",
                    "body": {"stringValue": message},
                    "traceId": TRACE,
                    "spanId": span_id,
                    "attributes": _attrs(**{"exception.stacktrace": stack}),
                }
            ],
        }

    logs = {
        "resourceLogs": [
            {
                "resource": {"attributes": _attrs(**{"service.name": "shop"})},
                "scopeLogs": [
                    # The same traceback as the span's exception event: shown once, under the event.
                    record("1000000000000001", 71, "app.error", "Unhandled ZeroDivisionError", STACK),
                    # A handled error's own traceback: its last frames and its exception line.
                    record("1000000000000002", 25, "app.stock", "stock lookup failed, retrying", CAUGHT),
                ],
            }
        ]
    }
    r = backend.post("/v1/logs", json.dumps(logs).encode(), "application/json")
    assert r.status_code == 200, r.text
    backend.wait_trace(TRACE, 2)
    backend.wait_trace(ONE)


def _words(text: str) -> list[str]:
    return text.replace("█", " ").split()


def test_trace_wraps_on_a_narrow_terminal_and_never_loses_a_word(tmp_path: Path) -> None:
    """At 60 and 200 columns and piped: the same words; no line cut, each terminal row within the width.

    The error shows its type, message and last frames; the client span its URL beside its name.
    """
    backend = Backend(tmp_path, None, "--retention", "0")
    try:
        _post_traces(backend)
        piped = _cli("trace", "pay-7", "--url", backend.url, COLUMNS="60")
        assert piped.returncode == 0, piped.stderr
        lines = piped.stdout.splitlines()
        # Piped: one whole line per span or record, whatever COLUMNS says.
        assert lines[0] == f"trace {TRACE}  request pay-7  2 spans, 1 service, 80.0 ms"
        assert any(
            line.endswith("shop: POST /checkout/{basket}/payment-with-a-rather-long-route-name  80.0 ms  500  ERROR")
            for line in lines
        )
        assert any(line.endswith("shop: GET → http://stock:8080/sku/7?fresh=1  20.0 ms  200") for line in lines)
        text = piped.stdout
        assert "exception ZeroDivisionError: division by zero\n" in text
        assert "(1 earlier frame: --json or the page has them all)\n" in text
        assert 'File "/srv/app/views.py", line 12, in pay\n' in text and "ratio = total / count\n" in text
        assert "return a / b\n" in text and "~~~~" not in text and "server.py" not in text
        assert "event exception" not in text
        assert text.count('File "/srv/app/views.py", line 12, in pay') == 1  # one traceback, not two
        assert "ERROR app.error: Unhandled ZeroDivisionError\n" in text
        caught = text[text.index("ERROR app.stock: stock lookup failed, retrying") :]
        assert caught.splitlines()[1:4] == [
            " " * 31 + 'File "/srv/app/stock.py", line 9, in lookup',
            " " * 33 + "return client.get(url)",
            " " * 31 + "ConnectionError: stock unreachable",
        ], caught
        for columns in (60, 200):
            shown = _on_terminal(columns, "trace", "pay-7", "--url", backend.url)
            rows = shown.splitlines()
            # Only a URL too long for any row is left whole (to be clicked), alone on its row.
            wide = [r for r in rows if len(r) > columns]
            assert all(len(r.split()) == 1 and "://" in r for r in wide), wide
            assert "…" not in shown
            # The same words in the same order, but for the long ones cut across rows.
            assert "".join(_words(shown)) == "".join(_words(piped.stdout))
        narrow = _on_terminal(60, "trace", "pay-7", "--url", backend.url)
        assert len(narrow.splitlines()) > len(lines)  # wrapped, not cut
        one = _cli("trace", "health-1", "--url", backend.url)
        assert f"trace {ONE}  request health-1  1 span, 1 service, 1.0 ms" in one.stdout
        missing = _cli("trace", "no-such-request", "--url", backend.url)
        assert missing.returncode == 1 and "no trace found for 'no-such-request'" in missing.stderr
    finally:
        backend.stop()
    # serve noted the first spans of each service, once each, and said how to stop it.
    log = backend.log.read_text()
    assert log.count('first spans from service "shop"') == 1 and log.count('first spans from service "probe"') == 1
    assert "Ctrl-C stops it" in log


def test_serve_notes_each_new_service_once_and_quotes_its_name(tmp_path: Path) -> None:
    """Batches from the same service say nothing more; a name with control characters arrives escaped."""
    backend = Backend(tmp_path)
    try:
        now = time.time_ns()
        for i, service in enumerate(["shop", "shop", "evil\x1b[2Jname", "shop", "c1\u009b2J"]):
            span = {
                "traceId": f"{i + 1:032x}",
                "spanId": f"{i + 1:016x}",
                "name": "GET /",
                "kind": 2,
                "startTimeUnixNano": str(now),
                "endTimeUnixNano": str(now + 1000),
            }
            body = {"resourceSpans": [_spans(service, span)]}
            assert backend.post("/v1/traces", json.dumps(body).encode(), "application/json").status_code == 200
        backend.wait_trace(f"{5:032x}")
    finally:
        backend.stop()
    lines = [line for line in backend.log.read_text().splitlines() if "first spans" in line]
    assert lines == [
        'otel-corr serve: first spans from service "shop"',
        'otel-corr serve: first spans from service "evil\\x1b[2Jname"',
        'otel-corr serve: first spans from service "c1\\x9b2J"',
    ]


def test_trace_shows_control_characters_from_span_data_as_escapes(tmp_path: Path) -> None:
    """ESC and U+009B (C1 CSI) in a sender's names, URL, messages and attributes reach neither a pipe nor a
    terminal: each is shown as ``\x1b`` / ``\x9b``.  Piped, a newline in a message stays on its record's line.

    A non-Python stack trace under a log record is shown once, its last line not repeated.
    """
    t0 = 1_706_678_909_000_000_000
    server = {
        "traceId": TRACE,
        "spanId": "1000000000000001",
        "name": "GET /\x1b]0;pwned\x07",
        "kind": 2,
        "startTimeUnixNano": str(t0),
        "endTimeUnixNano": str(t0 + 80_000_000),
        "attributes": _attrs(**{"request.id": "esc-1"}),
        "events": [
            {"timeUnixNano": str(t0 + 1), "name": "note\x1b[5m", "attributes": _attrs(**{"k\u009b": "v\x1b[2J"})},
            {
                "timeUnixNano": str(t0 + 2),
                "name": "exception",
                "attributes": _attrs(
                    **{
                        "exception.type": "Boom\u009b2J",
                        "exception.message": "bad\x1b[2J\nsecond line",
                        "exception.stacktrace": STACK.replace("return a / b", "return a \x1b[2J/ b"),
                    }
                ),
            },
        ],
    }
    client = {
        "traceId": TRACE,
        "spanId": "1000000000000002",
        "parentSpanId": "1000000000000001",
        "name": "GET",
        "kind": 3,
        "startTimeUnixNano": str(t0 + 10_000_000),
        "endTimeUnixNano": str(t0 + 30_000_000),
        "attributes": _attrs(**{"url.full": "http://stock/\x1b[2J\u009b2J"}),
    }
    java = (
        "java.lang.IllegalStateException: no stock\n"
        "\tat com.shop.Stock.get(Stock.java:9)\n"
        "\tat com.shop.Main.main(Main.java:3)\n"
    )
    logs = {
        "resourceLogs": [
            {
                "resource": {"attributes": _attrs(**{"service.name": "\x1b[31mshop"})},
                "scopeLogs": [
                    {
                        "scope": {"name": "app\x1b[2J"},
                        "logRecords": [
                            {
                                "timeUnixNano": str(t0 + 20_000_000),
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"stringValue": "stock\x1b[2J failed\nforged line"},
                                "traceId": TRACE,
                                "spanId": "1000000000000002",
                                "attributes": _attrs(**{"exception.stacktrace": java}),
                            }
                        ],
                    }
                ],
            }
        ]
    }
    backend = Backend(tmp_path)
    try:
        body = {"resourceSpans": [_spans("\x1b[31mshop", server, client)]}
        assert backend.post("/v1/traces", json.dumps(body).encode(), "application/json").status_code == 200
        assert backend.post("/v1/logs", json.dumps(logs).encode(), "application/json").status_code == 200
        backend.wait_trace(TRACE, 2)
        piped = _cli("trace", "esc-1", "--url", backend.url)
        raw = _raw_on_terminal(200, "trace", "esc-1", "--url", backend.url)
    finally:
        backend.stop()
    assert piped.returncode == 0, piped.stderr
    text = piped.stdout
    assert "\x1b" not in text and "\x9b" not in text and "\x07" not in text
    for shown in (
        "\\x1b[31mshop: GET /\\x1b]0;pwned\\x07  80.0 ms",
        "\\x1b[31mshop: GET → http://stock/\\x1b[2J\\x9b2J  20.0 ms",
        "event note\\x1b[5m  k\\x9b=v\\x1b[2J",
        "exception Boom\\x9b2J: bad\\x1b[2J\\nsecond line\n",
        "return a \\x1b[2J/ b\n",
        "ERROR app\\x1b[2J: stock\\x1b[2J failed\\nforged line\n",
    ):
        assert shown in text, (shown, text)
    # The Java trace: its last lines as they are (tabs shown), the last one once.
    assert text.count("at com.shop.Main.main(Main.java:3)") == 1, text
    assert "at com.shop.Stock.get(Stock.java:9)\n" in text
    # On a terminal (rich): its own colours, nothing of the sender's.
    assert b"\x1b]" not in raw and b"\x1b[2J" not in raw and b"\x1b[5m" not in raw and "\x9b".encode() not in raw
    plain = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode())
    assert "\\x1b[31mshop: GET /\\x1b]0;pwned\\x07" in plain and "\\x9b2J" in plain


def test_trace_shows_a_servers_error_reason_escaped(tmp_path: Path) -> None:
    """A 503's reason from the server (any server at --url) is printed with its control characters escaped."""
    body = json.dumps({"errors": [{"msg": "busy\x1b[2J\u009b2J"}]})
    with other_program(tmp_path, 503, body) as url:
        out = _cli("trace", "order-1", "--url", url)
    assert out.returncode == 3, out.stderr
    assert "\x1b" not in out.stderr and "\x9b" not in out.stderr
    assert f"{url} answered 503: busy\\x1b[2J\\x9b2J; retry" in out.stderr


# --- otel-corr demo ---------------------------------------------------------------------------------------


def _demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        demo = subprocess.Popen(
            [sys.executable, "-m", "otel_corr", "demo", "--port", str(free_port()), *args],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
        )
    return demo, out, err


def _until(demo: subprocess.Popen[bytes], out: Path, err: Path, text: str) -> str:
    deadline = time.monotonic() + 90
    while text not in out.read_text():
        assert demo.poll() is None and time.monotonic() < deadline, err.read_text() + out.read_text()
        time.sleep(0.3)
    return out.read_text()


def test_demo_shows_progress_a_summary_and_removes_its_directory(tmp_path: Path) -> None:
    """Progress on stderr while it starts; a summary a person reads; SIGTERM removes its temporary directory."""
    demo, out, err = _demo(tmp_path)
    try:
        text = _until(demo, out, err, "Store and service logs: ")
    finally:
        demo.terminate()
        code = demo.wait(30)
    assert code == 0, err.read_text()
    progress = err.read_text().splitlines()
    for step in ("starting otel-corr serve, waiting for it to listen on 127.0.0.1:", "starting the shop service"):
        assert any(line.startswith(f"otel-corr demo: {step}") for line in progress), progress
    assert re.search(r"^otel-corr demo:   the inventory service is up \(\d+\.\d s\)$", err.read_text(), re.M)
    assert "{" not in text  # no JSON for the person at the terminal
    rows = re.findall(r"^  (GET|POST) +(\S+) +(\d{3}) +[\d.]+ ms  request (\S+)$", text, re.M)
    assert [(m, p, s) for m, p, s, _ in rows] == [
        ("GET", "/checkout/1001", "200"),
        ("GET", "/checkout/1002", "200"),
        ("POST", "/orders/1003", "200"),
        ("GET", "/pay/1004", "500"),
    ]
    url = re.search(r"traced into (http://127.0.0.1:\d+)", text)
    assert url is not None
    failure = rows[3][3]
    assert f"{url[1]}/trace/{failure}" in text and f"  otel-corr trace {failure} --url {url[1]}\n" in text
    assert "Ctrl-C\n      stops the demo and removes its files" in text
    work = Path(text.split("Store and service logs: ")[1].split()[0])
    assert work.name.startswith("otel-corr-demo-") and not work.exists()


def test_demo_json_and_keep(tmp_path: Path) -> None:
    """--json: one JSON line on stdout; --keep: the store and the logs stay after SIGINT."""
    demo, out, err = _demo(tmp_path, "--json", "--keep")
    try:
        text = _until(demo, out, err, "\n")
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(30)
    assert code == 0, err.read_text()
    info = json.loads(text)
    work = Path(info["dir"])
    try:
        assert [c["status"] for c in info["calls"]] == [200, 200, 200, 500]
        assert info["requests"] == [c["request_id"] for c in info["calls"]]
        assert info["calls"][3]["page"] == f"{info['url']}/trace/{info['requests'][3]}"
        assert sorted(p.name for p in work.glob("*.log")) == ["inventory.log", "serve.log", "shop.log"]
        assert (work / "demo.db").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux's /proc)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited; only its parent's reaping is left (init's, once the demo is gone)


def test_demo_cleans_up_through_a_second_sigterm(tmp_path: Path) -> None:
    """Two SIGTERMs in quick succession (an impatient supervisor): the cleanup still finishes, status 0,
    the temporary directory removed and every service stopped."""
    demo, out, err = _demo(tmp_path)
    try:
        text = _until(demo, out, err, "Store and service logs: ")
        children = _children(demo.pid)
        assert len(children) == 3
    finally:
        demo.terminate()
        time.sleep(0.05)
        demo.terminate()
        code = demo.wait(30)
    assert code == 0, err.read_text()
    work = Path(text.split("Store and service logs: ")[1].split()[0])
    assert work.name.startswith("otel-corr-demo-") and not work.exists()
    deadline = time.monotonic() + 10
    while not all(map(_gone, children)):
        assert time.monotonic() < deadline, [c for c in children if not _gone(c)]
        time.sleep(0.1)


def test_demo_dir_stays_after_sigterm_and_names_only_what_is_there(tmp_path: Path) -> None:
    """--dir DIR with a file in it, beside an otel-corr serve already running: SIGTERM leaves DIR and the file;
    the summary says DIR has the service logs, not the store (that is the running serve's)."""
    backend = Backend(tmp_path)
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    try:
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            demo = subprocess.Popen(
                [sys.executable, "-m", "otel_corr", "demo", "--port", str(backend.port), "--dir", str(work)],
                stdout=stdout,
                stderr=stderr,
                cwd=ROOT,
            )
        try:
            text = _until(demo, out, err, "Service logs: ")
        finally:
            demo.terminate()
            code = demo.wait(30)
    finally:
        backend.stop()
    assert code == 0, err.read_text()
    assert f"Service logs: {work}\n" in text and "Store" not in text
    assert f"(the store is the running otel-corr serve's, at {backend.url})" in text
    assert (work / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in work.iterdir()) == ["inventory.log", "notes.txt", "shop.log"]


def test_demo_says_a_service_stopped_with_its_own_status(tmp_path: Path) -> None:
    """A service dies under the demo: status 5 (not 1, trace's "not found"), the logs kept and named."""
    demo, out, err = _demo(tmp_path)
    try:
        text = _until(demo, out, err, "Store and service logs: ")
        shop = _children(demo.pid)[-1]
        os.kill(shop, signal.SIGKILL)
        code = demo.wait(30)
    finally:
        if demo.poll() is None:
            demo.terminate()
            demo.wait(30)
    work = Path(text.split("Store and service logs: ")[1].split()[0])
    try:
        assert code == cli.EXIT_SERVICE_FAILED == 5, err.read_text()
        assert f"otel-corr demo: a service stopped; its log is in {work}" in err.read_text()
        assert (work / "shop.log").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_run_demo_restores_the_signal_handlers(tmp_path: Path) -> None:
    """run_demo called as a function leaves SIGINT/SIGTERM/SIGHUP as it found them (here: it refuses a port
    that is not an otel-corr serve, and returns)."""
    backend = Backend(tmp_path)
    script = (
        "import signal, sys\n"
        "from otel_corr._demo import run_demo\n"
        "sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)\n"
        "before = [signal.getsignal(s) for s in sigs]\n"
        f"code = run_demo({backend.http})\n"
        "print(code, [signal.getsignal(s) for s in sigs] == before)\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    finally:
        backend.stop()
    assert out.stdout == "2 True\n", out.stdout + out.stderr
