"""A billing service (Flask, service ``billing``) for the ``why`` corpus (issue 19), run under real gunicorn.

The same causes as ``why_fastapi.py`` in a blocking app, at other places of other handlers:

- ``GET /invoices/<id>``: ``stock_ms`` (+ ``slow_in``) makes the stock lookup slow; ``pause_ms`` sleeps in
  untraced code at position ``pause_at`` (0-3) between two log lines.
- ``GET /accounts/<id>/statement``: ``lines=30`` loads the statement's lines one query each (N+1), in the
  service layer or in the handler (``loop_in``), with a rate query after each (``pairs``), or asks the stock
  service about each (``http``).
- ``POST /charges/<id>``: ``exc`` fails deep (``depth`` 2 or 3, or ``remote``) and ``charge.create``
  re-raises it as ``ChargeFailed`` (answered with ``abort(answer)`` when ``answer`` is set; with ``cache``, a
  failed cache read is handled inside the failing step first); ``fail=2`` makes
  the rates feed fail twice (or time out twice: ``hang_ms``, ``timeout_ms``; ``backoff_ms``, ``retry_in``).
- ``POST /invoices/<id>/send``: ``mail_ms`` makes the e-mail, sent by a thread after the response, slow
  (here, or through the stock service's relay with ``via=relay``; ``via=pool``: a pool thread sends it).
- ``POST /ledger/<id>``: ``contended_ms`` has a cache refresher hold the ledger lock while the entry is
  written in a thread pool (``waiter``: ``span``, ``leaf`` or ``bare``); ``deadlocks=2`` makes the INSERT fail
  twice, retried after ``backoff_ms``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, Response, abort, jsonify, request

import otel_corr

from .why_common import cached_risk, hold, locked_write, pause_lines, query, raise_deep, service_span

otel_corr.configure_logging()
app = Flask(__name__)
log = logging.getLogger("billing")
STOCK = os.environ.get("WHY_DOWNSTREAM_URL", "http://127.0.0.1:1")
pool = ThreadPoolExecutor(4, thread_name_prefix="ledger")
mailer = ThreadPoolExecutor(2, thread_name_prefix="mailer")
ledger_lock = threading.Lock()
session = requests.Session()


class ChargeFailed(RuntimeError):
    """The charge could not be made."""


def _untraced(ms: int) -> None:
    """A step nobody traced (a PDF library, a vendor SDK)."""
    time.sleep(ms / 1000)


@app.get("/invoices/<int:invoice_id>")
def invoice(invoice_id: int) -> Response:
    args = request.args
    pause_at, pause_ms = args.get("pause_at", -1, type=int), args.get("pause_ms", 0, type=int)

    def pause(at: int) -> None:
        if at == pause_at:
            before, after = pause_lines(at, invoice_id)
            log.info(before)
            _untraced(pause_ms)
            log.info(after)

    log.info("invoice %s: loading", invoice_id)
    pause(0)
    params: dict[str, str | int] = {"ms": args.get("stock_ms", 0, type=int), "slow_in": args.get("slow_in", "handler")}
    level = session.get(f"{STOCK}/stock/sku-{invoice_id % 5}", params=params, timeout=10).json()
    pause(1)
    with service_span("tax.compute"):
        query("SELECT tax_rules", 3)
    pause(2)
    query("SELECT invoices", 5)
    pause(3)
    log.info("invoice %s: ready", invoice_id)
    return jsonify(invoice_id=invoice_id, available=level["available"])


@app.get("/accounts/<int:account_id>/statement")
def statement(account_id: int) -> Response:
    count = request.args.get("lines", 0, type=int) or 2 + account_id % 3
    line_ms = request.args.get("line_ms", 2.0, type=float)
    loop_in = request.args.get("loop_in", "service")
    log.info("statement for account %s: %d lines", account_id, count)
    if loop_in == "handler_first":
        for _ in range(count):
            query("SELECT line", line_ms)
    with service_span("statement.build"):
        query("SELECT account", 4)
        if loop_in == "service":
            for _ in range(count):
                query("SELECT line", line_ms)
        elif loop_in == "pairs":  # two queries a line: the line, then its exchange rate
            for _ in range(count):
                query("SELECT line", line_ms)
                query("SELECT fx_rate", line_ms / 2)
    if loop_in == "http":  # each line's stock level from the stock service, one call each
        for line in range(count):
            session.get(f"{STOCK}/stock/sku-{line}", timeout=10)
    query("SELECT balance", 5)
    if loop_in == "handler_last":
        for _ in range(count):
            query("SELECT line", line_ms)
    return jsonify(account_id=account_id, lines=count)


def _rates(charge_id: int, fail: int, backoff_ms: int, hang_ms: int, timeout_ms: int) -> float:
    key = f"usd-{charge_id}-{uuid.uuid4().hex[:8]}"
    params, timeout = {"fail": fail, "hang_ms": hang_ms}, timeout_ms / 1000 if timeout_ms else 10
    for attempt in range(1, 5):
        try:
            answer = session.get(f"{STOCK}/rates/{key}", params=params, timeout=timeout)
        except requests.Timeout:
            log.warning("rates feed timed out (attempt %d), retrying", attempt)
        else:
            if answer.status_code < 500:
                return float(answer.json()["rate"])
            log.warning("rates feed answered %d (attempt %d), retrying", answer.status_code, attempt)
        time.sleep(backoff_ms * attempt / 1000)
    raise ChargeFailed("no exchange rate")


def _create(charge_id: int, exc: str, depth: int, remote: bool, cache: bool) -> None:
    with service_span("charge.create"):
        query("SELECT customer", 3)
        try:
            if remote:
                session.get(f"{STOCK}/cards/c-{charge_id}", params={"exc": exc}, timeout=10).raise_for_status()
            else:
                with service_span("card.tokenize"):
                    if cache and cached_risk(f"charge-{charge_id}") is None:
                        log.warning("risk cache unavailable for charge %s, recomputing", charge_id)
                    query("SELECT card", 2)
                    if exc and depth == 2:
                        raise_deep(exc, "token")
                    if exc:
                        with service_span("vault.read"):
                            raise_deep(exc, "token")
        except Exception as error:
            raise ChargeFailed(f"charge {charge_id} failed") from error


@app.post("/charges/<int:charge_id>")
def charge(charge_id: int) -> Response:
    args = request.args
    log.info("charging %s", charge_id)
    try:
        exc, depth, remote = args.get("exc", ""), args.get("depth", 2, type=int), args.get("remote") == "true"
        _create(charge_id, exc, depth, remote, args.get("cache") == "true")
    except ChargeFailed as failed:
        if not args.get("answer"):
            raise
        # The provider's failure answered as a gateway error rather than left unhandled.
        log.error("charge %s: %s", charge_id, failed)
        abort(args.get("answer", 502, type=int))
    fail, backoff_ms = args.get("fail", 0, type=int), args.get("backoff_ms", 50, type=int)
    hang_ms, timeout_ms = args.get("hang_ms", 0, type=int), args.get("timeout_ms", 0, type=int)
    if args.get("retry_in") == "service":
        with service_span("fx.convert"):
            rate = _rates(charge_id, fail, backoff_ms, hang_ms, timeout_ms)
    else:
        rate = _rates(charge_id, fail, backoff_ms, hang_ms, timeout_ms)
    query("INSERT charges", 3)
    return jsonify(charge_id=charge_id, rate=rate)


def _deliver(invoice_id: int, ms: int, via: str) -> None:
    with service_span("email.send"):
        query("INSERT outbox", 2)
        if via == "relay":
            session.post(f"{STOCK}/mail", params={"ms": ms}, timeout=10)
        else:
            _untraced(ms)
        log.info("invoice %s e-mailed", invoice_id)


@app.post("/invoices/<int:invoice_id>/send")
def send(invoice_id: int) -> Response:
    mail_ms, via = request.args.get("mail_ms", 2, type=int), request.args.get("via", "local")
    log.info("sending invoice %s", invoice_id)
    query("UPDATE invoices", 3)
    # The e-mail goes out after the response, in a thread that carries the request's context.
    if via == "pool":
        mailer.submit(_deliver, invoice_id, mail_ms, via)
    else:
        threading.Thread(target=_deliver, args=(invoice_id, mail_ms, via)).start()
    return jsonify(invoice_id=invoice_id, queued=True)


def _append(entry_id: int, waiter: str, deadlocks: int, backoff_ms: int) -> None:
    locked_write(
        ledger_lock,
        "ledger.append",
        "INSERT ledger",
        waiter,
        deadlocks=deadlocks,
        backoff_ms=backoff_ms,
        what=f"posting ledger entry {entry_id}",
        log=log,
    )


@app.post("/ledger/<int:entry_id>")
def ledger(entry_id: int) -> Response:
    contended_ms, waiter = request.args.get("contended_ms", 0, type=int), request.args.get("waiter", "span")
    log.info("posting ledger entry %s", entry_id)
    query("SELECT ledger_head", 3)
    if contended_ms:
        hold(ledger_lock, contended_ms).wait(5)
    deadlocks, backoff_ms = request.args.get("deadlocks", 0, type=int), request.args.get("backoff_ms", 20, type=int)
    pool.submit(_append, entry_id, waiter, deadlocks, backoff_ms).result()
    log.info("ledger entry %s posted", entry_id)
    return jsonify(entry_id=entry_id, posted=True)


otel_corr.instrument(app)
