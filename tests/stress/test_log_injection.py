"""Log injection through a real uvicorn: hostile headers, paths and queries never reach the log file raw.

The corpus goes in as raw HTTP bytes on a socket (no client library cleans it
up): CR/LF, ANSI escape sequences, ``${jndi:...}``, NUL, U+2028/U+2029 and
values up to 64 KB, in X-Request-ID, traceparent, User-Agent, another header,
the path and the query.  What the server refuses outright (a raw NUL, a 64 KB
header) must still be answered; what it lets through reaches the app, which
logs it with its own ``%s`` call, raises with it in an exception message, and
has it in the access line.  Then the log file is read back byte by byte.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_corr.logging import JsonFormatter, TextFormatter

from ..conftest import server_env

BIG = "A" * 65536
#: A value under h11's 16 KB header limit, so it reaches the app and its log calls.
LARGE = "\x1b[31m" + "B" * 12000
CORPUS = [
    "a\r\nFORGED-CRLF 2026-01-01 00:00:00,000 INFO [deadbeef] admin: logged in",
    "a\nFORGED-LF",
    "a\rFORGED-CR",
    "\x1b[31mred\x1b[0m\x1b[2J",
    "\x1b]0;owned\x07",
    "${jndi:ldap://x/a}",
    "nul\x00byte",
    "sep\u2028FORGED-LS\u2029FORGED-PS",
    "c1\u009b31m\u0085FORGED-NEL",
    LARGE,
    BIG,
]
#: Bytes that must never be in the file: each raw control a payload carries.
FORBIDDEN_BYTES = [b"\x1b", b"\r", b"\x00", b"\x07", "\u2028".encode(), "\u2029".encode(), b"\xc2\x9b", b"\xc2\x85"]
SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
TEXT_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +\[")
MAX_LINE = 6 * 32 * 1024 + 65536  # 32 KiB of message, each character at worst a 6-character escape, plus fields


def _raw_request(port: int, target: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes]]:
    """Send one HTTP/1.1 request as raw bytes; the status and headers of the answer.

    0: no HTTP answer; -1: the connection was reset (the server closed it on a request
    head over its size limit before reading it all, so its 431/400 may be lost).
    """
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            if not data:
                return -1, {}
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head or not head[0].startswith(b"HTTP/1.1 "):
        return 0, {}
    out: dict[bytes, bytes] = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        out[name.strip().lower()] = value.strip()
    return int(head[0].split()[1]), out


def _header_value(payload: str) -> bytes:
    """The payload as header bytes: UTF-8, with CR/LF kept raw (the server splits or refuses the header)."""
    return payload.encode("utf-8")


def _requests(payload: str) -> Iterator[tuple[str, bytes, list[tuple[bytes, bytes]]]]:
    quoted = urllib.parse.quote(payload, safe="").encode()
    value = _header_value(payload)
    every = [(b"X-Request-ID", value), (b"traceparent", value), (b"User-Agent", value), (b"X-Evil", value)]
    yield "headers", b"/echo?q=" + quoted, every
    yield "boom", b"/boom", [(b"X-Evil", value), (b"X-Request-ID", value)]
    yield "path", b"/" + quoted + b"?" + quoted + b"=" + quoted, []  # uvicorn decodes the path: raw controls
    # Percent-encoded, the controls pass the HTTP parser and reach the app and its log calls.
    yield "encoded", b"/echo?q=" + quoted, [(b"X-Evil", quoted), (b"User-Agent", b"ua-" + quoted[:8000])]


def _run_corpus(port: int) -> dict[str, int]:
    statuses: dict[str, int] = {}
    for index, payload in enumerate(CORPUS):
        for kind, target, headers in _requests(payload):
            status, answer = _raw_request(port, target, headers)
            statuses[f"{index}-{kind}"] = status
            assert status != 0, (kind, payload[:40])
            # uvicorn (h11) refuses a request head over 16 KB and may reset the connection: only BIG does that.
            assert status != -1 or (payload == BIG and kind != "encoded"), (kind, payload[:40])
            if kind == "boom" and status == 500:
                pass  # the route raises on purpose: a 500 with the IDs
            else:
                assert status < 500, (kind, payload[:40], status)
            if 200 <= status < 600 and b"x-request-id" in answer:
                assert SAFE_ID.fullmatch(answer[b"x-request-id"].decode("latin-1")), answer
            if status == 200 or (kind == "boom" and status == 500):
                assert b"x-request-id" in answer and b"traceresponse" in answer
    return statuses


def _log_file(directory: Path) -> bytes:
    (path,) = directory.glob("app*.log")  # per process: app-<pid>.log
    return path.read_bytes()


def _common_checks(data: bytes) -> None:
    for forbidden in FORBIDDEN_BYTES:
        assert forbidden not in data, (forbidden, data[max(0, data.find(forbidden) - 200) : data.find(forbidden) + 50])
    text = data.decode("utf-8")
    assert BIG not in text and LARGE not in text
    assert "${jndi:" not in text
    assert max(len(line) for line in text.split("\n")) < MAX_LINE
    for line in text.split("\n"):
        assert not line.startswith("FORGED"), line[:200]


def _start(start_uvicorn: Any, tmp_path: Path, fmt: str) -> Any:
    env = server_env(
        None,
        OTEL_CORR_LOG_FORMAT=fmt,
        OTEL_CORR_LOG_FILE=str(tmp_path / "logs" / "app.log"),
        OTEL_CORR_ACCESS_LOG="true",
        OTEL_TRACES_EXPORTER="none",
        OTEL_SERVICE_NAME="injection",
    )
    return start_uvicorn(env, "tests.stress.injection_app:app")


def _wait_for(directory: Path, needle: bytes) -> bytes:
    deadline = time.monotonic() + 10
    data = b""
    while time.monotonic() < deadline:
        paths = list(directory.glob("app*.log"))
        data = paths[0].read_bytes() if paths else b""
        if needle in data:
            break
        time.sleep(0.1)
    return data


@pytest.mark.e2e
def test_json_log_file_has_one_escaped_record_per_line(start_uvicorn: Any, tmp_path: Path) -> None:
    """JSON: every line parses, nothing raw, the user's own %s call and the exception are escaped."""
    server = _start(start_uvicorn, tmp_path, "json")
    statuses = _run_corpus(server.port)
    server.sigterm()
    data = _log_file(tmp_path / "logs")
    _common_checks(data)
    records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line]
    # Python's splitlines() also splits on U+2028, \x85, \x1c...: it agrees with "\n" only if nothing is raw.
    assert len(records) == data.count(b"\n")
    user = [r for r in records if r["message"].startswith("user agent ")]
    errors = [r for r in records if r["logger"] == "otel_corr.error"]
    access = [r for r in records if r["logger"] == "otel_corr.access"]
    assert user and errors and access
    # The decoded JSON gives the user back exactly what was logged (escaping is lossless).
    assert any("\x1b[31mred" in r["message"] for r in user)
    assert any("${jndi:ldap://x/a}" in r["message"] for r in user)
    assert any("\x80" in (r.get("evil") or "") for r in records)  # a UTF-8 header, decoded as latin-1
    assert any("\u2028" in r["path"] for r in access)  # %E2%80%A8 in the path
    assert any("ValueError: cannot handle" in r["exception"] for r in errors)
    answered = sum(1 for s in statuses.values() if s)
    assert len(access) >= sum(1 for s in statuses.values() if s in (200, 404, 500)) and answered == len(statuses)


