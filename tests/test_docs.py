"""The pages made from bench/RESULTS.md (bench/results.py, run by scripts/make-docs).

docs/performance.md and the README's speed table are what the generator makes from the
RESULTS.md in the tree, so that `bench/run --write` and then `scripts/make-docs` keep them in
step; the generator reads the tables that bench/run.py writes by their headings and column
titles, in any column order, and says what is missing when a table, a row or a column is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_path(reason="documentation")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import footprint  # noqa: E402
import lineup  # noqa: E402
import results  # noqa: E402
import run as bench  # noqa: E402

README = ROOT / "README.md"
NAN = float("nan")
PERFORMANCE = ROOT / "docs" / "performance.md"


def made() -> tuple[str, str]:
    return results.pages(results.RESULTS.read_text(), results.TEMPLATE.read_text(),
                         README.read_text())


def test_docs_performance_is_made_from_bench_results():
    assert PERFORMANCE.read_text() == made()[0], (
        "docs/performance.md is stale: run scripts/make-docs (its text is "
        "bench/performance.md.in)")


def test_the_readmes_speed_table_is_made_from_bench_results():
    assert README.read_text() == made()[1], (
        "README.md's speed table is stale: run scripts/make-docs")


def test_the_readmes_speed_section_stays_short():
    text = README.read_text()
    section = text.split("\n## Speed\n", 1)[1].split("\n## ", 1)[0]
    block = section.split(results.BEGIN, 1)[1].split(results.END, 1)[0]
    prose = section.replace(block, "")
    assert len(prose.strip("\n").splitlines()) + 1 <= 14  # with its heading and markers
    # the tables: a row per peer and scgikit model, a line per figure of the footprint
    assert len(section.strip("\n").splitlines()) + 1 <= 100
    assert "(docs/performance.md)" in section


def test_every_figure_of_the_readmes_table_is_in_the_results_table_it_names():
    text = results.RESULTS.read_text()
    table = results.readme_table(results.parse(text))
    cpu = next(line for line in table.splitlines() if line.startswith("| vs uWSGI |"))
    ratio = cpu.split("|")[2].strip()  # hello over TCP
    section = text.split("## Over TCP", 1)[1].split("### hello:", 1)[1].split("###", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| uWSGI |"))
    head = next(line for line in section.splitlines() if line.startswith("| server |"))
    column = [cell.strip() for cell in head.split("|")].index("CPU µs/req")
    assert row.split("|")[column].strip().endswith(f"({ratio})")


# --- RESULTS.md as bench/run.py writes it -------------------------------------------------

FIGURES = {"rps": 1000.0, "p50": 1.0, "p99": 2.0, "cpu_us": 20.0, "nginx_us": 30.0,
           "direct_rps": 2000.0}
# Each peer's figures: CPU twice scgikit's (0.50×), requests/s half (2.00×), and so on.
PEERS = {"uWSGI": 2.0, "aioscgi": 4.0}


def written(sections=("tcp", "unix"), peers=PEERS, header: str | None = None) -> str:
    """A RESULTS.md made with bench/run.py's own table()."""
    parts = [header or (
        "Run on 2026-12-24, 8 cores (Intel(R) Xeon(R) CPU @ 2.20GHz), Python 3.12.1, "
        "Linux 6.1.0; 2 worker processes each (aioscgi and flup threads: 1 process); 1.5 s "
        "per measurement; each figure the median of 3 rounds; nginx 1 worker, wrk -t1; took "
        "900 s.\nCommand: `bench/run --write --only hello --only echo-64k`")]
    works = [w for w in bench.WORKLOADS if w.name in ("hello", "echo-64k")]
    for section in sections:
        parts.append("## Over TCP (127.0.0.1)" if section == "tcp" else "## Over a unix socket")
        for work in works:
            rows = [bench.Row("scgikit", dict(FIGURES))]
            for name, times in peers.items():
                rows.append(bench.Row(name, {key: value * times if key in ("cpu_us", "p50")
                                             else value / times
                                             for key, value in FIGURES.items()}))
            parts.append(bench.table(work, rows))
    return "# Benchmark results\n\n" + "\n\n".join(parts) + "\n"


