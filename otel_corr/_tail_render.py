"""The lines of ``otel-corr tail``: one per log record or finished request, in the page's colours.

Every field comes from whoever sent the records: each is escaped (``_terminal.visible``) before it
is printed, so a message never drives the terminal nor forges a line.  Colour only when asked
(``colour_wanted``: a terminal, no ``NO_COLOR``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ._terminal import visible

__all__ = ["event_lines", "service_colour"]

#: The page's palette (``server/static/app.js``: ``PALETTE``), the same order: a service has the same
#: colour in the terminal as on the trace page.
PALETTE = (
    "#60a5fa",
    "#34d399",
    "#f59e0b",
    "#a78bfa",
    "#f472b6",
    "#22d3ee",
    "#a3e635",
    "#94a3b8",
    "#a16207",
    "#e879f9",
)
_RESET, _DIM, _BOLD, _RED, _YELLOW = "\x1b[0m", "\x1b[2m", "\x1b[1m", "\x1b[31m", "\x1b[33m"
_FRAMES = 2  # the last frames of a traceback shown under its error
_SERVICE_WIDTH = 12


def service_colour(service: str) -> str:
    """The page's ``colour(service)``: a hash over the name's UTF-16 code units, as JavaScript sees it."""
    h = 0
    for char in service:
        code = ord(char)
        # for..of in JavaScript yields code points, and charCodeAt(0) of one above U+FFFF is its high surrogate.
        if code > 0xFFFF:
            code = 0xD800 + ((code - 0x10000) >> 10)
        h = (h * 31 + code) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"\x1b[38;2;{r};{g};{b}m"


def _text(value: Any, most: int = 2000) -> str:
    return visible(str(value if value is not None else "")[:most])


def _clock(time_ns: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(int(time_ns) / 1e9).strftime("%H:%M:%S.%f")[:-3]
    except (TypeError, ValueError, OverflowError, OSError):
        return "--:--:--.---"


def _level_style(level: str) -> str:
    upper = level.upper()
    if upper in ("ERROR", "FATAL", "CRITICAL"):
        return _RED
    if upper.startswith("WARN"):
        return _YELLOW
    return _DIM if upper in ("DEBUG", "TRACE") else ""


def _first_lines(exception: Mapping[str, Any]) -> list[str]:
    """An error's first lines: ``Type: message``, then the last frames of its traceback (file, line, code)."""
    kind, message = _text(exception.get("type"), 200), _text(exception.get("message"), 500)
    stack = str(exception.get("stacktrace") or "")
    lines = stack.rstrip("\n").splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    shown: list[str] = []
    for i in frames[-_FRAMES:]:
        shown.append(visible(lines[i].strip()[:300]))
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if following and not following.startswith(("File ", "Traceback")) and set(following) - set("^~ "):
            shown.append("  " + visible(following[:300]))
    if not kind and not message and lines:  # no type given: the traceback's own last line says it
        return [visible(lines[-1].strip()[:500]), *shown]
    return [f"{kind}{': ' if kind and message else ''}{message}", *shown]


def event_lines(event: Mapping[str, Any], *, colour: bool) -> list[str]:
    """The lines of one event of ``/api/tail`` (a log record, a finished request, a drop count); none for
    the stream's own (hello, heartbeat) or an unknown type."""
    kind = event.get("type")
    if kind == "dropped":
        count = event.get("count")
        n = count if isinstance(count, int) and not isinstance(count, bool) else 0
        note = f"… {n:,} lines dropped: terminal too slow (the store has them: otel-corr find, the page)"
        return [f"{_YELLOW}{note}{_RESET}" if colour else note]
    if kind not in ("log", "request"):
        return []
    service = _text(event.get("service"), 200)
    level = _text(event.get("level"), 8) or "-"
    request_id = _text(event.get("request_id"), 256) or "-"
    if kind == "log":
        body = _text(event.get("message"), 20000)
    else:
        status = event.get("status")
        duration = event.get("duration_ms")
        route = event.get("route") or event.get("name")
        answered = status if type(status) is int else ("ERROR" if event.get("error") is True else "-")
        ms = float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else 0.0
        body = f"{_text(event.get('method'), 16) or '-'} {_text(route, 500)} → {answered}  {ms:.1f} ms"
    when = _clock(event.get("time_ns"))
    exception = event.get("exception")
    extra = _first_lines(exception) if isinstance(exception, Mapping) else []
    if kind == "request" and extra:
        body += "  " + extra[0]  # the request line names its error; the frames are under the log record
        extra = []
    if not colour:
        head = f"{when} {service:<{_SERVICE_WIDTH}} {level:<5} {request_id}  "
        return [head + body, *(" " * 4 + line for line in extra)]
    style = _level_style(level)
    if kind == "request":
        style = _RED if level in ("ERROR", "FATAL") else _BOLD if level != "WARN" else _YELLOW
    head = (
        f"{_DIM}{when}{_RESET} {_rgb(service_colour(service))}{service:<{_SERVICE_WIDTH}}{_RESET} "
        f"{_level_style(level)}{level:<5}{_RESET} {_DIM}{request_id}{_RESET}  "
    )
    return [head + (f"{style}{body}{_RESET}" if style else body), *(f"    {_RED}{line}{_RESET}" for line in extra)]
