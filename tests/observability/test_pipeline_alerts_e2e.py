"""The whole chain on this machine: simulator -> local broker -> scorer -> monitor -> real
Prometheus -> real Alertmanager -> a local HTTP server standing in for Discord.

The calibrated drift rules (FeatureDataDrift, ConceptDrift) run with `for` shortened to 0s so
the test measures the pipeline, not the rule's patience; every other rule keeps its own `for`
(1-5 minutes), so health and uncalibrated rules cannot fire within the test's span.
"""
from __future__ import annotations

import threading
import time

import pytest

from devstack import observability
from devstack.broker import free_port
from devstack.webhook_sink import WebhookSink
from tests.support import stop_process, wait_until

pytestmark = pytest.mark.broker

RATE, ONSET, COUNT = 1000, 8000, 16000
# Measured onset -> Discord message on this machine: see README ("Alerting end to end").
# One window after onset is 1 s of records at this rate; the bound covers scrape, evaluation,
# group_wait and a slow CI machine.
MESSAGE_DEADLINE_S = 30.0


def run_pipeline(kafka, tmp_path, scenario: str) -> tuple[WebhookSink, float, float]:
    """Start everything, stream the scenario; returns (sink, onset time, stream end) in monotonic seconds."""
    sink = WebhookSink(echo=False)
    server = sink.serve("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scorer_port, monitor_port = free_port(), free_port()
    extra = {"MONITOR_STATE_TOPIC": f"state-{kafka.suffix}"}
    scorer = kafka.start("scorer", "run", "--metrics-port", str(scorer_port), "--group", f"s-{kafka.suffix}",
                         log=tmp_path / "scorer.log", **extra)
    monitor = kafka.start("monitor", "run", "--metrics-port", str(monitor_port), "--group", f"m-{kafka.suffix}",
                          log=tmp_path / "monitor.log", **extra)
    alertmanager = prometheus = None
    try:
        alertmanager = observability.start_alertmanager(
            observability.alertmanager_config(f"http://127.0.0.1:{server.server_address[1]}/discord",
                                              group_wait="1s", group_interval="5s"), tmp_path / "am")
        prometheus = observability.start_prometheus(
            {"scorer": [f"127.0.0.1:{scorer_port}"], "monitor": [f"127.0.0.1:{monitor_port}"]}, tmp_path / "prom",
            rules=observability.alert_rules(for_="0s", only=observability.DRIFT_ALERTS), alertmanager=alertmanager.url.removeprefix("http://"))
        wait_until(lambda: len(observability.query(prometheus.url, "up == 1")) == 2, 60, message="both targets up")
        started = time.monotonic()
        producer = kafka.start("producer", "simulate", "--count", str(COUNT), "--rate", str(RATE), "--scenario", scenario,
                               "--onset", str(ONSET), "--label-delay", "0", "--seed", "11", log=tmp_path / "sim.log")
        onset = started + ONSET / RATE
        deadline = started + COUNT / RATE + MESSAGE_DEADLINE_S
        if scenario == "none":
            wait_until(lambda: time.monotonic() > deadline, MESSAGE_DEADLINE_S + COUNT / RATE + 5, interval=0.5)
        else:
            wait_until(lambda: any("carat" in str(d.body) for d in sink.deliveries()), COUNT / RATE + MESSAGE_DEADLINE_S,
                       interval=0.1, message="a Discord message naming carat")
        assert producer.wait(60) == 0
        return sink, onset, time.monotonic()
    finally:
        for process in (prometheus, alertmanager):
            if process:
                process.stop()
        stop_process(monitor)
        stop_process(scorer)
        server.shutdown()


def test_carat_shift_sends_a_discord_message_naming_carat(kafka, tmp_path):
    sink, onset, _ = run_pipeline(kafka, tmp_path, "carat-shift")
    first = next(d for d in sink.deliveries() if "carat" in str(d.body))
    delay = first.received_at - onset
    print(f"onset -> Discord message naming carat: {delay:.1f} s")
    embed = first.body["embeds"][0]
    assert embed["title"].startswith("[FIRING")
    assert "carat" in embed["title"] + embed["description"]
    assert 0 < delay < MESSAGE_DEADLINE_S
    # Nothing fired before the drift began.
    assert all(d.received_at > onset for d in sink.deliveries())


def test_no_drift_sends_no_message_over_the_same_span(kafka, tmp_path):
    sink, onset, end = run_pipeline(kafka, tmp_path, "none")
    assert end - onset >= MESSAGE_DEADLINE_S
    assert sink.deliveries() == []