def table_of(text: str) -> str:
    return results.readme_table(results.parse(text))


def test_the_readme_table_reads_what_bench_run_writes():
    table = table_of(written())
    assert "| **CPU per request** | 20.0 µs | 20.0 µs | 20.0 µs | 20.0 µs |" in table
    assert "| vs uWSGI | 0.50× | 0.50× | 0.50× | 0.50× |" in table
    assert "| vs aioscgi | 0.25× | 0.25× | 0.25× | 0.25× |" in table
    assert "| **requests/s via nginx** | 1000 | 1000 | 1000 | 1000 |" in table
    assert "| vs aioscgi | 4.00× | 4.00× | 4.00× | 4.00× |" in table
    caption = " ".join(table.split("\n\n", 1)[1].split())
    assert caption.startswith("From bench/RESULTS.md: `bench/run --write --only hello --only "
                              "echo-64k`, run on 2026-12-24, 8 cores (Intel(R) Xeon(R) CPU @ "
                              "2.20GHz), each figure the median of 3 rounds.")


def reordered(text: str) -> str:
    """The same tables with their figure columns in the reverse order."""
    lines = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = line.strip("|").split("|")
            line = "|" + "|".join(cells[:1] + cells[:0:-1]) + "|"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_the_tables_are_read_by_their_column_titles_not_their_order():
    text = written()
    other = reordered(text)
    assert "| server | req/s direct | nginx CPU µs/req | CPU µs/req |" in other
    assert table_of(other) == table_of(text)


def test_a_missing_section_is_named():
    with pytest.raises(results.ResultsError, match="no section '## Over a unix socket"):
        table_of(written(sections=("tcp",)))


def test_a_missing_table_is_named_with_the_tables_there_are():
    text = written()
    unix = text.index("## Over a unix socket")
    cut = text[:unix] + text[unix:].replace("### echo-64k", "### echo-1k")
    with pytest.raises(results.ResultsError, match=r"no table 'echo-64k' under '## Over a "
                       r"unix socket' \(its tables: hello, echo-1k\)"):
        table_of(cut)


def test_a_missing_column_is_named():
    text = written().replace("| CPU µs/req |", "| CPU ms/req |")
    with pytest.raises(results.ResultsError, match="has no column 'CPU µs/req'"):
        table_of(text)


def test_a_peer_missing_from_one_table_is_named():
    text = written()
    unix = text.index("## Over a unix socket")
    cut = text[:unix] + "\n".join(line for line in text[unix:].splitlines()
                                  if not line.startswith("| aioscgi |"))
    with pytest.raises(results.ResultsError, match="no row 'aioscgi'"):
        table_of(cut)


def test_a_cell_that_is_not_a_figure_is_named_with_its_line():
    text = written().replace("| 20.0 |", "| twenty |", 1)
    line = text[:text.index("| twenty |")].count("\n") + 1
    with pytest.raises(results.ResultsError, match=f"line {line}: 'twenty' under 'CPU µs/req'"):
        table_of(text)


def test_a_header_that_is_not_bench_runs_is_refused():
    with pytest.raises(results.ResultsError, match="'Run on ...' and 'Command: ...'"):
        table_of(written().replace("Command: ", "Ran: "))
    with pytest.raises(results.ResultsError, match="does not say 'Run on DATE"):
        table_of(written(header="Run on a Tuesday.\nCommand: `bench/run`"))


def test_the_readme_needs_its_markers_once():
    table = table_of(written())
    readme = f"# x\n\n{results.BEGIN}\nold\n{results.END}\nrest\n"
    assert results.with_readme_table(readme, table) == (
        f"# x\n\n{results.BEGIN}\n{table}{results.END}\nrest\n")
    for broken in ("# x\n", f"{results.END}\n{results.BEGIN}\n", readme + results.BEGIN):
        with pytest.raises(results.ResultsError, match="markers"):
            results.with_readme_table(broken, table)


