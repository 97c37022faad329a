"""What the pytest plugin (``--otel-corr``) costs a test suite: wall time with it on against off.

Methodology
-----------
* A suite is generated in a temporary directory: a FastAPI app instrumented with ``otel_corr.instrument``
  (route ``/items/{item_id}`` logs one INFO line and answers JSON), and ``--tests`` test functions (default
  500) in files of 50, each making one request through one module-level Starlette ``TestClient`` and
  asserting the status.  ``log_level = INFO`` in its ini (pytest captures the app's line in both modes);
  ``OTEL_TRACES_EXPORTER=none``/``OTEL_LOGS_EXPORTER=none``: spans and records stay in the process.
* Each run is ``python -m pytest -q -p no:cacheprovider`` on the suite in a fresh subprocess, timed from
  start to exit (interpreter start, collection, the tests, teardown): wall time, and the CPU time the
  process used (user + system, from ``getrusage``: on a shared machine it moves less with the neighbours'
  load than wall time).  ``off`` (the plugin installed but not enabled: what every user who installs
  otel-corr runs) against ``on`` (``--otel-corr``).  ``--failing K``
  makes K of the tests fail (default 0) to include the cost of the sections.
* Rounds are interleaved (``for round: off, on``) so the machine's drift hits both; the table shows every
  round, the medians and minimums, and three ratios to ``off``: of the medians, of the minimums, and the
  median of the per-round ratios (the steadiest on a shared machine: a round's two runs are back to back).
* logfire's pytest plugin is compared only if ``logfire`` is installed (it is not a dependency).

Run: ``python benchmarks/pytest_plugin.py [--tests 500] [--rounds 5] [--failing 0]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import child_env, package_versions, render_table, source_state

APP = """\
import logging

from fastapi import FastAPI

import otel_corr

log = logging.getLogger("bench.app")
app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    log.info("item %d", item_id)
    return {"item": item_id}


otel_corr.instrument(app)
"""

HEAD = """\
from app import app
from fastapi.testclient import TestClient

client = TestClient(app)
"""

TEST = """

def test_item_{n}() -> None:
    assert client.get("/items/{n}").status_code == {status}
"""

INI = """\
[pytest]
log_level = INFO
filterwarnings =
    ignore:Using `httpx` with `starlette.testclient`
"""


def generate(root: Path, tests: int, failing: int) -> None:
    (root / "app.py").write_text(APP)
    (root / "pytest.ini").write_text(INI)
    for start in range(0, tests, 50):
        body = HEAD + "".join(
            TEST.format(n=n, status=500 if n < failing else 200) for n in range(start, min(start + 50, tests))
        )
        (root / f"test_items_{start // 50:03d}.py").write_text(body)


def run(root: Path, extra: list[str], expect: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the pytest process) of one run."""
    env = child_env()
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_LOGS_EXPORTER="none", PYTHONDONTWRITEBYTECODE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if expect not in done.stdout:
        raise SystemExit(
            f"unexpected outcome for {extra}: wanted {expect!r}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return elapsed, cpu


def _table(measured: dict[str, list[float]], rounds: int, tests: int) -> str:
    base = measured["off"]
    off = statistics.median(base)
    rows = []
    for name, values in measured.items():
        median = statistics.median(values)
        # The machine is shared: each round's pair ran back to back, so the median of the per-round
        # ratios is the steadier figure; the ratio of medians and of minimums are shown beside it.
        paired = statistics.median(v / o for v, o in zip(values, base, strict=True))
        rows.append(
            [
                name,
                *(f"{v:.2f}" for v in values),
                f"{median:.2f}",
                f"{min(values):.2f}",
                f"{median / off:.3f}",
                f"{min(values) / min(base):.3f}",
                f"{paired:.3f}",
                f"{(median - off) / tests * 1e3:+.2f}",
            ]
        )
    headers = [
        "config",
        *(f"r{i + 1}" for i in range(rounds)),
        "median",
        "min",
        "ratio (medians)",
        "ratio (mins)",
        "ratio (paired)",
        "ms/test",
    ]
    return render_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--failing", type=int, default=0)
    args = parser.parse_args()
    configs: dict[str, list[str]] = {"off": [], "on (--otel-corr)": ["--otel-corr"]}
    if importlib.util.find_spec("logfire") is not None:
        configs["logfire (--logfire)"] = ["--logfire"]
    passed = args.tests - args.failing
    expect = (f"{args.failing} failed, " if args.failing else "") + f"{passed} passed"
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpus: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory(prefix="otel-corr-pytest-bench-") as tmp:
        root = Path(tmp)
        generate(root, args.tests, args.failing)
        run(root, [], expect)  # warm the page cache and the bytecode of the libraries
        for _ in range(args.rounds):
            for name, extra in configs.items():
                wall, cpu = run(root, extra, expect)
                times[name].append(wall)
                cpus[name].append(cpu)
    print(f"pytest plugin: {args.tests} TestClient tests ({args.failing} failing), {args.rounds} rounds")
    print(source_state())
    print(package_versions(["pytest", "fastapi", "starlette", "opentelemetry-sdk", "logfire"]))
    for title, measured in (("wall time (s)", times), ("CPU time of the pytest process, user + system (s)", cpus)):
        print()
        print(title)
        print(_table(measured, args.rounds, args.tests))
    if "logfire (--logfire)" not in configs:
        print("logfire is not installed: its pytest plugin is not compared")


if __name__ == "__main__":
    main()
