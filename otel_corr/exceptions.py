"""Every exception otel-corr raises, in one place.

::

    OtelCorrError            base class: catch this to catch anything of ours
     ├── ConfigError         a setting (argument or environment variable) has a bad value
     └── StoreError          otel-corr serve's store cannot be used
          └── StoreUnavailable  a part of the store (a ClickHouse shard) does not answer

The request path never raises any of these: a bad *header* is replaced, not
raised.  They are raised at start-up, inside :func:`otel_corr.instrument`, so a
misconfigured service fails before it takes traffic.
"""

from __future__ import annotations

__all__ = ["ConfigError", "OtelCorrError", "StoreError", "StoreUnavailable"]


class OtelCorrError(Exception):
    """Base class of every exception raised by otel-corr."""


class ConfigError(OtelCorrError, ValueError):
    """A setting has a value otel-corr cannot use.

    Raised by :func:`otel_corr.instrument` at start-up.  The message names the
    argument or environment variable, the value it got and what it accepts.

    Attributes:
        name: the argument or environment variable, e.g. ``OTEL_TRACES_SAMPLER``.
        value: the value that was rejected (never a secret: header values are
            not echoed).
        accepted: a short description of what would have been accepted.
    """

    def __init__(self, name: str, value: object, accepted: str) -> None:
        self.name = name
        self.value = value
        self.accepted = accepted
        super().__init__(f"{name}={value!r} is not valid: expected {accepted}")

    def __repr__(self) -> str:
        return f"ConfigError(name={self.name!r}, value={self.value!r}, accepted={self.accepted!r})"


class StoreError(OtelCorrError):
    """The store file of ``otel-corr serve`` cannot be used; the message says why and what to do."""


class StoreUnavailable(StoreError):
    """A part of the store that holds (or may hold) an answer does not answer, so a write was not
    stored or a read cannot be whole: ``serve`` answers 503 / ``UNAVAILABLE`` with this message,
    which names the part (for a ClickHouse shard: its number, address and error)."""