@pytest.mark.e2e
def test_text_log_file_has_no_raw_controls_and_no_forged_lines(start_uvicorn: Any, tmp_path: Path) -> None:
    """Text: no raw CR/ESC/NUL/U+2028; a line is a record or part of a traceback, never a forged record."""
    server = _start(start_uvicorn, tmp_path, "text")
    _run_corpus(server.port)
    server.sigterm()
    data = _log_file(tmp_path / "logs")
    _common_checks(data)
    text = data.decode("utf-8")
    assert "\\u001b[31mred" in text and "$\\{jndi:ldap://x/a}" in text and "\\r\\nFORGED-CRLF" in text
    in_traceback = False
    for line in text.splitlines():  # splitlines(): U+2028, \x85 and friends would show up as extra lines
        if TEXT_START.match(line):
            in_traceback = False
            continue
        if line == "Traceback (most recent call last):" or line.startswith(("The above exception", "During handling")):
            in_traceback = True
            continue
        assert in_traceback and (line.startswith(" ") or line == "" or re.match(r"[\w.]+(: |$)", line)), line[:200]
        assert "FORGED" not in line.split(":", 1)[0], line[:200]


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("app", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_text_traceback_cannot_forge_a_line() -> None:
    """An exception message with CR/LF/ESC, chained: escaped inside the traceback, which keeps its own lines."""
    try:
        try:
            raise RuntimeError("inner\x1b[2J")
        except RuntimeError as inner:
            raise ValueError("bad\r\nFORGED 2026-01-01 00:00:00,000 INFO    [deadbeef] admin: hi") from inner
    except ValueError as exc:
        record = _record("failed %s", "${jndi:ldap://x/a}", exc=exc)
    json_line = JsonFormatter().format(record)  # formats first: record.exc_text is now the raw traceback
    text = TextFormatter().format(record)
    assert "ValueError: bad\\r\\nFORGED 2026" in text and "\\u001b[2J" in text
    assert "failed $\\{jndi:ldap://x/a}" in text
    assert not any(line.startswith("FORGED") for line in text.split("\n"))
    assert "\x1b" not in text and "\r" not in text
    assert text.count("\n") >= 6  # the traceback is still on its own lines
    assert json.loads(json_line)["exception"] == record.exc_text and "$\\u007bjndi" in json_line


def test_json_huge_values_are_cut_and_stay_json() -> None:
    """A 64 KB message is cut in the middle; a string in an extra= dict is cut like any; a dict too big, a cut repr."""
    record = _record("v=%s", BIG + "END")
    record.payload = {"k": BIG}
    record.many = {str(i): BIG for i in range(16)}
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert BIG not in line and entry["message"].startswith("v=AAA") and entry["message"].endswith("AEND")
    assert "characters cut" in entry["message"] and len(line) < 64 * 1024
    assert entry["payload"] == {"k": BIG[:4096]}
    assert isinstance(entry["many"], str) and entry["many"].startswith("{'0': 'AAA") and len(entry["many"]) == 4096
