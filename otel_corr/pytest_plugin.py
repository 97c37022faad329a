"""pytest plugin: a failing test shows its own trace and log lines (off unless asked for).

Registered through the ``pytest11`` entry point, so installing otel-corr is enough; inert until enabled
with ``--otel-corr`` (or ``otel_corr = true`` in the ini file, or ``--otel-corr-url URL``).  Off, it adds
its options and two fixtures and does nothing else: no provider, no handler, no hook per test.

On, every span and log record produced while a test runs is kept with that test (in-process apps driven by
a test client, and live servers sending to :func:`otel_corr_endpoint`); when the test fails its report gets
an ``otel-corr trace`` section with the waterfall of each of its traces and its log lines, as
``otel-corr trace`` prints them.  See ``docs/testing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from ._pytest_session import Session

__all__ = ["Endpoint", "otel_corr_endpoint", "otel_corr_session_endpoint"]

_SESSION: pytest.StashKey[Session] = pytest.StashKey()  # the session module is imported only when enabled


class Endpoint(NamedTuple):
    """Where a live server sends its spans and log records so that a failing test shows them.

    ``url`` is the OTLP/HTTP base URL (``None`` when the plugin is off) and ``env`` the variables that point
    an OpenTelemetry SDK -- and ``otel_corr.instrument`` -- there: start the server's process with
    ``env={**os.environ, **endpoint.env}``.  With the plugin off ``env`` is empty, so the server starts as
    it would without the plugin.

    .. versionadded:: 0.2
    """

    url: str | None
    env: dict[str, str]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("otel-corr")
    group.addoption(
        "--otel-corr",
        action="store_true",
        default=None,
        help="show a failing test's spans and log lines in its report (otel-corr)",
    )
    group.addoption(
        "--otel-corr-url",
        metavar="URL",
        default=None,
        help="also send the run's spans and log records to the otel-corr serve whose page is at URL "
        "(e.g. http://127.0.0.1:16686) and print each failing test's link; implies --otel-corr",
    )
    parser.addini("otel_corr", "show a failing test's spans and log lines in its report", type="bool", default=False)
    parser.addini("otel_corr_url", "the --otel-corr-url default", default="")


def pytest_configure(config: pytest.Config) -> None:
    url = config.getoption("otel_corr_url") or config.getini("otel_corr_url") or None
    if not (config.getoption("otel_corr") or config.getini("otel_corr") or url):
        return
    from ._pytest_session import Links, Session, backend_otlp

    url = url.strip().rstrip("/") if url else None
    otlp, problem = backend_otlp(url) if url else (None, "")
    worker = hasattr(config, "workerinput")
    if not worker:  # the process that prints the summary: xdist's controller, or the only one
        config.pluginmanager.register(Links(url, problem), "otel-corr-links")
        # xdist distributes only with workers to send to (-n or --tx): `addopts = --dist loadscope`
        # without -n runs every test here, and the plugin must too.
        if config.getoption("dist", "no") != "no" and config.getoption("tx", None):
            return  # xdist's controller runs no test: its workers keep their own
    session = Session(url, otlp)
    config.stash[_SESSION] = session
    config.pluginmanager.register(session, "otel-corr")


@pytest.fixture
def otel_corr_endpoint(request: pytest.FixtureRequest) -> Endpoint:
    """This test's endpoint: what a server it starts sends there is shown when this test fails.

    ::

        def test_checkout(otel_corr_endpoint):
            server = subprocess.Popen([...uvicorn...], env={**os.environ, **otel_corr_endpoint.env})

    .. versionadded:: 0.2
    """
    session = request.config.stash.get(_SESSION, None)
    if session is None:
        return Endpoint(None, {})
    return Endpoint(*session.endpoint(request.node))


@pytest.fixture(scope="session")
def otel_corr_session_endpoint(request: pytest.FixtureRequest) -> Endpoint:
    """The endpoint for a server started once for many tests: each span goes to the test running when it began.

    .. versionadded:: 0.2
    """
    session = request.config.stash.get(_SESSION, None)
    if session is None:
        return Endpoint(None, {})
    return Endpoint(*session.endpoint(None))
