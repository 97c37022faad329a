"""Every process-wide change otel-corr makes goes through here: recorded, listed, undone.

A change is a method replaced on another project's class, a global provider or
propagator set, the logging record factory, an import finder, a signal handler,
an at-exit or at-fork hook, a context attached.  Each is made by one of the
functions below, which records the target, what the change does, which
otel-corr feature made it, and how to put things back.  :func:`undo_all` puts
them back in reverse order; :func:`rows` is what ``otel_corr.patches()`` and
``otel-corr doctor`` print.

The registry is consulted only when something is installed or undone: a
wrapper installed through :func:`replace` closes over the original it
replaced, so a patched call costs what it cost before there was a registry.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Patch", "active", "forget", "record", "replace", "rows", "undo", "undo_all", "undo_where"]

_log = logging.getLogger("otel_corr")
_lock = threading.RLock()
_ABSENT = object()


class Patch(NamedTuple):
    """One process-wide change otel-corr has made and not undone (a row of ``otel_corr.patches()``).

    .. versionadded:: 0.1
    """

    #: What was changed: ``threading.Thread.start``, ``sys.meta_path``, the global TracerProvider...
    target: str
    #: What the change does, in a few words.
    what: str
    #: The otel-corr module and feature that made it, e.g. ``propagation._threads (propagate=threads)``.
    installed_by: str
    #: ``False`` only for what the OpenTelemetry API lets be set once per process (global providers).
    reversible: bool


@dataclass
class _Change:
    row: Patch
    undo: Callable[[], bool] | None  # returns False when it could not put the original back


_changes: dict[str, _Change] = {}  # insertion order is installation order


def active(key: str) -> bool:
    """Whether the change recorded under ``key`` is in place."""
    return key in _changes


def record(
    key: str,
    target: str,
    what: str,
    by: str,
    undo: Callable[[], bool | None] | None,
) -> None:
    """Record a change the caller has just made; ``undo=None`` marks it irreversible.

    ``undo`` may return ``False`` to say it could not undo (the change then stays listed).
    """

    def run() -> bool:
        assert undo is not None
        return undo() is not False

    with _lock:
        _changes[key] = _Change(Patch(target, what, by, undo is not None), run if undo is not None else None)


def _name(owner: Any) -> str:
    module = getattr(owner, "__module__", None)
    qualname = getattr(owner, "__qualname__", None) or getattr(owner, "__name__", type(owner).__name__)
    return f"{module}.{qualname}" if module else str(qualname)


def replace(owner: Any, name: str, make: Callable[[Any], Any], *, what: str, by: str, key: str | None = None) -> bool:
    """Set ``owner.name = make(current)`` and record what it replaced; ``False`` if already done.

    ``make`` receives the value in place now (what the wrapper should call).  Undoing puts
    back exactly what ``owner.__dict__`` held (or removes the attribute if it was
    inherited), and only while the attribute is still ours: if something else wrapped
    it since, removing ours would remove theirs too, so ours stays and stays listed.
    """
    target = f"{_name(owner)}.{name}"
    key = key or target
    with _lock:
        if key in _changes:
            return False
        own = vars(owner).get(name, _ABSENT)
        new = make(getattr(owner, name))
        setattr(owner, name, new)

        def restore() -> bool:
            if vars(owner).get(name, _ABSENT) is not new:  # wrapped again since
                return False
            if own is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
            return True

        _changes[key] = _Change(Patch(target, what, by, True), restore)
        return True


def undo(key: str) -> bool:
    """Undo one change; ``True`` if it was in place and is now gone."""
    with _lock:
        change = _changes.get(key)
        if change is None or change.undo is None:
            return False
        try:
            done = change.undo()
        except Exception:  # undoing one change must not stop the others
            _log.warning("otel-corr: could not undo %s", change.row.target, exc_info=True)
            done = False
        if done:
            del _changes[key]
        else:
            _log.warning(
                "otel-corr: %s was changed again since otel-corr changed it (or cannot be undone from this"
                " thread); left as it is, still listed by otel_corr.patches()",
                change.row.target,
            )
        return done


def forget(key: str) -> None:
    """Drop a record whose target is gone (an instrumented app that was garbage-collected)."""
    with _lock:
        _changes.pop(key, None)


def undo_where(installed_by: str) -> None:
    """Undo every change made by a feature whose ``installed_by`` starts with this, newest first."""
    with _lock:
        for key in reversed([k for k, c in _changes.items() if c.row.installed_by.startswith(installed_by)]):
            undo(key)


def undo_all() -> None:
    """Undo every reversible change, newest first; irreversible ones stay listed."""
    undo_where("")


def rows() -> list[Patch]:
    """The changes in place, oldest first."""
    with _lock:
        return [c.row for c in _changes.values()]
