"""The one settings resolver: every argument and environment variable otel-corr reads, read here.

Precedence: ``instrument()``/``configure_logging()`` argument > ``OTEL_CORR_*``
variable > standard ``OTEL_*`` variable > default.  One boolean grammar
(:func:`parse_bool`: ``true/1/yes/on``, ``false/0/no/off``, any case, blank is
the default) and one error, :class:`~otel_corr.ConfigError`, naming the
argument or variable and what it accepts.  Every other module asks this one;
none reads ``os.environ`` for a setting (``tests/test_settings.py`` checks the
source), so what is validated and what is used cannot drift apart.

OpenTelemetry's own settings (``OTEL_*``) are read by the SDK the way it always
reads them; :func:`check_otel_environment` only *checks* them eagerly, because
the SDK merely logs a warning and falls back (a sampler named ``sometimes``
silently becomes ``parentbased_always_on``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypedDict
from urllib.parse import urlsplit

from ._redact import SENSITIVE_NAMES, sensitive_pattern
from .exceptions import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = [
    "BOOLEAN_VARIABLES",
    "UNSET",
    "Options",
    "Settings",
    "adopt_environment",
    "check_otel_environment",
    "data_home",
    "env_bool",
    "env_int",
    "env_text",
    "environ",
    "flag",
    "logs_exporters",
    "otlp_endpoint",
    "otlp_protocol",
    "parse_bool",
    "request_id_header",
    "resolve_settings",
    "service_name",
    "signal_exporters",
]

TRUE: Final = frozenset({"true", "1", "yes", "on"})
FALSE: Final = frozenset({"false", "0", "no", "off"})
#: Every boolean variable, with its default: all are read through :func:`env_bool`.
BOOLEAN_VARIABLES: Final = {
    "OTEL_SDK_DISABLED": False,
    "OTEL_CORR_ADOPT_ENVIRONMENT": True,
    "OTEL_CORR_UPDATE_REQUEST_HEADER": True,
    "OTEL_CORR_TRACE_RESPONSE": True,
    "OTEL_CORR_ACCESS_LOG": True,  # instrument(): unset follows configure_logging (see resolve_settings)
    "OTEL_CORR_ERROR_LOG": True,
    "OTEL_CORR_LOG_QUEUE": False,
    "OTEL_CORR_ALLOW_REMOTE": False,
}


class _Unset:
    """Not given (where ``None`` is a value someone can pass, and be told is wrong)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


# --- the primitives: every read of the environment goes through these ---------------


def environ() -> Mapping[str, str]:
    """The process environment: the one place otel-corr takes it from (also as a trace carrier)."""
    return os.environ


def env_text(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A variable's value, stripped; ``None`` when unset or blank (blank means the default)."""
    value = (os.environ if env is None else env).get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_bool(name: str, value: str) -> bool:
    """The one boolean grammar: true/1/yes/on, false/0/no/off, any case; else ConfigError naming ``name``."""
    low = value.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise ConfigError(name, value, "true or false (also 1/0, yes/no, on/off)")


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """A boolean variable: :func:`parse_bool`, or ``default`` when unset or blank."""
    raw = env_text(name, env)
    return default if raw is None else parse_bool(name, raw)


def flag(
    var: str, default: bool, *, arg: str = "", value: object = UNSET, env: Mapping[str, str] | None = None
) -> bool:
    """A boolean setting: the argument ``arg`` if given (it must be a bool), else ``var``, else ``default``."""
    if value is not UNSET:
        if not isinstance(value, bool):
            raise ConfigError(arg, value, "True or False")
        return value
    return env_bool(var, default, env)


def env_int(name: str, default: int, env: Mapping[str, str] | None = None) -> int:
    """A whole-number variable, or ``default`` when unset or blank."""
    raw = env_text(name, env)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, raw, "a whole number") from None


# --- settings read outside instrument() ----------------------------------------------


def adopt_environment() -> bool:
    """``OTEL_CORR_ADOPT_ENVIRONMENT``, read when ``otel_corr`` is imported.

    An import must not fail: a value outside the grammar counts as the default
    here, and :func:`check_otel_environment` (inside ``instrument()``) raises on it.
    """
    try:
        return env_bool("OTEL_CORR_ADOPT_ENVIRONMENT", True)
    except ConfigError:
        return True


