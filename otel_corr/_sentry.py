"""Sentry: every event captured inside a request carries its request ID and trace ID as tags.

``request_id`` and ``trace_id``, plus ``transaction_id`` (the tag asgi-correlation-id users search
by).  A global event processor, registered when ``sentry_sdk`` is imported (never importing it
ourselves): nothing happens per request, only per Sentry event.
"""

from __future__ import annotations

from typing import Any

from ._context import current_ids
from .propagation._import_hooks import when_imported

__all__ = ["install"]

_KEY = "sentry event processor"


def _add_ids(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    ids = current_ids()
    if ids:
        tags = event.setdefault("tags", {})
        if ids.request_id:
            tags.setdefault("request_id", ids.request_id)
            tags.setdefault("transaction_id", ids.request_id)
        if ids.trace_id != "0" * 32:
            tags.setdefault("trace_id", ids.trace_id)
    return event


def _register(module: Any) -> None:
    from . import _patches

    if _patches.active(_KEY):
        return
    from sentry_sdk.scope import add_global_event_processor

    add_global_event_processor(_add_ids)  # type: ignore[arg-type]  # an Event is a TypedDict
    _patches.record(
        _KEY,
        "sentry_sdk.scope.global_event_processors",
        "tags each Sentry event with request_id, transaction_id, trace_id",
        "_sentry",
        _remove,
    )


def _remove() -> bool:
    # Sentry has no remove function; its (public) list of global processors is what it adds to.
    import sentry_sdk.scope

    processors = getattr(sentry_sdk.scope, "global_event_processors", None)
    if not isinstance(processors, list) or _add_ids not in processors:
        return False
    processors.remove(_add_ids)
    return True


def install() -> None:
    when_imported("sentry_sdk", _register)
