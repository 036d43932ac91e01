"""The whole chain on this machine: simulator -> local broker -> scorer -> monitor -> real
Prometheus -> real Alertmanager -> a local HTTP server standing in for Discord.

The calibrated drift rules (FeatureDataDrift, ConceptDrift, ConceptErrorDrift, PredictionDrift,
EstimatedPerformanceDrop) run with `for` shortened to 0s so the test measures the pipeline, not
the rule's patience; every other rule keeps its own `for` (1-5 minutes), so health and
uncalibrated rules cannot fire within the test's span.

Which alerts fire is the scenario's: carat-shift draws real rows with fewer big stones (labels
true), so data drift on carat and no concept drift, and the estimated MSE falls (no performance
alert); price-inflation changes the labels alone, so concept drift and no data drift, and the
estimate, which sees only inputs and outputs, does not move; tilt:carat:1.2 with no label at all
draws more big stones (MSE x1.65), so the estimated performance drops before any label.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.request

import pytest

from devstack import observability
from devstack.broker import free_port
from devstack.webhook_sink import WebhookSink
from tests.support import Samples, scrape, stop_process, stream_records, wait_monitored, wait_until

pytestmark = pytest.mark.broker

RATE, ONSET, COUNT = 1000, 8000, 16000
# Measured onset -> Discord message on this machine: see docs/benchmarks.md ("Alerting end to end").
# One window after onset is 1 s of records at this rate; the bound covers scrape, evaluation,
# group_wait and a slow CI machine.
MESSAGE_DEADLINE_S = 30.0


def page_url(samples: Samples) -> str:
    """The page's address as the monitor exports it for the alerts (monitor_page{url})."""
    [url] = [dict(labels)["url"] for name, labels in samples if name == "monitor_page"]
    return url


def titles(sink: WebhookSink) -> list[str]:
    return [d.body["embeds"][0]["title"] for d in sink.deliveries()]


