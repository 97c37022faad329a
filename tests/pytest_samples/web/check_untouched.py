"""What the plugin changes in the process: nothing when it is off."""

from __future__ import annotations

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import apps  # noqa: F401 - an instrumented app, as in a user's suite
from opentelemetry import trace

import otel_corr


def test_nothing_is_changed() -> None:
    assert [p for p in otel_corr.patches() if p.installed_by.startswith("pytest_plugin")] == []
    assert not any(type(h).__module__.startswith("otel_corr._pytest") for h in logging.getLogger().handlers)
    for changed in (threading.Thread.start, ThreadPoolExecutor.submit, trace.set_tracer_provider):
        assert not changed.__module__.startswith("otel_corr._pytest")
    processors = trace.get_tracer_provider()._active_span_processor._span_processors  # type: ignore[attr-defined]
    assert not any(type(p).__module__.startswith("otel_corr._pytest") for p in processors)
    assert not [name for name in sys.modules if name.startswith("otel_corr._pytest")]
