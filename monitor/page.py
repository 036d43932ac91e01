"""The monitor's page: one evaluation as a self-contained HTML page a person on call can read.

    html = render(snapshot(result, layout, window, recent, model=..., window_text=...))

The page has no script and loads nothing: charts are inline SVG, styles inline, and the
Content-Security-Policy meta forbids scripts and every fetch, so even a name that slipped past the
escaping could neither run nor call out. Every name from a schema or a message is escaped. Layout:
the header (model, task, window, records, label coverage, what is flagged, linked), a table of
every column sorted by statistic / threshold (closest to alarm first), one section per feature in
that order (`#feature-<name>`, see `snapshot.anchor`), the model's outputs, then performance.

`PageCache` renders on request, once per evaluation: the monitor's loop only publishes what it
evaluated (`publish`, an attribute assignment), HTTP threads render it under the cache's own
lock, and the loop never waits for a page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from monitor.charts import distribution, short_number, sparkline, text, timeline
from monitor.drift import DriftResult, Evaluated
from monitor.snapshot import Column, History, Performance, Snapshot, anchor, snapshot
from monitor.windows import PaneLayout

CONTENT_TYPE = "text/html; charset=utf-8"
# Also sent as a header by whoever serves the page; the meta tag covers a saved file.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)
TESTS = {"ks": "KS D", "chi2": "χ²"}
SCALES = {"window": "whole window", "recent": "newest half"}
HEAD = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<link rel="icon" href="data:,">'
)  # no favicon request


def render(snap: Snapshot) -> str:
    """The page of one evaluation (a pure function of the snapshot)."""
    features = sorted(snap.features, key=_closest)
    flagged = ", ".join(a.subject for a in snap.alerts) or "nothing flagged"
    return "".join(
        [
            HEAD,
            f"<title>{text(snap.model)} drift: {text(flagged)}</title>",
            f"<style>{STYLE}</style></head><body>",
            _header(snap),
            _summary(snap, features),
            '<section id="features"><h2>Features</h2><div class="cards">',
            *(_card(c, snap) for c in features),
            '</div></section><section id="outputs"><h2>Model outputs</h2><div class="cards">',
            *(_card(c, snap) for c in snap.outputs),
            "</div></section>",
            _performance(snap.performance, snap),
            _footer(snap),
            "</body></html>",
        ]
    )


class PageCache:
    """The latest evaluation's page, rendered at most once per evaluation key.

    The loop calls `publish(key, build)` with a callable that makes the snapshot from references
    it will not mutate (the result and its aggregated panes, a tuple of history points): one
    attribute assignment. `page()` (HTTP threads) renders when the key changed, under a lock only
    HTTP threads take. Key: anything that changes when the page would, e.g. (result.pane,
    result.joined), since labels join after a pane is evaluated."""

    def __init__(self, renderer: Callable[[Snapshot], str] = render) -> None:
        self._render = renderer
        self._source: tuple[Hashable, Callable[[], Snapshot]] | None = None
        self._lock = threading.Lock()
        self._key: Hashable = object()
        self._page = b""
        self.renders = 0

    def publish(self, key: Hashable, build: Callable[[], Snapshot]) -> None:
        self._source = (key, build)  # one reference, replaced whole: readers see old or new

    def page(self) -> bytes:
        """UTF-8 HTML of the latest published evaluation (a waiting page before the first)."""
        source = self._source
        if source is None:
            return WAITING
        key, build = source
        with self._lock:
            if key != self._key:
                self._page = self._render(build()).encode("utf-8")
                self._key = key
                self.renders += 1
            return self._page

    def answer(self) -> tuple[str, bytes, dict[str, str]]:
        """The page as `contract.service.serve_metrics` serves it: content type, body, headers."""
        return (
            CONTENT_TYPE,
            self.page(),
            {"Content-Security-Policy": CSP, "Cache-Control": "no-store"},
        )


class PagePublisher:
    """The loop's side of the page: after each evaluation, `publish(evaluated)` adds it to the
    history and hands the cache a snapshot to build when someone asks (the result and the panes it
    tested are copies the loop never touches again). `monitor run` and `monitor evaluate` share it.

    describe: pane id -> the window in words (`PaneWindow.describe`); order: the schema's category
    order (`snapshot.order_from_schema`)."""

    def __init__(
        self,
        cache: PageCache,
        model: str,
        layout: PaneLayout,
        describe: Callable[[int], str],
        order: Mapping[str, Sequence[str]],
        history: int = 60,
    ) -> None:
        self.cache, self.model, self.layout, self.describe, self.order = (
            cache,
            model,
            layout,
            describe,
            order,
        )
        self.history = History(history)

    def record(self, results: Sequence[DriftResult]) -> None:
        """Each closed pane's evaluation into the timelines (the loop evaluates them in a batch)."""
        for result in results:
            self.history.add(result, result.estimate)

    def publish(self, evaluated: Evaluated) -> None:
        """The latest window (labels joined since included) as the page's next snapshot."""
        result = evaluated.result
        self.history.add(result, result.estimate)  # replaces the point of a pane evaluated again
        self.cache.publish(
            (result.pane, result.joined, result.records),
            partial(
                snapshot,
                result,
                self.layout,
                evaluated.window,
                evaluated.recent,
                model=self.model,
                window_text=self.describe(result.pane),
                history=self.history.points,
                estimate=result.estimate,
                order=self.order,
                evaluated_ms=int(time.time() * 1000),
            ),
        )


