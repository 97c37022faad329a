"""The ``otel-corr`` command: ``serve``, ``trace`` and ``demo``.

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
from typing import Any

from .exceptions import ConfigError, OtelCorrError

__all__ = ["main"]

_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 86400}


def _retention_ns(text: str) -> int | None:
    m = _SPAN.fullmatch(text.strip())
    if m is None:
        raise ConfigError("--retention / OTEL_CORR_RETENTION", text, "an age such as 7d, 12h or 0 (keep everything)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return int(seconds * 1e9) if seconds > 0 else None


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, raw, "a whole number") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-corr", description="Request IDs and traces, joined.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="the local backend: OTLP in, one-file store, Jaeger's query API, the page")
    serve.add_argument("--host", default=os.environ.get("OTEL_CORR_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None, help="UI and query API (default 16686)")
    serve.add_argument("--otlp-http-port", type=int, default=None, help="OTLP/HTTP (default 4318)")
    serve.add_argument("--otlp-grpc-port", type=int, default=None, help="OTLP/gRPC (default 4317)")
    serve.add_argument(
        "--db", default=os.environ.get("OTEL_CORR_DB"), help="the store file (default: per-user data dir)"
    )
    serve.add_argument(
        "--retention", default=os.environ.get("OTEL_CORR_RETENTION", "7d"), help="e.g. 7d, 12h; 0 keeps all"
    )
    serve.add_argument("--max-spans", type=int, default=None, help="keep at most N spans (oldest go first)")
    serve.add_argument("--max-body", type=int, default=None, help="OTLP body limit after decompression (bytes)")
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        default=os.environ.get("OTEL_CORR_ALLOW_REMOTE") == "true",
        help="allow --host beyond loopback (anyone who reaches it can read the traces)",
    )

    trace = sub.add_parser("trace", help="print a trace and its log lines by request ID or trace ID")
    trace.add_argument("id", help="request ID or trace ID (UUID with dashes, hex, any case)")
    where = trace.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        default=os.environ.get("OTEL_CORR_URL", "http://127.0.0.1:16686"),
        help="otel-corr serve (default http://127.0.0.1:16686)",
    )
    where.add_argument("--jaeger", help="a Jaeger query service instead, e.g. http://jaeger:16686")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON")

    demo = sub.add_parser("demo", help="start the backend, a small shop and its inventory service, send requests")
    demo.add_argument("--port", type=int, default=16686, help="the page and query API (default 16686)")
    return parser


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import ServeConfig, default_db_path, run
    except ImportError as exc:
        print(
            f"otel-corr serve needs the server extra: pip install 'otel-corr[server]' ({exc.name} is missing)",
            file=sys.stderr,
        )
        return 2
    config = ServeConfig(
        host=args.host,
        port=args.port or _env_int("OTEL_CORR_PORT", 16686),
        otlp_http_port=args.otlp_http_port or _env_int("OTEL_CORR_OTLP_HTTP_PORT", 4318),
        otlp_grpc_port=args.otlp_grpc_port or _env_int("OTEL_CORR_OTLP_GRPC_PORT", 4317),
        db=Path(args.db) if args.db else default_db_path(),
        retention_ns=_retention_ns(args.retention),
        max_spans=args.max_spans or (_env_int("OTEL_CORR_MAX_SPANS", 0) or None),
        max_body=args.max_body or _env_int("OTEL_CORR_MAX_BODY", 16 * 1024 * 1024),
        allow_remote=args.allow_remote,
    )
    run(config)
    return 0


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

    base = (args.jaeger or args.url).rstrip("/")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "trace":
            return _trace(args)
        from ._demo import run_demo

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
