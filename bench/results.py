"""The pages made from bench/RESULTS.md: docs/performance.md and the README's speed table.

``bench/run --write`` writes RESULTS.md: a header (the date, the machine, the rounds, the
command), then one ``##`` section per comparison (over TCP, over a unix socket, the worker
models, the HTTP servers) holding one ``###`` table per workload, a row per server and a
column per figure, each peer's figure followed by its ratio in brackets.  This module reads
those tables by their headings, server names and column titles (run.py's ``COLUMNS``), never
by position, and raises ``ResultsError``, naming what is missing, when a table, a row or a
column it needs is not there.

- ``parse(text)``: RESULTS.md's header and tables (``Results``);
- ``readme_table(results)``: the README's table, scgikit against its SCGI peers;
- ``peer_tables(results)``: the README's tables against the servers users would pick
  instead (the HTTP servers, the I/O-bound and framework runs, the footprint), each left out
  when its section is not in the run;
- ``readme_block(results)``: both, as the README holds them between its markers;
- ``performance_page(results, template)``: docs/performance.md, the hand-written
  bench/performance.md.in with its ``{{...}}`` figures filled in from the run, and every
  table of the run after it;
- ``with_readme_table(readme, table)``: the README with its table replaced;
- ``pages(results_text, template, readme)``: docs/performance.md and the README at once;
- ``chart_panels(results)``: scgikit's requests/s over each peer's, per workload, per
  section: what bench/chart.py draws as docs/performance.svg.

It lives beside bench/run.py because it reads what run.py writes, with run.py's own column
titles.  scripts/make-docs writes both pages; tests/test_docs.py checks that they are what
this makes.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from run import COLUMNS

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
TEMPLATE = HERE / "performance.md.in"

#: The figures' column titles, by run.py's names for them (cpu_us: "CPU µs/req", ...).
TITLES = {key: title for key, title, _ in COLUMNS} | {
    "peak_rss_mb": "peak RSS MB", "pss_mib": "PSS MiB", "first_ms": "first answer ms"}
#: The sections of RESULTS.md, by the names a template gives them: how their headings begin.
SECTIONS = {"tcp": "Over TCP", "unix": "Over a unix socket", "models": "Worker models",
            "http": "Against HTTP servers", "io": "I/O-bound", "frameworks": "Frameworks",
            "footprint": "Footprint and start-up"}
#: The sections the chart shows, with its title for each: scgikit against other servers (the
#: worker models' section compares scgikit with itself).
CHART_SECTIONS = {"tcp": "SCGI servers, TCP", "unix": "SCGI servers, unix socket",
                  "http": "HTTP servers behind proxy_pass",
                  "io": "I/O-bound: each request waits 10 ms",
                  "frameworks": "Frameworks: Django, FastAPI"}
#: The README's columns: (section, workload, label).
README_COLUMNS = [("tcp", "hello", "hello, TCP"), ("unix", "hello", "hello, unix socket"),
                  ("tcp", "echo-64k", "64 KiB echo, TCP"),
                  ("unix", "echo-64k", "64 KiB echo, unix socket")]
#: The README's figures: (column, label, unit of scgikit's own figure).
README_FIGURES = [("cpu_us", "CPU per request", " µs"), ("rps", "requests/s via nginx", "")]
BASE = "scgikit"
#: The README's tables against the servers users would pick instead, each from one section:
#: the HTTP servers' (columns: its tables by workload, with their labels; a block of rows
#: per figure), ...
HTTP_COLUMNS = [("TCP, hello", "hello, TCP"), ("unix socket, hello", "hello, unix socket"),
                ("TCP, echo-64k", "64 KiB echo, TCP"),
                ("unix socket, echo-64k", "64 KiB echo, unix socket")]
HTTP_FIGURES = [("rps", "requests/s"), ("cpu_us", "CPU per request")]
#: ... the I/O-bound one's (a column per figure and workload), the frameworks' (a column
#: per figure, the workloads' rows one after the other) ...
IO_WORKLOADS = ["io-64", "io-256"]
IO_FIGURES = [("rps", "req/s"), ("p99", "p99"), ("cpu_us", "CPU/req")]
FRAMEWORK_WORKLOADS = ["django", "fastapi"]
FRAMEWORK_FIGURES = [("rps", "requests/s"), ("p99", "p99")]
#: ... and the footprint's: bench/footprint.py gives each scgikit row's ratio to this row's
#: in brackets, and the HTTP servers' rows their own figures; the README gives scgikit's
#: sync rows over the WSGI servers, its asyncio rows over the ASGI ones, each of them that
#: the table has.
FOOTPRINT_WORKLOAD = "hello"
FOOTPRINT_BASE = "uWSGI"
FOOTPRINT_FIGURES = [("pss_mib", "PSS"), ("first_ms", "first answer")]
FOOTPRINT_WSGI = [FOOTPRINT_BASE, "gunicorn sync", "granian WSGI"]
FOOTPRINT_ASGI = ["uvicorn", "granian ASGI"]
FOOTPRINT_ROWS = {"scgikit --worker sync": FOOTPRINT_WSGI,
                  "scgikit --worker sync, --preload": FOOTPRINT_WSGI,
                  "scgikit --worker asyncio (ASGI)": FOOTPRINT_ASGI,
                  "scgikit --worker asyncio (ASGI), --preload": FOOTPRINT_ASGI}
#: Each figure's unit beside scgikit's own, and the figures for which lower is better.
UNITS = {"rps": "", "p50": " ms", "p99": " ms", "cpu_us": " µs", "nginx_us": " µs",
         "direct_rps": "", "pss_mib": " MiB", "first_ms": " ms"}
LOWER_IS_BETTER = {"cpu_us": "CPU", "p99": "p99", "pss_mib": "PSS", "first_ms": "first answer"}
WIDTH = 96  # the README's prose lines
BEGIN = ("<!-- speed table: made from bench/RESULTS.md by scripts/make-docs "
         "(bench/results.py); edit those, not this -->")
END = "<!-- end of speed table -->"

_CELL = re.compile(r"(?P<value>-|\d+(?:\.\d+)?)(?: \((?P<ratio>\d+(?:\.\d+)?)×\))?")
_FIGURE = re.compile(r"\{\{(.*?)\}\}", re.S)
_RUN = re.compile(r"^Run on (?P<date>\d{4}-\d\d-\d\d), (?P<cores>\d+) cores \((?P<cpu>.*?)\), "
                  r"Python (?P<python>\S+), (?P<system>[^;]+);")


class ResultsError(ValueError):
    """bench/RESULTS.md, or a template, lacks what a page needs."""


@dataclass
class Cell:
    text: str             # as RESULTS.md gives it: "39.3 (0.73×)"
    value: str | None     # "39.3"; None for "-"
    ratio: str | None     # "0.73×"; None for the row the others are compared with


@dataclass
class Table:
    section: str          # its section's heading: "Over TCP (127.0.0.1)"
    title: str            # its own: "hello: GET /hello"
    columns: list[str]    # the titles after "server"
    rows: dict[str, dict[str, Cell]]  # server -> column title -> cell

    @property
    def workload(self) -> str:
        return self.title.split(":", 1)[0]

    def cell(self, server: str, key: str) -> Cell:
        title = TITLES.get(key)
        if title is None:
            raise ResultsError(f"no figure named {key!r}; the figures: {', '.join(TITLES)}")
        if title not in self.columns:
            raise ResultsError(f"bench/RESULTS.md: the table {self.where} has no column "
                               f"{title!r}")
        if server not in self.rows:
            raise ResultsError(f"bench/RESULTS.md: the table {self.where} has no row "
                               f"{server!r} (its rows: {', '.join(self.rows)})")
        return self.rows[server][title]

    @property
    def where(self) -> str:
        return f"'### {self.title}' under '## {self.section}'"


@dataclass
class Results:
    run: str                  # the header's "Run on ..." line
    command: str              # the header's "Command: ..." line
    body: str                 # every section, from the first "## " heading on
    tables: list[Table] = field(default_factory=list)

    def has(self, section: str) -> bool:
        """Whether the run has the section named ``section`` (a key of SECTIONS)."""
        return any(t.section.startswith(SECTIONS[section]) for t in self.tables)

    def table(self, section: str, workload: str) -> Table:
        """The table of ``workload`` in the section named ``section`` (a key of SECTIONS)."""
        if section not in SECTIONS:
            raise ResultsError(f"no section named {section!r}; the sections: "
                               f"{', '.join(SECTIONS)}")
        heading = SECTIONS[section]
        found = [t for t in self.tables if t.section.startswith(heading)]
        if not found:
            raise ResultsError(f"bench/RESULTS.md has no section '## {heading}...': "
                               "a full `bench/run --write` writes it")
        for table in found:
            if table.workload == workload:
                return table
        raise ResultsError(f"bench/RESULTS.md has no table {workload!r} under "
                           f"'## {found[0].section}' (its tables: "
                           f"{', '.join(t.workload for t in found)})")

    @property
    def command_line(self) -> str:
        """The command that made the run: "bench/run --write --rounds 5"."""
        return self.command.removeprefix("Command:").strip().strip("`")

    def header(self, name: str) -> str:
        """A figure of the header: date, cores, cpu, python, system, workers, seconds
        (per measurement) or rounds."""
        match = _RUN.match(self.run)
        if match is None:
            raise ResultsError(f"bench/RESULTS.md: the header {self.run!r} does not say "
                               "'Run on DATE, N cores (CPU), Python X, SYSTEM; ...'")
        if name in match.groupdict():
            return match.group(name)
        if name == "rounds":
            rounds = re.search(r"the median of (\d+) rounds", self.run)
            return rounds.group(1) if rounds else "1"
        found = {"workers": r"; (\d+) worker processes each",
                 "seconds": r"; (\d+(?:\.\d+)?) s per measurement"}.get(name)
        if found is None:
            raise ResultsError(f"no header figure named {name!r}: date, cores, cpu, python, "
                               "system, workers, seconds, rounds")
        said = re.search(found, self.run)
        if said is None:
            raise ResultsError(f"bench/RESULTS.md: the header {self.run!r} does not give the "
                               f"{name}")
        return said.group(1)


def parse(text: str) -> Results:
    """RESULTS.md's header and tables."""
    lines = text.splitlines()
    run = next((line for line in lines if line.startswith("Run on ")), None)
    command = next((line for line in lines if line.startswith("Command: ")), None)
    first = next((n for n, line in enumerate(lines) if line.startswith("## ")), None)
    if run is None or command is None or first is None:
        raise ResultsError("bench/RESULTS.md has no 'Run on ...' and 'Command: ...' lines "
                           "before its first '## ' section: is it bench/run --write's?")
    results = Results(run, command, "\n".join(lines[first:]).strip() + "\n")
    section = title = ""
    n = first
    while n < len(lines):
        line = lines[n]
        if line.startswith("## "):
            section, title = line[3:].strip(), ""
        elif line.startswith("### "):
            title = line[4:].strip()
        elif line.startswith("|"):
            block = []
            while n < len(lines) and lines[n].startswith("|"):
                block.append(lines[n])
                n += 1
            results.tables.append(_table(section, title, block, n - len(block) + 1))
            continue
        n += 1
    return results


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(section: str, title: str, block: list[str], number: int) -> Table:
    where = f"bench/RESULTS.md, line {number}"
    if not section or not title:
        raise ResultsError(f"{where}: a table outside a '## ' section and its '### ' title")
    head = _cells(block[0])
    if head[0] != "server" or len(block) < 2 or set(block[1]) - set("|-: "):
        raise ResultsError(f"{where}: a table must begin '| server | ...' and its rule line")
    rows: dict[str, dict[str, Cell]] = {}
    for offset, line in enumerate(block[2:], 2):
        cells = _cells(line)
        if len(cells) != len(head):
            raise ResultsError(f"bench/RESULTS.md, line {number + offset}: "
                               f"{len(cells)} cells under {len(head)} columns")
        parsed = {}
        for column, text in zip(head[1:], cells[1:]):
            match = _CELL.fullmatch(text)
            if match is None:
                raise ResultsError(f"bench/RESULTS.md, line {number + offset}: {text!r} under "
                                   f"{column!r} is not a figure, with its ratio in brackets")
            value, ratio = match.group("value"), match.group("ratio")
            parsed[column] = Cell(text, None if value == "-" else value,
                                  None if ratio is None else ratio + "×")
        rows[cells[0]] = parsed
    return Table(section, title, head[1:], rows)


