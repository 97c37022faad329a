"""Configuration: bad values fail at start-up naming the variable; the app's provider is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi import FastAPI

import otel_corr
from otel_corr import ConfigError

BAD_ENV = [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon", "http/protobuf or grpc"),
    ("OTEL_TRACES_SAMPLER", "sometimes", "parentbased_always_on"),
    ("OTEL_TRACES_SAMPLER_ARG", "2", "between 0 and 1"),
    ("OTEL_TRACES_EXPORTER", "jaegerr", "otlp"),
    ("OTEL_PROPAGATORS", "tracecontext,b4", "tracecontext"),
    ("OTEL_SDK_DISABLED", "maybe", "true or false"),
    ("OTEL_BSP_SCHEDULE_DELAY", "soon", "positive integer"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "100", "at most OTEL_BSP_MAX_QUEUE_SIZE"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318", "http:// or https://"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1", "non-negative"),
    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip", "gzip"),
    ("OTEL_CORR_TRACE_RESPONSE", "perhaps", "true or false"),
    ("OTEL_CORR_REQUEST_ID_HEADER", "X Request", "header name"),
    ("OTEL_CORR_SHUTDOWN_TIMEOUT", "forever", "seconds"),
    ("OTEL_PYTHON_EXCLUDED_URLS", "health,(", "regular expressions"),
]


@pytest.mark.parametrize(("var", "value", "accepted"), BAD_ENV, ids=[b[0] for b in BAD_ENV])
def test_bad_environment_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, accepted: str
) -> None:
    """instrument() raises ConfigError naming the variable, its value and what it accepts."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio") if var == "OTEL_TRACES_SAMPLER_ARG" else None
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        otel_corr.instrument(FastAPI())
    message = str(info.value)
    assert var in message and accepted in message
    if var != "OTEL_PYTHON_EXCLUDED_URLS":
        assert value in message


def test_secret_headers_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed OTEL_EXPORTER_OTLP_HEADERS is reported without its (secret) value."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Bearer-s3cret")
    with pytest.raises(ConfigError) as info:
        otel_corr.instrument(FastAPI())
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"header_name": "bad header"}, "header_name"),
        ({"generator": "uuid4"}, "generator"),
        ({"trace_response": "yes"}, "trace_response"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"excluded_urls": ["("]}, "excluded_urls"),
        ({"header_nmae": "X"}, "instrument() argument"),
    ],
)
def test_bad_arguments_fail_naming_the_argument(kwargs: dict[str, object], name: str) -> None:
    """Bad keyword arguments raise ConfigError naming the argument."""
    with pytest.raises(ConfigError) as info:
        otel_corr.instrument(FastAPI(), **kwargs)  # type: ignore[arg-type]
    assert info.value.name == name


def test_not_an_app_is_refused() -> None:
    """Something that is neither ASGI nor WSGI is refused clearly."""
    with pytest.raises(ConfigError, match="ASGI/WSGI"):
        otel_corr.instrument(42)


def _run(code: str, **env: str) -> str:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_an_apps_own_provider_is_kept() -> None:
    """instrument() never installs a second TracerProvider."""
    code = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from fastapi import FastAPI
import otel_corr
mine = TracerProvider()
trace.set_tracer_provider(mine)
otel_corr.instrument(FastAPI())
print(trace.get_tracer_provider() is mine)
"""
    assert _run(code) == "True"


def test_defaults_are_otlp_http_protobuf_with_standard_service_name() -> None:
    """Nothing configured: OTLP over HTTP/protobuf to localhost:4318; OTEL_SERVICE_NAME read by the SDK."""
    code = """
from opentelemetry import trace
from fastapi import FastAPI
import otel_corr
otel_corr.instrument(FastAPI())
p = trace.get_tracer_provider()
proc = p._active_span_processor._span_processors[0]
exp = proc._batch_processor._exporter.inner  # behind otel_corr._export.GuardedSpanExporter
print(type(exp).__module__, exp._endpoint, p.resource.attributes["service.name"])
"""
    out = _run(code, OTEL_SERVICE_NAME="checkout", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=ci")
    assert out == "opentelemetry.exporter.otlp.proto.http.trace_exporter http://localhost:4318/v1/traces checkout"


def test_import_needs_only_the_core() -> None:
    """`import otel_corr` and instrumenting a raw ASGI app work with no framework or client installed."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'fastapi', 'starlette', 'flask', 'httpx', 'requests', 'aiohttp', 'celery',
                                  'structlog', 'loguru', 'uvicorn', 'werkzeug', 'grpc'}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import otel_corr
async def app(scope, receive, send):
    pass
print(type(otel_corr.instrument(app)).__name__)
"""
    assert _run(code, OTEL_TRACES_EXPORTER="none") == "CorrelationMiddleware"


def test_public_api_is_exported() -> None:
    """Everything public is in __all__, sorted, and nothing private leaks (submodules aside)."""
    import types

    names = [
        n for n in dir(otel_corr) if not n.startswith("_") and not isinstance(getattr(otel_corr, n), types.ModuleType)
    ]
    assert sorted(otel_corr.__all__) == otel_corr.__all__
    assert set(names) == set(otel_corr.__all__) - {"__version__"}


def test_importing_the_package_costs_no_sdk_until_a_name_is_used() -> None:
    """`otel-corr why` and the pytest plugin every pytest run loads import the package: the SDK
    (~150 ms) must come only with the first name that needs it, and the names still resolve."""
    code = (
        "import sys, otel_corr\n"
        "print('sdk' in ' '.join(m for m in sys.modules if m.startswith('opentelemetry.sdk')) or 'none')\n"
        "otel_corr.instrument\n"
        "print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))\n"
        "print(otel_corr.current_ids is otel_corr._context.current_ids, 'flush' in dir(otel_corr))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEPARENT", "X_REQUEST_ID")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["none", "True", "True", "True"]
