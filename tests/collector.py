"""A real OTLP collector process for the tests: rotel (PyPI), printing what it receives.

``Collector`` starts ``rotel-agent`` on free loopback ports with the blackhole
exporter and ``--debug-log traces``, and parses its debug dump into
:class:`ReceivedSpan` records.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import rotel

AGENT = Path(rotel.__file__).parent / "rotel-agent"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ATTR = re.compile(r"^\s*-> ([^:]+): (\w+)\((.*)\)\s*$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ReceivedSpan:
    trace_id: str = ""
    parent_id: str = ""
    span_id: str = ""
    name: str = ""
    kind: str = ""
    status: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


@dataclass
class ReceivedLog:
    body: str = ""
    severity: str = ""
    trace_id: str = ""
    span_id: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)


def parse_logs(text: str) -> list[ReceivedLog]:
    logs: list[ReceivedLog] = []
    resource: dict[str, str] = {}
    current: ReceivedLog | None = None
    in_resource = False
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        if line.startswith(("ResourceLog #", "ResourceSpans #")):
            resource, current, in_resource = {}, None, line.startswith("ResourceLog")
        elif line.startswith("LogRecord #") and in_resource:
            current = ReceivedLog(resource=resource)
            logs.append(current)
        elif (m := _ATTR.match(line)) is not None and in_resource:
            (resource if current is None else current.attributes)[m.group(1).strip()] = m.group(3)
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            key, value = key.strip(), value.strip()
            if key == "Body":
                current.body = value[4:-1] if value.startswith("Str(") else value
            elif key == "SeverityText":
                current.severity = value
            elif key == "Trace ID":
                current.trace_id = value
            elif key == "Span ID":
                current.span_id = value
    return logs


def parse_dump(text: str) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    resource: dict[str, str] = {}
    current: ReceivedSpan | None = None
    section = ""
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        if line.startswith("ResourceSpans #"):
            resource, current, section = {}, None, "resource"
        elif line.startswith("ResourceLog #"):
            resource, current, section = {}, None, "ignored"
        elif line.startswith("Span #"):
            current = ReceivedSpan(resource=resource)
            spans.append(current)
            section = "span"
        elif line.startswith("Attributes:"):
            section = "attributes"
        elif line.startswith("Events:"):
            section = "events"
        elif line.startswith(("ScopeSpans", "InstrumentationScope", "Links:")):
            section = "scope" if current is None else "other"
        elif (m := _ATTR.match(line)) is not None:
            key, value = m.group(1).strip(), m.group(3)
            if section == "resource":
                resource[key] = value
            elif section == "attributes" and current is not None:
                current.attributes[key] = value
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            key, value = key.strip(), value.strip()
            if key.startswith("SpanEvent") or key == "-> Name" or (section == "events" and key == "Name"):
                current.events.append(value)
            elif key in ("Start time", "End time"):
                current.attributes["_start" if key == "Start time" else "_end"] = value
            elif section == "span":
                attr = {
                    "Trace ID": "trace_id",
                    "Parent ID": "parent_id",
                    "ID": "span_id",
                    "Name": "name",
                    "Kind": "kind",
                    "Status code": "status",
                }.get(key)
                if attr:
                    setattr(current, attr, value)
    return spans


class Collector:
    """A running rotel collector; ``http_endpoint``/``grpc_endpoint`` are where to send OTLP."""

    def __init__(self, workdir: Path) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = workdir / f"rotel-{self.http_port}.out"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(
            [
                str(AGENT),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1"},
        )
        wait_for_port(self.http_port, self.proc)
        wait_for_port(self.grpc_port, self.proc)

    def spans(self) -> list[ReceivedSpan]:
        return parse_dump(self.log.read_text(errors="replace"))

    def logs(self) -> list[ReceivedLog]:
        return parse_logs(self.log.read_text(errors="replace"))

    def wait_for_logs(self, predicate: Callable[[ReceivedLog], bool], timeout: float = 15.0) -> list[ReceivedLog]:
        deadline = time.monotonic() + timeout
        while True:
            found = [entry for entry in self.logs() if predicate(entry)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def wait_for_spans(self, count: int, timeout: float = 15.0, **match: str) -> list[ReceivedSpan]:
        """Wait until ``count`` spans matching ``match`` (field=value) arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.spans() if all(getattr(s, k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._out.close()


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
