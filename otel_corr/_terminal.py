"""Text from elsewhere (a sender's span data, a server's answer) made safe to print to a terminal."""

from __future__ import annotations

import unicodedata

__all__ = ["visible"]


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every control or format character (Unicode Cc and Cf: ESC, C1 controls such as U+009B,
    BEL, bidi overrides, ...) written out as an escape: ESC as the four characters ``\\x1b``, U+009B as
    ``\\x9b``, a newline as ``\\n``.  Space is left as it is.

    A span name, URL or log message comes from whoever sends to the backend: printed raw, its escape
    sequences would set the terminal's title, clear it or forge lines; its newlines would forge records.  A
    caller that prints several lines on purpose (a traceback's frames) splits the text first, then escapes each.
    """
    if text.isprintable():  # the usual case: no Cc/Cf (nor other non-printables) at all
        return text
    return "".join(_escape(c) if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
