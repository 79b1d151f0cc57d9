"""structlog JSON lines on stdout, with personal data masked before rendering.

Context (service, park_id, event_id, trace_id, …) is bound per worker in
contextvars, which greenlets keep separate, so concurrent workers never mix.
"""
import logging
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

# Keys whose values are personal data or requester free text: never logged.
PII_KEYS = frozenset({
    "name", "requester_name", "contact_name", "phone", "mobile", "tel", "email",
    "id_number", "id_card", "address", "description", "text", "body", "content",
    "title", "note", "comment", "requester",
})
_PHONE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
_ID_NUMBER = re.compile(r"(?<![\dA-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![\dA-Za-z])")
MASK = "***"


def mask_string(value: str) -> str:
    """Mask mainland mobile numbers and resident ID numbers inside any text."""
    value = _ID_NUMBER.sub(r"\1********\2", value)
    return _PHONE.sub(r"\1****\2", value)


def mask_value(key: str, value: Any) -> Any:
    if key in PII_KEYS and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_string(value)
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    return value


def mask_pii(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        if key == "event":
            event_dict[key] = mask_string(value) if isinstance(value, str) else value
        else:
            event_dict[key] = mask_value(key, value)
    return event_dict


_configured = False


def configure(service: str, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging (nameko, kombu) through the
    same JSON renderer. Idempotent."""
    global _configured

    def add_service(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        # a constant, not a contextvar: every greenlet starts with an empty context
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Processor] = [
        add_service,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Processor] = [
        mask_pii,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(ensure_ascii=False),
    ]
    structlog.configure(
        processors=shared + [structlog.processors.StackInfoRenderer()] + renderer,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    if not _configured:
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared + [structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta] + renderer,
        ))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
        _configured = True


def get_logger(**bound: Any) -> Any:
    """A lazy logger: it takes the configuration in force when it logs, so a
    module-level logger made before configure() still writes JSON."""
    return structlog.get_logger(**bound)
