"""Logging set-up: one format, PII kept out unless CALLTAG_LOG_PII=1."""
from __future__ import annotations

import logging
from typing import Any

from integrations.base import scrub


class PiiFilter(logging.Filter):
    """Masks phone numbers in every log line unless PII logging is allowed."""

    def __init__(self, allow: bool):
        super().__init__()
        self.allow = allow

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.allow:
            msg = record.getMessage()
            clean = scrub(msg)
            if clean != msg:
                record.msg, record.args = clean, ()
        return True


def setup_logging(settings: dict[str, Any]) -> None:
    """Configure the 'calltag' logger once per process."""
    logger = logging.getLogger("calltag")
    level = getattr(logging, str(settings.get("LOG_LEVEL", "INFO")).upper(), logging.INFO)
    logger.setLevel(level)
    for flt in list(logger.filters):
        if isinstance(flt, PiiFilter):
            logger.removeFilter(flt)
    logger.addFilter(PiiFilter(bool(settings.get("LOG_PII"))))
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler.addFilter(PiiFilter(bool(settings.get("LOG_PII"))))
        logger.addHandler(handler)
