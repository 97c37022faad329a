"""A checkout service (FastAPI, service ``checkout``) for the ``why`` corpus (issue 19), run under real uvicorn.

Every endpoint does ordinary work (a few queries, a call to the ``stock`` service at ``WHY_DOWNSTREAM_URL``,
log lines); a query parameter injects one cause at a place the harness (``tests/_why_corpus.py``) chooses:

- ``GET /orders/{id}``: ``stock_ms`` makes the stock lookup slow (``slow_in``: its handler or its query);
  ``pause_ms`` sleeps in untraced code at position ``pause_at`` (0-3) between two log lines.
- ``GET /carts/{id}``: ``items=30`` loads the cart's items one query each (N+1), in the service layer or in
  the handler (``loop_in``), with a price query after each (``pairs``), or asks the stock service about each
  (``http``).
- ``POST /payments/{id}``: ``exc`` fails deep (``depth`` 2 or 3 spans down, or ``remote`` in the stock
  service) and the service layer re-raises it as ``PaymentDeclined`` (answered as ``HTTPException(answer)``
  when ``answer`` is set; with ``cache``, a failed cache read is handled inside the failing step first);
  ``fail=2`` makes the rates feed fail twice (with ``hang_ms`` and ``timeout_ms``: time
  out twice), retried after ``backoff_ms`` (in the handler or in an ``fx.quote`` step, ``retry_in``).
- ``POST /orders/{id}/confirm``: ``receipt_ms`` makes the background receipt slow (rendered here, or sent
  through the stock service's mail relay with ``via_mail``); ``archive_ms`` makes it a slow sync task instead.
- ``POST /inventory/{sku}/reserve``: ``contended_ms`` has a cache refresher hold the inventory lock, and the
  reservation (in a thread pool) waits for it (``waiter``: in a span with a query, in a leaf span, or with
  no span of its own); ``deadlocks=2`` makes its UPDATE fail twice, retried after ``backoff_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, HTTPException

import otel_corr

from .why_common import (
    aquery,
    cached_risk,
    hold,
    locked_write,
    pause_lines,
    query,
    raise_deep,
    service_span,
)

otel_corr.configure_logging()
app = FastAPI()
log = logging.getLogger("checkout")
stock = httpx.AsyncClient(base_url=os.environ.get("WHY_DOWNSTREAM_URL", "http://127.0.0.1:1"), timeout=10)
pool = ThreadPoolExecutor(4, thread_name_prefix="inventory")
inventory_lock = threading.Lock()


class PaymentDeclined(RuntimeError):
    """The payment could not be authorized."""


async def _render(ms: int) -> None:
    """A step nobody traced (a template engine, a vendor SDK)."""
    await asyncio.sleep(ms / 1000)


@app.get("/orders/{order_id}")
async def order(
    order_id: int, stock_ms: int = 0, slow_in: str = "handler", pause_ms: int = 0, pause_at: int = -1
) -> dict[str, Any]:
    async def pause(at: int) -> None:
        if at == pause_at:
            before, after = pause_lines(at, order_id)
            log.info(before)
            await _render(pause_ms)
            log.info(after)

    log.info("order %s: loading", order_id)
    await pause(0)
    await aquery("SELECT orders", 6)
    await pause(1)
    level = await stock.get(f"/stock/sku-{order_id % 7}", params={"ms": stock_ms, "slow_in": slow_in})
    await pause(2)
    with service_span("pricing.quote"):
        await aquery("SELECT prices", 3)
    await pause(3)
    log.info("order %s: priced", order_id)
    return {"order_id": order_id, "available": level.json()["available"]}


@app.get("/carts/{cart_id}")
async def cart(cart_id: int, items: int = 0, item_ms: float = 2, loop_in: str = "service") -> dict[str, Any]:
    count = items or 2 + cart_id % 3
    log.info("cart %s: %d items", cart_id, count)
    if loop_in == "handler_first":
        for _ in range(count):
            await aquery("SELECT item", item_ms)
    with service_span("cart.load"):
        await aquery("SELECT carts", 4)
        if loop_in == "service":
            for _ in range(count):
                await aquery("SELECT item", item_ms)
        elif loop_in == "pairs":  # two queries an item: its row, then its price
            for _ in range(count):
                await aquery("SELECT item", item_ms)
                await aquery("SELECT price", item_ms / 2)
    if loop_in == "http":  # each item's stock level from the stock service, one call each
        for item in range(count):
            await stock.get(f"/stock/sku-{item}")
    await aquery("SELECT promotions", 5)
    if loop_in == "handler_last":
        for _ in range(count):
            await aquery("SELECT item", item_ms)
    log.info("cart %s loaded", cart_id)
    return {"cart_id": cart_id, "items": count}


async def _rates(order_id: int, fail: int, backoff_ms: int, hang_ms: int, timeout_ms: int) -> float:
    key = f"eur-{order_id}-{uuid.uuid4().hex[:8]}"
    params, timeout = {"fail": fail, "hang_ms": hang_ms}, timeout_ms / 1000 if timeout_ms else 10
    for attempt in range(1, 5):
        try:
            answer = await stock.get(f"/rates/{key}", params=params, timeout=timeout)
        except httpx.TimeoutException:
            log.warning("rates feed timed out (attempt %d), retrying", attempt)
        else:
            if answer.status_code < 500:
                return float(answer.json()["rate"])
            log.warning("rates feed answered %d (attempt %d), retrying", answer.status_code, attempt)
        await asyncio.sleep(backoff_ms * attempt / 1000)
    raise PaymentDeclined("no exchange rate")


async def _authorize(order_id: int, exc: str, depth: int, remote: bool, cache: bool) -> None:
    with service_span("payment.authorize"):
        await aquery("SELECT account", 3)
        try:
            if remote:
                card = await stock.get(f"/cards/c-{order_id}", params={"exc": exc})
                card.raise_for_status()
            else:
                with service_span("fraud.check"):
                    if cache and cached_risk(f"order-{order_id}") is None:
                        log.warning("risk cache unavailable for order %s, recomputing", order_id)
                    await aquery("SELECT card_risk", 2)
                    if exc and depth == 2:
                        raise_deep(exc, "risk_band")
                    if exc:
                        with service_span("risk.score"):
                            raise_deep(exc, "risk_band")
        except Exception as error:
            raise PaymentDeclined(f"order {order_id}: authorization failed") from error


@app.post("/payments/{order_id}")
async def pay(
    order_id: int,
    exc: str = "",
    depth: int = 2,
    remote: bool = False,
    answer: int = 0,
    cache: bool = False,
    fail: int = 0,
    backoff_ms: int = 50,
    hang_ms: int = 0,
    timeout_ms: int = 0,
    retry_in: str = "handler",
) -> dict[str, Any]:
    log.info("payment for order %s", order_id)
    try:
        await _authorize(order_id, exc, depth, remote, cache)
    except PaymentDeclined as declined:
        if not answer:
            raise
        # The provider's failure answered as a gateway error rather than left unhandled.
        raise HTTPException(status_code=answer, detail=str(declined)) from declined
    if retry_in == "service":
        with service_span("fx.quote"):
            rate = await _rates(order_id, fail, backoff_ms, hang_ms, timeout_ms)
    else:
        rate = await _rates(order_id, fail, backoff_ms, hang_ms, timeout_ms)
    log.info("order %s paid at %.2f", order_id, rate)
    return {"order_id": order_id, "rate": rate}


async def send_receipt(order_id: int, ms: int, via_mail: bool) -> None:
    await aquery("INSERT receipts", 2)
    if via_mail:
        await stock.post("/mail", params={"ms": ms})
    else:
        await _render(ms)
    log.info("receipt for order %s sent", order_id)


def archive_order(order_id: int, ms: int) -> None:
    query("INSERT archive", 2)
    time.sleep(ms / 1000)  # compressing the order's documents, untraced
    log.info("order %s archived", order_id)


@app.post("/orders/{order_id}/confirm")
async def confirm(
    order_id: int, tasks: BackgroundTasks, receipt_ms: int = 2, via_mail: bool = False, archive_ms: int = 0
) -> dict[str, Any]:
    log.info("confirming order %s", order_id)
    await aquery("UPDATE orders", 4)
    if archive_ms:  # a sync task: Starlette runs it in its thread pool
        tasks.add_task(archive_order, order_id, archive_ms)
    else:
        tasks.add_task(send_receipt, order_id, receipt_ms, via_mail)
    return {"order_id": order_id, "confirmed": True}


def _reserve(sku: str, waiter: str, deadlocks: int, backoff_ms: int) -> None:
    locked_write(
        inventory_lock,
        "inventory.reserve",
        "UPDATE stock",
        waiter,
        deadlocks=deadlocks,
        backoff_ms=backoff_ms,
        what=f"reserving {sku}",
        log=log,
    )


@app.post("/inventory/{sku}/reserve")
async def reserve(
    sku: str, contended_ms: int = 0, waiter: str = "span", deadlocks: int = 0, backoff_ms: int = 20
) -> dict[str, Any]:
    log.info("reserving %s", sku)
    await aquery("SELECT stock", 3)
    if contended_ms:
        held = hold(inventory_lock, contended_ms)
        await asyncio.to_thread(held.wait, 5)
    await asyncio.get_running_loop().run_in_executor(pool, _reserve, sku, waiter, deadlocks, backoff_ms)
    log.info("%s reserved", sku)
    return {"sku": sku, "reserved": True}


otel_corr.instrument(app)
