"""The monitor's page without a browser: the numbers it shows are the evaluation's (and the
gauges'), its bars are the window's bin counts, names are escaped, closest to alarm comes first."""

from __future__ import annotations

import json
import threading
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.drift import DriftMonitor, DriftResult
from monitor.histograms import Bar, Chart
from monitor.metrics import MonitorMetrics
from monitor.page import CSP, WAITING, PageCache, render
from monitor.reference import PREDICTION, Reference
from monitor.snapshot import (
    Column,
    History,
    Performance,
    Snapshot,
    anchor,
    describe_window,
    snapshot,
)
from monitor.windows import CountWindow, Pane, PredictionBatch

M = 4000
SCRIPT = "<script>alert(1)</script>"


def toy_reference(names: dict[str, str] | None = None) -> Reference:
    """x: continuous (quantile bins), size: 2 decimals (exact bins, a histogram), k: 6 values (a bar
    each), c: 3 categories; `names` renames columns (for the escaping test)."""
    names = names or {}
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, M)
    numeric = {
        "x": x,
        "size": np.round(rng.gamma(2.0, 0.4, M), 2) + 0.01,
        "k": rng.integers(0, 6, M).astype(float),
    }
    categorical = {"c": rng.choice(["a", "b", "c"], M, p=[0.5, 0.3, 0.2])}
    predictions = 2 * x + rng.normal(0, 0.5, M)
    return Reference.from_arrays(
        {names.get(k, k): v for k, v in numeric.items()},
        {names.get(k, k): v for k, v in categorical.items()},
        predictions,
        predictions + rng.normal(0, 1, M),
    )


def drifted(
    reference: Reference, names: dict[str, str] | None = None, n: int = 2000, unseen: str = "zz"
) -> tuple[DriftMonitor, list[DriftResult]]:
    """A monitor fed n records in batches of 250: the first half like the reference, then size
    x1.3, k = 2.5 for 3% (a value the reference never had) and 5% of c an unseen category."""
    names = names or {}
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, n)
    cols = {
        "x": x,
        "size": np.round(rng.gamma(2.0, 0.4, n), 2) + 0.01,
        "k": rng.integers(0, 6, n).astype(float),
        "c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).astype(object),
    }
    half = n // 2
    cols["size"][half:] *= 1.3
    cols["k"][half:][rng.random(n - half) < 0.03] = 2.5
    cols["c"][half:][rng.random(n - half) < 0.05] = unseen
    predictions = 2 * x + rng.normal(0, 0.5, n)
    labels = predictions + rng.normal(0, 1, n)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    ts = np.arange(n, dtype=np.int64) * 100
    monitor = DriftMonitor(reference, CountWindow(reference, window=1000, step=250))
    results = []
    for start in range(0, n, 250):
        rows = slice(start, start + 250)
        results += monitor.update(
            PredictionBatch(
                ids[rows],
                ts[rows],
                predictions[rows],
                {names.get(f, f): cols[f][rows] for f in ("x", "size", "k")},
                {names.get("c", "c"): cols["c"][rows]},
            )
        )
        monitor.update_labels(ids[rows], ts[rows], labels[rows])
    return monitor, results