WAITING = (
    f"{HEAD}<title>drift monitor: waiting</title></head><body><p>No window has been "
    "evaluated yet: the page shows once the first step of records has arrived.</p>"
    "</body></html>"
).encode()


# -- sections ------------------------------------------------------------------------------------
def _header(snap: Snapshot) -> str:
    coverage = "n/a" if snap.label_coverage is None else f"{snap.label_coverage:.0%}"
    facts = [
        ("Window", f"{snap.window} (pane {snap.pane})"),
        ("Records", f"{snap.records:,}"),
        ("Labels", coverage),
    ]
    if snap.evaluated_ms is not None:
        facts.append(("Evaluated", _time(snap.evaluated_ms)))
    if snap.alerts:
        links = "".join(
            f'<li><a href="#{text(a.anchor)}"><b>{text(a.name)}</b> {text(a.subject)}</a></li>'
            for a in snap.alerts
        )
        status = f'<div class="status firing"><span>Flagged in this window</span><ul>{links}</ul>'
    elif snap.ready:
        status = '<div class="status calm"><span>Nothing flagged in this window</span>'
    else:
        status = (
            '<div class="status waiting"><span>Not tested yet: the window does not hold '
            "enough records</span>"
        )
    dl = "".join(f"<div><dt>{name}</dt><dd>{text(value)}</dd></div>" for name, value in facts)
    return (
        f"<header><h1>{text(snap.model)} <small>{text(snap.task)} · drift monitor</small></h1>"
        f'<dl class="facts">{dl}</dl>{status}</div></header>'
    )


def _summary(snap: Snapshot, features: list[Column]) -> str:
    head = "".join(
        f"<th>{name}</th>"
        for name in (
            "Column",
            "Test",
            "Statistic",
            "Threshold",
            "÷ threshold",
            "p-value",
            "Scale",
            "Last evaluations",
        )
    )
    rows = [_row(c) for c in features]
    rows.append('<tr class="group"><th colspan="8">Model outputs</th></tr>')
    rows += [_row(c) for c in snap.outputs]
    return (
        '<section id="summary"><h2>Columns, closest to alarm first</h2>'
        f'<table class="summary"><tr>{head}</tr>{"".join(rows)}</table></section>'
    )


def _row(c: Column) -> str:
    ratio = c.ratio
    meter = (
        ""
        if ratio is None
        else (
            f'<span class="meter"><span style="width:'
            f'{min(ratio, 2) * 50:.1f}%"></span></span> {ratio:.2f}'
        )
    )
    cells = [
        f'<a href="#{text(anchor(c.name))}">{text(c.name)}</a>',
        TESTS[c.test],
        _num(c.compared),
        _num(c.threshold),
        meter,
        _p(c.p_value),
        SCALES.get(c.scale or "", ""),
        sparkline(c.history),
    ]
    css = ["", "", "num", "num", "ratio", "num", "", ""]
    tds = "".join(
        f'<td class="{k}">{cell}</td>' if k else f"<td>{cell}</td>" for k, cell in zip(css, cells)
    )
    return f'<tr class="{_state(c)}">{tds}</tr>'


