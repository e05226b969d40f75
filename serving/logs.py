"""The search service's logs: one JSON object per line (python-json-logger) or plain text, each record carrying
the id of the request it belongs to (`request_id`, also returned in the X-Request-ID header), and an access log
(logger `lensflow.access`: method, path, route, status, duration, model version) that replaces uvicorn's."""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from typing import Literal

request_id: ContextVar[str | None] = ContextVar("lensflow_request_id", default=None)
access = logging.getLogger("lensflow.access")
TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"


def json_formatter(*args, **kwargs) -> logging.Formatter:
    """python-json-logger's formatter, with tracebacks formatted redacted (lensflow.core.redact), as the text
    formatter gets them from the redacting record factory."""
    from pythonjsonlogger.json import JsonFormatter

    from lensflow.core.redact import format_exception

    class Redacting(JsonFormatter):
        def formatException(self, ei) -> str:  # noqa: N802 (logging's name)
            return format_exception(ei[1]) if ei and ei[1] is not None else super().formatException(ei)

    return Redacting(*args, **kwargs)


class RequestId(logging.Filter):
    """Adds `request_id` (the current request's, or "-" outside one) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


def config(fmt: Literal["json", "text"], level: str = "INFO") -> dict:
    """A logging dictConfig for the service and uvicorn (handed to uvicorn.run, so its loggers format alike)."""
    formatter = (
        {"()": json_formatter, "fmt": JSON_FIELDS, "rename_fields": {"levelname": "level"}}
        if fmt == "json"
        else {"format": TEXT}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestId}},
        "formatters": {"main": formatter},
        "handlers": {"stderr": handler},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own access log is replaced by lensflow.access (it has the request id and the route)
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # library noise stays quiet by logger
            "httpx": {"level": "WARNING"},
            "mlflow": {"level": "WARNING"},
            "alembic": {"level": "WARNING"},
        },
    }


def configure(fmt: Literal["json", "text"], level: str = "INFO") -> dict:
    """Apply config(fmt) to this process and return it."""
    cfg = config(fmt, level)
    logging.config.dictConfig(cfg)
    return cfg
