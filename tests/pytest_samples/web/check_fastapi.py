"""FastAPI through Starlette's TestClient: one test passes, one fails."""

from __future__ import annotations

import logging

from apps import api
from fastapi.testclient import TestClient

client = TestClient(api)


def test_order_passes() -> None:
    assert client.get("/orders/1", headers={"X-Request-ID": "req-pass"}).status_code == 200


def test_missing_order_fails() -> None:
    logging.getLogger("check").info("asking for order 0")
    assert client.get("/orders/7", headers={"X-Request-ID": "req-seven"}).status_code == 200
    response = client.get("/orders/0", headers={"X-Request-ID": "req-zero"})
    assert response.status_code == 200


def test_sync_endpoint_fails() -> None:
    response = client.get("/sync/5", headers={"X-Request-ID": "req-sync"})
    assert response.json() == {"order": 6}
