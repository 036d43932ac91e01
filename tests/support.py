"""Helpers for tests that talk to the local broker: per-test topics, CLI runs, draining topics."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class KafkaEnv:
    """Environment for one test: its own topics on the shared local broker."""

    bootstrap: str
    suffix: str
    model_dir: Path
    settings: tuple[
        tuple[str, str], ...
    ] = ()  # extra env (KAFKA_* client settings) for every process

    @property
    def topics(self) -> dict[str, str]:
        return {
            "FEATURES_TOPIC": f"features-{self.suffix}",
            "LABELS_TOPIC": f"labels-{self.suffix}",
            "PREDICTIONS_TOPIC": f"predictions-{self.suffix}",
            "DLQ_TOPIC": f"dlq-{self.suffix}",
            "MONITOR_DLQ_TOPIC": f"monitor-dlq-{self.suffix}",
            "MONITOR_STATE_TOPIC": f"monitor-state-{self.suffix}",
            "MONITOR_PANES_TOPIC": f"monitor-panes-{self.suffix}",
        }

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            # First join of a group takes about half the session timeout on Tansu.
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "MODEL_DIR": str(self.model_dir),
            "PYTHONUNBUFFERED": "1",
            **self.topics,
            **dict(self.settings),
            **extra,
        }

    def run(
        self,
        module: str,
        *args: str,
        timeout: float = 120,
        input: bytes | None = None,
        **extra: str,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            env=self.env(**extra),
            cwd=ROOT,
            capture_output=True,
            timeout=timeout,
            input=input,
        )

    def start(self, module: str, *args: str, log: Path, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=self.env(**extra),
            cwd=ROOT,
            stdout=open(log, "ab"),
            stderr=subprocess.STDOUT,
        )

    def consume(
        self, topic_env: str, expected: int, timeout: float = 90.0, idle: float = 0.0
    ) -> list[Message]:
        """Read a topic from the start until `expected` messages (or, with `idle`, quiet for that long)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        topic = self.topics[topic_env]
        deadline = time.monotonic() + timeout
        wait_until(
            lambda: topic in consumer.list_topics(timeout=10).topics,
            timeout,
            message=f"topic {topic} appearing",
        )
        consumer.subscribe([topic])
        messages: list[Message] = []
        last = time.monotonic()
        try:
            while time.monotonic() < deadline:
                if expected and len(messages) >= expected:
                    break
                if idle and messages and time.monotonic() - last > idle:
                    break
                for message in consumer.consume(1000, 0.5):
                    if message.error():
                        assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                        continue
                    messages.append(message)
                    last = time.monotonic()
        finally:
            consumer.close()
        return messages

    def committed(self, group: str, topic_env: str) -> dict[int, int]:
        """{partition: offset} that `group` has committed on the topic (-1001 when none); reads, never joins."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        try:
            topic = self.topics[topic_env]
            partitions = [
                TopicPartition(topic, p)
                for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ]
            return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        finally:
            consumer.close()


class PredictionIds:
    """Every prediction id on the test's predictions topic, read by a background consumer."""

    def __init__(self, kafka: KafkaEnv) -> None:
        self.kafka, self.ids = kafka, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> PredictionIds:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(10)

    def _read(self) -> None:
        topic = self.kafka.topics["PREDICTIONS_TOPIC"]
        consumer = Consumer(
            {
                "bootstrap.servers": self.kafka.bootstrap,
                "group.id": f"ids-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        try:
            while topic not in consumer.list_topics(timeout=10).topics and not self._done.is_set():
                self._done.wait(
                    0.2
                )  # the owner's own waits hold the deadline; its exit ends this one
            consumer.subscribe([topic])
            while not self._done.is_set():
                self.ids.extend(
                    json.loads(m.value())["id"]
                    for m in consumer.consume(1000, 0.2)
                    if not m.error()
                )
        finally:
            consumer.close()

    @property
    def distinct(self) -> int:
        return len(set(self.ids))

    @property
    def duplicates(self) -> int:
        return len(self.ids) - self.distinct

    def wait_quiet(self, quiet: float = 2.0, timeout: float = 60.0) -> None:
        """Until no prediction has arrived for `quiet` s, before counting duplicates. A straggling
        duplicate cannot be awaited by name, and "read to the topic's end" cannot be asked of Tansu
        (its latest-offset look-ups are wrong), so a quiet topic is the condition."""
        last = [len(self.ids), time.monotonic()]

        def quiet_for() -> bool:
            if len(self.ids) != last[0]:
                last[:] = [len(self.ids), time.monotonic()]
            return time.monotonic() - last[1] >= quiet

        wait_until(quiet_for, timeout, interval=0.1, message=f"no new prediction for {quiet} s")


def wait_until(condition, timeout: float, interval: float = 0.2, message: str = "condition"):
    """`condition()` every `interval` s until it returns something true, and that value;
    AssertionError naming `message` once `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout} s")
        time.sleep(interval)  # the poll interval of a wait with a deadline
    return value


def wait_for_log(log: Path, text: str, timeout: float = 90) -> None:
    """Until a service's log says `text`: services that read a stream start before it, so a
    slow start (loading the model on a busy machine) cannot find the whole stream waiting."""
    wait_until(
        lambda: log.exists() and text in log.read_text(),
        timeout,
        message=f"{log.name} saying {text!r}",
    )


def stop_process(process: subprocess.Popen, timeout: float = 30) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return process.returncode


# -- the monitor's /metrics --------------------------------------------------------------------
def scrape(port: int, keep_model: bool = False) -> Samples:
    """A /metrics page as {(name, sorted labels): value}. Every monitor series carries its schema's
    `model` label; one monitor watches one model, so tests read its samples without that label
    unless `keep_model` (the label itself is asserted where it is the point)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if keep_model or k != "model")),
        ): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def stream_records(port: int) -> float:
    return scrape(port).get(("monitor_stream_records", ()), -1)


