"""loguru patcher (extra ``loguru``): the request's IDs in every record's ``extra``.

::

    from loguru import logger
    import otel_corr.loguru

    logger.configure(patcher=otel_corr.loguru.patcher)
    logger.add(sys.stderr, format="{time} {level} [{extra[request_id]}] {message}")
    # or serialize=True for JSON: the IDs are under record.extra

The IDs are otel-corr's, always: a value the app bound under one of these
names (``logger.bind(request_id=value)``) does not replace them -- it could
come from user input -- and is kept as ``extra["extra.request_id"]`` (the rule
of ``extra=`` in :mod:`otel_corr.logging`).

.. versionadded:: 0.1
.. versionchanged:: 0.2
   The app's own value under an ID name is set aside as ``extra.<name>``
   instead of replacing the ID.
"""

from __future__ import annotations

from typing import Any

from .logging._stamp import merge_ids

__all__ = ["patcher"]


def patcher(record: Any) -> None:
    """Add ``trace_id``, ``span_id``, ``request_id`` and ``service_name`` to ``record["extra"]``."""
    merge_ids(record["extra"])
