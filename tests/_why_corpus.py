"""The ``why`` corpus (issue 19's proof): traces with one injected cause of known location, made by real apps.

:class:`Stack` starts a real ``otel-corr serve``, the ``stock`` service (``tests/apps/why_downstream.py``,
uvicorn), the ``checkout`` service (``tests/apps/why_fastapi.py``, uvicorn) and the ``billing`` service
(``tests/apps/why_flask.py``, gunicorn), all exporting over OTLP (the default exporters) to the backend.

:func:`corpus` draws the requests: ordinary ones of every endpoint first (the baseline "against normal"
compares with), then ``per_kind`` injected ones of each cause kind, half to each app, their sizes and their
places drawn from a seeded generator (so no one trace shape is learnt).  Each injected request knows where
its cause is (:class:`Want`: a span by service and name, the cause kinds that describe it, what the top cause
must carry).  :func:`run` sends them, lets every span and log record arrive, and asks ``GET /api/ui/why/{id}``
about each trace; :func:`score` says, for each, whether the top-ranked cause is the injected one.

Used by ``tests/test_why_corpus.py`` (a smaller corpus) and ``benchmarks/why_corpus.py`` (the whole one).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from .apps.why_common import pause_lines
from .collector import free_port
from .conftest import Server, server_env
from .test_server import Backend

FASTAPI, FLASK = "fastapi", "flask"
FRAMEWORKS = (FASTAPI, FLASK)
SERVICE = {FASTAPI: "checkout", FLASK: "billing"}
DOWNSTREAM = "stock"
KINDS = ("slow_downstream", "untraced_sleep", "n_plus_one", "deep_exception", "background", "retry", "lock_wait")
ORDINARY = "ordinary"
Params = dict[str, str | int | float]

# Every endpoint of each app, as the ordinary requests call them: (method, path with ``{id}``).
ENDPOINTS: dict[str, list[tuple[str, str]]] = {
    FASTAPI: [
        ("GET", "/orders/{id}"),
        ("GET", "/carts/{id}"),
        ("POST", "/payments/{id}"),
        ("POST", "/orders/{id}/confirm"),
        ("POST", "/inventory/sku-{id}/reserve"),
    ],
    FLASK: [
        ("GET", "/invoices/{id}"),
        ("GET", "/accounts/{id}/statement"),
        ("POST", "/charges/{id}"),
        ("POST", "/invoices/{id}/send"),
        ("POST", "/ledger/{id}"),
    ],
}


@dataclass(frozen=True)
class Want:
    """Where an injected cause is, and what the top-ranked cause must say about it.

    ``service``/``name`` name the span the cause points at (``name=None``: the request's entry span);
    ``url_has`` picks one of several same-named spans by its ``url.full``; with ``subtree`` any span below it
    is right too (a slow downstream call: the client span or any span of the service it called).
    """

    kinds: frozenset[str]
    service: str
    name: str | None = None
    url_has: str = ""
    subtree: bool = False
    gap: tuple[str, str] | None = None  # untraced: the log lines just before and just after the gap
    error_type: str | None = None  # error: the origin's exception type
    repeat: tuple[str, int, int] | None = None  # repeated/retried: (span name, count, failed)
    repeat_also: str = ""  # another span name the repeat may name (two queries an item: either is the N+1)


@dataclass
class Case:
    """One request of the corpus: what to send, what was injected, and (after :func:`run`) its trace."""

    kind: str
    framework: str
    method: str
    path: str
    params: Params
    want: Want | None
    variant: str = ""
    status: int = 0
    trace_id: str = ""


@dataclass
class Outcome:
    """What ``why`` said about one case, and whether its top cause is the injected one."""

    case: Case
    ok: bool
    miss: str = ""  # why not, in one line
    top: str = ""  # the top-ranked cause, in one line
    alarming: bool = False
    answer: dict[str, Any] = field(default_factory=dict)
    located: bool = False  # the top cause's kind and span are right (its details may still be wrong)
    seconds: float = 0.0  # how long the why route took to answer


# --- the corpus ----------------------------------------------------------------------------------------------


def _ordinary(framework: str, ident: int, endpoint: int) -> Case:
    method, path = ENDPOINTS[framework][endpoint]
    return Case(ORDINARY, framework, method, path.format(id=ident), {}, None, variant=path)


def _slow_downstream(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    ms = rng.randrange(60, 600)
    path = f"/orders/{ident}" if fw == FASTAPI else f"/invoices/{ident}"
    want = Want(frozenset({"slow", "untraced"}), SERVICE[fw], "GET", url_has="/stock/", subtree=True)
    return Case("slow_downstream", fw, "GET", path, {"stock_ms": ms, "slow_in": variant}, want, f"{variant} {ms}ms")


def _untraced_sleep(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    at, ms = int(variant), rng.randrange(60, 500)
    path = f"/orders/{ident}" if fw == FASTAPI else f"/invoices/{ident}"
    want = Want(frozenset({"untraced"}), SERVICE[fw], gap=pause_lines(at, ident))
    return Case("untraced_sleep", fw, "GET", path, {"pause_ms": ms, "pause_at": at}, want, f"at {at} {ms}ms")


def _n_plus_one(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    item_ms = rng.choice((1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0))
    params: Params
    if fw == FASTAPI:
        path, params = f"/carts/{ident}", {"items": 30, "item_ms": item_ms, "loop_in": variant}
        parent, name = "cart.load", "SELECT item"
    else:
        path, params = f"/accounts/{ident}/statement", {"lines": 30, "line_ms": item_ms, "loop_in": variant}
        parent, name = "statement.build", "SELECT line"
    also = ""
    if variant == "http":  # 30 calls to the stock service instead of 30 queries
        name, label = "GET", "http 30 calls"
    else:
        label = f"{variant} 30x{item_ms:g}ms"
    if variant == "pairs":  # each item's row, then its price: two runs of 30, interleaved
        also = "SELECT price" if fw == FASTAPI else "SELECT fx_rate"
    in_service = variant in ("service", "pairs")
    want = Want(
        frozenset({"repeated"}), SERVICE[fw], parent if in_service else None, repeat=(name, 30, 0), repeat_also=also
    )
    return Case("n_plus_one", fw, "GET", path, params, want, label)


_DEEP_TYPES = ("KeyError", "ValueError", "ZeroDivisionError", "TimeoutError", "DeepError")


def _deep_exception(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    exc = rng.choice(_DEEP_TYPES)
    params: Params = {"exc": exc}
    label = f"{variant} {exc}"
    if variant == "remote":
        params["remote"] = "true"
        service, origin = DOWNSTREAM, "card.decode"
    else:
        if variant == "http":  # not left unhandled: answered as a gateway error by the handler
            params["answer"] = rng.choice((502, 503, 504))
            params["depth"] = depth = rng.choice((2, 3))
            label = f"http {params['answer']} depth {depth} {exc}"
        elif variant == "handled":  # a cache read failed (deeper) and was handled before the real failure
            params["cache"] = "true"
            params["depth"] = depth = 2
            label = f"handled cache failure, depth 2 {exc}"
        else:
            params["depth"] = depth = int(variant)
        service = SERVICE[fw]
        names = {FASTAPI: ("fraud.check", "risk.score"), FLASK: ("card.tokenize", "vault.read")}[fw]
        origin = names[depth - 2]
    path = f"/payments/{ident}" if fw == FASTAPI else f"/charges/{ident}"
    want = Want(frozenset({"error"}), service, origin, error_type=exc)
    return Case("deep_exception", fw, "POST", path, params, want, label)


def _background(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    ms = rng.randrange(80, 600)
    params: Params
    if fw == FASTAPI and variant == "thread":  # a sync task, which Starlette runs in its thread pool
        path, params, name = f"/orders/{ident}/confirm", {"archive_ms": ms}, "BackgroundTask archive_order"
    elif fw == FASTAPI:
        path, params = f"/orders/{ident}/confirm", {"receipt_ms": ms, "via_mail": str(variant == "relay").lower()}
        name = "BackgroundTask send_receipt"
    else:  # a thread of its own, or a pool's ("thread")
        via = "pool" if variant == "thread" else variant
        path, params, name = f"/invoices/{ident}/send", {"mail_ms": ms, "via": via}, "email.send"
    want = Want(frozenset({"after_response"}), SERVICE[fw], name, subtree=True)
    return Case("background", fw, "POST", path, params, want, f"{variant} {ms}ms")


def _retry(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    backoff = rng.randrange(20, 150)
    if variant == "db":  # a statement the database twice picks as a deadlock's victim
        path, parent, name = {
            FASTAPI: (f"/inventory/sku-{ident}/reserve", "inventory.reserve", "UPDATE stock"),
            FLASK: (f"/ledger/{ident}", "ledger.append", "INSERT ledger"),
        }[fw]
        want = Want(frozenset({"retried"}), SERVICE[fw], parent, repeat=(name, 3, 2))
        params: Params = {"deadlocks": 2, "backoff_ms": backoff}
        return Case("retry", fw, "POST", path, params, want, f"db backoff {backoff}ms")
    path = f"/payments/{ident}" if fw == FASTAPI else f"/charges/{ident}"
    label = f"{variant} backoff {backoff}ms"
    params = {"fail": 2, "backoff_ms": backoff, "retry_in": variant}
    if variant == "timeout":  # the feed hangs twice; the client gives up after timeout_ms and retries
        timeout = rng.randrange(60, 150)
        params.update(hang_ms=timeout + rng.randrange(30, 300), timeout_ms=timeout)
        params["retry_in"] = rng.choice(("handler", "service"))
        label = f"timeout {timeout}ms hang {params['hang_ms']}ms {params['retry_in']} backoff {backoff}ms"
    step = {FASTAPI: "fx.quote", FLASK: "fx.convert"}[fw] if params["retry_in"] == "service" else None
    want = Want(frozenset({"retried"}), SERVICE[fw], step, repeat=("GET", 3, 2))
    return Case("retry", fw, "POST", path, params, want, label)


def _lock_wait(fw: str, ident: int, variant: str, rng: random.Random) -> Case:
    ms = rng.randrange(60, 500)
    if fw == FASTAPI:
        path, name = f"/inventory/sku-{ident}/reserve", "inventory.reserve"
    else:
        path, name = f"/ledger/{ident}", "ledger.append"
    want = Want(frozenset({"untraced", "slow"}), SERVICE[fw], None if variant == "bare" else name)
    return Case("lock_wait", fw, "POST", path, {"contended_ms": ms, "waiter": variant}, want, f"{variant} {ms}ms")


_MAKERS = {
    "slow_downstream": (_slow_downstream, ("handler", "query")),
    "untraced_sleep": (_untraced_sleep, ("0", "1", "2", "3")),
    "n_plus_one": (_n_plus_one, ("service", "handler_first", "handler_last", "http", "pairs")),
    "deep_exception": (_deep_exception, ("2", "3", "remote", "http", "handled")),
    "background": (_background, ("local", "relay", "thread")),
    "retry": (_retry, ("handler", "service", "db", "timeout")),
    "lock_wait": (_lock_wait, ("span", "leaf", "bare")),
}


def corpus(per_kind: int = 8, ordinary: int = 10, seed: int = 19) -> tuple[list[Case], list[Case]]:
    """The ordinary requests (``ordinary`` per endpoint, endpoints interleaved) and the injected ones
    (``per_kind`` of each kind, alternating between the apps, variants taken in a shuffled cycle so every
    variant appears, in a shuffled order)."""
    rng = random.Random(seed)
    ids = iter(rng.sample(range(1000, 99_999), ordinary * 10 + per_kind * len(KINDS)))
    plain = [
        _ordinary(fw, next(ids), endpoint)
        for _ in range(ordinary)
        for endpoint in range(len(ENDPOINTS[FASTAPI]))
        for fw in FRAMEWORKS
    ]
    injected: list[Case] = []
    for kind in KINDS:
        make, variants = _MAKERS[kind]
        for fw_index, fw in enumerate(FRAMEWORKS):
            cycle = list(variants)
            rng.shuffle(cycle)
            count = per_kind // 2 + (per_kind % 2 if fw_index == 0 else 0)
            injected += [make(fw, next(ids), cycle[i % len(cycle)], rng) for i in range(count)]
    rng.shuffle(injected)
    return plain, injected


# --- the stack -----------------------------------------------------------------------------------------------


class Stack:
    """``otel-corr serve`` and the three services exporting to it; :meth:`stop` flushes and stops them all."""

    def __init__(self, tmp: Path) -> None:
        self.backend = Backend(tmp)
        self.servers: list[Server] = []
        try:
            down_port = free_port()
            self.downstream = self._start(tmp, "stock", down_port, "", self._uvicorn("why_downstream", down_port))
            url = self.downstream.url
            port = free_port()
            self.apps = {FASTAPI: self._start(tmp, "checkout", port, url, self._uvicorn("why_fastapi", port))}
            port = free_port()
            gunicorn = [sys.executable, "-m", "gunicorn", "tests.apps.why_flask:app", "--bind", f"127.0.0.1:{port}"]
            self.apps[FLASK] = self._start(tmp, "billing", port, url, [*gunicorn, "--workers", "1"])
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _uvicorn(module: str, port: int) -> list[str]:
        app = f"tests.apps.{module}:app"
        return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]

    def _start(self, tmp: Path, service: str, port: int, downstream: str, argv: list[str]) -> Server:
        env = server_env(
            None,
            OTEL_EXPORTER_OTLP_ENDPOINT=self.backend.otlp,
            OTEL_SERVICE_NAME=service,
            OTEL_BLRP_SCHEDULE_DELAY="100",
            WHY_DOWNSTREAM_URL=downstream,
        )
        server = Server(argv, env, tmp / f"{service}.log", port)
        self.servers.append(server)
        return server

    def flush(self) -> None:
        """Stop the services with SIGTERM, callers first: each flushes its queued spans and log records."""
        for server in reversed(self.servers):
            if server.proc.poll() is None:
                server.sigterm(60)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.backend.proc.poll() is None:
            self.backend.stop()


@contextmanager
def stack(tmp: Path) -> Iterator[Stack]:
    running = Stack(tmp)
    try:
        yield running
    finally:
        running.stop()


# --- running and scoring -------------------------------------------------------------------------------------


def send(running: Stack, cases: list[Case]) -> None:
    """Send each case's request in turn; keep its status and the trace ID its ``traceresponse`` names."""
    # A fresh connection each: uvicorn closes one after an unhandled exception (the deep failures' 500s).
    with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for case in cases:
            url = running.apps[case.framework].url + case.path
            response = client.request(case.method, url, params=case.params)
            case.status = response.status_code
            case.trace_id = response.headers["traceresponse"].split("-")[1]


def _spans_of(backend: Backend, trace_id: str) -> list[dict[str, Any]]:
    r = backend.get(f"/api/ui/trace/{trace_id}")
    assert r.status_code == 200, (trace_id, r.status_code, r.text[:300])
    return r.json()["spans"]  # type: ignore[no-any-return]


def _resolve(want: Want, spans: list[dict[str, Any]]) -> tuple[set[str], str]:
    """The span IDs a cause may point at, and the entry span's ID."""
    by_id = {s["span_id"]: s for s in spans}
    entry = next(s for s in spans if s["parent_id"] not in by_id)
    if want.name is None:
        picked = [s for s in spans if s["service"] == want.service and s["parent_id"] not in by_id]
    else:
        picked = [
            s
            for s in spans
            if s["service"] == want.service
            and s["name"] == want.name
            and want.url_has in str(s["attributes"].get("url.full", ""))
        ]
    assert len(picked) == 1, (want, [(s["service"], s["name"]) for s in spans])
    ids = {picked[0]["span_id"]}
    if want.subtree:
        children: dict[str, list[str]] = {}
        for s in spans:
            children.setdefault(s["parent_id"] or "", []).append(s["span_id"])
        todo = list(ids)
        while todo:
            for child in children.get(todo.pop(), []):
                ids.add(child)
                todo.append(child)
    return ids, entry["span_id"]


def describe(cause: dict[str, Any] | None) -> str:
    """A cause in one line: rank, kind, span, ms, title."""
    if cause is None:
        return "(no cause)"
    return (
        f"#{cause['rank']} {cause['kind']} on {cause['service']}/{cause['name']} "
        f"{cause['ms']}ms share {cause['share']}: {cause['title']}"
    )


def _check(want: Want, top: dict[str, Any], spans: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether ``top`` points at the injected cause (kind and span), and why it is not it ("" when it is:
    at the right place and carrying what the contract says of that kind)."""
    ids, entry = _resolve(want, spans)
    where = f"{want.service}/{want.name or '(entry)'}"
    if top["kind"] not in want.kinds or top["span_id"] not in ids:
        return False, f"wanted {'|'.join(sorted(want.kinds))} on {where}"
    if want.gap is not None and top["kind"] == "untraced":
        gap = top.get("gap") or {}
        got = [(gap.get(side) or {}).get("text") for side in ("before", "after")]
        what = [(gap.get(side) or {}).get("what") for side in ("before", "after")]
        if tuple(got) != want.gap or what != ["log", "log"]:
            return True, f"gap brackets {list(zip(what, got, strict=True))!r}, wanted the log lines {want.gap!r}"
    if want.error_type is not None:
        error = top.get("error") or {}
        chain = [link.get("span_id") for link in error.get("chain") or []]
        # The SDK names a class outside builtins by its module too (tests.apps.why_common.DeepError).
        if str(error.get("type")).rpartition(".")[2] != want.error_type:
            return True, f"error type {error.get('type')!r}, wanted {want.error_type!r}"
        if not chain or chain[0] != top["span_id"] or chain[-1] != entry:
            return True, f"error chain {chain} does not run from the origin to the entry span {entry}"
    if want.repeat is not None:
        repeat = top.get("repeat") or {}
        name = repeat.get("name")
        if want.repeat_also and name == want.repeat_also:
            name = want.repeat[0]
        got_repeat = (name, repeat.get("count"), repeat.get("failed"))
        if got_repeat != want.repeat:
            return True, f"repeat (name, count, failed) {got_repeat!r}, wanted {want.repeat!r}"
    return True, ""


def judge(backend: Backend, case: Case) -> Outcome:
    """Ask ``why`` about the case's trace and judge its top cause (or, for an ordinary one, its verdict)."""
    began = time.perf_counter()
    r = backend.get(f"/api/ui/why/{case.trace_id}")
    seconds = time.perf_counter() - began
    if r.status_code != 200:
        return Outcome(case, False, miss=f"why answered {r.status_code}: {r.text[:200]}")
    answer = r.json()
    causes = answer.get("causes") or []
    top = causes[0] if causes else None
    alarming = bool(answer["verdict"]["alarming"])
    if case.want is None:
        return Outcome(
            case, not alarming, "alarming" if alarming else "", describe(top), alarming, answer, seconds=seconds
        )
    if top is None:
        return Outcome(case, False, "no cause at all", describe(top), alarming, answer, seconds=seconds)
    located, miss = _check(case.want, top, _spans_of(backend, case.trace_id))
    return Outcome(case, not miss, miss, describe(top), alarming, answer, located, seconds)


def background_ms(case: Case) -> float:
    """How long the case's work after the response was made to take (0 for other cases)."""
    for key in ("receipt_ms", "mail_ms", "archive_ms", "hang_ms"):
        if key in case.params:
            return float(case.params[key])
    return 0.0


def settle(running: Stack, injected: list[Case]) -> None:
    """Let the background work of the last requests end, then flush every service."""
    slowest = max((background_ms(c) for c in injected), default=0)
    time.sleep(slowest / 1000 + 0.5)
    running.flush()


def run(tmp: Path, per_kind: int = 8, ordinary: int = 10, seed: int = 19) -> list[Outcome]:
    """The whole proof: start the stack, send the corpus, flush, and judge every trace."""
    plain, injected = corpus(per_kind, ordinary, seed)
    # One request of each endpoint before the corpus, not judged: a service's first request pays its
    # imports and connections, and would rightly stand out from its endpoint's normal.
    warmup = [_ordinary(fw, 1, endpoint) for endpoint in range(len(ENDPOINTS[FASTAPI])) for fw in FRAMEWORKS]
    with stack(tmp) as running:
        send(running, warmup)
        send(running, plain)
        send(running, injected)
        settle(running, injected)
        return [judge(running.backend, case) for case in [*plain, *injected]]


@dataclass
class Scores:
    """The outcomes summed up: per (kind, framework) the traces and the right top causes."""

    outcomes: list[Outcome]
    cells: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for o in self.outcomes:
            if o.case.want is not None:
                total, right, alarming = self.cells.get((o.case.kind, o.case.framework), (0, 0, 0))
                self.cells[o.case.kind, o.case.framework] = (total + 1, right + o.ok, alarming + o.alarming)

    @property
    def injected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.want is not None]

    @property
    def ordinary(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.want is None]

    @property
    def top1(self) -> float:
        return sum(o.ok for o in self.injected) / max(1, len(self.injected))

    @property
    def misses(self) -> list[Outcome]:
        return [o for o in self.injected if not o.ok]

    def _slow_for_its_endpoint(self, outcome: Outcome) -> bool:
        """Whether a trace really was slow for its endpoint: 1.5x the median of the endpoint's requests in the
        corpus and 25 ms over it (the contract's ratio and the analysis' floor)."""
        entry = outcome.answer["entry"]
        median = self.medians[entry["service"], entry["name"]]
        return bool(entry["duration_ms"] >= 1.5 * median and entry["duration_ms"] >= median + 25)

    @cached_property
    def medians(self) -> dict[tuple[str, str], float]:
        """The median duration (ms) of each endpoint's requests in the corpus, ordinary and injected."""
        durations: dict[tuple[str, str], list[float]] = {}
        for o in self.outcomes:
            if o.answer:
                entry = o.answer["entry"]
                durations.setdefault((entry["service"], entry["name"]), []).append(entry["duration_ms"])
        return {key: statistics.median(values) for key, values in durations.items()}

    @property
    def stalled(self) -> list[Outcome]:
        """Ordinary requests the machine stalled (two cores shared by the whole team): really slow for their
        endpoint, so "alarming" is the right verdict for them; reported, not counted against it."""
        return [o for o in self.ordinary if o.alarming and self._slow_for_its_endpoint(o)]

    @property
    def alarming(self) -> list[Outcome]:
        """Ordinary requests called alarming although they were not slow for their endpoint."""
        return [o for o in self.ordinary if o.alarming and not self._slow_for_its_endpoint(o)]

    @property
    def unanswered(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.answer]

    def rows(self) -> list[list[str]]:
        """The table: one row per kind and framework, then per kind, then the total: traces, right top
        causes, their share in %, and how many of the traces the verdict called alarming."""
        out = []
        for kind in KINDS:
            both = [0, 0, 0]
            for fw in FRAMEWORKS:
                cell = self.cells.get((kind, fw), (0, 0, 0))
                both = [a + b for a, b in zip(both, cell, strict=True)]
                out.append(_row(kind, fw, *cell))
            out.append(_row(kind, "both", *both))
        injected = self.injected
        out.append(_row("all", "both", len(injected), sum(o.ok for o in injected), sum(o.alarming for o in injected)))
        return out


def _row(kind: str, framework: str, total: int, right: int, alarming: int) -> list[str]:
    share = f"{100 * right / total:.1f}" if total else "-"
    return [kind, framework, str(total), str(right), share, str(alarming)]
