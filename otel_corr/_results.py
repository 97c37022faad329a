"""The terminal list of ``otel-corr find``: one block per request, newest first, its matched lines under it.

On a terminal (stdout a TTY and ``NO_COLOR`` unset) the matched words are bold and reversed; piped or
redirected the output is plain text, one request's header per line, for grep.  Everything shown came from
whoever sent the spans and logs, or from whatever answers at ``--url``: each piece is made visible
(``_terminal.visible``) *after* the text is cut at the highlights, so an escape never splits or shifts one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, TextIO

from ._settings import env_text
from ._terminal import visible

__all__ = ["colour_wanted", "marked", "render_results"]

#: The most characters of a matched line shown, around its first highlight (`otel-corr trace` has it whole).
SHOWN = 300
_HIGHLIGHT, _BOLD, _DIM, _RED, _RESET = "\x1b[1;7m", "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"
_KINDS = {"log": "log", "event": "event", "attribute": "attribute", "span": "span", "id": "ID"}


def colour_wanted(stream: TextIO) -> bool:
    """ANSI styles only on a terminal, and not when ``NO_COLOR`` is set to anything (https://no-color.org)."""
    return stream.isatty() and env_text("NO_COLOR") is None


def _ranges(highlights: Any, length: int) -> list[tuple[int, int]]:
    """The well-formed ``[start, end)`` ranges within ``length``, in order, overlaps merged away."""
    out: list[tuple[int, int]] = []
    if not isinstance(highlights, list):
        return out
    for item in highlights:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            continue
        start, end = item
        if type(start) is int and type(end) is int and 0 <= start < end <= length:
            out.append((start, end))
    return sorted(out)


def marked(text: str, highlights: Sequence[Sequence[int]] | Any, *, colour: bool, shown: int = SHOWN) -> str:
    """``text`` with its highlighted ranges (code-point offsets, as Python indexes) bold and reversed when
    ``colour``; a line longer than ``shown`` is cut to a window around its first highlight, with ``…``."""
    ranges = _ranges(highlights, len(text))
    start, end = 0, len(text)
    if len(text) > shown:
        start = max(0, min((ranges[0][0] if ranges else 0) - 60, len(text) - shown))
        end = start + shown
    parts = ["…"] if start else []
    at = start
    for a, b in ranges:
        a, b = max(a, at), min(b, end)
        if a >= b:
            continue
        parts.append(visible(text[at:a]))
        word = visible(text[a:b])
        parts.append(f"{_HIGHLIGHT}{word}{_RESET}" if colour else word)
        at = b
    parts.append(visible(text[at:end]))
    if end < len(text):
        parts.append("…")
    return "".join(parts)


def _when(time_ns: Any) -> str:
    try:
        moment = dt.datetime.fromtimestamp(int(time_ns) / 1e9)
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "?"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _header(result: dict[str, Any], colour: bool) -> str:
    method, route = result.get("method"), result.get("route")
    name = f"{method} {route}" if method and route else str(result.get("name") or "")
    status = result.get("status")
    error = result.get("error") is True or (type(status) is int and status >= 500)
    status_text = str(status) if status is not None else ("error" if error else "-")
    fields = [
        _when(result.get("time_ns")),
        visible(str(result.get("service") or "?")),
        f"{_BOLD}{visible(name)}{_RESET}" if colour else visible(name),
        f"{_RED}{visible(status_text)}{_RESET}" if colour and error else visible(status_text),
        _duration(result.get("duration_ms")),
        f"trace {visible(str(result.get('trace_id') or '?'))}",
    ]
    if result.get("request_id"):
        fields.append(f"request {visible(str(result['request_id']))}")
    return "  ".join(fields)


def render_results(answer: dict[str, Any], open_hint: str, out: TextIO, *, colour: bool) -> int:
    """Print the results of ``/api/search`` (``answer``) to ``out``; return how many requests were listed.

    ``open_hint`` is the command that opens one, with ``{id}`` where its trace ID goes.
    """
    results = [r for r in answer.get("results") or [] if isinstance(r, dict)]
    for result in results:
        print(_header(result, colour), file=out)
        matches = result.get("matches")
        for match in matches if isinstance(matches, list) else []:
            if not isinstance(match, dict):
                continue
            kind = _KINDS.get(str(match.get("kind")), "match")
            label = f"{_DIM}{kind:<9}{_RESET}" if colour else f"{kind:<9}"
            text = marked(str(match.get("text") or ""), match.get("highlights"), colour=colour)
            print(f"    {label}  {text}", file=out)
        print(file=out)
    if results:
        first = visible(str(results[0].get("trace_id") or ""))
        command = open_hint.replace("{id}", first)
        print(f"{_plural(len(results), 'request')} found; open one with: {command}", file=out)
    if answer.get("complete") is False:
        print("The search ran out of time: there may be more (narrow --since or name a --service).", file=out)
    return len(results)
