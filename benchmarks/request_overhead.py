"""Per-request overhead of otel-corr against the bare app and the alternatives.

Methodology (in-process, the default mode)
-------------------------------------------
* Each configuration runs in its own fresh subprocess (this script re-invoked
  with ``--worker CONFIG``), so imports, global providers, log-record factories
  and memory of one configuration never leak into another.
* A worker builds its app (see ``_apps.py``), then calls the ASGI app directly
  -- a prebuilt scope copied per request (the middlewares mutate it), a trivial
  ``receive`` and a ``send`` that discards -- on one asyncio loop, no server and
  no HTTP client.  ``--warmup`` requests first (default 2,000), then ``-n``
  timed requests (default 20,000) measured with ``perf_counter_ns``.  GC stays
  on, as in production.
* Every configuration logs one line per request through the same root handler
  (formatter -> ``/dev/null``); every traced configuration uses an SDK
  ``TracerProvider`` with a real ``BatchSpanProcessor`` around a no-op exporter.
* After the timed loop a worker reports its RSS (``VmRSS``) and runs an untimed
  sanity check: 200 more requests between two ``force_flush`` calls give the
  exported spans per request, and the last response's status and whether it
  carried an ``X-Request-ID``.
* ``sdk-span-floor`` has no app: it times ``start_span(...).end()`` of one SDK
  server span through the same batch processor -- the cost floor of any tracer.
  In such a tight loop the SDK's code and data stay hot in the CPU caches, so
  ``asgi-span-floor`` (an extra row) pays the same plain span inside the raw
  ASGI request path, where it is interleaved with the app's own work.
* Repetitions are interleaved (``for rep: for config: run``) so slow drift of
  the machine hits every configuration alike; the table shows the median over
  ``--reps`` (default 5), overheads are differences of medians against the
  configuration's bare row.

End-to-end mode (``--e2e``)
---------------------------
Starts ``python -m uvicorn _apps:app`` (one worker, loopback, no access log)
for each configuration in turn and drives it with
``wrk -t2 -c32 -d<duration>s`` after a short wrk warm-up; repetitions are
interleaved the same way (``--reps``, default 1 to keep the run short) and the
median requests/s is reported.

Targets are printed with PASS/MISS for information only; the exit code is 0
unless a worker or server fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import child_env, package_versions, render_table, source_state, worker_json

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
FLOOR = "sdk-span-floor"
CONFIGS = (
    "bare-fastapi",
    "otel-corr-fastapi",
    "stacked-fastapi",
    "fastapi-builtin-span",
    "bare-asgi",
    "otel-corr-asgi",
    "asgi-span-floor",
    "bare-django",
    "otel-corr-django",
    FLOOR,
)
E2E_CONFIGS = ("bare-fastapi", "otel-corr-fastapi", "stacked-fastapi")
# otel-corr with its shortcuts through other projects' internals (otel_corr/_compat.py) turned off: "-public"
# all of them, "-no-<name>" one.  Not in the default run; name them with --configs.
SHORTCUTS = ("span", "sampler", "propagator")
SHORTCUT_CONFIGS = (
    "otel-corr-fastapi-public",
    "otel-corr-asgi-public",
    *(f"otel-corr-asgi-no-{name}" for name in SHORTCUTS),
)
BASELINE = {
    "otel-corr-fastapi": "bare-fastapi",
    "stacked-fastapi": "bare-fastapi",
    "fastapi-builtin-span": "bare-fastapi",
    "otel-corr-asgi": "bare-asgi",
    "asgi-span-floor": "bare-asgi",
    "otel-corr-django": "bare-django",
    **{c: "bare-fastapi" if "fastapi" in c else "bare-asgi" for c in SHORTCUT_CONFIGS},
}
SANITY_REQUESTS = 200
RESULT_HEADERS = (
    "config",
    "median us/req",
    "min-max",
    "overhead us",
    "RSS MB",
    "dRSS MB",
    "spans/req",
    "status",
    "X-Req-ID",
)
LEGEND = """\
overhead us / dRSS MB: this row's median minus its bare row's (bare-fastapi for the FastAPI rows, bare-asgi
for otel-corr-asgi and asgi-span-floor, bare-django for otel-corr-django); sdk-span-floor shows its own cost.
spans/req, status, X-Req-ID: untimed sanity check after the timed loop (200 requests between two force_flush
calls, last response)."""
REQUEST_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]
PACKAGES = (
    "otel-corr",
    "fastapi",
    "starlette",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-fastapi",
    "opentelemetry-instrumentation-logging",
    "asgi-correlation-id",
    "uvicorn",
    "django",
)


# --------------------------------------------------------------------------- worker side


def rss_mb() -> float:
    """Resident set size of this process now, in MB (peak RSS where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scope_factory() -> Callable[[], dict[str, Any]]:
    """A function returning a fresh copy of one prebuilt HTTP scope."""
    base: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    def new_scope() -> dict[str, Any]:
        return {**base, "headers": list(REQUEST_HEADERS)}

    return new_scope


async def receive() -> dict[str, Any]:
    """The request body: empty, complete."""
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Any) -> None:
    """A ``send`` that drops every message."""
    return None


