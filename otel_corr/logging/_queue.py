"""The queue handler of :func:`configure_logging`: records cross to a listener thread whole."""

from __future__ import annotations

import copy
import logging
import logging.handlers
import queue

from ._formatters import ESCAPED_EXC_TEXT, escape_exception_messages

__all__ = ["start_queue"]


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the listener thread without flattening their exception away.

    The standard ``prepare()`` merges the traceback into the message; a JSON
    formatter downstream then has no ``exception`` to show.  The traceback text
    goes across raw (JSON keeps it exactly) and, when an exception message needs
    it, escaped for the text formatter as well.  The IDs were stamped
    when the record was created, so they survive the hop to the other thread.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            record.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            # exc_text stays raw for JsonFormatter (lossless); TextFormatter needs the exception
            # object to find its messages and escape them, and that object is about to go.
            escaped = escape_exception_messages(record.exc_text, record.exc_info[1])
            if escaped != record.exc_text:
                setattr(record, ESCAPED_EXC_TEXT, escaped)
            record.exc_info = None
        return record


def start_queue(
    records: queue.SimpleQueue[logging.LogRecord], handler: logging.Handler
) -> tuple[logging.Handler, logging.handlers.QueueListener]:
    """The handler to put in front (it enqueues) and the started listener that feeds ``handler``."""
    listener = logging.handlers.QueueListener(records, handler, respect_handler_level=True)
    listener.start()
    return _QueueHandler(records), listener
