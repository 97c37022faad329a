"""loguru patcher (extra ``loguru``): the request's IDs in every record's ``extra``.

::

    from loguru import logger
    import otel_corr.loguru

    logger.configure(patcher=otel_corr.loguru.patcher)
    logger.add(sys.stderr, format="{time} {level} [{extra[request_id]}] {message}")
    # or serialize=True for JSON: the IDs are under record.extra

Values the app bound itself (``logger.bind(request_id=...)``) are kept.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import Any

from .logging._stamp import stamp

__all__ = ["patcher"]


def patcher(record: Any) -> None:
    """Add ``trace_id``, ``span_id``, ``request_id`` and ``service_name`` to ``record["extra"]``."""
    ids: dict[str, Any] = {}
    stamp(ids)
    extra = record["extra"]
    for key, value in ids.items():
        extra.setdefault(key, value)
