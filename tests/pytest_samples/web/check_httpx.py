"""httpx's own transports: ASGITransport (async) for the FastAPI app, WSGITransport for the Flask app."""

from __future__ import annotations

import httpx
from apps import api, web


async def test_asgi_transport_fails() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://shop") as client:
        response = await client.get("/orders/0", headers={"X-Request-ID": "asgi-zero"})
    assert response.status_code == 200


def test_wsgi_transport_fails() -> None:
    with httpx.Client(transport=httpx.WSGITransport(app=web), base_url="http://shop") as client:
        response = client.get("/pages/0", headers={"X-Request-ID": "wsgi-zero"})
    assert response.status_code == 200
