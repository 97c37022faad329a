"""Admission for OTLP bodies: a memory budget shared by every request in flight, HTTP and gRPC.

Why: what a body costs to decode depends on its shape, not only its size (16 MiB of minimal
spans, under 1 MB gzipped, took 400 MB), and four such bodies at once took the server to 1.3 GB,
each decoded in full before the store refused it.  Here every request holds a :class:`Ticket`
for the memory it will take, told by the decoder before each step that allocates it
(``_otlp.Admit``); a step that would take the budget past its limit is refused then (HTTP 503
with ``Retry-After``, gRPC ``UNAVAILABLE``: exporters retry), before the memory is taken.  A
request that could never fit is :class:`~._otlp.TooLarge` (413).  The ticket is held until the
request is answered, so the rows waiting for the writer count too.
"""

from __future__ import annotations

import threading
from types import TracebackType

from ._otlp import TooLarge

__all__ = ["Budget", "Busy", "Ticket"]


class Busy(Exception):
    """The budget is in use by other requests: retry later (HTTP 503, gRPC ``UNAVAILABLE``)."""


class Budget:
    """``limit`` bytes of decoding memory for all requests together (thread-safe: gRPC runs on threads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """Nothing more fits: refuse a request before reading its body."""
        return self._used >= self.limit

    def ticket(self) -> Ticket:
        """A ticket holding nothing yet; use it as a context manager (released on exit)."""
        return Ticket(self)


class Ticket:
    """One request's share of a :class:`Budget`: grows and shrinks with what its decoding holds."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self.held = 0

    def need(self, total: int) -> None:
        """Hold ``total`` bytes from now on: :class:`Busy` if others hold what it needs, ``TooLarge`` if too big."""
        budget = self._budget
        if total > budget.limit:
            raise TooLarge(
                f"decoding this body takes about {total >> 20} MiB; the server decodes at most"
                f" {budget.limit >> 20} MiB at once (send smaller batches, or protobuf rather than JSON)"
            )
        with budget._lock:
            if total > self.held and budget._used + total - self.held > budget.limit:
                raise Busy
            budget._used += total - self.held
            self.held = total

    def release(self) -> None:
        """Give everything back (the request is answered)."""
        with self._budget._lock:
            self._budget._used -= self.held
            self.held = 0

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
