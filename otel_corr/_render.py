"""The terminal waterfall of ``otel-corr trace``: rich on a TTY when installed, plain text otherwise."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

__all__ = ["render_trace"]

_WIDTH = 24


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


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


def _lines(trace: dict[str, Any]) -> list[tuple[str, str]]:
    """(style, text) lines of the waterfall."""
    spans = trace["spans"]
    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(end - start, 1)
    processes = trace.get("processes", {})
    request_ids = {str(_tags(s).get("request.id")) for s in spans if "request.id" in _tags(s)}
    services = {p["serviceName"] for p in processes.values()}
    lines = [
        (
            "bold",
            f"trace {trace['traceID']}"
            + (f"  request {', '.join(sorted(request_ids))}" if request_ids else "")
            + f"  {len(spans)} spans, {len(services)} services, {total / 1000:.1f} ms",
        )
    ]
    for depth, s in _order(spans):
        tags = _tags(s)
        offset = int((s["startTime"] - start) / total * _WIDTH)
        width = max(1, round(s["duration"] / total * _WIDTH))
        bar = " " * offset + "█" * min(width, _WIDTH - offset) + " " * max(0, _WIDTH - offset - width)
        service = processes.get(s["processID"], {}).get("serviceName", "?")
        error = tags.get("error") is True or tags.get("otel.status_code") == "ERROR"
        status = tags.get("http.response.status_code", "")
        lines.append(
            (
                "red" if error else "",
                f"{bar} {'  ' * depth}{service}: {s['operationName']}  {s['duration'] / 1000:.1f} ms"
                + (f"  {status}" if status != "" else "")
                + ("  ERROR" if error else ""),
            )
        )
        for log in s.get("logs", []):
            fields = {f["key"]: f["value"] for f in log.get("fields", [])}
            when = dt.datetime.fromtimestamp(log["timestamp"] / 1e6).strftime("%H:%M:%S.%f")[:-3]
            if fields.get("event") == "log":
                level = str(fields.get("level", ""))
                text = f"{when} {level:<5} {fields.get('logger', '')}: {fields.get('message', '')}"
                style = "red" if level.upper() in ("ERROR", "FATAL", "CRITICAL") else "dim"
            else:
                text = f"{when} event {fields.get('event', '')}"
                style = "yellow" if fields.get("event") == "exception" else "dim"
            lines.append((style, f"{' ' * _WIDTH} {'  ' * depth}  {text}"))
    return lines


def render_trace(trace: dict[str, Any], page: str | None) -> None:
    lines = _lines(trace)
    if page:
        lines.append(("", f"open {page}"))
    if sys.stdout.isatty():
        try:
            from rich.console import Console
            from rich.text import Text
        except ImportError:
            pass
        else:
            console = Console()
            for style, text in lines:
                console.print(Text(text, style=style or ""), overflow="ellipsis", no_wrap=True)
            return
    for _, text in lines:
        print(text)
