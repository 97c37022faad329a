"""``otel-corr serve``: the store, OTLP/HTTP + query API on uvicorn, OTLP/gRPC, retention, in one process."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _settings
from .._terminal import visible
from ..exceptions import ConfigError, StoreError, StoreUnavailable

__all__ = ["ServeConfig", "default_db_path", "run"]

_log = logging.getLogger("otel_corr.server")


def default_db_path() -> Path:
    base = _settings.data_home() or str(Path.home() / ".local" / "share")  # XDG_DATA_HOME
    return Path(base) / "otel-corr" / "traces.db"


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 16686
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    db: Path = Path()
    #: A ClickHouse store URL (``clickhouse://host:9000/db?cluster=NAME``) instead of the ``db`` file.
    store: str = ""
    retention_ns: int | None = 7 * 86_400 * 1_000_000_000
    max_spans: int | None = None
    max_body: int = 16 * 1024 * 1024
    allow_remote: bool = False
    #: ``Host`` names answered besides loopback ones and ``host`` itself (``*`` for any); see ``_guard``.
    allow_hosts: tuple[str, ...] = ()
    #: Origins whose pages may call the APIs (CORS); none by default.
    allow_origins: tuple[str, ...] = ()
    #: Seconds a connection has to send a whole request head (and a body may pause); see ``_connections``.
    header_timeout: float = 10.0
    #: Seconds a query may run before it is answered 503; see ``Store.budget``.
    query_budget: float = 5.0

    def check(self) -> None:
        try:
            loopback = self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback and not self.allow_remote:
            raise ConfigError(
                "--host",
                self.host,
                "a loopback address (127.0.0.1, ::1), or --allow-remote to listen beyond this machine",
            )
        from ._guard import normalise_host

        for name in self.allow_hosts:
            try:
                if name != "*" and normalise_host(name.removeprefix("*.")) != name.removeprefix("*."):
                    raise ValueError
            except ValueError:
                raise ConfigError("--allow-host", name, "a host name or address such as laptop.local, or *") from None
        for origin in self.allow_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/?#@\s]+", origin):
                raise ConfigError("--allow-origin", origin, "an origin such as http://localhost:3000, or *")
        if not 0 < self.header_timeout <= 3600:
            raise ConfigError("--header-timeout", self.header_timeout, "seconds, more than 0 and at most 3600")
        if not 0 < self.query_budget <= 3600:
            raise ConfigError("--query-timeout", self.query_budget, "seconds, more than 0 and at most 3600")
        if self.store:
            from ._clickhouse import parse_url

            try:
                parse_url(self.store)
            except StoreError as exc:
                raise ConfigError(
                    "--store", "(not shown: it may hold a password)", f"clickhouse://host:9000/db?cluster=NAME: {exc}"
                ) from None
            if self.max_spans:
                raise ConfigError("--max-spans", self.max_spans, "0 with a ClickHouse store (it keeps by --retention)")
        ports = [self.port, self.otlp_http_port, self.otlp_grpc_port]
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ConfigError("ports", ports, "three different ports between 1 and 65535")


def _allowed_hosts(config: ServeConfig) -> list[str]:
    """The names answered besides loopback ones: ``--allow-host`` and the address ``--host`` binds."""
    hosts = list(config.allow_hosts)
    if config.host not in ("0.0.0.0", "::", ""):  # a wildcard names no host: list them with --allow-host
        hosts.append(config.host.strip("[]").lower())
    return hosts


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it every
    # response on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror} (another otel-corr serve?)") from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


async def _retention(store: Any, config: ServeConfig) -> None:
    while True:
        await asyncio.sleep(60)
        await _prune(store, config)


async def _prune(store: Any, config: ServeConfig) -> None:
    try:
        await asyncio.to_thread(store.prune, max_age_ns=config.retention_ns, max_spans=config.max_spans)
    except StoreUnavailable as exc:  # a shard down: nothing dropped anywhere; the next pass tries again
        _log.warning("otel-corr serve: %s", exc)
    except Exception:
        _log.exception("otel-corr serve: retention failed")


def _say(line: str) -> None:
    """One status line on stdout; a closed or broken stdout (``serve | head``) never stops the server."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):  # BrokenPipeError, EIO from a gone terminal; ValueError: stdout closed
        pass


_NOTED_SERVICES = 100  # a sender making up service names cannot fill the terminal
_noted = 0


def _note_service(service: str) -> None:
    """One line the first time a service's spans arrive: the sign that an app's exporter is set up right."""
    global _noted
    _noted += 1
    if _noted <= _NOTED_SERVICES:
        # Quoted, control characters (C1 too) escaped: a sender's service name never drives the terminal.
        name = f'"{visible(service[:200])}"'
        _say(f"otel-corr serve: first spans from service {name}")
    elif _noted == _NOTED_SERVICES + 1:
        _say(f"otel-corr serve: more than {_NOTED_SERVICES} services; no more are listed here")