def request_id_header() -> str:
    """``OTEL_CORR_REQUEST_ID_HEADER`` as the environment gives it (checked by :func:`resolve_settings`)."""
    return env_text("OTEL_CORR_REQUEST_ID_HEADER") or "X-Request-ID"


def service_name() -> str | None:
    """``OTEL_SERVICE_NAME``, or ``None``."""
    return env_text("OTEL_SERVICE_NAME")


def signal_exporters(signal: str, default: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The exporter names of ``OTEL_TRACES_EXPORTER``/``OTEL_LOGS_EXPORTER`` (``signal``: TRACES or LOGS)."""
    raw = env_text(f"OTEL_{signal}_EXPORTER", env) or default
    return [name.strip() for name in raw.split(",") if name.strip()]


def otlp_protocol(signal: str) -> str:
    """``OTEL_EXPORTER_OTLP_<signal>_PROTOCOL``, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else http/protobuf."""
    return (
        env_text(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env_text("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    )


def otlp_endpoint(signal: str) -> str:
    """Where the OTLP exporter of ``signal`` (TRACES or LOGS) sends, resolved as the exporters resolve it.

    ``OTEL_EXPORTER_OTLP_<signal>_ENDPOINT`` as given, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus
    ``/v1/traces`` or ``/v1/logs`` over HTTP), else ``localhost:4318`` (HTTP) or ``localhost:4317`` (gRPC).
    For our messages only: the exporters read the variables themselves.
    """
    endpoint = env_text(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    if endpoint:
        return endpoint
    base = env_text("OTEL_EXPORTER_OTLP_ENDPOINT") or ""
    if otlp_protocol(signal) == "grpc":
        return base or "http://localhost:4317"
    return (base or "http://localhost:4318").rstrip("/") + f"/v1/{signal.lower()}"


def _exporter_names(var: str, group: str, value: str) -> list[str]:
    """The names listed in ``var``, each one we can build; else ConfigError naming ``var``."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    known = {"otlp", "console", "none"}
    if not set(names) <= known:
        known |= _entry_point_names(group)
        if not set(names) <= known:
            raise ConfigError(var, value, "a comma-separated list of " + ", ".join(sorted(known)))
    return names


def logs_exporters(env: Mapping[str, str] | None = None) -> list[str]:
    """Where log records go: the names of ``OTEL_LOGS_EXPORTER``, resolved; empty when they go nowhere.

    Set, it decides (``none`` alone: nowhere).  Unset, log records follow the spans: ``otlp`` (the
    specification's default) when ``OTEL_TRACES_EXPORTER`` sends spans over OTLP (its default too), nothing
    when it is ``none``, ``console`` or only a plug-in.  ``OTEL_SDK_DISABLED=true``: nowhere, whatever is set.
    """
    if env_bool("OTEL_SDK_DISABLED", False, env):
        return []
    raw = env_text("OTEL_LOGS_EXPORTER", env)
    if raw is None:
        return ["otlp"] if "otlp" in signal_exporters("TRACES", "otlp", env) else []
    return [n for n in _exporter_names("OTEL_LOGS_EXPORTER", "opentelemetry_logs_exporter", raw) if n != "none"]


def data_home() -> str | None:
    """``XDG_DATA_HOME`` (the directory ``otel-corr serve`` keeps its store under by default), or ``None``."""
    return env_text("XDG_DATA_HOME")


# --- instrument() --------------------------------------------------------------------

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")

# Always redacted when captured, whatever the user lists (matched with re.search,
# case-insensitive, against the header name).
DEFAULT_SANITIZE = SENSITIVE_NAMES


