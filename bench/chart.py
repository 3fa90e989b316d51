"""docs/performance.svg: scgikit's requests/s over each peer's, per workload, from
bench/RESULTS.md.  `bench/run --write` runs it after writing RESULTS.md; run it alone
(`bench/.venv/bin/python bench/chart.py`) to draw the chart of the results there.

One panel per section of the run (results.CHART_SECTIONS: the SCGI servers over TCP and a
unix socket, the HTTP servers, the I/O-bound workload, the frameworks), one group of bars per
workload, one bar per peer: the ratio in brackets of the table's "req/s via nginx" column,
scgikit's figure over the peer's (above 1: scgikit serves more), on a log scale so that 2×
and 0.5× stand as far from 1.  Needs matplotlib (bench/run installs it in bench/.venv).
The SVG names the run it was drawn from (its description: RESULTS.md's "Run on" line), and
is the same file for the same results: its ids are salted with a constant, and it has no date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("svg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results  # noqa: E402

SVG = results.HERE.parent / "docs" / "performance.svg"
TICKS = [0.125, 0.25, 0.5, 1, 2, 4, 8]


def draw(parsed: results.Results, out: Path) -> None:
    panels = results.chart_panels(parsed)
    if not panels:
        raise results.ResultsError("bench/RESULTS.md has no table of scgikit against a peer")
    plt.rcParams.update({"svg.hashsalt": "scgikit-bench", "svg.fonttype": "none",
                         "font.size": 9})
    height = 3.4 * len(panels) + 0.4
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, height), squeeze=False)
    values = [ratio for panel in panels for _, group in panel.groups for _, ratio in group]
    low, high = min(values + [0.5]) / 1.3, max(values + [2]) * 1.3
    for ax, panel in zip(axes[:, 0], panels):
        # a colour per peer of the panel, in the order they come
        order = list(dict.fromkeys(peer for _, group in panel.groups for peer, _ in group))
        colours = {peer: plt.get_cmap("tab10")(n % 10) for n, peer in enumerate(order)}
        shown: set[str] = set()
        for n, (_, group) in enumerate(panel.groups):
            width = 0.8 / len(group)
            for m, (peer, ratio) in enumerate(group):
                x = n - 0.4 + width * (m + 0.5)
                ax.bar(x, ratio, width * 0.9, color=colours[peer],
                       label=None if peer in shown else peer)
                ax.text(x, ratio, f"{ratio:.2f}", ha="center",
                        va="bottom" if ratio >= 1 else "top", fontsize=6)
                shown.add(peer)
        ax.axhline(1, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(low, high)
        ax.yaxis.set_major_locator(FixedLocator([t for t in TICKS if low <= t <= high]))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_xticks(range(len(panel.groups)), [w for w, _ in panel.groups])
        ax.set_xlim(-0.5, len(panel.groups) - 0.5)
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.set_ylabel("scgikit req/s ÷ peer's")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    figure.suptitle("scgikit's requests/s through nginx over each peer's (above 1×: scgikit "
                    "serves more)", x=0.01, ha="left", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height))
    figure.savefig(out, format="svg", metadata={"Date": None, "Description": parsed.run,
                                                "Title": "scgikit against its peers"})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chart.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=results.RESULTS,
                        help="the results to draw (default bench/RESULTS.md)")
    parser.add_argument("--out", type=Path, default=SVG,
                        help="the SVG to write (default docs/performance.svg)")
    args = parser.parse_args(argv)
    try:
        draw(results.parse(args.results.read_text()), args.out)
    except results.ResultsError as exc:
        print(f"bench/chart.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
