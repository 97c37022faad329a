"""Work run in other processes by the propagation tests: it logs a JSON line and returns its IDs."""

from __future__ import annotations

import logging
import os
import sys

import otel_corr


def work(tag: str) -> dict[str, str]:
    otel_corr.configure_logging(fmt="json", stream=sys.stdout, access_log=False)
    logging.getLogger("child").info(tag, extra={"child_pid": os.getpid()})
    for handler in logging.getLogger().handlers:
        handler.flush()
    ids = otel_corr.current_ids()
    return {"trace_id": ids.trace_id, "request_id": ids.request_id, "tag": tag}


def work_in_queue(tag: str, queue: object) -> None:
    queue.put(work(tag))  # type: ignore[attr-defined]