def _card(c: Column, snap: Snapshot) -> str:
    chart, state, ident = c.chart, _state(c), text(anchor(c.name))
    # the numbers shown, unrounded, for tests and for whoever saves the page
    data = (
        f' data-name="{text(c.name)}" data-test="{c.test}" data-statistic="{_raw(c.statistic)}"'
        f' data-threshold="{_raw(c.threshold)}" data-p-value="{_raw(c.p_value)}"'
        f' data-ratio="{_raw(c.ratio)}" data-scale="{c.scale or ""}"'
        f' data-records="{chart.records}"'
    )
    badge = {
        "flagged": '<span class="badge">drift</span>',
        "near": '<span class="badge near">near</span>',
    }.get(state, "")
    parts = [
        f'<article class="column {state}" id="{ident}"{data}>',
        f'<h3><a href="#{ident}">{text(c.name)}</a>{badge}</h3>',
        f'<p class="verdict">{_verdict(c, snap)}</p>',
        f'<p class="legend"><span class="key ref"></span>reference ({chart.reference_rows:,} '
        f'rows) <span class="key win"></span>window{_scale(c)} ({chart.records:,} records)'
        f"{_unit(c)}</p>",
        distribution(chart),
    ]
    if chart.gap is not None:
        parts.append(
            f'<p class="note">The two CDFs differ most ({_num(chart.gap[0])}) at '
            f"{text(c.name)} = {text(_num(chart.gap[1]))}.</p>"
        )
    if c.unseen:
        names = ", ".join(f"<b>{text(name)}</b> {count:,}" for name, count in c.unseen)
        parts.append(f'<p class="unseen">Categories the reference never saw: {names}</p>')
    trend = sparkline(c.history)
    if trend:
        parts.append(
            f'<p class="trend">{trend} statistic ÷ threshold, last {len(c.history)} evaluations</p>'
        )
    rows = "".join(
        f'<tr class="{b.kind}"><td>{text(b.label)}</td>'
        + "".join(
            f'<td class="num">{cell}</td>'
            for cell in (
                f"{b.reference:,}",
                _share(b.reference, chart.reference_rows),
                f"{b.window:,}",
                _share(b.window, chart.records),
            )
        )
        + "</tr>"
        for b in chart.bars
    )
    parts.append(
        '<details><summary>Numbers</summary><table class="numbers"><tr><th>Bin</th>'
        f"<th>Reference</th><th>%</th><th>Window</th><th>%</th></tr>{rows}</table>"
        "</details></article>"
    )
    return "".join(parts)


def _verdict(c: Column, snap: Snapshot) -> str:
    if c.compared is None:
        return "Not tested yet: the window does not hold enough records."
    name = TESTS[c.test] if snap.calibrated or c.test == "ks" else "total variation"
    sign = "&gt;" if c.detected else "≤"
    ratio = "" if c.ratio is None else f" ({c.ratio:.2f}×)"
    extra = f" · total variation {_num(c.distance)}" if c.test == "chi2" and snap.calibrated else ""
    return (
        f"{name} <b>{_num(c.compared)}</b> {sign} threshold {_num(c.threshold)}{ratio} · "
        f"p = {_p(c.p_value)}{extra} · decided on the {SCALES.get(c.scale or '', '')} "
        f"({c.records:,} records)"
    )


