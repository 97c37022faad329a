"""The plugin while enabled: one :class:`Session` per pytest process that runs tests (each xdist worker).

Per test: a :class:`~._pytest_capture.TestRun` is opened before its setup and released after its
teardown's report; a failed report gets the ``otel-corr trace`` section.  A passing test costs its kept
spans and records until its end, then nothing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

from . import _pytest_capture
from ._pytest_capture import Keeper, TestRun, current
from ._terminal import visible

if TYPE_CHECKING:
    from ._pytest_receiver import Receiver

__all__ = ["SECTION", "Links", "Session", "backend_otlp"]

#: The report section's title.
SECTION = "otel-corr trace"

_log = logging.getLogger("otel_corr")
_TEST = pytest.StashKey[TestRun]()
_SHOWN = pytest.StashKey[bool]()


def backend_otlp(url: str) -> tuple[str | None, str]:
    """The OTLP/HTTP base URL of the otel-corr serve whose page is at ``url``, or None and why not."""
    from http.client import HTTPException

    from .cli import otel_corr_info

    try:
        port, status = otel_corr_info(url, timeout=5)
    except (ValueError, HTTPException) as exc:  # http.client.InvalidURL, urllib's ValueError: not a URL
        return None, f"{visible(url[:200])} is not a URL ({visible(str(exc)[:200])})"
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"cannot reach {url} ({getattr(reason, 'strerror', None) or reason})"
    if port is None:
        return None, f"{url} is not otel-corr serve (GET /api/otel-corr/info answered {status})"
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or "127.0.0.1"
    return f"{urlsplit(url).scheme}://{host if ':' not in host else f'[{host}]'}:{port}", ""


class Links:
    """Collects the failing tests' trace links from their reports (also on xdist's controller) and prints them."""

    def __init__(self, url: str | None, problem: str = "") -> None:
        self.url = url
        self.problem = problem
        self.failed: list[tuple[str, list[str]]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed:
            return
        for title, content in report.sections:
            if title == SECTION:
                links = [line[5:] for line in content.splitlines() if line.startswith("open http")]
                if links:
                    self.failed.append((report.nodeid, links))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.problem:
            terminalreporter.section("otel-corr")
            terminalreporter.line(f"traces not sent: {visible(self.problem)}")
            return
        if not self.failed:
            return
        terminalreporter.section("otel-corr: the failing tests' traces")
        for nodeid, links in self.failed:
            terminalreporter.line(visible(nodeid))
            for link in links:
                terminalreporter.line(f"  {visible(link)}")


class Session:
    """The hooks of an enabled plugin in a process that runs tests."""

    def __init__(self, url: str | None, otlp: str | None) -> None:
        self.keeper = Keeper()
        self.link = url if otlp else None  # links only to a backend the spans go to
        self._otlp = otlp
        self._receiver: Receiver | None = None
        self._log_provider: Any = None  # the LoggerProvider the run's log records are sent through, once made
        self._log_handler: Any = None
        _pytest_capture.install(self.keeper)
        if otlp:
            self._send_spans(otlp)

    # -- sending to otel-corr serve (--otel-corr-url) ------------------------------------------
    def _send_spans(self, otlp: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.keeper.export = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=5))
        self.keeper.send_log = self._send_log

    def _send_log(self, record: logging.LogRecord) -> None:
        handler = self._log_handler
        if handler is None:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
            from opentelemetry.sdk.resources import Resource

            from .logging import OTLPHandler

            # The service of the run's spans (the app's provider), else OTEL_SERVICE_NAME's.
            resource = getattr(trace.get_tracer_provider(), "resource", None) or Resource.create({})
            provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            provider.add_log_record_processor(
                BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{self._otlp}/v1/logs", timeout=5))
            )
            self._log_provider = provider
            handler = self._log_handler = OTLPHandler(provider)
        handler.emit(record)

    # -- live servers ---------------------------------------------------------------------------
    def endpoint(self, item: pytest.Item | None) -> tuple[str, dict[str, str]]:
        """(URL, environment) of ``item``'s own endpoint, or the shared one for None; starts the receiver."""
        if self._receiver is None:
            from ._pytest_receiver import Receiver  # the backend's decoder: imported only when a test asks

            token = current.set(None)  # its threads belong to no test
            try:
                self._receiver = Receiver(self.keeper, self._otlp)
            finally:
                current.reset(token)
        return self._receiver.endpoint(item.stash.get(_TEST, None) if item is not None else None)

    # -- hooks ------------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        keeper = self.keeper
        keeper.watch_global()  # a provider set since the last test (by a fixture, at import)
        test = keeper.begin(item.nodeid)
        item.stash[_TEST] = test
        token = current.set(test)
        try:
            return (yield)
        finally:
            current.reset(token)
            keeper.end(test)
            if self._receiver is not None:
                self._receiver.forget(test)
            del item.stash[_TEST]

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Generator[None, Any, Any]:
        if fixturedef.scope == "function":
            return (yield)
        # A session's or module's fixture belongs to no one test: what it starts (a server thread) neither.
        token = current.set(None)
        try:
            return (yield)
        finally:
            current.reset(token)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report: pytest.TestReport = yield
        test = item.stash.get(_TEST, None)
        if report.failed and test is not None and not item.stash.get(_SHOWN, False):
            item.stash[_SHOWN] = True
            try:
                if self._receiver is not None:
                    self._receiver.wait_quiet(test)  # a live server's last batch
                from ._pytest_render import section

                text = section(test, self.link, self.keeper.open_spans(test))
            except Exception as exc:  # the plugin's failure never hides the test's own
                text = f"otel-corr could not show this test's spans: {type(exc).__name__}: {visible(str(exc)[:500])}\n"
            if text:
                report.sections.append((SECTION, text))
        return report

    def pytest_unconfigure(self) -> None:
        self.close()

    def close(self) -> None:
        """Undo every change, stop the receiver, send what is queued (bounded waits)."""
        _pytest_capture.uninstall()
        if self._receiver is not None:
            self._receiver.close()
        export = self.keeper.export
        for flushing in (export, self._log_provider):
            if flushing is not None:
                try:
                    flushing.force_flush(10_000)
                    flushing.shutdown()
                except Exception:
                    print("otel-corr: could not send every span to the backend", file=sys.stderr)
