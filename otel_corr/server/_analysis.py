"""Why was this request slow, why did it fail: one trace read the way someone on call reads it.

Pure: spans, log records and what is normal for the endpoint in, a JSON-ready answer out (the shape
is the ``/api/ui/why`` route's; the page's panel and ``otel-corr why`` render it).  No I/O here: the
route reads the store.

What it computes, each in one pass over the trace (a 10,000-span trace is read in well under the
query budget; nothing is quadratic in the number of spans or of one span's children):

* **The critical path**, the way Jaeger's UI computes it: start at the entry span's end, step into
  the child that finished last before the cursor, give the parent the time between that child's
  end and the cursor, move the cursor to the child's start and repeat; a child is clipped to its
  parent's interval first.  Written iteratively (a deep trace must not hit Python's recursion
  limit), with each span's children sorted once: the cursor only moves back, so one pointer per
  span walks its children.
* **Self time**: a span's time not covered by any child.
* **Causes**, ranked by the request time each explains (a failure is always first): the origin of
  a failure, time inside a span that no child covers (bracketed by the log lines around its
  longest quiet stretch), a slow leaf call, an N+1 run of the same operation under one parent, a
  retry loop, and work that outlived the response.
* **Against normal**: given the durations of the endpoint's recent requests and its median trace,
  this request's percentile and the spans that are new, missing, much longer or shorter.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from ._model import LazyLogs, LogRecord, Span

__all__ = ["Baseline", "Window", "analyse", "entry_of"]

_MS = 1e6
_SERVER, _CLIENT, _PRODUCER, _CONSUMER = 2, 3, 4, 5
#: Fewer same-named siblings than this is ordinary (an insert and an update); this many is a loop.
_REPEAT_MIN = 5
#: An N+1 this long is worth an alarm even when the request is not slow yet.
_REPEAT_ALARM = 10
_MAX_CAUSES = 5
#: A request slower than its endpoint's p90 and 1.5x its median is slow only if it also lost this.
_SLOWER_BY = 25 * _MS
# Fewer requests than this in a window: its percentile is not worth a verdict, nor printing.
_ENOUGH = 10
#: Of each kind, how many of the largest candidates are written out before ranking (ranking drops
#: those inside a run already told, so more than it keeps).
_CANDIDATES = 4 * _MAX_CAUSES
_MAX_DIFFERENCES = 5
#: The critical path's spans listed (by self time): a 10,000-span trace's path can hold thousands.
_MAX_PATH = 20
_TITLE = 120
_TEXT = 80
#: A frame line of a Python traceback, and the lines that join chained exceptions.
_FRAME = re.compile(r'^\s*File "')
_AT_FRAME = re.compile(r"^\s+at ")
_CHAINS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)


@dataclass(frozen=True, slots=True)
class Window:
    """The endpoint's requests in one window: their durations (ns), sorted, this request left out."""

    name: str  # "1h", "24h"
    durations: Sequence[int]
    sampled: bool = False  # True when the window held more requests than were read


@dataclass(frozen=True, slots=True)
class Baseline:
    """What is normal for the request's endpoint (see ``_ui``'s why route, which reads it)."""

    service: str
    name: str
    windows: Sequence[Window]
    typical: Sequence[Span] = field(default_factory=tuple)  # the median request's trace, or nothing


