"""The pytest plugin as a user meets it: pytest run in a subprocess on a sample project (tests/pytest_samples/web,
copied to a temporary directory), its output read as a person reads it.

Each failing sample test's ``otel-corr trace`` section is cut out of pytest's output and checked for what
that test's requests did -- and for nothing another test's did."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import ROOT
from .test_server import Backend

SAMPLE = Path(__file__).parent / "pytest_samples" / "web"
SECTION = re.compile(r"-+ otel-corr trace -+")
HEADER = re.compile(r"_{3,} (\S+) _{3,}")  # a failure's header: ____ test_name ____
SEPARATOR = re.compile(r"([-_=])\1{2,} .*|={3,}")


def run_sample(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in a fresh copy of the sample project, with this checkout's otel_corr."""
    project = tmp_path / "web"
    if not project.exists():
        shutil.copytree(SAMPLE, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def sections(out: str) -> dict[str, str]:
    """Each failing test's ``otel-corr trace`` section, by test name."""
    found: dict[str, str] = {}
    name = ""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        header = HEADER.fullmatch(line)
        if header:
            name = header.group(1)
        elif SECTION.fullmatch(line):
            body = []
            for following in lines[i + 1 :]:
                if SEPARATOR.fullmatch(following):
                    break
                body.append(following)
            found[name] = "\n".join(body)
    return found


def _under_a_span(section: str, text: str) -> bool:
    """``text`` is a log line indented under a span of the waterfall (not in the lines outside the traces)."""
    waterfall = section.split("log lines outside these traces:")[0]
    return any(text in line and line.startswith(" " * 24) for line in waterfall.splitlines())


def test_a_failing_testclient_test_shows_its_waterfall_log_lines_and_request_ids(tmp_path: Path) -> None:
    """FastAPI through TestClient: the failing test's section has both its requests (route, status, request ID),
    the app's log lines under their request, its own line outside; the other failing test's section only its
    own request; the passing test shows nothing (-rA prints passing tests' sections, and there is none)."""
    out = run_sample(tmp_path, "--otel-corr", "-rA", "check_fastapi.py").stdout
    found = sections(out)
    assert set(found) == {"test_missing_order_fails", "test_sync_endpoint_fails"}, out
    missing = found["test_missing_order_fails"]
    assert "while check_fastapi.py::test_missing_order_fails ran" in missing
    assert re.search(r"trace [0-9a-f]{32}  request req-seven  1 span", missing), missing
    assert re.search(r"trace [0-9a-f]{32}  request req-zero  1 span", missing), missing
    assert "shop: GET /orders/{order_id}" in missing and re.search(r"ms  404\n", missing), missing
    assert _under_a_span(missing, "INFO  shop: loading order 7")
    assert _under_a_span(missing, "WARN  shop: order 0 does not exist")
    assert "INFO  check: asking for order 0" in missing.split("log lines outside these traces:")[1]
    sync = found["test_sync_endpoint_fails"]
    assert "request req-sync" in sync and "shop: GET /sync/{order_id}" in sync
    assert _under_a_span(sync, "INFO  shop: loading order 5 in a worker thread")  # a sync route: a worker thread
    assert "req-zero" not in sync and "req-sync" not in missing
    assert "req-pass" not in out


def test_flask_test_client(tmp_path: Path) -> None:
    """Flask's test client: a closed response's span with route and status; one the client never closed shows
    as not ended, with its request ID and log line."""
    found = sections(run_sample(tmp_path, "--otel-corr", "check_flask.py").stdout)
    section = found["test_missing_page_fails"]
    assert "request flask-three" in section and "shop: GET /pages/<int:page>" in section
    assert re.search(r"request flask-zero  1 span.*\n.*shop: GET \(not ended\)", section), section
    assert _under_a_span(section, "INFO  shop: rendering page 0")


def test_httpx_asgi_and_wsgi_transports(tmp_path: Path) -> None:
    """httpx's ASGITransport (an async test) and WSGITransport: each failing test shows its own request."""
    found = sections(run_sample(tmp_path, "--otel-corr", "check_httpx.py").stdout)
    asgi, wsgi = found["test_asgi_transport_fails"], found["test_wsgi_transport_fails"]
    assert "request asgi-zero" in asgi and "shop: GET /orders/{order_id}" in asgi and "wsgi-zero" not in asgi
    assert _under_a_span(asgi, "WARN  shop: order 0 does not exist")
    assert "request wsgi-zero" in wsgi and "shop: GET /pages/<int:page>" in wsgi and "asgi-zero" not in wsgi


def test_a_test_interleaving_with_another_tests_thread_shows_only_its_own_spans(tmp_path: Path) -> None:
    """Test a leaves a thread making requests (bg-N) and logging through the client both tests share; test b
    fails while that thread runs (the sample checks it made requests during b): b's section has b's two
    requests and its line, and not one of the thread's."""
    result = run_sample(tmp_path, "--otel-corr", "check_threads.py")
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-3000:]
    section = sections(result.stdout)["test_b_fails_while_the_thread_runs"]
    assert "request req-b  1 span" in section and "request req-b-zero  1 span" in section
    assert "INFO  background: test b starts" in section
    assert "bg-" not in section and "background tick" not in section, section
    assert section.count("trace ") == 2