async def drive(app: Any, n: int, send: Callable[[Any], Any] = discard) -> int:
    """Call ``app`` ``n`` times in a row; return the elapsed nanoseconds."""
    new_scope = scope_factory()
    start = time.perf_counter_ns()
    for _ in range(n):
        await app(new_scope(), receive, send)
    return time.perf_counter_ns() - start


def flushed_count(bench: Any) -> int:
    """Spans the exporter has seen once everything queued is exported (0 when untraced)."""
    if bench.provider is None:
        return 0
    bench.provider.force_flush()
    return int(bench.exporter.exported)


async def response_check(bench: Any) -> dict[str, Any]:
    """Status and ``X-Request-ID`` presence of one response, plus spans per request over a batch."""
    seen: list[Any] = []

    async def record(message: Any) -> None:
        seen.append(message)

    before = flushed_count(bench)
    await drive(bench.app, SANITY_REQUESTS - 1)
    await drive(bench.app, 1, record)
    spans = (flushed_count(bench) - before) / SANITY_REQUESTS
    start = next(m for m in seen if m["type"] == "http.response.start")
    names = {k.lower() for k, _ in start.get("headers", ())}
    return {"spans_per_req": spans, "status": start["status"], "request_id_header": b"x-request-id" in names}


async def app_worker(config: str, n: int, warmup: int) -> dict[str, Any]:
    """Build ``config``, warm it up, time ``n`` requests, then check what it produced."""
    import _apps

    bench = _apps.build(app_config(config)[0], _apps.setup_logging())
    await drive(bench.app, warmup)
    gc.collect()
    elapsed = await drive(bench.app, n)
    rss = rss_mb()
    return {"us_per_req": elapsed / n / 1000, "rss_mb": rss, **await response_check(bench)}


