"""Text and JSON formatters, and a filter for handlers that want the IDs without our factory.

All three are plain ``logging`` classes, loadable from ``logging.config.dictConfig``
(``"()": "otel_corr.logging.JsonFormatter"``) and from uvicorn's ``--log-config``.
"""

from __future__ import annotations

import json
import logging
import re
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
_raw_enc = json.encoder.encode_basestring  # the C string encoder (alone: for fields the code names, not input)
_MAX_EXTRA = 4096
#: A message, traceback or stack longer than this is cut in the middle (the end of a traceback matters).
MAX_TEXT = 32 * 1024
# What JSON leaves raw but a reader may take as a line break or a terminal as a command:
# DEL, the C1 controls (0x9b is CSI) and the Unicode line/paragraph separators.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")
# The same plus the C0 controls (ESC, NUL, CR...) for text lines; tab stays.
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _u_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    half = MAX_TEXT // 2
    return f"{text[:half]} ...[{len(text) - MAX_TEXT} characters cut]... {text[-half:]}"


def _safe(out: str) -> str:
    """Encoded JSON with DEL, C1 and U+2028/U+2029 as ``\\u`` escapes and ``${`` as ``$\\u007b``.

    The same value to a JSON reader, but one line to any reader, nothing a terminal
    runs, and no Log4j-style lookup (``${jndi:...}``) for a tool that scans raw lines.
    """
    # isprintable() is one C pass; only a line with something unusual pays for the regex.
    if not out.isprintable():
        out = _JSON_UNSAFE.sub(_u_escape, out)
    return out.replace("${", "$\\u007b") if "${" in out else out


def _enc(value: str) -> str:
    """A JSON string literal: see :func:`_safe`."""
    return _safe(_raw_enc(value))


def _text_escape(text: str, keep_newlines: bool = False) -> str:
    """Control characters as visible escapes: CR/LF as \\r/\\n, others as \\u001b and the like; ``${`` as ``$\\{``."""
    if "${" in text:
        text = text.replace("${", "$\\{")
    if text.isprintable():
        return text

    def one(match: re.Match[str]) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return _TEXT_ESCAPES.get(char) or _u_escape(match)

    return _TEXT_UNSAFE.sub(one, text)


def _exception_messages(exc: BaseException | None) -> set[str]:
    """The message of an exception and of every exception chained to it."""
    seen: set[int] = set()
    messages: set[str] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        try:
            messages.add(str(e))
        except Exception:  # a hostile __str__: the traceback module copes on its own
            pass
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return messages


def escape_exception_messages(exc_text: str, exc: BaseException | None) -> str:
    """``exc_text`` with the message of ``exc`` and of every exception chained to it escaped.

    "ValueError: <message>" then stays one line of the traceback whatever the message
    holds; the traceback's own newlines are left alone.
    """
    for message in _exception_messages(exc):
        if message and not message.isprintable():
            exc_text = exc_text.replace(f": {message}", f": {_text_escape(message)}")
    return exc_text


#: Where a queue handler leaves the traceback text escaped by :func:`escape_exception_messages`
#: for :class:`TextFormatter`, once it has dropped the exception object the escaping needs.
#: Private (a leading underscore), so JsonFormatter does not write it as an extra field.
ESCAPED_EXC_TEXT = "_otel_corr_escaped_exc_text"


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
        dumped = json.dumps(value, default=_default, ensure_ascii=False)
    except Exception:  # circular or hostile objects: never lose the line
        return str(_enc(_default(value)))
    if len(dumped) > _MAX_EXTRA * 4:  # cut JSON is no JSON: a too-big value becomes a string, cut
        return _enc(dumped[: _MAX_EXTRA * 4] + "...")
    return _safe(dumped)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request's IDs.

    Keys: ``timestamp`` (ISO 8601 with offset), ``level``, ``logger``,
    ``message``, ``trace_id``, ``span_id``, ``request_id``, ``service``,
    ``file``, ``line``, ``function``, ``exception`` (the full traceback, when
    there is one), ``stack``, then every ``extra=`` field.  A value JSON cannot
    encode is written as its ``repr``; a line never fails to be written.
    Newlines in messages are escaped by JSON, so a record is always one line;
    DEL, the C1 controls and U+2028/U+2029 are escaped too (``\\u2028``), so
    no reader splits a record and no terminal runs an escape sequence; ``${``
    is written ``$\\u007b``, the same string once parsed.  A
    message or traceback over 32 KiB is cut in the middle, with a marker.

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
        message = _clip(record.getMessage())
        parts = [
            '{"timestamp":"',
            _iso_timestamp(record.created),
            '","level":',
            _raw_enc(record.levelname),
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
                _raw_enc(record.pathname),
                ',"line":',
                str(record.lineno),
                ',"function":',
                _raw_enc(record.funcName or ""),
            ]
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts += [',"exception":', _enc(_clip(record.exc_text))]
        if record.stack_info:
            parts += [',"stack":', _enc(_clip(self.formatStack(record.stack_info)))]
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
    lines, and other control characters (ESC, NUL...), DEL, the C1 controls
    and U+2028/U+2029 as ``\\u001b`` and the like, so that a message cannot
    drive the terminal that shows the log, and ``${`` as ``$\\{`` (no
    ``${jndi:...}`` lookup for a tool that reads the line); a traceback still follows on its own
    lines, with the same escapes inside its exception messages.  A message or
    traceback over 32 KiB is cut in the middle, with a marker.

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
        record.message = _text_escape(_clip(record.message))
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        # As logging.Formatter.format, except that the traceback is escaped here on every call:
        # record.exc_text is shared with the other handlers, so it is left as the first one made it.
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        exc_text = record.exc_text
        if record.exc_info:
            if not exc_text:
                exc_text = record.exc_text = self.formatException(record.exc_info)
            exc_text = escape_exception_messages(exc_text, record.exc_info[1])
        elif exc_text:
            # A record from our queue handler has lost its exc_info (it cannot cross to the
            # listener thread) but carries the escaped text made while it still had it.
            exc_text = record.__dict__.get(ESCAPED_EXC_TEXT, exc_text)
        if exc_text:
            line = f"{line}\n{_text_escape(_clip(exc_text), keep_newlines=True)}"
        if record.stack_info:
            line = f"{line}\n{_text_escape(_clip(self.formatStack(record.stack_info)), keep_newlines=True)}"
        return line


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