def test_otel_corr_testing_still_works_with_the_plugin_on(tmp_path: Path) -> None:
    """The otel_corr_capture fixture and capture() see their spans with the plugin on; a failing test that
    used capture() shows the captured request too."""
    result = run_sample(tmp_path, "--otel-corr", "check_capture.py")
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-3000:]
    section = sections(result.stdout)["test_context_manager_captures_and_a_failure_shows_it"]
    assert "request cap-2" in section and ": GET /ping" in section


def test_bad_input_is_left_out_and_said(tmp_path: Path) -> None:
    """A span the backend's decoder refuses (a 100 KB attribute) is counted, not shown; the section keeps the
    last 10 of 12 traces and says so; a long log line is cut; garbage sent to the endpoint gets a 400; the
    test's own failure is reported as usual."""
    out = run_sample(tmp_path, "--otel-corr", "check_bad.py").stdout
    assert "AssertionError: the test's own failure" in out
    section = sections(out)["test_bad_input_is_left_out"]
    assert "(2 earlier traces left out: the last 10 follow)" in section
    assert "request many-12" in section and "request many-2 " not in section
    assert "(1 span that could not be read left out)" in section
    assert "... (4006 more characters)" in section  # "long: " and 5,000 y, 1,000 shown
    assert '/v1/traces "HTTP/1.1 400 Bad Request"' in section


def test_off_by_default_shows_nothing_and_changes_nothing(tmp_path: Path) -> None:
    """Without --otel-corr no section, and the sample's check that nothing in the process was changed passes;
    the same check fails with the plugin on (it sees the plugin's changes)."""
    off = run_sample(tmp_path, "check_fastapi.py", "check_untouched.py")
    assert "2 failed, 2 passed" in off.stdout and "otel-corr" not in off.stdout.replace("otel-corr-0", "")
    on = run_sample(tmp_path, "--otel-corr", "check_untouched.py")
    assert "1 failed" in on.stdout and "pytest_plugin (--otel-corr)" in on.stdout


def test_the_ini_setting_turns_it_on(tmp_path: Path) -> None:
    """``otel_corr = true`` in the ini file does what --otel-corr does."""
    result = run_sample(tmp_path, "-o", "otel_corr=true", "check_fastapi.py")
    assert "request req-zero" in sections(result.stdout)["test_missing_order_fails"]


def test_every_change_is_undone_at_the_end_of_the_session(tmp_path: Path) -> None:
    """After ``pytest.main(["--otel-corr"])`` returns, otel_corr.patches() lists none of the plugin's changes, the
    thread and pool hooks are the ones from before, and the root logger has no handler of the plugin's."""
    project = tmp_path / "web"
    shutil.copytree(SAMPLE, project)
    script = (
        "import logging, threading, concurrent.futures, pytest, otel_corr\n"
        "before = (threading.Thread.start, concurrent.futures.ThreadPoolExecutor.submit)\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider', '--otel-corr', 'check_fastapi.py'])\n"
        "print('exit', int(code))\n"
        "print('rows', [p.target for p in otel_corr.patches() if p.installed_by.startswith('pytest_plugin')])\n"
        "print('hooks', (threading.Thread.start, concurrent.futures.ThreadPoolExecutor.submit) == before)\n"
        "print('handlers', [type(h).__module__ for h in logging.getLogger().handlers])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=180
    )
    assert "exit 1" in result.stdout and "request req-zero" in result.stdout, result.stdout[-3000:]
    assert "rows []" in result.stdout and "hooks True" in result.stdout
    assert "otel_corr._pytest_capture" not in result.stdout.split("handlers", 1)[1]