def test_the_templates_figures_and_their_errors():
    parsed = results.parse(written())
    page = results.performance_page(parsed, (
        "# Page\n\nOn {{date}}, {{cores}} cores ({{cpu}}): `{{command}}`, {{workers}} workers, "
        "{{seconds}} s, {{rounds}} rounds.\n\n- uWSGI {{tcp | hello | uWSGI | cpu_us}} µs, "
        "{{tcp | hello |\n  uWSGI | cpu_us | ratio}}; nginx {{unix | echo-64k | scgikit | "
        "nginx_us | per second}} a second\n\n{{summary}}\n"))
    assert page.startswith(
        "# Page\n\nOn 2026-12-24, 8 cores (Intel(R) Xeon(R) CPU @ 2.20GHz): `bench/run --write "
        "--only hello --only\necho-64k`, 2 workers, 1.5 s, 3 rounds.\n\n- uWSGI 40.0 µs, 0.50×; "
        "nginx 33,300 a second\n\n| scgikit |")  # wrapped again at 96 columns
    for template, error in [
            ("{{tcp | hello | uWSGI}}", "is not {{SECTION"),
            ("{{tcp | hello | uWSGI | cpu_us | half}}", "'half' is neither"),
            ("{{tcp | hello | nginx | cpu_us}}", "no row 'nginx'"),
            ("{{tcp | hello | uWSGI | cpu}}", "no figure named 'cpu'"),
            ("{{models | hello | uWSGI | cpu_us}}", "no section '## Worker models"),
            ("{{tcp | hello | scgikit | cpu_us | ratio}}", "has no ratio"),
            ("{{weather}}", "no header figure named 'weather'"),
            ("{{date and more", "an unmatched {{"),
            ("{date}}", "an unmatched }}")]:
        with pytest.raises(results.ResultsError, match=error):
            results.performance_page(parsed, template)


def test_the_latest_runs_tables_come_one_heading_level_down_with_each_note_once():
    text = written()
    tables = results.performance_page(results.parse(text), "{{tables}}\n")
    assert tables.startswith("### Over TCP (127.0.0.1)\n\n#### hello: GET /hello\n\n| server |")
    note = "Ratios in brackets are scgikit / that server"
    assert text.count(note) == 4 and tables.count(note) == 2  # once per section
    assert tables.count("| uWSGI |") == 4


def test_the_chart_shows_each_peers_requests_per_second_ratio_per_workload_and_section():
    text = written()
    text += "\n## Worker models (TCP)\n\n" + bench.table(
        bench.WORKLOADS[0], [bench.Row("scgikit prefork", dict(FIGURES)),
                             bench.Row("scgikit threads", dict(FIGURES))]) + "\n"
    panels = results.chart_panels(results.parse(text))
    # the worker models compare scgikit with itself: not in the chart
    assert [panel.title for panel in panels] == ["SCGI servers, TCP", "SCGI servers, unix socket"]
    assert panels[0].groups == [("hello", [("uWSGI", 2.0), ("aioscgi", 4.0)]),
                                ("echo-64k", [("uWSGI", 2.0), ("aioscgi", 4.0)])]


def test_the_chart_in_docs_is_drawn_from_the_latest_run():
    # bench/chart.py writes RESULTS.md's "Run on" line as the SVG's description
    run = results.parse(results.RESULTS.read_text()).run
    svg = (ROOT / "docs" / "performance.svg").read_text()
    assert f"<dc:description>{run}</dc:description>" in svg
    assert "](performance.svg)" in PERFORMANCE.read_text()


# --- the README's tables against the servers users would pick instead ----------------------

