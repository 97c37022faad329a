"""The terminal answer of ``otel-corr why``: the route's JSON (``GET /api/ui/why/{id}``) as at most a dozen lines.

Pure: JSON in, lines out (``why_lines``); the CLI prints them.  The lines are, in order: the verdict's
headline; the request (entry span, duration, status, trace and request ID); each ranked cause on one line
(rank, kind, the time it explains and its share of the request, its title, its span ID), followed, for a
gap, an error, a repetition or a retry, by one indented line of what it is (the gap's two brackets; the
exception, its last frame and the chain of spans it travelled; the count and total); one line of the
critical path's top three spans by self time; one line of how the request compares with its endpoint's.
When that is more than ``MOST`` lines, the lowest-ranked causes' second lines go first, then those causes.

Everything shown came from whoever sent the spans and logs, or from whatever answers at ``--url``: each
piece is cut to a bounded length and then made visible (``_terminal.visible``), so an escape sequence or a
newline in a span name or log line never reaches the terminal, and a malformed answer prints ``?`` rather
than raising.  Colour (bold headline, red when alarming, green when calm) only when ``colour`` is true.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ._terminal import visible

__all__ = ["MOST", "why_lines"]

#: The most lines the answer takes.
MOST = 12
_TEXT = 160  # the most characters of one stored string (a name, a log line, a message) shown
_BOLD, _DIM, _RED, _GREEN, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[0m"
_KINDS = {
    "error": "error",
    "untraced": "untraced",
    "slow": "slow",
    "repeated": "repeated",
    "retried": "retried",
    "after_response": "background",
}
_CHANGES = {"new": "new", "missing": "missing", "longer": "longer", "shorter": "shorter"}


def _text(value: Any, most: int = _TEXT) -> str:
    """A stored string, cut at ``most`` characters (with ``…``), then with its control characters escaped."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return visible(text[:most] + "…" if len(text) > most else text)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ms(value: Any) -> str:
    number = _number(value)
    if number is None:
        return "? ms"
    return f"{number / 1000:.2f} s" if abs(number) >= 1000 else f"{number:.1f} ms"


def _share(value: Any) -> str:
    """A share of the request: ``83%``; past the whole (work after the response), how many times it: ``21×``."""
    number = _number(value)
    if number is None:
        return "?"
    if number > 1:
        return f"{number:.0f}×" if number >= 10 else f"{number:.1f}×"
    return f"{number * 100:.0f}%"


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _span(part: Mapping[str, Any]) -> str:
    """``name (service)``: how a span is named in a chain or a difference."""
    name, service = _text(part.get("name"), 80), _text(part.get("service"), 40)
    return f"{name} ({service})" if service else name


def _clock(time_ns: Any) -> str:
    """``HH:MM:SS.mmm `` (local time) of a time in ns given as a string, or nothing."""
    try:
        moment = dt.datetime.fromtimestamp(int(time_ns) / 1e9)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return moment.strftime("%H:%M:%S.%f")[:-3] + " "


def _bracket(side: Any) -> str:
    """One end of a quiet stretch, with its time: the log line, or the span that started or ended there."""
    side = _dict(side)
    what, text = side.get("what"), _text(side.get("text"), 80)
    if what == "log":
        said = f'log "{text}"'
    elif what == "span_start":
        said = f"start of {text}"
    elif what == "span_end":
        said = f"end of {text}"
    else:
        said = text or "?"
    return _clock(side.get("time_ns")) + said


def _second_line(cause: Mapping[str, Any]) -> str | None:
    """What a gap, an error, a repetition or a retry is, in one line; None for the other kinds."""
    kind = cause.get("kind")
    if kind == "untraced":
        gap = _dict(cause.get("gap"))
        if not gap:
            return None
        return f"between {_bracket(gap.get('before'))} and {_bracket(gap.get('after'))}"
    if kind == "error":
        error = _dict(cause.get("error"))
        if not error:
            return None
        kind_name, message = _text(error.get("type"), 80), _text(error.get("message"))
        parts = [f"{kind_name}: {message}" if message else kind_name or "?"]
        frames = [f for f in _list(error.get("frames")) if isinstance(f, str)]
        if frames:
            parts.append("at " + _text(frames[-1].strip()))
        chain = [_span(_dict(link)) for link in _list(error.get("chain"))]
        if chain:
            parts.append(" <- ".join(chain))
        return " · ".join(parts)
    if kind in ("repeated", "retried"):
        repeat = _dict(cause.get("repeat"))
        if not repeat:
            return None
        count = _number(repeat.get("count"))
        times = f"{int(count)}×" if count is not None else "?×"
        failed = _number(repeat.get("failed"))
        line = f"{times} {_text(repeat.get('name'), 80)}, {_ms(repeat.get('total_ms'))} in all"
        return line + (f", {int(failed)} failed" if failed else "")
    return None


