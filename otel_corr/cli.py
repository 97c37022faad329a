"""The ``otel-corr`` command: ``serve``, ``trace``, ``find``, ``why``, ``tail``, ``demo`` and ``doctor``.

Every ``serve`` flag has an ``OTEL_CORR_*`` variable; a flag given wins.  Exit statuses: see ``EXIT_STATUSES``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _settings
from ._terminal import visible
from .exceptions import ConfigError, OtelCorrError

if TYPE_CHECKING:
    from .server import ServeConfig

__all__ = ["main"]

#: Exit statuses, distinct so that a script can tell them apart (listed by ``otel-corr --help`` and in
#: docs/local-backend.md).
EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NOT_OURS = 0, 1, 2, 3, 4
EXIT_SERVICE_FAILED, EXIT_INTERRUPTED = 5, 130
EXIT_STATUSES = {
    EXIT_OK: "success; serve, tail and demo stopped by Ctrl-C or SIGTERM (how they are meant to end)",
    EXIT_NOT_FOUND: "trace, why: no trace has that ID; find: no request matches",
    EXIT_USAGE: "a usage or configuration error (a bad flag, variable or argument; a port in use; an extra "
    "missing; find: a query the server cannot read)",
    EXIT_UNREACHABLE: "trace, find, why, tail: the backend cannot be reached (or answered with a server error)",
    EXIT_NOT_OURS: "trace, find, why, tail: the URL answers, but not as an otel-corr serve (or, with --jaeger, a "
    "Jaeger query API)",
    EXIT_SERVICE_FAILED: "demo: a service it started failed to start or stopped (its log is kept)",
    EXIT_INTERRUPTED: "trace, find, why, doctor: interrupted (Ctrl-C)",
}

#: Each ``serve`` flag's ``OTEL_CORR_*`` variable and what it accepts.  The flags' readers below, their error
#: messages and ``serve --help``'s list of variables all come from this table.
SERVE_VARIABLES: dict[str, tuple[str, str]] = {
    "--host": ("OTEL_CORR_HOST", "an address; beyond loopback it also needs --allow-remote (default 127.0.0.1)"),
    "--port": ("OTEL_CORR_PORT", "a TCP port, 1-65535 (default 16686)"),
    "--otlp-http-port": ("OTEL_CORR_OTLP_HTTP_PORT", "a TCP port, 1-65535 (default 4318)"),
    "--otlp-grpc-port": ("OTEL_CORR_OTLP_GRPC_PORT", "a TCP port, 1-65535 (default 4317)"),
    "--db": ("OTEL_CORR_DB", "a file path (default: $XDG_DATA_HOME/otel-corr/traces.db)"),
    "--store": ("OTEL_CORR_STORE", "clickhouse://host:9000[,host2:9000]/db?cluster=NAME instead of --db"),
    "--retention": ("OTEL_CORR_RETENTION", "an age such as 7d, 12h, 30m, 2w; 0 keeps everything (default 7d)"),
    "--max-spans": ("OTEL_CORR_MAX_SPANS", "a whole number of spans; 0 for no limit (default 0)"),
    "--max-body": ("OTEL_CORR_MAX_BODY", "bytes after decompression, 1024 or more (default 16 MiB)"),
    "--allow-remote": ("OTEL_CORR_ALLOW_REMOTE", "true or false (default false)"),
    "--allow-host": ("OTEL_CORR_ALLOW_HOSTS", "comma-separated host names, *.example.com or * (default none)"),
    "--allow-origin": ("OTEL_CORR_ALLOW_ORIGINS", "comma-separated origins such as http://localhost:3000, or *"),
    "--header-timeout": ("OTEL_CORR_HEADER_TIMEOUT", "seconds, more than 0 and at most 3600 (default 10)"),
    "--query-timeout": ("OTEL_CORR_QUERY_TIMEOUT", "seconds, more than 0 and at most 3600 (default 5)"),
}


def _var(flag: str) -> str:
    return SERVE_VARIABLES[flag][0]


def _both(flag: str) -> str:
    """``--flag / its variable``: how an error names a setting that either can give."""
    return f"{flag} / {_var(flag)}"


_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 86400}


def _retention_ns(text: str) -> int | None:
    m = _SPAN.fullmatch(text.strip())
    if m is None:
        raise ConfigError(_both("--retention"), text, "an age such as 7d, 12h or 0 (keep everything)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    return int(seconds * 1e9) if seconds > 0 else None


def _number(flag: str, given: int | None, default: int, low: int, high: int, accepts: str) -> int:
    """A flag's value, else its variable's, else the default; outside ``low..high`` is an error naming both."""
    value = given if given is not None else _settings.env_int(_var(flag), default)
    if not low <= value <= high:
        raise ConfigError(_both(flag), value, accepts)
    return value


def _listed(flag: str, given: list[str] | None, *, lower: bool) -> list[str]:
    """A repeatable flag's values, else its variable's comma-separated ones."""
    values = given if given is not None else (_settings.env_text(_var(flag)) or "").split(",")
    return [v.strip().lower() if lower else v.strip() for v in values if v.strip()]


def _seconds(flag: str, given: float | None, default: float) -> float:
    if given is not None:
        return given
    raw = (_settings.env_text(_var(flag)) or "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(_both(flag), raw, "a number of seconds") from None


def _url(flag: str, value: str) -> str:
    parts = urllib.parse.urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = parts._replace(scheme="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(flag, value, "an http:// or https:// URL such as http://127.0.0.1:16686")
    return value.strip()


def _serve_epilog() -> str:
    width = max(len(var) for var, _ in SERVE_VARIABLES.values())
    rows = "\n".join(f"  {var:<{width}}  {accepts}" for var, accepts in SERVE_VARIABLES.values())
    return (
        "environment variables (a flag given wins over its variable):\n"
        f"{rows}\n\n"
        "Stop it with Ctrl-C (or SIGTERM): what was received is committed first."
    )


def _top_epilog() -> str:
    rows = "\n".join(f"  {code:<3}  {meaning}" for code, meaning in EXIT_STATUSES.items())
    return (
        "Try `otel-corr demo` to see it work, then `otel-corr serve` for your own app, and\n"
        "`otel-corr tail` to follow the log lines and requests of every service as they arrive.\n"
        "`otel-corr COMMAND --help` describes each command.\n\n"
        f"exit statuses:\n{rows}"
    )


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="otel-corr", description="Request IDs and traces, joined.", epilog=_top_epilog(), formatter_class=raw
    )
    parser.add_argument("--version", action="version", version=f"otel-corr {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="the local backend: OTLP in, one-file store, Jaeger's query API, the page",
        description="The local backend: OTLP/HTTP and OTLP/gRPC in, one SQLite file, Jaeger's query API "
        "and the page, in one process.",
        epilog=_serve_epilog(),
        formatter_class=raw,
    )
    serve.add_argument(
        "--host",
        default=_settings.env_text(_var("--host")) or "127.0.0.1",
        help="address to listen on (default 127.0.0.1; beyond loopback needs --allow-remote)",
    )
    serve.add_argument("--port", type=int, default=None, help="UI and query API (default 16686)")
    serve.add_argument("--otlp-http-port", type=int, default=None, help="OTLP/HTTP (default 4318)")
    serve.add_argument("--otlp-grpc-port", type=int, default=None, help="OTLP/gRPC (default 4317)")
    serve.add_argument(
        "--db", default=_settings.env_text(_var("--db")), help="the store file (default: per-user data dir)"
    )
    serve.add_argument(
        "--store",
        default=_settings.env_text(_var("--store")),
        help="a ClickHouse cluster instead of the file: clickhouse://host:9000/db?cluster=NAME (docs/production.md)",
    )
    serve.add_argument(
        "--retention", default=_settings.env_text(_var("--retention")) or "7d", help="e.g. 7d, 12h; 0 keeps all"
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

    trace = sub.add_parser(
        "trace",
        help="print a trace and its log lines by request ID or trace ID",
        description="Print a trace as a waterfall with each span's log lines, errors and their tracebacks.",
        epilog="environment variables:\n  OTEL_CORR_URL  the default for --url",
        formatter_class=raw,
    )
    trace.add_argument("id", help="request ID or trace ID (UUID with dashes, hex, any case)")
    where = trace.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        default=_settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686",
        help="otel-corr serve (default http://127.0.0.1:16686, or OTEL_CORR_URL)",
    )
    where.add_argument("--jaeger", metavar="URL", help="a Jaeger query service instead, e.g. http://jaeger:16686")
    trace.add_argument("--json", action="store_true", help="print the trace as JSON (Jaeger's v1 model)")

    find = sub.add_parser(
        "find",
        help="find requests by a log line's words, an error, an attribute or any ID",
        description="Search the stored requests: each match, newest first, with the log line, event or "
        "attribute that matched (its words highlighted on a terminal).  A query that is one ID of a "
        "trace (request ID, trace ID, span ID) prints that trace, as `otel-corr trace` does.",
        epilog="query examples:\n"
        "  otel-corr find GatewayError\n"
        "  otel-corr find '\"payment declined\"' -retry\n"
        "  otel-corr find user.id=42 status:5xx 'duration>500ms'\n"
        "  otel-corr find pay* service:checkout --since 24h\n"
        "  otel-corr find 3f2504e0-4f89-11d3-9a0c-0305e82c3301\n\n"
        "--json prints the server's answer as one JSON document: "
        '{"query", "opened", "complete", "results": [...]}.\n\n'
        "environment variables:\n  OTEL_CORR_URL  the default for --url",
        formatter_class=raw,
    )
    find.add_argument(
        "query",
        nargs="*",  # taken from the command line by _find_words (so that -word is a word, not a flag)
        metavar="QUERY",
        help='the query, the same as in the page\'s box (its words are joined by spaces): words, "a phrase" '
        "(quoted for the shell too), pay*, -word, key=value, service:NAME, status:5xx, duration>500ms, "
        "since:1h, or an ID",
    )
    find.add_argument("--service", metavar="S", help="only requests with a span of service S")
    find.add_argument(
        "--since", metavar="AGE", help="only the last AGE, e.g. 15m, 1h, 7d (default: the server's window)"
    )
    find.add_argument("--limit", type=int, default=20, metavar="N", help="list at most N requests (default 20)")
    find.add_argument(
        "--json", action="store_true", help="print the server's answer as one JSON document (for scripts)"
    )
    find.add_argument(
        "--url",
        default=_settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686",
        help="otel-corr serve (default http://127.0.0.1:16686, or OTEL_CORR_URL)",
    )

    why = sub.add_parser(
        "why",
        help="why a request was slow or failed: its ranked causes, critical path, and how it compares",
        description="Explain one request in a dozen lines: the verdict; the ranked causes (an error and "
        "where it started, time no span covers and the log lines around it, a slow call, the same call "
        "repeated or retried, work after the response), each with its span ID; the critical path's "
        "slowest spans by self time; and how it compares with its endpoint's requests in the hour "
        "and day before it.",
        epilog="--json prints the server's answer (GET /api/ui/why/ID) as it is.\n\n"
        "environment variables:\n  OTEL_CORR_URL  the default for --url",
        formatter_class=raw,
    )
    why.add_argument("id", help="request ID or trace ID (UUID with dashes, hex, any case)")
    why.add_argument("--json", action="store_true", help="print the server's answer as JSON (for scripts)")
    why.add_argument(
        "--url",
        default=_settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686",
        help="otel-corr serve (default http://127.0.0.1:16686, or OTEL_CORR_URL)",
    )

    tail = sub.add_parser(
        "tail",
        help="follow the log lines and finished requests of every service, live",
        description="Print each log record and each finished request as otel-corr serve stores it, across "
        "services: time, service, level, request ID, message; a finished request as one line (method, "
        "route, status, duration); an error with its first lines.  Ctrl-C stops it.",
        epilog="examples:\n"
        "  otel-corr tail\n"
        "  otel-corr tail --service checkout --level warning\n"
        "  otel-corr tail --status 5xx          # failed requests only (then: otel-corr why ID)\n"
        "  otel-corr tail --route '/orders/*'\n"
        "  otel-corr tail --request order-1003.web\n"
        "  otel-corr tail --json | jq .message\n\n"
        "--route and --status select finished requests (log records have neither): with either, only\n"
        "request lines are printed.  When the terminal cannot keep up, lines are dropped and counted\n"
        "(the store keeps them all).  A lost connection is retried until Ctrl-C.\n\n"
        "environment variables:\n  OTEL_CORR_URL  the default for --url",
        formatter_class=raw,
    )
    tail.add_argument("--service", metavar="S", help="only service S")
    tail.add_argument("--route", metavar="R", help="only requests to route R (as the app names it; * matches any)")
    tail.add_argument("--status", metavar="CODE", help="only requests answered CODE: 500, 5xx, 4xx, ...")
    tail.add_argument("--request", metavar="ID", help="only request ID")
    tail.add_argument(
        "--level", metavar="LEVEL", help="only this level and above: debug, info, warning, error, critical"
    )
    tail.add_argument("--json", action="store_true", help="print each event as one JSON line (for scripts)")
    tail.add_argument(
        "--url",
        default=_settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686",
        help="otel-corr serve (default http://127.0.0.1:16686, or OTEL_CORR_URL)",
    )

    demo = sub.add_parser(
        "demo",
        help="start the backend, a small shop and its inventory service, send requests",
        description="Start otel-corr serve, a small shop and the inventory service it calls, send four "
        "requests, print their request IDs and links, and serve until Ctrl-C.",
    )
    demo.add_argument("--port", type=int, default=16686, help="the page and query API (default 16686)")
    demo.add_argument(
        "--json",
        action="store_true",
        help="print the requests as one JSON line on stdout (for scripts) instead of the summary",
    )
    demo.add_argument(
        "--dir",
        metavar="DIR",
        help="keep the demo's store and service logs in DIR (default: a temporary directory removed on exit)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory on exit")

    doctor = sub.add_parser(
        "doctor",
        help="what instrument() changes in the process, and the settings it uses",
        description="Instrument your app (or a stand-in) as a server would, then list every process-wide "
        "change and the settings in effect.",
    )
    doctor.add_argument(
        "app",
        nargs="?",
        help="your app as module:attribute (imported, then instrumented unless it already is); "
        "default: a stand-in ASGI app",
    )
    doctor.add_argument("--json", action="store_true", help="print the changes and settings as JSON")
    return parser


def _command_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-command's own parser, so that its errors print its usage, not the top-level one."""
    for action in parser._actions:  # argparse keeps its sub-parsers only there
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    raise LookupError(name)


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import run
    except ImportError as exc:
        print(
            "otel-corr serve needs the server extra: in a clone of otel-corr, pip install -e '.[server]'"
            f" ({exc.name} is missing)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = _serve_config(args)
    run(config)
    return EXIT_OK


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """The serve settings from flags, then ``OTEL_CORR_*`` variables, then defaults, checked before anything starts."""
    from .server import ServeConfig, default_db_path

    port_range = "a TCP port between 1 and 65535"
    mib16 = 16 * 1024 * 1024
    ports = {
        "port": _number("--port", args.port, 16686, 1, 65535, port_range),
        "otlp_http_port": _number("--otlp-http-port", args.otlp_http_port, 4318, 1, 65535, port_range),
        "otlp_grpc_port": _number("--otlp-grpc-port", args.otlp_grpc_port, 4317, 1, 65535, port_range),
    }
    max_spans = _number("--max-spans", args.max_spans, 0, 0, 2**62, "a whole number of spans, 0 for no limit")
    max_body = _number("--max-body", args.max_body, mib16, 1024, 2**31, "a number of bytes, 1024 or more")
    store = (args.store or "").strip()
    if store and args.db:
        raise ConfigError(_both("--store"), "(with --db)", "one store: --db FILE or --store clickhouse://..., not both")
    db = Path(args.db) if args.db else Path() if store else default_db_path()
    try:
        if store:
            pass  # no file: the cluster is checked when serve opens it
        elif db.is_dir():
            raise IsADirectoryError(21, "is a directory")
        else:
            db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(_both("--db"), str(db), f"a file path in a usable directory ({exc.strerror})") from None
    config = ServeConfig(
        allow_hosts=tuple(_listed("--allow-host", args.allow_host, lower=True)),
        allow_origins=tuple(_listed("--allow-origin", args.allow_origin, lower=True)),
        header_timeout=_seconds("--header-timeout", args.header_timeout, 10.0),
        query_budget=_seconds("--query-timeout", args.query_timeout, 5.0),
        host=args.host,
        **ports,
        db=db,
        store=store,
        retention_ns=_retention_ns(args.retention),
        max_spans=max_spans or None,
        max_body=max_body,
        allow_remote=args.allow_remote
        if args.allow_remote is not None
        else _settings.env_bool(_var("--allow-remote"), False),
    )
    try:
        config.check()
    except ConfigError as exc:  # name the variables too, not only the flags
        flags = ("--port", "--otlp-http-port", "--otlp-grpc-port")
        names = {flag: _both(flag) for flag in SERVE_VARIABLES}
        names["ports"] = f"{', '.join(flags)} / {', '.join(map(_var, flags))}"
        raise ConfigError(names.get(exc.name, exc.name), exc.value, exc.accepted) from None
    return config


def http_get(url: str, timeout: float) -> tuple[int, bytes]:
    """(status, body) of a GET, an HTTP error status included; raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _fetch(url: str, timeout: float = 15) -> tuple[int, Any]:
    """(status, the JSON body or None if it is not JSON); raises OSError when nothing answers."""
    status, raw = http_get(url, timeout)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def otel_corr_info(base: str, timeout: float) -> tuple[int | None, int]:
    """(the OTLP/HTTP port the otel-corr serve at ``base`` names in ``/api/otel-corr/info``, or None if
    ``base`` is not one; the status it answered).  Raises OSError when nothing answers."""
    status, body = _fetch(f"{base}/api/otel-corr/info", timeout)
    port = body.get("otlp_http") if status == 200 and isinstance(body, dict) else None
    ours = isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536
    return (port if ours else None), status


def _is_otel_corr(base: str) -> tuple[bool, str]:
    """Whether ``base`` is an otel-corr serve (it answers ``/api/otel-corr/info``), and what it answered."""
    try:
        port, status = otel_corr_info(base, timeout=5)
    except OSError as exc:
        return False, str(getattr(exc, "reason", exc))
    return port is not None, f"GET /api/otel-corr/info answered {status}"


def _trace(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ._render import render_trace

    ident = args.id.strip()
    if not ident:
        parser.error("the ID is empty: give a request ID or a trace ID, e.g. otel-corr trace order-1003.web")
    base = _url("--jaeger" if args.jaeger else "--url / OTEL_CORR_URL", args.jaeger or args.url).rstrip("/")
    what = "the Jaeger query service" if args.jaeger else "otel-corr serve"
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
            return EXIT_USAGE
        lookup = parsed.hex()
    url = f"{base}/api/traces/{urllib.parse.quote(lookup, safe='')}"
    try:
        status, body = _fetch(url)
    except OSError as exc:  # URLError included: nothing listens, no such host, a timeout
        reason = getattr(exc, "reason", exc)
        reason = getattr(reason, "strerror", None) or reason  # "Connection refused", not "[Errno 111] ..."
        print(f"otel-corr trace: cannot reach {what} at {base} ({reason})", file=sys.stderr)
        if not args.jaeger:
            print(
                "Start the backend in another terminal with `otel-corr serve` (or try `otel-corr demo`), "
                "or pass --url (or set OTEL_CORR_URL) to where it listens.",
                file=sys.stderr,
            )
        return EXIT_UNREACHABLE
    if status >= 500:  # busy, or the query ran out of time: the server's reason, not "no trace found"
        errors = body.get("errors") if isinstance(body, dict) else None
        reason = errors[0].get("msg") if isinstance(errors, list) and errors and isinstance(errors[0], dict) else ""
        reason = visible(str(reason or ""))  # any program can answer at --url: its text never drives the terminal
        print(f"otel-corr trace: {base} answered {status}{f': {reason}' if reason else ''}; retry", file=sys.stderr)
        return EXIT_UNREACHABLE
    found = status == 200 and isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]
    if not found:
        # A 404 from otel-corr serve (or Jaeger) is JSON; anything else is some other program on that port.
        ours, answer = (isinstance(body, dict), f"GET {url} answered {status}") if args.jaeger else _is_otel_corr(base)
        if not ours:
            print(f"otel-corr trace: {base} is not {what} ({answer})", file=sys.stderr)
            if not args.jaeger:
                print(
                    "For a Jaeger query service use --jaeger URL; for otel-corr serve check the port.", file=sys.stderr
                )
            return EXIT_NOT_OURS
        print(f"no trace found for {ident[:80]!r} at {base}", file=sys.stderr)
        return EXIT_NOT_FOUND
    trace = body["data"][0]
    if args.json:
        json.dump(trace, sys.stdout, indent=2)
        print()
        return EXIT_OK
    page = None if args.jaeger else f"{base}/trace/{trace['traceID']}"
    render_trace(trace, page)
    return EXIT_OK


def _unreachable(command: str, base: str, exc: OSError) -> int:
    reason = getattr(exc, "reason", exc)
    reason = getattr(reason, "strerror", None) or reason  # "Connection refused", not "[Errno 111] ..."
    print(f"otel-corr {command}: cannot reach otel-corr serve at {base} ({reason})", file=sys.stderr)
    print(
        "Start the backend in another terminal with `otel-corr serve` (or try `otel-corr demo`), "
        "or pass --url (or set OTEL_CORR_URL) to where it listens.",
        file=sys.stderr,
    )
    return EXIT_UNREACHABLE


def _ask(command: str, base: str, url: str) -> tuple[int, Any, str] | int:
    """GET ``url`` of the otel-corr serve at ``base``: (status, JSON body or None, the error reason made
    visible); or, when nothing answers or it answers with a server error, the exit status, said on stderr."""
    try:
        status, body = _fetch(url)
    except OSError as exc:  # URLError included: nothing listens, no such host, a timeout
        return _unreachable(command, base, exc)
    # Any program can answer at --url: none of its text drives the terminal.
    reason = visible(_error_text(body)[:500])
    if status >= 500:  # busy, or the query ran out of its time budget
        print(f"otel-corr {command}: {base} answered {status}{f': {reason}' if reason else ''}; retry", file=sys.stderr)
        return EXIT_UNREACHABLE
    return status, body, reason


def _warn_partial(command: str, body: Any) -> None:
    """A line on stderr when the answer is partial (a ClickHouse shard did not answer: ``warning``)."""
    warning = body.get("warning") if isinstance(body, dict) else None
    if isinstance(warning, str) and warning:
        print(f"otel-corr {command}: warning: {visible(warning[:500])}", file=sys.stderr)


def _error_text(body: Any) -> str:
    """The reason in an error answer: ``{"error": ...}`` (the page's API) or Jaeger's ``errors[0].msg``."""
    if not isinstance(body, dict):
        return ""
    if isinstance(body.get("error"), str):
        return str(body["error"])
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    return str(first.get("msg") or "") if isinstance(first, dict) else ""


#: ``find``'s flags that take a value, and those that take none.
_FIND_VALUED = ("--service", "--since", "--limit", "--url")
_FIND_FLAGS = ("--json", "-h", "--help")


def _find_words(argv: list[str]) -> tuple[list[str], list[str]]:
    """``otel-corr find ...`` split into what argparse parses (the flags) and the query's words, in order.

    argparse would take ``-retry`` (an exclusion) for an unknown flag and ``-hello`` for ``-h``: every
    token that is not one of find's flags or its value is a word of the query, as in the page's box.
    """
    keep: list[str] = argv[:1]
    words: list[str] = []
    rest = iter(argv[1:])
    for token in rest:
        if token == "--":
            words.extend(rest)
        elif token in _FIND_FLAGS or token.partition("=")[0] in _FIND_VALUED:
            keep.append(token)
            value = next(rest, None) if token in _FIND_VALUED else None
            if value is not None:  # a missing value is argparse's error to report
                keep.append(value)
        elif token.startswith("--"):
            keep.append(token)  # a misspelt flag: argparse says it is unrecognized
        else:
            words.append(token)
    return keep, words


def _find(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ._results import colour_wanted, render_results

    text = " ".join(args.query).strip()
    if not text:
        parser.error("the query is empty: give words, key=value, status:5xx or an ID, e.g. otel-corr find GatewayError")
    if args.limit < 1:
        raise ConfigError("--limit", args.limit, "a whole number of requests, 1 or more")
    if args.since:  # checked here as the server checks it, so a typo is a usage error even with no server
        from .server._query import QueryError, time_range

        try:
            time_range({"lookback": args.since}, 0)
        except QueryError:
            raise ConfigError("--since", args.since, "an age such as 15m, 1h or 7d (1 s to 366 days)") from None
    base = _url("--url / OTEL_CORR_URL", args.url).rstrip("/")
    params = {"q": text, "limit": str(args.limit)}
    if args.service:
        params["service"] = args.service
    if args.since:
        params["lookback"] = args.since
    answered = _ask("find", base, f"{base}/api/search?{urllib.parse.urlencode(params)}")
    if isinstance(answered, int):
        return answered
    status, body, reason = answered
    if status == 400 and reason:  # the query (or --since) cannot be read: the server says what is wrong
        print(f"otel-corr find: {reason}", file=sys.stderr)
        return EXIT_USAGE
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("results"), list):
        ours, answer = _is_otel_corr(base)
        if ours:  # an otel-corr serve from before the search (or a proxy in the way)
            answer = f"GET /api/search answered {status}; is it an older otel-corr?"
        print(f"otel-corr find: {base} is not otel-corr serve with search ({answer})", file=sys.stderr)
        return EXIT_NOT_OURS
    opened = body.get("opened")
    _warn_partial("find", body)
    if args.json:
        json.dump(body, sys.stdout, indent=2)
        print()
        return EXIT_OK if body["results"] or opened else EXIT_NOT_FOUND
    if isinstance(opened, str) and opened:
        print(f"{visible(text[:80])} names trace {visible(opened)}:")
        return _trace(argparse.Namespace(id=opened, url=base, jaeger=None, json=False), parser)
    default = _settings.env_text("OTEL_CORR_URL") or "http://127.0.0.1:16686"
    hint = "otel-corr trace {id}" + ("" if base == default.rstrip("/") else f" --url {visible(base)}")
    if not render_results(body, hint, sys.stdout, colour=colour_wanted(sys.stdout)):
        where = " in the last " + visible(args.since) if args.since else ""
        print(
            f"no request matches {visible(text[:200])}{where} at {base}. Widen it: a longer --since, no "
            "--service, fewer words (each must be found), or a prefix such as pay*.",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    return EXIT_OK


def _why(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ._results import colour_wanted
    from ._why_render import why_lines

    ident = args.id.strip()
    if not ident:
        parser.error("the ID is empty: give a request ID or a trace ID, e.g. otel-corr why order-1003.web")
    base = _url("--url / OTEL_CORR_URL", args.url).rstrip("/")
    answered = _ask("why", base, f"{base}/api/ui/why/{urllib.parse.quote(ident, safe='')}")
    if isinstance(answered, int):
        return answered
    status, body, reason = answered
    if status == 200 and isinstance(body, dict) and isinstance(body.get("verdict"), dict):
        _warn_partial("why", body)
        if args.json:
            json.dump(body, sys.stdout, indent=2)
            print()
        else:
            for line in why_lines(body, colour=colour_wanted(sys.stdout)):
                print(line)
        return EXIT_OK
    ours, answer = _is_otel_corr(base)
    # otel-corr's 404 for an ID it does not have is JSON with a reason; an older serve's unknown route is not.
    if ours and status == 404 and reason:
        print(f"no trace found for {ident[:80]!r} at {base}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if ours:
        answer = f"GET /api/ui/why answered {status}; is it an older otel-corr?"
    print(f"otel-corr why: {base} is not otel-corr serve with why ({answer})", file=sys.stderr)
    return EXIT_NOT_OURS


def _tail(args: argparse.Namespace) -> int:
    from ._results import colour_wanted
    from ._tail_render import event_lines

    base = _url("--url / OTEL_CORR_URL", args.url).rstrip("/")
    # Checked here as the server checks them (server/_tail.py), so a typo is a usage error even with no server.
    if args.level and args.level.strip().lower() not in _TAIL_LEVELS:
        raise ConfigError("--level", args.level, f"one of {', '.join(_TAIL_LEVELS)}")
    if args.status and not re.fullmatch(r"[1-5][0-9x]{2}", args.status.strip().lower()):
        raise ConfigError("--status", args.status, "a status such as 500 or 5xx")
    params = {k: v for k in ("service", "route", "status", "request", "level") if (v := getattr(args, k))}
    url = f"{base}/api/tail" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    colour = colour_wanted(sys.stdout)
    connected_once = False
    # SIGTERM ends it as Ctrl-C does: quietly, status 0.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    lost = 0
    try:
        while True:
            try:
                response = urllib.request.urlopen(url, timeout=_TAIL_TIMEOUT)
            except urllib.error.HTTPError as exc:
                body = exc.read(_TAIL_MAX_LINE)
                try:
                    reason = visible(_error_text(json.loads(body))[:500])
                except ValueError:
                    reason = ""
                if exc.code == 400 and reason:
                    print(f"otel-corr tail: {reason}", file=sys.stderr)
                    return EXIT_USAGE
                if exc.code == 503 and reason:  # too many followers, or the server stopping
                    if not connected_once:
                        print(f"otel-corr tail: {base} answered 503: {reason}", file=sys.stderr)
                        return EXIT_UNREACHABLE
                    lost = _tail_retry(lost, reason)
                    continue
                ours, answer = _is_otel_corr(base)
                if ours and exc.code >= 500:  # otel-corr, failing: as every command says a server error
                    print(f"otel-corr tail: {base} answered {exc.code}: {reason or 'a server error'}", file=sys.stderr)
                    return EXIT_UNREACHABLE
                if ours:
                    answer = f"GET /api/tail answered {exc.code}; is it an older otel-corr?"
                print(f"otel-corr tail: {base} is not otel-corr serve with tail ({answer})", file=sys.stderr)
                return EXIT_NOT_OURS
            except OSError as exc:
                if not connected_once:
                    return _unreachable("tail", base, exc)
                lost = _tail_retry(lost, str(getattr(exc, "reason", exc)))
                continue
            with response:
                first = response.readline(_TAIL_MAX_LINE)
                try:
                    hello = json.loads(first)
                except ValueError:
                    hello = None
                if not (isinstance(hello, dict) and hello.get("type") == "hello"):
                    print(f"otel-corr tail: {base} is not otel-corr serve with tail (GET /api/tail)", file=sys.stderr)
                    return EXIT_NOT_OURS
                if lost or not connected_once:
                    again = " again" if lost else " (Ctrl-C stops it)"
                    print(f"otel-corr tail: following {base}{again}", file=sys.stderr, flush=True)
                    note = hello.get("note")
                    if isinstance(note, str) and note and not lost:  # a replica of several: say what is seen
                        print(f"otel-corr tail: note: {visible(note[:500])}", file=sys.stderr, flush=True)
                connected_once, lost = True, 0
                reason = _tail_follow(response, args.json, colour, event_lines)
            lost = _tail_retry(lost, reason)
    except KeyboardInterrupt:
        return EXIT_OK  # how a tail is meant to end: quietly
    except BrokenPipeError:  # `otel-corr tail | head`
        # The interpreter's flush of stdout at exit would fail again and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


_TAIL_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")
#: The longest stream line read (otel-corr's are at most ~45 KiB: message and stack trace are cut).
_TAIL_MAX_LINE = 1 << 20
#: Seconds without a byte (the server sends a heartbeat every 10) before the connection is taken for lost.
_TAIL_TIMEOUT = 35.0


_TAIL_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "critical", "fatal")
#: The events ``--json`` prints: the stream's own (hello, heartbeat, bye) are not.
_TAIL_PRINTED = (b'{"type":"log"', b'{"type":"request"', b'{"type":"dropped"')


def _tail_retry(lost: int, reason: str) -> int:
    """Say the stream was lost (once per loss), wait a little longer each time (at most 5 s); the new count."""
    import time

    if lost == 0:
        print(f"otel-corr tail: connection lost ({visible(reason[:200])}); reconnecting…", file=sys.stderr, flush=True)
    time.sleep(min(5.0, 0.25 * 2**lost))
    return lost + 1


def _tail_follow(response: Any, as_json: bool, colour: bool, event_lines: Any) -> str:
    """Print the stream's events until it ends; the reason it ended."""
    out = sys.stdout
    pending = b""
    while True:
        try:
            data = response.read1(65536)
        except OSError as exc:  # a timeout (no heartbeat), a reset
            return str(exc) or type(exc).__name__
        except Exception as exc:  # http.client.IncompleteRead and its kin: the server went away mid-chunk
            return type(exc).__name__
        if not data:
            return "the server closed the stream"
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if len(pending) > _TAIL_MAX_LINE:  # no line of otel-corr's is this long: not ours, or broken
            return "a line longer than 1 MiB"
        printed: list[str] = []
        reason = ""
        for raw_line in lines:
            if as_json and raw_line.startswith(_TAIL_PRINTED) and not _TAIL_UNPRINTABLE.search(raw_line):
                # otel-corr's lines are ASCII JSON with every control character escaped: printed as they
                # are.  Anything else (a server at --url that is not otel-corr) is parsed and re-encoded.
                printed.append(raw_line.decode("ascii"))
                continue
            try:
                event = json.loads(raw_line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            if kind == "bye":
                reason = visible(str(event.get("reason") or "the server said goodbye")[:200])
                continue
            if as_json:
                if kind in ("log", "request", "dropped"):
                    printed.append(json.dumps(event))  # ASCII: no raw control character, C1 included
            else:
                printed.extend(event_lines(event, colour=colour))
        if printed:
            out.write("\n".join(printed) + "\n")
            out.flush()
        if reason:
            return reason


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
            "logs_exporter": ",".join(_settings.logs_exporters()) or "none",  # OTEL_LOGS_EXPORTER, resolved
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
    """Run ``otel-corr`` with ``argv`` (default: the process's arguments) and return its exit status.

    The statuses are ``EXIT_STATUSES``; a usage error exits through argparse with 2.
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    words: list[str] = []
    if argv[:1] == ["find"]:  # the top level has no flag that takes a value: the command comes first
        argv, words = _find_words(argv)
    args, extra = parser.parse_known_args(argv)
    if args.command == "find":
        args.query = words
    if args.command is None and extra:  # `otel-corr --verison`: an error, not the help and success
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:  # as pip and docker do: the help on stdout, not an error
        parser.print_help()
        return EXIT_OK
    command = _command_parser(parser, args.command)
    if extra:  # argparse would print the top-level usage; the command's own says what it takes
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "trace":
            return _trace(args, command)
        if args.command == "find":
            return _find(args, command)
        if args.command == "why":
            return _why(args, command)
        if args.command == "tail":
            return _tail(args)
        if args.command == "doctor":
            return _doctor(args)
        from ._demo import run_demo

        if not 1 <= args.port <= 65535:
            raise ConfigError("--port", args.port, "a TCP port between 1 and 65535")
        return run_demo(args.port, json_output=args.json, workdir=args.dir, keep=args.keep)
    except OtelCorrError as exc:
        print(f"otel-corr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"otel-corr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