def floor_worker(n: int, warmup: int) -> dict[str, Any]:
    """Start and end one SDK server span per iteration through a batch processor, no app."""
    import _apps
    import _tracing
    from opentelemetry.trace import SpanKind

    _apps.setup_logging()
    provider, exporter = _tracing.make_provider(set_global=False)
    tracer = provider.get_tracer("bench")

    def spans(k: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(k):
            tracer.start_span("GET /", kind=SpanKind.SERVER).end()
        return time.perf_counter_ns() - start

    spans(warmup)
    gc.collect()
    elapsed = spans(n)
    rss = rss_mb()
    provider.force_flush()
    before = exporter.exported
    spans(SANITY_REQUESTS)
    provider.force_flush()
    per = (exporter.exported - before) / SANITY_REQUESTS
    return {"us_per_req": elapsed / n / 1000, "rss_mb": rss, "spans_per_req": per, "status": None}


def run_worker(config: str, n: int, warmup: int) -> None:
    """Worker entry point: print one JSON line with the measurements."""
    if config == FLOOR:
        result = floor_worker(n, warmup)
    else:
        result = asyncio.run(app_worker(config, n, warmup))
    print(json.dumps({"config": config, "n": n, **result}))


# --------------------------------------------------------------------------- parent side


@dataclass
class Summary:
    """Medians over the repetitions of one configuration."""

    config: str
    us: list[float]
    rss: float
    spans: float
    status: int | None
    request_id_header: bool | None

    @property
    def median(self) -> float:
        return statistics.median(self.us)


@dataclass
class Check:
    """One target line: what is compared, its value, the target and whether it is met."""

    label: str
    value: str
    target: str
    ok: bool


def app_config(config: str) -> tuple[str, str | None]:
    """The app a configuration builds and its ``OTEL_CORR_NO_SHORTCUTS`` value (``None``: unset)."""
    if config.endswith("-public"):
        return config.removesuffix("-public"), "1"
    for name in SHORTCUTS:
        if config.endswith(f"-no-{name}"):
            return config.removesuffix(f"-no-{name}"), name
    return config, None


def worker_env(config: str) -> dict[str, str]:
    env = child_env()
    no_shortcuts = app_config(config)[1]
    if no_shortcuts is not None:
        env["OTEL_CORR_NO_SHORTCUTS"] = no_shortcuts
    return env


def spawn_worker(config: str, n: int, warmup: int) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter and return its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", config, "-n", str(n), "--warmup", str(warmup)]
    return worker_json(cmd, worker_env(config), 600, config)


def collect(configs: Sequence[str], reps: int, n: int, warmup: int) -> dict[str, list[dict[str, Any]]]:
    """Interleaved repetitions: every configuration once per round, ``reps`` rounds."""
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for rep in range(reps):
        for config in configs:
            results[config].append(spawn_worker(config, n, warmup))
            print(f"  rep {rep + 1}/{reps} {config}: {results[config][-1]['us_per_req']:.2f} us", file=sys.stderr)
    return results


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Summary]:
    """Reduce each configuration's runs to medians (sanity fields from the last run)."""
    out = {}
    for config, runs in results.items():
        last = runs[-1]
        out[config] = Summary(
            config=config,
            us=[r["us_per_req"] for r in runs],
            rss=statistics.median(r["rss_mb"] for r in runs),
            spans=last["spans_per_req"],
            status=last["status"],
            request_id_header=last.get("request_id_header"),
        )
    return out


def overhead(s: dict[str, Summary], config: str) -> float | None:
    """Median µs/request over the configuration's bare row; the floor is its own overhead."""
    if config == FLOOR:
        return s[config].median
    base = BASELINE.get(config)
    if base is None or base not in s:
        return None
    return s[config].median - s[base].median


def rss_delta(s: dict[str, Summary], config: str) -> float | None:
    base = BASELINE.get(config)
    return None if base is None or base not in s else s[config].rss - s[base].rss


def fmt(value: float | None, spec: str = ".2f", signed: bool = False) -> str:
    if value is None:
        return "-"
    return format(value, ("+" if signed else "") + spec)


def result_rows(s: dict[str, Summary]) -> list[list[str]]:
    rows = []
    for config, r in s.items():
        rid = "-" if r.request_id_header is None else ("yes" if r.request_id_header else "no")
        rows.append(
            [
                config,
                fmt(r.median),
                f"{min(r.us):.2f}-{max(r.us):.2f}",
                fmt(overhead(s, config), signed=config != FLOOR),
                fmt(r.rss, ".1f"),
                fmt(rss_delta(s, config), ".1f", signed=True),
                fmt(r.spans, ".2f"),
                "-" if r.status is None else str(r.status),
                rid,
            ]
        )
    return rows


def ratio_check(label: str, num: float | None, den: float | None, limit: float) -> Check | None:
    if num is None or den is None or den <= 0:
        return None
    value = num / den
    return Check(label, f"{value:.2f}", f"<= {limit:.2f}", value <= limit)


