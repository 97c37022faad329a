"""pytest plugin: a failing test shows its own trace and log lines (off unless asked for).

Registered through the ``pytest11`` entry point; inert until enabled.
"""

from __future__ import annotations

import pytest

__all__: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("otel-corr")
    group.addoption(
        "--otel-corr",
        action="store_true",
        default=None,
        help="show a failing test's spans and log lines in its report (otel-corr)",
    )
    parser.addini("otel_corr", "show a failing test's spans and log lines in its report", type="bool", default=False)