def _cause_line(cause: Mapping[str, Any], colour: bool) -> str:
    rank = _number(cause.get("rank"))
    kind = _KINDS.get(str(cause.get("kind")), _text(cause.get("kind"), 20) or "?")
    word = f"{kind:<10}"
    if colour:
        word = f"{_RED if kind == 'error' else ''}{_BOLD}{word}{_RESET}"
    span_id = _text(cause.get("span_id"), 32)
    span = f"{_DIM}span {span_id}{_RESET}" if colour else f"span {span_id}"
    title = _text(cause.get("title")) or _span(cause)
    number = f"{int(rank)}." if rank is not None else "?."
    return f"  {number:<3} {word}  {_ms(cause.get('ms')):>9}  {_share(cause.get('share')):>4}  {title}  {span}"


def _request_line(answer: Mapping[str, Any]) -> str:
    entry = _dict(answer.get("entry"))
    status = entry.get("status")
    fields = [
        _text(entry.get("service"), 40) or "?",
        _text(entry.get("name"), 120) or "?",
        _ms(entry.get("duration_ms")),
    ]
    if status is not None or entry.get("error") is True:
        fields.append(_text(status, 10) if status is not None else "error")
    fields.append(f"trace {_text(answer.get('trace_id'), 40) or '?'}")
    request_ids = [r for r in _list(answer.get("request_ids")) if isinstance(r, str)]
    if request_ids:
        fields.append(f"request {_text(request_ids[0], 80)}")
    return "  ".join(fields)


def _critical_line(answer: Mapping[str, Any]) -> str | None:
    path = [_dict(p) for p in _list(answer.get("critical_path"))]
    path.sort(key=lambda p: _number(p.get("self_ms")) or 0.0, reverse=True)
    if not path:
        return None
    top = [f"{_span(p)} {_ms(p.get('self_ms'))}" for p in path[:3]]
    more = f" (+{len(path) - 3} more)" if len(path) > 3 else ""
    return "critical path, by self time: " + " · ".join(top) + more


def _difference(diff: Mapping[str, Any]) -> str:
    change = _CHANGES.get(str(diff.get("change")), "changed")
    count, typical = _number(diff.get("count")), _number(diff.get("typical_count"))
    times = ""
    if count is not None and typical is not None and count != typical:
        times = f" ×{int(count)} (typically ×{int(typical)})"
    delta = _number(diff.get("diff_ms"))
    sign = "+" if delta is not None and delta >= 0 else ""
    return f"{change} {_span(diff)}{times}, {sign}{_ms(delta)}"


def _normal_line(answer: Mapping[str, Any]) -> str:
    normal = answer.get("normal")
    if not isinstance(normal, dict):
        return "against normal: no earlier requests of this endpoint to compare with"
    parts = []
    median = None
    for window in _list(normal.get("windows")):
        window = _dict(window)
        percentile, count = _number(window.get("percentile")), _number(window.get("count"))
        where = _text(window.get("window"), 10) or "?"
        # "sampled": the window held more than were read; they are its newest, not all of it.
        newest = "the newest " if window.get("sampled") is True else ""
        n = f" of {newest}{int(count):,}" if count is not None else ""
        if window.get("enough") is False and count is not None:  # "p100 of 1" would read as a finding
            parts.append(f"only {int(count)} to compare in {where}")
        else:
            parts.append(f"p{percentile:.1f}{n} in {where}" if percentile is not None else f"? in {where}")
        median = median if median is not None else _number(window.get("median_ms"))
    line = "against normal: " + (", ".join(parts) or "?")
    if median is not None:
        line += f"; median {_ms(median)}"
    diffs = [_dict(d) for d in _list(normal.get("differences"))]
    if diffs:
        line += "; most different: " + _difference(diffs[0])
    return line


def why_lines(answer: Mapping[str, Any], *, colour: bool) -> list[str]:
    """The ``why`` answer ``answer`` (the route's JSON) as at most ``MOST`` terminal lines.

    Args:
        answer: the body of ``GET /api/ui/why/{id}``; parts missing or of the wrong type show as ``?``.
        colour: ANSI styles (bold, red, green, dim) on; only for a terminal that wants them.
    """
    verdict = _dict(answer.get("verdict"))
    alarming = verdict.get("alarming") is True
    headline = _text(verdict.get("headline"), 200) or "?"
    if colour:
        headline = f"{_BOLD}{_RED if alarming else _GREEN}{headline}{_RESET}"
    head = [headline, _request_line(answer)]
    tail = [line for line in (_critical_line(answer), _normal_line(answer)) if line]
    causes = [_dict(c) for c in _list(answer.get("causes"))][:5]
    blocks = [[_cause_line(c, colour)] + [f"{'':<6}{s}" for s in [_second_line(c)] if s] for c in causes]
    if not blocks:
        blocks = [["  no cause stands out"]]
    room = MOST - len(head) - len(tail)
    # Over budget: drop second lines from the last cause up, then whole causes from the last one up.
    for block in reversed(blocks):
        if sum(map(len, blocks)) <= room:
            break
        del block[1:]
    while sum(map(len, blocks)) > room:
        blocks.pop()
    return head + [line for block in blocks for line in block] + tail