@pytest.mark.e2e
def test_a_live_uvicorn_server_the_test_starts_sends_to_the_plugin(tmp_path: Path) -> None:
    """uvicorn started by the test with otel_corr_endpoint's environment: its span, request ID and log lines
    (sent over OTLP/HTTP) are in the failing test's section."""
    found = sections(run_sample(tmp_path, "--otel-corr", "check_live.py").stdout)
    section = found["test_live_server_fails"]
    assert "request live-zero  1 span" in section and "shop: GET /orders/{order_id}" in section
    assert _under_a_span(section, "INFO  shop: loading order 0")
    assert _under_a_span(section, "WARN  shop: order 0 does not exist")


@pytest.mark.e2e
def test_a_server_shared_by_a_module_sends_each_request_to_its_test(tmp_path: Path) -> None:
    """One uvicorn for the module, on otel_corr_session_endpoint: the failing second test shows its request and
    log lines, not the first test's request (which began before the second test did)."""
    result = run_sample(tmp_path, "--otel-corr", "check_live_shared.py")
    assert "1 failed, 1 passed" in result.stdout, result.stdout[-3000:]
    section = sections(result.stdout)["test_second_fails"]
    assert "request shared-two  1 span" in section and "shared-one" not in section
    assert _under_a_span(section, "WARN  shop: order 0 does not exist")


@pytest.mark.e2e
def test_under_xdist_each_worker_reports_its_own_tests(tmp_path: Path) -> None:
    """``-n 2``: the tests run on two workers and each failing test's section (made on its worker, shown by the
    controller) has its own requests only."""
    result = run_sample(tmp_path, "--otel-corr", "-n", "2", "check_fastapi.py", "check_httpx.py")
    assert "4 failed, 1 passed" in result.stdout and "[gw1]" in result.stdout, result.stdout[-3000:]
    found = sections(result.stdout)
    own = {
        "test_missing_order_fails": "req-zero",
        "test_sync_endpoint_fails": "req-sync",
        "test_asgi_transport_fails": "asgi-zero",
        "test_wsgi_transport_fails": "wsgi-zero",
    }
    assert set(found) == set(own)
    for name, request_id in own.items():
        assert f"request {request_id}" in found[name]
        others = [rid for rid in own.values() if rid != request_id]
        assert not any(rid in found[name] for rid in others), found[name]


@pytest.mark.e2e
def test_otel_corr_url_sends_the_run_and_prints_links_that_open_each_failing_tests_trace(tmp_path: Path) -> None:
    """``--otel-corr-url`` at a real otel-corr serve: the summary lists each failing test with a link; the
    link's trace is that test's request (in-process or from the live server) with its log lines, the page
    opens, and the passing test's trace was sent too."""
    backend = Backend(tmp_path)
    try:
        result = run_sample(tmp_path, "--otel-corr-url", backend.url, "check_fastapi.py", "check_live.py")
        summary = result.stdout.split("otel-corr: the failing tests' traces")[1]
        links = dict(re.findall(r"^(check_\S+)\n((?:  http\S+\n)+)", summary, re.M))
        assert set(links) == {
            "check_fastapi.py::test_missing_order_fails",
            "check_fastapi.py::test_sync_endpoint_fails",
            "check_live.py::test_live_server_fails",
        }, summary
        last = {name: text.split()[-1] for name, text in links.items()}
        for name, request_id in (
            ("check_fastapi.py::test_missing_order_fails", "req-zero"),
            ("check_live.py::test_live_server_fails", "live-zero"),
        ):
            link = last[name]
            assert link.startswith(f"{backend.url}/trace/")
            trace = backend.wait_trace(link.rsplit("/", 1)[1])
            (span,) = trace["spans"]
            assert {"key": "request.id", "type": "string", "value": request_id} in span["tags"]
            messages = [f["value"] for log in span["logs"] for f in log["fields"] if f["key"] == "message"]
            assert "order 0 does not exist" in messages
            assert httpx.get(link, timeout=10).status_code == 200
        assert backend.wait_trace("req-pass")["spans"]  # a passing test's request: sent, no link
    finally:
        backend.stop()


