"""``backend.py --store clickhouse[://...]``'s ClickHouse half: the cluster, commit checks, ``system.parts``.

The benchmark either starts its own 2-shard cluster (``tests/clickhouse_cluster.py``: Debian's
``clickhouse-server``, each shard niced, in a temporary directory) or takes a store URL
(``clickhouse://h1:9000[,h2:9000]/db?cluster=NAME``).  Each ``serve`` replica gets the URL with a
different shard first, so the replicas insert through different entry points, as two replicas behind a
load balancer would.  The benchmark talks to the cluster with ``clickhouse-driver`` itself only to see
a marker span committed (the same check the SQLite half makes on the file) and to read ``system.parts``
on every shard; never through the store's code, so what is measured is what ``serve`` did.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    database: str
    cluster: str
    user: str = "default"
    password: str = ""


def parse(url: str) -> tuple[list[tuple[str, int]], Target]:
    """The hosts of a store URL (several, comma-separated, as ``serve --store`` takes) and the rest."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "9000")
        hosts.append((host or "127.0.0.1", int(port or 9000)))
    cluster = (parse_qs(parts.query).get("cluster") or [""])[0]
    if not cluster:
        raise SystemExit(f"--store {url}: the URL needs ?cluster=NAME")
    user = parts.username or "default"
    return hosts, Target(
        hosts[0][0], hosts[0][1], parts.path.strip("/") or "otel_corr", cluster, user, parts.password or ""
    )


class Cluster:
    """A ClickHouse cluster to benchmark on: started here (``url`` None) or given; a context manager."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.own: Any = None
        self.priority = "a given cluster"
        if url is None:
            sys.path.insert(0, str(REPO_DIR))
            from tests.clickhouse_cluster import ClickHouseCluster

            self.own = ClickHouseCluster(tmp / "clickhouse").start()
            url = self.own.url
            self.priority = self._match_priority()
        self.url = url
        self.hosts, self.target = parse(url)
        import clickhouse_driver

        self._driver = clickhouse_driver
        self.client = self._client(self.hosts[0])
        rows = self.client.execute(
            "SELECT shard_num, host_address, port FROM system.clusters"
            " WHERE cluster = %(c)s AND replica_num = 1 ORDER BY shard_num",
            {"c": self.target.cluster},
        )
        self.shards = [(str(h), int(p)) for _, h, p in rows]
        self.shard_clients = [self._client(s) for s in self.shards]
        self.version = str(self.client.execute("SELECT version()")[0][0])

    def _match_priority(self) -> str:
        """Give the shards this process's niceness: the cluster helper starts them at ``nice 10`` (kind to the
        tests sharing the machine), which would put the cluster under the replicas it serves.

        Niceness is per thread on Linux and new threads inherit their creator's: every thread now.
        """
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        failed = 0
        for shard in self.own.shards:
            for task in Path(f"/proc/{shard.process.pid}/task").iterdir():
                try:
                    os.setpriority(os.PRIO_PROCESS, int(task.name), mine)
                except OSError:
                    failed += 1
        return f"shards at nice {mine} (the benchmark's)" + (f", {failed} threads kept nice 10" if failed else "")

    def _client(self, host: tuple[str, int]) -> Any:
        return self._driver.Client(
            host[0], port=host[1], user=self.target.user, password=self.target.password, send_receive_timeout=300
        )

    def replica_url(self, index: int, multi_host: bool) -> str:
        """The store URL replica ``index`` runs with: shard ``index`` (mod shards) first.

        ``multi_host``: every shard listed (the entry point fails over); else only that shard.
        """
        entries = self.shards or self.hosts
        first = index % len(entries)
        order = entries[first:] + entries[:first]
        netloc = ",".join(f"{h}:{p}" for h, p in (order if multi_host else order[:1]))
        auth = ""
        if self.target.user != "default" or self.target.password:
            auth = f"{self.target.user}:{self.target.password}@"
        return f"clickhouse://{auth}{netloc}/{self.target.database}?cluster={self.target.cluster}"

    def fresh_database(self) -> None:
        """A fresh store for the replicas to create: on a cluster started here, the database dropped on every
        shard; on a given one, refused unless the URL's database holds no spans (never drops a user's data)."""
        db = self.target.database
        for client in self.shard_clients:
            if self.own is not None:
                client.execute(f"DROP DATABASE IF EXISTS {db}")
                continue
            exists = client.execute(
                "SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'spans_local'", {"db": db}
            )[0][0]
            if exists and client.execute(f"SELECT count() FROM {db}.spans_local")[0][0]:
                raise SystemExit(f"--store: database {db} already holds spans; the benchmark needs an empty one")

    def cpu_seconds(self) -> float | None:
        """CPU seconds of the shard processes this benchmark started (None for a given cluster)."""
        if self.own is None:
            return None
        total = 0.0
        for shard in self.own.shards:
            if shard.process is not None:
                fields = Path(f"/proc/{shard.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def close(self) -> None:
        for client in [self.client, *self.shard_clients]:
            client.disconnect()
        if self.own is not None:
            self.own.stop()


class Markers:
    """Waiting until marker spans (or log records) are visible; ``has``/``has_log`` are the store's."""

    def has(self, marker: tuple[bytes, bytes]) -> bool:
        raise NotImplementedError

    def has_log(self, marker: tuple[bytes, bytes]) -> bool:
        raise NotImplementedError

    def wait(
        self, markers: Iterable[tuple[bytes, bytes]], backend: Any, timeout: float = 600, logs: bool = False
    ) -> None:
        """Until each marker is there; ``backend.alive()`` raises if a server died meanwhile."""
        deadline = time.monotonic() + timeout
        for marker in markers:
            while not (self.has_log(marker) if logs else self.has(marker)):
                backend.alive()
                if time.monotonic() > deadline:
                    raise SystemExit("spans not committed in time")
                time.sleep(0.002)


