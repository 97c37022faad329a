"""Flask through its own test client."""

from __future__ import annotations

from apps import web


def test_missing_page_fails() -> None:
    client = web.test_client()
    assert client.get("/pages/3", headers={"X-Request-ID": "flask-three"}).status_code == 200
    assert client.get("/pages/0", headers={"X-Request-ID": "flask-zero"}).status_code == 200
