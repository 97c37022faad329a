"""``GET /api/otel-corr/info`` and ``otel-corr demo`` using the server it finds, not a guessed port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT
from .test_server import Backend

pytestmark = pytest.mark.e2e


def test_info_names_the_otlp_ports(tmp_path: Path) -> None:
    """The query port says where OTLP/HTTP and OTLP/gRPC listen, and which version answers."""
    from otel_corr import __version__

    backend = Backend(tmp_path)
    try:
        info = backend.get("/api/otel-corr/info").json()
        assert info == {"version": __version__, "otlp_http": backend.http, "otlp_grpc": backend.grpc}
    finally:
        backend.stop()


def test_demo_sends_to_the_otlp_port_of_the_server_it_finds(tmp_path: Path) -> None:
    """A server already on --port with OTLP on another port than 4318: the demo's spans reach it."""
    backend = Backend(tmp_path)
    out = tmp_path / "demo.out"
    with open(out, "w") as handle:
        demo = subprocess.Popen(
            [sys.executable, "-m", "otel_corr", "demo", "--port", str(backend.port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 90
            while backend.get("/api/services").json()["data"] != ["inventory", "shop"]:
                assert demo.poll() is None, out.read_text()
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.3)
            assert f"OTLP at http://127.0.0.1:{backend.http}" in out.read_text()
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(30)
            backend.stop()


def test_demo_refuses_a_port_held_by_something_else(tmp_path: Path) -> None:
    """Something that is not an otel-corr serve on --port: one line and exit 2, nothing sent anywhere."""
    backend = Backend(tmp_path)
    try:
        # The OTLP port answers HTTP, but 404 to the info path: like another program, or an older serve.
        assert httpx.get(f"{backend.otlp}/api/otel-corr/info").status_code == 404
        out = subprocess.run(
            [sys.executable, "-m", "otel_corr", "demo", "--port", str(backend.http)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert out.returncode == 2 and "not as an otel-corr serve" in out.stderr, out.stdout + out.stderr
        assert json.loads(backend.get("/api/services").text)["data"] == []
    finally:
        backend.stop()