def _performance(p: Performance, snap: Snapshot) -> str:
    value = _rate if p.measure == "error rate" else _num
    realized = (
        f"<b>{value(p.realized)}</b> over the latest {p.joined:,} labelled records"
        if p.realized is not None
        else f"not known yet ({p.joined:,} labelled records)"
    )
    estimated = "not available"
    if p.estimated is not None:
        estimated = f"<b>{value(p.estimated)}</b> from the inputs, without labels"
        if p.estimated_drift is not None:
            change = _change(p.estimated_drift, p.estimated_threshold, p.estimated_detected)
            estimated += f" · change {change}"
        if p.outside_share:
            estimated += f" · {p.outside_share:.1%} of the records outside the reference's range"
    rows = [
        (f"Realized {p.measure}", realized),
        (f"Estimated {p.measure}", estimated),
        (f"Reference {p.measure}", value(p.reference) + " (held-out rows)"),
    ]
    if p.drift is not None:
        rows.append(("Change", _change(p.drift, p.threshold, p.detected)))
    body = "".join(f"<tr><th>{name}</th><td>{cell}</td></tr>" for name, cell in rows)
    chart = ""
    points = snap.history
    if points:
        lines = [
            ("realized", [q.realized for q in points]),
            ("estimated", [q.estimated for q in points]),
        ]
        keys = '<span class="key realized"></span>realized '
        if any(q.estimated is not None for q in points):
            keys += '<span class="key estimated"></span>estimated '
        chart = (
            f'<p class="legend">{keys}<span class="key level"></span>reference, last '
            f"{len(points)} evaluations</p>"
            + timeline(lines, p.reference, value, points[0].pane, points[-1].pane)
        )
    flagged = "flagged" if p.detected or p.estimated_detected else ""
    return (
        f'<section id="performance" class="{flagged}">'
        f'<h2>Performance</h2><table class="perf">{body}</table>{chart}</section>'
    )


def _footer(snap: Snapshot) -> str:
    how = (
        "Thresholds are calibrated: each is the quantile of the statistic that a window without "
        "drift exceeds with this evaluation's share of the false-alarm budget "
        "(<code>--ert</code>)."
        if snap.calibrated
        else "Fixed thresholds (<code>--thresholds fixed</code>): KS D or total variation above 0.1."
    )
    return (
        f"<footer><p>{how} Every column is also tested on the newest half of the window; the "
        "scale shown is the one closer to its threshold. Histograms: reference and window over "
        "the bins the monitor keeps, merged for display; the tails hold the reference's outer "
        "0.5% each side and whatever the window has beyond. Hover a bar for its counts, or "
        "open Numbers.</p></footer>"
    )


# -- formatting ----------------------------------------------------------------------------------
def _closest(c: Column) -> tuple:
    # flagged and closest to alarm first; untested columns last, in the result's order
    return (c.ratio is None, -(c.ratio or 0.0))


def _state(c: Column) -> str:
    if c.detected:
        return "flagged"
    return "near" if c.ratio is not None and c.ratio >= 0.8 else ""


def _unit(c: Column) -> str:
    # a histogram's bars differ in width: heights are shares per `unit` of the value
    unit = c.chart.unit
    return "" if unit is None else f" · share per {text(short_number(unit))} {text(c.name)}"


def _change(score: float, threshold: float | None, detected: bool | None) -> str:
    sign = "&gt;" if detected else "≤"
    limit = "n/a" if threshold is None else f"{threshold:+.1%}"
    return f"{score:+.1%} {sign} threshold {limit}"


def _scale(c: Column) -> str:
    return ", newest half" if c.scale == "recent" else ""


def _num(x: float | None) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def _rate(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.1%}"


def _p(x: float | None) -> str:
    if x is None or x != x:
        return "n/a"
    return "&lt; 1e-300" if x == 0 else f"{x:.2g}"


