"""What a user reads when the collector goes away and comes back: the stderr of a real process.

The process instruments an app and keeps ending spans while a real ``otel-corr serve`` is down, then
up again; nothing else is configured (or, in one case, ``configure_logging()``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_corr._export import collector

from .stress._load import Serve

ROOT = Path(__file__).resolve().parent.parent
PROCESS = """
import os, sys, time
import otel_corr
{setup}
async def app(scope, receive, send):
    pass
otel_corr.instrument(app)
from opentelemetry import trace
tracer = trace.get_tracer("probe")
deadline = time.monotonic() + 90
while time.monotonic() < deadline and not os.path.exists(sys.argv[1]):
    tracer.start_span("tick").end()
    time.sleep(0.05)
otel_corr.flush(5)
"""


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"no {text!r} in: {path.read_text(errors='replace')}"
        time.sleep(0.1)


def _outage_and_recovery(tmp_path: Path, setup: str) -> list[str]:
    """Run the process with serve down, start serve, stop the process: its stderr lines."""
    serve = Serve(tmp_path)
    serve.kill()  # down before the process starts: its first exports are refused
    stderr, stop = tmp_path / "stderr.txt", tmp_path / "stop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        OTEL_EXPORTER_OTLP_ENDPOINT=serve.http_endpoint,
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_BLRP_SCHEDULE_DELAY="100",
    )
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROCESS.format(setup=setup), str(stop)], env=env, stderr=err, cwd=ROOT
        )
    try:
        _wait_for(stderr, "unreachable", proc)
        serve.start()
        _wait_for(stderr, "resumed", proc)
        stop.touch()
        assert proc.wait(30) == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        serve.stop()
    return stderr.read_text().splitlines()


@pytest.mark.e2e
def test_no_logging_set_up_sees_the_outage_with_what_to_do_and_the_recovery(tmp_path: Path) -> None:
    """No logging configured: one warning naming otel-corr once, the local collector's address, the command
    that starts the local backend and the variable that points elsewhere; then the recovery line (a WARNING,
    so Python prints it too)."""
    lines = _outage_and_recovery(tmp_path, "")
    down = [line for line in lines if "unreachable" in line]
    up = [line for line in lines if "resumed" in line]
    assert len(down) == 1 and len(up) == 1, lines
    endpoint = down[0].split("collector at ", 1)[1].split(" ", 1)[0]
    assert down[0].startswith(f"otel-corr: collector at {endpoint} unreachable; "), down[0]
    assert endpoint.startswith("http://127.0.0.1:")
    assert "start the local backend: `otel-corr serve`" in down[0]
    assert "set OTEL_EXPORTER_OTLP_ENDPOINT to its URL" in down[0]
    assert up[0].startswith(f"otel-corr: export to collector at {endpoint} resumed; "), up[0]
    assert " spans" in up[0] and "dropped during the outage" in up[0]
    assert not [line for line in lines if "otel_corr: otel-corr" in line or "otel-corr: otel-corr" in line]


@pytest.mark.e2e
def test_configure_logging_names_the_logger_once(tmp_path: Path) -> None:
    """With configure_logging() the format names the logger (otel_corr): the message does not name it again."""
    lines = _outage_and_recovery(tmp_path, "otel_corr.configure_logging()")
    down = [line for line in lines if "unreachable" in line]
    up = [line for line in lines if "resumed" in line]
    assert len(down) == 1 and len(up) == 1, lines
    assert " WARNING " in down[0] and " otel_corr: collector at http://127.0.0.1:" in down[0], down[0]
    assert " WARNING " in up[0] and " otel_corr: export to collector at " in up[0], up[0]
    assert not [line for line in lines if "otel-corr: collector" in line or "otel-corr: export" in line]


@pytest.mark.parametrize(
    ("endpoint", "target", "hinted"),
    [
        ("http://localhost:4318/v1/traces", "collector at http://localhost:4318", True),
        ("http://127.0.0.1:4317", "collector at http://127.0.0.1:4317", True),
        ("http://[::1]:4318/v1/logs", "collector at http://[::1]:4318", True),
        ("https://otel.example.com/v1/traces", "collector at https://otel.example.com", False),
        ("http://user:s3cret@collector.internal:4318/v1/traces", "collector at http://collector.internal:4318", False),
    ],
)
def test_how_a_collector_is_named(endpoint: str, target: str, hinted: bool) -> None:
    """Scheme, host and port (spans and logs share one outage line; a password in the URL is never written);
    the local backend suggested only for a collector on this machine."""
    named, hint = collector(endpoint)
    assert named == target
    assert ("`otel-corr serve`" in hint) is hinted


def test_counts_are_singular_or_plural() -> None:
    """One lost item reads "1 log record", not "1 log records"; zero and more stay plural."""
    from otel_corr._export import _Outage

    outage = _Outage("collector at http://127.0.0.1:9", "")
    outage.add("spans", "Span")
    outage.add("log records", "Log")
    outage.failed.update({"spans": 1, "log records": 1})
    assert outage._lost(outage.failed) == "1 span, 1 log record"
    outage.failed.update({"spans": 2, "log records": 0})
    assert outage._lost(outage.failed) == "2 spans"
    outage.failed.update({"spans": 0})
    assert outage._lost(outage.failed) == "0 spans"