def run_pipeline(
    kafka, tmp_path, scenario: str, awaited: str | None = None, labels: bool = True
) -> tuple[WebhookSink, float, float, Samples, str]:
    """Start everything, stream the scenario until a message whose title holds `awaited` arrives
    (None: over the whole span); returns (sink, onset time, end in monotonic seconds, the monitor's
    /metrics once its final window is complete, the page its --public-url names, read then).
    `labels=False`: no label is ever sent."""
    sink = WebhookSink(echo=False)
    server = sink.serve("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scorer_port, monitor_port = free_port(), free_port()
    extra = {"MONITOR_STATE_TOPIC": f"state-{kafka.suffix}"}
    scorer = kafka.start(
        "scorer",
        "run",
        "--metrics-port",
        str(scorer_port),
        "--group",
        f"s-{kafka.suffix}",
        log=tmp_path / "scorer.log",
        **extra,
    )
    # --public-url: every drift alert links to the monitor's page at the column that fired
    monitor = kafka.start(
        "monitor",
        "run",
        "--metrics-port",
        str(monitor_port),
        "--group",
        f"m-{kafka.suffix}",
        "--public-url",
        f"http://127.0.0.1:{monitor_port}/",
        log=tmp_path / "monitor.log",
        **extra,
    )
    alertmanager = prometheus = None
    try:
        alertmanager = observability.start_alertmanager(
            observability.alertmanager_config(
                f"http://127.0.0.1:{server.server_address[1]}/discord",
                group_wait="1s",
                group_interval="5s",
            ),
            tmp_path / "am",
        )
        prometheus = observability.start_prometheus(
            {"scorer": [f"127.0.0.1:{scorer_port}"], "monitor": [f"127.0.0.1:{monitor_port}"]},
            tmp_path / "prom",
            rules=observability.alert_rules(for_="0s", only=observability.DRIFT_ALERTS),
            alertmanager=alertmanager.url.removeprefix("http://"),
        )
        wait_until(
            lambda: len(observability.query(prometheus.url, "up == 1")) == 2,
            60,
            message="both targets up",
        )
        started = time.monotonic()
        producer = kafka.start(
            "producer",
            "simulate",
            "--count",
            str(COUNT),
            "--rate",
            str(RATE),
            "--scenario",
            scenario,
            "--onset",
            str(ONSET),
            "--label-delay",
            "0",
            "--seed",
            "11",
            *([] if labels else ["--no-labels"]),
            log=tmp_path / "sim.log",
        )
        onset = started + ONSET / RATE
        deadline = started + COUNT / RATE + MESSAGE_DEADLINE_S
        if awaited is None:
            time.sleep(
                max(0.0, deadline - time.monotonic())
            )  # no event to await: the claim is that no message comes
        else:
            wait_until(
                lambda: any(awaited in title for title in titles(sink)),
                COUNT / RATE + MESSAGE_DEADLINE_S,
                interval=0.1,
                message=f"a Discord message titled ...{awaited}",
            )
        assert producer.wait(60) == 0
        # Every evaluation of the stream is done: the monitor's counters say what could ever have fired.
        if labels:
            wait_monitored(monitor_port, COUNT, kafka.topics["LABELS_TOPIC"])
        else:
            wait_until(
                lambda: stream_records(monitor_port) == COUNT,
                120,
                message=f"{COUNT} predictions monitored",
            )
        samples = scrape(monitor_port)
        with urllib.request.urlopen(page_url(samples), timeout=30) as response:
            page = response.read().decode()
        return sink, onset, time.monotonic(), samples, page
    finally:
        for process in (prometheus, alertmanager):
            if process:
                process.stop()
        stop_process(monitor)
        stop_process(scorer)
        server.shutdown()


def test_carat_shift_sends_data_drift_on_carat_and_no_concept_drift(kafka, tmp_path):
    sink, onset, _, samples, page = run_pipeline(
        kafka, tmp_path, "carat-shift", awaited="FeatureDataDrift on carat"
    )
    first = next(
        d for d in sink.deliveries() if "FeatureDataDrift on carat" in d.body["embeds"][0]["title"]
    )
    delay = first.received_at - onset
    print(f"onset -> Discord message naming carat: {delay:.1f} s")
    embed = first.body["embeds"][0]
    assert embed["title"] == "[FIRING:1] diamonds: FeatureDataDrift on carat", embed["title"]
    assert "carat" in embed["description"]
    # The link to the page at carat's section; the page there is the monitor's, carat flagged.
    assert f"[Open the page]({page_url(samples)}#feature-carat)" in embed["description"], embed[
        "description"
    ]
    assert 'id="feature-carat"' in page and "FeatureDataDrift" in page
    assert 0 < delay < MESSAGE_DEADLINE_S
    # Nothing fired before the drift began.
    assert all(d.received_at > onset for d in sink.deliveries())
    # Real rows with their own prices: the model's error did not grow, at no evaluation, nor its estimate.
    assert not any(
        alert in title
        for alert in ("ConceptDrift", "ConceptErrorDrift", "EstimatedPerformance")
        for title in titles(sink)
    ), titles(sink)
    assert (
        samples[("concept_error_detections_total", ())] == 0
    )  # the errors' distribution did not move either
    assert samples[("estimated_concept_drift_detections_total", ())] == 0
    assert samples[("estimated_concept_drift", ())] < 0  # fewer big stones: a smaller estimated MSE
    assert not math.isnan(samples[("concept_drift", ())])  # known, with every label joined
    assert samples[("concept_drift_detections_total", ())] == 0
    assert samples[("drift_feature_detections_total", (("feature", "carat"),))] > 0


def test_price_inflation_sends_concept_drift_and_no_data_drift(kafka, tmp_path):
    sink, onset, _, samples, _ = run_pipeline(
        kafka, tmp_path, "price-inflation", awaited="ConceptDrift"
    )
    first = next(d for d in sink.deliveries() if "ConceptDrift" in d.body["embeds"][0]["title"])
    print(f"onset -> Discord message ConceptDrift: {first.received_at - onset:.1f} s")
    assert first.body["embeds"][0]["title"] == "[FIRING:1] diamonds: ConceptDrift"
    assert (
        f"[Open the page]({page_url(samples)}#performance)"
        in first.body["embeds"][0]["description"]
    )
    assert all(d.received_at > onset for d in sink.deliveries())
    # The labels alone changed: no feature and no prediction moved, nor the estimate, which sees only
    # inputs and outputs (this is what labels are for).
    assert not any(
        "FeatureDataDrift" in t or "PredictionDrift" in t or "EstimatedPerformance" in t
        for t in titles(sink)
    ), titles(sink)
    assert samples[("estimated_concept_drift_detections_total", ())] == 0
    assert all(
        v == 0 for (name, _), v in samples.items() if name == "drift_feature_detections_total"
    ), samples
    assert samples[("prediction_drift_detections_total", ())] == 0
    assert samples[("concept_drift_detections_total", ())] > 0


def test_more_big_stones_without_labels_send_an_estimated_performance_drop(kafka, tmp_path):
    sink, onset, _, samples, _ = run_pipeline(
        kafka, tmp_path, "tilt:carat:1.2", awaited="EstimatedPerformanceDrop", labels=False
    )
    first = next(
        d for d in sink.deliveries() if "EstimatedPerformanceDrop" in d.body["embeds"][0]["title"]
    )
    print(
        f"onset -> Discord message EstimatedPerformanceDrop (no labels): {first.received_at - onset:.1f} s"
    )
    embed = first.body["embeds"][0]
    assert embed["title"] == "[FIRING:1] diamonds: EstimatedPerformanceDrop", embed["title"]
    assert (
        "Estimated MSE" in embed["description"] and "labels are not in yet" in embed["description"]
    )
    assert "of the records lie outside the reference's support" in embed["description"]
    assert all(d.received_at > onset for d in sink.deliveries())
    assert not any(
        "ConceptDrift" in title or "ConceptErrorDrift" in title for title in titles(sink)
    )  # no label
    assert (
        math.isnan(samples[("rolling_mse", ())])
        and samples[("estimated_concept_drift_detections_total", ())] > 0
    )


def test_no_drift_sends_no_message_over_the_same_span(kafka, tmp_path):
    sink, onset, end, samples, _ = run_pipeline(kafka, tmp_path, "none")
    assert end - onset >= MESSAGE_DEADLINE_S
    assert sink.deliveries() == []
    assert (
        samples[("drift_dataset_detections_total", ())]
        == samples[("concept_drift_detections_total", ())]
        == 0
    )
    assert samples[("estimated_concept_drift_detections_total", ())] == 0
