"""Front-end configuration files read into directives, for ``scgikit check --front-end``.

Which front end a file configures is told by its content (``kind_of``): lighttpd's
``scgi.server``, Apache's ``ProxyPass``/``ProxyPassMatch``/``BalancerMember`` to an
``scgi://`` URL or ``SCGIMount``, nginx's ``scgi_pass``.

nginx is read by crossplane (an optional dependency: ``pip install 'scgikit[frontend]'``),
imported only here and only when an nginx file is read.  Apache and lighttpd have no such
parser in Python: ``read_apache`` and ``read_lighttpd`` are small readers of their grammar,
enough for the directives the checks look at.  Each returns the file as a tree of
``Directive``: a block (an nginx ``location``, an Apache ``<VirtualHost>``, a lighttpd
condition) holds its own directives.  Included files are not followed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Directive", "ReadError", "LighttpdArray", "kind_of", "read_apache",
           "read_lighttpd", "read_nginx", "walk"]

INSTALL_CROSSPLANE = ("reading an nginx configuration needs crossplane: "
                      "pip install 'scgikit[frontend]' (or pip install crossplane)")


class ReadError(ValueError):
    """A configuration file that cannot be read as its front end would read it (at
    ``line``, when one is to blame)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Directive:
    """One directive (``name`` and its ``args``) at ``line``; ``block`` holds the directives
    of a block.  A lighttpd assignment keeps its value, parsed, in ``value``."""

    name: str
    args: tuple[str, ...]
    line: int
    block: tuple[Directive, ...] | None = None
    value: Any = None


def walk(directives: tuple[Directive, ...], chain: tuple[Directive, ...] = ()
         ) -> Iterator[tuple[Directive, tuple[Directive, ...]]]:
    """Each directive with the blocks around it, outermost first: the file's top level (a
    ``Directive`` named "" holding ``directives``) first of all."""
    chain = chain or (Directive("", (), 0, directives),)
    for d in directives:
        yield d, chain
        if d.block is not None:
            yield from walk(d.block, (*chain, d))


@dataclass(frozen=True)
class LighttpdArray:
    """A lighttpd array ``( ... )`` opened at ``line``: its items as (key or None, value)."""

    line: int
    items: tuple[tuple[str | None, Any], ...]

    def get(self, key: str) -> Any:
        return next((value for name, value in self.items if name == key), None)


# --- which front end -------------------------------------------------------------------

_UNCOMMENTED = re.compile(r"^[ \t]*([^#\n]*)", re.MULTILINE)
_SIGNS = {
    "lighttpd": re.compile(r"^\s*scgi\.server\s*\+?=", re.MULTILINE),
    "apache": re.compile(r"^\s*(?:(?:ProxyPass(?:Match)?|BalancerMember)\s[^\n]*scgi://"
                         r"|SCGIMount\s)", re.MULTILINE | re.IGNORECASE),
    "nginx": re.compile(r"(?:^|[;{}]\s*)scgi_pass\s", re.MULTILINE),
}


def kind_of(text: str) -> list[str]:
    """The front ends ``text`` looks like the configuration of (comments left out): one, or
    none, or several when it is not clear."""
    code = "\n".join(match.group(1) for match in _UNCOMMENTED.finditer(text))
    return [kind for kind, sign in _SIGNS.items() if sign.search(code)]


# --- nginx, by crossplane --------------------------------------------------------------

def read_nginx(path: str) -> tuple[Directive, ...]:
    """The nginx configuration at ``path``, as crossplane reads it; ReadError if it cannot
    (nor without crossplane, saying how to install it)."""
    try:
        import crossplane  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ReadError(INSTALL_CROSSPLANE) from None
    # single: includes are not followed; check_ctx off: a snippet (server, upstream) may
    # stand at the top, as in a file of conf.d/ included from the http block.
    payload = crossplane.parse(path, single=True, check_ctx=False, comments=False)
    for config in payload["config"]:
        for error in config["errors"]:
            line = error.get("line")
            message = str(error["error"]).removesuffix(f" in {path}:{line}")
            raise ReadError(f"not valid nginx: {message}", line)
    return _nginx_tree(payload["config"][0]["parsed"])


def _nginx_tree(parsed: list[dict[str, Any]]) -> tuple[Directive, ...]:
    return tuple(Directive(item["directive"], tuple(item["args"]), item["line"],
                           _nginx_tree(item["block"]) if "block" in item else None)
                 for item in parsed)


# --- Apache ------------------------------------------------------------------------------

_APACHE_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


