"""The embedded local backend (extra ``server``): OTLP in, one-file store, Jaeger's query API.

Run it with ``otel-corr serve``; see ``docs/local-backend.md``.
"""

from ._ids import parse_trace_id
from ._serve import ServeConfig, default_db_path, run

__all__ = ["ServeConfig", "default_db_path", "parse_trace_id", "run"]