def below_check(label: str, ours: float | None, theirs: float | None) -> Check | None:
    if ours is None or theirs is None:
        return None
    return Check(label, f"{ours:.2f} us vs {theirs:.2f} us", "below", ours < theirs)


def rss_check(label: str, delta: float | None, limit: float) -> Check | None:
    if delta is None:
        return None
    return Check(label, f"{delta:+.1f} MB", f"<= {limit:.1f} MB", delta <= limit)


def checks(s: dict[str, Summary]) -> list[Check]:
    """The issue's targets, for whichever configurations were run."""

    def oh(config: str) -> float | None:
        return overhead(s, config) if config in s else None

    def rd(config: str) -> float | None:
        return rss_delta(s, config) if config in s else None

    candidates = [
        ratio_check(
            "otel-corr-fastapi overhead / stacked-fastapi overhead",
            oh("otel-corr-fastapi"),
            oh("stacked-fastapi"),
            0.20,
        ),
        ratio_check("otel-corr-fastapi overhead / sdk-span-floor", oh("otel-corr-fastapi"), oh(FLOOR), 1.5),
        ratio_check("otel-corr-asgi overhead / sdk-span-floor", oh("otel-corr-asgi"), oh(FLOOR), 1.5),
        ratio_check(
            "otel-corr-asgi overhead / asgi-span-floor overhead (extra)",
            oh("otel-corr-asgi"),
            oh("asgi-span-floor"),
            1.5,
        ),
        below_check(
            "otel-corr-fastapi overhead vs fastapi-builtin-span overhead",
            oh("otel-corr-fastapi"),
            oh("fastapi-builtin-span"),
        ),
        rss_check("otel-corr-fastapi RSS - bare-fastapi RSS", rd("otel-corr-fastapi"), 5.0),
        rss_check("otel-corr-asgi RSS - bare-asgi RSS", rd("otel-corr-asgi"), 5.0),
    ]
    return [c for c in candidates if c is not None]


def render_checks(items: Sequence[Check]) -> str:
    rows = [[c.label, c.value, c.target, "PASS" if c.ok else "MISS"] for c in items]
    return render_table(["target (informational)", "value", "target", "result"], rows)


