"""Text and JSON formatters, and a filter for handlers that want the IDs without our factory.

All three are plain ``logging`` classes, loadable from ``logging.config.dictConfig``
(``"()": "otel_corr.logging.JsonFormatter"``) and from uvicorn's ``--log-config``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from ._stamp import FIELDS, MISSING, service_name, stamp

__all__ = ["IdsFilter", "JsonFormatter", "TextFormatter"]

# Attributes every LogRecord has; anything else in a record's __dict__ came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "short_request_id",
    *FIELDS,
}
_enc = json.encoder.encode_basestring  # the C string encoder
_MAX_EXTRA = 4096


def _iso_timestamp(created: float, _cache: list[Any] = [None, "", ""]) -> str:  # noqa: B006 - a deliberate cache
    """ISO 8601 with milliseconds and the local UTC offset; the per-second part is cached."""
    second = int(created)
    if _cache[0] != second:
        t = time.localtime(second)
        offset = time.strftime("%z", t)
        _cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", t)
        _cache[2] = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else "Z"
        _cache[0] = second
    return f"{_cache[1]}.{int((created - second) * 1000):03d}{_cache[2]}"


def _default(value: object) -> str:
    try:
        return repr(value)[:_MAX_EXTRA]
    except Exception:  # a hostile __repr__ must not cost us the line
        return f"<unrepresentable {type(value).__qualname__}>"


def _encode_value(value: object) -> str:
    if isinstance(value, str):
        return str(_enc(value[:_MAX_EXTRA]))
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    try:
        return json.dumps(value, default=_default, ensure_ascii=False)[: _MAX_EXTRA * 4]
    except Exception:  # circular or hostile objects: never lose the line
        return str(_enc(_default(value)))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request's IDs.

    Keys: ``timestamp`` (ISO 8601 with offset), ``level``, ``logger``,
    ``message``, ``trace_id``, ``span_id``, ``request_id``, ``service``,
    ``file``, ``line``, ``function``, ``exception`` (the full traceback, when
    there is one), ``stack``, then every ``extra=`` field.  A value JSON cannot
    encode is written as its ``repr``; a line never fails to be written.
    Newlines in messages are escaped by JSON, so a record is always one line.

    Args:
        static_fields: fields added to every line (e.g. ``{"env": "prod"}``).
        source: include ``file``/``line``/``function`` (default true).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
        *,
        static_fields: Mapping[str, object] | None = None,
        source: bool = True,
    ) -> None:
        super().__init__(fmt, datefmt, style, validate)
        self._static = "".join(f",{_enc(str(k))}:{_encode_value(v)}" for k, v in (static_fields or {}).items())
        self._source = source

    def format(self, record: logging.LogRecord) -> str:
        d = record.__dict__
        if "request_id" not in d:
            stamp(d)
        message = record.getMessage()
        parts = [
            '{"timestamp":"',
            _iso_timestamp(record.created),
            '","level":',
            _enc(record.levelname),
            ',"logger":',
            _enc(record.name),
            ',"message":',
            _enc(message),
            ',"trace_id":"',
            d["trace_id"],
            '","span_id":"',
            d["span_id"],
            '","request_id":',
            _enc(str(d["request_id"])),
            ',"service":',
            _enc(str(d.get("service_name") or service_name())),
        ]
        if self._source:
            parts += [
                ',"file":',
                _enc(record.pathname),
                ',"line":',
                str(record.lineno),
                ',"function":',
                _enc(record.funcName or ""),
            ]
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts += [',"exception":', _enc(record.exc_text)]
        if record.stack_info:
            parts += [',"stack":', _enc(self.formatStack(record.stack_info))]
        parts.append(self._static)
        if not _STANDARD.issuperset(d):  # most records have no extra= fields: skip the loop
            for key, value in d.items():
                if key not in _STANDARD and not key.startswith("_"):
                    parts += [",", _enc(key), ":", _encode_value(value)]
        parts.append("}")
        return "".join(parts)


class TextFormatter(logging.Formatter):
    """A readable line with the short request ID in brackets.

    Default format::

        2026-11-23 18:30:00,123 INFO    [3f2504e0] app.orders: order 42 created

    Any ``%(trace_id)s``, ``%(span_id)s``, ``%(request_id)s``,
    ``%(short_request_id)s`` (first 8 characters) or ``%(service_name)s`` can be
    used in ``fmt``.  Carriage returns and newlines inside a message are
    written as ``\\r`` and ``\\n`` so that a message cannot forge extra log
    lines; a traceback still follows on its own lines.

    .. versionadded:: 0.1
    """

    default_format = "%(asctime)s %(levelname)-7s [%(short_request_id)s] %(name)s: %(message)s"

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
    ) -> None:
        super().__init__(fmt or self.default_format, datefmt, style, validate)

    def formatMessage(self, record: logging.LogRecord) -> str:
        d = record.__dict__
        if "request_id" not in d:
            stamp(d)
        rid = d["request_id"]
        d["short_request_id"] = rid[:8] if isinstance(rid, str) else MISSING
        message = record.message
        if "\n" in message or "\r" in message:
            record.message = message.replace("\r", "\\r").replace("\n", "\\n")
        return super().formatMessage(record)


class IdsFilter(logging.Filter):
    """Make sure a record has the ID fields (stamping it if nothing did); never drops a record.

    Only needed on handlers that may see records created before
    :func:`otel_corr.instrument_logging` ran (the record factory stamps every
    record created after).  Usable from ``dictConfig`` with ``"()"``.

    .. versionadded:: 0.1
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__:
            stamp(record.__dict__)
        return True