def page_of(monitor: DriftMonitor, history=(), **options):
    """(result, {scale: pane}, snapshot, html) of the monitor's latest window."""
    result = monitor.result()
    window = monitor.window
    panes = {
        "window": window.aggregate(result.pane),
        "recent": window.aggregate(result.pane, window.panes_per_window // 2),
    }
    options.setdefault("model", "toy")
    snap = snapshot(
        result,
        window.layout,
        panes["window"],
        panes["recent"],
        window_text=describe_window(1000, "records"),
        history=history,
        **options,
    )
    return result, panes, snap, render(snap)


class Page(HTMLParser):
    """The page's column cards (their data-* attributes), their bars, the text, the tags used."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.sections: dict[str, list[str]] = {}
        self.summary: list[str] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self._section: str | None = None
        self._card: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = attrs.get("class", "").split()
        self.tags.add(tag)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "article":
            self._card = {**attrs, "bars": [], "charts": 0}
            self.cards.append(self._card)
            self.sections.setdefault(self._section, []).append(attrs["id"])
        elif tag == "svg" and "chart" in classes and self._card is not None:
            self._card["charts"] += 1
        elif tag == "g" and "bar" in classes and self._card is not None:
            self._card["bars"].append(attrs)
        elif tag == "a" and self._section == "summary":
            self.summary.append(attrs["href"][1:])

    def handle_endtag(self, tag):
        if tag == "article":
            self._card = None

    def handle_data(self, data):
        self.text.append(data)

    def card(self, name: str) -> dict:
        return next(c for c in self.cards if c["data-name"] == name)


@pytest.fixture(scope="module")
def toy():
    reference = toy_reference()
    monitor, results = drifted(reference)
    history = History(12)
    for result in results:
        history.add(result)
    return (reference, monitor, *page_of(monitor, history.points))


def test_numbers_shown_are_the_evaluations_and_the_gauges(toy):
    reference, _, result, _, _, html = toy
    page = Page(html)
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, reference, topics={}, model="toy")
    metrics.show(result)
    assert result.ready and {f.name for f in result.features if f.detected} == {"size", "c"}
    for f in (*result.features, *result.outputs):
        card = page.card(f.name)
        assert float(card["data-statistic"]) == f.statistic
        assert float(card["data-threshold"]) == f.threshold
        assert float(card["data-p-value"]) == f.p_value
        assert card["data-scale"] == f.scale and int(card["data-records"]) == f.records
        assert ("flagged" in card["class"].split()) == f.detected
    gauge = registry.get_sample_value
    for f in result.features:
        card, labels = page.card(f.name), {"model": "toy", "feature": f.name}
        statistic = gauge("drift_feature_statistic", {**labels, "test": f.test})
        assert float(card["data-statistic"]) == statistic
        assert float(card["data-threshold"]) == gauge("drift_feature_threshold", labels)
        assert float(card["data-p-value"]) == gauge("drift_feature_pvalue", labels)
    prediction = float(page.card(PREDICTION)["data-statistic"])
    assert prediction == gauge("prediction_drift_statistic", {"model": "toy"})
    # what a person reads: the statistic, the threshold and the p-value, rounded
    size = next(f for f in result.features if f.name == "size")
    text = "".join(page.text)
    assert f"KS D {size.statistic:.4g} > threshold {size.threshold:.4g}" in text
    assert f"p = {size.p_value:.2g}" in text
    assert f"{result.rolling_mse:.4g} over the latest {result.joined:,} labelled records" in text
    assert f"last 1,000 records (pane {result.pane})" in text


def test_bars_are_the_window_bin_counts(toy):
    reference, monitor, result, panes, snap, html = toy
    page, layout = Page(html), monitor.window.layout
    tested = {f.name: f for f in (*result.features, *result.outputs)}
    for name, part in layout.slices.items():
        card, f = page.card(name), tested[name]
        pane: Pane = panes[f.scale]  # the chart shows the records its statistic was computed on
        counts = pane.counts[part]
        bins = layout.ks_columns.get(name)
        if bins is not None:
            fractions = np.diff(bins.reference_cdf, prepend=0.0)
            reference_counts = np.rint(fractions * reference.size).astype(int)
        else:
            reference_counts = layout.chi2_columns[name].counts
        assert card["charts"] == 1 and card["bars"]
        shown = 0
        for bar in card["bars"]:
            runs = [tuple(map(int, run.split(":"))) for run in bar["data-bins"].split(",") if run]
            names = json.loads(bar.get("data-names", "[]"))
            window = sum(int(counts[a:b].sum()) for a, b in runs)
            window += sum(pane.unseen[name][unseen] for unseen in names)
            assert int(bar["data-window"]) == window, (name, bar)
            reference_count = sum(int(reference_counts[a:b].sum()) for a, b in runs)
            assert int(bar["data-reference"]) == reference_count
            shown += window
        assert shown == pane.records  # every record of the window is in exactly one bar
    columns = {c.name: c for c in (*snap.features, *snap.outputs)}
    for name, f in tested.items():
        if f.test == "ks":  # the CDF gap drawn is the KS statistic shown
            assert columns[name].chart.gap[0] == pytest.approx(f.statistic, abs=1e-12)


def test_charts_fit_each_column(toy):
    snap, html = toy[-2:]
    charts = {c.name: c.chart for c in (*snap.features, *snap.outputs)}
    assert charts["k"].kind == "bars"
    assert [b.label for b in charts["k"].bars] == ["0", "1", "2", "3", "4", "5", "other values"]
    other = charts["k"].bars[-1]
    assert other.kind == "other" and other.reference == 0 and other.window > 0  # the k = 2.5
    assert charts["size"].kind == "histogram" and 12 <= len(charts["size"].bars) <= 32
    assert charts["x"].kind == "histogram" and charts[PREDICTION].kind == "histogram"
    assert [b.label for b in charts["c"].bars] == ["a", "b", "c", "zz"]
    assert charts["c"].bars[-1].kind == "unseen"
    assert "Categories the reference never saw: zz" in "".join(Page(html).text)


def test_columns_closest_to_alarm_first(toy):
    result, html = toy[2], toy[5]
    page = Page(html)
    ratio = {f.name: f.statistic / f.threshold for f in result.features}
    expected = [anchor(n) for n in sorted(ratio, key=lambda n: -ratio[n])]
    assert page.sections["features"] == expected
    assert page.summary == [*expected, anchor(PREDICTION)]
    assert page.sections["outputs"] == [anchor(PREDICTION)]
    assert set(expected[:2]) == {anchor("size"), anchor("c")}  # both flagged, ahead of the rest


def test_sort_puts_untested_columns_last():
    chart = Chart(
        kind="bars",
        bars=(Bar(label="a", bins=((0, 1),), reference=1, window=1),),
        records=1,
        reference_rows=1,
    )

    def tested(name: str, statistic: float, detected: bool) -> Column:
        return Column(
            name=name,
            role="feature",
            test="ks",
            chart=chart,
            statistic=statistic,
            distance=statistic,
            p_value=0.5,
            threshold=0.1,
            compared=statistic,
            detected=detected,
            scale="window",
            records=1,
        )

    columns = (
        tested("calm", 0.01, False),
        Column(name="untested", role="feature", test="ks", chart=chart),
        tested("alarm", 0.3, True),
        tested("near", 0.09, False),
    )
    snap = Snapshot(
        model="m",
        task="regression",
        window="last 1 records",
        pane=3,
        records=1,
        ready=True,
        label_coverage=None,
        alerts=(),
        features=columns,
        outputs=(),
        performance=Performance("MSE", None, None, 1.0, 0),
    )
    page = Page(render(snap))
    assert page.sections["features"] == [
        "feature-alarm",
        "feature-near",
        "feature-calm",
        "feature-untested",
    ]
    assert page.card("near")["class"].split() == ["column", "near"]


def test_names_from_schema_and_messages_are_escaped():
    names = {"x": SCRIPT, "c": "quote\"&'amp"}
    reference = toy_reference(names)
    monitor, _ = drifted(reference, names, unseen="<img src=x onerror=alert(2)>")
    html = page_of(monitor, model="<b>model</b>")[-1]
    lowered = html.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<b>model" not in lowered
    page = Page(html)
    text = "".join(page.text)  # shown as text
    assert SCRIPT in text and "<img src=x onerror=alert(2)>" in text and "<b>model</b>" in text
    assert {c["data-name"] for c in page.cards} >= {SCRIPT, "quote\"&'amp"}
    assert page.tags <= {
        "html",
        "head",
        "meta",
        "link",
        "title",
        "style",
        "body",
        "header",
        "h1",
        "small",
        "dl",
        "div",
        "dt",
        "dd",
        "span",
        "ul",
        "li",
        "a",
        "b",
        "section",
        "h2",
        "table",
        "tr",
        "th",
        "td",
        "article",
        "h3",
        "p",
        "svg",
        "g",
        "rect",
        "line",
        "text",
        "polyline",
        "circle",
        "details",
        "summary",
        "footer",
        "code",
    }
    assert anchor(SCRIPT) == "feature-%3Cscript%3Ealert%281%29%3C%2Fscript%3E"


def test_page_is_self_contained(toy):
    html = toy[-1]
    assert f'content="{CSP}"' in html and "default-src 'none'" in CSP
    # the only URL is SVG's namespace, which nothing fetches
    assert html.count("://") == html.count('xmlns="http://www.w3.org/2000/svg"')
    assert "src=" not in html and "url(" not in html and "@import" not in html


def test_estimate_absent_or_given(toy):
    monitor, result, snap, html = toy[1], toy[2], toy[4], toy[5]
    assert snap.performance.estimated is None
    assert "Estimated MSE</th><td>not available" in html
    assert 'polyline class="estimated"' not in html
    # the estimated-performance feature's result, as the page reads it (monitor.estimate.Estimate)
    estimate = SimpleNamespace(
        estimate=1.25, score=0.25, threshold=0.4, detected=False, outside_share=0.031
    )
    history = History()
    history.add(result, estimate)
    snap, html = page_of(monitor, history.points, estimate=estimate)[-2:]
    assert snap.performance.estimated == 1.25 and snap.performance.estimated_drift == 0.25
    assert (
        "<b>1.25</b> from the inputs, without labels · change +25.0% ≤ threshold +40.0% · "
        "3.1% of the records outside the reference's range"
    ) in html
    assert 'circle class="estimated"' in html  # one point of history: a dot


def test_window_not_ready_yet():
    monitor, results = drifted(toy_reference(), n=500)
    assert results and not results[-1].ready
    html = page_of(monitor)[-1]
    page = Page(html)
    assert "Not tested yet" in html and all(c["charts"] == 1 for c in page.cards)
    assert [c["data-statistic"] for c in page.cards] == [""] * len(page.cards)
    assert sum(int(b["data-window"]) for b in page.card("x")["bars"]) == 500


def test_classifier_outputs_and_anchors():
    rng = np.random.default_rng(3)
    m, n = 3000, 1500
    p_yes = rng.random(m)
    classes = np.where(p_yes > 0.5, "yes", "no")
    reference = Reference.from_arrays(
        {"age": rng.choice([22.0, 27.0, 32.0, 37.0], m)},
        {"job": rng.choice(["a", "b"], m)},
        classes,
        classes,
        task="classification",
        classes=("no", "yes"),
        probabilities={"no": 1 - p_yes, "yes": p_yes},
    )
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))
    p = np.clip(rng.random(n) + 0.2, 0, 1)
    monitor.update(
        PredictionBatch(
            np.array([str(i) for i in range(n)], dtype=object),
            np.arange(n) * 10,
            np.where(p > 0.5, "yes", "no").astype(object),
            {"age": rng.choice([22.0, 27.0], n)},
            {"job": rng.choice(["a", "b"], n).astype(object)},
            {"no": 1 - p, "yes": p},
        )
    )
    snap, html = page_of(monitor, order={PREDICTION: ["yes", "no"]})[-2:]
    assert Page(html).sections["outputs"] == [
        "feature-prediction",
        "feature-p%28no%29",
        "feature-p%28yes%29",
    ]
    assert [b.label for b in snap.outputs[0].chart.bars] == ["yes", "no"]
    assert snap.outputs[1].chart.kind == "histogram" and snap.performance.measure == "error rate"
    assert "Realized error rate" in html
    assert snap.features[0].chart.kind == "bars"  # age: 4 values


def test_cache_renders_once_per_evaluation(toy):
    snap = toy[4]
    built = []

    def build():
        built.append(1)
        return snap

    cache = PageCache()
    assert cache.page() == WAITING
    cache.publish((snap.pane, 750), build)
    pages = []
    threads = [threading.Thread(target=lambda: pages.append(cache.page())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pages)) == 1 and cache.renders == 1 and len(built) == 1
    assert pages[0].decode() == render(snap)
    cache.publish((snap.pane, 750), build)  # the same evaluation: no new render
    cache.page()
    assert cache.renders == 1
    cache.publish((snap.pane, 1000), build)  # labels joined since: a new page
    cache.page()
    assert cache.renders == 2


def test_history_keeps_the_last_evaluations():
    _, results = drifted(toy_reference())
    history = History(3)
    for result in results:
        history.add(result)
    history.add(results[-1])  # the same pane again (labels joined): replaced, not added
    assert [p.pane for p in history.points] == [r.pane for r in results[-3:]]
    size = next(f for f in results[-1].features if f.name == "size")
    assert dict(history.points[-1].ratios)["size"] == pytest.approx(size.statistic / size.threshold)


def test_describe_window():
    assert describe_window(1000, "records") == "last 1,000 records"
    end = 1_796_644_800_000  # 2026-12-07 12:00:00 UTC
    assert describe_window(300_000, "ms", end_ms=end) == "5 min ending 2026-12-07 12:00:00 UTC"
    assert describe_window(90_000, "ms") == "90 s" and describe_window(3_600_000, "ms") == "1 h"


# -- the diamonds model, as `monitor run` publishes it -------------------------------------------
DIAMONDS_RECORDS, DIAMONDS_ONSET = (
    3000,
    2500,
)  # the shift in the newest half: some columns decided there


@pytest.fixture(scope="module")
def diamonds(model_dir):
    """One evaluation of the diamonds monitor under carat-shift (the simulator's seeded draws, real
    rows with their own predictions and prices), the estimator on, labels joined: published to a
    PageCache and shown on the gauges exactly as `monitor.run.Processor.refresh` does."""
    from contract.artifacts import REFERENCE_FILE, read_reference
    from contract.schema_file import load_schema
    from monitor.baseline import load_baseline
    from monitor.page import PagePublisher
    from monitor.snapshot import order_from_schema
    from producer.grammar import parse_scenario
    from producer.simulate import SimulateConfig, generate_chunks, source_columns

    schema = load_schema(model_dir / "schema.yaml")
    baseline = load_baseline(schema, model_dir / REFERENCE_FILE)
    reference = baseline.reference
    assert baseline.estimator is not None
    frame = read_reference(model_dir / REFERENCE_FILE, schema)
    source = source_columns(frame, schema)
    source["prediction"] = frame[schema.prediction].to_numpy(np.float64)
    config = SimulateConfig(
        count=DIAMONDS_RECORDS,
        onset=DIAMONDS_ONSET,
        seed=5,
        scenario=parse_scenario("carat-shift", schema, source),
    )
    parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
    cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    monitor = DriftMonitor(
        reference, CountWindow(reference, 1000, 250, estimator=baseline.estimator)
    )
    registry = CollectorRegistry()
    metrics = MonitorMetrics(
        registry, reference, topics={}, model=schema.name, estimator=baseline.estimator
    )
    cache = PageCache()
    publisher = PagePublisher(
        cache,
        schema.name,
        monitor.window.layout,
        monitor.window.describe,
        order_from_schema(schema),
    )
    ids = np.array([f"d{i}" for i in range(DIAMONDS_RECORDS)], dtype=object)
    ts = np.arange(DIAMONDS_RECORDS, dtype=np.int64) * 10
    for start in range(0, DIAMONDS_RECORDS, 250):
        rows = slice(start, start + 250)
        publisher.record(
            monitor.update(
                PredictionBatch(
                    ids[rows],
                    ts[rows],
                    cols["prediction"][rows].astype(np.float64),
                    {c: cols[c][rows].astype(np.float64) for c in schema.numeric},
                    {c: cols[c][rows].astype(object) for c in schema.categorical},
                )
            )
        )
        # labels of all but the newest 100: coverage and the realized MSE are not trivial
        joined = slice(start, start + 250 - (100 if start + 250 >= DIAMONDS_RECORDS else 0))
        monitor.update_labels(
            ids[joined], ts[joined], cols[schema.target][joined].astype(np.float64)
        )
    # Processor.refresh: evaluate, publish to the page, show on the gauges
    result = monitor.result()
    publisher.publish(monitor.evaluated)
    metrics.show(result)
    html = cache.page().decode()
    return SimpleNamespace(
        schema=schema,
        reference=reference,
        monitor=monitor,
        result=result,
        evaluated=monitor.evaluated,
        registry=registry,
        html=html,
        page=Page(html),
    )


def shown_number(shown: str) -> tuple[float, float]:
    """A number as the page writes it ("1,234", "0.1235", "3.2e-05", "+25.0%") and half a unit of
    its last digit: the rounding a faithful page may have applied."""
    shown = shown.replace(",", "").replace("−", "-")
    scale = 0.01 if shown.endswith("%") else 1.0
    digits = shown.rstrip("%")
    mantissa, _, exponent = digits.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return float(digits) * scale, unit / 2 * scale


def assert_shown(shown: str, value: float) -> None:
    number, tolerance = shown_number(shown)
    assert abs(number - value) <= tolerance * (1 + 1e-9), (shown, value)


def section(html: str, ident: str) -> str:
    start = html.index(f'<section id="{ident}"')
    return html[start : html.index("</section>", start)]


def perf_rows(html: str) -> dict[str, str]:
    """The performance table, {row heading: its cell as text}."""
    import re

    return {
        name: re.sub(r"<[^>]+>", "", cell).replace("&gt;", ">")
        for name, cell in re.findall(
            r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", section(html, "performance")
        )
    }


def facts(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html[: html.index("</header>")]))


def test_diamonds_page_shows_the_gauges_of_the_same_evaluation(diamonds):
    """Every number of the page against the Prometheus series `MonitorMetrics.show` set from the
    same DriftResult: per feature, the prediction, realized and estimated performance, the window."""
    import re

    result, page, html, model = diamonds.result, diamonds.page, diamonds.html, diamonds.schema.name
    gauge = diamonds.registry.get_sample_value
    assert result.ready and result.estimate is not None and result.concept_drift is not None
    flagged = {f.name for f in result.features if f.detected}
    assert "carat" in flagged, "carat-shift must flag carat (the scenario under test)"
    for f in result.features:  # each card's unrounded numbers are the gauges'
        card, labels = page.card(f.name), {"model": model, "feature": f.name}
        assert card["data-test"] == f.test
        assert float(card["data-statistic"]) == gauge(
            "drift_feature_statistic", {**labels, "test": f.test}
        )
        assert float(card["data-threshold"]) == gauge("drift_feature_threshold", labels)
        assert float(card["data-p-value"]) == gauge("drift_feature_pvalue", labels)
        assert ("flagged" in card["class"].split()) == bool(gauge("drift_feature_detected", labels))
        # the verdict a person reads: the same numbers, rounded
        card_html = section(html, "features").split(f'id="{anchor(f.name)}"', 1)[1]
        verdict = re.search(r'<p class="verdict">(.*?)</p>', card_html)[1]
        shown = re.search(r"<b>([^<]+)</b> (?:&gt;|≤) threshold ([^ ]+) .*?p = ([^ ]+) ", verdict)
        assert shown, verdict
        assert_shown(shown[1], gauge("drift_feature_statistic", {**labels, "test": f.test}))
        assert_shown(shown[2], gauge("drift_feature_threshold", labels))
        if shown[3] != "&lt;":
            assert_shown(shown[3], gauge("drift_feature_pvalue", labels))
    # the prediction's card: the prediction_drift_* gauges (no p-value gauge exists for it)
    prediction = page.card(PREDICTION)
    assert float(prediction["data-statistic"]) == gauge(
        "prediction_drift_statistic", {"model": model}
    )
    assert float(prediction["data-threshold"]) == gauge(
        "prediction_drift_threshold", {"model": model}
    )
    assert ("flagged" in prediction["class"].split()) == bool(
        gauge("prediction_drift_detected", {"model": model})
    )
    # the header: records in the window and label coverage
    header = facts(html)
    assert header["Records"] == f"{int(gauge('window_records', {'model': model})):,}"
    coverage = gauge("label_coverage_ratio", {"model": model})
    assert 0 < coverage < 1
    assert_shown(header["Labels"], coverage)
    # performance: realized, estimated, reference and the two changes against their thresholds
    rows = perf_rows(html)
    realized = re.match(
        r"([\d.,e+-]+) over the latest ([\d,]+) labelled records", rows["Realized MSE"]
    )
    assert realized, rows
    assert_shown(realized[1], gauge("rolling_mse", {"model": model}))
    assert int(realized[2].replace(",", "")) == result.joined
    estimated = re.match(
        r"([\d.,e+-]+) from the inputs, without labels · change ([+\-\d.]+%) "
        r"(?:>|≤) threshold ([+\-\d.]+%)",
        rows["Estimated MSE"],
    )
    assert estimated, rows
    assert_shown(estimated[1], gauge("estimated_mse", {"model": model}))
    assert_shown(estimated[2], gauge("estimated_concept_drift", {"model": model}))
    assert_shown(estimated[3], gauge("estimated_concept_drift_threshold", {"model": model}))
    outside = gauge("outside_support_ratio", {"model": model})
    if outside:
        share = re.search(r"· ([\d.]+%) of the records outside", rows["Estimated MSE"])
        assert share, rows
        assert_shown(share[1], outside)
    reference_mse = re.match(r"([\d.,e+-]+) \(held-out rows\)", rows["Reference MSE"])
    assert_shown(reference_mse[1], gauge("reference_mse", {"model": model}))
    change = re.match(r"([+\-\d.]+%) (?:>|≤) threshold ([+\-\d.]+%)", rows["Change"])
    assert change, rows
    assert_shown(change[1], gauge("concept_drift", {"model": model}))
    assert_shown(change[2], gauge("concept_drift_threshold", {"model": model}))
    # what the page flags is what the gauges flag
    title = re.search(r"<title>(.*?)</title>", html)[1]
    assert "carat" in title
    assert ("estimated performance" in title) == bool(
        gauge("estimated_concept_drift_detected", {"model": model})
    )
    assert ("model error" in title) == bool(gauge("concept_drift_detected", {"model": model}))


def test_diamonds_bars_are_the_window_bin_counts(diamonds):
    """Each overlaid histogram's bars against the bin counts of the pane its statistic was computed
    on (the whole window or its newest half), reference bars against the reference's bins."""
    monitor, evaluated, page = diamonds.monitor, diamonds.evaluated, diamonds.page
    result, reference, layout = evaluated.result, diamonds.reference, monitor.window.layout
    panes = {"window": evaluated.window, "recent": evaluated.recent}
    tested = {f.name: f for f in (*result.features, *result.outputs)}
    assert set(tested) == set(layout.slices)
    assert {f.scale for f in tested.values()} == {"window", "recent"}  # both kinds of chart drawn
    for name, part in layout.slices.items():
        f, card = tested[name], page.card(name)
        pane = panes[f.scale]
        assert int(card["data-records"]) == pane.records == f.records
        counts = pane.counts[part]
        bins = layout.ks_columns.get(name)
        if bins is not None:
            reference_counts = np.rint(
                np.diff(bins.reference_cdf, prepend=0.0) * reference.size
            ).astype(int)
        else:
            reference_counts = layout.chi2_columns[name].counts
        assert card["charts"] == 1 and card["bars"], name
        used = np.zeros(len(counts), dtype=int)
        window_total = reference_total = 0
        for bar in card["bars"]:
            runs = [tuple(map(int, run.split(":"))) for run in bar["data-bins"].split(",") if run]
            names = json.loads(bar.get("data-names", "[]"))
            for a, b in runs:
                used[a:b] += 1
            window = sum(int(counts[a:b].sum()) for a, b in runs) + sum(
                pane.unseen[name][u] for u in names
            )
            assert int(bar["data-window"]) == window, (name, bar)
            assert int(bar["data-reference"]) == sum(
                int(reference_counts[a:b].sum()) for a, b in runs
            ), (name, bar)
            window_total += window
            reference_total += int(bar["data-reference"])
        assert (used == 1).all(), f"{name}: every bin in exactly one bar"
        assert window_total == pane.records and reference_total == int(reference_counts.sum())
    # carat's shift is what the bars show: the window's share of the biggest stones falls
    carat = page.card("carat")["bars"]
    top = carat[len(carat) // 2 :]
    window_share = sum(int(b["data-window"]) for b in top) / panes[tested["carat"].scale].records
    reference_share = sum(int(b["data-reference"]) for b in top) / sum(
        int(b["data-reference"]) for b in carat
    )
    assert window_share < reference_share
