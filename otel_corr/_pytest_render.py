"""A failing test's report section: its traces as ``otel-corr trace`` draws them, then its other log lines.

Built only when a test fails.  The spans take the backend's own path: in-process spans are encoded to OTLP
by the exporter's encoder and decoded by the backend's decoder, spans received from live servers are
decoded the same way, and the trace is drawn by the waterfall ``otel-corr trace`` prints (plain text, as it
prints when piped).  Bounded: the last :data:`MAX_TRACES` traces, :data:`MAX_SPANS` spans of each and the
last :data:`MAX_LINES` log lines outside them, each cut said in the section.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Iterable
from typing import Any

from ._pytest_capture import MAX_ITEMS, TestRun
from ._render import _WIDTH, _last_frames, _lines
from ._terminal import visible
from .server._jaeger import v1_trace
from .server._model import LogRecord, Span
from .server._otlp import decode_spans, expand

__all__ = ["MAX_LINES", "MAX_MESSAGE", "MAX_SPANS", "MAX_TRACES", "section"]

MAX_TRACES = 10
MAX_SPANS = 200
MAX_LINES = 50
MAX_MESSAGE = 1000  # characters of a log message shown

_MISSING = "-"  # what otel-corr's stamp writes outside a request
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}  # OpenTelemetry's names, as otel-corr sends them


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _spans(readable: list[Any]) -> tuple[list[Span], int]:
    """In-process spans as the backend holds them; (spans, how many could not be read)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    try:
        spans, bad, _ = decode_spans(encode_spans(readable))
        batches: list[list[Span]] = [spans]
    except Exception:  # one broken span: the others one by one
        batches, bad = [], 0
        for one in readable:
            try:
                decoded, rejected, _ = decode_spans(encode_spans([one]))
            except Exception:
                bad += 1
                continue
            batches.append(decoded)
            bad += rejected
    return [s for batch in batches for s in batch], bad


def _expanded(spans: Iterable[Span]) -> tuple[list[Span], int]:
    """Spans with their attributes and events decoded from what the decoder kept; (spans, unreadable)."""
    out, bad = [], 0
    for span in spans:
        try:
            if span.raw:
                expand(span, span.raw)
                span.raw = b""
            out.append(span)
        except Exception:
            bad += 1
    return out, bad


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # the logging call's own mistake (bad %-args): what it passed, as the record holds it
        return f"{record.msg!r} % {record.args!r}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE} more characters)"


def _log(record: logging.LogRecord, trace_id: int, span_id: int) -> LogRecord:
    attributes: dict[str, Any] = {}
    if record.exc_info and record.exc_info[1] is not None:
        attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
    elif record.exc_text:
        attributes["exception.stacktrace"] = record.exc_text
    request_id = record.__dict__.get("request_id")
    return LogRecord(
        time_ns=int(record.created * 1e9),
        severity_number=record.levelno,
        severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
        body=_cut(_message(record)),
        service="",
        trace_id=trace_id.to_bytes(16, "big") if trace_id else None,
        span_id=span_id.to_bytes(8, "big") if span_id else None,
        logger=record.name,
        request_id=request_id if isinstance(request_id, str) and request_id != _MISSING else None,
        attributes=attributes,
    )


def _loose(record: LogRecord) -> list[str]:
    """A log record outside the traces shown, as the waterfall writes one under its span."""
    when = dt.datetime.fromtimestamp(record.time_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    level = record.severity_text or str(record.severity_number)
    text = f"{when} {level:<5} {record.logger}: {record.body}"
    if record.request_id:
        text += f"  request {record.request_id}"
    lines = [visible(text)]
    stack = record.attributes.get("exception.stacktrace")
    if stack:
        frames = _last_frames(str(stack))
        frames.append(str(stack).rstrip("\n").splitlines()[-1].strip())
        lines.extend("  " + visible(frame) for frame in frames)
    return lines


def section(test: TestRun, link: str | None = None, running: list[Any] | None = None) -> str:
    """The report section of ``test`` ("" when it produced nothing).

    ``link``: the backend's page, if the spans were sent there; ``running``: the test's spans not ended yet.
    """
    decoded, unreadable = _spans(test.spans + (running or []))
    spans, bad = _expanded(decoded + test.received_spans)
    unreadable += bad
    seen: set[tuple[bytes, bytes]] = set()
    by_trace: dict[bytes, list[Span]] = {}
    for span in spans:
        key = (span.trace_id, span.span_id)
        if key not in seen:  # a span both kept in-process and received (an app pointed at the plugin too)
            seen.add(key)
            by_trace.setdefault(span.trace_id, []).append(span)
    logs = [_log(*entry) for entry in test.records]
    for received in test.received_logs:
        received.body = _cut(received.body)
        logs.append(received)
    logs.sort(key=lambda r: r.time_ns)
    ids = {trace_id: {s.span_id for s in group} for trace_id, group in by_trace.items()}
    in_trace: dict[bytes, list[LogRecord]] = {}
    loose: list[LogRecord] = []
    for record in logs:
        if record.trace_id in ids and record.span_id in ids[record.trace_id]:
            in_trace.setdefault(record.trace_id, []).append(record)
        else:
            loose.append(record)
    if not by_trace and not loose and not unreadable and not test.dropped:
        return ""

    traces = sorted(by_trace.values(), key=lambda group: min(s.start_ns for s in group))
    lines = [
        f"{_plural(len(traces), 'trace')}, {_plural(len(seen), 'span')}, {_plural(len(logs), 'log line')}"
        f" while {visible(test.nodeid)} ran"
    ]
    if len(traces) > MAX_TRACES:
        lines.append(f"({_plural(len(traces) - MAX_TRACES, 'earlier trace')} left out: the last {MAX_TRACES} follow)")
        traces = traces[-MAX_TRACES:]
    for group in traces:
        group.sort(key=lambda s: s.start_ns)
        shown = group[:MAX_SPANS]
        kept_ids = {s.span_id for s in shown}
        # Only the lines of spans shown, at most MAX_LINES of them (the last): a trace of 5,000 lines
        # would otherwise print them all, and the lines of spans left out went silently.
        under = [r for r in in_trace.get(group[0].trace_id, []) if r.span_id in kept_ids]
        hidden_lines = len(in_trace.get(group[0].trace_id, [])) - len(under)
        if len(under) > MAX_LINES:
            hidden_lines += len(under) - MAX_LINES
            under = under[-MAX_LINES:]
        trace = v1_trace(shown, under)
        lines.append("")
        lines.extend(line.head + line.text for line in _lines(trace, _WIDTH))
        if len(group) > MAX_SPANS:
            lines.append(f"({_plural(len(group) - MAX_SPANS, 'later span')} of this trace left out)")
        if hidden_lines:
            lines.append(f"({_plural(hidden_lines, 'log line')} of this trace left out)")
        if link:
            lines.append(f"open {visible(link)}/trace/{trace['traceID']}")
    if loose:
        lines.append("")
        lines.append("log lines outside these traces:" if traces else "log lines:")
        if len(loose) > MAX_LINES:
            lines.append(f"({_plural(len(loose) - MAX_LINES, 'earlier line')} left out)")
            loose = loose[-MAX_LINES:]
        for record in loose:
            lines.extend(_loose(record))
    if test.dropped or unreadable:
        lines.append("")
        if test.dropped:
            lines.append(f"({test.dropped} spans or log lines over the {MAX_ITEMS} of each kept per test left out)")
        if unreadable:
            lines.append(f"({_plural(unreadable, 'span')} that could not be read left out)")
    return "\n".join(lines) + "\n"
