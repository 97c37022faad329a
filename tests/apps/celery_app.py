"""The Celery app of the propagation tests: Redis broker from CELERY_BROKER_URL, JSON logs."""

from __future__ import annotations

import logging
import os
import sys

from celery import Celery

import otel_corr

if not os.environ.get("PLAIN_LOGGING"):  # set: only instrument(app), the app's logging left to Celery
    otel_corr.configure_logging(fmt="json", stream=sys.stdout)
app = Celery("shop", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_ignore_result=False, broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1)
if os.environ.get("BEAT_EVERY"):
    app.conf.beat_schedule = {"tick": {"task": "shop.tick", "schedule": float(os.environ["BEAT_EVERY"])}}
log = logging.getLogger("shop.tasks")


@app.task(name="shop.charge")
def charge(order: int) -> dict[str, str]:
    log.info("charging order", extra={"order": order})
    receipt.delay(order)
    ids = otel_corr.current_ids()
    return {"trace_id": ids.trace_id, "request_id": ids.request_id}


@app.task(name="shop.receipt")
def receipt(order: int) -> None:
    log.info("sending receipt", extra={"order": order})


@app.task(name="shop.tick")
def tick() -> None:
    log.info("beat tick")


otel_corr.instrument(app)