def test_otel_corr_url_at_something_else_says_so_and_runs_the_tests(tmp_path: Path) -> None:
    """A URL where nothing listens: the tests run and fail as they would, and the summary says the traces were
    not sent (no links)."""
    result = run_sample(tmp_path, "--otel-corr-url", "http://127.0.0.1:9", "check_fastapi.py")
    assert "2 failed, 1 passed" in result.stdout
    assert "traces not sent: cannot reach http://127.0.0.1:9" in result.stdout
    assert "request req-zero" in sections(result.stdout)["test_missing_order_fails"]
    assert "open http" not in result.stdout


def test_a_long_test_keeps_its_last_spans_and_lines_not_its_first(tmp_path: Path) -> None:
    """5,100 spans then the error: past the 5,000 kept, the oldest go (the first 5,000 were kept, and the
    span and line that explain the failure were the ones lost)."""
    found = sections(run_sample(tmp_path, "--otel-corr", "check_many.py").stdout)
    section = found["test_the_last_step_fails"]
    assert "shop: step-5099" in section and "step-4999 " not in section
    assert "THE REAL ERROR after step 5099" in section
    # One request's 200 lines: its last 50 under it, and the rest said (they were all printed).
    chatty = found["test_a_chatty_request_fails"]
    assert "chatty line 199" in chatty and "chatty line 149" not in chatty
    assert "(150 log lines of this trace left out)" in chatty


def test_dist_without_workers_still_shows_each_failure(tmp_path: Path) -> None:
    """`addopts = --dist loadscope` with -n only in CI: without -n xdist runs every test in this process,
    and the plugin turned itself off as if a controller."""
    found = sections(run_sample(tmp_path, "--otel-corr", "--dist", "loadfile", "check_fastapi.py").stdout)
    assert "request req-zero" in found["test_missing_order_fails"]


def test_a_url_that_is_not_a_url_is_said_and_the_tests_run(tmp_path: Path) -> None:
    """`--otel-corr-url http://127.0.0.1:abc` was an INTERNALERROR: pytest ran nothing."""
    result = run_sample(tmp_path, "--otel-corr-url", "http://127.0.0.1:abc", "check_fastapi.py")
    assert "2 failed, 1 passed" in result.stdout and "INTERNALERROR" not in result.stdout + result.stderr
    assert "traces not sent: http://127.0.0.1:abc is not a URL" in result.stdout


def test_a_failing_test_waits_for_a_shared_servers_late_export() -> None:
    """With the shared endpoint out (a module's live server), a failing test waits for what the server has not
    sent yet: its request's span may be exported after the test failed, before anything else arrived in it (seen
    in CI: the report showed no trace when the server was slow to export)."""
    import threading
    import time

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otel_corr._pytest_capture import Keeper, TestRun
    from otel_corr._pytest_receiver import Receiver

    keeper = Keeper()
    receiver = Receiver(keeper)
    try:
        receiver.endpoint(None)  # otel_corr_session_endpoint, handed to a module's server
        test = keeper.running = TestRun("check.py::test_fails")
        request = ExportTraceServiceRequest()
        span = (
            request.resource_spans.add()
            .scope_spans.add()
            .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /orders/0", kind=2)
        )
        span.start_time_unix_nano = test.start_ns + 1
        span.end_time_unix_nano = test.start_ns + 2

        def export_late() -> None:
            time.sleep(0.2)  # the server's batch processor, after the test's assertion failed
            httpx.post(
                f"{receiver.url}/v1/traces",
                content=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )

        sender = threading.Thread(target=export_late)
        sender.start()
        receiver.wait_quiet(test)
        arrived = [s.name for s in test.received_spans]  # what the report would show, made now
        sender.join()
        assert arrived == ["GET /orders/0"]
    finally:
        receiver.close()
