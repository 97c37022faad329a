"""The terminal waterfall of ``otel-corr trace``: rich on a TTY when installed, plain text otherwise.

Nothing is ever cut: on a terminal, long lines wrap under their own column at the terminal's width;
piped or redirected, each line is whole (for grep).  Everything shown from the trace came from whoever sent
the spans: its control characters are printed as escapes (``_terminal.visible``), never raw.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import textwrap
from typing import Any, NamedTuple

from ._terminal import visible

__all__ = ["render_trace"]

_WIDTH = 24  # the bar's width on a terminal of 80 columns or more
_FRAMES = 3  # the last frames of a traceback shown under its error


class _Line(NamedTuple):
    style: str
    head: str  # the bar and the indent: continuation lines start under the text, not under the bar
    text: str


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _order(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Depth-first by parent, children in start order; orphans at the top level."""
    ids = {s["spanID"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = next((r["spanID"] for r in s.get("references", []) if r.get("refType") == "CHILD_OF"), None)
        children.setdefault(parent if parent in ids else None, []).append(s)
    out: list[tuple[int, dict[str, Any]]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: x["startTime"]):
            out.append((depth, s))
            walk(s["spanID"], depth + 1)

    walk(None, 0)
    return out


def _client_url(tags: dict[str, Any]) -> str | None:
    """Where a client span went: ``url.full``, else ``http.url``, else the server and path it names."""
    if tags.get("span.kind") != "client":
        return None
    for key in ("url.full", "http.url"):
        if tags.get(key):
            return str(tags[key])
    host = tags.get("server.address") or tags.get("net.peer.name")
    if not host:
        return None
    port = tags.get("server.port") or tags.get("net.peer.port")
    path = tags.get("url.path") or tags.get("http.target") or ""
    scheme = tags.get("url.scheme")
    return f"{f'{scheme}://' if scheme else ''}{host}{f':{port}' if port else ''}{path}"


def _last_frames(stack: str) -> list[str]:
    """The last frames of a Python traceback (``File ...`` and its source line), without the caret lines."""
    lines = [line for line in stack.rstrip("\n").splitlines() if line.strip() and set(line.strip()) - set("^~")]
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    if not starts:  # not Python's shape: its last lines as they are
        return [line.strip() for line in lines[-_FRAMES:]]
    first = starts[-_FRAMES] if len(starts) >= _FRAMES else starts[0]
    # The frames end where the exception line starts: the last line that is not indented.
    end = next((i for i in range(len(lines) - 1, first, -1) if not lines[i].startswith(" ")), len(lines))
    shown = [line.strip() if line.lstrip().startswith('File "') else "  " + line.strip() for line in lines[first:end]]
    hidden = len(starts) - min(len(starts), _FRAMES)
    return ([f"({_plural(hidden, 'earlier frame')}: --json or the page has them all)"] if hidden else []) + shown


def _lines(trace: dict[str, Any], bar_width: int) -> list[_Line]:
    """The waterfall's lines, before wrapping."""
    spans = trace["spans"]
    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(end - start, 1)
    processes = trace.get("processes", {})
    request_ids = {str(_tags(s).get("request.id")) for s in spans if "request.id" in _tags(s)}
    services = {p["serviceName"] for p in processes.values()}
    lines = [
        _Line(
            "bold",
            "",
            f"trace {trace['traceID']}"
            + (f"  request {', '.join(sorted(request_ids))}" if request_ids else "")
            + f"  {_plural(len(spans), 'span')}, {_plural(len(services), 'service')}, {total / 1000:.1f} ms",
        )
    ]
    for depth, s in _order(spans):
        tags = _tags(s)
        offset = min(int((s["startTime"] - start) / total * bar_width), bar_width - 1)
        width = max(1, round(s["duration"] / total * bar_width))
        bar = " " * offset + "█" * min(width, bar_width - offset) + " " * max(0, bar_width - offset - width)
        service = processes.get(s["processID"], {}).get("serviceName", "?")
        error = tags.get("error") is True or tags.get("otel.status_code") == "ERROR"
        status = tags.get("http.response.status_code", "")
        url = _client_url(tags)
        lines.append(
            _Line(
                "red" if error else "",
                f"{bar} {'  ' * depth}",
                f"{service}: {s['operationName']}"
                + (f" → {url}" if url else "")
                + f"  {s['duration'] / 1000:.1f} ms"
                + (f"  {status}" if status != "" else "")
                + ("  ERROR" if error else ""),
            )
        )
        head = f"{' ' * bar_width} {'  ' * depth}  "
        events = [{f["key"]: f["value"] for f in log.get("fields", [])} for log in s.get("logs", [])]
        # An error log record and the span's exception event usually carry the same traceback: shown once.
        event_stacks = {str(e.get("exception.stacktrace")) for e in events if e.get("event") == "exception"}
        for log, fields in zip(s.get("logs", []), events, strict=True):
            when = dt.datetime.fromtimestamp(log["timestamp"] / 1e6).strftime("%H:%M:%S.%f")[:-3]
            stack = ""
            if fields.get("event") == "log":
                level = str(fields.get("level", ""))
                text = f"{when} {level:<5} {fields.get('logger', '')}: {fields.get('message', '')}"
                style = "red" if level.upper() in ("ERROR", "FATAL", "CRITICAL") else "dim"
                if fields.get("stack") and str(fields["stack"]) not in event_stacks:
                    stack = str(fields["stack"])
            elif fields.get("event") == "exception":
                kind, message = fields.get("exception.type", ""), fields.get("exception.message", "")
                text = f"{when} exception {kind}{': ' if kind and message else ''}{message}"
                style = "red"
                stack = str(fields.get("exception.stacktrace") or "")
            else:
                attributes = "  ".join(f"{k}={v}" for k, v in fields.items() if k != "event")
                text = f"{when} event {fields.get('event', '')}" + (f"  {attributes}" if attributes else "")
                style = "dim"
            lines.append(_Line(style, head, text))
            if stack:
                frames = _last_frames(stack)
                # Python's exception line, which the log message may not name, comes after its frames; other
                # languages' traces (Java's `at ...` lines) are shown by their last lines, already with it.
                if fields.get("event") == "log" and any(f.startswith('File "') for f in frames):
                    frames.append(stack.rstrip("\n").splitlines()[-1].strip())
                lines.extend(_Line(style, head + "  ", frame) for frame in frames)
    # One place for every field: the stack traces are split into lines above, so a newline left in any
    # text (a message, a name) is the sender's and is escaped with the rest: one record, one line.
    return [line._replace(text=visible(line.text)) for line in lines]


def _wrapped(line: _Line, columns: int) -> list[tuple[str, str]]:
    """``line`` as (style, text) rows of at most ``columns``, each under its own column; nothing dropped."""
    room = max(columns - len(line.head), 24)  # very deep and narrow: let the terminal fold what is left
    # A URL longer than the room stays whole, to be clicked or copied (the terminal folds it); other long
    # words (routes, paths, function names) are cut across rows.
    whole = any("://" in word and len(word) > room - 2 for word in line.text.split())
    rows = textwrap.wrap(line.text, room, break_long_words=not whole, break_on_hyphens=False, subsequent_indent="  ")
    rows = rows or [""]
    return [(line.style, (line.head if i == 0 else " " * len(line.head)) + row) for i, row in enumerate(rows)]


def render_trace(trace: dict[str, Any], page: str | None) -> None:
    """Print ``trace`` (Jaeger's v1 model) as a waterfall, then ``page``, the link to it on the page."""
    tty = sys.stdout.isatty()
    columns = shutil.get_terminal_size().columns if tty else 0
    # On a narrow terminal the bar gives up room to the names (never below 10 columns).
    bar_width = _WIDTH if not tty or columns >= 80 else max(10, columns // 4)
    lines = _lines(trace, bar_width)
    if page:
        lines.append(_Line("", "", f"open {visible(page)}"))
    rows = (
        [r for line in lines for r in _wrapped(line, columns)]
        if tty
        else [(ln.style, ln.head + ln.text) for ln in lines]
    )
    if tty:
        try:
            from rich.console import Console
            from rich.text import Text
        except ImportError:
            pass
        else:
            console = Console(highlight=False)
            for style, text in rows:
                # soft_wrap: rich neither cuts nor re-wraps the rows wrapped above.
                console.print(Text(text, style=style or ""), soft_wrap=True)
            return
    for _, text in rows:
        print(text)
