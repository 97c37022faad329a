"""The ``why`` corpus score (issue 19): is the top-ranked cause the injected one?

Starts a real ``otel-corr serve`` and three instrumented services exporting to it over OTLP -- ``checkout``
(FastAPI under uvicorn), ``billing`` (Flask under gunicorn) and the ``stock`` service both call (FastAPI
under uvicorn) -- then sends ``--ordinary`` ordinary requests of each endpoint (the baseline "against
normal" reads) and ``--per-kind`` requests of each of seven injected causes, half to each app, sizes and
places drawn from ``--seed``: a slow downstream call, a sleep in untraced code between two log lines, an N+1
of 30 queries, an exception raised deep and re-raised above as another type, a slow background task, a
retry loop (2 failures, then success), a lock wait in a thread pool.  The services are then stopped with
SIGTERM (each flushes its spans and log records), and ``GET /api/ui/why/{id}`` is asked about every trace.

A trace scores when its top-ranked cause is the injected one: the right kind on the right span, carrying
what the contract says of that kind (an untraced gap bracketed by the two log lines around the sleep; the
deep exception's own type and the chain from it to the entry span; the repeat's name, count 30 and failed
count).  Ordinary traces must not be alarming.  The machinery is ``tests/_why_corpus.py``; the apps are
``tests/apps/why_*.py``.  Target: >= 95 % top-1.

    python benchmarks/why_corpus.py                    # 56 injected + 100 ordinary traces (~1 min)
    python benchmarks/why_corpus.py --per-kind 16 --seed 7
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from _common import REPO_DIR, package_versions, render_table, source_state

sys.path.insert(0, str(REPO_DIR))

from tests._why_corpus import KINDS, Scores, run

TARGET = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-kind", type=int, default=8, help="injected traces of each cause kind (default 8)")
    parser.add_argument("--ordinary", type=int, default=10, help="ordinary requests of each endpoint (default 10)")
    parser.add_argument("--seed", type=int, default=19, help="draws the sizes, places and order (default 19)")
    parser.add_argument("--verbose", action="store_true", help="also print every trace's top cause")
    args = parser.parse_args()

    print(f"# benchmarks/why_corpus.py  ({source_state()})")
    print(f"# {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"# {package_versions(['fastapi', 'uvicorn', 'flask', 'gunicorn', 'opentelemetry-sdk'])}")
    print(f"# --per-kind {args.per_kind} --ordinary {args.ordinary} --seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="why-corpus-") as tmp:
        scores = Scores(run(Path(tmp), args.per_kind, args.ordinary, args.seed))

    print("\n## top-ranked cause per injected kind\n")
    print(render_table(["kind", "framework", "traces", "top-1 correct", "%", "alarming"], scores.rows()))
    verdict = "PASS" if scores.top1 >= TARGET else "MISS"
    located = sum(o.located for o in scores.injected)
    print(f"\noverall top-1: {100 * scores.top1:.1f} % of {len(scores.injected)} (target >= 95 %: {verdict})")
    print(f"right kind on the right span, details aside: {located} of {len(scores.injected)}")
    print(f"ordinary traces alarming: {len(scores.alarming)} of {len(scores.ordinary)}", end="")
    print(f" (+ {len(scores.stalled)} stalled by the machine: slow for their endpoint, rightly alarming)")
    times = sorted(o.seconds * 1000 for o in scores.outcomes)
    if times:
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"why route: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms")

    if scores.misses:
        print("\n## misses\n")
        for o in scores.misses:
            c = o.case
            print(f"- {c.kind} / {c.framework} ({c.variant}) {c.method} {c.path} trace {c.trace_id}")
            print(f"    {o.miss}")
            print(f"    ranked first: {o.top}")
    for title, outcomes in (("alarming ordinary", scores.alarming), ("stalled ordinary", scores.stalled)):
        if outcomes:
            print(f"\n## {title} traces\n")
        for o in outcomes:
            c = o.case
            print(f"- {c.framework} {c.method} {c.path} trace {c.trace_id}: {o.answer['verdict']['headline']}")
            print(f"    ranked first: {o.top}")
    if args.verbose:
        print("\n## every injected trace\n")
        for kind in KINDS:
            for o in scores.injected:
                if o.case.kind == kind:
                    mark = "ok  " if o.ok else "MISS"
                    print(f"{mark} {kind:16} {o.case.framework:7} {o.case.variant:22} {o.top}")


if __name__ == "__main__":
    main()