def _store_name(config: ServeConfig) -> str:
    if not config.store:
        return str(config.db)
    from ._clickhouse import parse_url

    return parse_url(config.store).redacted()


def run(config: ServeConfig) -> None:
    """Serve until SIGINT/SIGTERM; the store is flushed and closed on the way out."""
    import uvicorn

    from ._admission import Budget
    from ._app import MAX_ITEMS, build_app, dispatch_by_port
    from ._connections import connection_limit, guarded_protocol, raise_open_file_limit
    from ._grpc import start_grpc
    from ._guard import Guard
    from ._otlp import max_decode_cost
    from ._store import Store
    from ._store_api import TraceStore, open_store
    from ._tail import Hub

    config.check()
    # The writer thread runs Python between SQLite calls, and a query's thread takes the GIL back
    # after every row SQLite steps: each of those waits up to one switch interval behind the event
    # loop's decoding or the writer.  5 ms (Python's default) put lookups under ingest at 150+ ms,
    # 1 ms at 16-23 ms p99, 0.5 ms at 13-18 ms, with no measurable cost to ingest.
    sys.setswitchinterval(0.0005)
    if config.allow_remote:
        _log.warning("otel-corr serve: listening on %s: anyone who can reach it can read and write traces", config.host)
    # One memory budget for decoding, shared by OTLP/HTTP and OTLP/gRPC (see _admission).
    budget = Budget(max_decode_cost(config.max_body, MAX_ITEMS))
    # The store first: a second server on the same file is refused naming the first (see _storefile).
    if config.store:
        # The driver logs each failed connection with its traceback; the store names a down shard
        # itself, once per answer (the face's warning, a 503), so only its errors are kept.
        logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    owner = f"pid {os.getpid()}, http://{config.host}:{config.port}"
    store: TraceStore = open_store(config.store, owner=owner) if config.store else Store(config.db, owner=owner)
    store.on_new_service = _note_service
    tail_hub = Hub()
    store.on_committed = tail_hub.publish
    try:
        sockets = [_socket(config.host, config.port), _socket(config.host, config.otlp_http_port)]
        # Probed with a socket of ours first: grpcio's own failure to bind prints a C++ log line first.
        _socket(config.host, config.otlp_grpc_port).close()
        grpc_server = start_grpc(store, config.host, config.otlp_grpc_port, config.max_body, budget, MAX_ITEMS)
    except BaseException:
        store.close()
        raise
    otlp_ports = (config.otlp_http_port, config.otlp_grpc_port)
    routes = build_app(
        store,
        max_body=config.max_body,
        otlp_ports=otlp_ports,
        budget=budget,
        query_budget=config.query_budget,
        tail_hub=tail_hub,
    )
    app = Guard(
        dispatch_by_port(routes, config.otlp_http_port),
        allowed_hosts=_allowed_hosts(config),
        allowed_origins=config.allow_origins,
    )
    retention_task: asyncio.Task[None] | None = None

    async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal retention_task
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                retention_task = asyncio.create_task(_retention(store, config))
                await _prune(store, config)
                await send({"type": "lifespan.startup.complete"})
                _say(
                    f"otel-corr serve: UI and Jaeger API http://{config.host}:{config.port}  "
                    f"OTLP/HTTP http://{config.host}:{config.otlp_http_port}  "
                    f"OTLP/gRPC {config.host}:{config.otlp_grpc_port}  store {_store_name(config)}"
                )
                _say(
                    "otel-corr serve: waiting for spans (point OTEL_EXPORTER_OTLP_ENDPOINT at the OTLP/HTTP URL);"
                    " Ctrl-C stops it"
                )
            elif message["type"] == "lifespan.shutdown":
                if retention_task is not None:
                    retention_task.cancel()
                grpc_server.stop(2).wait(5)
                await asyncio.to_thread(store.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Before uvicorn waits for open connections: the tails say goodbye and end theirs, so a
            # graceful shutdown never waits out its timeout on a stream that would never end.
            tail_hub.close()
            await super().shutdown(sockets)

    open_files = raise_open_file_limit()
    server = Server(
        uvicorn.Config(
            lifespan_app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            access_log=False,
            http=guarded_protocol(connection_limit(open_files), config.header_timeout, open_files),
            timeout_keep_alive=5,
            # A request head over 16 KiB is refused by h11 with 400 (uvicorn's default, stated).
            h11_max_incomplete_event_size=16 * 1024,
        )
    )
    started = time.monotonic()
    try:
        server.run(sockets=sockets)
    finally:
        # However serving ended (SIGTERM, SIGINT, a failed start-up): the store is committed, checkpointed
        # into its one file and unlocked.  Lifespan shutdown normally did it already; a second close is a no-op.
        grpc_server.stop(0)
        store.close()
    _log.debug("otel-corr serve: stopped after %.1fs", time.monotonic() - started)
