"""Scorer benchmarks, all in one run so the ratios hold on a noisy machine.

1. offline: one vectorized model.predict over N records (the bar's denominator; with
   predict_proba too for a classifier whose messages carry probabilities);
2. the tutorial's one-record-per-call predict (for contrast);
3. the scorer process through the local broker on the same N records (bar: >= 0.8 x offline),
   alone on the machine; 1 and 3 alternate for --rounds rounds and the medians are compared;
   then once more with this script tailing the predictions meanwhile;
4. produce -> prediction latency p50/p99 with the simulator at 1,000 records/s (`bench/latency_bench.py`
   measures it against its bars, with the saturated ratio and the monitor, in one run).

Any model dir (MODEL_DIR, default artifacts/: the diamonds model): records are drawn from its
reference.csv and laid out as its schema.yaml says.
Run: `make bench` or `.venv/bin/python bench/scorer_bench.py [--records N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.artifacts import load_model_schema  # noqa: E402
from devstack.broker import free_port, start_broker  # noqa: E402
from devstack.demo import read_metrics  # noqa: E402
from scorer.model import load, load_reference  # noqa: E402


def sample_records(model_dir: Path, count: int, seed: int = 1) -> pd.DataFrame:
    """`count` rows of the reference's features (drawn with replacement), in the schema's order and types."""
    reference = load_reference(model_dir)
    rows = np.random.default_rng(seed).integers(0, len(reference), size=count)
    return reference.iloc[rows][list(load_model_schema(model_dir).feature_names)].reset_index(
        drop=True
    )


def _native(value):
    return (
        value.item()
    )  # a numpy scalar (an integer category, say) as the Python value orjson writes


def feature_records(
    model_dir: Path, frame: pd.DataFrame, prefix: str = "b", now_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """(key, feature record JSON) per row, laid out as the model's schema says."""
    schema = load_model_schema(model_dir)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return [
        (
            f"{prefix}-{i}",
            orjson.dumps(schema.feature_record(f"{prefix}-{i}", now_ms, record), default=_native),
        )
        for i, record in enumerate(frame.to_dict("records"))
    ]


def consume_predictions(
    bootstrap: str, topic: str, expected: int, timeout: float
) -> list[tuple[float, dict]]:
    """(receive time, prediction) until `expected` arrive."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 50,
        }
    )
    while topic not in consumer.list_topics(timeout=10).topics:
        time.sleep(0.1)
    consumer.subscribe([topic])
    received: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        # consume(n, timeout) returns early only with all n: a short timeout, or the receive time is
        # stamped up to the timeout late (this bench once used 0.2 s: up to 0.2 s on every latency).
        for message in consumer.consume(2000, 0.001) or consumer.consume(1, 0.05):
            if not message.error():
                received.append((time.time(), json.loads(message.value())))
    consumer.close()
    return received


def service_env(bootstrap: str, topics: dict[str, str], model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MODEL_DIR": str(model_dir),
        **topics,
    }


def predictions_delivered(port: int) -> float:
    """The scorer's own count (scorer_predictions_total), 0 until its metrics server answers."""
    return read_metrics(port).get(("scorer_predictions_total", ()), 0)


def fill_features(bootstrap: str, model_dir: Path, frame: pd.DataFrame) -> str:
    """A new features topic holding every record of `frame`; its name."""
    from contract.settings import ensure_topics

    topic = f"bench-f-{uuid.uuid4().hex[:8]}"
    ensure_topics([topic], environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in feature_records(model_dir, frame):
        while True:
            try:
                producer.produce(topic, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush()
    return topic


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_record(pids: dict[str, int], port: int, count: int) -> dict[str, float]:
    """CPU µs per record of each process, from now (a batch already delivered) until `count`
    predictions are delivered."""
    first = predictions_delivered(port)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    while (last := predictions_delivered(port)) < count:
        time.sleep(0.05)
    return {
        name: (cpu_seconds(pid) - before[name]) * 1e6 / (last - first) for name, pid in pids.items()
    }


def scorer_throughput(
    bootstrap: str,
    features_topic: str,
    count: int,
    model_dir: Path,
    tail_meanwhile: bool,
    broker_pid: int,
) -> tuple[float, dict[str, float]]:
    """Records/s of a scorer (a new group and output topics) draining a features topic that
    already holds `count` records.

    `tail_meanwhile`: read and parse the predictions while the scorer runs, as a downstream
    consumer on the same 2 cores would; otherwise wait on the scorer's own counter (one scrape
    every 50 ms) and read them after it is done, so that only the scorer uses the machine."""
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "FEATURES_TOPIC": features_topic,
        "PREDICTIONS_TOPIC": f"bench-p-{suffix}",
        "DLQ_TOPIC": f"bench-d-{suffix}",
        "LABELS_TOPIC": f"bench-l-{suffix}",
    }
    port = free_port()
    scorer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scorer",
            "run",
            "--metrics-port",
            str(port),
            "--group",
            f"bench-{suffix}",
        ],
        env=service_env(bootstrap, topics, model_dir),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cpu: dict[str, float] = {}
    try:
        if not tail_meanwhile:
            while predictions_delivered(port) == 0 and scorer.poll() is None:
                time.sleep(0.01)
            children = Path(f"/proc/{scorer.pid}/task/{scorer.pid}/children").read_text().split()
            pids = {"predict process": int(children[0]), "scorer": scorer.pid, "broker": broker_pid}
            cpu = cpu_per_record(pids, port, count)
        received = consume_predictions(bootstrap, topics["PREDICTIONS_TOPIC"], count, timeout=600)
    finally:
        scorer.terminate()
        scorer.wait(30)
    if len(received) < count:
        raise RuntimeError(f"only {len(received)} of {count} predictions arrived")
    # scored_at is stamped per batch: the rate between the first and the last batch excludes
    # process start-up and group join, which are not throughput.
    scored = np.array(
        [p["scored_at"] for _, p in received], dtype=float
    )  # scoring.SCORED_AT: in every layout
    first, last = scored.min(), scored.max()
    after_first = int((scored > first).sum())
    return after_first / ((last - first) / 1000.0), cpu