def print_header(mode: str, details: str) -> str:
    """Print what is measured and how; return the source state, to compare at the end."""
    state = source_state()
    print(f"otel-corr request overhead -- {mode}")
    print(state)
    print(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, {platform.platform()}")
    print(package_versions(PACKAGES))
    print(details)
    print(flush=True)  # before the progress lines on stderr
    return state


def warn_if_changed(state: str) -> None:
    """The tree may be edited while a long run goes on: say so rather than mix versions silently."""
    now = source_state()
    if now != state:
        print(f"\nwarning: the checkout changed during the run (started at '{state}', now '{now}')")


def run_in_process(configs: Sequence[str], reps: int, n: int, warmup: int) -> None:
    state = print_header(
        "in-process",
        f"N={n} timed requests per repetition (+{warmup} warm-up), median of {reps} "
        "interleaved repetitions, one subprocess per configuration and repetition",
    )
    s = summarise(collect(configs, reps, n, warmup))
    print(render_table(RESULT_HEADERS, result_rows(s)))
    print(LEGEND)
    if "bare-django" in s and "otel-corr-django" in s:
        ratio = s["otel-corr-django"].median / s["bare-django"].median
        print(f"otel-corr-django / bare-django (time per request): {ratio:.2f}")
    print()
    print(render_checks(checks(s)))
    warn_if_changed(state)


# --------------------------------------------------------------------------- instructions


def instructions(config: str, n: int) -> int:
    """Instructions callgrind counts for one worker process doing ``n`` timed requests."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
        cmd += [str(Path(__file__).resolve()), "--worker", config, "-n", str(n), "--warmup", "300"]
        # A fixed hash seed: dict and set layouts (and so the instructions) are then the same in both runs.
        env = {**worker_env(config), "PYTHONHASHSEED": "0"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"valgrind worker {config} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        for line in out.read_text().splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no callgrind summary for {config}")


def run_instructions(configs: Sequence[str], n: int) -> None:
    """Instructions per request: the cost with CPU caches and machine load taken out.

    Each configuration runs twice under callgrind, with 200 and 200+n timed
    requests; the difference divided by n is what one request costs (start-up,
    warm-up and the sanity check cancel out).  Slow (about 50x), so n defaults
    lower; the numbers do not depend on what else the machine is doing.
    """
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    print_header("instructions (callgrind)", f"instructions per request = (run with 200+{n} - run with 200) / {n}")
    per: dict[str, float] = {}
    for config in configs:
        # Byte-compile first: a module edited since its last import would otherwise be compiled in one
        # run of the pair and not the other, and its compilation counted as per-request cost.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(REPO_DIR / "otel_corr"), str(BENCH_DIR)], check=False
        )
        per[config] = (instructions(config, 200 + n) - instructions(config, 200)) / n
        print(f"  {config}: {per[config]:,.0f} instructions/request", file=sys.stderr)
    rows = []
    for config in configs:
        base = BASELINE.get(config)
        extra = f"+{per[config] - per[base]:,.0f}" if base in per else "-"
        rows.append([config, f"{per[config]:,.0f}", extra])
    print(render_table(("config", "instr/request", "overhead instr"), rows))

    def overhead(config: str) -> float | None:
        base = BASELINE.get(config)
        return per[config] - per[base] if config in per and base in per else None

    print()
    floor = per.get(FLOOR)
    for name, denominator, label in (
        ("otel-corr-fastapi", overhead("stacked-fastapi"), "stacked-fastapi overhead"),
        ("otel-corr-fastapi", overhead("fastapi-builtin-span"), "fastapi-builtin-span overhead"),
        ("otel-corr-fastapi", floor, FLOOR),
        ("otel-corr-asgi", floor, FLOOR),
        ("otel-corr-asgi", overhead("asgi-span-floor"), "asgi-span-floor overhead"),
    ):
        mine = overhead(name)
        if mine is not None and denominator:
            print(f"{name} overhead / {label}: {mine / denominator:.2f}")
    # What each shortcut through another project's internals saves: its fallback's overhead minus ours.
    for config in configs:
        app, off = app_config(config)
        mine, without = overhead(app), overhead(config)
        if off is not None and mine is not None and without is not None and mine > 0:
            what = "every shortcut" if off == "1" else f"the {off} shortcut"
            gain = without - mine
            print(
                f"{app} without {what}: {without:,.0f} overhead instr; "
                f"the shortcut saves {gain:+,.0f} ({gain / mine:+.0%} of {app}'s overhead)"
            )


# --------------------------------------------------------------------------- end-to-end


@dataclass
class WrkResult:
    rps: float
    problems: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(config: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    """uvicorn, one worker, on loopback, serving ``_apps:app`` for ``config``."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "_apps:app",
        "--app-dir",
        str(BENCH_DIR),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {**worker_env(config), "BENCH_APP_CONFIG": app_config(config)[0]}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> dict[str, str]:
    """Wait until the server answers ``GET /``; return that response's headers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return {k.lower(): v for k, v in resp.headers.items()}
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_wrk(port: int, duration: int) -> WrkResult:
    """``wrk -t2 -c32 -d<duration>s`` against the server; requests/s and any errors it reports."""
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    problems = "; ".join(line.strip() for line in out.splitlines() if "Non-2xx" in line or "Socket errors" in line)
    return WrkResult(float(match.group(1)), problems)


def e2e_once(config: str, duration: int, warmup: int) -> tuple[WrkResult, dict[str, str]]:
    """Start the server for ``config``, warm it with wrk, measure with wrk, stop it."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(config, port, log)
        try:
            headers = wait_ready(proc, port)
            run_wrk(port, warmup)
            result = run_wrk(port, duration)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            stop_server(proc)
            log.seek(0)
            raise SystemExit(f"e2e {config} failed: {exc}\n{log.read().decode(errors='replace')}") from exc
        stop_server(proc)
    return result, headers


def server_flavour() -> str:
    from importlib.util import find_spec

    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    return f"uvicorn auto -> loop={loop}, http={http}"


def run_e2e(configs: Sequence[str], reps: int, duration: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install it (Debian/Ubuntu: apt-get install -y wrk) to run --e2e")
    warmup = max(1, min(2, duration // 2))
    state = print_header(
        "end-to-end (uvicorn + wrk)",
        f"wrk -t2 -c32 -d{duration}s after a {warmup}s wrk warm-up, "
        f"median of {reps} interleaved repetitions; {server_flavour()}",
    )
    rps: dict[str, list[float]] = {c: [] for c in configs}
    notes: dict[str, set[str]] = {c: set() for c in configs}
    for rep in range(reps):
        for config in configs:
            result, headers = e2e_once(config, duration, warmup)
            rps[config].append(result.rps)
            notes[config].update(n for n in [result.problems, "X-Request-ID" if "x-request-id" in headers else ""] if n)
            print(f"  rep {rep + 1}/{reps} {config}: {result.rps:.0f} req/s", file=sys.stderr)
    print(
        render_table(
            ["config", "median req/s", "runs", "ratio vs bare", "target", "result", "notes"], e2e_rows(rps, notes)
        )
    )
    warn_if_changed(state)


def e2e_rows(rps: dict[str, list[float]], notes: dict[str, set[str]]) -> list[list[str]]:
    """Median requests/s per configuration and its ratio to the configuration's bare row."""
    rows = []
    for config, runs in rps.items():
        median = statistics.median(runs)
        base = BASELINE.get(config)
        ratio = median / statistics.median(rps[base]) if base in rps else None
        verdict = "-" if ratio is None else ("PASS" if ratio >= 0.6 else "MISS")
        rows.append(
            [
                config,
                f"{median:.0f}",
                " ".join(f"{r:.0f}" for r in runs),
                fmt(ratio),
                "-" if ratio is None else ">= 0.60",
                verdict,
                ", ".join(sorted(notes[config])) or "-",
            ]
        )
    return rows


# --------------------------------------------------------------------------- command line


def config_list(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    known = (*CONFIGS, *SHORTCUT_CONFIGS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown configuration(s) {unknown}; choose from {', '.join(known)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--e2e", action="store_true", help="end-to-end mode: uvicorn + wrk instead of in-process calls")
    p.add_argument("--quick", action="store_true", help="short smoke run (N=2000, reps=2; e2e: 2 s, 1 rep)")
    p.add_argument("-n", "--requests", type=int, default=20_000, help="timed requests per repetition (in-process)")
    p.add_argument("--warmup", type=int, default=2_000, help="untimed warm-up requests per worker (in-process)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5 in-process, 1 e2e)")
    p.add_argument("--duration", type=int, default=10, help="wrk seconds per measured run (e2e)")
    p.add_argument("--configs", type=config_list, default=None, help="comma-separated subset of configurations")
    p.add_argument(
        "--instructions", action="store_true", help="count instructions per request with valgrind (callgrind)"
    )
    p.add_argument("--worker", choices=(*CONFIGS, *SHORTCUT_CONFIGS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.duration = 2_000, 500, 2
        args.reps = args.reps or (1 if args.e2e else 2)
    args.reps = args.reps or (1 if args.e2e else 5)
    if min(args.requests, args.reps, args.duration) < 1 or args.warmup < 0:
        p.error("--requests, --reps and --duration must be positive, --warmup non-negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.requests, args.warmup)
    elif args.instructions:
        run_instructions(args.configs or CONFIGS, 1_000 if args.requests == 20_000 else args.requests)
    elif args.e2e:
        if FLOOR in (args.configs or ()):
            raise SystemExit(f"{FLOOR} has no app to serve; leave it out of --configs with --e2e")
        run_e2e(args.configs or E2E_CONFIGS, args.reps, args.duration)
    else:
        run_in_process(args.configs or CONFIGS, args.reps, args.requests, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
