"""A live uvicorn server the test starts, sending its spans and log records to the plugin."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otel_corr.pytest_plugin import Endpoint

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(endpoint: Endpoint) -> Iterator[str]:
    """uvicorn serving apps:api with ``endpoint``'s environment, until the generator is closed."""
    port = _free_port()
    env = {**os.environ, **endpoint.env}
    argv = [sys.executable, "-m", "uvicorn", "apps:api", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
def server(otel_corr_endpoint: Endpoint) -> Iterator[str]:
    yield from serve(otel_corr_endpoint)


def test_live_server_fails(server: str) -> None:
    response = httpx.get(f"{server}/orders/0", headers={"X-Request-ID": "live-zero"})
    assert response.status_code == 200