def window_view(samples: Samples) -> dict[str, float]:
    """What the restart test compares: window size, feature statistics, prediction and dataset drift."""
    keys = [
        ("window_records", ()),
        ("data_drift", ()),
        ("prediction_drift_statistic", ()),
        ("monitor_stream_records", ()),
    ]
    keys += [k for k in samples if k[0] == "drift_feature_statistic"]
    return {f"{name}{dict(labels)}": samples[(name, labels)] for name, labels in keys}


def start_scorer(kafka: KafkaEnv, log: Path, model_dir: Path | None = None) -> subprocess.Popen:
    """The scorer on the test's topics with one partition (records in simulator order), no metrics
    port; `model_dir` when it is not the environment's."""
    return kafka.start(
        "scorer",
        "run",
        *(["--model-dir", str(model_dir)] if model_dir else []),
        "--metrics-port",
        "0",
        "--group",
        f"scorer-{kafka.suffix}",
        log=log,
        TOPIC_PARTITIONS="1",
    )


def start_monitor(
    kafka: KafkaEnv, log: Path, group: str, port: int, *args: str
) -> subprocess.Popen:
    return kafka.start(
        "monitor",
        "run",
        "--group",
        group,
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--state-interval",
        "0.3",
        *args,
        log=log,
        TOPIC_PARTITIONS="1",
        MONITOR_STATE_TOPIC=f"monitor-state-{kafka.suffix}",
    )


def own_rss_mb(pid: int) -> float | None:
    """VmRSS of one process; None when it has none (a zombie) or has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), None)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# -- a model's whole pipeline: simulator -> scorer -> monitor ------------------------------------
def run_stream(
    kafka: KafkaEnv,
    tmp_path: Path,
    model_dir: Path,
    scenario: str,
    count: int,
    onset: int,
    seed: int = 5,
    labels: bool = True,
) -> Samples:
    """Simulate `count` records of the model in `model_dir` (schema.yaml, reference.csv, model.joblib)
    through the scorer and a monitor given --schema and --reference; the monitor's /metrics (model
    label kept) once every prediction and label is in (`labels=False`: no label is ever sent). One
    partition: records in simulator order."""
    from devstack.broker import free_port

    port, log = free_port(), tmp_path / "monitor.log"
    scorer = start_scorer(kafka, tmp_path / "scorer.log", model_dir)
    monitor = kafka.start(
        "monitor",
        "run",
        "--schema",
        str(model_dir / "schema.yaml"),
        "--reference",
        str(model_dir / "reference.csv"),
        "--group",
        f"monitor-{kafka.suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        log=log,
        TOPIC_PARTITIONS="1",
        MODEL_DIR="/nonexistent",
    )  # everything it needs comes from --schema and --reference
    try:
        wait_for_log(tmp_path / "scorer.log", "scoring ")
        wait_for_log(log, "monitoring ")
        produced = kafka.run(
            "producer",
            "simulate",
            "--model-dir",
            str(model_dir),
            "--count",
            str(count),
            "--rate",
            "0",
            "--scenario",
            scenario,
            "--onset",
            str(onset),
            "--seed",
            str(seed),
            "--label-delay",
            "0",
            *([] if labels else ["--no-labels"]),
            TOPIC_PARTITIONS="1",
        )
        assert produced.returncode == 0, produced.stderr.decode()[-2000:]
        if labels:
            wait_monitored(port, count, kafka.topics["LABELS_TOPIC"], timeout=180)
        else:
            wait_until(
                lambda: stream_records(port) == count,
                timeout=180,
                interval=0.5,
                message=f"{count} predictions monitored",
            )
        samples = scrape(port, keep_model=True)
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
        stop_process(scorer)
    return samples


def wait_monitored(port: int, count: int, labels_topic: str, timeout: float = 120) -> None:
    """Until the monitor on `port` has every one of `count` predictions in its windows and every
    label joined: its final window is complete."""
    wait_until(
        lambda: (
            (s := scrape(port)).get(("monitor_stream_records", ())) == count
            and s.get(("monitor_records_consumed_total", (("topic", labels_topic),))) == count
            and s.get(("label_coverage_ratio", ())) == 1.0
        ),
        timeout=timeout,
        interval=0.5,
        message=f"{count} predictions and labels monitored",
    )


def flagged(samples: Samples) -> dict[str, float]:
    """Evaluations that flagged each feature."""
    return {
        dict(labels)["feature"]: value
        for (name, labels), value in samples.items()
        if name == "drift_feature_detections_total"
    }


def first_alarm(results, onset: int, step: int = 250):
    """(records after `onset` when the first of a count window's results alarmed, that result),
    or (None, None): the detection delay the core tests assert."""
    for r in results:
        if r.drift_detected:
            return (r.pane + 1) * step - onset, r
    return None, None


@functools.cache
def decoders_of(schema):
    """The schema's typed decoders (`contract.decoders.Decoders`), built once per schema for the tests."""
    from contract.decoders import Decoders

    return Decoders(schema)
