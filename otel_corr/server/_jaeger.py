"""Stored records in Jaeger's two query models: v1 UI JSON and api_v3 OTLP JSON.

v1 follows ``internal/uimodel/model.go`` in jaegertracing/jaeger: µs times,
a ``processes`` map (``p1``, ``p2``… in first-seen order), ``references``,
typed ``tags``, span events as ``logs``.  Jaeger stores no log records; we add
each correlated log record to its span's ``logs`` too (fields ``event``,
``level``, ``message``, ``logger``), so stock Jaeger tooling shows them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._ids import jaeger_trace_id
from ._model import KIND_NAMES, LogRecord, Span
from ._otlp import decode_spans, expand, parse_traces

__all__ = [
    "any_value",
    "transform_otlp",
    "v1_envelope",
    "v1_error",
    "v1_trace",
    "v3_resource_spans",
    "v3_trace_summary",
]

_MAX_SAFE_INT = 2**53 - 1
_STATUS = {1: "OK", 2: "ERROR"}


def v1_envelope(data: Any, total: int = 0, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def v1_error(code: int, message: str) -> dict[str, Any]:
    return v1_envelope(None, errors=[{"code": code, "msg": message}])


def _tag(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        # Jaeger sends int64s a JS number cannot hold as strings (ui_01.json).
        return {"key": key, "type": "int64", "value": value if abs(value) <= _MAX_SAFE_INT else str(value)}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value, default=str, separators=(",", ":"))}


def _log_fields(record: LogRecord) -> list[dict[str, Any]]:
    fields = [
        _tag("event", "log"),
        _tag("level", record.severity_text or str(record.severity_number)),
        _tag("message", record.body),
    ]
    if record.logger:
        fields.append(_tag("logger", record.logger))
    stack = record.attributes.get("exception.stacktrace")
    if stack:
        fields.append(_tag("stack", stack))
    return fields


def v1_trace(spans: list[Span], logs: list[LogRecord]) -> dict[str, Any]:
    """One trace in Jaeger's v1 UI model."""
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, str] = {}
    by_span: dict[bytes, list[LogRecord]] = {}
    for record in logs:
        if record.span_id is not None:
            by_span.setdefault(record.span_id, []).append(record)
    out_spans = []
    trace_hex = jaeger_trace_id(spans[0].trace_id) if spans else ""
    for s in spans:
        key = json.dumps([s.service, s.resource], sort_keys=True, default=str)
        pid = process_ids.get(key)
        if pid is None:
            pid = process_ids[key] = f"p{len(process_ids) + 1}"
            processes[pid] = {
                "serviceName": s.service,
                "tags": [_tag(k, v) for k, v in s.resource.items() if k != "service.name"],
            }
        tags = [_tag(k, v) for k, v in s.attributes.items()]
        tags.append(_tag("span.kind", KIND_NAMES.get(s.kind, "internal")))
        if s.scope:
            tags.append(_tag("otel.scope.name", s.scope))
        if s.scope_version:
            tags.append(_tag("otel.scope.version", s.scope_version))
        if s.status in _STATUS:
            tags.append(_tag("otel.status_code", _STATUS[s.status]))
            if s.status_message:
                tags.append(_tag("otel.status_description", s.status_message))
            if s.status == 2:
                tags.append(_tag("error", True))
        references = []
        if s.parent_id is not None:
            references.append({"refType": "CHILD_OF", "traceID": trace_hex, "spanID": s.parent_id.hex()})
        for link in s.links:
            references.append({"refType": "FOLLOWS_FROM", "traceID": link["t"].lstrip("0") or "0", "spanID": link["s"]})
        span_logs = [
            {"timestamp": e["t"] // 1000, "fields": [_tag("event", e["n"]), *(_tag(k, v) for k, v in e["a"].items())]}
            for e in s.events
        ]
        span_logs += [{"timestamp": r.time_ns // 1000, "fields": _log_fields(r)} for r in by_span.get(s.span_id, [])]
        span_logs.sort(key=lambda entry: entry["timestamp"])
        out_spans.append(
            {
                "traceID": trace_hex,
                "spanID": s.span_id.hex(),
                "operationName": s.name,
                "references": references,
                "startTime": s.start_ns // 1000,
                "duration": s.duration_ns // 1000,
                "tags": tags,
                "logs": span_logs,
                "processID": pid,
                "warnings": None,
            }
        )
    return {"traceID": trace_hex, "spans": out_spans, "processes": processes, "warnings": None}


def any_value(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP/JSON AnyValue."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": _kvs(value)}}
    return {"stringValue": str(value)}


def _kvs(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def v3_resource_spans(spans: list[Span]) -> list[dict[str, Any]]:
    """Spans as OTLP/JSON ``resourceSpans`` (hex IDs, string int64s), grouped by resource and scope."""
    groups: dict[str, dict[str, Any]] = {}
    for s in spans:
        rkey = json.dumps(s.resource, sort_keys=True, default=str)
        group = groups.get(rkey)
        if group is None:
            group = groups[rkey] = {"resource": {"attributes": _kvs(s.resource)}, "scopes": {}}
        scope = group["scopes"].setdefault(
            (s.scope, s.scope_version), {"scope": {"name": s.scope, "version": s.scope_version}, "spans": []}
        )
        span: dict[str, Any] = {
            "traceId": s.trace_id.hex(),
            "spanId": s.span_id.hex(),
            "name": s.name,
            "kind": s.kind,
            "startTimeUnixNano": str(s.start_ns),
            "endTimeUnixNano": str(s.start_ns + s.duration_ns),
            "attributes": _kvs(s.attributes),
            "events": [{"timeUnixNano": str(e["t"]), "name": e["n"], "attributes": _kvs(e["a"])} for e in s.events],
            "links": [{"traceId": link["t"], "spanId": link["s"], "attributes": _kvs(link["a"])} for link in s.links],
            "status": {"code": s.status, **({"message": s.status_message} if s.status_message else {})},
        }
        if s.parent_id is not None:
            span["parentSpanId"] = s.parent_id.hex()
        if s.trace_state:
            span["traceState"] = s.trace_state
        scope["spans"].append(span)
    return [{"resource": g["resource"], "scopeSpans": list(g["scopes"].values())} for g in groups.values()]


def _counts(**counts: int) -> dict[str, int]:
    # proto3 JSON (Jaeger marshals with jsonpb's defaults) leaves out fields that are zero.
    return {k: v for k, v in counts.items() if v}


def v3_trace_summary(spans: list[Span]) -> dict[str, Any]:
    """One trace as api_v3's ``TraceSummary`` (what the UI's search results list shows).

    As Jaeger v2.20 computes it from a whole trace (``querysvc/summary.go``): the root is the
    earliest span without a parent, an orphan is a span whose parent is not in the trace, an
    error span has status ERROR; services are sorted by name.
    """
    span_ids = {s.span_id for s in spans}
    root: Span | None = None
    services: dict[str, list[int]] = {}
    orphans = 0
    for s in spans:
        counts = services.setdefault(s.service, [0, 0])
        counts[0] += 1
        counts[1] += s.status == 2
        if s.parent_id is None:
            if root is None or s.start_ns < root.start_ns:
                root = s
        elif s.parent_id not in span_ids:
            orphans += 1
    summary: dict[str, Any] = {"traceId": spans[0].trace_id.hex()}
    if root is not None:
        summary.update(rootServiceName=root.service, rootOperationName=root.name)
    summary.update(
        minStartTimeUnixNano=str(min(s.start_ns for s in spans)),
        maxEndTimeUnixNano=str(max(s.start_ns + s.duration_ns for s in spans)),
        **_counts(spanCount=len(spans), errorSpanCount=sum(s.status == 2 for s in spans), orphanSpanCount=orphans),
        services=[
            {"name": name, **_counts(spanCount=n, errorSpanCount=errors)}
            for name, (n, errors) in sorted(services.items())
        ],
    )
    return summary


def transform_otlp(
    body: bytes, *, max_items: int | None = None, admit: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """OTLP/JSON traces (what the UI's upload tab posts to ``/api/transform``) as v1 UI traces.

    One trace per trace ID in first-seen order, as Jaeger's ``otlp2traces``.  Raises
    :class:`~._otlp.BadRequest` with a one-line reason for a body that is not OTLP/JSON, and
    :class:`~._otlp.TooLarge` for more than ``max_items`` spans; ``admit`` is told the memory
    the parse will take before it is taken (as on ingest).
    """
    spans, _, _ = decode_spans(parse_traces(body, "application/json", max_items=max_items, admit=admit))
    by_trace: dict[bytes, list[Span]] = {}
    for span in spans:
        expand(span, span.raw)
        by_trace.setdefault(span.trace_id, []).append(span)
    return [v1_trace(trace_spans, []) for trace_spans in by_trace.values()]
