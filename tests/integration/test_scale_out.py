"""Monitor workers sharing the partitions, one evaluator merging their panes: through the real broker,
the same gauges as one monitor over the same event-time stream, also when a worker is SIGKILLed
and the evaluator is killed and restarted."""

import math
import re
import signal
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.broker import free_port
from tests.support import scrape, stop_process, wait_for_log, wait_until

pytestmark = pytest.mark.broker

PARTITIONS, RECORDS, RATE = 6, 16_000, 2_000  # 8 s of event time over 6 partitions
# One monitor reading 6 partitions sees runs of one partition (thousands of records, seconds of event
# time, when it lags): its single watermark would drop the others' records as late, which the workers'
# per-partition watermarks keep. A window longer than the stream keeps the comparison to what both hold.
WINDOW = ("--window", "30s", "--step", "1s")


def gauges(port: int) -> dict[str, float]:
    """The window gauges one monitor and the evaluator both export (NaN-free once the window is full)."""
    samples = scrape(port)
    names = (
        "window_records",
        "data_drift",
        "prediction_drift_statistic",
        "concept_drift",
        "rolling_mse",
        "label_coverage_ratio",
        "drift_share_detected",
        # the performance estimated without labels: per-record estimates summed in the panes
        "estimated_mse",
        "estimated_mae",
        "estimated_concept_drift",
        "estimated_concept_drift_threshold",
        "outside_support_ratio",
        # the error test on the joined records: bin counts summed in the panes (integers: exactly)
        "concept_error_threshold",
        "concept_error_pvalue",
        "concept_error_detected",
        "concept_error_records",
    )
    view = {name: samples.get((name, ()), math.nan) for name in names}
    view |= {
        f"{name}{dict(labels)}": value
        for (name, labels), value in samples.items()
        if name in ("drift_feature_statistic", "drift_feature_threshold", "concept_error_statistic")
    }
    return view


def equal(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) for k in a
    )


def counter(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), math.nan)


class ScaleOut:
    """Scorer, one `monitor run`, `workers` workers and an evaluator on one test's topics."""

    def __init__(self, kafka, tmp_path, workers: int, grace: str) -> None:
        self.kafka, self.tmp_path, self.grace = kafka, tmp_path, grace
        self.single_port, self.evaluator_port = free_port(), free_port()
        self.worker_ports = [free_port() for _ in range(workers)]
        self.group = f"scale-{kafka.suffix}"
        self.processes = {}
        self.processes["scorer"] = kafka.start(
            "scorer",
            "run",
            "--metrics-port",
            "0",
            "--group",
            f"scorer-{kafka.suffix}",
            log=tmp_path / "scorer.log",
            TOPIC_PARTITIONS=str(PARTITIONS),
        )
        wait_for_log(tmp_path / "scorer.log", "scoring ")  # it created the predictions topic
        self.processes["single"] = self.monitor(
            "run", self.single_port, f"single-{kafka.suffix}", "single"
        )
        for i, port in enumerate(self.worker_ports):
            self.processes[f"worker{i}"] = self.monitor("worker", port, self.group, f"worker{i}")
        self.start_evaluator()

    def monitor(self, command: str, port: int, group: str, name: str, *extra: str):
        return self.kafka.start(
            "monitor",
            command,
            "--group",
            group,
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            "--state-interval",
            "0.5",
            *WINDOW,
            *extra,
            log=self.tmp_path / f"{name}.log",
            TOPIC_PARTITIONS=str(PARTITIONS),
        )

    def start_evaluator(self):
        self.processes["evaluator"] = self.monitor(
            "evaluate", self.evaluator_port, self.group, "evaluator", "--grace", self.grace
        )
        wait_for_log(self.tmp_path / "evaluator.log", "evaluating ")

    def owned(self, ports=None) -> float:
        return sum(
            max(counter(p, "monitor_worker_partitions"), 0) for p in ports or self.worker_ports
        )

    def consumed(self, ports, role: str) -> float:
        topic = self.kafka.topics[f"{role.upper()}_TOPIC"]
        return sum(counter(p, "monitor_records_consumed_total", topic=topic) for p in ports)

    def produce(self, seed: int = 5):
        return self.kafka.start(
            "producer",
            "simulate",
            "--count",
            str(RECORDS),
            "--rate",
            str(RATE),
            "--seed",
            str(seed),
            "--label-delay",
            "0.5",
            "--scenario",
            "carat-shift",
            "--onset",
            "8000",
            log=self.tmp_path / "producer.log",
            TOPIC_PARTITIONS=str(PARTITIONS),
        )

    def wait_for_everything(self, worker_ports) -> tuple[dict, dict]:
        """Until the single monitor holds every prediction and label, the workers have read them all and
        the evaluator's gauges equal the single monitor's; returns both views."""
        wait_until(
            lambda: (
                counter(
                    self.single_port,
                    "monitor_records_consumed_total",
                    topic=self.kafka.topics["LABELS_TOPIC"],
                )
                == RECORDS
                and counter(self.single_port, "label_coverage_ratio") == 1.0
            ),
            timeout=120,
            message="the single monitor has every label",
        )
        if worker_ports:  # (a dead worker's counts are gone with it)
            wait_until(
                lambda: self.consumed(worker_ports, "labels") >= RECORDS,
                timeout=120,
                message="the workers have read every label",
            )
        try:
            wait_until(
                lambda: equal(gauges(self.evaluator_port), gauges(self.single_port)),
                timeout=60,
                message="the evaluator's gauges equal the single monitor's",
            )
        except AssertionError:
            pass  # the comparison below names what differs
        return gauges(self.evaluator_port), gauges(self.single_port)

    def stop(self):
        codes = {name: stop_process(p) for name, p in self.processes.items() if p.poll() is None}
        return codes


