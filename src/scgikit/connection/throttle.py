"""Log lines that an attacker or a broken machine could repeat thousands of times a second.

``LogThrottle`` logs the first occurrence at once, then at most one line per
interval, with the count of those it held back: a descriptor shortage or a
flood of refused connections costs a line a minute, not 45 MB of log.
"""

from __future__ import annotations

import logging
import time


class LogThrottle:
    """At most one log line per ``interval`` seconds, each saying how many were held back."""

    def __init__(self, logger: logging.Logger, level: int, interval: float = 60.0) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self.next_at = 0.0
        self.held = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self.next_at:
            self.held += 1
            return
        if self.held:
            message += " (%d more like this in the last %ds)"
            args = (*args, self.held, round(self.interval))
        self.logger.log(self.level, message, *args)
        self.held = 0
        self.next_at = now + self.interval
