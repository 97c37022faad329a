"""Other projects' private names, each in one place with a feature check and a public fallback."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping
from typing import Any

# --- CPython, httpx, Starlette, FastAPI, Celery (patch targets) ---

#: CPython runs every thread's body through the private ``Thread._bootstrap_inner``; wrapping it
#: attaches the starting thread's context around ``run()`` even in subclasses that override
#: ``run()``.  ``None`` where it is missing: ``Thread.start`` then wraps the instance's own
#: ``run`` (public, same result, one small closure per thread started).
THREAD_BOOTSTRAP: str | None = (
    "_bootstrap_inner" if callable(getattr(threading.Thread, "_bootstrap_inner", None)) else None
)


def httpx_send(client_class: Any) -> str:
    """The ``httpx.Client``/``AsyncClient`` method to wrap, checked when httpx is imported.

    The private ``_send_single_request`` runs once per hop (each redirect gets its own
    CLIENT span, as the HTTP conventions ask); the public ``send`` is the fallback
    (one span per call, the redirects inside it).
    """
    return "_send_single_request" if callable(getattr(client_class, "_send_single_request", None)) else "send"


def fastapi_telemetry(app: Any) -> MutableMapping[str, Any] | None:
    """FastAPI's native-telemetry settings of ``app`` (the private ``app._telemetry``), if it has them.

    FastAPI >= 0.16x makes its own server span once an SDK provider exists; its only public
    switch is the constructor's ``telemetry=`` argument, too late for an app already built.
    ``None`` (nothing to switch off) on a FastAPI without it.
    """
    telemetry = getattr(app, "_telemetry", None)
    return telemetry if isinstance(telemetry, MutableMapping) else None


def process_target_attribute(base_process: type) -> str | None:
    """Where ``multiprocessing``'s ``BaseProcess`` keeps its target (the private ``_target``), checked
    when ``multiprocessing.process`` is imported.

    ``None`` where it is not there: a bare ``Process(target=...)`` then runs without the starter's
    context (the public ``ProcessPoolExecutor.submit`` path still carries it).
    """
    code = getattr(vars(base_process).get("__init__"), "__code__", None)
    return "_target" if code is not None and "_target" in code.co_names else None
