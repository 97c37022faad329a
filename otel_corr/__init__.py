"""otel-corr: one line, one ID -- request IDs and OpenTelemetry traces joined.

::

    import otel_corr
    otel_corr.instrument(app)   # FastAPI, Starlette, any ASGI app, Flask, any WSGI app

Every request then gets one server span and one request ID (the trace ID
itself wherever possible), echoed in ``X-Request-ID`` and ``traceresponse``.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._version import __version__
from .exceptions import ConfigError, OtelCorrError, StoreError

if _TYPE_CHECKING:  # the names below are imported on first use (PEP 562): see __getattr__
    from ._context import Ids, current_ids
    from ._instrument import instrument, uninstrument
    from ._patches import Patch
    from ._provider import flush
    from .logging import configure_logging, instrument_logging
    from .propagation import carry

__all__ = [
    "ConfigError",
    "Ids",
    "OtelCorrError",
    "Patch",
    "StoreError",
    "__version__",
    "carry",
    "configure_logging",
    "current_ids",
    "flush",
    "instrument",
    "instrument_logging",
    "patches",
    "uninstrument",
]


# Where each lazily imported name lives.  Importing the package costs no OpenTelemetry SDK: a
# command (`otel-corr why`), the pytest plugin every pytest run loads, or a library that only
# calls current_ids() pays for what it uses (the SDK alone is ~150 ms of start-up).
_LAZY = {
    "Ids": "._context",
    "current_ids": "._context",
    "instrument": "._instrument",
    "uninstrument": "._instrument",
    "Patch": "._patches",
    "flush": "._provider",
    "configure_logging": ".logging",
    "instrument_logging": ".logging",
    "carry": ".propagation",
}


def __getattr__(name: str) -> _Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(where, __name__), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def patches() -> "list[Patch]":
    """The process-wide changes otel-corr has made and not undone, oldest first.

    Each :class:`Patch` names its ``target`` (``threading.Thread.start``, ``sys.meta_path``,
    the global TracerProvider...), ``what`` it does, which otel-corr feature ``installed_by``
    it, and whether it is ``reversible`` by :func:`uninstrument` (only the global providers the
    OpenTelemetry API lets be set once per process are not).  ``otel-corr doctor`` prints them.

    .. versionadded:: 0.1
    """
    from ._patches import rows

    return rows()


def _adopt_environment() -> None:
    """The one thing importing does: a child process started from a request continues its trace
    and request ID (TRACEPARENT, X_REQUEST_ID in the environment), recorded like every other change
    and undone by uninstrument(); OTEL_CORR_ADOPT_ENVIRONMENT=false turns it off.  The environment
    is looked at first, so a process that inherited nothing imports nothing more."""
    from . import _settings

    env = _settings.environ()
    if "TRACEPARENT" in env or _settings.request_id_header().upper().replace("-", "_") in env:
        from .propagation import adopt_environment

        adopt_environment()


_adopt_environment()
