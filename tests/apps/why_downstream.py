"""The small service the ``why`` corpus apps call (service ``stock``): stock levels, exchange rates, cards, mail.

Each cause the corpus injects here comes from a query parameter: a slow lookup (``ms``, in the untraced
handler or in its query), a flaky rates feed (``fail``: the first ``fail`` calls of a key answer 503, or
hang for ``hang_ms``), a card that fails deep (``exc``), a slow mail relay (``ms``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

import otel_corr

from .why_common import aquery, raise_deep, service_span

otel_corr.configure_logging()
app = FastAPI()
log = logging.getLogger("stock")
# One uvicorn worker: the per-key attempt counts of the flaky feed live in this process.
attempts: Counter[str] = Counter()


@app.get("/stock/{sku}")
async def stock(sku: str, ms: int = 0, slow_in: str = "handler") -> dict[str, Any]:
    log.info("stock lookup for %s", sku)
    if slow_in == "query":
        await aquery("SELECT stock", 3 + ms)
    else:
        await aquery("SELECT stock", 3)
        # The warehouse's own API, which nobody traced.
        await asyncio.sleep(ms / 1000)
    return {"sku": sku, "available": 7}


@app.get("/rates/{key}", response_model=None)
async def rates(key: str, fail: int = 0, hang_ms: int = 0) -> dict[str, Any] | JSONResponse:
    attempts[key] += 1
    if attempts[key] <= fail and hang_ms:  # stuck: answers after the caller has given up
        log.warning("rates feed stuck for %s (attempt %d)", key, attempts[key])
        await asyncio.sleep(hang_ms / 1000)
    elif attempts[key] <= fail:
        log.warning("rates feed busy for %s (attempt %d)", key, attempts[key])
        return JSONResponse({"error": "rates feed busy"}, status_code=503)
    await aquery("SELECT rate", 2)
    return {"key": key, "rate": 1.08}


@app.get("/cards/{card}")
async def card(card: str, exc: str = "") -> dict[str, Any]:
    with service_span("card.lookup"):
        await aquery("SELECT card", 2)
        if exc:
            with service_span("card.decode"):
                raise_deep(exc, "issuer")
    return {"card": card, "issuer": "acme"}


@app.post("/mail")
async def mail(ms: int = 0) -> dict[str, bool]:
    log.info("relaying a receipt")
    await asyncio.sleep(ms / 1000)  # the SMTP relay
    return {"queued": True}


otel_corr.instrument(app)