def read_apache(text: str) -> tuple[Directive, ...]:
    """Apache's configuration ``text``: one directive a line (a line ending in ``\\`` goes
    on), ``#`` comments on their own lines, ``<Section args>`` blocks to ``</Section>``."""
    root: list[Directive] = []
    stack: list[tuple[str, tuple[str, ...], int, list[Directive]]] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start, line = number + 1, lines[number]
        number += 1
        while line.endswith("\\") and number < len(lines):
            line = line[:-1] + " " + lines[number].strip()
            number += 1
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("</"):
            name = line[2:].rstrip(">").strip()
            if not stack or stack[-1][0].lower() != name.lower():
                raise ReadError(f"</{name}> closes no <{name}> section", start)
            section, args, opened, children = stack.pop()
            done = Directive(section, args, opened, tuple(children))
            (stack[-1][3] if stack else root).append(done)
            continue
        if line.startswith("<"):
            if not line.endswith(">"):
                raise ReadError("a section's '<' has no '>'", start)
            words = _apache_words(line[1:-1])
            stack.append((words[0], tuple(words[1:]), start, []))
            continue
        words = _apache_words(line)
        (stack[-1][3] if stack else root).append(Directive(words[0], tuple(words[1:]), start))
    if stack:
        raise ReadError(f"<{stack[-1][0]}> is never closed", stack[-1][2])
    return tuple(root)


def _apache_words(line: str) -> list[str]:
    return [m.group(2) if m.group(2) is not None else m.group(1).replace('\\"', '"')
            for m in _APACHE_WORD.finditer(line)]


# --- lighttpd ----------------------------------------------------------------------------

_LIGHTTPD_TOKEN = re.compile(r"""
    (?P<space>[ \t\r]+|\#[^\n]*) | (?P<newline>\n)
  | "(?P<string>(?:[^"\\]|\\.)*)"
  | (?P<number>[0-9]+(?![A-Za-z0-9_.-]))
  | (?P<op>=>|\+=|:=|==|!=|=~|!~|[=(){}\[\],+$])
  | (?P<name>[A-Za-z_][A-Za-z0-9_.-]*)
""", re.VERBOSE)


def read_lighttpd(text: str) -> tuple[Directive, ...]:
    """lighttpd's configuration ``text``: assignments (``name = value``, ``+=``, ``:=``), their
    values (strings, numbers, arrays, ``+``) parsed into ``Directive.value``, and conditions
    (``$HTTP["host"] == "..." { ... }``, ``else``) as blocks named by their condition."""
    tokens = _lighttpd_tokens(text)
    reader = _LighttpdReader(tokens)
    directives = reader.statements(closing=None)
    return tuple(directives)


def _lighttpd_tokens(text: str) -> list[tuple[str, str, int]]:
    tokens, line, at = [], 1, 0
    while at < len(text):
        match = _LIGHTTPD_TOKEN.match(text, at)
        if match is None:
            raise ReadError(f"cannot read {text[at:at + 20]!r}", line)
        kind = match.lastgroup
        assert kind is not None
        if kind == "newline":
            line += 1
        elif kind != "space":
            tokens.append((kind, match.group(kind), line))
        at = match.end()
    return tokens


class _LighttpdReader:
    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> tuple[str, str, int]:
        if self.at >= len(self.tokens):
            line = self.tokens[-1][2] if self.tokens else 1
            return ("end", "", line)
        return self.tokens[self.at]

    def take(self, text: str | None = None) -> tuple[str, str, int]:
        token = self.peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise ReadError(f"expected {text or 'more'}, found {token[1] or 'the end'!r}",
                            token[2])
        self.at += 1
        return token

    def statements(self, closing: str | None) -> list[Directive]:
        found: list[Directive] = []
        while True:
            kind, text, line = self.peek()
            if kind == "end":
                if closing is not None:
                    raise ReadError("a '{' is never closed", line)
                return found
            if text == closing and kind == "op":
                self.take()
                return found
            if text in ("$", "else"):
                found.append(self.condition())
            elif kind == "name" and text in ("include", "include_shell"):
                self.take()
                found.append(Directive(text, (), line, value=self.value()))
            elif kind == "name":
                self.take()
                operator = self.take()[1]
                if operator not in ("=", "+=", ":="):
                    raise ReadError(f"{text} {operator}: expected =, += or :=", line)
                found.append(Directive(text, (operator,), line, value=self.value()))
            else:
                raise ReadError(f"unexpected {text!r}", line)

    def condition(self) -> Directive:
        words, line = [], self.peek()[2]
        while self.peek()[1] != "{":
            words.append(self.take()[1])
        self.take("{")
        return Directive(" ".join(words), (), line, tuple(self.statements(closing="}")))

    def value(self) -> Any:
        parts = [self.one_value()]
        while self.peek()[1] == "+":
            self.take()
            parts.append(self.one_value())
        return parts[0] if len(parts) == 1 else tuple(parts)

    def one_value(self) -> Any:
        kind, text, line = self.take()
        if kind == "string":
            return text.replace('\\"', '"')
        if kind == "number":
            return int(text)
        if kind == "name":
            return ("var", text)  # a variable (var.x, env.X): its value is not known here
        if text != "(":
            raise ReadError(f"expected a value, found {text!r}", line)
        items: list[tuple[str | None, Any]] = []
        while self.peek()[1] != ")":
            item = self.value()
            if self.peek()[1] == "=>":
                self.take()
                items.append((str(item), self.value()))
            else:
                items.append((None, item))
            if self.peek()[1] != ")":
                self.take(",")
        self.take(")")
        return LighttpdArray(line, tuple(items))
