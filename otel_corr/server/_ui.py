"""The page: static assets shipped in the package, and the small JSON API it reads.

Everything a span or a log record carries is attacker-controlled (headers,
paths, messages).  The page builds its DOM with text nodes only, and every
response carries a strict Content-Security-Policy (``_guard.CSP``): no inline
script, no inline style attribute, nothing from another origin.
"""

from __future__ import annotations

import gc
import re
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..exceptions import StoreUnavailable
from ._analysis import Baseline, Window, analyse, entry_of
from ._find import Found, Match
from ._model import KIND_NAMES, LogRecord, Span
from ._otlp import attribute_text
from ._query import float_param, int_param, time_range
from ._search import SearchError, parse
from ._store_api import Shortfall, TraceStore, missing, missing_text, note_missing

__all__ = ["ui_routes"]

_STATIC = files("otel_corr.server") / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
}
_STATUS_CLASSES = {"2xx": (200, 300), "3xx": (300, 400), "4xx": (400, 500), "5xx": (500, 600)}


def _status_code(span: Span) -> int | None:
    value = span.attributes.get("http.response.status_code")
    return value if isinstance(value, int) else None


def _row(span: Span) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id.hex(),
        "time_ns": str(span.start_ns),
        "service": span.service,
        "name": span.name,
        "method": span.attributes.get("http.request.method"),
        "route": span.attributes.get("http.route"),
        "status": _status_code(span),
        "error": span.status == 2,
        "duration_ms": round(span.duration_ns / 1e6, 3),
        "request_id": span.request_id,
    }


# Above this many spans the page gets a trace without the spans' details, and asks for a span's
# when it is clicked: a 10,000-span trace was 10 MB of JSON and 0.8 s of decoding to draw bars.
_LEAN_ABOVE = 2000
_TRACE_HEX, _SPAN_HEX = re.compile(r"[0-9a-f]{32}"), re.compile(r"[0-9a-f]{16}")


def _lean_span(span: Span, url: str | None) -> dict[str, Any]:
    """What the waterfall draws: no attributes (but a client span's URL, its label), events, resource."""
    return {
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_id.hex() if span.parent_id else None,
        "service": span.service,
        "name": span.name,
        "kind": KIND_NAMES.get(span.kind, "internal"),
        "start_ns": str(span.start_ns),
        "duration_ns": str(span.duration_ns),
        "status": {0: "unset", 1: "ok", 2: "error"}.get(span.status, "unset"),
        "request_id": span.request_id,
        "attributes": {} if url is None else {"url.full": url},
    }


def _span(span: Span) -> dict[str, Any]:
    """A span whole: what the waterfall draws and what its details panel shows."""
    return {
        **_lean_span(span, None),
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": [{"time_ns": str(e["t"]), "name": e["n"], "attributes": e["a"]} for e in span.events],
        "resource": span.resource,
        "scope": span.scope,
    }


def _log(record: LogRecord) -> dict[str, Any]:
    return {
        "time_ns": str(record.time_ns),
        "span_id": record.span_id.hex() if record.span_id else None,
        "level": record.severity_text or str(record.severity_number),
        "severity": record.severity_number,
        "logger": record.logger,
        "message": record.body,
        "service": record.service,
        "exception": record.attributes.get("exception.stacktrace"),
        "attributes": {k: v for k, v in record.attributes.items() if not k.startswith("exception.")},
    }


def _match(match: Match) -> dict[str, Any]:
    return {
        "kind": match.kind,
        "span_id": match.span_id.hex() if match.span_id else None,
        "time_ns": str(match.time_ns),
        "text": match.text,
        "highlights": [list(h) for h in match.highlights],
    }


def _found(found: Found) -> dict[str, Any]:
    return {**_row(found.entry), "trace_id": found.trace_id.hex(), "matches": [_match(m) for m in found.matches]}


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6


#: How many of an endpoint's latest requests "against normal" reads (a sample, however busy the
#: endpoint: the percentile of the newest 2,000 is what a day's would be, at a fraction of the read).
_BASELINE_SAMPLE = 2000
_HOUR_NS = 3600 * 1_000_000_000


