"""``instrument_logging()`` and ``configure_logging()``: one call instead of a page of dictConfig."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from .. import _settings
from ..exceptions import ConfigError
from . import _access, _otlp, _stamp
from ._formatters import JsonFormatter, TextFormatter

if TYPE_CHECKING:
    import logging.handlers

# logging.handlers (with pickle and queue) is imported only where a file or queue handler is
# made: an app that logs to stderr without the queue does not pay for it (about 0.6 MB of RSS).

__all__ = ["configure_logging", "instrument_logging", "stop_queue"]

# Loggers that servers and workers configure with handlers of their own; we route them to the
# root handlers so that every line has one format.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error", "hypercorn.error", "celery")
_SERVER_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access", "hypercorn.access")
_OURS = "_otel_corr_handler"
# Servers that give their logger a handler of its own only when they start serving, after the
# app module (and configure_logging in it) ran: hypercorn's Config.log, made on first use.
_LATE_SERVER_LOGGERS = ("hypercorn.error",)
_listener: logging.handlers.QueueListener | None = None
_last_call: dict[str, Any] | None = None


def configured() -> bool:
    """Whether :func:`configure_logging` has been called in this process."""
    return _last_call is not None


def reapply() -> None:
    """Put back what the last :func:`configure_logging` installed (a Celery worker replaces it at start)."""
    if _last_call is not None:
        configure_logging(**_last_call)


def instrument_logging(service_name: str | None = None) -> None:
    """Stamp every LogRecord in the process with ``trace_id``, ``span_id``, ``request_id``, ``service_name``.

    Called by :func:`otel_corr.instrument`; call it yourself in a process with no
    web app (a worker, a script).  Idempotent.  With ``OTEL_LOGS_EXPORTER=otlp``
    it also sends records to the collector, tied to their spans.

    Args:
        service_name: the ``service_name`` field (default: the tracer
            provider's ``service.name``, else ``OTEL_SERVICE_NAME``).

    .. versionadded:: 0.1
    """
    from opentelemetry import trace

    resource = getattr(trace.get_tracer_provider(), "resource", None)
    name = service_name or (resource.attributes.get("service.name") if resource is not None else None)
    if isinstance(name, str) and name:
        _stamp.set_service_name(name)
    _stamp.install()
    if _otlp.enabled_by_env():
        from opentelemetry.sdk.resources import Resource

        _otlp.install(resource if resource is not None else Resource.create())


def _env(name: str, value: Any, default: Any) -> Any:
    if value is not None:
        return value
    raw = _settings.env_text(name)
    return raw if raw is not None else default


def _log_path(path: str, per_process: bool) -> Path:
    target = Path(path)
    if per_process:
        target = target.with_name(f"{target.stem}-{os.getpid()}{target.suffix or '.log'}")
    return target


def _check_file(path: str, per_process: bool, setting: str) -> None:
    """Fail now, naming ``setting``, on a log file that every write would fail on.

    The handler opens its file lazily (``delay=True``), so without this a directory
    or an unwritable path would be accepted at start-up and then lose every line.
    """
    # A directory given as the file: with per_process it would even "work", writing
    # next to it as dir-<pid>.log, which is not what anyone asked for.
    if path.endswith(("/", os.sep)) or Path(path).is_dir():
        raise ConfigError(setting, path, "a writable file path (this is a directory)")
    try:
        target = _log_path(path, per_process)
        created = not target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)  # as the handler itself does
        with open(target, "a", encoding="utf-8"):
            pass
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path, or a name like ".."
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(setting, path, f"a writable file path ({reason})") from None
    if created and per_process:
        # Keep delay=True's promise that a process which logs nothing leaves no file (a gunicorn
        # --preload master).  Only the per-process file is ours alone: a shared file may have
        # been opened by another worker in the meantime, so it stays.
        target.unlink(missing_ok=True)


def _file_handler(path: str, retention_days: int, per_process: bool) -> logging.Handler:
    target = _log_path(path, per_process)
    target.parent.mkdir(parents=True, exist_ok=True)
    from logging.handlers import TimedRotatingFileHandler

    handler = TimedRotatingFileHandler(
        target, when="midnight", backupCount=retention_days, encoding="utf-8", delay=True
    )
    handler._otel_corr_file = (path, retention_days, per_process)  # type: ignore[attr-defined]
    return handler


def _reopen_files_after_fork() -> None:
    """A forked worker (gunicorn --preload) gets files of its own, named after its pid."""
    for handler in logging.getLogger().handlers + ([*(_listener.handlers)] if _listener else []):
        spec = getattr(handler, "_otel_corr_file", None)
        if spec is None or not spec[2]:
            continue
        from logging.handlers import TimedRotatingFileHandler

        if not isinstance(handler, TimedRotatingFileHandler):
            continue
        fresh = _file_handler(*spec)
        assert isinstance(fresh, TimedRotatingFileHandler)
        handler.close()
        handler.baseFilename = fresh.baseFilename
        handler.rolloverAt = fresh.rolloverAt


class _KeepRouted(logging.Filter):
    """Take a handler a server added late off its logger again, so its lines keep the one format.

    Without it every hypercorn line (its errors too) is written twice: in hypercorn's own
    format by its handler, and in ours by the root handler it propagates to.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        logger = self.logger
        # Called before Logger.callHandlers walks them: this record goes to root only.  Only the
        # server's default console handler goes; a file it was told to write (``--error-logfile``),
        # or a logger set not to propagate (a log config of the user's), keeps its handlers.
        if logger.handlers and logger.propagate:
            logger.handlers[:] = [h for h in logger.handlers if not _console_default(h)]
        return True


def _console_default(handler: logging.Handler) -> bool:
    """Whether ``handler`` is a plain ``StreamHandler`` on standard error (hypercorn's default)."""
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)


