"""``otel-corr demo``: the backend, a shop and its inventory service, a few requests, and what to open."""

from __future__ import annotations

import json
import os
import shutil
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

from .cli import EXIT_OK, EXIT_SERVICE_FAILED, EXIT_USAGE, http_get, otel_corr_info
from .exceptions import ConfigError

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


def _echoed(method: str, url: str, request_id: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers={"X-Request-ID": request_id} if request_id else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), response.headers.get("X-Request-ID", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Request-ID", "")


class _Progress:
    """One line on stderr per step, with how long the previous one took: the start-up is never silent."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> float:
        print(f"otel-corr demo: {text}", file=sys.stderr, flush=True)
        return time.monotonic()

    def done(self, since: float, text: str) -> None:
        print(f"otel-corr demo:   {text} ({time.monotonic() - since:.1f} s)", file=sys.stderr, flush=True)


def run_demo(port: int = 16686, *, json_output: bool = False, workdir: str | None = None, keep: bool = False) -> int:
    """Start everything, send the requests, print the IDs and links, serve until Ctrl-C.

    Progress goes to stderr; the summary (or, with ``json_output``, one JSON line) to stdout.  The store
    and the services' logs go to ``workdir`` (kept), else to a temporary directory removed on exit unless
    ``keep`` (or something failed: its logs say why).
    """
    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(
            f"otel-corr demo needs the demo extra: in a clone of otel-corr, pip install -e '.[demo]' ({exc.name} is"
            " missing)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if workdir:
        work = Path(workdir).resolve()
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--dir", workdir, f"a directory that exists or can be created ({exc.strerror})") from None
        keep = True
    else:
        work = Path(tempfile.mkdtemp(prefix="otel-corr-demo-"))
    children: list[subprocess.Popen[bytes]] = []
    base = f"http://127.0.0.1:{port}"
    progress = _Progress()
    failed = True  # until the demo ends as it should (Ctrl-C, SIGTERM): then its directory goes
    reused = False  # a serve already running: the store is its own, not in ``work``
    # SIGHUP: the terminal closed.  Saved to be put back: run_demo may be called as a function.
    signals = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    saved = {sig: signal.getsignal(sig) for sig in signals}

    def ignore_signals() -> None:
        # A second Ctrl-C or SIGTERM (an impatient person or supervisor) must not cut the cleanup short:
        # the services would be left unreaped and the directory behind.
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)

    def stop(signum: int, frame: FrameType | None) -> None:
        ignore_signals()  # from the first signal on, not only once ``finally`` is reached
        raise KeyboardInterrupt

    for sig in signals:
        signal.signal(sig, stop)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

    def start(name: str, log: str, argv: list[str], ports: list[int], env: dict[str, str]) -> None:
        where = " and ".join(f"127.0.0.1:{p}" for p in ports)
        since = progress.step(f"starting {name}, waiting for it to listen on {where} ...")
        with open(work / f"{log}.log", "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        children.append(proc)
        for p in ports:
            _wait(p, proc, name)
        progress.done(since, f"{name} is up")

    try:
        # A server already on the port is asked where its OTLP/HTTP port is: guessing 4318 sent the
        # demo's spans to whatever listened there (another backend, or nothing).
        otlp_port, status = None, 0
        try:
            otlp_port, status = otel_corr_info(base, timeout=0.5)
        except OSError:
            pass
        if otlp_port is not None:
            reused = True
            otlp = f"http://127.0.0.1:{otlp_port}"
            print(f"using the otel-corr serve already running at {base} (OTLP at {otlp})", file=sys.stderr)
        elif status:
            print(
                f"otel-corr demo: {base} answers, but not as an otel-corr serve that says where its OTLP port is"
                " (an older version, or another program); pass --port with a free port",
                file=sys.stderr,
            )
            failed = False
            return EXIT_USAGE
        else:
            otlp_port, grpc_port = _free(4318), _free(4317)
            otlp = f"http://127.0.0.1:{otlp_port}"
            argv = [sys.executable, "-m", "otel_corr", "serve", "--port", str(port)]
            argv += ["--otlp-http-port", str(otlp_port), "--otlp-grpc-port", str(grpc_port)]
            start("otel-corr serve", "serve", [*argv, "--db", str(work / "demo.db")], [port, otlp_port], env)
        app_env = {
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
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
            argv = [sys.executable, "-m", "uvicorn", f"otel_corr._demo_shop:{name}", "--host", "127.0.0.1"]
            argv += ["--port", str(ports[name]), "--log-level", "warning"]
            start(f"the {name} service", name, argv, [ports[name]], service_env)
        shop = f"http://127.0.0.1:{ports['shop']}"
        calls = [
            ("GET", "/checkout/1001", str(uuid.uuid4()), "a UUID request ID: it is the trace ID too"),
            ("GET", "/checkout/1002", None, "no request ID: the trace ID is echoed as the request ID"),
            ("POST", "/orders/1003", "order-1003.web", "a background task after the response"),
            ("GET", "/pay/1004", str(uuid.uuid4()), "a failure: 500, error line and traceback"),
        ]
        since = progress.step(f"sending {len(calls)} requests to the shop ...")
        done = []
        for method, path, request_id, why in calls:
            sent = time.monotonic()
            status_code, echoed = _echoed(method, shop + path, request_id)
            done.append((method, path, status_code, (time.monotonic() - sent) * 1000, echoed, why))
        progress.done(since, "answered")
        since = progress.step("waiting for their traces to reach the store ...")
        for *_, echoed, _ in done:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and http_get(f"{base}/api/ui/trace/{echoed}", 2.0)[0] != 200:
                time.sleep(0.2)
        progress.done(since, "stored")
        failed = False
        if json_output:
            requests = [
                {
                    "method": m,
                    "path": p,
                    "status": c,
                    "duration_ms": round(d, 1),
                    "request_id": r,
                    "page": f"{base}/trace/{r}",
                }
                for m, p, c, d, r, _ in done
            ]
            summary = {
                "requests": [r["request_id"] for r in requests],
                "url": base,
                "calls": requests,
                "dir": str(work),
            }
            print(json.dumps(summary), flush=True)
        else:
            _summary(done, shop, base, work, keep, reused)
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        failed = True
        print(f"otel-corr demo: a service stopped; its log is in {work}", file=sys.stderr)
        return EXIT_SERVICE_FAILED
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: how the demo is meant to end
        failed = False
        return EXIT_OK
    except OSError as exc:  # a service that did not start (``_wait``): its log says why
        print(f"otel-corr demo: {exc}; its log is in {work}", file=sys.stderr)
        return EXIT_SERVICE_FAILED
    finally:
        ignore_signals()
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        if failed and not keep:
            print(f"otel-corr demo: the logs are kept in {work}", file=sys.stderr)
        elif not keep:
            shutil.rmtree(work, ignore_errors=True)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _summary(
    done: list[tuple[str, str, int, float, str, str]], shop: str, base: str, work: Path, keep: bool, reused: bool
) -> None:
    """What the person at the terminal reads: each request, then what to try next."""
    print(f"\notel-corr demo: a shop ({shop}) calling an inventory service, traced into {base}\n")
    for method, path, status_code, duration_ms, echoed, why in done:
        print(f"  {method:<4} {path:<15} {status_code}  {duration_ms:6.1f} ms  request {echoed}")
        print(f"       {why}")
        print(f"       {base}/trace/{echoed}\n")
    url = "" if base == "http://127.0.0.1:16686" else f" --url {base}"
    failure = next((d[4] for d in done if d[2] >= 500), done[0][4])
    print("Next:")
    print(f"  otel-corr trace {failure}{url}")
    print("      that request in this terminal: spans, log lines, the error and its traceback")
    print(f"  {base}/")
    print("      every request on the page (search by request ID, open a trace)")
    print("  Ctrl-C")
    print("      stops the demo" + ("" if keep else " and removes its files"))
    # Only what is in ``work``: with a serve already running, the store is that serve's.
    what = "Service logs" if reused else "Store and service logs"
    print(f"\n{what}: {work}" + ("" if keep else " (--keep keeps them)"), flush=True)
    if reused:
        print(f"(the store is the running otel-corr serve's, at {base})", flush=True)