def latency_at_rate(bootstrap: str, model_dir: Path, rate: int, count: int) -> tuple[float, float]:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "FEATURES_TOPIC": f"lat-f-{suffix}",
        "PREDICTIONS_TOPIC": f"lat-p-{suffix}",
        "DLQ_TOPIC": f"lat-d-{suffix}",
        "LABELS_TOPIC": f"lat-l-{suffix}",
    }
    env = service_env(bootstrap, topics, model_dir)
    scorer = subprocess.Popen(
        [sys.executable, "-m", "scorer", "run", "--metrics-port", "0", "--group", f"lat-{suffix}"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Warm up: the scorer joins its group before the timed stream starts.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "producer",
                "simulate",
                "--count",
                "10",
                "--rate",
                "0",
                "--id-prefix",
                "warm",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        consume_predictions(bootstrap, topics["PREDICTIONS_TOPIC"], 10, timeout=120)
        # The simulator reads MODEL_DIR (service_env) for the schema and the reference rows.
        producer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producer",
                "simulate",
                "--count",
                str(count),
                "--rate",
                str(rate),
                "--label-delay",
                "0",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        received = consume_predictions(
            bootstrap, topics["PREDICTIONS_TOPIC"], count + 10, timeout=count / rate + 120
        )
        producer.wait(60)
    finally:
        scorer.terminate()
        scorer.wait(30)
    layout = load_model_schema(model_dir).messages
    latencies = np.array(
        [
            at * 1000 - p[layout.timestamp]
            for at, p in received
            if str(p[layout.id]).startswith("sim-")
        ]
    )
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


def offline_rate(model, frame: pd.DataFrame, probabilities: bool) -> float:
    """Records/s of the model alone: predict (and predict_proba, when the scorer publishes it) in one call each."""
    started = time.perf_counter()
    model.predict(frame)
    if probabilities:
        model.pipeline.predict_proba(frame)
    return len(frame) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="offline/scorer pairs; the table shows the medians"
    )
    parser.add_argument("--latency-records", type=int, default=20_000)
    args = parser.parse_args(argv)
    model_dir = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts")).resolve()
    model = load(model_dir)
    schema = load_model_schema(model_dir)
    probabilities = bool(schema.classification and schema.messages.carries_probabilities)
    frame = sample_records(model_dir, args.records)
    single = frame.head(300)
    started = time.perf_counter()
    for i in range(len(single)):
        model.predict(single.iloc[[i]])
    per_record = len(single) / (time.perf_counter() - started)

    broker = start_broker()
    offline, alone, cpus = [], [], []
    try:
        features_topic = fill_features(broker.bootstrap, model_dir, frame)
        # Rounds alternate the two measures, so a slow spell of this shared machine weighs on both.
        for round_number in range(1, args.rounds + 1):
            offline.append(offline_rate(model, frame, probabilities))
            rate, cpu = scorer_throughput(
                broker.bootstrap, features_topic, len(frame), model_dir, False, broker.process.pid
            )
            alone.append(rate)
            cpus.append(cpu)
            print(
                f"round {round_number}: offline {offline[-1]:,.0f} records/s, scorer {rate:,.0f} "
                f"({rate / offline[-1]:.2f})",
                file=sys.stderr,
            )
        tailed, _ = scorer_throughput(
            broker.bootstrap, features_topic, len(frame), model_dir, True, broker.process.pid
        )
        offline_last = offline_rate(model, frame, probabilities)
        p50, p99 = latency_at_rate(broker.bootstrap, model_dir, 1000, args.latency_records)
    finally:
        broker.stop()

    base, scorer = float(np.median(offline)), float(np.median(alone))
    print(
        f"| measure ({args.records:,} records; medians of {args.rounds} alternating rounds) "
        "| records/s | ratio to offline batch |"
    )
    print("|---|---:|---:|")
    print(f"| offline `model.predict`, one call | {base:,.0f} | 1.00 |")
    print(
        f"| scorer through the local broker (decode, predict, produce, commit) | {scorer:,.0f} | {scorer / base:.2f} |"
    )
    print(
        "| the same once more, while this script reads and parses every prediction "
        "(against an offline run just after) "
        f"| {tailed:,.0f} | {tailed / offline_last:.2f} |"
    )
    print(
        f"| tutorial: one record per `predict` call | {per_record:,.0f} | {per_record / base:.3f} |"
    )
    print()
    print(
        "rounds (offline, scorer): "
        + ", ".join(f"{o:,.0f} / {a:,.0f}" for o, a in zip(offline, alone))
    )
    print(
        "CPU µs per record in the scorer's rounds (median): "
        + ", ".join(f"{name} {np.median([c[name] for c in cpus]):.1f}" for name in cpus[0])
    )
    print(
        f"produce -> prediction received at 1,000 records/s ({args.latency_records:,} records): "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