class Options(TypedDict, total=False):
    """Keyword arguments of :func:`otel_corr.instrument` (all optional)."""

    header_name: str
    generator: Callable[[], str]
    validator: Callable[[str], bool]
    transformer: Callable[[str], str]
    update_request_header: bool
    trace_response: bool
    excluded_urls: str | Sequence[str]
    capture_request_headers: Sequence[str]
    capture_response_headers: Sequence[str]
    sanitize_fields: Sequence[str]
    service_name: str
    tracer_provider: TracerProvider
    shutdown_timeout: float
    access_log: bool
    error_log: bool
    propagate: bool | str | Sequence[str]


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved, validated settings of one instrumented application."""

    header_name: str = "X-Request-ID"
    generator: Callable[[], str] | None = None
    validator: Callable[[str], bool] | None = None
    transformer: Callable[[str], str] | None = None
    update_request_header: bool = True
    trace_response: bool = True
    excluded_urls: re.Pattern[str] | None = None
    capture_request_headers: re.Pattern[str] | None = None
    capture_response_headers: re.Pattern[str] | None = None
    sanitize: re.Pattern[str] = field(default_factory=sensitive_pattern)
    service_name: str | None = None
    tracer_provider: TracerProvider | None = None
    shutdown_timeout: float = 5.0
    sdk_disabled: bool = False
    #: None: follow configure_logging(access_log=...); True/False: this app's own choice.
    access_log: bool | None = None
    error_log: bool = True
    propagate: frozenset[str] = frozenset()
    #: The request-ID header name, lower-cased as ASGI and our carriers hold it (derived).
    header_key: str = field(init=False, default="", compare=False)

    def __post_init__(self) -> None:
        # Derived once: every request reads it several times.
        object.__setattr__(self, "header_key", self.header_name.lower())


def _regex_list(name: str, items: Sequence[str], flags: int = 0) -> re.Pattern[str] | None:
    items = [item.strip() for item in items if item.strip()]
    if not items:
        return None
    for item in items:
        try:
            re.compile(item)
        except re.error as exc:
            raise ConfigError(name, item, f"a comma-separated list of regular expressions ({exc})") from None
    return re.compile("|".join(f"(?:{item})" for item in items), flags)


def _split(value: str | Sequence[str]) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


def resolve_settings(options: Options, framework: str = "", env: Mapping[str, str] | None = None) -> Settings:
    """Resolve ``options`` > ``OTEL_CORR_*``/``OTEL_*`` variables > defaults, validating each."""
    from .propagation import parse_links  # not at import: propagation reads its settings from here

    env = os.environ if env is None else env
    unknown = set(options) - set(Options.__annotations__)
    if unknown:
        raise ConfigError(
            "instrument() argument", sorted(unknown)[0], "one of " + ", ".join(sorted(Options.__annotations__))
        )

    header_name = options.get("header_name") or env_text("OTEL_CORR_REQUEST_ID_HEADER", env) or "X-Request-ID"
    if not isinstance(header_name, str) or not _HEADER_NAME.fullmatch(header_name):
        src = "header_name" if "header_name" in options else "OTEL_CORR_REQUEST_ID_HEADER"
        raise ConfigError(src, header_name, "an HTTP header name such as X-Request-ID or X-Correlation-ID")
    if header_name.lower() in ("traceparent", "tracestate", "baggage", "traceresponse"):
        raise ConfigError("header_name", header_name, "a header other than the W3C trace-context ones")

    for hook in ("generator", "validator", "transformer"):
        if hook in options and not callable(options[hook]):
            raise ConfigError(hook, options[hook], "a callable")

    def option_flag(key: str, var: str, default: bool) -> bool:
        return flag(var, default, arg=key, value=options.get(key, UNSET), env=env)

    if "excluded_urls" in options:
        excluded = _regex_list("excluded_urls", _split(options["excluded_urls"]))
    else:
        var = f"OTEL_PYTHON_{framework.upper()}_EXCLUDED_URLS" if framework else ""
        if var and var in env:
            excluded = _regex_list(var, env[var].split(","))
        else:
            excluded = _regex_list("OTEL_PYTHON_EXCLUDED_URLS", env.get("OTEL_PYTHON_EXCLUDED_URLS", "").split(","))

    def capture(key: str, var: str) -> re.Pattern[str] | None:
        items = _split(options[key]) if key in options else env.get(var, "").split(",")  # type: ignore[literal-required]
        pattern = _regex_list(key if key in options else var, items, re.IGNORECASE)
        # contrib matches the whole header name against each configured regex
        return None if pattern is None else re.compile(f"(?:{pattern.pattern})\\Z", re.IGNORECASE)

    san_var = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
    extra = _split(options["sanitize_fields"]) if "sanitize_fields" in options else env.get(san_var, "").split(",")
    sanitize = _regex_list(
        "sanitize_fields" if "sanitize_fields" in options else san_var,
        [*DEFAULT_SANITIZE, *extra],
        re.IGNORECASE,
    )
    assert sanitize is not None  # the defaults are never empty

    timeout: object = options.get("shutdown_timeout", env_text("OTEL_CORR_SHUTDOWN_TIMEOUT", env) or "5")
    try:
        shutdown_timeout = float(timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        shutdown_timeout = -1.0
    if not 0 <= shutdown_timeout <= 300:
        src = "shutdown_timeout" if "shutdown_timeout" in options else "OTEL_CORR_SHUTDOWN_TIMEOUT"
        raise ConfigError(src, timeout, "a number of seconds between 0 and 300")

    service_name = options.get("service_name")
    if service_name is not None and (not isinstance(service_name, str) or not service_name.strip()):
        raise ConfigError("service_name", service_name, "a non-empty string")

    provider = options.get("tracer_provider")
    from opentelemetry.trace import TracerProvider  # here: importing _settings costs no OpenTelemetry

    if provider is not None and not isinstance(provider, TracerProvider):
        raise ConfigError("tracer_provider", provider, "an opentelemetry.trace.TracerProvider")

    return Settings(
        header_name=header_name,
        generator=options.get("generator"),
        validator=options.get("validator"),
        transformer=options.get("transformer"),
        update_request_header=option_flag("update_request_header", "OTEL_CORR_UPDATE_REQUEST_HEADER", True),
        trace_response=option_flag("trace_response", "OTEL_CORR_TRACE_RESPONSE", True),
        excluded_urls=excluded,
        capture_request_headers=capture(
            "capture_request_headers", "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"
        ),
        capture_response_headers=capture(
            "capture_response_headers", "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE"
        ),
        sanitize=sanitize,
        service_name=service_name,
        tracer_provider=provider,
        shutdown_timeout=shutdown_timeout,
        sdk_disabled=env_bool("OTEL_SDK_DISABLED", False, env),
        # unset: None, so that configure_logging(access_log=...) decides for every app
        access_log=option_flag("access_log", "OTEL_CORR_ACCESS_LOG", False)
        if "access_log" in options or env_text("OTEL_CORR_ACCESS_LOG", env) is not None
        else None,
        error_log=option_flag("error_log", "OTEL_CORR_ERROR_LOG", True),
        propagate=parse_links(options["propagate"], "propagate")
        if "propagate" in options
        else parse_links(env_text("OTEL_CORR_PROPAGATE", env) or "all", "OTEL_CORR_PROPAGATE"),
    )


# --- OpenTelemetry's own variables: checked here, read by the SDK -----------------

_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_PROTOCOLS = ("http/protobuf", "grpc")
_COMPRESSIONS = ("gzip", "deflate", "none")


def _entry_point_names(group: str) -> set[str]:
    from importlib.metadata import entry_points  # only when a variable names a plug-in: it is a heavy import

    return {ep.name for ep in entry_points(group=group)}


def _kv_list(name: str, value: str, secret: bool) -> None:
    for item in value.split(","):
        if item.strip() and ("=" not in item or not item.split("=", 1)[0].strip()):
            raise ConfigError(name, "<redacted>" if secret else value, "a comma-separated list of key=value pairs")


def check_otel_environment(env: Mapping[str, str] | None = None) -> None:
    """Check the standard ``OTEL_*`` variables the SDK will read; raise on the first bad one."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    # Read by the SDK (which takes only "true") and at import: checked here, where errors go.
    for var in ("OTEL_SDK_DISABLED", "OTEL_CORR_ADOPT_ENVIRONMENT"):
        env_bool(var, BOOLEAN_VARIABLES[var], env)

    if (v := get("OTEL_TRACES_EXPORTER")) is not None:
        known = {"otlp", "console", "none"} | _entry_point_names("opentelemetry_traces_exporter")
        for name in (n.strip() for n in v.split(",")):
            if name not in known:
                raise ConfigError("OTEL_TRACES_EXPORTER", v, "a comma-separated list of " + ", ".join(sorted(known)))

    if (v := get("OTEL_LOGS_EXPORTER")) is not None:
        _exporter_names("OTEL_LOGS_EXPORTER", "opentelemetry_logs_exporter", v)

    for var in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
    ):
        if (v := get(var)) is not None and v not in _PROTOCOLS:
            hint = " (http/json is not supported by the Python OTLP exporter)" if v == "http/json" else ""
            raise ConfigError(var, v, "http/protobuf or grpc" + hint)

    for var in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    ):
        if (v := get(var)) is not None:
            try:
                parts = urlsplit(v)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(var, v, "an http:// or https:// URL such as http://localhost:4318")

    for var in (
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
    ):
        if (v := get(var)) is not None and v not in _COMPRESSIONS:
            raise ConfigError(var, v, "gzip, deflate or none")

    for var in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"):
        if (v := get(var)) is not None:
            try:
                ok = float(v) >= 0
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(var, v, "a non-negative number (seconds, as the Python exporter reads it)")

    for var in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"):
        if (v := get(var)) is not None:
            _kv_list(var, v, secret=True)
    if (v := get("OTEL_RESOURCE_ATTRIBUTES")) is not None:
        _kv_list("OTEL_RESOURCE_ATTRIBUTES", v, secret=False)

    sampler = (get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").lower()
    if sampler not in _SAMPLERS:
        raise ConfigError("OTEL_TRACES_SAMPLER", env.get("OTEL_TRACES_SAMPLER"), "one of " + ", ".join(_SAMPLERS))
    if sampler.endswith("traceidratio") and (v := get("OTEL_TRACES_SAMPLER_ARG")) is not None:
        try:
            ok = 0.0 <= float(v) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError("OTEL_TRACES_SAMPLER_ARG", v, "a probability between 0 and 1")

    if (v := get("OTEL_PROPAGATORS")) is not None:
        known = {"none"} | _entry_point_names("opentelemetry_propagator")
        for name in (n.strip() for n in v.split(",")):
            if name not in known:
                raise ConfigError("OTEL_PROPAGATORS", v, "a comma-separated list of " + ", ".join(sorted(known)))

    # The SDK's span limits (SpanLimits reads them when the provider is made); they bound our server span too.
    for var in _LIMIT_VARIABLES:
        if (v := get(var)) is not None and v.strip() and not v.strip().isdigit():  # empty: no limit
            raise ConfigError(var, v, "a non-negative integer")

    _check_batch_processor(get, "OTEL_BSP_", 2048, 512)
    # The log record processor's siblings (OTEL_BLRP_SCHEDULE_DELAY and the rest): the same rules.
    _check_batch_processor(get, "OTEL_BLRP_", 2048, 512)


_LIMIT_VARIABLES = (
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
)


def _check_batch_processor(
    get: Callable[[str], str | None], prefix: str, queue_default: int, batch_default: int
) -> None:
    sizes: dict[str, int] = {}
    for suffix in ("SCHEDULE_DELAY", "EXPORT_TIMEOUT", "MAX_QUEUE_SIZE", "MAX_EXPORT_BATCH_SIZE"):
        var = prefix + suffix
        if (v := get(var)) is not None:
            try:
                sizes[suffix] = int(v)
            except ValueError:
                sizes[suffix] = -1
            if sizes[suffix] <= 0 and not (var.endswith("TIMEOUT") and sizes[suffix] == 0):
                raise ConfigError(
                    var, v, "a positive integer" + (" (milliseconds)" if "DELAY" in var or "TIMEOUT" in var else "")
                )
    queue = sizes.get("MAX_QUEUE_SIZE", queue_default)
    batch = sizes.get("MAX_EXPORT_BATCH_SIZE", batch_default)
    if batch > queue:
        raise ConfigError(f"{prefix}MAX_EXPORT_BATCH_SIZE", batch, f"at most {prefix}MAX_QUEUE_SIZE ({queue})")
