"""The ``otel-corr`` command: ``serve``, ``trace``, ``demo`` and ``doctor``.

Every ``serve`` flag has an ``OTEL_CORR_*`` variable; a flag given wins.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _settings
from .exceptions import ConfigError, OtelCorrError

if TYPE_CHECKING:
    from .server import ServeConfig

__all__ = ["main"]

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 86400}


def _retention_ns(text: str) -> int | None:
    m = _SPAN.fullmatch(text.strip())
    if m is None:
        raise ConfigError("--retention / OTEL_CORR_RETENTION", text, "an age such as 7d, 12h or 0 (keep everything)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return int(seconds * 1e9) if seconds > 0 else None


def _number(flag: str, var: str, given: int | None, default: int, low: int, high: int, accepts: str) -> int:
    """A flag's value, else its variable's, else the default; outside ``low..high`` is an error naming both."""
    value = given if given is not None else _settings.env_int(var, default)
    if not low <= value <= high:
        raise ConfigError(f"{flag} / {var}", value, accepts)
    return value


def _listed(given: list[str] | None, var: str, *, lower: bool) -> list[str]:
    """A repeatable flag's values, else its variable's comma-separated ones."""
    values = given if given is not None else (_settings.env_text(var) or "").split(",")
    return [v.strip().lower() if lower else v.strip() for v in values if v.strip()]


def _seconds(flag: str, var: str, given: float | None, default: float) -> float:
    if given is not None:
        return given
    raw = (_settings.env_text(var) or "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{flag} / {var}", raw, "a number of seconds") from None


def _url(flag: str, value: str) -> str:
    parts = urllib.parse.urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(flag, value, "an http:// or https:// URL such as http://127.0.0.1:16686")
    return value.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-corr", description="Request IDs and traces, joined.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the local backend: OTLP in, one-file store, Jaeger's query API, the page")
    serve.add_argument("--host", default=_settings.env_text("OTEL_CORR_HOST") or "127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="UI and query API (default 16686)")
    serve.add_argument("--otlp-http-port", type=int, default=None, help="OTLP/HTTP (default 4318)")
    serve.add_argument("--otlp-grpc-port", type=int, default=None, help="OTLP/gRPC (default 4317)")
    serve.add_argument(
        "--db", default=_settings.env_text("OTEL_CORR_DB"), help="the store file (default: per-user data dir)"
    )
    serve.add_argument(
        "--retention", default=_settings.env_text("OTEL_CORR_RETENTION") or "7d", help="e.g. 7d, 12h; 0 keeps all"
    )
    serve.add_argument("--max-spans", type=int, default=None, help="keep at most N spans (oldest go first)")
    serve.add_argument("--max-body", type=int, default=None, help="OTLP body limit after decompression (bytes)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow --host beyond loopback (anyone who reaches it can read the traces)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=None,
        metavar="NAME",
        help="answer requests whose Host is NAME (besides loopback names and --host); repeatable; * for any",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="let pages from ORIGIN (e.g. http://localhost:3000) call the APIs (CORS); repeatable",
    )
    serve.add_argument(
        "--header-timeout", type=float, default=None, help="seconds a connection has to send its request (default 10)"
    )
    serve.add_argument(
        "--query-timeout", type=float, default=None, help="seconds a query may run before a 503 (default 5)"
    )

    trace = sub.add_parser("trace", help="print a trace and its log lines by request ID or trace ID")
    trace.add_argument("id", help="request ID or trace ID (UUID with dashes, hex, any case)")
    where = trace.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        default=_settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686",
        help="otel-corr serve (default http://127.0.0.1:16686)",
    )
    where.add_argument("--jaeger", help="a Jaeger query service instead, e.g. http://jaeger:16686")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON")

    demo = sub.add_parser("demo", help="start the backend, a small shop and its inventory service, send requests")
    demo.add_argument("--port", type=int, default=16686, help="the page and query API (default 16686)")

    doctor = sub.add_parser("doctor", help="what instrument() changes in the process, and the settings it uses")
    doctor.add_argument(
        "app",
        nargs="?",
        help="your app as module:attribute (imported, then instrumented unless it already is); "
        "default: a stand-in ASGI app",
    )
    doctor.add_argument("--json", action="store_true", help="print the changes and settings as JSON")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import run
    except ImportError as exc:
        print(
            f"otel-corr serve needs the server extra: pip install 'otel-corr[server]' ({exc.name} is missing)",
            file=sys.stderr,
        )
        return 2
    config = _serve_config(args)
    run(config)
    return 0


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """The serve settings from flags, then ``OTEL_CORR_*`` variables, then defaults, checked before anything starts."""
    from .server import ServeConfig, default_db_path

    port_range = "a TCP port between 1 and 65535"
    mib16 = 16 * 1024 * 1024
    ports = {
        "port": _number("--port", "OTEL_CORR_PORT", args.port, 16686, 1, 65535, port_range),
        "otlp_http_port": _number(
            "--otlp-http-port", "OTEL_CORR_OTLP_HTTP_PORT", args.otlp_http_port, 4318, 1, 65535, port_range
        ),
        "otlp_grpc_port": _number(
            "--otlp-grpc-port", "OTEL_CORR_OTLP_GRPC_PORT", args.otlp_grpc_port, 4317, 1, 65535, port_range
        ),
    }
    max_spans = _number(
        "--max-spans", "OTEL_CORR_MAX_SPANS", args.max_spans, 0, 0, 2**62, "a whole number of spans, 0 for no limit"
    )
    max_body = _number(
        "--max-body", "OTEL_CORR_MAX_BODY", args.max_body, mib16, 1024, 2**31, "a number of bytes, 1024 or more"
    )
    db = Path(args.db) if args.db else default_db_path()
    try:
        if db.is_dir():
            raise IsADirectoryError(21, "is a directory")
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "--db / OTEL_CORR_DB", str(db), f"a file path in a usable directory ({exc.strerror})"
        ) from None
    config = ServeConfig(
        allow_hosts=tuple(_listed(args.allow_host, "OTEL_CORR_ALLOW_HOSTS", lower=True)),
        allow_origins=tuple(_listed(args.allow_origin, "OTEL_CORR_ALLOW_ORIGINS", lower=True)),
        header_timeout=_seconds("--header-timeout", "OTEL_CORR_HEADER_TIMEOUT", args.header_timeout, 10.0),
        query_budget=_seconds("--query-timeout", "OTEL_CORR_QUERY_TIMEOUT", args.query_timeout, 5.0),
        host=args.host,
        **ports,
        db=db,
        retention_ns=_retention_ns(args.retention),
        max_spans=max_spans or None,
        max_body=max_body,
        allow_remote=args.allow_remote
        if args.allow_remote is not None
        else _settings.env_bool("OTEL_CORR_ALLOW_REMOTE", False),
    )
    try:
        config.check()
    except ConfigError as exc:  # name the variables too, not only the flags
        names = {
            "--host": "--host / OTEL_CORR_HOST",
            "--allow-host": "--allow-host / OTEL_CORR_ALLOW_HOSTS",
            "--allow-origin": "--allow-origin / OTEL_CORR_ALLOW_ORIGINS",
            "--header-timeout": "--header-timeout / OTEL_CORR_HEADER_TIMEOUT",
            "--query-timeout": "--query-timeout / OTEL_CORR_QUERY_TIMEOUT",
            "ports": "--port, --otlp-http-port, --otlp-grpc-port / OTEL_CORR_PORT, OTEL_CORR_OTLP_HTTP_PORT, "
            "OTEL_CORR_OTLP_GRPC_PORT",
        }
        raise ConfigError(names.get(exc.name, exc.name), exc.value, exc.accepted) from None
    return config


def _fetch(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None


def _trace(args: argparse.Namespace) -> int:
    from ._render import render_trace

    base = _url("--jaeger" if args.jaeger else "--url / OTEL_CORR_URL", args.jaeger or args.url).rstrip("/")
    ident = args.id.strip()
    lookup = ident
    if args.jaeger:
        from .server._ids import parse_trace_id

        parsed = parse_trace_id(ident)
        if parsed is None:
            print(
                f"{ident[:80]!r} is not a trace ID; Jaeger can only look up trace IDs "
                "(otel-corr serve also finds request IDs)",
                file=sys.stderr,
            )
            return 1
        lookup = parsed.hex()
    try:
        status, body = _fetch(f"{base}/api/traces/{urllib.parse.quote(lookup, safe='')}")
    except (urllib.error.URLError, OSError) as exc:
        print(f"cannot reach {base}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    if status == 404 or not body or not body.get("data"):
        print(f"no trace found for {ident[:80]!r} at {base}", file=sys.stderr)
        return 1
    trace = body["data"][0]
    if args.json:
        json.dump(trace, sys.stdout, indent=2)
        print()
        return 0
    page = None if args.jaeger else f"{base}/trace/{trace['traceID']}"
    render_trace(trace, page)
    return 0


def _load_app(spec: str) -> Any:
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError("app", spec, "module:attribute, e.g. myservice.main:app")
    sys.path.insert(0, os.getcwd())  # as uvicorn and gunicorn find the app
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _setting(value: Any) -> Any:
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or "none"
    if callable(value):
        return getattr(value, "__qualname__", type(value).__qualname__)
    return value


def _doctor(args: argparse.Namespace) -> int:
    """Instrument the app (or a stand-in) as a server would, then print otel_corr.patches() and the settings."""
    import dataclasses

    import otel_corr

    from ._provider import _otlp_target
    from ._settings import check_otel_environment, resolve_settings
    from .propagation._process import adopt_enabled

    check_otel_environment()
    if args.app:
        app: Any = _load_app(args.app)
    else:

        async def app(scope: Any, receive: Any, send: Any) -> None:  # a stand-in: nothing is served
            return None

    otel_corr.instrument(app)
    from opentelemetry import propagate, trace

    settings = resolve_settings({})
    config: dict[str, Any] = {
        f.name: _setting(getattr(settings, f.name))
        for f in dataclasses.fields(settings)
        if f.init and f.name not in ("generator", "validator", "transformer", "tracer_provider")
    }
    traces_exporter = ",".join(_settings.signal_exporters("TRACES", "otlp"))  # OTEL_TRACES_EXPORTER
    config.update(
        {
            "tracer_provider": type(trace.get_tracer_provider()).__qualname__,
            "traces_exporter": traces_exporter
            + (f" ({_otlp_target()})" if "otlp" in traces_exporter.split(",") else ""),
            "logs_exporter": ",".join(_settings.signal_exporters("LOGS", "none")),  # OTEL_LOGS_EXPORTER
            "propagator": ", ".join(
                type(p).__name__ for p in getattr(propagate.get_global_textmap(), "_propagators", [])
            ),
            "adopt_environment": adopt_enabled(),
        }
    )
    rows = otel_corr.patches()
    if args.json:
        json.dump({"patches": [r._asdict() for r in rows], "settings": config}, sys.stdout, indent=2, default=str)
        print()
        return 0
    print(f"Process-wide changes after instrument({args.app or 'a stand-in ASGI app'}), oldest first:")
    width = max(len(r.target) for r in rows) if rows else 0
    for r in rows:
        print(f"  {r.target:<{width}}  {'yes' if r.reversible else 'NO ':<3}  {r.installed_by}")
        print(f"  {'':<{width}}       {r.what}")
    print("reversible: otel_corr.uninstrument() undoes every 'yes'; see docs/usage.md for each one.")
    print()
    print("Settings (arguments given to instrument() in your code are not seen here):")
    key_width = max(map(len, config))
    for key, value in config.items():
        print(f"  {key:<{key_width}}  {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "trace":
            return _trace(args)
        if args.command == "doctor":
            return _doctor(args)
        from ._demo import run_demo

        if not 1 <= args.port <= 65535:
            raise ConfigError("--port", args.port, "a TCP port between 1 and 65535")
        return run_demo(args.port)
    except OtelCorrError as exc:
        print(f"otel-corr: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"otel-corr: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