def _baseline(store: TraceStore, entry: Span, now_ns: int) -> Baseline:
    """The endpoint's requests of the hour and day up to this one's end (this one left out) and its
    median trace.  Up to the request, not up to now: yesterday's incident is compared with
    yesterday's traffic, not with this morning's."""
    until_ns = min(now_ns, entry.start_ns + entry.duration_ns)
    # One more than kept: whether the day held more than the sample.
    read = store.recent_requests(
        entry.service, entry.name, until_ns - 24 * _HOUR_NS, _BASELINE_SAMPLE + 2, until_ns=until_ns
    )
    recent = [r for r in read if r.trace_id != entry.trace_id]
    sampled = len(recent) > _BASELINE_SAMPLE
    recent = recent[:_BASELINE_SAMPLE]
    hour = [r for r in recent if r.start_ns >= until_ns - _HOUR_NS]
    windows = [
        Window("1h", sorted(r.duration_ns for r in hour), sampled and len(hour) == len(recent)),
        Window("24h", sorted(r.duration_ns for r in recent), sampled),
    ]
    pool = hour if len(hour) >= 5 else recent
    typical: list[Span] = []
    if pool:
        median = sorted(r.duration_ns for r in pool)[len(pool) // 2]
        chosen = min(pool, key=lambda r: (abs(r.duration_ns - median), -r.start_ns))
        try:
            typical = store.trace(chosen.trace_id, details=False)
        except StoreUnavailable as exc:  # the typical trace's shard is down: the answer, without it
            # ShardUnavailable names its shards; the baseline says it lacks one, the request still answers.
            note_missing(Shortfall(s.number, s.address, s.error) for s in getattr(exc, "shards", ()))
    return Baseline(entry.service, entry.name, windows, typical)


class _CollectorPause:
    """Keep the cyclic garbage collector still while ``why`` reads and analyses a big trace.

    A 10,000-span answer allocates tens of thousands of objects that all live to the end of the
    request, which is what sets off full collections: measured at 1M spans, 60 ms of a 250 ms
    answer were the collector walking objects none of which were garbage.  Paused, not tuned: the
    collector runs as before once the last analysis in progress ends (counted, since several run
    at once on the read threads), and reference counting frees everything meanwhile.
    """

    #: However many analyses overlap, the young generations are collected at least this often.
    LONGEST_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._resume = False
        self._since = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._resume = gc.isenabled()
                self._since = time.monotonic()
                gc.disable()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    if self._resume:
                        gc.enable()
                elif self._resume and time.monotonic() - self._since > self.LONGEST_S:
                    # Back-to-back analyses (a script looping over traces) would keep the collector
                    # off for good: what ingest and the event loop left meanwhile is collected here.
                    gc.collect(1)
                    self._since = time.monotonic()


_collector_paused = _CollectorPause()


def _opened(store: TraceStore, text: str) -> bytes | None:
    """The trace a lone ID opens in the search (a span ID, a base64 form ``find_trace`` does not
    take), so ``why`` answers every ID the search box does."""
    try:
        query = parse(text[:256])
    except SearchError:
        return None
    if query.lone is None or not query.ids:  # a word find_trace tried as a request ID: no text search
        return None
    return store.find(query, limit=1).opened


def _answer(data: dict[str, Any]) -> JSONResponse:
    """A page API answer; when a shard did not answer, ``missing`` names it and ``warning`` says so
    in one line (the page's banner, ``otel-corr find``/``why``'s warning on stderr)."""
    shortfalls = missing()
    if shortfalls:
        data["missing"] = [s._asdict() for s in shortfalls]
        data["warning"] = missing_text(shortfalls)
    return JSONResponse(data)


def ui_routes(store: TraceStore, find_trace: Any, reads: Any) -> list[Route]:
    """Routes of the page and its API (mounted on the query port); ``reads`` runs a query handler off the loop."""

    async def page(request: Request) -> Response:
        return Response(
            (_STATIC / "index.html").read_bytes(),
            media_type="text/html; charset=utf-8",
            headers={"cache-control": "no-store"},
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if "/" in name or name.startswith(".") or not any(name.endswith(ext) for ext in _TYPES):
            return Response("Not Found", status_code=404)
        asset = _STATIC / name
        if not asset.is_file():
            return Response("Not Found", status_code=404)
        return Response(
            asset.read_bytes(), media_type=_TYPES[name[name.rindex(".") :]], headers={"cache-control": "no-cache"}
        )

    def requests(request: Request) -> Response:
        q = request.query_params
        search = (q.get("q") or "").strip()
        if search:
            found = find_trace(store, search)
            if found is None:
                return JSONResponse({"rows": [], "found": False})
            spans = found[1]
            ids = {s.span_id for s in spans}
            roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids] or spans[:1]
            return JSONResponse({"rows": [_row(s) for s in roots[:1]], "found": True, "trace_id": found[0].hex()})
        status_class = q.get("status") or ""
        min_ms = float_param("min_ms", q["min_ms"], 0, 1e12) if q.get("min_ms") else 0.0
        limit = max(1, min(int_param("limit", q["limit"], 0, 2**31) if q.get("limit") else 50, 500))
        since_ns, until_ns = time_range(q, time.time_ns())
        spans = store.entries(
            service=q.get("service") or None,
            name_like=q.get("route") or None,
            errors_only=status_class == "error",
            min_duration_ns=int(min_ms * 1e6) if min_ms else None,
            since_ns=since_ns,
            until_ns=until_ns,
            status_range=_STATUS_CLASSES.get(status_class),
            limit=limit,
        )
        rows = [_row(span) for span in spans]
        return _answer({"rows": rows, "services": store.services()})

    def search(request: Request) -> Response:
        """The one search (``_search``'s language): the page's box, ``otel-corr find``, scripts."""
        q = request.query_params
        since_ns, until_ns = time_range(q, time.time_ns())
        query = parse(q.get("q") or "", service=q.get("service") or None, since_ns=since_ns)
        if until_ns is not None and query.until_ns is None:
            query = query._replace(until_ns=until_ns)
        limit = max(1, min(int_param("limit", q["limit"], 0, 2**31) if q.get("limit") else 20, 200))
        result = store.find(query, limit=limit)
        return _answer(
            {
                "query": query.text,
                "opened": result.opened.hex() if result.opened else None,
                "complete": result.complete,
                "results": [_found(f) for f in result.found],
            }
        )

    def trace(request: Request) -> Response:
        """A trace for the page.  ``?lean=1`` (the page asks so): above ``_LEAN_ABOVE`` spans, the spans
        come without their details (``"lean": true``) and ``/api/ui/span`` gives one when clicked."""
        lean = request.query_params.get("lean") == "1"
        found = find_trace(store, request.path_params["trace_id"], details=not lean)
        if found is None:
            return JSONResponse({"error": "no trace found for that ID"}, status_code=404)
        trace_id, spans = found
        if lean and len(spans) > _LEAN_ABOVE:
            spans.sort(key=lambda s: s.start_ns)  # the undecoded read is in stored order
            shown = []
            for s in spans:
                url = None
                if s.kind == 3 and s.raw:  # a client span's label is its URL: that attribute only
                    detail = store.unpack_detail(s.raw)
                    url = attribute_text(detail, "url.full") if b"url.full" in detail else None
                shown.append(_lean_span(s, url))
        else:
            if lean:  # small enough to send whole: decoded as a full read would have
                spans = store.trace(trace_id)
            shown = [_span(s) for s in spans]
        return JSONResponse(
            {
                "trace_id": trace_id.hex(),
                "request_ids": sorted({s.request_id for s in spans if s.request_id}),
                "lean": lean and len(spans) > _LEAN_ABOVE,
                "spans": shown,
                "logs": [_log(r) for r in store.logs(trace_id)],
            }
        )

    def span(request: Request) -> Response:
        """One span's details (attributes, events, resource): what a lean trace left out."""
        trace_id, span_id = request.path_params["trace_id"], request.path_params["span_id"]
        found = None
        if _TRACE_HEX.fullmatch(trace_id) and _SPAN_HEX.fullmatch(span_id):  # as the page got them
            found = store.span(bytes.fromhex(trace_id), bytes.fromhex(span_id))
        if found is None:
            return JSONResponse({"error": "no such span"}, status_code=404)
        return JSONResponse(_span(found))

    def why(request: Request) -> Response:
        """Why the request was slow or failed (``_analysis``): the page's panel and ``otel-corr why``."""
        with _collector_paused():
            return _why(request.path_params["trace_id"])

    def _why(text: str) -> Response:
        found = find_trace(store, text, details=False)
        if found is not None:
            trace_id, spans = found
        else:
            opened = _opened(store, text)
            if opened is None:
                return JSONResponse({"error": "no trace found for that ID"}, status_code=404)
            trace_id, spans = opened, store.trace(opened, details=False)
            if not spans:  # retention removed it between the search and the read
                return JSONResponse({"error": "no trace found for that ID"}, status_code=404)
        # Undecoded (details=False): the analysis decodes the few spans whose attributes or events
        # it reads.
        baseline = _baseline(store, entry_of(spans), time.time_ns())
        return _answer(analyse(spans, store.trace_logs(trace_id), baseline, expand_span=store.expand))

    def endpoints(request: Request) -> Response:
        window = request.query_params.get("window")
        window_s = max(60, min(int_param("window", window, 0, 2**31) if window else 3600, 30 * 86400))
        now = time.time_ns()
        since = now - window_s * 1_000_000_000
        buckets = 30
        width = (now - since) / buckets
        groups: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        # Every span that served a request (SERVER, CONSUMER, root), so a service only called by
        # other stored services still lists its endpoints.
        for row in store.endpoint_stats(since):
            groups.setdefault((row.service, row.name), []).append((row.start_ns, row.duration_ns, row.status))
        out: list[dict[str, Any]] = []
        for (service, name), items in groups.items():
            durations = sorted(d for _, d, _ in items)
            errors = sum(1 for _, _, st in items if st == 2)
            counts = [0] * buckets
            per_bucket: list[list[int]] = [[] for _ in range(buckets)]
            for start, duration, _ in items:
                i = min(buckets - 1, max(0, int((start - since) / width)))
                counts[i] += 1
                per_bucket[i].append(duration)
            out.append(
                {
                    "service": service,
                    "name": name,
                    "count": len(items),
                    "rate_per_min": round(len(items) / (window_s / 60), 3),
                    "error_rate": round(errors / len(items), 4),
                    "p50_ms": _percentile(durations, 0.50),
                    "p95_ms": _percentile(durations, 0.95),
                    "p99_ms": _percentile(durations, 0.99),
                    "series": {
                        "count": counts,
                        "p95_ms": [_percentile(sorted(b), 0.95) if b else None for b in per_bucket],
                    },
                    "mean_ms": round(statistics.fmean(durations) / 1e6, 3),
                }
            )
        out.sort(key=lambda e: (-e["count"], e["service"], e["name"]))
        # Where each of the `buckets` points of a series starts, and how long it lasts (the page's
        # sparkline tooltips show the bucket's time range).
        return _answer(
            {
                "window_s": window_s,
                "bucket_start_ms": since // 1_000_000,
                "bucket_ms": round(width / 1e6, 3),
                "endpoints": out,
            }
        )

    return [
        Route("/", page),
        Route("/trace/{trace_id:path}", page),
        Route("/endpoints", page),
        Route("/map", page),
        Route("/static/{name}", static),
        Route("/api/ui/requests", reads(requests)),
        Route("/api/ui/trace/{trace_id:path}", reads(trace)),
        Route("/api/ui/span/{trace_id}/{span_id}", reads(span)),
        Route("/api/ui/why/{trace_id:path}", reads(why)),
        Route("/api/search", reads(search)),
        Route("/api/ui/endpoints", reads(endpoints)),
    ]
