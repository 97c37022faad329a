"""The IDs cross every boundary: tasks, threads, background work, subprocesses, outbound HTTP.

:func:`otel_corr.instrument` calls :func:`install`, so nothing in the
application changes.  Each link can be left out with the ``propagate``
argument or ``OTEL_CORR_PROPAGATE`` (a comma-separated list of links, ``all``
or ``none``).  See ``docs/propagation.md``.
"""

from __future__ import annotations

from collections.abc import Collection

from opentelemetry.trace import TracerProvider

from ..exceptions import ConfigError
from ._process import adopt_environment, attach_carrier, environment
from ._propagator import RequestIdPropagator
from ._threads import carry

__all__ = [
    "LINKS",
    "parse_links",
    "RequestIdPropagator",
    "adopt_environment",
    "attach_carrier",
    "carry",
    "environment",
    "install",
    "uninstall",
]

#: Every link :func:`install` can hold.
LINKS = frozenset({"background", "threads", "subprocess", "httpx", "requests", "aiohttp", "celery"})


def parse_links(value: bool | str | Collection[str], name: str) -> frozenset[str]:
    """Normalise the ``propagate`` setting; raise ConfigError naming ``name`` on an unknown link."""
    if value is True:
        return LINKS
    if value is False:
        return frozenset()
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if items in (["all"], []):
        return LINKS if items else frozenset()
    if items == ["none"]:
        return frozenset()
    unknown = sorted(set(items) - LINKS)
    if unknown:
        raise ConfigError(name, ",".join(items), "all, none, or a comma-separated list of " + ", ".join(sorted(LINKS)))
    return frozenset(items)


def install(links: Collection[str], header: str, provider: TracerProvider | None = None) -> None:
    """Hold the given links (idempotent per link); our spans go to ``provider``."""
    from . import _background, _http_clients, _process, _threads, _tracing
    from ._propagator import install_global

    _tracing.set_provider(provider)
    install_global(header)
    if "threads" in links:
        _threads.install()
    if "subprocess" in links:
        _process.install()
    if "background" in links:
        _background.install()
    _http_clients.install({"httpx", "requests", "aiohttp"} & set(links))


def uninstall() -> None:
    """Undo every process-wide hook :func:`install` added (tests use this)."""
    from .. import _patches

    _patches.undo_where("propagation.")
