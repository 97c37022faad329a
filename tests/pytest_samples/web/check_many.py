"""A long test: more spans and log lines than the plugin keeps; the last ones are what explain the failure."""

from __future__ import annotations

import logging

from apps import log  # noqa: F401 -- the sample's instrumented apps set the global provider up
from opentelemetry import trace


def test_the_last_step_fails() -> None:
    tracer = trace.get_tracer("steps")
    for i in range(5100):
        with tracer.start_as_current_span(f"step-{i}"):
            pass
    logging.getLogger("shop").error("THE REAL ERROR after step %d", 5099)
    raise AssertionError("the last step failed")


def test_a_chatty_request_fails() -> None:
    tracer = trace.get_tracer("steps")
    with tracer.start_as_current_span("chatty"):
        for i in range(200):
            logging.getLogger("shop").info("chatty line %d", i)
    raise AssertionError("too chatty")
