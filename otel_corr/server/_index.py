"""What the search indexes hold: the documents written on ingest, and the tokens a query looks up.

Two FTS5 tables (SQLite's full-text engine, in the standard library's SQLite):

* ``span_attrs`` (rowid = the span's row): one token per attribute, the CRC-32 of the
  attribute's ``KeyValue`` bytes as the sender wrote them (in decimal), and one for the span ID.
  Equality on any key is a lookup of one token (or of the few a value's text can be read as:
  ``42`` is the string, the int and the double), with no decoding of stored spans.  The tokens
  are taken from the detail bytes without decoding a value in Python (a 3-field view of the span,
  parsed in C, then C-level maps): about 6 µs a span, where formatting each value would be 30.
  A 32-bit checksum can collide, so every hit is confirmed by decoding that span: the index
  narrows, never decides.  (Hex of the whole KeyValue was exact but its long tokens cost FTS5
  8.6 µs a span and 40 bytes, against 4.9 µs and 33 bytes.)  A sender that encodes a value
  unlike protobuf's own serializer (no SDK does) is not found by key=value.
* ``texts``: the words of each log record (body, exception type and message; rowid = the log's
  row) and of each span's events and status message (rowid = minus the span's row), for words,
  phrases and prefixes, with FTS5's ``unicode61`` rules (case and diacritics folded).

Both are contentless (``content=''``): the text is stored once, in the row (compressed), not a
second time in the index; deleting an entry means handing FTS5 the same document again, which
:func:`span_docs` and :func:`log_doc` rebuild from the row.
"""

from __future__ import annotations

import base64
import re
import struct
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any
from zlib import crc32

__all__ = [
    "span_docs",
    "attribute_encodings",
    "attribute_tokens",
    "EVENT_SLOTS",
    "TextRow",
    "event_line",
    "event_of",
    "event_rowid",
    "log_line",
    "highlights",
    "indexed",
    "log_doc",
    "span_id_token",
    "value_matches",
    "words",
]

_EXCEPTION_KEYS = ("exception.type", "exception.message")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _kv_token(kv: bytes) -> str:
    return str(crc32(kv))


def span_id_token(span_id: bytes) -> str:
    """The token of a span ID (``i`` + hex: no KeyValue's hex starts with ``i``)."""
    return "i" + span_id.hex()


def _views() -> tuple[Any, Any]:
    """``SpanIndexView``: a span with attributes (9), events (11) and status (15) as raw bytes.

    One C parse of a stored detail gives each attribute's KeyValue bytes, the events' bytes (only
    decoded when there are some) and the status bytes.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    file = descriptor_pb2.FileDescriptorProto(name="otel_corr/index.proto", package="otel_corr.index", syntax="proto3")
    message = file.message_type.add(name="SpanIndexView")
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    as_bytes = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    message.field.add(name="attributes", number=9, label=repeated, type=as_bytes)
    message.field.add(name="events", number=11, label=repeated, type=as_bytes)
    message.field.add(name="status", number=15, label=optional, type=as_bytes)
    pool = descriptor_pool.Default()
    pool.AddSerializedFile(file.SerializeToString())
    view = pool.FindMessageTypeByName("otel_corr.index.SpanIndexView")
    from opentelemetry.proto.trace.v1 import trace_pb2

    return message_factory.GetMessageClass(view), trace_pb2


_View, _trace_pb2 = _views()


#: ``texts`` rows of one span: its first 63 events (0-62) and its status message (63).
EVENT_SLOTS = 64
#: A ``texts`` row: three columns, so that a phrase never runs from one part into the next.
TextRow = tuple[str, str, str]


def span_docs(detail: bytes, span_id: bytes) -> tuple[str, list[tuple[int, TextRow]]]:
    """A span's ``span_attrs`` document (its attributes' tokens and its span ID's) and its ``texts`` rows.

    The rows are (slot, columns): see :func:`event_rowid`.
    """
    view = _View.FromString(detail)
    # C-level maps, no Python call per attribute (the same tokens as _kv_token).
    attributes = " ".join(map(str, map(crc32, view.attributes))) + " i" + span_id.hex()
    return attributes, (_event_rows(view) if view.events or view.status else [])


def event_rowid(row: int, slot: int) -> int:
    """The ``texts`` row ID of slot ``slot`` of span row ``row``: negative, apart from the log records'."""
    return -(row * EVENT_SLOTS + slot)


def event_of(rowid: int) -> tuple[int, int]:
    """(span row, slot) of an event's ``texts`` row ID."""
    return divmod(-rowid, EVENT_SLOTS)


def _exception(attributes: Any) -> tuple[str, str]:
    values = {
        kv.key: kv.value.string_value
        for kv in attributes
        if kv.key in _EXCEPTION_KEYS and kv.value.WhichOneof("value") == "string_value"
    }
    return values.get("exception.type", ""), values.get("exception.message", "")


def _event_rows(view: Any) -> list[tuple[int, TextRow]]:
    # Events in slots 0-62, the status message in the last: an exception event, which says more
    # than the status message it usually repeats, is the one a search shows first.
    rows: list[tuple[int, TextRow]] = []
    for slot, raw in enumerate(view.events[: EVENT_SLOTS - 1]):
        event = _trace_pb2.Span.Event.FromString(raw)
        rows.append((slot, (event.name, *_exception(event.attributes))))
    if view.status:
        message = _trace_pb2.Status.FromString(view.status).message
        if message:
            rows.append((EVENT_SLOTS - 1, (message, "", "")))
    return rows


