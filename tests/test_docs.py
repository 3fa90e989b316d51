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
import results  # noqa: E402
import run as bench  # noqa: E402

README = ROOT / "README.md"
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
    assert len(section.strip("\n").splitlines()) + 1 <= 40  # with its heading
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
