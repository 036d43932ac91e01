"""The monitor's page: its cost with hand-written SVG (monitor.charts) against matplotlib, and the
cost of loading it in headless Chromium over CDP (tests/browser.py) against Playwright.

    .venv/bin/python bench/page_bench.py [--repeats 30] [--browser-runs 3]

The page of one evaluation under carat-shift (6 features + the prediction, 12 evaluations of
history): time to build the snapshot, to render the page, and the page's size; then the same
charts (7 overlaid distributions + the performance timeline) drawn by matplotlib's SVG backend
through its object API (`Figure`, no pyplot state; text kept as text, svg.fonttype none, its
smallest and fastest setting). Medians of `--repeats`. Then the page served on loopback and
loaded by Debian's Chromium: start, load, full-page screenshot, close, with tests/browser.py and,
when `playwright` is importable (a throwaway venv: `pip install playwright==1.65.2`, never
`playwright install`), with Playwright driving the same /usr/bin/chromium. Prints markdown
(bench/PAGE_RESULTS.md).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from monitor_bench import batch_of, heldout, model_schema, reference_from, scenario_stream  # noqa: E402

from monitor.drift import DriftMonitor  # noqa: E402
from monitor.histograms import Chart  # noqa: E402
from monitor.page import render  # noqa: E402
from monitor.snapshot import History, describe_window, order_from_schema, snapshot  # noqa: E402
from monitor.windows import CountWindow  # noqa: E402


def carat_shift_snapshot(records: int = 13_000, onset: int = 10_000):
    """The page's inputs after `records` of carat-shift: (build, snapshot)."""
    frame = heldout()
    reference = reference_from(frame)
    chunk, predictions, prices = scenario_stream(frame, None, "carat-shift", records, onset, seed=1)
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))
    history = History(12)
    ids = np.array([str(i) for i in range(records)], dtype=object)
    ts = np.arange(records, dtype=np.int64) * 10
    names = model_schema().feature_names
    for start in range(0, records, 250):
        rows = slice(start, start + 250)
        batch = batch_of({c: chunk[c][rows] for c in names}, ids[rows], ts[rows], predictions[rows])
        for result in monitor.update(batch):
            history.add(result)
        monitor.update_labels(ids[rows], ts[rows], prices[rows])
    result = monitor.result()
    q, window = result.pane, monitor.window
    whole, recent = window.aggregate(q), window.aggregate(q, window.panes_per_window // 2)
    order = order_from_schema(model_schema())

    def build():
        return snapshot(
            result,
            window.layout,
            whole,
            recent,
            model="diamonds",
            window_text=describe_window(1000, "records"),
            history=history.points,
            order=order,
        )

    return build, build()


def matplotlib_page(snap) -> bytes:
    """The same charts drawn by matplotlib: one SVG per chart, as the page would inline them."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    out = io.BytesIO()
    for column in (*snap.features, *snap.outputs):
        fig = Figure(figsize=(5.2, 1.9), dpi=100)
        FigureCanvasSVG(fig)
        _draw(fig.add_subplot(), column.chart)
        fig.savefig(out, format="svg")
    fig = Figure(figsize=(5.2, 1.5), dpi=100)
    FigureCanvasSVG(fig)
    ax = fig.add_subplot()
    ax.plot([p.realized for p in snap.history], color="#1f2937")
    ax.axhline(snap.performance.reference, color="#6b7280", linestyle="--")
    fig.savefig(out, format="svg")
    return out.getvalue()


def _draw(ax, chart: Chart) -> None:
    m, n = chart.reference_rows, max(chart.records, 1)
    if chart.kind == "histogram":
        unit, inner = chart.unit, chart.bars[1:-1]
        lefts = [inner[0].lo - unit * 1.2, *(b.lo for b in inner), inner[-1].hi + unit * 0.2]
        widths = [unit, *(b.hi - b.lo for b in inner), unit]
    else:
        lefts, widths = list(range(len(chart.bars))), [0.8] * len(chart.bars)
        ax.set_xticks([x + 0.4 for x in lefts], [b.label for b in chart.bars])
    scale = [(chart.unit or w) / w for w in widths]
    reference = [b.reference / m * s for b, s in zip(chart.bars, scale)]
    window = [b.window / n * s for b, s in zip(chart.bars, scale)]
    ax.bar(lefts, reference, widths, align="edge", color="#b9c3cf")
    ax.bar(lefts, window, widths, align="edge", color="#2563eb", alpha=0.42, edgecolor="#2563eb")
    if chart.gap is not None:
        ax.axvline(chart.gap[1], linestyle="--", color="#1f2937")


def median_ms(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def browsers(html: bytes, runs: int) -> dict[str, list[float]]:
    """Seconds per run (start, load, screenshot, close) with each harness available."""
    folder = Path(tempfile.mkdtemp())
    (folder / "index.html").write_bytes(html)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/index.html"
    from tests.browser import FLAGS, Browser

    def cdp() -> None:
        with Browser() as browser:
            assert browser.visit(url).requests == [url]
            browser.screenshot()

    harnesses = {"CDP over a pipe (tests/browser.py)": cdp}
    try:
        from playwright.sync_api import sync_playwright

        def playwright() -> None:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(
                    tempfile.mkdtemp(),
                    executable_path="/usr/bin/chromium",
                    headless=True,
                    args=[f for f in FLAGS if f != "--headless"],
                    viewport={"width": 1280, "height": 900},
                )
                page = context.new_page()
                page.goto(url)
                page.screenshot(full_page=True)
                context.close()

        harnesses["Playwright 1.65.2, same Chromium"] = playwright
    except ImportError:
        pass
    times: dict[str, list[float]] = {name: [] for name in harnesses}
    for _ in range(runs):  # alternating, so both see the same load
        for name, run in harnesses.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    server.shutdown()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--browser-runs", type=int, default=3)
    args = parser.parse_args(argv)
    build, snap = carat_shift_snapshot()
    html = render(snap).encode()
    start = time.perf_counter()
    import matplotlib  # first import: font cache, backends
    from matplotlib.backends import backend_svg  # noqa: F401

    imported = (time.perf_counter() - start) * 1000
    matplotlib.rcParams["svg.fonttype"] = "none"
    svg = matplotlib_page(snap)
    few = max(args.repeats // 3, 3)
    rows = [
        ("snapshot (from result + panes)", median_ms(build, args.repeats), None),
        (
            "render, hand-written SVG (whole page)",
            median_ms(lambda: render(snap), args.repeats),
            len(html),
        ),
        (
            "matplotlib SVG (the 8 charts only)",
            median_ms(lambda: matplotlib_page(snap), few),
            len(svg),
        ),
    ]
    print(
        f"Diamonds page under carat-shift (6 features + prediction, 12 evaluations of history), "
        f"median of {args.repeats} (matplotlib: {few}).\n"
    )
    print("| step | ms | bytes |\n|---|---:|---:|")
    for name, ms, size in rows:
        print(f"| {name} | {ms:.1f} | {'' if size is None else f'{size:,}'} |")
    print(f"| import matplotlib + SVG backend (once per process) | {imported:.0f} | |")
    if args.browser_runs:
        print(
            f"\nStart Chromium, load the page from loopback, full-page screenshot, close "
            f"({args.browser_runs} alternating runs, seconds):\n"
        )
        print("| harness | median | runs |\n|---|---:|---|")
        for name, seconds in browsers(html, args.browser_runs).items():
            runs = ", ".join(f"{s:.2f}" for s in seconds)
            print(f"| {name} | {statistics.median(seconds):.2f} | {runs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
