"""Cost of otel-corr's propagation hooks: outbound httpx calls and thread hops, inside a request.

Methodology
-----------
* Each configuration runs in its own fresh subprocess (this script re-invoked
  with ``--worker CONFIG``), so patched classes, global propagators and tracer
  providers of one configuration never leak into another.
* Every worker sets up the same "request context": an SDK ``TracerProvider``
  with a real ``BatchSpanProcessor`` around a no-op exporter (``_tracing.py``),
  a current, recording SERVER span started with that provider, and the request
  ID bound with ``otel_corr._context.bound_request_id(...)``.  The timed loop
  runs inside it.
* httpx rows: one ``httpx.Client`` (or ``httpx.AsyncClient`` on one asyncio
  loop) reused for every call, ``client.get(URL)`` against an in-process
  ``httpx.MockTransport`` whose handler returns 200 -- no socket, no server, so
  the rows show the client-side cost only.

  - ``none``: no instrumentation at all (otel_corr imported for
    ``bound_request_id`` only; no hook installed).
  - ``contrib``: ``HTTPXClientInstrumentor.instrument_client(client,
    tracer_provider=tp)`` (opentelemetry-instrumentation-httpx; with a
    ``MockTransport`` the class-level ``instrument()`` sees nothing, as it only
    wraps ``HTTPTransport``).  Its metrics go to the global no-op meter.
  - ``otel-corr``: ``otel_corr.instrument(<tiny ASGI app>, tracer_provider=tp)``,
    which installs the ``_send_single_request`` hook (and adds the request-ID
    propagator to the global propagator, so one more header is injected).

* thread rows: ``await asyncio.to_thread(f)`` on one loop, and
  ``ThreadPoolExecutor().submit(f).result()`` on one default-sized pool, with
  ``f`` returning ``otel_corr.current_ids()``; ``none`` (otel_corr imported, no
  hook installed) against ``otel-corr`` (``otel_corr.instrument(...)``).
* ``--warmup`` untimed operations first (default 1,000), then ``-n`` timed
  httpx calls (default 20,000) or ``--thread-ops`` timed thread hops (default
  5,000), measured with ``perf_counter_ns``; GC stays on.  (On a slow 2-core
  machine one bare MockTransport call is ~200 us, so the default run -- 10
  configurations x 5 repetitions -- takes about 4-5 minutes.)
* After the timed loop an untimed sanity check: 200 more operations between two
  ``force_flush`` calls give the exported spans per operation (the server span
  is still open, so only client spans count); the last request the mock
  handler saw tells whether ``traceparent`` / ``x-request-id`` were sent and
  whether the ``traceparent`` parent is a new client span or the server span;
  for the thread rows, whether ``current_ids()`` in the thread equalled the
  request's IDs for all 200 hops.
* Repetitions are interleaved (``for rep: for config: run``); the tables show
  the median over ``--reps`` (default 5), overheads are differences of medians
  against the ``none`` row of the same kind.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import child_env, package_versions, render_table, source_state

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
KINDS = ("httpx-sync", "httpx-async", "to-thread", "pool-submit")
FLAVOURS = {
    "httpx-sync": ("none", "contrib", "otel-corr"),
    "httpx-async": ("none", "contrib", "otel-corr"),
    "to-thread": ("none", "otel-corr"),
    "pool-submit": ("none", "otel-corr"),
}
CONFIGS = tuple(f"{kind}:{flavour}" for kind in KINDS for flavour in FLAVOURS[kind])
URL = "http://backend.test/api/items?page=2"
REQUEST_ID = "bench-request-0001"
SANITY_OPS = 200
PACKAGES = (
    "otel-corr",
    "httpx",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-httpx",
)


# --------------------------------------------------------------------------- worker side


@dataclass
class Request:
    """The request context every worker runs its loop in."""

    provider: Any
    exporter: Any
    trace_id: str
    span_id: str


def make_provider() -> tuple[Any, Any]:
    import _tracing

    return _tracing.make_provider(set_global=False)


async def tiny_app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    """The ASGI app handed to ``otel_corr.instrument`` (never called: only the hooks matter)."""
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def install_otel_corr(provider: Any) -> None:
    import otel_corr

    otel_corr.instrument(tiny_app, tracer_provider=provider)


def flushed(req: Request) -> int:
    req.provider.force_flush()
    return int(req.exporter.exported)


def traceparent_parent(headers: Any, req: Request) -> str:
    """``client`` when the sent traceparent's parent is a new span of our trace, ``server`` when it
    is the server span itself, ``other`` for anything else, ``-`` when none was sent."""
    value = headers.get("traceparent")
    if value is None:
        return "-"
    parts = value.split("-")
    if len(parts) != 4 or parts[1] != req.trace_id:
        return "other"
    return "server" if parts[2] == req.span_id else "client"


def httpx_worker(flavour: str, is_async: bool, n: int, warmup: int) -> dict[str, Any]:
    """Time ``client.get`` through a MockTransport inside the request context."""
    import httpx
    from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

    provider, exporter = make_provider()
    if flavour == "otel-corr":
        install_otel_corr(provider)
    from otel_corr._context import bound_request_id  # importing otel_corr installs no hook

    seen: list[Any] = [None]

    def handler(request: httpx.Request) -> httpx.Response:
        seen[0] = request
        return httpx.Response(200, content=b"ok")

    transport = httpx.MockTransport(handler)
    tracer = provider.get_tracer("bench")

    def check(req: Request, per: float) -> dict[str, Any]:
        headers = seen[0].headers
        return {
            "spans_per_op": per,
            "traceparent": "traceparent" in headers,
            "request_id": headers.get("x-request-id") == REQUEST_ID,
            "tp_parent": traceparent_parent(headers, req),
        }

    def in_request(body: Callable[[Request], Any]) -> Any:
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as span, bound_request_id(REQUEST_ID):
            ctx = span.get_span_context()
            return body(Request(provider, exporter, format_trace_id(ctx.trace_id), format_span_id(ctx.span_id)))

    if not is_async:
        client = httpx.Client(transport=transport)
        if flavour == "contrib":
            from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)

        def loop(k: int) -> int:
            get = client.get
            start = time.perf_counter_ns()
            for _ in range(k):
                get(URL)
            return time.perf_counter_ns() - start

        def body(req: Request) -> dict[str, Any]:
            loop(warmup)
            gc.collect()
            elapsed = loop(n)
            before = flushed(req)
            loop(SANITY_OPS)
            per = (flushed(req) - before) / SANITY_OPS
            return {"us_per_op": elapsed / n / 1000, **check(req, per)}

        with client:
            result: dict[str, Any] = in_request(body)
        return result

    async def amain() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=transport) as client:
            if flavour == "contrib":
                from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

                HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)

            async def loop(k: int) -> int:
                get = client.get
                start = time.perf_counter_ns()
                for _ in range(k):
                    await get(URL)
                return time.perf_counter_ns() - start

            with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as span, bound_request_id(REQUEST_ID):
                ctx = span.get_span_context()
                req = Request(provider, exporter, format_trace_id(ctx.trace_id), format_span_id(ctx.span_id))
                await loop(warmup)
                gc.collect()
                elapsed = await loop(n)
                before = flushed(req)
                await loop(SANITY_OPS)
                per = (flushed(req) - before) / SANITY_OPS
                return {"us_per_op": elapsed / n / 1000, **check(req, per)}

    return asyncio.run(amain())


def thread_worker(kind: str, flavour: str, n: int, warmup: int) -> dict[str, Any]:
    """Time one hop to a thread and back, ``f`` reading ``otel_corr.current_ids()`` there."""
    from opentelemetry.trace import SpanKind

    import otel_corr
    from otel_corr._context import bound_request_id

    provider, exporter = make_provider()
    if flavour == "otel-corr":
        install_otel_corr(provider)
    hooked = ThreadPoolExecutor.submit.__module__ != "concurrent.futures.thread"
    tracer = provider.get_tracer("bench")
    f = otel_corr.current_ids

    async def to_thread_loop(k: int) -> tuple[int, list[Any]]:
        got = []
        start = time.perf_counter_ns()
        for _ in range(k):
            got.append(await asyncio.to_thread(f))
        return time.perf_counter_ns() - start, got

    pool = ThreadPoolExecutor()

    def submit_loop(k: int) -> tuple[int, list[Any]]:
        got = []
        submit = pool.submit
        start = time.perf_counter_ns()
        for _ in range(k):
            got.append(submit(f).result())
        return time.perf_counter_ns() - start, got

    async def amain() -> dict[str, Any]:
        with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER), bound_request_id(REQUEST_ID):
            expected = otel_corr.current_ids()
            if kind == "to-thread":
                await to_thread_loop(warmup)
                gc.collect()
                elapsed, _ = await to_thread_loop(n)
                _, got = await to_thread_loop(SANITY_OPS)
            else:
                submit_loop(warmup)
                gc.collect()
                elapsed, _ = submit_loop(n)
                _, got = submit_loop(SANITY_OPS)
        arrived = sum(ids == expected for ids in got)
        return {
            "us_per_op": elapsed / n / 1000,
            "ids_arrived": f"{arrived}/{len(got)}",
            "hooked": hooked,
            "example": str(got[-1]),
        }

    try:
        return asyncio.run(amain())
    finally:
        pool.shutdown()


def run_worker(config: str, n: int, warmup: int) -> None:
    """Worker entry point: print one JSON line with the measurements."""
    kind, flavour = config.split(":")
    if kind.startswith("httpx"):
        result = httpx_worker(flavour, kind == "httpx-async", n, warmup)
    else:
        result = thread_worker(kind, flavour, n, warmup)
    print(json.dumps({"config": config, "n": n, **result}))


# --------------------------------------------------------------------------- parent side


def spawn_worker(config: str, n: int, warmup: int) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", config, "-n", str(n), "--warmup", str(warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {config} failed (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def ops_for(config: str, n: int, thread_ops: int) -> int:
    return n if config.startswith("httpx") else thread_ops


def collect(configs: Sequence[str], reps: int, n: int, thread_ops: int, warmup: int) -> dict[str, list[dict[str, Any]]]:
    """Interleaved repetitions: every configuration once per round, ``reps`` rounds."""
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(reps):
        for config in configs:
            results[config].append(spawn_worker(config, ops_for(config, n, thread_ops), warmup))
            print(f"  rep {rep + 1}/{reps} {config}: {results[config][-1]['us_per_op']:.2f} us", file=sys.stderr)
    return results


def median(runs: list[dict[str, Any]]) -> float:
    return statistics.median(float(r["us_per_op"]) for r in runs)


def overhead(results: dict[str, list[dict[str, Any]]], config: str) -> float | None:
    """Median µs/op over the ``none`` row of the same kind (``None`` for that row or when it is missing)."""
    kind, flavour = config.split(":")
    base = f"{kind}:none"
    if flavour == "none" or base not in results:
        return None
    return median(results[config]) - median(results[base])


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def timing_cells(results: dict[str, list[dict[str, Any]]], config: str) -> list[str]:
    us = [r["us_per_op"] for r in results[config]]
    oh = overhead(results, config)
    return [
        config,
        f"{median(results[config]):.2f}",
        f"{min(us):.2f}-{max(us):.2f}",
        "-" if oh is None else f"{oh:+.2f}",
    ]


def httpx_rows(results: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for config, runs in results.items():
        if not config.startswith("httpx"):
            continue
        last = runs[-1]
        rows.append(
            [
                *timing_cells(results, config),
                f"{last['spans_per_op']:.2f}",
                yes_no(last["traceparent"]),
                yes_no(last["request_id"]),
                last["tp_parent"],
            ]
        )
    return rows


def ratio_rows(results: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for kind in ("httpx-sync", "httpx-async"):
        ours, theirs = f"{kind}:otel-corr", f"{kind}:contrib"
        if ours not in results or theirs not in results:
            continue
        a, b = overhead(results, ours), overhead(results, theirs)
        if a is None or b is None:
            continue
        ratio = f"{a / b:.2f}" if b > 0 else "-"
        rows.append([kind, f"{a:+.2f}", f"{b:+.2f}", ratio])
    return rows


def thread_rows(results: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    rows = []
    for config, runs in results.items():
        if config.startswith("httpx"):
            continue
        last = runs[-1]
        rows.append([*timing_cells(results, config), yes_no(last["hooked"]), last["ids_arrived"]])
    return rows


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average: unknown"
    return f"load average at start: {one:.2f} (1 min), {five:.2f} (5 min)"


def run(configs: Sequence[str], reps: int, n: int, thread_ops: int, warmup: int) -> None:
    state = source_state()
    print("otel-corr propagation overhead -- in-process, inside a request (recording server span + request ID)")
    print(state)
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, {platform.platform()}")
    print(package_versions(PACKAGES))
    print(load_note())
    print(
        f"N={n} timed httpx calls / {thread_ops} thread hops per repetition (+{warmup} warm-up), "
        f"median of {reps} interleaved "
        "repetitions, one subprocess per configuration and repetition"
    )
    print(flush=True)  # before the progress lines on stderr
    start = time.monotonic()
    results = collect(configs, reps, n, thread_ops, warmup)
    elapsed = time.monotonic() - start
    http = httpx_rows(results)
    if http:
        print(f"outbound httpx GET {URL} -> MockTransport 200 (one client reused)")
        headers = ["config", "median us/op", "min-max", "overhead us", "spans/op", "traceparent", "x-request-id"]
        print(render_table([*headers, "tp parent"], http))
        ratios = ratio_rows(results)
        if ratios:
            print()
            print(render_table(["client", "otel-corr overhead", "contrib overhead", "otel-corr/contrib"], ratios))
        print()
    threads = thread_rows(results)
    if threads:
        print("thread hop: await asyncio.to_thread(f) / ThreadPoolExecutor().submit(f).result(), f = current_ids()")
        print(render_table(["config", "median us/op", "min-max", "overhead us", "hooked", "IDs in thread"], threads))
        print()
    print(
        "overhead us: this row's median minus the none row's of the same kind.  spans/op, traceparent,\n"
        "x-request-id, tp parent (client: a new span of the request's trace; server: the server span),\n"
        f"IDs in thread (current_ids() in the thread == the request's): untimed check over {SANITY_OPS} more\n"
        "operations after the timed loop.  hooked: ThreadPoolExecutor.submit is otel-corr's."
    )
    print(f"wall time {elapsed:.0f} s; the machine may be shared: compare rows of one run, not runs.")
    if source_state() != state:
        print(f"\nwarning: the checkout changed during the run (started at '{state}', now '{source_state()}')")


# --------------------------------------------------------------------------- command line


def config_list(value: str) -> list[str]:
    """Configurations by full name (``httpx-sync:contrib``) or by kind (``httpx-sync``: all its rows)."""
    names: list[str] = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        if item in KINDS:
            names.extend(f"{item}:{f}" for f in FLAVOURS[item])
        elif item in CONFIGS:
            names.append(item)
        else:
            raise argparse.ArgumentTypeError(f"unknown configuration {item!r}; choose from {', '.join(CONFIGS)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="short smoke run (N=2000, 1000 hops, warm-up 200, reps=2)")
    p.add_argument("-n", "--ops", type=int, default=20_000, help="timed httpx calls per repetition")
    p.add_argument("--thread-ops", type=int, default=5_000, help="timed thread hops per repetition")
    p.add_argument("--warmup", type=int, default=1_000, help="untimed warm-up operations per worker")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5)")
    p.add_argument("--configs", type=config_list, default=None, help="comma-separated configurations or kinds")
    p.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.ops, args.thread_ops, args.warmup = 2_000, 1_000, 200
        args.reps = args.reps or 2
    args.reps = args.reps or 5
    if min(args.ops, args.thread_ops, args.reps) < 1 or args.warmup < 0:
        p.error("-n, --thread-ops and --reps must be positive, --warmup non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.ops, args.warmup)
    else:
        run(args.configs or CONFIGS, args.reps, args.ops, args.thread_ops, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
