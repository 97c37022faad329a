"""The app the stress tests and ``benchmarks/stress.py`` load: every request awaits, hops to a thread and logs.

``GET /work/{n}`` answers what the endpoint saw: ``current_ids()`` on the event
loop and in the worker thread, and the worker's pid (for its RSS).  It logs
once on the loop and once in the thread, each line carrying ``n`` (the
client's sequence number, the ground truth a checker joins on); with
``configure_logging`` the access line makes a third.  Odd ``n`` hop with
``asyncio.to_thread``, even ``n`` with ``loop.run_in_executor``: both paths
must carry the IDs.

Logging comes from the ``OTEL_CORR_LOG_*`` variables (JSON, one file per
worker process); spans and, with ``OTEL_LOGS_EXPORTER=otlp``, log records go
to the collector the ``OTEL_*`` variables name.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from fastapi import FastAPI

import otel_corr

log = logging.getLogger("stress")
app = FastAPI()


def _ids() -> dict[str, str]:
    ids = otel_corr.current_ids()
    return {"trace_id": ids.trace_id, "span_id": ids.span_id, "request_id": ids.request_id}


def _in_thread(n: int) -> dict[str, str]:
    log.info("in thread", extra={"n": n})
    return _ids()


@app.get("/work/{n}")
async def work(n: int) -> dict[str, Any]:
    await asyncio.sleep(0)  # let other requests interleave before we read the IDs
    loop_ids = _ids()
    log.info("in loop", extra={"n": n})
    if n % 2:
        thread_ids = await asyncio.to_thread(_in_thread, n)
    else:
        thread_ids = await asyncio.get_running_loop().run_in_executor(None, _in_thread, n)
    return {"n": n, "pid": os.getpid(), "loop": loop_ids, "thread": thread_ids}


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


if os.environ.get("OTEL_CORR_LOG_FILE") or os.environ.get("OTEL_CORR_LOG_FORMAT"):
    otel_corr.configure_logging()
otel_corr.instrument(app)
