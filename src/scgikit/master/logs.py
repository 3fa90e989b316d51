"""The server's logs, set up once in the master before the fork.

The error log goes to stderr, as text or one JSON object per line
(``--log-format``); the access log (``accesslog.py``) goes where
``--access-log`` says, in ``--access-log-format``.
"""

from __future__ import annotations

import json
import logging
import sys

from ..accesslog import AccessFormatter, iso8601
from ..config import Config

__all__ = ["JsonFormatter", "restyle_logging", "setup_logging"]

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
TEXT_TIME = "%Y-%m-%d %H:%M:%S %z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: a traceback is a string inside it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": iso8601(record.created, "milliseconds"), "level": record.levelname,
            "pid": record.process, "logger": record.name, "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry)


def setup_logging(config: Config) -> None:
    """Errors and events to stderr at --log-level in --log-format; the access log where
    --access-log says, in --access-log-format.  An unwritable access log raises OSError."""
    logger = logging.getLogger("scgikit")
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    access = logging.getLogger("scgikit.access")
    access.handlers[:] = []
    access.propagate = False
    if config.access_log:
        access.addHandler(logging.StreamHandler(sys.stderr) if config.access_log == "-"
                          else logging.FileHandler(config.access_log))
        access.setLevel(logging.INFO)
    restyle_logging(config)


def restyle_logging(config: Config) -> None:
    """--log-level, --log-format and --access-log-format on the handlers already open (a
    HUP that re-read the --config file: the workers it forks next log so)."""
    logger = logging.getLogger("scgikit")
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter() if config.log_format == "json"
                             else logging.Formatter(TEXT_FORMAT, TEXT_TIME))
    logger.setLevel(config.log_level.upper())
    for handler in logging.getLogger("scgikit.access").handlers:
        handler.setFormatter(AccessFormatter(config.access_log_format))
