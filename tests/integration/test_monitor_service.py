"""The monitor service: its pure edges without a broker, then producer -> scorer -> monitor on the local broker.

Broker tests use one partition per topic, so the monitor sees records in the producer's order and
"record N" in its log is the producer's stream position N.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from devstack.broker import free_port
from tests.support import (KafkaEnv, Samples, scrape, start_monitor, stop_process, stream_records, wait_for_log, wait_until,
                           window_view)

FEATURES = ("carat", "depth", "table", "cut", "color", "clarity")


# -- without a broker ----------------------------------------------------------------------------
def test_window_and_step_parse_to_counts_or_event_time():
    from monitor.service import MonitorConfig, parse_span

    assert parse_span("1000") == (1000, "records")
    assert parse_span("30s") == (30_000, "ms") and parse_span("5m") == (300_000, "ms")
    config = MonitorConfig(window="5m", step="30s", label_ttl="10m")
    assert (config.window_size, config.step_size, config.time_based, config.label_ttl_ms) == (300_000, 30_000, True, 600_000)
    assert MonitorConfig().window_state == {"kind": "count", "window": 1000, "step": 250}
    for window, step, message in [("1000", "30s", "both"), ("1000", "300", "multiple"), ("5x", "250", "positive"),
                                  ("0", "250", "positive")]:
        with pytest.raises(ValueError, match=message):
            MonitorConfig(window=window, step=step)
    with pytest.raises(ValueError, match="unit"):
        MonitorConfig(label_ttl="3600")


def test_bad_predictions_and_labels_become_rejections_not_exceptions():
    from monitor.service import decode_labels, decode_predictions

    good = (b'{"id":"a","ts":5,"scored_at":6,"model_version":"v","prediction":512.5,"features":{"carat":0.3,'
            b'"cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}}')
    values = [good, b"{nope", b"[1]", b'{"id":"b","ts":5,"prediction":1.0}', good.replace(b"512.5", b'"x"'),
              good.replace(b'"carat":0.3', b'"carat":-1')]
    batch, rejected = decode_predictions(values)
    assert len(batch) == 1 and batch.ids.tolist() == ["a"] and batch.predictions.tolist() == [512.5]
    assert batch.numeric["carat"].tolist() == [0.3] and batch.categorical["cut"].tolist() == ["Ideal"]
    assert [(i, r.reason) for i, r in rejected] == [(1, "not_json"), (2, "not_object"), (3, "missing_field"),
                                                    (4, "wrong_type"), (5, "out_of_range")]
    ids, ts, prices, rejected = decode_labels([b'{"id":"a","ts":5,"price":326.0}', b'{"id":"a"}'])
    assert ids == ["a"] and ts.tolist() == [5] and prices.tolist() == [326.0]
    assert [r.reason for _, r in rejected] == ["missing_field"]


def test_the_fast_decoding_path_accepts_only_what_full_validation_accepts():
    from monitor.service import _prediction, decode_labels, decode_predictions

    good = (b'{"id":"a","ts":5,"prediction":512.5,"features":{"carat":0.3,"cut":"Ideal","color":"E","clarity":"SI1",'
            b'"depth":61.0,"table":55.0}}')
    cases = {
        good: None,
        good.replace(b'"id":"a"', b'"id":7'): None,  # integer ids normalised to "7" by the full path
        good.replace(b"512.5", b"512"): None,
        good.replace(b'"id":"a",', b'').replace(b'"carat"', b'"id":"f","carat"'): None,  # id inside features
        good.replace(b"512.5", b"NaN"): "not_finite",
        good.replace(b"512.5", b"1e400"): "not_finite",
        good.replace(b"512.5", b"1" + b"0" * 400): "out_of_range",  # an integer too large for a float
        good.replace(b"512.5", b"true"): "wrong_type",
        good.replace(b'"carat":0.3', b'"carat":20.5'): "out_of_range",
        good.replace(b'"carat":0.3', b'"carat":NaN'): "not_finite",
        good.replace(b'"cut":"Ideal"', b'"cut":""'): "out_of_range",
        good.replace(b'"ts":5', b'"ts":-1'): "out_of_range",
        good.replace(b'"ts":5', b'"ts":5.0'): "wrong_type",
        good.replace(b'"table":55.0}', b'"table":55.0,"price":-3}'): "out_of_range",
        good.replace(b'"id":"a"', b'"id":"' + b"x" * 129 + b'"'): "out_of_range",
        good[:-1]: "not_json",
    }
    batch, rejected = decode_predictions(list(cases))
    assert [(i, r.reason) for i, r in rejected] == [(i, why) for i, why in enumerate(cases.values()) if why]
    accepted = [_prediction(raw) for raw, why in cases.items() if why is None]
    assert batch.ids.tolist() == [r[0] for r in accepted] == ["a", "7", "a", "f"]
    assert batch.predictions.tolist() == [r[2] for r in accepted] and batch.predictions.dtype == np.float64
    assert batch.numeric["carat"].tolist() == [0.3] * 4 and batch.categorical["clarity"].tolist() == ["SI1"] * 4
    empty, rejected = decode_predictions([b"{}"])
    assert len(empty) == 0 and empty.numeric["carat"].dtype == np.float64 and [r.reason for _, r in rejected] == ["missing_field"]
    ids, ts, prices, rejected = decode_labels([b'{"id":"a","ts":5,"price":326}', b'{"id":7,"ts":6,"price":1.5}',
                                               b'{"id":"b","ts":5,"price":0}', b'{"id":"c","ts":5,"price":NaN}'])
    assert ids == ["a", "7"] and ts.tolist() == [5, 6] and prices.tolist() == [326.0, 1.5] and prices.dtype == np.float64
    assert [(i, r.reason) for i, r in rejected] == [(2, "out_of_range"), (3, "not_finite")]


def test_gauges_are_nan_until_the_window_is_full_and_state_round_trips(model_dir):
    from monitor.metrics import MonitorMetrics
    from monitor.service import MonitorConfig, build_monitor, load_reference
    from monitor.state import decode_state, encode_state
    from monitor.windows import PredictionBatch
    from scorer.model import load_reference as read_heldout

    reference = load_reference(model_dir)
    registry = CollectorRegistry()
    metrics = MonitorMetrics(registry, reference, {"predictions": "p", "labels": "l"})
    config = MonitorConfig(window="1000", step="250")
    monitor = build_monitor(config, reference)
    rows = read_heldout(model_dir).iloc[:999]
    messages = [{"id": str(i), "ts": i, "prediction": r.prediction,
                 "features": {c: getattr(r, c) for c in FEATURES}} for i, r in enumerate(rows.itertuples())]
    metrics.count(monitor.update(PredictionBatch.from_messages(messages, FEATURES[:3], FEATURES[3:])))
    metrics.show(monitor.result())
    get = registry.get_sample_value
    assert math.isnan(get("data_drift")) and get("window_records") == 750  # the count is known, the drift is not
    assert math.isnan(get("drift_feature_statistic", {"feature": "carat", "test": "ks"}))
    assert math.isnan(get("concept_drift")) and get("reference_mse") == pytest.approx(reference.mse)
    assert get("monitor_evaluations_total") == 3  # panes closed at 250, 500, 750: windows not full yet
    more = [{**messages[0], "id": "x"}]
    metrics.count(monitor.update(PredictionBatch.from_messages(more, FEATURES[:3], FEATURES[3:])))
    metrics.show(monitor.result())
    assert get("window_records") == 1000 and 0 <= get("drift_feature_statistic", {"feature": "carat", "test": "ks"}) < 0.1

    state = decode_state(encode_state("g", config.window_state, {("t", 0): 1000}, monitor.to_dict()))
    restored = build_monitor(config, reference)
    restored.load_dict(state["monitor"])
    assert state["offsets"] == {("t", 0): 1000} and state["window"] == config.window_state
    assert restored.result() == monitor.result()


# -- on the local broker -------------------------------------------------------------------------
def detections(samples: Samples) -> dict[str, float]:
    return {f: samples[("drift_feature_detections_total", (("feature", f),))] for f in FEATURES}


def first_detection(log: Path, name: str) -> int | None:
    match = re.search(rf"drift detected: {name} \(.*window ending at record (\d+)", log.read_text())
    return int(match.group(1)) if match else None


def run_scenario(kafka: KafkaEnv, tmp_path: Path, scenario: str, count: int, onset: int) -> tuple[Samples, Path]:
    """Produce `count` records, score them, monitor them; the monitor's /metrics once all are in."""
    produced = kafka.run("producer", "simulate", "--count", str(count), "--rate", "0", "--scenario", scenario,
                         "--onset", str(onset), "--seed", "7", "--label-delay", "0", TOPIC_PARTITIONS="1")
    assert produced.returncode == 0, produced.stderr.decode()[-2000:]
    port, log = free_port(), tmp_path / "monitor.log"
    scorer = kafka.start("scorer", "run", "--metrics-port", "0", "--group", f"scorer-{kafka.suffix}", log=tmp_path / "scorer.log",
                         TOPIC_PARTITIONS="1")
    monitor = start_monitor(kafka, log, f"monitor-{kafka.suffix}", port)
    try:
        labels_topic = kafka.topics["LABELS_TOPIC"]
        # All predictions in the windows and all labels joined: the final window is complete.
        wait_until(lambda: (s := scrape(port)).get(("monitor_stream_records", ())) == count
                   and s.get(("monitor_records_consumed_total", (("topic", labels_topic),))) == count
                   and s.get(("label_coverage_ratio", ())) == 1.0,
                   timeout=120, interval=0.5, message=f"{scenario}: {count} predictions and labels monitored")
        samples = scrape(port)
        assert stop_process(monitor) == 0  # SIGTERM: finish the batch, save state, exit 0
    finally:
        stop_process(monitor)
        stop_process(scorer)
    assert samples[("monitor_evaluations_total", ())] == count // 250
    assert samples[("window_records", ())] == 1000 and samples[("label_coverage_ratio", ())] == 1.0
    assert all(v == 0 for k, v in samples.items() if k[0] == "monitor_invalid_records_total")
    return samples, log