_keep_routed: list[tuple[logging.Logger, _KeepRouted]] = []


_BY = "logging._setup (configure_logging)"
_fork_hook = False  # registered (CPython cannot unregister one)
_fork_hook_on = False  # and doing something


def _after_fork_in_child() -> None:
    if _fork_hook_on:
        _reopen_files_after_fork()


def stop_queue() -> None:
    """Stop the queue listener (flushing what it holds); called at lifespan shutdown and exit."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


def _install_process_hooks() -> None:
    """The at-fork and at-exit hooks, and a record of the logging set-up to put back; once per set-up."""
    global _fork_hook, _fork_hook_on
    from .. import _patches

    if not _patches.active("at-fork hook"):
        if not _fork_hook:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook = True
        _fork_hook_on = True

        def inert() -> None:
            global _fork_hook_on
            _fork_hook_on = False

        _patches.record(
            "at-fork hook",
            "os.register_at_fork(after_in_child)",
            "a forked worker reopens its per-process log file (made inert when undone)",
            _BY,
            inert,
        )
    if not _patches.active("at-exit hook"):
        atexit.register(stop_queue)
        _patches.record(
            "at-exit hook",
            "atexit",
            "stops the log queue, writing what it holds",
            _BY,
            lambda: atexit.unregister(stop_queue),
        )
    if not _patches.active("logging configuration"):
        root = logging.getLogger()
        level = root.level
        servers = {
            name: (list(lg.handlers), lg.propagate, lg.disabled)
            for name in _SERVER_LOGGERS + _SERVER_ACCESS_LOGGERS
            for lg in (logging.getLogger(name),)
        }

        def restore() -> None:
            global _last_call
            stop_queue()
            for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
                root.removeHandler(old)
                old.close()
            root.setLevel(level)
            for name, (handlers, propagate, disabled) in servers.items():
                lg = logging.getLogger(name)
                lg.handlers[:] = handlers
                lg.propagate, lg.disabled = propagate, disabled
            for lg, keep in _keep_routed:
                lg.removeFilter(keep)
            _keep_routed.clear()
            _last_call = None

        _patches.record(
            "logging configuration",
            "the root logger (handler, level) and the server loggers (" + ", ".join(_SERVER_LOGGERS) + "...,"
            " a filter on " + ", ".join(_LATE_SERVER_LOGGERS) + ")",
            "one handler and format for every logger; server access lines off",
            _BY,
            restore,
        )


def configure_logging(
    fmt: Literal["text", "json"] | None = None,
    level: str | int | None = None,
    *,
    stream: IO[str] | None = None,
    file: str | None = None,
    retention_days: int | None = None,
    per_process: bool = True,
    queue_handler: bool | None = None,
    access_log: bool | None = None,
    silence_server_access_logs: bool = True,
    static_fields: dict[str, object] | None = None,
) -> None:
    """Set up logging for an app that has none: one format for every logger, IDs on every line.

    Every argument left out falls back to its ``OTEL_CORR_*`` variable, then to
    the default.  Calling it again replaces what the previous call installed.

    Args:
        fmt: ``"text"`` or ``"json"`` (``OTEL_CORR_LOG_FORMAT``, default text).
        level: the root level (``OTEL_CORR_LOG_LEVEL``, default ``INFO``).
        stream: where lines go (default ``sys.stderr``); ignored when ``file`` is set.
        file: write to this file instead, rotated daily (``OTEL_CORR_LOG_FILE``).
        retention_days: rotated files kept (``OTEL_CORR_LOG_RETENTION_DAYS``, default 7).
        per_process: name the file after the process (``app-<pid>.log``) so that
            workers never interleave writes (default true).
        queue_handler: write through a ``QueueHandler``/``QueueListener`` thread so
            the event loop never blocks on I/O (``OTEL_CORR_LOG_QUEUE``, default false).
        access_log: one access line per request, inside its context
            (``OTEL_CORR_ACCESS_LOG``, default true).
        silence_server_access_logs: turn off uvicorn's/gunicorn's/hypercorn's own
            access lines, which duplicate ours without the IDs (default true).
        static_fields: extra fields on every JSON line.

    Raises:
        ConfigError: an argument or variable has a bad value.

    .. versionadded:: 0.1
    """
    global _listener, _last_call
    _last_call = {
        "fmt": fmt,
        "level": level,
        "stream": stream,
        "file": file,
        "retention_days": retention_days,
        "per_process": per_process,
        "queue_handler": queue_handler,
        "access_log": access_log,
        "silence_server_access_logs": silence_server_access_logs,
        "static_fields": static_fields,
    }
    fmt_value = str(_env("OTEL_CORR_LOG_FORMAT", fmt, "text")).lower()
    if fmt_value not in ("text", "json"):
        raise ConfigError("fmt" if fmt is not None else "OTEL_CORR_LOG_FORMAT", fmt_value, "text or json")
    level_value = _env("OTEL_CORR_LOG_LEVEL", level, "INFO")
    if isinstance(level_value, str):
        level_value = level_value.upper()
        if not isinstance(logging.getLevelName(level_value), int):
            raise ConfigError(
                "level" if level is not None else "OTEL_CORR_LOG_LEVEL",
                level_value,
                "DEBUG, INFO, WARNING, ERROR or CRITICAL",
            )
    file_value = _env("OTEL_CORR_LOG_FILE", file, None)
    days = _env("OTEL_CORR_LOG_RETENTION_DAYS", retention_days, 7)
    try:
        days = int(days)
        if days < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            "retention_days" if retention_days is not None else "OTEL_CORR_LOG_RETENTION_DAYS",
            days,
            "a whole number of days, 0 or more",
        ) from None
    use_queue = _bool_env("OTEL_CORR_LOG_QUEUE", queue_handler, "queue_handler", False)
    access = _bool_env("OTEL_CORR_ACCESS_LOG", access_log, "access_log", True)
    if file_value:  # last: it creates the directory, which a setting rejected above should not leave behind
        _check_file(str(file_value), per_process, "file" if file is not None else "OTEL_CORR_LOG_FILE")

    instrument_logging()
    _install_process_hooks()
    formatter: logging.Formatter = (
        JsonFormatter(static_fields=static_fields) if fmt_value == "json" else TextFormatter()
    )
    handler: logging.Handler = (
        _file_handler(file_value, days, per_process) if file_value else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(formatter)

    root = logging.getLogger()
    stop_queue()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()  # a StreamHandler leaves its stream open; a file handler closes its file
    front: logging.Handler = handler
    if use_queue:
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        from ._queue import start_queue

        front, _listener = start_queue(q, handler)
    setattr(front, _OURS, True)
    root.addHandler(front)
    root.setLevel(level_value)

    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    for name in _SERVER_ACCESS_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = not silence_server_access_logs
        server_logger.disabled = silence_server_access_logs
    if not _keep_routed:
        for name in _LATE_SERVER_LOGGERS:
            server_logger = logging.getLogger(name)
            keep = _KeepRouted(server_logger)
            server_logger.addFilter(keep)
            _keep_routed.append((server_logger, keep))
    _access.set_access_log(access)


def _bool_env(var: str, value: bool | None, arg: str, default: bool) -> bool:
    return _settings.flag(var, default, arg=arg, value=_settings.UNSET if value is None else value)