class Committed(Markers):
    """Whether a marker span / log record is stored, through the ``Distributed`` tables (as any reader sees it)."""

    def __init__(self, cluster: Cluster) -> None:
        self.db = cluster.target.database
        self.conn = cluster._client(cluster.hosts[0])  # the benchmark's own connection (one thread polls)

    def has(self, marker: tuple[bytes, bytes]) -> bool:
        rows = self.conn.execute(
            f"SELECT count() FROM {self.db}.spans WHERE trace_id = unhex(%(t)s) AND span_id = unhex(%(s)s)",
            {"t": marker[0].hex(), "s": marker[1].hex()},
        )
        return bool(rows[0][0])

    def has_log(self, marker: tuple[bytes, bytes]) -> bool:
        rows = self.conn.execute(
            f"SELECT count() FROM {self.db}.logs WHERE trace_id = unhex(%(t)s) AND span_id = unhex(%(s)s)",
            {"t": marker[0].hex(), "s": marker[1].hex()},
        )
        return bool(rows[0][0])

    def count(self) -> int:
        return int(self.conn.execute(f"SELECT count() FROM {self.db}.spans")[0][0])

    def close(self) -> None:
        self.conn.disconnect()


@dataclass
class Parts:
    """``system.parts`` (active parts) of the benchmark's database, summed over every shard."""

    spans: int  # rows of spans_local on every shard
    logs: int
    tables: list[tuple[str, int, int, int]]  # (table, bytes on disk, rows, parts)

    @property
    def total(self) -> int:
        return sum(b for _, b, _, _ in self.tables)

    def of(self, *prefixes: str) -> int:
        return sum(b for t, b, _, _ in self.tables if t.startswith(prefixes))


