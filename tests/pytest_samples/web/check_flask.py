"""Flask through its own test client."""

from __future__ import annotations

from apps import web


def test_missing_page_fails() -> None:
    client = web.test_client()
    # Closed (the with block): its span ends, with its route and status.
    with client.get("/pages/3", headers={"X-Request-ID": "flask-three"}) as response:
        assert response.status_code == 200
    # Never closed, as the test client leaves it: its span is still open when the test fails.
    assert client.get("/pages/0", headers={"X-Request-ID": "flask-zero"}).status_code == 200
