"""Two tests interleaving: the first leaves a thread making requests and logging while the second runs and fails.

The thread and the second test share one client (one portal thread, one event loop): only the test that
started the thread may own its spans and lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from apps import api
from fastapi.testclient import TestClient

log = logging.getLogger("background")
done = threading.Event()
ticks: list[int] = []
threads: list[threading.Thread] = []


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(api) as shared:
        yield shared
        done.set()
        for thread in threads:
            thread.join(30)


def _background(client: TestClient) -> None:
    n = 0
    while not done.is_set() and n < 2000:
        n += 1
        log.info("background tick %d", n)
        client.get(f"/orders/{n}", headers={"X-Request-ID": f"bg-{n}"})
        ticks.append(n)


def test_a_starts_a_background_thread(client: TestClient) -> None:
    threads.append(threading.Thread(target=_background, args=(client,), daemon=True))
    threads[-1].start()
    deadline = time.monotonic() + 30
    while len(ticks) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.get("/orders/1", headers={"X-Request-ID": "req-a"}).status_code == 200


def test_b_fails_while_the_thread_runs(client: TestClient) -> None:
    seen = len(ticks)
    log.info("test b starts")
    assert client.get("/orders/2", headers={"X-Request-ID": "req-b"}).status_code == 200
    deadline = time.monotonic() + 30
    while len(ticks) < seen + 5 and time.monotonic() < deadline:  # the thread kept going while b ran
        time.sleep(0.01)
    assert len(ticks) >= seen + 5
    assert client.get("/orders/0", headers={"X-Request-ID": "req-b-zero"}).status_code == 200
