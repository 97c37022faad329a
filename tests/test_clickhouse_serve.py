"""``otel-corr serve --store clickhouse://...`` as a user starts it: the settings it refuses (one line,
naming the flag and its variable, never the password), and ``otel-corr tail`` on a replica (it
follows and says that a replica sees only its own part).  A real 2-shard cluster from Debian's
``clickhouse-server``; the contract over every read is ``tests/test_store_contract.py``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .clickhouse_cluster import ClickHouseCluster, find_server
from .collector import free_port, wait_for_port
from .conftest import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_server() is None, reason="needs Debian's clickhouse-server (.ci/run installs it)"),
]
pytest.importorskip("clickhouse_driver")

_WAIT = 60.0  # a hung test's deadline, not a speed


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTEL_CORR_"))}
    return {**env, **extra}


def _serve(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A serve expected to refuse to start."""
    ports = ["--port", str(free_port()), "--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port())]
    return subprocess.run(
        [sys.executable, "-m", "otel_corr", "serve", *ports, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env or _env(),
    )


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (["--store", "clickhouse://u:s3cret@ch1:9000/traces"], {}, ["--store / OTEL_CORR_STORE", "?cluster=NAME"]),
        ([], {"OTEL_CORR_STORE": "clickhouse://u:s3cret@ch1:99999/t?cluster=c"}, ["OTEL_CORR_STORE", "bad port"]),
        (["--store", "clickhouse://ch1/t;DROP?cluster=c"], {}, ["letters, digits and _"]),
        # A password pasted unescaped, with "/", "?", "#" or "@" in it, is never echoed in part.
        (["--store", "clickhouse://alice:s3cret/x@ch1:9000/db"], {}, ["?cluster=NAME"]),
        (["--store", "clickhouse://alice:s3cret?#@ch1:9000/d-b?cluster=c"], {}, ["letters, digits and _"]),
        (["--store", "clickhouse://alice:s3cret@x@ch1:90000/db?cluster=c"], {}, ["bad port of host number 1"]),
        (["--store", "clickhouse://ch1/t?cluster=c", "--db", "x.db"], {}, ["not both"]),
        (["--store", "clickhouse://ch1/t?cluster=c", "--max-spans", "5"], {}, ["--max-spans", "--retention"]),
    ],
)
def test_a_bad_store_setting_is_one_line_naming_it_never_the_password(
    argv: list[str], env: dict[str, str], words: list[str]
) -> None:
    out = _serve(*argv, env=_env(**env))
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "s3cret" not in out.stderr + out.stdout
    for word in words:
        assert word in out.stderr, out.stderr


def test_an_unreachable_cluster_fails_at_start_naming_it_without_the_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    out = _serve("--store", f"clickhouse://u:s3cret@127.0.0.1:{port}/t?cluster=c")
    assert out.returncode != 0
    assert f"cannot reach ClickHouse at clickhouse://u@127.0.0.1:{port}/t?cluster=c" in out.stderr, out.stderr
    assert "s3cret" not in out.stderr + out.stdout


class Replica:
    """``otel-corr serve --store URL`` on free ports of 127.0.0.1."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.port, self.http, self.grpc = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self._out = open(self.log, "w")
        argv = [sys.executable, "-m", "otel_corr", "serve", "--store", url, "--port", str(self.port)]
        argv += ["--otlp-http-port", str(self.http), "--otlp-grpc-port", str(self.grpc)]
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=_env())
        for p in (self.port, self.http, self.grpc):
            wait_for_port(p, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self._out.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseCluster]:
    with ClickHouseCluster(tmp_path_factory.mktemp("ch") / "cluster") as running:
        yield running


def _log_body(message: str, trace_id: str) -> bytes:
    record = {
        "timeUnixNano": str(time.time_ns()),
        "severityNumber": 13,
        "severityText": "WARN",
        "body": {"stringValue": message},
        "traceId": trace_id,
        "spanId": "00f067aa0ba902b7",
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    body = {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]}
    return json.dumps(body).encode()


def test_tail_on_a_replica_follows_and_says_it_sees_its_own_part(cluster: ClickHouseCluster, tmp_path: Path) -> None:
    replica = Replica(cluster.url, tmp_path)
    tail = subprocess.Popen(
        [sys.executable, "-m", "otel_corr", "tail", "--url", replica.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    try:
        first = tail.stderr.readline()  # type: ignore[union-attr]
        assert first.startswith(f"otel-corr tail: following {replica.url}"), first
        note = tail.stderr.readline()  # type: ignore[union-attr]
        assert note.startswith("otel-corr tail: note: this serve shares its store with other replicas"), note
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        posted = httpx.post(
            f"http://127.0.0.1:{replica.http}/v1/logs",
            content=_log_body("payment declined for order 77", trace_id),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert posted.status_code == 200, posted.text
        deadline = time.monotonic() + _WAIT
        line = ""
        while time.monotonic() < deadline and "payment declined" not in line:
            line = tail.stdout.readline()  # type: ignore[union-attr]
        assert "payment declined for order 77" in line and "shop" in line, line
    finally:
        tail.terminate()
        tail.wait(10)
        replica.stop()


def _span_body(trace_id: str, span_id: str, route: str) -> bytes:
    now = time.time_ns()
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": f"GET {route}",
        "kind": 2,
        "startTimeUnixNano": str(now - 5_000_000),
        "endTimeUnixNano": str(now),
        "attributes": [{"key": "http.route", "value": {"stringValue": route}}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    return json.dumps(body).encode()


def test_the_page_shows_a_banner_while_a_shard_is_down(cluster: ClickHouseCluster, tmp_path: Path) -> None:
    """Last in the module: it stops shard 2 (and starts it again)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (.ci/run installs it)")
    from .test_page_browser import CHROMIUM_ARGS

    replica = Replica(cluster.url, tmp_path)
    try:
        for n in range(1, 21):  # traces on both shards
            posted = httpx.post(
                f"http://127.0.0.1:{replica.http}/v1/traces",
                content=_span_body(f"{n:032x}", f"{n:016x}", f"/orders/{n}"),
                headers={"content-type": "application/json"},
                timeout=30,
            )
            assert posted.status_code == 200, posted.text
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(replica.url + "/")
                page.wait_for_selector("#requests tbody tr")
                assert page.locator("#partial").is_hidden()  # whole: no banner
                whole = page.locator("#requests tbody tr").count()
                cluster.stop_shard(2)
                page.goto(replica.url + "/")
                page.wait_for_selector("#partial:not([hidden])")
                banner = page.locator("#partial").inner_text()
                assert banner.startswith("Partial results: shard 2 (") and "did not answer" in banner, banner
                # The live shard's part is listed: fewer rows than whole, and not none.
                page.wait_for_selector("#requests tbody tr")
                assert 0 < page.locator("#requests tbody tr").count() < whole
                # The service map (Jaeger's /api/dependencies: the header, no "warning" field) says so too.
                page.goto(replica.url + "/map")
                page.wait_for_selector("#partial:not([hidden])")
                assert "shard 2" in page.locator("#partial").inner_text()
            finally:
                browser.close()
    finally:
        cluster.start_shard(2)
        replica.stop()
