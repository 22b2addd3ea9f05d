"""structlog JSON lines, and the processors that keep secrets and identity numbers out.

The standard library's loggers (faust, aiokafka, aiohttp) are routed through the
same renderer so that every line a service writes is one JSON object.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from services.runtime.identity_numbers import mask_identity_numbers

__all__ = ["configure_logging", "drop_secrets", "redact_identity_numbers"]

_SECRET_KEYS = re.compile(r"secret|token|password|signature|authorization", re.IGNORECASE)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_identity_numbers(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def redact_identity_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask anything shaped like a Swedish identity number in every value."""
    return {k: _mask(v) for k, v in event_dict.items()}


def drop_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of any key that names a secret."""
    return {
        k: ("[redacted]" if _SECRET_KEYS.search(k) and v is not None else v)
        for k, v in event_dict.items()
    }


def _renderer(console: bool) -> Any:
    if console:
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def configure_logging(service: str, level: str = "info", console: bool | None = None) -> None:
    """One JSON object per line on stderr, for structlog and stdlib loggers alike.

    On a terminal (*console* None: whether stderr is one) the lines are for
    people to read instead: time, level, event and the fields, one line each.
    """
    if console is None:
        console = sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # An exception is formatted first, so that its text (a value in a traceback,
    # a message quoting input) is redacted like every other value.
    redacting: list[Any] = [
        structlog.processors.format_exc_info,
        drop_secrets,
        redact_identity_numbers,
    ]
    structlog.configure(
        processors=[*shared, *redacting, _renderer(console)],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *redacting,
                _renderer(console),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level.lower() == "info" else level.upper())