def bracketed(text: str, section: str, title: str, server: str, column: str) -> str:
    """A cell of RESULTS.md found by splitting its text: the ratio in brackets, or the
    figure where there is none."""
    part = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    table = part.split(f"\n### {title}", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    head = [cell.strip() for cell in lines[0].split("|")]
    row = next(line for line in lines if line.startswith(f"| {server} |"))
    cell = row.split("|")[head.index(column)].strip()
    return cell.split("(", 1)[1].rstrip(")") if "(" in cell else cell


def readme_cells(block: str, first: str, nth: int = 0) -> list[str]:
    """The cells after the first one of the ``nth`` README line that begins with ``first``."""
    line = [line for line in block.splitlines() if line.startswith(f"| {first} |")][nth]
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.mark.parametrize("first, nth, column, section, title, server, figure", [
    ("vs gunicorn sync", 0, 0, "Against HTTP", "TCP, hello", "gunicorn sync",
     "req/s via nginx"),
    ("vs uvicorn", 0, 3, "Against HTTP", "unix socket, echo-64k", "uvicorn", "req/s via nginx"),
    ("vs granian ASGI", 1, 3, "Against HTTP", "unix socket, echo-64k", "granian ASGI",
     "CPU µs/req"),
    ("vs granian WSGI", 1, 1, "Against HTTP", "unix socket, hello", "granian WSGI",
     "CPU µs/req"),
    ("vs gunicorn gthread ×128", 0, 3, "I/O-bound", "io-256", "gunicorn gthread ×128",
     "p99 ms"),
    ("vs uvicorn", 2, 4, "I/O-bound", "io-64", "uvicorn", "CPU µs/req"),
    ("**scgikit threads ×128**", 0, 1, "I/O-bound", "io-256", "scgikit threads ×128",
     "req/s via nginx"),
    ("vs uvicorn, Django (its ASGI handler)", 0, 0, "Frameworks", "django",
     "uvicorn, Django (its ASGI handler)", "req/s via nginx"),
    ("vs uvicorn, FastAPI", 0, 1, "Frameworks", "fastapi", "uvicorn, FastAPI", "p99 ms"),
    ("vs uWSGI", 1, 1, "Footprint", "hello", "scgikit --worker sync, --preload",
     "first answer ms"),
    ("vs uWSGI", 0, 0, "Footprint", "hello", "scgikit --worker sync", "PSS MiB"),
])
def test_the_readmes_ratios_to_the_other_servers_are_those_of_bench_results(
        first, nth, column, section, title, server, figure):
    text = results.RESULTS.read_text()
    block = results.peer_tables(results.parse(text))
    cell = readme_cells(block, first, nth)[column]
    assert cell.removesuffix(" ms").removesuffix(" µs") == bracketed(
        text, section, title, server, figure)


def row_of(name: str, times: float) -> bench.Row:
    """A server that takes ``times`` scgikit's CPU and p99 for 1/``times`` its requests/s."""
    return bench.Row(name, {key: value * times if key in ("cpu_us", "p50", "p99")
                            else value / times for key, value in FIGURES.items()})


def measured(servers: dict[str, float], works: list, transports=("tcp",)) -> dict:
    return {(transport, name): {work.name: row_of(name, times) for work in works
                                if not work.servers or name in work.servers}
            for transport in transports for name, times in servers.items()}


# scgikit's asyncio model serves twice the requests/s of its sync one at half the CPU; the
# ratios are each peer's times over its base's: uvicorn's requests/s 2.00× and so on.
HTTP_TIMES = {"scgikit": 1.0, "gunicorn sync": 4.0, "gunicorn gthread ×4": 2.0,
              "granian WSGI": 0.8, bench.ASYNC: 0.5, "uvicorn": 1.0, bench.UVICORN_CLOSE: 2.0,
              "granian ASGI": 0.4}
IO_TIMES = dict(zip((s.name for s in lineup.IO_BOUND), (1.0, 2.0, 0.8, 4.0, 1.0, 0.5, 1.25)))
FRAMEWORK_TIMES = dict(zip((s.name for s in lineup.FRAMEWORKS),
                           (1.0, 2.0, 8.0, 0.8, 0.5, 1.0, 0.4, 2.0)))


def with_others(sections=("http", "io", "frameworks", "footprint"), monkeypatch=None,
                http_peers=True) -> str:
    """A RESULTS.md with the SCGI servers' sections and these others, as bench/run.py and
    bench/footprint.py write them (its footprint with the HTTP servers, or uWSGI alone)."""
    works = [w for w in bench.WORKLOADS if w.name in ("hello", "echo-64k")]
    parts = [written().rstrip("\n")]
    if "http" in sections:
        parts.append(bench.http_tables(measured(HTTP_TIMES, works, ("tcp", "unix")), works,
                                       ("tcp", "unix")))
    if "io" in sections:
        parts.append(bench.io_tables(measured(IO_TIMES, bench.IO_WORKLOADS),
                                     bench.IO_WORKLOADS))
    if "frameworks" in sections:
        parts.append(bench.framework_tables(measured(FRAMEWORK_TIMES, bench.FRAMEWORK_WORKLOADS),
                                            bench.FRAMEWORK_WORKLOADS))
    if "footprint" in sections:
        # (ms to the first answer, ms to all ready, MiB of PSS), one run each
        runs = {("hello-sync", False): (60.0, 61.0, 30.0),
                ("hello-sync", True): (45.0, 46.0, 24.0),
                ("hello-aio", False): (90.0, 91.0, 40.0),
                (footprint.UWSGI, False): (32.0, 32.0, 22.0),
                (footprint.UWSGI, True): (30.0, 30.0, 20.0)}
        if http_peers:  # no time to all workers ready: NaN, as footprint.one_run gives it
            runs |= {("gunicorn", False): (100.0, NAN, 40.0),
                     ("uvicorn", False): (180.0, NAN, 80.0),
                     ("granian-wsgi", False): (50.0, NAN, 25.0),
                     ("granian-asgi", False): (45.0, NAN, 32.0)}
        table = footprint.uwsgi_table({case: [figures] for case, figures in runs.items()}, 2,
                                      2000)
        monkeypatch.setattr(footprint, "uwsgi_version", lambda: "2.0.31")
        monkeypatch.setattr(footprint, "peer_versions",
                            lambda: "gunicorn 27.0.1, uvicorn 0.55.0, granian 2.8.9")
        option = "--http-peers" if http_peers else "--uwsgi"
        parts.append(footprint.section(table, 1, f"python bench/footprint.py {option} --runs 1 "
                                       "--write", (0.5, 0.6), http_peers).rstrip("\n"))
    return "\n\n".join(parts) + "\n"


def block_of(text: str) -> str:
    return results.peer_tables(results.parse(text))


def test_the_readme_compares_scgikit_with_each_http_server_beside_its_own_model():
    block = block_of(with_others(("http",)))
    for line in ("| **requests/s: scgikit (sync, WSGI)** | 1000 | 1000 | 1000 | 1000 |",
                 "| vs gunicorn sync | 4.00× | 4.00× | 4.00× | 4.00× |",
                 "| vs granian WSGI | 0.80× | 0.80× | 0.80× | 0.80× |",
                 "| **requests/s: scgikit asyncio, ASGI (uvloop)** | 2000 | 2000 | 2000 | 2000 |",
                 "| vs uvicorn | 2.00× | 2.00× | 2.00× | 2.00× |",
                 "| vs granian ASGI | 0.80× | 0.80× | 0.80× | 0.80× |",
                 "| **CPU per request: scgikit (sync, WSGI)** | 20.0 µs | 20.0 µs | 20.0 µs | "
                 "20.0 µs |",
                 "| vs gunicorn gthread ×4 | 0.50× | 0.50× | 0.50× | 0.50× |",
                 "| **CPU per request: scgikit asyncio, ASGI (uvloop)** | 10.0 µs | 10.0 µs | "
                 "10.0 µs | 10.0 µs |",
                 "| vs uvicorn, a connection per request | 0.25× | 0.25× | 0.25× | 0.25× |",
                 "| vs granian ASGI | 1.25× | 1.25× | 1.25× | 1.25× |"):
        assert line in block.splitlines()
    intro = " ".join(block.split("\n\n", 1)[0].split())
    assert "every other cell is scgikit's figure over the peer's (above 1×, scgikit serves " \
           "more requests/s; for CPU, lower is better)." in intro
    assert "uWSGI for memory" not in block and "10 ms" not in block and "Django" not in block


def test_the_readme_compares_scgikit_on_io_bound_work_and_under_frameworks():
    block = block_of(with_others(("io", "frameworks")))
    assert ("| I/O-bound, each request waits 10 ms | req/s, io-64 | req/s, io-256 | "
            "p99, io-64 | p99, io-256 | CPU/req, io-64 | CPU/req, io-256 |") in block
    for line in ("| **scgikit threads ×128** | 1000 | 1000 | 2.00 ms | 2.00 ms | 20.0 µs | "
                 "20.0 µs |",
                 "| vs uWSGI threads ×128 | 2.00× | 2.00× | 0.50× | 0.50× | 0.50× | 0.50× |",
                 "| vs gunicorn gthread ×128 | 4.00× | 4.00× | 0.25× | 0.25× | 0.25× | 0.25× |",
                 "| vs granian ASGI | 1.25× | 1.25× | 0.80× | 0.80× | 0.80× | 0.80× |",
                 "| **scgikit sync, Django** | 1000 | 2.00 ms |",
                 "| vs uvicorn, Django (its ASGI handler) | 8.00× | 0.12× |",
                 "| **scgikit asyncio, FastAPI** | 2000 | 1.00 ms |",
                 "| vs granian ASGI, FastAPI | 0.80× | 1.25× |",
                 "| vs gunicorn + uvicorn workers, FastAPI | 4.00× | 0.25× |"):
        assert line in block.splitlines()
    assert "HTTP servers, behind nginx |" not in block and "uWSGI for memory" not in block


def test_the_readme_gives_scgikits_footprint_over_each_server_of_its_kind(monkeypatch):
    block = block_of(with_others(("footprint",), monkeypatch))
    table = block.split("\n\n")[1].splitlines()
    # over uWSGI the ratio in brackets; over an HTTP server, scgikit's figure over its own
    assert table == [
        "| Memory and start-up, 2 workers, PSS after 2000 requests | PSS | first answer |",
        "|---|---|---|",
        "| **scgikit --worker sync** | 30.0 MiB | 60 ms |",
        "| vs uWSGI | 1.50× | 2.00× |",
        "| vs gunicorn sync | 0.75× | 0.60× |",
        "| vs granian WSGI | 1.20× | 1.20× |",
        "| **scgikit --worker sync, --preload** | 24.0 MiB | 45 ms |",
        "| vs uWSGI | 1.20× | 1.50× |",
        "| vs gunicorn sync | 0.60× | 0.45× |",
        "| vs granian WSGI | 0.96× | 0.90× |",
        "| **scgikit --worker asyncio (ASGI)** | 40.0 MiB | 90 ms |",
        "| vs uvicorn | 0.50× | 0.50× |",
        "| vs granian ASGI | 1.25× | 2.00× |"]
    intro = " ".join(block.split("\n\n", 1)[0].split())
    assert intro.startswith(
        "Against the servers users would pick instead: for memory and start-up (`python "
        "bench/footprint.py --http-peers --runs 1 --write`), uWSGI as it runs by default (the "
        "app loaded in its master) and gunicorn sync, granian WSGI, uvicorn and granian ASGI, "
        "which load it in each worker.")
    assert "(for PSS and first answer, lower is better)." in intro


def test_the_footprint_section_gives_the_http_servers_own_figures(monkeypatch):
    text = with_others(("footprint",), monkeypatch)
    table = results.parse(text).table("footprint", "hello")
    assert table.columns == ["PSS MiB", "first answer ms", "all workers ready ms"]
    assert {name: [cell.text for cell in cells.values()] for name, cells in table.rows.items()
            if not name.startswith("scgikit")} == {
        "uWSGI --lazy-apps": ["22.0", "32", "32"], "uWSGI": ["20.0", "30", "30"],
        "gunicorn sync": ["40.0", "100", "-"], "uvicorn": ["80.0", "180", "-"],
        "granian WSGI": ["25.0", "50", "-"], "granian ASGI": ["32.0", "45", "-"]}
    assert "gunicorn 27.0.1, uvicorn 0.55.0, granian 2.8.9" in text


def test_a_footprint_without_the_http_servers_gives_scgikits_sync_rows_over_uwsgi(monkeypatch):
    block = block_of(with_others(("footprint",), monkeypatch, http_peers=False))
    assert block.split("\n\n")[1].splitlines()[2:] == [
        "| **scgikit --worker sync** | 30.0 MiB | 60 ms |",
        "| vs uWSGI | 1.50× | 2.00× |",
        "| **scgikit --worker sync, --preload** | 24.0 MiB | 45 ms |",
        "| vs uWSGI | 1.20× | 1.50× |"]
    intro = " ".join(block.split("\n\n", 1)[0].split())
    assert ("for memory and start-up (`python bench/footprint.py --uwsgi --runs 1 --write`), "
            "uWSGI as it runs by default (the app loaded in its master). Bold rows") in intro


def test_the_readmes_footprint_rows_are_those_bench_footprint_writes():
    written = set(footprint.NAMES.values()) | {
        footprint.NAMES[case] + ", --preload" for case in footprint.HELLO}
    assert set(results.FOOTPRINT_ROWS) <= written
    assert set(results.FOOTPRINT_WSGI + results.FOOTPRINT_ASGI) == {
        footprint.NAMES[case] for case in [footprint.UWSGI, *footprint.HTTP_PEERS]}


def test_the_readme_block_holds_every_table_the_run_has_in_order(monkeypatch):
    text = with_others(monkeypatch=monkeypatch)
    parsed = results.parse(text)
    block = results.readme_block(parsed)
    assert block.startswith(results.readme_table(parsed))
    lines = block.splitlines()
    heads = [line for line, after in zip(lines, lines[1:]) if after.startswith("|---")]
    assert [head.split(" | ")[0] for head in heads] == [
        "| scgikit", "| HTTP servers, behind nginx", "| I/O-bound, each request waits 10 ms",
        "| Django and FastAPI", "| Memory and start-up, 2 workers, PSS after 2000 requests"]


def test_a_run_without_the_other_servers_sections_gives_the_scgi_table_alone():
    parsed = results.parse(written())
    assert results.peer_tables(parsed) == ""
    assert results.readme_block(parsed) == results.readme_table(parsed)


def test_a_section_that_lacks_a_table_the_readme_needs_is_named():
    text = with_others(("io",))
    cut = text[:text.index("### io-256")]
    with pytest.raises(results.ResultsError, match=r"no table 'io-256' under '## I/O-bound"):
        block_of(cut)


# --- scripts/make-docs ------------------------------------------------------------------------

def tree_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    for part in ("scripts/make-docs", "README.md", "docs/options.md", "docs/performance.md",
                 "bench/results.py", "bench/run.py", "bench/lineup.py", "bench/RESULTS.md",
                 "bench/performance.md.in"):
        (copy / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, copy / part)
    shutil.copytree(ROOT / "src" / "scgikit", copy / "src" / "scgikit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return copy


def test_make_docs_leaves_the_tree_as_it_is(tmp_path):
    copy = tree_copy(tmp_path)
    made = subprocess.run([sys.executable, copy / "scripts" / "make-docs"], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    for part in ("README.md", "docs/options.md", "docs/performance.md"):
        assert (copy / part).read_text() == (ROOT / part).read_text(), part


def test_make_docs_says_in_one_line_what_results_lack(tmp_path):
    copy = tree_copy(tmp_path)
    path = copy / "bench" / "RESULTS.md"
    text = path.read_text()
    path.write_text(text[:text.index("## Over a unix socket")])
    made = subprocess.run([sys.executable, copy / "scripts" / "make-docs"], capture_output=True,
                          text=True, timeout=60)
    assert made.returncode == 1
    assert made.stderr.startswith("make-docs: bench/RESULTS.md has no section "
                                  "'## Over a unix socket...'")
    assert len(made.stderr.splitlines()) == 1
    assert (copy / "README.md").read_text() == README.read_text()  # left as it was
