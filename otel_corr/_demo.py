"""``otel-corr demo``: the backend, a shop and its inventory service, a few requests, and what to open."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import FrameType

__all__ = ["run_demo"]


def _free(port: int) -> int:
    """``port`` if nobody listens on it (0: any), else any free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return int(sock.getsockname()[1])
        except OSError:
            pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OSError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise OSError(f"{what} is not listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _echoed(method: str, url: str, request_id: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers={"X-Request-ID": request_id} if request_id else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), response.headers.get("X-Request-ID", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Request-ID", "")


def _info_port(body: bytes) -> int | None:
    """The OTLP/HTTP port in an ``/api/otel-corr/info`` answer, or None if it is not one."""
    try:
        port = json.loads(body).get("otlp_http")
    except (ValueError, AttributeError):
        return None
    return port if isinstance(port, int) and 0 < port < 65536 else None


def run_demo(port: int = 16686) -> int:
    """Start everything, send the requests, print the IDs and links, serve until Ctrl-C."""
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"otel-corr demo needs: pip install 'otel-corr[demo]' ({exc.name} is missing)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="otel-corr-demo-"))
    children: list[subprocess.Popen[bytes]] = []
    base = f"http://127.0.0.1:{port}"

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    try:
        # A server already on the port is asked where its OTLP/HTTP port is: guessing 4318 sent the
        # demo's spans to whatever listened there (another backend, or nothing).
        status, body = (0, b"")
        try:
            status, body = _get(f"{base}/api/otel-corr/info", timeout=0.5)
        except OSError:
            pass
        otlp_port = _info_port(body) if status == 200 else None
        if otlp_port is not None:
            otlp = f"http://127.0.0.1:{otlp_port}"
            print(f"using the otel-corr serve already running at {base} (OTLP at {otlp})")
        elif status:
            print(
                f"otel-corr demo: {base} answers, but not as an otel-corr serve that says where its OTLP port is"
                " (an older version, or another program); pass --port with a free port",
                file=sys.stderr,
            )
            return 2
        else:
            otlp_port, grpc_port = _free(4318), _free(4317)
            otlp = f"http://127.0.0.1:{otlp_port}"
            out = open(workdir / "serve.log", "wb")
            backend = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "otel_corr",
                    "serve",
                    "--port",
                    str(port),
                    "--otlp-http-port",
                    str(otlp_port),
                    "--otlp-grpc-port",
                    str(grpc_port),
                    "--db",
                    str(workdir / "demo.db"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            children.append(backend)
            _wait(port, backend, "otel-corr serve")
            _wait(otlp_port, backend, "otel-corr serve (OTLP)")
        app_env = {
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
        }
        ports = {}
        for name in ("inventory", "shop"):
            ports[name] = _free(0)
            service_env = {
                **app_env,
                "OTEL_SERVICE_NAME": name,
                "DEMO_INVENTORY_URL": f"http://127.0.0.1:{ports.get('inventory', 0)}",
            }
            out = open(workdir / f"{name}.log", "wb")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    f"otel_corr._demo_shop:{name}",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports[name]),
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=service_env,
            )
            children.append(proc)
            _wait(ports[name], proc, f"the {name} service")
        shop = f"http://127.0.0.1:{ports['shop']}"
        calls = [
            ("GET", "/checkout/1001", str(uuid.uuid4()), "a UUID request ID: it is the trace ID too"),
            ("GET", "/checkout/1002", None, "no request ID: the trace ID is echoed as the request ID"),
            ("POST", "/orders/1003", "order-1003.web", "a background task after the response"),
            ("GET", "/pay/1004", str(uuid.uuid4()), "a failure: 500, error line and traceback"),
        ]
        print(f"\notel-corr demo: a shop ({shop}) calling an inventory service, traced into {base}\n")
        done = []
        for method, path, request_id, why in calls:
            status_code, echoed = _echoed(method, shop + path, request_id)
            done.append((method, path, status_code, echoed, why))
        for _, _, _, echoed, _ in done:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _get(f"{base}/api/ui/trace/{echoed}")[0] != 200:
                time.sleep(0.2)
        for method, path, status_code, echoed, why in done:
            print(f"  {method:<4} {path:<16} {status_code}  request {echoed}")
            print(f"       {why}")
            print(f"       {base}/trace/{echoed}\n")
        print(f"Open {base}/ for every request; `otel-corr trace <request ID>` prints one in the terminal.")
        print(f"Service logs: {workdir}.  Serving until Ctrl-C.", flush=True)
        print(json.dumps({"requests": [d[3] for d in done], "url": base}), flush=True)
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