def assert_same_gauges(merged: dict, single: dict) -> None:
    assert single["window_records"] > 0 and single["label_coverage_ratio"] == 1.0
    assert not math.isnan(single["concept_drift"]) and not math.isnan(single["data_drift"])
    assert not math.isnan(single["estimated_mse"])  # the estimates are part of what must be equal
    # so is the error test (on in `monitor run`, `worker` and `evaluate` alike: the shell's build_monitor)
    assert not math.isnan(single["concept_error_threshold"]), "the error test is off in the monitor"
    assert merged.keys() == single.keys()
    different = {
        k: (merged[k], single[k])
        for k in single
        if not math.isclose(merged[k], single[k], rel_tol=1e-9, abs_tol=1e-12)
    }
    assert not different, different


def test_three_workers_and_an_evaluator_equal_one_monitor(kafka, tmp_path):
    stack = ScaleOut(kafka, tmp_path, workers=3, grace="5s")
    try:
        wait_until(
            lambda: stack.owned() == PARTITIONS,
            timeout=60,
            message="the 6 partitions shared by 3 workers",
        )
        assert all(
            counter(p, "monitor_worker_partitions") == 2 for p in stack.worker_ports
        )  # range: 2 each
        producer = stack.produce()
        merged, single = stack.wait_for_everything(stack.worker_ports)
        assert producer.wait(60) == 0
        assert_same_gauges(merged, single)
        assert (
            counter(stack.single_port, "monitor_late_records_total") == 0
        )  # so the comparison is fair
        assert (
            stack.consumed(stack.worker_ports, "predictions") == RECORDS
        )  # each record read by one worker
        assert counter(stack.evaluator_port, "monitor_late_pane_records_total") == 0
        assert counter(stack.evaluator_port, "monitor_dropped_pane_records_total") == 0
        # the carat shift at record 8,000 was seen by both, in the same evaluations
        assert counter(stack.evaluator_port, "drift_feature_detections_total", feature="carat") > 0
        # the evaluator serves the page of the merged window: carat flagged, its statistic the gauge
        with urllib.request.urlopen(
            f"http://127.0.0.1:{stack.evaluator_port}/", timeout=30
        ) as page:
            kind, html = page.headers["Content-Type"], page.read().decode()
        assert kind.startswith("text/html"), kind
        carat = re.search(r'<article class="column flagged" id="feature-carat"[^>]*>', html)
        assert carat, "carat is flagged on the evaluator's page"
        shown = float(re.search(r'data-statistic="([^"]+)"', carat[0])[1])
        statistic = scrape(stack.evaluator_port)[
            ("drift_feature_statistic", (("feature", "carat"), ("test", "ks")))
        ]
        assert shown == statistic, (shown, statistic)
    finally:
        codes = stack.stop()
    assert all(code == 0 for code in codes.values()), codes


