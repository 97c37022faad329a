"""The access line and the error line, written inside the request context so they carry the IDs.

uvicorn's own access line is written after the ASGI call returns, outside
the request's context, so it can only show zeros; ours is written just before
the context is detached.  The error line summarises the request in a bounded
way, with every sensitive header and query field redacted under the application's own pattern
(its ``sanitize_fields`` included: the request summary is as careful as the span).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from time import perf_counter
from typing import Any

from .._redact import is_sensitive_header, redact_query

__all__ = [
    "ACCESS_LOGGER",
    "ERROR_LOGGER",
    "access_enabled",
    "log_access",
    "log_error",
    "request_summary",
    "set_access_log",
]

ACCESS_LOGGER = logging.getLogger("otel_corr.access")
ERROR_LOGGER = logging.getLogger("otel_corr.error")
_INFO = logging.INFO
_MAX_HEADERS = 32
_MAX_VALUE = 256
_access = False


def set_access_log(enabled: bool) -> None:
    """Switch the access line on or off for every instrumented app in the process."""
    global _access
    _access = enabled


def access_enabled(setting: bool | None) -> bool:
    """Whether to write the access line: the app's own setting, else the process-wide switch."""
    return (_access if setting is None else setting) and ACCESS_LOGGER.isEnabledFor(_INFO)


def log_access(method: str, path: str, status: int | None, start: float, client: str, user_agent: str | None) -> None:
    """Write the access line (the caller checked :func:`access_enabled`)."""
    duration_ms = round((perf_counter() - start) * 1000, 3)
    ACCESS_LOGGER.info(
        '%s - "%s %s" %s %.1fms',
        client or "-",
        method,
        path,
        status if status is not None else "-",
        duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client,
            "user_agent": (user_agent or "")[:_MAX_VALUE],
        },
    )


def request_summary(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    client: str,
    skip: str,
    sanitize: re.Pattern[str],
) -> dict[str, Any]:
    """A bounded, redacted summary of a request for the error line.

    ``skip`` is the request-ID header: its raw value may have been rejected and
    is never logged (the chosen request ID is on the record anyway).  ``sanitize``
    is the application's pattern of secret header and query names.
    """
    shown: dict[str, str] = {}
    for name, value in headers.items():
        if len(shown) >= _MAX_HEADERS:
            break
        if name == skip:
            continue
        shown[name[:64]] = "[REDACTED]" if is_sensitive_header(name, sanitize) else value[:_MAX_VALUE]
    return {
        "method": method,
        "path": path[:2048],
        "query": redact_query(query, sanitize, max_items=_MAX_HEADERS, max_length=_MAX_VALUE),
        "client": client,
        "headers": shown,
    }


def log_error(exc: BaseException, summary: dict[str, Any]) -> None:
    """Write the ERROR line for an unhandled exception, with its traceback."""
    try:
        ERROR_LOGGER.error(
            "Unhandled %s in %s %s",
            type(exc).__qualname__,
            summary["method"],
            summary["path"],
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"method": summary["method"], "path": summary["path"], "request": summary},
        )
    except Exception:  # pragma: no cover - logging itself never raises, but never let it break a response
        pass


start_time = perf_counter
