"""Text and JSON formatters, and a filter for handlers that want the IDs without our factory.

All three are plain ``logging`` classes, loadable from ``logging.config.dictConfig``
(``"()": "otel_corr.logging.JsonFormatter"``) and from uvicorn's ``--log-config``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import string
import time
from collections.abc import Mapping
from typing import Any, Literal

from ..exceptions import ConfigError
from ._stamp import ASIDE, FIELDS, MISSING, service_name, set_aside, stamp

__all__ = ["IdsFilter", "JsonFormatter", "TextFormatter"]

# Attributes every LogRecord has; anything else in a record's __dict__ came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "short_request_id",
    *FIELDS,
}
_raw_enc = json.encoder.encode_basestring  # the C string encoder; only ever used through _enc/encode
_MAX_EXTRA = 4096
_MAX_DEPTH = 8
_MAX_KEY = 256
#: A message, traceback or stack longer than this is cut in the middle (the end of a traceback matters).
MAX_TEXT = 32 * 1024
# What JSON leaves raw but a reader may take as a line break or a terminal as a command:
# DEL, the C1 controls (0x9b is CSI) and the Unicode line/paragraph separators; and lone
# surrogates, which a UTF-8 stream refuses to write (the handler would drop the line).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same plus the C0 controls (ESC, NUL, CR...) for text lines; tab stays.
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_TEXT_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _u_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    half = MAX_TEXT // 2
    return f"{text[:half]} ...[{len(text) - MAX_TEXT} characters cut]... {text[-half:]}"


def _safe(out: str) -> str:
    """Encoded JSON with DEL, C1, U+2028/U+2029 and surrogates as ``\\u`` escapes and ``${`` as ``$\\u007b``.

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


_second: tuple[int, str, str] = (-1, "", "")  # (second, date-time text, UTC offset): replaced whole


def _iso_timestamp(created: float) -> str:
    """ISO 8601 with milliseconds and the local UTC offset; the per-second part is cached.

    The cache is one tuple replaced in one assignment, so a thread never reads one second's
    key with another second's text.
    """
    global _second
    second = int(created)
    cached = _second
    if cached[0] != second:
        t = time.localtime(second)
        offset = time.strftime("%z", t)
        zone = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else "Z"
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", t), zone)
        _second = cached
    return f"{cached[1]}.{int((created - second) * 1000):03d}{cached[2]}"


def _repr(value: object) -> str:
    """``repr(value)``, cut; never raises (a hostile ``__repr__`` must not cost us the line)."""
    try:
        text = repr(value)
        return text if len(text) <= _MAX_EXTRA else text[:_MAX_EXTRA]
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


def _str(value: object) -> str:
    """``str(value)``, cut, falling back to :func:`_repr`; never raises."""
    if type(value) is str:
        return value
    try:
        text = str(value)
        return text if len(text) <= _MAX_EXTRA else text[:_MAX_EXTRA]
    except Exception:
        return _repr(value)


class _Unencodable(Exception):
    """A structured value too deep (or circular) or too big to write as JSON: it is written as its repr."""


def _json(value: object, depth: int, budget: list[int]) -> str:
    """The JSON text of ``value``; containers recurse, any other object is its ``repr``."""
    if isinstance(value, str):
        # str.__str__: the plain text of a str subclass, whatever its own __str__/__getitem__ do
        text = _enc(str.__str__(value)[:_MAX_EXTRA])
    elif value is None:
        text = "null"
    elif value is True or value is False:
        text = "true" if value else "false"
    elif isinstance(value, int):
        try:
            text = int.__repr__(value)  # an IntEnum is its number, as json.dumps writes it
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            text = _enc(f"<int of {value.bit_length()} bits>")
    elif isinstance(value, float):
        # nan and inf have no JSON form (json.dumps writes NaN, which strict parsers refuse): a string
        text = float.__repr__(value) if math.isfinite(value) else _enc(float.__repr__(value))
    elif isinstance(value, (dict, list, tuple)):
        if depth >= _MAX_DEPTH:  # also where a circular container ends up
            raise _Unencodable
        if isinstance(value, dict):
            members: list[str] = []
            keys: set[str] = set()
            for k, v in value.items():
                key = _str(k)[:_MAX_KEY]
                while key in keys:  # {1: ..., "1": ...}: two keys, one text
                    key = ASIDE + key
                keys.add(key)
                members.append(f"{_enc(key)}:{_json(v, depth + 1, budget)}")
            text = f"{{{','.join(members)}}}"
        else:
            text = f"[{','.join(_json(v, depth + 1, budget) for v in value)}]"
    else:  # bytes, sets, dates, the app's objects: what a developer would print
        text = _enc(_repr(value))
    budget[0] -= len(text)
    if budget[0] < 0:
        raise _Unencodable
    return text


def encode(value: object, limit: int = _MAX_EXTRA) -> str:
    """The JSON text of one value of a line: every value :class:`JsonFormatter` writes goes through here.

    Never raises and never writes anything a strict JSON parser refuses, a line
    break or a terminal control: a string is cut at ``limit`` (4,096) characters and
    escaped as :func:`_enc` does; ``None``, booleans and integers are
    themselves; a finite float is itself, ``nan``/``inf``/``-inf`` are the
    strings ``"nan"``/``"inf"``/``"-inf"``; dicts, lists and tuples are JSON
    objects and arrays (keys as their ``str``, cut at 256 characters, a repeated
    one as ``extra.<key>``); anything else is its ``repr``.
    A container nested deeper than 8, circular or over 16 KiB of JSON is its
    ``repr``, cut; a hostile ``__repr__`` is ``<unrepresentable Type>``.
    """
    if type(value) is str:  # nearly every value: inline what _json does for a string
        out = _raw_enc(value if len(value) <= limit else value[:limit])
        if out.isprintable() and "${" not in out:
            return out
        return _safe(out)
    try:
        if type(value) is int:  # the line number
            return int.__repr__(value)
        return _json(value, 0, [_MAX_EXTRA * 4])
    except Exception:  # too deep, circular, too big, or a hostile __class__/__eq__: the repr, cut
        return _enc(_repr(value))


#: encode() of the strings that repeat on every line (level, logger, file, function, service): a dict
#: lookup instead of a call.  Only short ones, at most 1,024 of them (cleared when full).
_ENCODED: dict[object, str] = {}


def _encoded(value: object) -> str:
    """:func:`encode`, remembered in ``_ENCODED`` (the formatter looks there first)."""
    out = encode(value)
    if type(value) is str and len(out) <= 512:
        if len(_ENCODED) >= 1024:
            _ENCODED.clear()
        _ENCODED[value] = out
    return out


#: The same for line numbers (a separate dict: True == 1 as a key, and encode(True) is "true").
_LINES: dict[object, str] = {}


def _encoded_line(value: object) -> str:
    out = encode(value)
    if type(value) is int:
        if len(_LINES) >= 4096:
            _LINES.clear()
        _LINES[value] = out
    return out


def ensure_ids(d: dict[str, Any]) -> None:
    """Stamp a record that reached a handler without the IDs (made before the factory, or without it).

    A record carrying all three IDs counts as stamped (one rebuilt by
    ``logging.makeLogRecord`` from another process carries them too).  On a
    record that does not, a caller's ``extra=`` value for an ID field is set
    aside as ``extra.<name>`` before the record is stamped, as the factory's
    guard does.
    """
    if "request_id" in d and "trace_id" in d and "span_id" in d:
        return
    for key in FIELDS:
        if key in d:
            set_aside(d, key, d.pop(key))
    stamp(d)


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``; a message whose arguments do not fit its format is still written."""
    try:
        return record.getMessage()
    except Exception as exc:  # logging would print a traceback to stderr and drop the line
        return f"{_str(record.msg)} [arguments not formatted ({type(exc).__name__}): {_repr(record.args)}]"


#: The keys JsonFormatter writes itself, and names an ``extra=`` field cannot take over: a field named
#: like one of them is written as ``extra.<name>``.  ``service.name`` is OpenTelemetry's name for ``service``.
OWN_KEYS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "trace_id",
    "span_id",
    "request_id",
    "service",
    "file",
    "line",
    "function",
    "exception",
    "stack",
)
_RESERVED = frozenset(OWN_KEYS) | {"service.name"}
#: How long a message, traceback or stack can be once :func:`_clip` has cut it (the marker included).
_MAX_CLIPPED = MAX_TEXT + 64


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request's IDs.

    Keys: ``timestamp`` (ISO 8601 with offset), ``level``, ``logger``,
    ``message``, ``trace_id``, ``span_id``, ``request_id``, ``service``,
    ``file``, ``line``, ``function``, ``exception`` (the full traceback, when
    there is one), ``stack``, the ``static_fields``, then every ``extra=``
    field.  Every value goes through one encoder (:func:`encode`): the line
    always parses as strict JSON (``nan``/``inf`` are strings), a value JSON
    has no form for is written as its ``repr``, and a line is never lost.
    An ``extra=`` field cannot take a key the formatter writes (nor
    ``service.name``): it is written as ``extra.<key>``, so the line keeps the
    record's own IDs, level and message.  Newlines in messages are escaped by
    JSON, so a record is always one line; DEL, the C1 controls and
    U+2028/U+2029 are escaped too (``\\u2028``), so no reader splits a
    record and no terminal runs an escape sequence; ``${`` is written
    ``$\\u007b``, the same string once parsed.  A message or traceback over
    32 KiB is cut in the middle, with a marker.

    Args:
        static_fields: fields added to every line (e.g. ``{"env": "prod"}``);
            a key the formatter writes itself raises :class:`~otel_corr.ConfigError`.
        source: include ``file``/``line``/``function`` (default true).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``extra=`` fields named like the formatter's own keys are written as
       ``extra.<name>``; ``nan``/``inf`` are written as strings.
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
        static = {_str(k)[:_MAX_KEY]: v for k, v in (static_fields or {}).items()}
        for key in static:
            if key in _RESERVED:
                raise ConfigError("static_fields", key, "keys other than " + ", ".join(sorted(_RESERVED)))
        self._static = "".join(f",{encode(k)}:{encode(v)}" for k, v in static.items())
        #: Keys an extra= field must not take: ours and the static fields'.
        self._taken = _RESERVED | static.keys()
        self._source = source
        #: The last IDs written and their encoding: the records of one request share the same
        #: string objects (stamp() caches them per context), so they are encoded once per run.
        self._last_ids: tuple[object, object, object, str] = (None, None, None, "")

    def _ids(self, trace_id: object, span_id: object, request_id: object) -> str:
        last = self._last_ids  # read once: a formatter shared by two handlers may be called from two threads
        if last[0] is trace_id and last[1] is span_id and last[2] is request_id:
            return last[3]
        out = f',"trace_id":{encode(trace_id)},"span_id":{encode(span_id)},"request_id":{encode(request_id)}'
        if type(trace_id) is str and type(span_id) is str and type(request_id) is str:  # immutable: safe to keep
            self._last_ids = (trace_id, span_id, request_id, out)
        return out

    def format(self, record: logging.LogRecord) -> str:
        try:
            d = record.__dict__
            if "request_id" not in d or "trace_id" not in d or "span_id" not in d:
                ensure_ids(d)
            known = _ENCODED.get
            try:
                message = record.getMessage()
            except Exception:
                message = _message(record)
            service = d.get("service_name") or service_name()
            parts = [
                '{"timestamp":',
                encode(_iso_timestamp(record.created)),
                ',"level":',
                known(record.levelname) or _encoded(record.levelname),
                ',"logger":',
                known(record.name) or _encoded(record.name),
                ',"message":',
                encode(message if len(message) <= MAX_TEXT else _clip(message), _MAX_CLIPPED),
                self._ids(d["trace_id"], d["span_id"], d["request_id"]),
                ',"service":',
                known(service) or _encoded(service),
            ]
            if self._source:
                parts += [
                    ',"file":',
                    known(record.pathname) or _encoded(record.pathname),
                    ',"line":',
                    _LINES.get(record.lineno) or _encoded_line(record.lineno),
                    ',"function":',
                    known(record.funcName) or _encoded(record.funcName or ""),
                ]
            if record.exc_info:
                if not record.exc_text:
                    record.exc_text = self.formatException(record.exc_info)
            if record.exc_text:
                parts += [',"exception":', encode(_clip(record.exc_text), _MAX_CLIPPED)]
            if record.stack_info:
                parts += [',"stack":', encode(_clip(self.formatStack(record.stack_info)), _MAX_CLIPPED)]
            parts.append(self._static)
            if not _STANDARD.issuperset(d):  # most records have no extra= fields: skip the loop
                parts += self._extra(d)
            parts.append("}")
            return "".join(parts)
        except Exception as exc:  # a line is never lost: the fields that can be written, and why
            return self._fallback(record, exc)

    def _extra(self, d: dict[str, Any]) -> list[str]:
        """The ``extra=`` fields as ``,"key":value`` parts; each key unique and none of ours."""
        taken = self._taken
        seen: set[str] = set()
        parts: list[str] = []
        for key, value in d.items():
            if key in _STANDARD:
                continue
            if type(key) is not str:  # extra={1: ...} puts a non-string attribute name in the record
                key = _str(key)
            elif key.startswith("_"):  # private attributes (ours, or a handler's), not fields
                continue
            if len(key) > _MAX_KEY:
                key = key[:_MAX_KEY]
            while key in taken or key in seen:
                key = ASIDE + key
            seen.add(key)
            parts += [",", encode(key), ":", encode(value)]
        return parts

    def _fallback(self, record: logging.LogRecord, exc: Exception) -> str:
        """A line for a record the normal path failed on: its time, level, logger, message and IDs."""
        d = vars(record) if isinstance(getattr(record, "__dict__", None), dict) else {}
        fields: dict[str, object] = {}
        try:
            fields["timestamp"] = _iso_timestamp(record.created)
        except Exception:
            pass
        fields["level"] = _str(getattr(record, "levelname", "-"))
        fields["logger"] = _str(getattr(record, "name", "-"))
        try:
            fields["message"] = _clip(_str(_message(record)))
        except Exception:
            fields["message"] = "<unformattable message>"
        for key in ("trace_id", "span_id", "request_id"):
            fields[key] = d.get(key, MISSING)
        fields["service"] = d.get("service_name") or service_name()
        fields["format_error"] = type(exc).__qualname__
        return "{" + ",".join(f"{encode(k)}:{encode(v, _MAX_CLIPPED)}" for k, v in fields.items()) + "}"


class _Lenient(dict[str, Any]):
    """A record's fields for a format string that names one the record lacks: ``-`` for it."""

    def __missing__(self, key: str) -> str:
        return MISSING


class TextFormatter(logging.Formatter):
    """A readable line with the short request ID in brackets.

    Default format::

        2026-11-23 18:30:00,123 INFO    [3f2504e0] app.orders: order 42 created

    Any ``%(trace_id)s``, ``%(span_id)s``, ``%(request_id)s``,
    ``%(short_request_id)s`` (first 8 characters) or ``%(service_name)s`` can be
    used in ``fmt``, and any ``extra=`` field.  Every record is one line: the
    whole formatted line -- the message and any field ``fmt`` names -- has its
    carriage returns and newlines written as ``\\r`` and ``\\n``, so that no
    value can forge extra log lines, and other control characters (ESC,
    NUL...), DEL, the C1 controls and U+2028/U+2029 as ``\\u001b`` and the
    like, so that no value can drive the terminal that shows the log, and
    ``${`` as ``$\\{`` (no ``${jndi:...}`` lookup for a tool that reads the
    line); a traceback still follows on its own lines, with the same escapes
    inside its exception messages.  A message or traceback over 32 KiB is cut
    in the middle, with a marker.  A field ``fmt`` names that a record lacks is
    ``-``; a record ``fmt`` cannot format at all is written in the default
    format: a line is never lost.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Fields other than the message are escaped too; a missing field is ``-``.
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
        self._spec = (fmt or self.default_format, style)

    def formatMessage(self, record: logging.LogRecord) -> str:
        d = record.__dict__
        if "request_id" not in d or "trace_id" not in d or "span_id" not in d:
            ensure_ids(d)
        rid = d["request_id"]
        d["short_request_id"] = rid[:8] if isinstance(rid, str) else MISSING
        message = record.message
        if message[-1:] in ("\n", "\r"):
            # A message ending in a line break (uvicorn's "Exception in ASGI application\n") means
            # "the traceback follows on the next line", which it does: not written as a trailing \n.
            message = message.rstrip("\r\n")
        record.message = _clip(message)
        try:
            line = super().formatMessage(record)
        except Exception:  # a field fmt names is missing, or a value does not fit its conversion
            line = self._lenient(d)
        # _text_escape's own test, inline: most lines need nothing, and then pay no call
        return _text_escape(line) if "${" in line or not line.isprintable() else line

    def _lenient(self, d: dict[str, Any]) -> str:
        """The line for a record ``fmt`` failed on: missing fields as ``-``, then every value as text."""
        fmt, style = self._spec
        for values in (_Lenient(d), _Lenient({k: _str(v) for k, v in d.items() if type(k) is str})):
            try:  # the second try: a value whose __str__ raises is its repr (or <unrepresentable ...>)
                if style == "{":
                    return fmt.format_map(values)
                if style == "$":
                    return string.Template(fmt).substitute(values)
                return fmt % values
            except Exception:
                continue
        # Still no (a %d given a string): the default format, which only takes text.
        return self.default_format % _Lenient({k: _str(v) for k, v in d.items() if type(k) is str})

    def format(self, record: logging.LogRecord) -> str:
        # As logging.Formatter.format, except that the traceback is escaped here on every call:
        # record.exc_text is shared with the other handlers, so it is left as the first one made it.
        try:
            record.message = record.getMessage()
        except Exception:
            record.message = _message(record)
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
        ensure_ids(record.__dict__)
        return True
