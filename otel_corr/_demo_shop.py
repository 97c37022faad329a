"""The two small services ``otel-corr demo`` runs: a shop and the inventory it calls."""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
from fastapi import BackgroundTasks, FastAPI

import otel_corr
from otel_corr import _settings

otel_corr.configure_logging(fmt="text")
log = logging.getLogger("demo")

shop = FastAPI(title="shop")
inventory = FastAPI(title="inventory")


_client: httpx.AsyncClient | None = None


def _inventory() -> httpx.AsyncClient:
    global _client
    if _client is None:  # one client for the process: connection reuse, as a real service would
        _client = httpx.AsyncClient(base_url=_settings.env_text("DEMO_INVENTORY_URL") or "")
    return _client


@shop.get("/checkout/{order_id}")
async def checkout(order_id: int) -> dict[str, object]:
    log.info("checking out order %s", order_id)
    stock = (await _inventory().get(f"/stock/sku-{order_id % 7}")).json()
    log.info("order %s reserved %s items", order_id, stock["reserved"])
    return {"order": order_id, "stock": stock, "request_id": otel_corr.current_ids().request_id}


async def send_receipt(order_id: int) -> None:
    await asyncio.sleep(0.15)  # the e-mail provider is slow; the customer does not wait for it
    log.info("receipt for order %s sent", order_id)


@shop.post("/orders/{order_id}")
async def create_order(order_id: int, tasks: BackgroundTasks) -> dict[str, object]:
    log.info("order %s created", order_id)
    tasks.add_task(send_receipt, order_id)
    return {"order": order_id, "status": "created"}


@shop.get("/pay/{order_id}")
async def pay(order_id: int) -> None:
    log.warning("payment provider slow for order %s", order_id)
    await asyncio.sleep(0.05)
    raise RuntimeError(f"payment provider timed out for order {order_id}")


@inventory.get("/stock/{sku}")
async def stock(sku: str) -> dict[str, object]:
    await asyncio.sleep(random.uniform(0.005, 0.03))
    log.info("stock checked for %s", sku)
    return {"sku": sku, "reserved": 1}


otel_corr.instrument(shop)
otel_corr.instrument(inventory)