# --- the README's table -----------------------------------------------------------------------

def readme_table(results: Results) -> str:
    """scgikit against each SCGI peer of the run, on hello and the 64 KiB echo over TCP
    and a unix socket: CPU per request and requests/s through nginx, as ratios."""
    tables = [results.table(section, workload) for section, workload, _ in README_COLUMNS]
    peers = [name for name in tables[0].rows if name != BASE]
    lines = ["| scgikit | " + " | ".join(label for _, _, label in README_COLUMNS) + " |",
             "|---" * (len(README_COLUMNS) + 1) + "|"]
    for key, label, unit in README_FIGURES:
        own = [_value(table, BASE, key) + unit for table in tables]
        lines.append(f"| **{label}** | " + " | ".join(own) + " |")
        for peer in peers:
            ratios = [_ratio(table, peer, key) for table in tables]
            lines.append(f"| vs {peer} | " + " | ".join(ratios) + " |")
    rounds = results.header("rounds")
    caption = (f"From bench/RESULTS.md: `{results.command_line}`, run on "
               f"{results.header('date')}, {results.header('cores')} cores "
               f"({results.header('cpu')}), "
               + (f"each figure the median of {rounds} rounds. " if rounds != "1" else "")
               + "\"vs\" rows: scgikit's figure over the peer's (for CPU lower is better "
               "for scgikit; for requests/s, higher).")
    lines += ["", textwrap.fill(caption, WIDTH, break_on_hyphens=False)]
    return "\n".join(lines) + "\n"


