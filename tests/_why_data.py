"""What ``otel-corr why`` and the page's Why panel are tested against: the demo's shop and inventory
(``otel_corr._demo_shop``) under real uvicorn, exporting over OTLP to a real ``otel-corr serve``, plus the
search tests' posted traces (``_search_data.seed``: a failed payment, a span name and a log line with
terminal escapes in them)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ._search_data import seed
from .collector import free_port
from .conftest import Server, server_env
from .test_server import Backend

CHECKOUT_RID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"  # a UUID request ID: the trace ID too
CHECKOUT = CHECKOUT_RID.replace("-", "")
PAY_RID = "pay-1004.web"


@dataclass
class Demo:
    """The backend, the two services, and the trace ID of each request sent."""

    backend: Backend
    services: list[Server]
    checkout: str  # GET /checkout/1001: the shop calls the inventory
    pay: str  # GET /pay/1004: 500, RuntimeError
    seeded: dict[str, int]

    def trace(self, ident: str) -> dict[str, Any]:
        r = self.backend.get(f"/api/ui/trace/{ident}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def wait_complete(self, ident: str, spans: int, logs: int) -> None:
        """Poll until the trace has ``spans`` spans and ``logs`` log lines (batches arrive every 100 ms)."""
        deadline = time.monotonic() + 20
        while True:
            r = self.backend.get(f"/api/ui/trace/{ident}")
            if r.status_code == 200 and len(r.json()["spans"]) >= spans and len(r.json()["logs"]) >= logs:
                return
            assert time.monotonic() < deadline, (ident, r.status_code, r.text[:500])
            time.sleep(0.1)


def _get(url: str, request_id: str, status: int) -> str:
    r = httpx.get(url, headers={"X-Request-ID": request_id}, timeout=10)
    assert r.status_code == status, r.text
    return r.headers["traceresponse"].split("-")[1]


@contextmanager
def demo(tmp: Path) -> Iterator[Demo]:
    """Start the backend (seeded), the inventory and the shop; send a checkout and a failed payment; wait for
    their spans and log lines; stop everything on exit."""
    backend = Backend(tmp, None, "--retention", "0")
    services: list[Server] = []
    try:
        seeded = seed(backend)
        ports = {"inventory": free_port(), "shop": free_port()}
        for name, port in ports.items():
            env = server_env(
                None,
                OTEL_EXPORTER_OTLP_ENDPOINT=backend.otlp,
                OTEL_SERVICE_NAME=name,
                OTEL_BLRP_SCHEDULE_DELAY="100",
                DEMO_INVENTORY_URL=f"http://127.0.0.1:{ports['inventory']}",
            )
            argv = [sys.executable, "-m", "uvicorn", f"otel_corr._demo_shop:{name}", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--log-level", "warning"]
            services.append(Server(argv, env, tmp / f"{name}.log", port))
        shop = services[1].url
        found = Demo(
            backend,
            services,
            checkout=_get(f"{shop}/checkout/1001", CHECKOUT_RID, 200),
            pay=_get(f"{shop}/pay/1004", PAY_RID, 500),
            seeded=seeded,
        )
        found.wait_complete(found.checkout, spans=3, logs=6)
        found.wait_complete(found.pay, spans=1, logs=3)
        yield found
    finally:
        for service in services:
            service.stop()
        backend.stop()
