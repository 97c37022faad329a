"""A real two-shard ClickHouse cluster on loopback, from the Debian ``clickhouse-server`` package.

Not a fixture file: the ClickHouse store's tests, the future contract suite and the benchmark
import it.  Each shard is a ``clickhouse-server`` process of its own (own config, data directory
and free ports under one temporary directory), and every shard's config names the same cluster,
so a ``Distributed`` table on any shard reaches both.  Sharding alone needs no ZooKeeper (only
replication and ``ON CLUSTER`` DDL do), which is why the store runs its DDL shard by shard.

Usage::

    with ClickHouseCluster(tmp_path) as cluster:
        cluster.url  # clickhouse://127.0.0.1:PORT/otel_corr?cluster=otel_corr_test
        cluster.stop_shard(1)  # for the fault tests
        cluster.start_shard(1)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.collector import free_port

__all__ = ["CLUSTER", "MISSING", "ClickHouseCluster", "find_server"]

#: The cluster name every shard's config declares (what the store's URL names).
CLUSTER = "otel_corr_test"
#: Why the cluster cannot start here (for ``pytest.skip``), or "" when it can.
MISSING = "clickhouse-server is not installed (apt-get install clickhouse-server)"

_STARTUP_S = 30.0


def find_server() -> str | None:
    """The ``clickhouse-server`` command: ``$CLICKHOUSE_SERVER``, PATH, /usr/sbin, or ``clickhouse server``."""
    explicit = os.environ.get("CLICKHOUSE_SERVER")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        found = shutil.which(name)
        if found:
            return found
    multi = shutil.which("clickhouse")
    return f"{multi} server" if multi else None


@dataclass
class Shard:
    """One ``clickhouse-server`` process: its directory, ports and (while running) its process."""

    number: int
    root: Path
    tcp_port: int
    http_port: int
    interserver_port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.tcp_port}"


def _config(shard: Shard, shards: list[Shard]) -> str:
    remote = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{s.tcp_port}</port></replica></shard>" for s in shards
    )
    data = shard.root / "data"
    # Small caches: several engineers share the machine, and the tests hold kilobytes.
    return f"""<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{shard.root}/server.log</log>
        <errorlog>{shard.root}/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{shard.tcp_port}</tcp_port>
    <http_port>{shard.http_port}</http_port>
    <interserver_http_port>{shard.interserver_port}</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{data}/</path>
    <tmp_path>{data}/tmp/</tmp_path>
    <user_files_path>{data}/user_files/</user_files_path>
    <format_schema_path>{data}/format_schemas/</format_schema_path>
    <users_config>{shard.root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <remote_servers><{CLUSTER}>{remote}</{CLUSTER}></remote_servers>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"""


_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage><max_threads>2</max_threads></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def _answers(port: int) -> bool:
    """Whether a server answers on ``port`` (a native-protocol hello would need the driver: a TCP connect
    plus the HTTP ping are enough to know the process is serving)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _ping(http_port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=0.5) as sock:
            sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            return b"Ok." in sock.recv(1024)
    except OSError:
        return False


class ClickHouseCluster:
    """``shards`` ClickHouse servers on loopback forming cluster :data:`CLUSTER`; a context manager."""

    def __init__(self, root: Path, *, shards: int = 2, database: str = "otel_corr") -> None:
        server = find_server()
        if server is None:
            raise RuntimeError(MISSING)
        self.command = server.split()
        self.root = Path(root)
        self.database = database
        self.shards: list[Shard] = []
        for number in range(1, shards + 1):
            shard_root = self.root / f"shard{number}"
            shard_root.mkdir(parents=True, exist_ok=True)
            self.shards.append(Shard(number, shard_root, free_port(), free_port(), free_port()))
        for shard in self.shards:
            (shard.root / "config.xml").write_text(_config(shard, self.shards))
            (shard.root / "users.xml").write_text(_USERS)

    @property
    def url(self) -> str:
        """The store URL for this cluster, through the first shard."""
        return f"clickhouse://{self.shards[0].address}/{self.database}?cluster={CLUSTER}"

    def url_via(self, number: int) -> str:
        """The store URL through shard ``number`` (1-based): a second replica would use another entry point."""
        return f"clickhouse://{self.shards[number - 1].address}/{self.database}?cluster={CLUSTER}"

    def start(self) -> ClickHouseCluster:
        for shard in self.shards:
            self._spawn(shard)
        for shard in self.shards:
            self._wait(shard)
        return self

    def _spawn(self, shard: Shard) -> None:
        log = (shard.root / "stdout.log").open("ab")
        try:
            # nice: the machine is shared; ClickHouse's background merges would otherwise compete at full priority.
            shard.process = subprocess.Popen(
                ["nice", "-n", "10", *self.command, f"--config-file={shard.root / 'config.xml'}"],
                cwd=shard.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait(self, shard: Shard) -> None:
        deadline = time.monotonic() + _STARTUP_S
        while time.monotonic() < deadline:
            if shard.process is not None and shard.process.poll() is not None:
                raise RuntimeError(f"clickhouse shard {shard.number} exited at start-up: {self._tail(shard)}")
            if _answers(shard.tcp_port) and _ping(shard.http_port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"clickhouse shard {shard.number} did not answer in {_STARTUP_S:.0f} s: {self._tail(shard)}")

    def _tail(self, shard: Shard) -> str:
        texts = []
        for name in ("stdout.log", "server.err.log"):
            path = shard.root / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(texts) or "(no output)"

    def stop_shard(self, number: int) -> None:
        """Stop shard ``number`` (1-based) and wait until its port is closed (a shard down, for the fault tests)."""
        shard = self.shards[number - 1]
        process, shard.process = shard.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        deadline = time.monotonic() + 10
        while _answers(shard.tcp_port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_shard(self, number: int) -> None:
        """Start shard ``number`` again (same data and ports) and wait until it answers."""
        shard = self.shards[number - 1]
        if shard.process is None:
            self._spawn(shard)
        self._wait(shard)

    def stop(self) -> None:
        for shard in self.shards:
            self.stop_shard(shard.number)

    def __enter__(self) -> ClickHouseCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
