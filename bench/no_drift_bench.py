"""No drift through the real broker: the false alarms of the whole pipeline, and the windows it sees.

    .venv/bin/python bench/no_drift_bench.py [--seeds 5] [--records 1000000] [--partitions 6]

For each seed (independent streams) on a local broker: fresh topics with --partitions partitions,
the scorer and the monitor as services (defaults: window 1,000, step 250, ert 1e7), and the
simulator at full speed (`--rate 0`) with no drift. A reader in this process consumes the
predictions topic alongside the monitor, with the same client settings, and keeps the ids in
the order they arrive. Printed per seed and in total:
- the monitor's flags by test (its own counters) against the budget: records / ert expected;
- the arrival order: every record once, each partition in order (the longest decreasing run of
  positions equals the partition count), how long the runs of one partition are;
- for each categorical column, the windows' statistic (the monitor's, every 250 records at 1,000
  and 500 records) in arrival order against the simulator's own order, the same records: mean,
  variance, 99.9th percentile and maximum. Equal distributions say the windows the monitor sees
  are draws like any other; the maximum of one stream is a single extreme value, not a rate.
"""

from __future__ import annotations

import argparse
import bisect
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

from confluent_kafka import Consumer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference  # noqa: E402
from contract.settings import consumer_config, ensure_topics  # noqa: E402
from devstack.broker import free_port, start_broker, terminate  # noqa: E402
from monitor.baseline import load_reference  # noqa: E402
from monitor.stats import chi2_statistic  # noqa: E402
from producer.simulate import SimulateConfig, generate_chunks, source_columns  # noqa: E402

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
ERT = 1e7
STEP = 250


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    try:
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "model"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


class ArrivalReader(threading.Thread):
    """Consumes the predictions topic as the monitor does (a group consumer, batches of up to 10,000)
    and keeps each record's position (id sim-<position>) and partition in arrival order."""

    def __init__(self, environ: dict[str, str], topic: str, records: int) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(
            consumer_config(f"arrival-{uuid.uuid4().hex[:8]}", environ)
            | {"auto.offset.reset": "earliest"}
        )
        self.consumer.subscribe([topic])
        self.records, self.positions, self.partitions = records, [], []

    def run(self) -> None:
        while len(self.positions) < self.records:
            for message in self.consumer.consume(10_000, 0.5):
                if message.error() is None:
                    key = message.key().decode()
                    self.positions.append(int(key.rsplit("-", 1)[1]))
                    self.partitions.append(message.partition())
        self.consumer.close()


def one_seed(bootstrap: str, seed: int, records: int, partitions: int, workdir: Path) -> dict:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "FEATURES_TOPIC": f"f-{suffix}",
        "LABELS_TOPIC": f"l-{suffix}",
        "PREDICTIONS_TOPIC": f"p-{suffix}",
        "DLQ_TOPIC": f"d-{suffix}",
        "MONITOR_DLQ_TOPIC": f"md-{suffix}",
        "MONITOR_STATE_TOPIC": f"s-{suffix}",
    }
    environ = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MODEL_DIR": str(MODEL_DIR),
        "TOPIC_PARTITIONS": str(partitions),
        "PYTHONUNBUFFERED": "1",
        **topics,
    }
    ensure_topics(
        [
            topics[k]
            for k in (
                "FEATURES_TOPIC",
                "LABELS_TOPIC",
                "PREDICTIONS_TOPIC",
                "DLQ_TOPIC",
                "MONITOR_DLQ_TOPIC",
            )
        ],
        partitions,
        environ,
    )
    scorer_port, monitor_port = free_port(), free_port()

    def start(name: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", name, *args],
            env=environ,
            cwd=ROOT,
            stdout=open(workdir / f"{name}-{seed}.log", "ab"),
            stderr=subprocess.STDOUT,
        )

    scorer = start(
        "scorer",
        "run",
        "--group",
        f"s-{suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(scorer_port),
    )
    monitor = start(
        "monitor",
        "run",
        "--group",
        f"m-{suffix}",
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(monitor_port),
    )
    reader = ArrivalReader(environ, topics["PREDICTIONS_TOPIC"], records)
    reader.start()
    consumed = ("monitor_records_consumed_total", (("topic", topics["PREDICTIONS_TOPIC"]),))
    try:
        wait(lambda: scrape(monitor_port) and scrape(scorer_port), 120, "services up")
        started = time.monotonic()
        producer = start(
            "producer",
            "simulate",
            "--count",
            str(records),
            "--rate",
            "0",
            "--seed",
            str(seed),
            "--label-delay",
            "0",
        )
        wait(
            lambda: scrape(monitor_port).get(consumed) == records,
            1800,
            "monitor consumed every record",
        )
        seconds = time.monotonic() - started
        reader.join(120)
        samples = scrape(monitor_port)
        assert producer.wait(60) == 0, "simulator failed"
    finally:
        for process in (monitor, scorer):
            terminate(process, 30)
    flags = {
        dict(labels)["feature"]: int(v)
        for (name, labels), v in samples.items()
        if name == "drift_feature_detections_total" and v
    }
    for name in (
        "prediction_drift_detections_total",
        "concept_drift_detections_total",
        "estimated_concept_drift_detections_total",
    ):
        if samples.get((name, ())):
            flags[name.removesuffix("_detections_total")] = int(samples[(name, ())])
    return {
        "seed": seed,
        "records": records,
        "seconds": seconds,
        "flags": flags,
        "evaluations": int(samples.get(("monitor_evaluations_total", ()), 0)),
        "positions": np.array(reader.positions),
        "partitions": np.array(reader.partitions),
    }