def _short(text: str, limit: int = _TEXT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(ns: float) -> float:
    return round(ns / _MS, 1)


def _fmt_ms(ns: float) -> str:
    ms = ns / _MS
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _expand_raw(span: Span) -> None:
    raise TypeError(
        "a span read with details=False keeps its detail compressed: pass the store's expand as"
        " analyse(..., expand_span=store.expand)"
    )


#: How a span read undecoded gets its details: the store keeps them compressed (``Span.raw`` of a
#: ``details=False`` read), and only it can decode them (``Store.expand``, passed to :func:`analyse`).
_EXPAND: ContextVar[Callable[[Span], None]] = ContextVar("otel_corr_why_expand", default=_expand_raw)


def _full(span: Span) -> Span:
    """The span with its attributes and events decoded (a span read with ``details=False`` keeps
    them in ``raw`` until a cause needs them)."""
    if span.raw:
        _EXPAND.get()(span)
    return span


def _end(span: Span) -> int:
    return span.start_ns + max(0, span.duration_ns)


def _http_status(span: Span) -> int | None:
    if span.http_status is not None:  # the column, read with the span
        return span.http_status
    value = span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failed(span: Span) -> bool:
    status = _http_status(span)
    return span.status == 2 or (status is not None and status >= 500)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def _name(span: Span) -> str:
    """The span's name, with the path for an outbound call named by its method only (``GET``)."""
    if span.name in _METHODS:
        url = _full(span).attributes.get("url.full") or span.attributes.get("http.url")
        if isinstance(url, str) and "://" in url:
            path = "/" + url.split("://", 1)[1].partition("/")[2].split("?", 1)[0]
            return _short(f"{span.name} {path}", 60)
    return span.name


def _label(span: Span) -> str:
    return f"{span.service} {_name(span)}"


class _Tree:
    """The trace as a tree rooted at its entry span, every child clipped to its parent's interval.

    A hostile or broken exporter can send a span that is its own ancestor, or two spans with one
    ID: each span is placed once, from the entry span down, and a cycle is cut where it closes.
    """

    def __init__(self, spans: Sequence[Span], entry: Span) -> None:
        known = {s.span_id for s in spans}
        kids: dict[bytes, list[Span]] = defaultdict(list)
        for span in spans:
            parent_id = span.parent_id
            if parent_id is not None and parent_id != span.span_id and parent_id in known:
                kids[parent_id].append(span)
        self.entry = entry
        self.parent: dict[bytes, Span] = {}
        #: span ID -> its clipped interval (spans with children, SERVER/CONSUMER spans and the
        #: entry: the ones the analysis asks); children of a span -> (clipped start, clipped end, span)
        self.interval: dict[bytes, tuple[int, int]] = {entry.span_id: (entry.start_ns, _end(entry))}
        self.children: dict[bytes, list[tuple[int, int, Span]]] = {}
        self.order: list[Span] = [entry]
        parent, interval, order = self.parent, self.interval, self.order
        entry_id = entry.span_id
        by_start = itemgetter(0, 1)
        stack = [entry]
        # Few allocations per span: a big trace is mostly leaves, and every object made here is
        # one more for the garbage collector to walk while the request waits.
        while stack:
            span = stack.pop()
            mine = kids.get(span.span_id)
            if mine is None:
                continue
            low, high = interval[span.span_id]
            placed: list[tuple[int, int, Span]] = []
            for child in mine:
                child_id = child.span_id
                if child_id in parent or child_id == entry_id:  # a cycle, or the same ID twice
                    continue
                parent[child_id] = span
                order.append(child)
                own_start = child.start_ns
                own_end = own_start + (child.duration_ns if child.duration_ns > 0 else 0)
                start = own_start if own_start > low else low
                end = own_end if own_end < high else high
                inside = start < end or (start == end and low <= start <= high)
                if inside:
                    placed.append((start, end, child))
                if child_id in kids:
                    # Entirely outside its parent (background work after the response): no part
                    # of the parent's time, but still a span of the trace, with children of its own.
                    interval[child_id] = (start, end) if inside else (own_start, own_end)
                    stack.append(child)
                elif child.kind == _SERVER or child.kind == _CONSUMER:
                    interval[child_id] = (start, end) if inside else (own_start, own_end)
            placed.sort(key=by_start)
            self.children[span.span_id] = placed


def _critical_path(tree: _Tree) -> list[tuple[Span, int, int]]:
    """The critical sections (span, start, end), latest first."""
    sections: list[tuple[Span, int, int]] = []
    children = tree.children
    entry = tree.entry
    start, end = tree.interval[entry.span_id]

    def by_end(span: Span) -> list[_Kid]:
        # Children by clipped end, latest first: the cursor only moves back, so one index walks
        # them (a child that ends at or after the cursor is never eligible again). Of children
        # that end together (clipping makes many), the longest blocked longest.
        return sorted(children.get(span.span_id, ()), key=lambda item: (-item[1], item[0]))

    # A frame: [span, start, cursor, children by end, next child to look at, first step?]; lists,
    # not objects: a 10,000-span trace's path has thousands.
    stack: list[list[Any]] = [[entry, start, end, by_end(entry), 0, True]]
    while stack:
        frame = stack[-1]
        span, low, cursor, kids, index, first = frame
        chosen = None
        while index < len(kids):
            kid = kids[index]
            index += 1
            # Jaeger: the first step takes the last-finishing child; after returning from a
            # child, only one that finished strictly before that child started.
            if kid[1] < cursor or (first and kid[1] <= cursor):
                chosen = kid
                break
        frame[4], frame[5] = index, False
        if chosen is None:
            if cursor > low:
                sections.append((span, low, cursor))
            stack.pop()
            continue
        c_start, c_end, child = chosen
        if c_end < cursor:
            sections.append((span, c_end, cursor))
        frame[2] = max(low, c_start)
        if child.span_id in children and children[child.span_id]:
            stack.append([child, c_start, c_end, by_end(child), 0, True])
        elif c_end > c_start:  # a leaf: all of its (clipped) time is on the path
            sections.append((child, c_start, c_end))
    return sections


_Kid = tuple[int, int, Span]


def _uncovered(low: int, high: int, kids: Iterable[_Kid]) -> list[tuple[int, int, _Kid | None, _Kid | None]]:
    """The parts of [low, high] no child covers (children sorted by start), each with the child
    whose end opens it and the child whose start closes it (None: the span's own start or end)."""
    gaps: list[tuple[int, int, _Kid | None, _Kid | None]] = []
    cursor, opener = low, None
    for kid in kids:
        start, end, _ = kid
        if start > cursor:
            gaps.append((cursor, min(start, high), opener, kid))
        if end > cursor:
            cursor, opener = end, kid
        if cursor >= high:
            break
    if cursor < high:
        gaps.append((cursor, high, opener, None))
    return [g for g in gaps if g[1] > g[0]]


def _overlaps(gaps: Sequence[tuple[int, int]], parts: Sequence[tuple[int, int]]) -> list[int]:
    """For each gap, how much of it the sorted, disjoint ``parts`` cover (one merge pass)."""
    out, j = [], 0
    for a, b in gaps:
        while j < len(parts) and parts[j][1] <= a:
            j += 1
        total, k = 0, j
        while k < len(parts) and parts[k][0] < b:
            total += min(b, parts[k][1]) - max(a, parts[k][0])
            k += 1
        out.append(total)
    return out


def _log_json(record: LogRecord) -> dict[str, Any]:
    return {
        "time_ns": str(record.time_ns),
        "span_id": record.span_id.hex() if record.span_id else None,
        "service": record.service,
        "level": record.severity_text or str(record.severity_number),
        "message": _short(record.body, 200),
    }


def _span_ref(span: Span) -> dict[str, Any]:
    return {"span_id": span.span_id.hex(), "service": span.service, "name": span.name}


@dataclass(slots=True)
class _Cause:
    kind: str
    span: Span
    ns: int
    title: str
    detail: list[str] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: The interval the cause covers, so smaller causes inside it are not told twice.
    covers: tuple[int, int] | None = None
    members: frozenset[bytes] = frozenset()


class _Logs:
    """The trace's log records by span and by time (sorted once)."""

    def __init__(self, logs: Sequence[LogRecord]) -> None:
        self.records: Sequence[LogRecord]
        if isinstance(logs, LazyLogs):  # in time order already: decode only what is looked at
            self.records, self.times = logs, logs.times
        else:
            self.records = sorted(logs, key=lambda r: r.time_ns)
            self.times = [r.time_ns for r in self.records]

    def between(self, low: int, high: int) -> list[LogRecord]:
        return list(self.records[bisect.bisect_left(self.times, low) : bisect.bisect_right(self.times, high)])

    def before(self, time_ns: int) -> LogRecord | None:
        i = bisect.bisect_right(self.times, time_ns)
        return self.records[i - 1] if i else None


def _bracket(what: str, text: str, span: Span | None, time_ns: int) -> dict[str, Any]:
    return {
        "what": what,
        "text": _short(text),
        "span_id": span.span_id.hex() if span is not None else None,
        "time_ns": str(time_ns),
    }


def _gap_cause(
    logs: _Logs,
    span: Span,
    low: int,
    high: int,
    before_child: _Kid | None,
    after_child: _Kid | None,
    critical_ns: int,
) -> _Cause:
    """An untraced stretch of ``span``: the log lines inside it split it, the longest part is named.

    What bounds it: the end of the child before it (or the span's start) and the start of the
    child after it (or the span's end).
    """
    left = (
        _bracket("span_end", _name(before_child[2]), before_child[2], low)
        if before_child is not None
        else _bracket("span_start", _name(span), span, low)
    )
    right = (
        _bracket("span_start", _name(after_child[2]), after_child[2], high)
        if after_child is not None
        else _bracket("span_end", _name(span), span, high)
    )
    # Log lines of this span (or of its service without a span) inside the gap split it.
    inside = [
        r
        for r in logs.between(low, high)
        if r.span_id == span.span_id or (r.span_id is None and r.service == span.service)
    ]
    points: list[tuple[int, dict[str, Any], LogRecord | None]] = [(low, left, None)]
    points += [(r.time_ns, _bracket("log", r.body, span, r.time_ns), r) for r in inside]
    points.append((high, right, None))
    best = max(range(len(points) - 1), key=lambda i: points[i + 1][0] - points[i][0])
    (t0, before, log0), (t1, after, log1) = points[best], points[best + 1]
    # A gap opened by no log line inside it: the last line the span logged before it says what
    # the code was doing when it went quiet.
    if log0 is None and before["what"] == "span_start":
        earlier = logs.before(low)
        if earlier is not None and (earlier.span_id == span.span_id) and earlier.time_ns >= span.start_ns:
            before, log0 = _bracket("log", earlier.body, span, earlier.time_ns), earlier
    quiet = t1 - t0
    words = {"log": "“{}”", "span_start": "{}", "span_end": "end of {}"}
    a = words[before["what"]].format(before["text"])
    b = words[after["what"]].format(after["text"])
    if after["what"] == "span_end" and after["span_id"] == span.span_id.hex():
        b = "the end of the span"
    if before["what"] == "span_start" and before["span_id"] == span.span_id.hex():
        a = "the start of the span"
    if quiet >= 0.8 * (high - low):
        title = f"{_fmt_ms(high - low)} untraced in {_label(span)}: between {a} and {b}"
    else:
        title = (
            f"{_fmt_ms(high - low)} untraced in {_label(span)} ({len(inside)} log lines inside);"
            f" longest quiet {_fmt_ms(quiet)}: between {a} and {b}"
        )
    if span.kind in (_CLIENT, _PRODUCER):
        # Inside an outbound call, outside the callee's span: connecting, queueing, the network.
        title = title.replace(" untraced in ", " waiting in ", 1)
        detail = ["the call's time outside the callee's span: connecting, queueing, sending, the network"]
    else:
        detail = ["no span covers this time: code the trace does not show (a sleep, a lock, a CPU loop, a call)"]
    return _Cause(
        kind="untraced",
        span=span,
        ns=critical_ns,
        title=title,
        detail=detail,
        logs=[r for r in (log0, log1) if r is not None],
        extra={"gap": {"start_ns": str(low), "end_ns": str(high), "before": before, "after": after}},
        covers=(low, high),
    )


def _repeat_key(span: Span) -> tuple[str, str]:
    if span.name not in _METHODS:  # "SELECT item", "charge card": the name says what is called
        return span.name, ""
    attrs = _full(span).attributes
    peer = attrs.get("server.address") or attrs.get("net.peer.name") or attrs.get("db.system") or ""
    return span.name, str(peer)


def _retry_key(span: Span) -> tuple[str, str]:
    if span.name not in _METHODS:
        return span.name, ""
    url = _full(span).attributes.get("url.full") or span.attributes.get("http.url") or ""
    return span.name, str(url).split("?", 1)[0]


def _shares(kids: Sequence[_Kid]) -> dict[bytes, tuple[int, int]]:
    """Each child's share of its parent's time, in one pass: (its own time not covered by an
    earlier sibling, the uncovered wait that follows it before the next child starts).

    A run of calls then costs its calls' own time and the waits after all but its last call (an
    N+1's loop overhead, a retry's backoff); two runs interleaved (two queries an item) share the
    request's time out rather than each claiming all of it.
    """
    shares: dict[bytes, tuple[int, int]] = {}
    cursor, opener = kids[0][0], b""
    for start, end, child in kids:
        if start > cursor and opener:
            own, wait = shares[opener]
            shares[opener] = (own, wait + start - cursor)
        covered_from = start if start > cursor else cursor
        shares[child.span_id] = (end - covered_from if end > covered_from else 0, 0)
        if end > cursor:
            cursor, opener = end, child.span_id
    return shares


def _run_ns(members: Sequence[_Kid], shares: dict[bytes, tuple[int, int]]) -> int:
    last = members[-1][2].span_id
    return sum(shares[s.span_id][0] + (shares[s.span_id][1] if s.span_id != last else 0) for _, _, s in members)


def _retry_chains(members: Sequence[_Kid]) -> list[list[_Kid]]:
    """Attempts that follow a failed one: each failed call and the same call made next (a retry
    loop tries again after a failure; an N+1 moves on to the next item whatever happened)."""
    chains: list[list[_Kid]] = []
    current: list[_Kid] = []
    for item in members:
        if current:
            current.append(item)
        if _failed(item[2]):
            if not current:
                current = [item]
        elif current:
            chains.append(current)
            current = []
    if len(current) >= 2:  # every attempt failed: still a loop
        chains.append(current)
    return [c for c in chains if len(c) >= 2]


def _runs(span: Span, kids: list[_Kid]) -> list[_Cause]:
    """N+1 runs and retry loops among ``span``'s children (sorted by start)."""
    out: list[_Cause] = []
    # By name first: the keys below read attributes, which a span read undecoded pays for.
    by_name: dict[str, list[_Kid]] = defaultdict(list)
    for item in kids:
        by_name[item[2].name].append(item)
    groups: dict[tuple[str, str], list[_Kid]] = defaultdict(list)
    for named in by_name.values():
        if len(named) >= 2 and (len(named) >= _REPEAT_MIN or any(_failed(s) for _, _, s in named[:-1])):
            for item in named:
                groups[_retry_key(item[2]) if len(named) < _REPEAT_MIN else _repeat_key(item[2])].append(item)
    if not groups:
        return out
    shares = _shares(kids)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        chains = _retry_chains(members)
        retried = sum(len(c) for c in chains)
        # A loop of the same call is a retry; a run of many calls with a failure or two among
        # them is an N+1 that had failures (one item's 404 is not a retry of the others).
        if chains and (len(members) < _REPEAT_MIN or retried * 2 >= len(members)):
            chain = max(chains, key=lambda c: _run_ns(c, shares))
            failed = sum(1 for _, _, s in chain if _failed(s))
            ns = _run_ns(chain, shares)
            low, high = chain[0][0], max(e for _, e, _ in chain)
            out.append(
                _Cause(
                    kind="retried",
                    span=span,
                    ns=ns,
                    title=(
                        f"{key[0]} tried {len(chain)} times ({failed} failed) under {_label(span)}:"
                        f" {_fmt_ms(ns)} with the waits between"
                    ),
                    detail=[f"first attempt failed: {_failure_text(chain[0][2])}"],
                    extra={"repeat": _repeat_json(key[0], chain, failed, ns)},
                    covers=(low, high),
                    members=frozenset(s.span_id for _, _, s in chain),
                )
            )
            continue
        if len(members) < _REPEAT_MIN:
            continue
        low, high = members[0][0], max(e for _, e, _ in members)
        busy = sum(e - s for s, e, _ in members)
        ns = _run_ns(members, shares)
        failed = sum(1 for _, _, s in members if _failed(s))
        out.append(
            _Cause(
                kind="repeated",
                span=span,
                ns=ns,
                title=(
                    f"{key[0]} called {len(members)} times under {_label(span)}: {_fmt_ms(ns)}"
                    f" (avg {_fmt_ms(busy / len(members))} each" + (f", {failed} failed)" if failed else ")")
                ),
                detail=["one call per item (N+1): fetch them in one call"],
                extra={"repeat": _repeat_json(key[0], members, failed, ns)},
                covers=(low, high),
                members=frozenset(s.span_id for _, _, s in members),
            )
        )
    return out


def _failure_text(span: Span) -> str:
    status = _http_status(span)
    exc = _exception(span)
    if exc is not None:
        return _short(f"{exc[0]}: {exc[1]}" if exc[1] else exc[0])
    if status is not None:
        return f"HTTP {status}"
    return _short(_full(span).status_message or "error")


def _repeat_json(name: str, members: Sequence[_Kid], failed: int, ns: int) -> dict[str, Any]:
    return {
        "name": name,
        "count": len(members),
        "failed": failed,
        "span_ids": [s.span_id.hex() for _, _, s in members[:5]],
        "total_ms": _ms(ns),
    }


def _exception(span: Span) -> tuple[str, str, str] | None:
    """(type, message, stack trace) of the span's last recorded exception."""
    for event in reversed(_full(span).events):
        if event.get("n") == "exception":
            attrs = event.get("a") or {}
            return (
                str(attrs.get("exception.type") or "Exception"),
                str(attrs.get("exception.message") or ""),
                str(attrs.get("exception.stacktrace") or ""),
            )
    return None


def _first_block(stacktrace: str) -> tuple[list[str], str | None]:
    """The frames and the final line of the first exception of a chained stack trace."""
    block = stacktrace
    for marker in _CHAINS:
        if marker in block:
            block = block.split(marker, 1)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    frames = [line.strip() for line in lines if _FRAME.match(line)]
    if not frames:
        # Java, JavaScript, .NET: "at …" lines, the innermost first (Python's is last).
        frames = [line.strip() for line in lines if _AT_FRAME.match(line)][:3][::-1]
        if frames:
            return frames, lines[0].strip()
    last = lines[-1].strip() if lines and not _FRAME.match(lines[-1]) else None
    return frames, last


def _logged_exception(logs: _Logs, origin: Span) -> tuple[str, str, str] | None:
    for record in logs.between(origin.start_ns, _end(origin) + 50_000_000):
        exc_type = record.attributes.get("exception.type")
        if exc_type and record.service == origin.service:
            return (
                str(exc_type),
                str(record.attributes.get("exception.message") or ""),
                str(record.attributes.get("exception.stacktrace") or ""),
            )
    return None


def _error_cause(tree: _Tree, logs: _Logs) -> _Cause | None:
    entry = tree.entry
    if not _failed(entry):
        return None
    # Walk down through failed children: the origin is the deepest failed span none of whose
    # children failed (its error is its own); of several, the deepest, then the first to end.
    origin, best = entry, (0, 0)
    stack = [(entry, 0)]
    while stack:
        span, depth = stack.pop()
        below = tree.children.get(span.span_id, ())
        failed_kids = [child for _, _, child in below if _failed(child)]
        if not failed_kids:
            rank = (depth, -_end(span))
            if rank > best or origin is entry:
                origin, best = span, rank
        stack.extend((child, depth + 1) for child in failed_kids)
    chain = [origin]
    while chain[-1] is not entry and chain[-1].span_id in tree.parent:
        chain.append(tree.parent[chain[-1].span_id])
    exc = _exception(origin)
    # No exception recorded on the origin (an HTTP 500 from an untraced server): the nearest span
    # up the chain that recorded one tells what the code saw.
    teller = next((s for s in chain if _exception(s) is not None), None)
    if exc is None and teller is not None:
        exc = _exception(teller)
    if exc is None:
        # No span recorded it, but a log line may have (``log.exception`` in the handler, the
        # server's error line): the first one of the failing service around the origin.
        exc = _logged_exception(logs, origin)
    detail: list[str] = []
    if exc is not None:
        exc_type, message, stacktrace = exc
        frames, first = _first_block(stacktrace)
        if first and any(marker in stacktrace for marker in _CHAINS):
            # A chained exception: the first block's last line is where it started.
            raised_as = f"{exc_type}: {message}" if message else exc_type
            exc_type, _, message = first.partition(":")
            message = message.strip()
            detail.append(_short(f"re-raised as {raised_as}"))
    else:
        status = _http_status(origin)
        exc_type, message, frames = (f"HTTP {status}" if status else "error"), _full(origin).status_message, []
    what = f"{exc_type}: {message}" if message else exc_type
    if frames:
        detail.append(_short(frames[-1], 110))
    if len(chain) > 1:
        detail.append(_short(" <- ".join(s.name for s in chain), 110))
    around = [r for r in logs.between(origin.start_ns, _end(origin) + 50 * 1_000_000) if r.service == origin.service]
    around = [r for r in around if r.severity_number >= 13][:2] + [r for r in around if r.severity_number < 13][-1:]
    status = _http_status(entry)
    return _Cause(
        kind="error",
        span=origin,
        # The request time it explains: the origin's own interval, inside the entry's.
        ns=max(0, min(_end(origin), _end(entry)) - max(origin.start_ns, entry.start_ns)),
        title=_short(f"{what} in {_label(origin)}" + (f" (answered {status})" if status else ""), _TITLE),
        detail=detail[:3],
        logs=sorted(around, key=lambda r: r.time_ns),
        extra={
            "error": {
                "type": exc_type,
                "message": _short(message, 200),
                "frames": [_short(f, 200) for f in frames[-3:]],
                "chain": [_span_ref(s) for s in chain],
            }
        },
    )


def _percentile(durations: Sequence[int], value: int) -> float:
    below = bisect.bisect_left(durations, value)
    equal = bisect.bisect_right(durations, value) - below
    return round(100.0 * (below + 0.5 * equal) / len(durations), 1)


def _quantile(durations: Sequence[int], q: float) -> float:
    return _ms(durations[min(len(durations) - 1, int(q * (len(durations) - 1) + 0.5))])


def _differences(
    spans: Sequence[Span], here_entry: Span, typical: Sequence[Span], there_entry: Span
) -> list[dict[str, Any]]:
    def totals(items: Sequence[Span]) -> dict[tuple[str, str], tuple[int, int, Span]]:
        out: dict[tuple[str, str], tuple[int, int, Span]] = {}
        for s in items:
            count, total, first = out.get((s.service, s.name), (0, 0, s))
            out[(s.service, s.name)] = (count + 1, total + s.duration_ns, first)
        return out

    # The entry spans are the two requests themselves: their difference is the question, not an answer.
    here = totals([s for s in spans if s is not here_entry])
    there = totals([s for s in typical if s is not there_entry])
    rows: list[dict[str, Any]] = []
    for key in here.keys() | there.keys():
        count, total, first = here.get(key, (0, 0, None))
        t_count, t_total, _ = there.get(key, (0, 0, None))
        diff = total - t_total
        if not t_count:
            change = "new"
        elif not count:
            change = "missing"
        elif abs(diff) >= max(10 * _MS, 0.5 * t_total) or count >= 2 * t_count + 3:
            change = "longer" if diff > 0 else "shorter"
        else:
            continue
        rows.append(
            {
                "change": change,
                "service": key[0],
                "name": key[1],
                "span_id": first.span_id.hex() if first is not None else None,
                "count": count,
                "typical_count": t_count,
                "ms": _ms(total),
                "typical_ms": _ms(t_total),
                "diff_ms": _ms(diff),
            }
        )
    rows.sort(key=lambda r: (-abs(float(r["diff_ms"])), str(r["service"]), str(r["name"])))
    return rows[:_MAX_DIFFERENCES]


def entry_of(spans: Sequence[Span]) -> Span:
    """The span a trace is answered for: a root without a parent, else the earliest orphan."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    # The store's entry span: a root without a parent first, then the earliest.
    return min(roots or spans, key=lambda s: (s.parent_id is not None, s.start_ns))


def analyse(
    spans: Sequence[Span],
    logs: Sequence[LogRecord],
    baseline: Baseline | None = None,
    *,
    expand_span: Callable[[Span], None] | None = None,
) -> dict[str, Any]:
    """Why this trace took the time it took, or failed (the ``/api/ui/why`` answer; see the module doc).

    Args:
        spans: every span of the trace (at least one).
        logs: the trace's log records.
        baseline: the endpoint's recent requests and its median trace, when the store has them.
        expand_span: decodes a span read with ``details=False`` (``Store.expand``); without it
            such a span is a ``TypeError`` naming the fix, never a garbled decode.
    """
    token = _EXPAND.set(expand_span or _expand_raw)
    try:
        return _analyse(spans, logs, baseline)
    finally:
        _EXPAND.reset(token)


def _analyse(spans: Sequence[Span], logs: Sequence[LogRecord], baseline: Baseline | None) -> dict[str, Any]:
    entry = entry_of(spans)
    tree = _Tree(spans, entry)
    records = _Logs(logs)
    duration = max(1, entry.duration_ns)

    sections = _critical_path(tree)
    per_span: dict[bytes, list[tuple[int, int]]] = {}
    on_path: dict[bytes, int] = {}
    owner: dict[bytes, Span] = {}
    for span, low, high in sections:
        sid = span.span_id
        if sid in owner:
            per_span[sid].append((low, high))
            on_path[sid] += high - low
        else:
            per_span[sid], on_path[sid], owner[sid] = [(low, high)], high - low, span
    critical = sorted(((ns, owner[sid]) for sid, ns in on_path.items()), key=lambda item: (-item[0], item[1].start_ns))

    causes: list[_Cause] = []
    error = _error_cause(tree, records)
    by_id = {s.span_id: s for s in tree.order}
    for parent_id, kids in tree.children.items():
        if len(kids) >= 2:
            causes.extend(_runs(by_id[parent_id], kids))
    # Every critical leaf and every untraced stretch on the path is a candidate; only the largest
    # are written out (a 10,000-span trace has thousands of small ones).
    slow: list[tuple[int, Span]] = []
    gaps: list[tuple[int, Span, int, int, _Kid | None, _Kid | None]] = []
    children = tree.children
    floor = _floor(duration)
    for ns, span in critical:
        if ns < floor:  # sorted: no later span can hold a cause that ranks
            break
        kids = children.get(span.span_id) or []
        if not kids and span.kind not in (_SERVER, _CONSUMER) and span is not entry:
            slow.append((ns, span))
            continue
        low, high = tree.interval[span.span_id]
        found = _uncovered(low, high, kids)
        covered = _overlaps([(a, b) for a, b, _, _ in found], sorted(per_span[span.span_id]))
        gaps += [(part, span, *gap) for part, gap in zip(covered, found, strict=True) if part > 0]
    for ns, span in sorted(slow, key=lambda item: -item[0])[:_CANDIDATES]:
        causes.append(
            _Cause(
                kind="slow",
                span=span,
                ns=ns,
                title=_short(f"{_label(span)} took {_fmt_ms(span.duration_ns)}", _TITLE),
                detail=[_slow_detail(span)],
                covers=(span.start_ns, _end(span)),
                members=frozenset((span.span_id,)),
            )
        )
    for ns, span, a, b, opener, closer in sorted(gaps, key=lambda item: -item[0])[:_CANDIDATES]:
        causes.append(_gap_cause(records, span, a, b, opener, closer, ns))
    # Work that outlived the response: the topmost spans that ended after the entry span did.
    entry_end = _end(entry)
    late = [
        s
        for s in tree.order[1:]
        if s.start_ns + s.duration_ns > entry_end
        and (tree.parent[s.span_id] is entry or _end(tree.parent[s.span_id]) <= entry_end)
    ]
    last = max(late, key=_end) if late else None
    # A downstream span can end a moment after its caller's response (its own access log, the
    # exporter): background work is what outlives the response by more than that.
    if last is not None and _end(last) - _end(entry) >= max(5 * _MS, 0.1 * duration):
        ns = _end(last) - _end(entry)
        causes.append(
            _Cause(
                kind="after_response",
                span=last,
                ns=ns,
                title=_short(f"{_label(last)} ran {_fmt_ms(ns)} after the response was sent", _TITLE),
                detail=["the caller did not wait for it; the trace did"],
            )
        )
    ranked = _rank(causes, error, duration)

    normal = _normal(entry, spans, baseline)
    typical_counts: dict[str, int] | None = None
    if baseline is not None and baseline.typical:
        typical_counts = {}
        for typical_span in baseline.typical:
            typical_counts[typical_span.name] = typical_counts.get(typical_span.name, 0) + 1
    verdict = _verdict(entry, ranked, normal, duration, typical_counts)
    extent = max(_end(s) for s in spans) - min(s.start_ns for s in spans)
    return {
        "trace_id": entry.trace_id.hex(),
        "request_ids": sorted({s.request_id for s in spans if s.request_id}),
        "entry": {
            "span_id": entry.span_id.hex(),
            "service": entry.service,
            "name": entry.name,
            "start_ns": str(entry.start_ns),
            "duration_ms": _ms(entry.duration_ns),
            "status": _http_status(entry),
            "error": _failed(entry),
        },
        "extent_ms": _ms(extent),
        "verdict": verdict,
        "causes": [_cause_json(i + 1, c, duration) for i, c in enumerate(ranked)],
        "critical_path": [
            {
                "span_id": span.span_id.hex(),
                "service": span.service,
                "name": span.name,
                "self_ms": _ms(ns),
                "share": round(ns / duration, 3),
            }
            for ns, span in critical[:_MAX_PATH]
        ],
        "critical_path_spans": len(critical),
        "normal": normal,
    }


def _slow_detail(span: Span) -> str:
    attrs = _full(span).attributes
    target = attrs.get("url.full") or attrs.get("db.statement") or attrs.get("db.query.text")
    if target:
        return _short(f"{'call' if span.kind == _CLIENT else 'work'}: {target}", 110)
    return "no child spans: the time is the call's or the step's own"


def _floor(duration: int) -> float:
    """Less than this is noise, not a cause: 3 % of the request, or half a millisecond."""
    return max(0.5 * _MS, 0.03 * duration)


def _rank(causes: list[_Cause], error: _Cause | None, duration: int) -> list[_Cause]:
    """Largest first; a cause inside a larger one already told (a call of an N+1 run, a wait of a
    retry loop) is dropped, and so is noise (under 3 % of the request, or half a millisecond);
    a failure leads."""
    ordered = sorted(causes, key=lambda c: (-c.ns, c.kind, c.span.start_ns))
    kept: list[_Cause] = []
    told: set[bytes] = set()
    spans_told: list[tuple[bytes, tuple[int, int]]] = []
    floor = _floor(duration)
    for cause in ordered:
        if cause.ns < floor:
            continue
        if cause.members & told:
            continue
        if cause.kind == "untraced" and cause.covers is not None:
            low, high = cause.covers
            if any(parent == cause.span.span_id and a <= low and high <= b for parent, (a, b) in spans_told):
                continue
        kept.append(cause)
        told |= cause.members
        if cause.covers is not None and cause.kind in ("repeated", "retried"):
            spans_told.append((cause.span.span_id, cause.covers))
        if len(kept) == _MAX_CAUSES:
            break
    if error is not None:
        kept = [error, *kept[: _MAX_CAUSES - 1]]
    return kept


def _cause_json(rank: int, cause: _Cause, duration: int) -> dict[str, Any]:
    return {
        "rank": rank,
        "kind": cause.kind,
        "span_id": cause.span.span_id.hex(),
        "service": cause.span.service,
        "name": cause.span.name,
        "ms": _ms(cause.ns),
        "share": round(cause.ns / duration, 3),
        "title": _short(cause.title, _TITLE),
        "detail": [_short(d, 110) for d in cause.detail[:3]],
        "logs": [_log_json(r) for r in cause.logs[:3]],
        **cause.extra,
    }


def _normal(entry: Span, spans: Sequence[Span], baseline: Baseline | None) -> dict[str, Any] | None:
    if baseline is None or not any(w.durations for w in baseline.windows):
        return None
    windows = []
    for window in baseline.windows:
        if not window.durations:
            continue
        windows.append(
            {
                "window": window.name,
                "count": len(window.durations),
                "sampled": window.sampled,
                "enough": len(window.durations) >= _ENOUGH,
                "percentile": _percentile(window.durations, entry.duration_ns),
                "median_ms": _quantile(window.durations, 0.5),
                "p95_ms": _quantile(window.durations, 0.95),
            }
        )
    typical = None
    differences: list[dict[str, Any]] = []
    if baseline.typical:
        t_entry = entry_of(baseline.typical)
        typical = {"trace_id": t_entry.trace_id.hex(), "duration_ms": _ms(t_entry.duration_ns)}
        differences = _differences(spans, entry, baseline.typical, t_entry)
    return {
        "service": baseline.service,
        "name": baseline.name,
        "windows": windows,
        "typical": typical,
        "differences": differences,
    }


def _verdict(
    entry: Span,
    causes: Sequence[_Cause],
    normal: dict[str, Any] | None,
    duration: int,
    typical_counts: dict[str, int] | None,
) -> dict[str, Any]:
    top = causes[0] if causes else None
    took = _fmt_ms(entry.duration_ns)
    if top is not None and top.kind == "error":
        return {"alarming": True, "headline": _short(f"Failed after {took}: {top.title}", _TITLE)}
    window = None
    if normal is not None:
        window = next((w for w in normal["windows"] if w["enough"]), None)
    if window is not None:
        median_ns = window["median_ms"] * _MS
        # Slow for this endpoint, by enough to be worth a look: on a 6 ms endpoint a few ms of
        # scheduler jitter is 1.5x the median and no news to anyone.
        slow = (
            window["percentile"] >= 90
            and entry.duration_ns >= 1.5 * median_ns
            and entry.duration_ns - median_ns >= _SLOWER_BY
        )
        where = (
            f"p{window['percentile']:g} of {window['count']} in the last {window['window']},"
            f" median {window['median_ms']:g} ms"
        )
    else:
        slow = False
        seen = max((w["count"] for w in normal["windows"]), default=0) if normal is not None else 0
        where = f"only {seen} other requests of this endpoint to compare" if seen else "no other requests to compare"
    loop = next(
        (
            c
            for c in causes
            if c.kind == "retried" or (c.kind == "repeated" and c.extra["repeat"]["count"] >= _REPEAT_ALARM)
        ),
        None,
    )
    if loop is not None and typical_counts is not None:
        # The endpoint's typical request makes the same calls as often (at least half as many):
        # it does this every time, and that is not news.
        if typical_counts.get(loop.extra["repeat"]["name"], 0) * 2 >= loop.extra["repeat"]["count"]:
            loop = None
    # Background work does not slow the request: it is a cause of the trace's length, not an alarm.
    big = (
        top is not None
        and top.kind != "after_response"
        and window is None
        and top.ns >= 100 * _MS
        and top.ns >= 0.5 * duration
    )
    alarming = slow or loop is not None or big
    if alarming and top is not None:
        lead = f"Slow: {took} ({where})" if slow else f"{took}"
        return {"alarming": True, "headline": _short(f"{lead}; top cause: {(loop or top).title}", _TITLE)}
    return {"alarming": False, "headline": _short(f"Nothing unusual: {took} ({where})", _TITLE)}
