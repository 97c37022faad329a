"""Logging with the request's IDs on every line (``otel_corr.logging``).

- :func:`instrument_logging` stamps every record (called by ``otel_corr.instrument``);
- :func:`configure_logging` sets up text or JSON output, the access line, files, a queue;
- :class:`JsonFormatter`, :class:`TextFormatter`, :class:`IdsFilter` for ``dictConfig``
  and uvicorn's ``--log-config``.

See ``docs/logging.md``.
"""

from ._formatters import IdsFilter, JsonFormatter, TextFormatter
from ._otlp import OTLPHandler
from ._setup import configure_logging, instrument_logging, stop_queue

__all__ = [
    "IdsFilter",
    "JsonFormatter",
    "OTLPHandler",
    "TextFormatter",
    "configure_logging",
    "instrument_logging",
    "stop_queue",
]
