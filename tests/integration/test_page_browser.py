"""The monitor's page in a real browser, from a monitor running through the real broker.

Each case runs the whole pipeline on the local broker (one partition per topic): the simulator
plays a drift scenario, the scorer scores it, `monitor run` (with --public-url) windows it, serving
its page at / on its metrics port. Once the monitor's gauges hold every record and label, headless
Chromium (tests/browser.py) loads the page, the test reads it back from the DOM and compares it
with the gauges scraped at the same moment, and takes screenshots.

Measured on 2 cores shared with other test runs (load average ~5): 21-42 s per case, most of it
the scorer's and the monitor's start (imports, the model, the estimator's fit: 12-18 s); the 6,000
records through the pipeline ~7 s, Chromium and the page ~4 s. Under a minute: not `slow`, so in
`make test`.

PAGE_SCREENSHOT=<dir> keeps the screenshots: <model>.png the whole page, <model>-top.png its top
(the 1280 x 900 viewport), which `make screenshot` makes docs/page.png from (diamonds).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from contract.artifacts import load_model_schema
from devstack.broker import free_port
from monitor.reference import PREDICTION, probability_column
from monitor.snapshot import anchor
from tests.browser import Browser
from tests.support import (
    KafkaEnv,
    Samples,
    scrape,
    start_scorer,
    stop_process,
    wait_for_log,
    wait_monitored,
)

pytestmark = pytest.mark.broker

RECORDS, ONSET, SEED = 6000, 3000, 5
WIDTH, HEIGHT = 1280, 900

CASES = {
    # carat-shift: fewer big stones; carat is the column furthest past its threshold
    "diamonds": ("carat-shift", "carat", "model_dir"),
    # mix:occupation: occupations made equally common (the husband's and education move with it)
    "affairs": ("mix:occupation", "occupation", "affairs_dir"),
}

# What the test reads of the page: the page runs no script, this runs in the browser for the test.
READ_PAGE = """(() => {
  const card = a => ({
    name: a.dataset.name, id: a.id, flagged: a.classList.contains('flagged'),
    charts: a.querySelectorAll('svg.chart').length,
    bars: a.querySelectorAll('svg.chart g.bar').length,
    statistic: a.dataset.statistic, threshold: a.dataset.threshold, p: a.dataset.pValue,
  });
  const rows = [...document.querySelectorAll('#summary tr')].filter(r => r.querySelector('td'));
  return {
    features: [...document.querySelectorAll('#features article')].map(card),
    outputs: [...document.querySelectorAll('#outputs article')].map(card),
    rows: rows.map(r => ({name: r.cells[0].textContent, flagged: r.classList.contains('flagged'),
                          cells: [...r.cells].map(c => c.textContent.trim())})),
    status: document.querySelector('header .status').textContent,
    facts: Object.fromEntries([...document.querySelectorAll('header .facts div')].map(
        d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])),
    performance: !!document.querySelector('section#performance svg'),
    width: document.documentElement.scrollWidth,
    scripts: document.scripts.length,
  };
})()"""


def pipeline(
    kafka: KafkaEnv, tmp_path: Path, model_dir: Path, scenario: str, port: int, url: str
) -> tuple[object, object]:
    """Scorer and monitor started for the test's topics (stopped by the caller), the scenario's
    records simulated through them, and back once the monitor holds every record and label."""
    scorer = start_scorer(kafka, tmp_path / "scorer.log", model_dir)
    monitor = kafka.start(
        "monitor",
        "run",
        "--model-dir",
        str(model_dir),
        "--group",
        f"monitor-{kafka.suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--public-url",
        url,
        log=tmp_path / "monitor.log",
        TOPIC_PARTITIONS="1",
    )
    try:
        wait_for_log(tmp_path / "scorer.log", "scoring ")
        wait_for_log(tmp_path / "monitor.log", "monitoring ")
        produced = kafka.run(
            "producer",
            "simulate",
            "--model-dir",
            str(model_dir),
            "--count",
            str(RECORDS),
            "--rate",
            "0",
            "--scenario",
            scenario,
            "--onset",
            str(ONSET),
            "--seed",
            str(SEED),
            "--label-delay",
            "0",
            TOPIC_PARTITIONS="1",
        )
        assert produced.returncode == 0, produced.stderr.decode()[-2000:]
        wait_monitored(port, RECORDS, kafka.topics["LABELS_TOPIC"], timeout=180)
    except BaseException:
        stop_process(monitor)
        stop_process(scorer)
        raise
    return scorer, monitor


def drift_gauges(samples: Samples) -> dict[str, str]:
    """The gauges of the evaluation the page shows (as text: NaN compares equal to NaN)."""
    return {
        f"{name}{dict(labels)}": repr(value)
        for (name, labels), value in samples.items()
        if name.startswith(
            (
                "drift_",
                "prediction_drift",
                "label_coverage",
                "window_records",
                "monitor_stream_records",
            )
        )
    }


def gauges(samples: Samples, column: str, outputs: bool) -> tuple[float, float, float | None]:
    """(statistic, threshold, p-value or None) of a column as the monitor's gauges export it."""
    if not outputs:
        statistic = next(
            v
            for (name, labels), v in samples.items()
            if name == "drift_feature_statistic" and dict(labels)["feature"] == column
        )
        return (
            statistic,
            samples[("drift_feature_threshold", (("feature", column),))],
            samples[("drift_feature_pvalue", (("feature", column),))],
        )
    if column == PREDICTION:
        return (
            samples[("prediction_drift_statistic", ())],
            samples[("prediction_drift_threshold", ())],
            None,
        )
    label = (("class", column[2:-1]),)  # p(<class>)
    return (
        samples[("drift_probability_statistic", label)],
        samples[("drift_probability_threshold", label)],
        None,
    )