def parts(cluster: Cluster) -> Parts:
    by_table: dict[str, list[int]] = {}
    for client in cluster.shard_clients:
        for table, size, rows, count in client.execute(
            "SELECT table, sum(bytes_on_disk), sum(rows), count() FROM system.parts"
            " WHERE active AND database = %(db)s GROUP BY table",
            {"db": cluster.target.database},
        ):
            acc = by_table.setdefault(str(table), [0, 0, 0])
            acc[0] += int(size)
            acc[1] += int(rows)
            acc[2] += int(count)
    tables = sorted(((t, *v) for t, v in by_table.items()), key=lambda r: -r[1])  # type: ignore[misc]
    spans = by_table.get("spans_local", [0, 0, 0])[1]
    logs = by_table.get("logs_local", [0, 0, 0])[1]
    return Parts(spans, logs, [(t, b, r, c) for t, b, r, c in tables])


def lookup_breakdown(
    cluster: Cluster, refs: list[Any], n: int, window: tuple[int, int] = (0, 0)
) -> list[tuple[str, list[float]]]:
    """Where a lookup's time goes: the store's own calls timed in this process (no HTTP, no serve).

    ``refs``: samples with ``trace_id``, ``request_id`` and ``start_ns``; ``window``: the data's time
    range (for the searches).  Each row: ms per call.  A call the store does not implement at this
    commit is left out.  The searches return IDs only: the HTTP routes then read each trace found.
    """
    import random

    from otel_corr.server._clickhouse import _SPAN_READ, ClickHouseStore

    rng = random.Random(23)
    picks = [rng.choice(refs) for _ in range(n)]
    from otel_corr.server._search import parse

    store = ClickHouseStore(cluster.url)
    shard = cluster.shard_clients[0]
    cache = parse("cache")
    rows: list[tuple[str, Any]] = [
        ("driver round trip: SELECT 1 on a shard", lambda r: shard.execute("SELECT 1")),
        ("the key's shard (CityHash64 computed locally)", lambda r: store._home(r.trace_id)),
        ("store.trace(trace_id): one read", lambda r: store.trace(r.trace_id)),
        ("store.logs(trace_id): one read", lambda r: store.logs(r.trace_id)),
        ("store.traces_for_request(request_id)", lambda r: store.traces_for_request(r.request_id, limit=1)),
        (
            "store.search(web-frontend, 1 h, status=500): IDs only",
            lambda r: store.search(
                service="web-frontend",
                tags={"http.response.status_code": "500"},
                start_ns=max(window[0], r.start_ns - 1_800_000_000_000),
                end_ns=max(window[0], r.start_ns - 1_800_000_000_000) + 3_600_000_000_000,
                limit=20,
            ),
        ),
        (
            "store.find('cache', 24 h): results without their traces",
            lambda r: _in_budget(store, lambda: store.find(cache, limit=20)),
        ),
    ]
    out = []
    try:
        # What one trace read makes the shard read (the driver's progress packets): rows and bytes.
        read = []
        for ref in picks[:20]:
            home = store._home(ref.trace_id)
            client = cluster.shard_clients[[f"{h}:{p}" for h, p in cluster.shards].index(home.address)]
            client.execute(
                _SPAN_READ.format(table=f"{cluster.target.database}.spans_local", span=""),
                {"trace": ref.trace_id.hex()},
            )
            read.append((client.last_query.progress.rows, client.last_query.progress.bytes))
        if read:
            rows_read = sorted(r for r, _ in read)[len(read) // 2]
            bytes_read = sorted(b for _, b in read)[len(read) // 2]
            out.append((f"(a trace read on its shard reads {rows_read:,} rows, {bytes_read / 1e6:.1f} MB: median)", []))
        for label, call in rows:
            times = []
            try:
                for ref in picks if "search" not in label and "find" not in label else picks[: max(1, n // 5)]:
                    t0 = time.perf_counter()
                    call(ref)
                    times.append((time.perf_counter() - t0) * 1000)
            except NotImplementedError:
                continue
            out.append((label, times))
    finally:
        store.close()
    return out


def _in_budget(store: Any, call: Any) -> Any:
    """``call()`` inside the store's query budget (60 s), as serve runs every read."""
    with store.budget(time.monotonic() + 60):
        return call()