@pytest.mark.broker
def test_no_drift_stream_flags_nothing(kafka, tmp_path, capsys):
    samples, _ = run_scenario(kafka, tmp_path, "none", 50_000, 0)
    assert detections(samples) == dict.fromkeys(FEATURES, 0)
    for counter in ("drift_dataset_detections_total", "prediction_drift_detections_total", "concept_drift_detections_total"):
        assert samples[(counter, ())] == 0, counter
    assert 0 <= samples[("data_drift", ())] < 0.1 and samples[("drift_share_detected", ())] == 0
    assert not math.isnan(samples[("concept_drift", ())]) and samples[("concept_drift_detected", ())] == 0


@pytest.mark.broker
@pytest.mark.parametrize("scenario, feature", [("carat-shift", "carat"), ("cut-mix", "cut"), ("new-category", "clarity")])
def test_feature_scenario_flags_its_feature_within_a_window_and_no_other(kafka, tmp_path, scenario, feature):
    onset = 6000
    samples, log = run_scenario(kafka, tmp_path, scenario, 12_000, onset)
    found = detections(samples)
    assert found.pop(feature) > 0 and found == dict.fromkeys(found, 0), detections(samples)
    first = first_detection(log, feature)
    assert first is not None and onset < first <= onset + 1000, first  # the window ending there holds drifted records
    assert samples[("drift_feature_detected", (("feature", feature),))] == 1
    assert samples[("drift_dataset_detections_total", ())] > 0