def shown(text: str, value: float) -> bool:
    """Whether `text`, a number as the page shows it ("0.1234", "1,234", "1.2e-05"), is `value`
    rounded to the digits shown: within half a unit of its last digit."""
    match = re.fullmatch(r"(-?[\d,]+)(?:\.(\d+))?(?:e([-+]\d+))?", text)
    assert match, f"not a number as the page writes one: {text!r}"
    decimals, exponent = len(match[2] or ""), int(match[3] or 0)
    return math.isclose(
        float(text.replace(",", "")),
        value,
        rel_tol=0,
        abs_tol=0.5 * 10.0 ** (exponent - decimals) * (1 + 1e-9),
    )


@pytest.mark.parametrize("example", CASES)
def test_the_page_of_a_monitor_on_the_broker_in_a_real_browser(example, kafka, request, tmp_path):
    scenario, drifted, fixture = CASES[example]
    model_dir = request.getfixturevalue(fixture)
    schema = load_model_schema(model_dir)
    outputs = [PREDICTION, *map(probability_column, schema.probability_classes)]
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    shots = Path(os.environ.get("PAGE_SCREENSHOT", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    scorer, monitor = pipeline(kafka, tmp_path, model_dir, scenario, port, url)
    try:
        before = scrape(port, keep_model=True)
        with Browser(width=WIDTH, height=HEIGHT) as browser:
            visit = browser.visit(url)
            page = browser.evaluate(READ_PAGE)
            top = browser.screenshot(shots / f"{example}-top.png", full_page=False)
            whole = browser.screenshot(shots / f"{example}.png")
            # an alert's link, <public url>#feature-<name>, lands on the column's section
            jump = browser.visit(url + "#" + anchor(drifted))
            target = browser.evaluate("document.querySelector(':target')?.id")
            seen = browser.everything()  # late requests or errors too, after the load events
        after = scrape(port, keep_model=True)
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
        stop_process(scorer)

    # the page and the gauges describe the same, final evaluation: nothing moved while it loaded
    assert drift_gauges(before) == drift_gauges(after)
    samples = {
        (name, tuple(kv for kv in labels if kv[0] != "model")): value
        for (name, labels), value in after.items()
    }
    assert samples[("monitor_page", (("url", url),))] == 1  # --public-url, for the alerts' links

    # a clean load: no console error or exception, and no request but the page itself
    assert visit.errors == [], visit.errors
    assert visit.requests == [url], visit.requests
    assert target == anchor(drifted) and jump.requests == [] and jump.errors == []
    assert seen.requests == [url] and seen.errors == [], seen
    assert page["scripts"] == 0 and page["width"] <= WIDTH  # no script, nothing wider than the view

    # the drifted column first, flagged, in the table and among the sections
    features = page["features"]
    assert [c["name"] for c in features][:1] == [drifted] and features[0]["flagged"], features
    assert features[0]["id"] == anchor(drifted)
    assert page["rows"][0]["name"] == drifted and page["rows"][0]["flagged"], page["rows"][0]
    assert f"FeatureDataDrift{drifted}" in page["status"].replace(" ", "")
    assert page["facts"]["Labels"] == "100%", page["facts"]
    # every feature of the schema and every model output, each with its one chart
    assert sorted(c["name"] for c in features) == sorted(schema.feature_names)
    assert [c["name"] for c in page["outputs"]] == outputs
    for card in (*features, *page["outputs"]):
        assert card["charts"] == 1 and card["bars"] >= 2, card
    assert page["performance"], "no chart in the performance section"

    # the numbers: every section's, unrounded (data-*), are the gauges'; the first row's shown
    # statistic, threshold and ratio are the gauges' rounded as the page rounds them
    for card, is_output in [*((c, False) for c in features), *((c, True) for c in page["outputs"])]:
        statistic, threshold, p_value = gauges(samples, card["name"], is_output)
        assert (float(card["statistic"]), float(card["threshold"])) == (statistic, threshold), card
        if p_value is not None:
            assert float(card["p"]) == p_value, card
    statistic, threshold, _ = gauges(samples, drifted, False)
    assert statistic > threshold
    cells = page["rows"][0]["cells"]  # Column, Test, Statistic, Threshold, ÷ threshold, ...
    assert shown(cells[2], statistic) and shown(cells[3], threshold), cells
    assert shown(cells[4], statistic / threshold), cells

    # the screenshots: PNGs of the viewport and of the whole page, at the page's width
    for png, height in ((top, HEIGHT), (whole, None)):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == WIDTH
        assert height is None or int.from_bytes(png[20:24], "big") == height
