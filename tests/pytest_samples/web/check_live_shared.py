"""One live server for the whole module, sending to the session's endpoint: each request goes to its test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from check_live import serve

from otel_corr.pytest_plugin import Endpoint


@pytest.fixture(scope="module")
def shared(otel_corr_session_endpoint: Endpoint) -> Iterator[str]:
    yield from serve(otel_corr_session_endpoint)


def test_first_passes(shared: str) -> None:
    assert httpx.get(f"{shared}/orders/1", headers={"X-Request-ID": "shared-one"}).status_code == 200


def test_second_fails(shared: str) -> None:
    response = httpx.get(f"{shared}/orders/0", headers={"X-Request-ID": "shared-two"})
    assert response.status_code == 200