def longest_decreasing(sequence: np.ndarray) -> int:
    tails: list[int] = []
    for x in (-sequence).tolist():
        i = bisect.bisect_left(tails, x)
        tails[i : i + 1] = [x]
    return len(tails)


def window_statistics(codes: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """The monitor's categorical statistic for the window of n records ending every STEP records."""
    onehot = np.zeros((len(codes) + 1, len(counts)))
    np.add.at(onehot, (np.arange(1, len(codes) + 1), codes), 1)
    cumulative = np.cumsum(onehot, axis=0)
    ends = np.arange(max(n, 1000), len(codes) + 1, STEP)
    windows = cumulative[ends] - cumulative[ends - n]
    m = counts.sum()
    expected = n * (counts + 0.5) / (m + 0.5 * len(counts))
    statistic = ((windows - expected) ** 2 / expected).sum(axis=1) * m / (n + m)
    check, _ = chi2_statistic(counts, windows[0], np.empty(0))
    assert abs(check - statistic[0]) < 1e-9 * max(1.0, check)
    return statistic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1_000_000, help="records per seed")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)

    schema = load_model_schema(MODEL_DIR)
    reference = load_reference(schema, MODEL_DIR / REFERENCE_FILE)
    source = source_columns(read_reference(MODEL_DIR / REFERENCE_FILE, schema), schema)
    workdir = Path(tempfile.mkdtemp(prefix="no-drift-"))
    broker = start_broker(log_path=workdir / "broker.log")
    results = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            results.append(one_seed(broker.bootstrap, seed, args.records, args.partitions, workdir))
            r = results[-1]
            print(
                f"seed {seed}: {r['records']:,} records in {r['seconds']:.0f} s, {r['evaluations']:,} evaluations, "
                f"flags {r['flags'] or 'none'}",
                flush=True,
            )
    finally:
        broker.stop()

    total = sum(r["records"] for r in results)
    flagged = sum(sum(r["flags"].values()) for r in results)
    print(
        f"\n## No drift through the broker: {len(results)} seeds x {args.records:,} records, "
        f"{args.partitions} partitions\n"
    )
    print(
        f"records {total:,}; evaluations {sum(r['evaluations'] for r in results):,}; flags {flagged} "
        f"(budget: at most {total / ERT:.2f} expected, records / ert)\n"
    )
    print(
        "| seed | every record once | partitions in order | one-partition runs p50 / p99 / max | column | "
        "scale | mean (simulator order / arrival) | variance | 99.9th pct | max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        positions = r["positions"]
        once = len(positions) == r["records"] == len(np.unique(positions))
        in_order = longest_decreasing(positions) <= args.partitions
        change = np.flatnonzero(np.diff(r["partitions"])) + 1
        runs = np.diff(np.concatenate([[0], change, [len(positions)]]))
        config = SimulateConfig(count=r["records"], rate=0, seed=r["seed"])
        chunks = list(generate_chunks(source, config))
        for name, profile in reference.categorical.items():
            values = np.concatenate([chunk[name] for _, chunk, _ in chunks]).astype(str)
            codes = profile.codes(values.tolist())
            for n, scale in ((1000, "window"), (500, "recent")):
                simulator, arrival = (
                    window_statistics(codes, profile.counts, n),
                    window_statistics(codes[positions], profile.counts, n),
                )
                pair = lambda f: f"{f(simulator):.2f} / {f(arrival):.2f}"  # noqa: E731
                print(
                    f"| {r['seed']} | {once} | {in_order} | {np.percentile(runs, 50):.0f} / "
                    f"{np.percentile(runs, 99):.0f} / {runs.max()} | {name} | {scale} | "
                    f"{pair(np.mean)} | {pair(np.var)} | "
                    f"{pair(lambda x: np.quantile(x, 0.999))} | {pair(np.max)} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
