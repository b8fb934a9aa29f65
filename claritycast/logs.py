"""One line per event, human or JSON, with secrets masked before rendering.

structlog renders both our own events and the standard-library records of
Faust, mode and aiokafka, so every line goes through the same redaction
processor: a token that slips into a library's message is masked too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from claritycast.redact import redact_mapping

LogFormat = Literal["human", "json"]

# Libraries that are chatty at INFO; their warnings still come through.
_QUIET_LIBRARIES = (
    "aiokafka", "kafka", "faust", "mode", "pymongo", "httpx", "httpcore", "slack_sdk", "mail.log",
)  # fmt: skip


def redact_processor(
    _logger: WrappedLogger, _method: str, event_dict: MutableMapping[str, Any]
) -> EventDict:
    """structlog processor: mask secrets in every value, tracebacks included."""
    return redact_mapping(event_dict)


def _processors(fmt: LogFormat) -> tuple[list[Processor], Processor]:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback, pad_event_to=28
        )
    return shared, renderer


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "human", stream: IO[str] | None = None
) -> None:
    """Route structlog and the standard library through one redacting handler."""
    shared, renderer = _processors(fmt)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_processor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    library_level = max(logging.getLevelName(level), logging.WARNING)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,  # redaction runs once, in the formatter, for every record
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``context`` (project, group, topic, …)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**context) if context else logger