@pytest.mark.broker
def test_price_inflation_flags_concept_drift_and_no_feature(kafka, tmp_path):
    samples, log = run_scenario(kafka, tmp_path, "price-inflation", 12_000, 6000)
    assert detections(samples) == dict.fromkeys(FEATURES, 0)
    assert samples[("drift_dataset_detections_total", ())] == 0
    assert samples[("concept_drift_detected", ())] == 1 and samples[("concept_drift_detections_total", ())] > 0
    assert samples[("concept_drift", ())] > samples[("concept_drift_threshold", ())]
    # Labels go straight from the producer and can join before their predictions' pane closes, so
    # the window ending exactly at the onset may already hold inflated errors; earlier is a false alarm.
    assert first_detection(log, "concept") is None or first_detection(log, "concept") >= 6000


@pytest.mark.broker
def test_sigkill_mid_stream_then_restart_ends_with_the_uninterrupted_window(kafka, tmp_path):
    count = 45_000
    scorer = kafka.start("scorer", "run", "--metrics-port", "0", "--group", f"scorer-{kafka.suffix}", log=tmp_path / "scorer.log",
                         TOPIC_PARTITIONS="1")
    port_a, port_b = free_port(), free_port()
    log_b = tmp_path / "monitor-b.log"
    a = start_monitor(kafka, tmp_path / "monitor-a.log", "uninterrupted", port_a)
    b = start_monitor(kafka, log_b, "restarted", port_b)
    processes = [scorer, a, b]
    try:
        for log in (tmp_path / "scorer.log", tmp_path / "monitor-a.log", log_b):
            wait_for_log(log, "scoring " if log.name == "scorer.log" else "monitoring ")
        producer = kafka.start("producer", "simulate", "--count", str(count), "--rate", "3000", "--scenario",
                               "carat-shift", "--onset", "15000", "--seed", "11", "--label-delay", "0",
                               log=tmp_path / "producer.log", TOPIC_PARTITIONS="1")
        processes.append(producer)
        wait_until(lambda: stream_records(port_b) >= 6000, timeout=90, message="monitor b 6,000 records into the stream")
        # A snapshot taken after that point: earlier ones may hold labels only (the scorer may join
        # its group after the monitors, and its first batch of predictions can arrive all at once).
        writes = scrape(port_b).get(("monitor_state_writes_total", ()), 0)
        wait_until(lambda: scrape(port_b).get(("monitor_state_writes_total", ()), 0) > writes, timeout=30,
                   message="monitor b saved state mid-stream")
        seen_before_kill = stream_records(port_b)
        b.kill()  # SIGKILL: no goodbye, whatever came after the last snapshot is replayed
        b.wait()
        assert producer.poll() is None, "the stream should still be running when the monitor is killed"
        port_b = free_port()
        b = start_monitor(kafka, log_b, "restarted", port_b)
        processes.append(b)
        wait_until(lambda: "restored state of group restarted" in log_b.read_text(), timeout=60, message="state restored")
        restored = int(re.search(r"restored state of group restarted: (\d+) records", log_b.read_text()).group(1))
        assert 6000 <= restored <= seen_before_kill + 5000  # a snapshot from before the kill (+ a batch in flight)
        wait_until(lambda: stream_records(port_a) == count and stream_records(port_b) == count, timeout=120,
                   interval=0.5, message="both monitors at the end of the stream")
        uninterrupted, resumed = window_view(scrape(port_a)), window_view(scrape(port_b))
        assert resumed == pytest.approx(uninterrupted, rel=1e-12), (resumed, uninterrupted)
        assert producer.wait(60) == 0
        assert stop_process(b) == 0  # SIGTERM saves the final state

        # Started again with nothing new to read, it shows the full window at once: never empty.
        port_b = free_port()
        b = start_monitor(kafka, log_b, "restarted", port_b)
        processes.append(b)
        wait_until(lambda: stream_records(port_b) == count, timeout=60, message="final state restored")
        assert window_view(scrape(port_b)) == pytest.approx(uninterrupted, rel=1e-12)
    finally:
        for process in reversed(processes):
            stop_process(process)


def test_status_prints_a_table_from_metrics(model_dir, capsys):
    """`python -m monitor status` against a metrics page served in-process (no broker)."""
    from prometheus_client import start_http_server

    from monitor.__main__ import main
    from monitor.metrics import MonitorMetrics
    from monitor.service import load_reference

    registry = CollectorRegistry()
    MonitorMetrics(registry, load_reference(model_dir), {"predictions": "p", "labels": "l"})
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        assert main(["status", "--url", f"http://127.0.0.1:{port}/metrics"]) == 0
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert all(re.search(rf"^{f} .* n/a .*n/a", out, re.M) for f in FEATURES), out
    assert "window: n/a records" in out
    assert np.isfinite(registry.get_sample_value("reference_mse"))
