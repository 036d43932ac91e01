"""End to end, for real: gauge → Prometheus rule → Alertmanager → Discord-format POST at a sink.

A small prometheus_client HTTP server stands in for the monitor, exposing its gauge names, so
the rule → Alertmanager → Discord leg is timed on its own, to the second. It is scraped by a real Prometheus
(1 s scrape and evaluation) running the expressions, labels and annotations of
prometheus/alerts.yml with `for` shortened to 0s, which alerts a real Alertmanager configured
from alertmanager/alertmanager.yml (receiver and templates as written, webhook URL pointed at
devstack.webhook_sink, group_wait 1s). test_pipeline_alerts_e2e.py runs the same chain behind
the real producer, scorer and monitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from devstack import observability
from devstack.broker import free_port
from devstack.webhook_sink import WebhookSink
from tests.support import wait_until

FEATURES = {
    "carat": "ks",
    "depth": "ks",
    "table": "ks",
    "cut": "chi2",
    "color": "chi2",
    "clarity": "chi2",
}
# Measured 1.6-1.9 s from gauge change to POST (OBSERVABILITY.md); the bound leaves room for a
# slow CI machine: one scrape + one evaluation + group_wait + delivery.
DELIVERY_DEADLINE_S = 10.0


@dataclass
class StandInMonitor:
    """The monitor's drift gauges on a free port (a stand-in for `python -m monitor run`)."""

    port: int
    detected: ForModel
    statistic: ForModel
    threshold: ForModel
    pvalue: ForModel


class ForModel:
    """A labelled gauge bound to one model, as the monitor labels every series: `.labels(feature, ...)`."""

    def __init__(self, gauge: Gauge, model: str = "diamonds") -> None:
        self.gauge, self.model = gauge, model

    def labels(self, *rest: str):
        return self.gauge.labels(self.model, *rest)


@pytest.fixture
def stand_in_monitor() -> Iterator[StandInMonitor]:
    registry = CollectorRegistry()
    # Labelled as the monitor labels them: the schema's name first.
    detected = ForModel(
        Gauge(
            "drift_feature_detected",
            "1 when the feature drifted in the last window",
            ["model", "feature"],
            registry=registry,
        )
    )
    statistic = ForModel(
        Gauge(
            "drift_feature_statistic",
            "Drift statistic of the last window",
            ["model", "feature", "test"],
            registry=registry,
        )
    )
    threshold = ForModel(
        Gauge(
            "drift_feature_threshold",
            "Calibrated threshold of the statistic",
            ["model", "feature"],
            registry=registry,
        )
    )
    pvalue = ForModel(
        Gauge(
            "drift_feature_pvalue",
            "p-value of the last window",
            ["model", "feature"],
            registry=registry,
        )
    )
    Gauge("window_records", "Records per window", ["model"], registry=registry).labels(
        "diamonds"
    ).set(1000)
    for feature, test in FEATURES.items():
        detected.labels(feature).set(0)
        statistic.labels(feature, test).set(0.01)
        threshold.labels(feature).set(0.05)
        pvalue.labels(feature).set(0.9)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield StandInMonitor(port, detected, statistic, threshold, pvalue)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def sink() -> Iterator[tuple[WebhookSink, int]]:
    collector = WebhookSink(echo=False)
    server = collector.serve("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def prometheus_url(stand_in_monitor, sink, tmp_path) -> Iterator[str]:
    """Alertmanager → sink, Prometheus → stand-in monitor; both stopped at the end."""
    _, sink_port = sink
    am_config = observability.alertmanager_config(
        f"http://127.0.0.1:{sink_port}/discord",
        group_wait="1s",
        group_interval="1s",
        repeat_interval="1h",
    )
    alertmanager = observability.start_alertmanager(am_config, tmp_path / "alertmanager")
    prometheus = None
    try:
        prometheus = observability.start_prometheus(
            {"monitor": [f"127.0.0.1:{stand_in_monitor.port}"]},
            tmp_path / "prometheus",
            rules=observability.alert_rules(for_="0s"),
            alertmanager=alertmanager.url.removeprefix("http://"),
        )
        wait_for_up(prometheus.url, deadline_s=30.0)
        yield prometheus.url
    finally:
        if prometheus is not None:
            prometheus.stop()
        alertmanager.stop()


def wait_for_up(prometheus_url: str, deadline_s: float) -> None:
    """Prometheus scrapes ~5 s after it reports ready: wait until the target is up."""
    up = 'up{job="monitor"}'
    wait_until(
        lambda: any(
            sample["value"][1] == "1" for sample in observability.query(prometheus_url, up)
        ),
        deadline_s,
        message="the stand-in monitor scraped (up == 1)",
    )


def discord_texts(collector: WebhookSink) -> list[str]:
    """Title and description of every Discord embed received."""
    texts = []
    for delivery in collector.deliveries():
        assert isinstance(delivery.body, dict), delivery.body
        for embed in delivery.body.get("embeds", []):
            texts.append(f"{embed.get('title', '')}\n{embed.get('description', '')}")
    return texts


def test_carat_drift_reaches_the_discord_sink(stand_in_monitor, sink, prometheus_url):
    collector, _ = sink
    stand_in_monitor.statistic.labels("carat", "ks").set(0.31)
    stand_in_monitor.pvalue.labels("carat").set(0.0001)
    changed_at = time.monotonic()
    stand_in_monitor.detected.labels("carat").set(1)

    deliveries = wait_until(
        collector.deliveries,
        DELIVERY_DEADLINE_S,
        interval=0.05,
        message="a Discord message after the gauge change",
    )
    elapsed = deliveries[0].received_at - changed_at
    print(f"gauge -> Discord-format message: {elapsed:.2f} s")

    body = deliveries[0].body
    assert isinstance(body, dict) and set(body) >= {"content", "embeds"}, body
    title, description = discord_texts(collector)[0].split("\n", 1)
    assert title == "[FIRING:1] diamonds: FeatureDataDrift on carat"
    assert (
        "Feature carat drifted: ks statistic 0.31 above threshold 0.05 (p-value 0.0001)"
        in description
    )
    assert "over a window of 1000 records" in description
    assert all("depth" not in text for text in discord_texts(collector))


def test_no_drift_sends_nothing(stand_in_monitor, sink, prometheus_url):
    collector, _ = sink
    time.sleep(DELIVERY_DEADLINE_S)  # nothing to await: the claim is that nothing arrives
    assert collector.deliveries() == []
