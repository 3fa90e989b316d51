"""The kinds of value an option takes: how its text is read, the range of a number, and
what a TOML file must give for it.

Each parser reads one option's text as the command line, a ``SCGIKIT_*`` variable or
a configuration file gives it, and raises ``ValueError`` with what is wrong; the
caller (``options``) names the option and where the text came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .arguments import decimal

__all__ = ["BOOLEAN", "KINDS", "MAX_SECONDS", "MAX_SIZE", "STRING", "Kind", "count",
           "env_pair", "limits_of", "lower", "octal", "seconds", "size", "switch"]

#: The longest duration an option takes, in seconds: a year.
MAX_SECONDS = 365 * 24 * 3600
#: The largest size an option takes: 1 TiB.
MAX_SIZE = 1 << 40


def octal(text: str) -> int:
    digits = text.removeprefix("0o")
    if not (digits and len(digits) <= 4 and all(ch in "01234567" for ch in digits)):
        raise ValueError(f"{text!r} is not an octal file mode such as 0660")
    return int(digits, 8)


def size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    lowered = text.strip().lower().removesuffix("b").removesuffix("i")
    scale = units.get(lowered[-1:], 1)
    number = lowered[:-1] if lowered[-1:] in units else lowered
    if not (number.isascii() and number.isdigit()) or len(number) > 20:
        raise ValueError(f"{text!r} is not a size such as 65536, 64k or 10m")
    return int(number) * scale


def seconds(text: str) -> float:
    value = decimal(text)
    if value is None:
        raise ValueError(f"{text!r} is not a number of seconds such as 30 or 0.5")
    return value


def count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 20:
        raise ValueError(f"{text!r} is not a whole number")
    return int(text)


def limits_of(parse: Callable[[str], Any], given: tuple[float, float] | None,
            ) -> tuple[float, float] | None:
    """The range a number takes: as given, else by its kind (durations, sizes, modes)."""
    if given is not None:
        return given
    by_kind: dict[Callable[[str], Any], tuple[float, float]] = {
        seconds: (0, MAX_SECONDS), size: (0, MAX_SIZE), octal: (0, 0o777)}
    return by_kind.get(parse)


def lower(text: str) -> str:
    return text.lower()


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"expected KEY=VALUE, not {text!r}")
    return name, value


def switch(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"{text!r}: expected 1 or 0")




@dataclass(frozen=True)
class Kind:
    """What a configuration file gives for an option, by the option's parser."""

    one: str  # "an integer": for error messages
    many: str  # "integers": for arrays of them
    types: tuple[type, ...]

    def accepts(self, value: object) -> bool:
        # A TOML boolean is a Python int too: true is not a count of workers.
        return not isinstance(value, bool) and isinstance(value, self.types)


STRING = Kind("a string", "strings", (str,))


class _Boolean(Kind):
    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


BOOLEAN = _Boolean("true or false", "booleans", (bool,))
KINDS: dict[Callable[[str], Any], Kind] = {
    count: Kind("an integer", "integers", (int,)),
    seconds: Kind("a number of seconds", "numbers of seconds", (int, float)),
    size: Kind('an integer or a string such as "64k"', 'integers or strings such as "64k"',
                 (int, str)),
    # A TOML integer 660 would be the decimal 660: modes are written as strings.
    octal: Kind('a string of octal digits such as "0660"', "strings of octal digits", (str,)),
    env_pair: Kind('a string "KEY=VALUE"', 'strings "KEY=VALUE"', (str,)),
}
