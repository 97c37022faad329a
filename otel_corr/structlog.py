"""structlog processor (extra ``structlog``): the request's IDs in every event dict.

::

    import structlog, otel_corr.structlog

    structlog.configure(processors=[
        otel_corr.structlog.add_ids,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(),
    ])

Keys already in the event (bound by the app) are kept.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .logging._stamp import stamp

__all__ = ["add_ids"]


def add_ids(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add ``trace_id``, ``span_id``, ``request_id`` and ``service_name`` to the event."""
    ids: dict[str, Any] = {}
    stamp(ids)
    for key, value in ids.items():
        event_dict.setdefault(key, value)
    return event_dict