def event_line(detail: bytes, slot: int) -> tuple[str, int | None]:
    """Slot ``slot`` of a span as a person reads it (its status message, or ``exception: GatewayError:
    timed out``) and the event's time (None for the status message)."""
    view = _View.FromString(detail)
    for found, columns in _event_rows(view):
        if found == slot:
            at = _trace_pb2.Span.Event.FromString(view.events[slot]).time_unix_nano if slot < len(view.events) else None
            return ": ".join(c for c in columns if c), at
    return "", None


def log_doc(body: str, attributes: dict[str, Any]) -> TextRow:
    """The ``texts`` row of a log record: its body, and its exception's type and message."""
    kind, message = (attributes.get(k) for k in _EXCEPTION_KEYS)
    return body, kind if isinstance(kind, str) else "", message if isinstance(message, str) else ""


def log_line(body: str, attributes: dict[str, Any]) -> str:
    """A log record as a match shows it: the body, then its exception on a line of its own."""
    _, kind, message = log_doc(body, attributes)
    exception = ": ".join(p for p in (kind, message) if p)
    return f"{body}\n{exception}" if exception else body


def _kv(key: str, which: str, value: Any) -> bytes:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    return KeyValue(key=key, value=AnyValue(**{which: value})).SerializeToString()  # type: ignore[no-any-return]


def indexed(text: str) -> bool:
    """Whether every attribute value that reads as ``text`` has a token: not an array or a map
    (``[1, 2]``), not a NaN or infinity (their bit patterns vary).  A search for such a text
    decodes spans instead of asking the index."""
    return text[:1] not in ("[", "{") and text.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity")


def attribute_encodings(key: str, text: str) -> list[bytes]:
    """The ``KeyValue`` bytes of ``key`` = ``text`` read every way a value can be written: string, int, bool,
    double, bytes (a store without the token index looks for these bytes in the stored span)."""
    kvs = [_kv(key, "string_value", text)]
    stripped = text.strip()
    if re.fullmatch(r"[+-]?\d{1,19}", stripped):
        number = int(stripped)
        if -(2**63) <= number < 2**63:
            kvs.append(_kv(key, "int_value", number))
            kvs.append(_kv(key, "double_value", float(number)))
    elif re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?", stripped):
        value = float(stripped)
        kvs.append(_kv(key, "double_value", value))
        if value.is_integer() and abs(value) < 2**63:
            kvs.append(_kv(key, "int_value", int(value)))
    if text in ("true", "false"):
        kvs.append(_kv(key, "bool_value", text == "true"))
    if _BASE64.fullmatch(text):  # a bytes value reads as its base64 (as the store decodes it)
        kvs.append(_kv(key, "bytes_value", base64.b64decode(text)))
    return list(dict.fromkeys(kvs))


def attribute_tokens(key: str, text: str) -> list[str]:
    """The tokens of ``key`` = ``text`` read every way a value can be written: string, int, bool, double."""
    return sorted({_kv_token(kv) for kv in attribute_encodings(key, text)})


def value_matches(value: Any, text: str) -> bool:
    """Whether a decoded attribute value reads as ``text`` (the check each index hit goes through)."""
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, str):
        return value == text
    if isinstance(value, int):
        try:
            return value == int(text.strip())
        except ValueError:
            try:
                return float(text) == value
            except ValueError:
                return False
    if isinstance(value, float):
        try:
            return struct.pack("<d", float(text)) == struct.pack("<d", value) or float(text) == value
        except ValueError:
            return False
    return False


# --- highlights -----------------------------------------------------------------------------------


def _token_character(c: str) -> bool:
    # unicode61's token characters: letters, digits, private use, and the combining marks that
    # follow a letter in decomposed text (folded away below); anything else separates.
    category = unicodedata.category(c)
    return category[0] in "LNM" or category == "Co"


def _fold(token: str) -> str:
    # unicode61: lower case, and diacritics removed (a decomposed letter without its marks).
    decomposed = unicodedata.normalize("NFD", token.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[tuple[int, int, str]]:
    """(start, end, folded word) of each word of ``text``, as FTS5's unicode61 tokenizer splits and folds them."""
    out: list[tuple[int, int, str]] = []
    start = -1
    for i, c in enumerate(text):
        if c.isascii():  # the common case without a table lookup
            inside = c.isalnum()
        else:
            inside = _token_character(c)
        if inside and start < 0:
            start = i
        elif not inside and start >= 0:
            out.append((start, i, _fold(text[start:i])))
            start = -1
    if start >= 0:
        out.append((start, len(text), _fold(text[start:])))
    return out


def highlights(text: str, phrases: Iterable[tuple[str, bool]]) -> tuple[tuple[int, int], ...]:
    """[start, end) offsets in ``text`` of each phrase's words (``prefix``: its last word may go on)."""
    found = words(text)
    spans: list[tuple[int, int]] = []
    for phrase, prefix in phrases:
        wanted = [w for _, _, w in words(phrase)]
        if not wanted:
            continue
        n = len(wanted)
        for i in range(len(found) - n + 1):
            window: Sequence[tuple[int, int, str]] = found[i : i + n]
            if all(w[2] == t for w, t in zip(window[:-1], wanted[:-1], strict=True)) and (
                window[-1][2].startswith(wanted[-1]) if prefix else window[-1][2] == wanted[-1]
            ):
                spans.append((window[0][0], window[-1][1]))
    return tuple(sorted(set(spans)))