def with_readme_table(readme: str, table: str) -> str:
    """The README with the text between its speed table's markers replaced by ``table``."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(
            END):
        raise ResultsError(f"README.md must hold the speed table's markers once each, in order:"
                           f"\n{BEGIN}\n{END}")
    before, rest = readme.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    return f"{before}{BEGIN}\n{table}{END}{after}"


def readme_block(results: Results) -> str:
    """What the README holds between its markers: the table against the SCGI peers, then,
    when the run has their sections, the tables against the servers users would pick
    instead."""
    others = peer_tables(results)
    return readme_table(results) + (f"\n{others}" if others else "")


def peer_tables(results: Results) -> str:
    """scgikit against the HTTP servers (behind nginx's proxy_pass), on I/O-bound work, under
    Django and FastAPI, and in memory and start-up: a table for each of those sections that
    the run has (none: ""), after a sentence that says how to read them."""
    makers = {"http": (_http_table, HTTP_FIGURES), "io": (_io_table, IO_FIGURES),
              "frameworks": (_framework_table, FRAMEWORK_FIGURES),
              "footprint": (_footprint_table, FOOTPRINT_FIGURES)}
    present = [key for key in makers if results.has(key)]
    if not present:
        return ""
    against = []
    if any(key != "footprint" for key in present):
        against.append("the HTTP servers behind nginx's `proxy_pass`, each beside scgikit's "
                       "model of its kind behind `scgi_pass` (WSGI: the sync workers, or "
                       "threads when each request waits; ASGI: asyncio on uvloop)")
    if "footprint" in present:
        command = _footprint_command(results)
        table = results.table("footprint", FOOTPRINT_WORKLOAD)
        others = [name for name in (*FOOTPRINT_WSGI, *FOOTPRINT_ASGI)
                  if name != FOOTPRINT_BASE and name in table.rows]
        against.append("for memory and start-up" + (f" (`{command}`)" if command else "")
                       + f", {FOOTPRINT_BASE} as it runs by default (the app loaded in its "
                       "master)" + (f" and {_listed(others)}, which load it in each worker"
                                    if others else ""))
    shown = {key for part in present for key, _ in makers[part][1]}
    lower = [name for key, name in LOWER_IS_BETTER.items() if key in shown]
    reading = (["above 1×, scgikit serves more requests/s"] if "rps" in shown else []) + (
        [f"for {_listed(lower)}, lower is better"] if lower else [])
    intro = ("Against the servers users would pick instead: " + "; and ".join(against)
             + ". Bold rows give the figures themselves; every other cell is scgikit's figure "
             "over the peer's" + (f" ({'; '.join(reading)})" if reading else "") + ".")
    lines = [textwrap.fill(intro, WIDTH, break_on_hyphens=False)]
    lines += [makers[key][0](results) for key in present]
    return "\n\n".join(lines) + "\n"


def _footprint_command(results: Results) -> str | None:
    """The command that wrote the footprint section, as its first paragraph gives it."""
    heading = "\n## " + SECTIONS["footprint"]
    if heading not in "\n" + results.body:
        return None
    text = ("\n" + results.body).split(heading, 1)[1].split("\n### ", 1)[0]
    said = re.search(r"`([^`]+)`", text)
    return said.group(1) if said else None


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _rows(columns: list[tuple[Table, str]], figure: str = "") -> list[str]:
    """A line per row of the first column's table: scgikit's rows (those compared with no
    other) give their own figures, in bold, and each other row its ratios to the scgikit row
    above it, as bench/run.py wrote them."""
    first, key = columns[0]
    lines = []
    for server in first.rows:
        if first.cell(server, key).ratio is None:
            lines.append(_line([f"**{figure}{server}**"]
                               + [_value(t, server, k) + UNITS[k] for t, k in columns]))
        else:
            lines.append(_line([f"vs {server}"] + [_ratio(t, server, k) for t, k in columns]))
    return lines


def _head(first: str, labels: list[str]) -> list[str]:
    return [_line([first, *labels]), "|---" * (len(labels) + 1) + "|"]


def _http_table(results: Results) -> str:
    tables = [results.table("http", workload) for workload, _ in HTTP_COLUMNS]
    lines = _head("HTTP servers, behind nginx", [label for _, label in HTTP_COLUMNS])
    for key, name in HTTP_FIGURES:
        lines += _rows([(table, key) for table in tables], f"{name}: ")
    return "\n".join(lines)


def _io_table(results: Results) -> str:
    tables = [results.table("io", workload) for workload in IO_WORKLOADS]
    columns = [(table, key) for key, _ in IO_FIGURES for table in tables]
    labels = [f"{name}, {table.workload}" for _, name in IO_FIGURES for table in tables]
    return "\n".join(_head("I/O-bound, each request waits 10 ms", labels) + _rows(columns))


def _framework_table(results: Results) -> str:
    lines = _head("Django and FastAPI", [name for _, name in FRAMEWORK_FIGURES])
    for workload in FRAMEWORK_WORKLOADS:
        table = results.table("frameworks", workload)
        lines += _rows([(table, key) for key, _ in FRAMEWORK_FIGURES])
    return "\n".join(lines)


def _footprint_table(results: Results) -> str:
    """Each scgikit row of FOOTPRINT_ROWS that the table has, its own figures in bold, then
    its ratio to each peer of its kind that the table has: to uWSGI's, the ratio in brackets
    (the median of the runs' own ratios); to an HTTP server's, scgikit's figure over the
    server's own."""
    table = results.table("footprint", FOOTPRINT_WORKLOAD)
    detail = table.title.split(":", 1)[-1].strip()
    lines = _head(f"Memory and start-up, {detail}", [name for _, name in FOOTPRINT_FIGURES])
    for server, peers in FOOTPRINT_ROWS.items():
        present = [peer for peer in peers if peer in table.rows]
        if server not in table.rows or not present:
            continue
        lines.append(_line([f"**{server}**"] + [_value(table, server, key) + UNITS[key]
                                                for key, _ in FOOTPRINT_FIGURES]))
        for peer in present:
            lines.append(_line([f"vs {peer}"] + [_footprint_ratio(table, server, peer, key)
                                                 for key, _ in FOOTPRINT_FIGURES]))
    if len(lines) == 2:
        raise ResultsError(f"bench/RESULTS.md: the table {table.where} has none of the rows "
                           f"{', '.join(FOOTPRINT_ROWS)} beside a peer of its kind "
                           f"({', '.join(FOOTPRINT_WSGI + FOOTPRINT_ASGI)})")
    return "\n".join(lines)


def _footprint_ratio(table: Table, server: str, peer: str, key: str) -> str:
    """``server``'s figure over ``peer``'s: the bracket bench/footprint.py wrote for the
    base, else the quotient of the two figures."""
    if peer == FOOTPRINT_BASE:
        return _ratio(table, server, key)
    return f"{float(_value(table, server, key)) / float(_value(table, peer, key)):.2f}×"


def _value(table: Table, server: str, key: str) -> str:
    value = table.cell(server, key).value
    if value is None:
        raise ResultsError(f"bench/RESULTS.md: {server}'s {TITLES[key]!r} in the table "
                           f"{table.where} is '-'")
    return value


def _ratio(table: Table, server: str, key: str) -> str:
    ratio = table.cell(server, key).ratio
    if ratio is None:
        raise ResultsError(f"bench/RESULTS.md: {server}'s {TITLES[key]!r} in the table "
                           f"{table.where} has no ratio")
    return ratio


# --- docs/performance.md -----------------------------------------------------------------------

def performance_page(results: Results, template: str) -> str:
    """docs/performance.md: ``template`` with its figures filled in from ``results``.

    In the template, a paragraph that is ``{{summary}}`` becomes the README's table, and
    one that is ``{{tables}}`` every table of the run (its sections one heading level down,
    a note repeated within a section given once).  Within the text, ``{{date}}``,
    ``{{cores}}``, ``{{cpu}}``, ``{{python}}``, ``{{system}}``, ``{{workers}}``,
    ``{{seconds}}``, ``{{rounds}}`` and ``{{command}}`` are the header's, and
    ``{{SECTION | WORKLOAD | SERVER | FIGURE}}`` is one figure of a table: SECTION a key of
    SECTIONS, WORKLOAD the table's title up to its colon, SERVER its row, FIGURE a name of
    run.py's COLUMNS (rps, p50, p99, cpu_us, nginx_us, direct_rps; peak_rss_mb), followed by
    ``| ratio`` for its ratio or ``| per second`` for 1 s over it (a figure in µs), to the
    hundred.  A paragraph or a list with figures in it is wrapped again once they are in.
    """
    def fill(match: re.Match[str]) -> str:
        return _figure(results, match.group(0), match.group(1))

    paragraphs = []
    for paragraph in template.strip("\n").split("\n\n"):
        if paragraph == "{{summary}}":
            paragraph = readme_table(results).rstrip("\n")
        elif paragraph == "{{tables}}":
            paragraph = _tables(results.body).rstrip("\n")
        elif "{{" in paragraph:
            paragraph = _wrap(_FIGURE.sub(fill, paragraph))
        paragraphs.append(paragraph)
    page = "\n\n".join(paragraphs) + "\n"
    for brace in ("{{", "}}"):
        if brace in page:
            line = page[:page.index(brace)].count("\n") + 1
            raise ResultsError(f"bench/performance.md.in: an unmatched {brace} (page line {line})")
    return page


def _figure(results: Results, text: str, inner: str) -> str:
    """What a ``{{...}}`` of the template stands for."""
    parts = [" ".join(part.split()) for part in inner.split("|")]
    if parts == ["command"]:
        return results.command_line
    if len(parts) == 1:
        return results.header(parts[0])
    if len(parts) not in (4, 5):
        raise ResultsError(f"bench/performance.md.in: {text} is not "
                           "{{SECTION | WORKLOAD | SERVER | FIGURE [| ratio | per second]}}")
    section, workload, server, key = parts[:4]
    table = results.table(section, workload)
    how = parts[4] if len(parts) == 5 else "value"
    if how == "value":
        return _value(table, server, key)
    if how == "ratio":
        return _ratio(table, server, key)
    if how == "per second":
        return f"{round(1e6 / float(_value(table, server, key)), -2):,.0f}"
    raise ResultsError(f"bench/performance.md.in: {text}: {how!r} is neither 'ratio' nor "
                       "'per second'")


def _wrap(paragraph: str) -> str:
    """A paragraph, or a list of items, wrapped at WIDTH (items indented under their dash)."""
    items = re.split(r"\n(?=- )", paragraph)
    return "\n".join(
        textwrap.fill(" ".join(item.split()), WIDTH, break_long_words=False,
                      break_on_hyphens=False, subsequent_indent="  " if item[:2] == "- " else "")
        for item in items)


def _tables(body: str) -> str:
    """RESULTS.md's sections one heading level down; within a section, a paragraph that
    repeats one already given (the note under each table) is left out."""
    out: list[str] = []
    seen: set[str] = set()
    for paragraph in body.strip("\n").split("\n\n"):
        if paragraph.startswith("## "):
            seen = set()
        if paragraph.startswith("#"):
            paragraph = "#" + paragraph
        elif not paragraph.startswith("|"):
            if paragraph in seen:
                continue
            seen.add(paragraph)
        out.append(paragraph)
    return "\n\n".join(out)


def pages(results_text: str, template: str, readme: str) -> tuple[str, str]:
    """docs/performance.md and README.md as made from RESULTS.md's text."""
    results = parse(results_text)
    return (performance_page(results, template),
            with_readme_table(readme, readme_block(results)))


# --- docs/performance.svg ------------------------------------------------------------------------

@dataclass
class Panel:
    title: str
    # (workload, [(peer, scgikit's req/s over the peer's)]), in the tables' order
    groups: list[tuple[str, list[tuple[str, float]]]]


def chart_panels(results: Results) -> list[Panel]:
    """scgikit's requests/s over each peer's (the ratio of the tables' req/s column), per
    workload, one panel per section of CHART_SECTIONS that the run has."""
    title = TITLES["rps"]
    panels = []
    for key, name in CHART_SECTIONS.items():
        groups = []
        for table in results.tables:
            if not table.section.startswith(SECTIONS[key]) or title not in table.columns:
                continue
            peers = [(server, float(cells[title].ratio.rstrip("×")))
                     for server, cells in table.rows.items() if cells[title].ratio]
            if peers:
                groups.append((table.workload, peers))
        if groups:
            panels.append(Panel(name, groups))
    return panels