def _raw(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "n/a"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


STYLE = """
:root{--ref:#b9c3cf;--win:#2563eb;--alarm:#dc2626;--near:#d97706;--ink:#1f2937;--muted:#6b7280;
  --line:#e5e7eb}
*{box-sizing:border-box}
body{margin:0;padding:20px 28px;font:14px/1.45 system-ui,"DejaVu Sans",sans-serif;
  color:var(--ink);background:#f8fafc}
h1{margin:0 0 6px;font-size:22px}
h1 small{font-weight:400;color:var(--muted);font-size:15px}
h2{font-size:17px;margin:26px 0 10px}
h3{margin:0 0 4px;font-size:16px}
a{color:inherit}
.facts{display:flex;flex-wrap:wrap;gap:6px 28px;margin:6px 0 12px}
.facts div{display:flex;gap:6px}
.facts dt{color:var(--muted)}
.facts dd{margin:0;font-weight:600}
.status{padding:10px 14px;border-radius:6px;font-weight:600}
.status ul{display:inline;margin:0;padding:0}
.status li{display:inline;margin-left:14px}
.status.firing{background:#fee2e2;color:#991b1b}
.status.calm{background:#dcfce7;color:#166534}
.status.waiting{background:#f3f4f6;color:var(--muted)}
table{border-collapse:collapse}
.summary{background:#fff;border:1px solid var(--line);min-width:760px}
.summary th,.summary td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;
  white-space:nowrap}
.summary tr.flagged td:first-child{border-left:4px solid var(--alarm);font-weight:700}
.summary tr.near td:first-child{border-left:4px solid var(--near)}
.summary tr.group th{background:#f1f5f9}
.num{text-align:right;font-variant-numeric:tabular-nums}
.meter{display:inline-block;width:80px;height:8px;vertical-align:middle;border-radius:2px;
  background:linear-gradient(90deg,transparent 49.5%,var(--alarm) 49.5%,var(--alarm) 50.5%,
  transparent 50.5%),#eef2f7}
.meter span{display:block;height:8px;background:var(--win);border-radius:2px}
tr.flagged .meter span{background:var(--alarm)}
tr.near .meter span{background:var(--near)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.column{background:#fff;border:1px solid var(--line);border-left:5px solid var(--line);
  border-radius:6px;padding:12px 14px}
.column.flagged{border-left-color:var(--alarm)}
.column.near{border-left-color:var(--near)}
.badge{margin-left:8px;padding:1px 7px;border-radius:9px;background:var(--alarm);color:#fff;
  font-size:12px;vertical-align:2px;text-transform:uppercase}
.badge.near{background:var(--near)}
.verdict{margin:2px 0 6px}
.legend{margin:0;color:var(--muted);font-size:12.5px}
.key{display:inline-block;width:11px;height:11px;margin:0 4px 0 10px;vertical-align:-1px;
  border-radius:2px}
.key.ref{background:var(--ref)}
.key.win{background:var(--win);opacity:.75}
.key.realized{background:var(--ink)}
.key.estimated{background:#7c3aed}
.key.level{background:var(--muted);height:2px;vertical-align:3px}
.note,.unseen,.trend{margin:4px 0;font-size:13px}
.unseen{color:#991b1b}
.trend{color:var(--muted)}
.trend svg{vertical-align:middle;margin-right:6px}
details{margin-top:6px;font-size:12.5px}
summary{cursor:pointer;color:var(--muted)}
.numbers td,.numbers th{padding:1px 8px;border-bottom:1px solid var(--line)}
svg.chart{display:block;max-width:100%;height:auto;margin-top:4px}
svg .ref{fill:var(--ref)}
svg .win{fill:var(--win);fill-opacity:.42;stroke:var(--win);stroke-width:1.2}
svg.bars .win{fill-opacity:.8;stroke:none}
svg .unseen .win{fill:var(--alarm);stroke:var(--alarm)}
svg .tail .ref{fill:#d6dce4}
svg .grid{stroke:var(--line)}
svg .tickmark{stroke:var(--muted)}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:var(--muted)}
svg text.unseen{fill:var(--alarm)}
svg .gap{stroke:var(--ink);stroke-dasharray:3 3}
svg .gaplabel{fill:var(--ink);font-size:10.5px}
svg .limit{stroke:var(--alarm);stroke-dasharray:3 2;stroke-width:1}
svg .trend{fill:none;stroke:var(--win);stroke-width:1.5}
svg circle.over{fill:var(--alarm)}
svg circle.last{fill:var(--win)}
svg polyline.realized{fill:none;stroke:var(--ink);stroke-width:1.8}
svg circle.realized{fill:var(--ink)}
svg polyline.estimated{fill:none;stroke:#7c3aed;stroke-width:1.8;stroke-dasharray:5 3}
svg circle.estimated{fill:#7c3aed}
svg .level{stroke:var(--muted);stroke-dasharray:6 4}
#performance{margin-top:14px;background:#fff;border:1px solid var(--line);
  border-left:5px solid var(--line);
  border-radius:6px;padding:4px 14px 12px;max-width:620px}
#performance.flagged{border-left-color:var(--alarm)}
#performance h2{margin-top:10px}
.perf th{text-align:left;font-weight:400;color:var(--muted);padding:2px 16px 2px 0}
code{white-space:nowrap}
footer{margin-top:26px;color:var(--muted);font-size:12.5px;max-width:980px}
"""
