"""otel-corr: one line, one ID -- request IDs and OpenTelemetry traces joined.

::

    import otel_corr
    otel_corr.instrument(app)   # FastAPI, Starlette, any ASGI app, Flask, any WSGI app

Every request then gets one server span and one request ID (the trace ID
itself wherever possible), echoed in ``X-Request-ID`` and ``traceresponse``.
"""

from ._context import Ids, current_ids
from ._instrument import instrument, uninstrument
from ._provider import flush
from ._version import __version__
from .exceptions import ConfigError, OtelCorrError, StoreError
from .logging import configure_logging, instrument_logging
from .propagation import adopt_environment as _adopt_environment
from .propagation import carry

__all__ = [
    "ConfigError",
    "Ids",
    "OtelCorrError",
    "StoreError",
    "__version__",
    "carry",
    "configure_logging",
    "current_ids",
    "flush",
    "instrument",
    "instrument_logging",
    "uninstrument",
]

# A child process started from a request continues its trace and request ID (TRACEPARENT,
# X_REQUEST_ID in the environment); OTEL_CORR_ADOPT_ENVIRONMENT=false turns this off.
_adopt_environment()
