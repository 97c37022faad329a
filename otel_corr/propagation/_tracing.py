"""The tracer our propagation spans (client, background) use: the instrumented app's provider."""

from __future__ import annotations

from opentelemetry import trace

from .._version import __version__

__all__ = ["set_provider", "tracer"]

_provider: trace.TracerProvider | None = None
_cache: dict[str, tuple[object, trace.Tracer]] = {}


def set_provider(provider: trace.TracerProvider | None) -> None:
    """Use ``provider`` (the one ``instrument()`` resolved) for our spans; ``None``: the global one."""
    global _provider
    _provider = provider


def tracer(name: str) -> trace.Tracer:
    provider = _provider or trace.get_tracer_provider()
    cached = _cache.get(name)
    if cached is not None and cached[0] is provider:
        return cached[1]
    t = provider.get_tracer(name, __version__)
    _cache[name] = (provider, t)
    return t