def test_a_killed_worker_and_a_restarted_evaluator_change_nothing(kafka, tmp_path):
    """A worker SIGKILLed mid-stream: its partitions move to the other two, which resume from its last
    partition state; the evaluator SIGKILLed later and started again: it resumes from its state. The
    grace outlasts the group's session timeout, so no window is evaluated without the moved partitions."""
    stack = ScaleOut(kafka, tmp_path, workers=3, grace="30s")
    try:
        wait_until(
            lambda: stack.owned() == PARTITIONS,
            timeout=60,
            message="the 6 partitions shared by 3 workers",
        )
        producer = stack.produce(seed=6)
        victim, survivors = stack.worker_ports[0], stack.worker_ports[1:]
        wait_until(
            lambda: stack.consumed([victim], "predictions") >= RECORDS // 6,
            timeout=60,
            message="the first worker is mid-stream",
        )
        stack.processes["worker0"].send_signal(signal.SIGKILL)
        stack.processes["worker0"].wait(10)
        wait_until(
            lambda: stack.owned(survivors) == PARTITIONS,
            timeout=60,
            message="the two others own all 6 partitions",
        )
        wait_until(
            lambda: (
                counter(stack.evaluator_port, "monitor_state_writes_total") >= 2
                and counter(stack.evaluator_port, "monitor_evaluations_total") > 0
            ),
            timeout=60,
            message="the evaluator has evaluated and saved its state",
        )
        stack.processes["evaluator"].send_signal(signal.SIGKILL)
        stack.processes["evaluator"].wait(10)
        stack.start_evaluator()
        merged, single = stack.wait_for_everything(None)
        assert producer.wait(60) == 0
        assert_same_gauges(merged, single)
        assert counter(stack.single_port, "monitor_late_records_total") == 0
        # The dead worker's partitions were taken under a new epoch, from its last saved state; what it
        # had read since was read again and replaced its reports: no late or dropped pane.
        taken = [
            line
            for name in ("worker1", "worker2")
            for line in (tmp_path / f"{name}.log").read_text().splitlines()
            if "took partitions" in line
        ]
        assert any("epochs [2" in line for line in taken), taken
        assert counter(stack.evaluator_port, "monitor_late_pane_records_total") == 0
        assert counter(stack.evaluator_port, "monitor_dropped_pane_records_total") == 0
        # the evaluator restored its windows: it did not start from the first pane again
        assert "restored the evaluator of group" in (tmp_path / "evaluator.log").read_text()
    finally:
        codes = stack.stop()
    assert all(code == 0 for name, code in codes.items()), codes


def test_workers_refuse_topics_that_are_not_co_partitioned(kafka):
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics(
        [NewTopic(kafka.topics["PREDICTIONS_TOPIC"], 6), NewTopic(kafka.topics["LABELS_TOPIC"], 3)]
    )
    for future in futures.values():
        future.result(30)
    for command in ("worker", "evaluate"):
        done = kafka.run(
            "monitor", command, "--window", "30s", "--step", "10s", "--metrics-port", "0"
        )
        assert done.returncode == 2, done.stderr.decode()[-2000:]
        errors = [line for line in done.stderr.decode().splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "has 6 partitions" in errors[0] and " 3: " in errors[0], errors
        assert "Traceback" not in done.stderr.decode()
    counted = kafka.run(
        "monitor", "worker", "--window", "1000", "--step", "250", "--metrics-port", "0"
    )
    assert counted.returncode == 2 and "use `monitor run`" in counted.stderr.decode()
