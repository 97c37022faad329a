"""structlog processor (extra ``structlog``): the request's IDs in every event dict.

::

    import structlog, otel_corr.structlog

    structlog.configure(processors=[
        otel_corr.structlog.add_ids,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(),
    ])

The IDs are otel-corr's, always: a value the app bound or passed under one of
these names (``log.info("x", request_id=value)``) does not replace them -- it
could come from user input -- and is kept as ``extra.request_id`` (the rule of
``extra=`` in :mod:`otel_corr.logging`).

.. versionadded:: 0.1
.. versionchanged:: 0.2
   The app's own value under an ID name is set aside as ``extra.<name>``
   instead of replacing the ID.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .logging._stamp import merge_ids

__all__ = ["add_ids"]


def add_ids(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add ``trace_id``, ``span_id``, ``request_id`` and ``service_name`` to the event."""
    merge_ids(event_dict)
    return event_dict
