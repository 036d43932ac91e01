"""How fast could the monitor read if its work were split across processes? A ceiling, measured.

    .venv/bin/python bench/monitor_split_bench.py [--records 200000] [--partitions 4] [--rounds 3]

The monitor reads in one process (`monitor.run.run`). Its throughput bar is half a bare
consumer's; this bench asks whether running it in N processes, each reading its share of the
partitions, could reach that bar on this machine. Each reader is a process of its own:

- bare: consume() only, one process reading every partition (the bar's reference);
- decode: consume() and `monitor.decode.Decoder.predictions` (the floor of any JSON-reading monitor);
- monitor: consume() and the monitor's whole per-batch work (`monitor.run.Processor.process`:
  decode, windows, join, evaluation, gauges), each process with monitor state of its own.

The split rows run N such processes side by side, each on its own partitions, with no cost for
merging their windows or agreeing on what to evaluate. A real multi-process monitor would pay that
too, so its throughput is at most the split row's: if that row is under the bar, so is any split.

All readers assign their partitions directly (no group join) at the same start signal, after their
start-up (imports, reference, consumer), so nothing is prefetched before the clock starts; the
time is from the signal to the last reader's last record. Records are the model's held-out rows
with its predictions, written by `bench/monitor_bench.py`'s `publish_predictions`. Rounds
alternate the variants, so each sees the same machine load; the table gives medians and every
round.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
VARIANTS = ("bare", "decode", "monitor")


def reader(topic: str, partitions: list[int], expected: int, work: str) -> None:
    """A reader process: start up, say "ready", wait for the signal, read `expected` records, print the clock."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from prometheus_client import CollectorRegistry

    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from contract.service import freeze_startup_heap
    from contract.settings import Topics, consumer_config
    from monitor.baseline import Baseline, build_monitor, load_reference
    from monitor.config import MonitorConfig
    from monitor.decode import Decoder
    from monitor.metrics import MonitorMetrics
    from monitor.run import Processor
    from monitor.sources import JsonPredictions

    config = MonitorConfig(metrics_port=0)
    schema = load_model_schema(MODEL_DIR)
    if work == "monitor":
        reference, topics = (
            load_reference(schema, MODEL_DIR / REFERENCE_FILE),
            Topics.for_model(schema.name),
        )
        metrics = MonitorMetrics(
            CollectorRegistry(),
            reference,
            {"predictions": topics.predictions, "labels": topics.labels},
            model=schema.name,
        )
        # The records are all valid: nothing goes to the DLQ, so no producer (persister) is needed.
        process = Processor(
            config,
            Decoder(schema),
            build_monitor(config, Baseline(reference)),
            metrics,
            topics,
            {},
            None,
            JsonPredictions(schema, topics),
        ).process
    elif work == "decode":
        decode_predictions = Decoder(schema).predictions

        def process(messages) -> None:
            decode_predictions([m.value() for m in messages])
    else:

        def process(messages) -> None:
            pass

    consumer = Consumer(consumer_config(f"split-{uuid.uuid4().hex[:8]}"))
    freeze_startup_heap()  # as the services do
    print("ready", flush=True)
    sys.stdin.readline()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    while seen < expected:
        messages = [
            m
            for m in consumer.consume(config.batch_size, config.batch_timeout)
            if m.error() is None
        ]
        if messages:
            process(messages)
            seen += len(messages)
    print(
        json.dumps({"done": time.monotonic(), "records": seen}), flush=True
    )  # CLOCK_MONOTONIC: one clock for all processes
    consumer.close()


def timed_run(topic: str, shares: list[list[int]], ends: dict[int, int], work: str) -> float:
    """records/s of len(shares) reader processes started together, each on its partitions."""
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--reader",
                work,
                "--topic",
                topic,
                "--share",
                ",".join(map(str, share)),
                "--expected",
                str(sum(ends[p] for p in share)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        for share in shares
    ]
    try:
        for process in readers:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {work} reader failed to start")
        started = time.monotonic()
        for process in readers:
            process.stdin.write("go\n")
            process.stdin.flush()
        finished = [json.loads(process.stdout.readline()) for process in readers]
        for process in readers:
            if process.wait(60) != 0:
                raise RuntimeError(f"a {work} reader failed")
    finally:
        for process in readers:
            process.kill()
    records = sum(f["records"] for f in finished)
    return records / (max(f["done"] for f in finished) - started)


def count_by_partition(topic: str, partitions: int) -> dict[int, int]:
    """Records each partition holds, read to the end (Tansu's high watermark can be short of what
    a reader gets: docs/operations.md, "The local broker")."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from contract.settings import consumer_config

    probe = Consumer(
        {**consumer_config(f"probe-{uuid.uuid4().hex[:8]}"), "enable.partition.eof": True}
    )
    probe.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    counts, at_end = dict.fromkeys(range(partitions), 0), set()
    while len(at_end) < partitions:
        for message in probe.consume(5000, 1.0):
            if message.error() is None:
                counts[message.partition()] += 1
                at_end.discard(message.partition())
            elif message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
    probe.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=200_000, help="prediction messages in the topic"
    )
    parser.add_argument(
        "--partitions", type=int, default=4, help="partitions of the topic (split evenly)"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="reader processes of the split rows"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of every variant")
    parser.add_argument("--reader", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--share", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reader:
        reader(args.topic, [int(p) for p in args.share.split(",")], args.expected, args.reader)
        return 0
    if args.processes < 2 or args.partitions % args.processes:
        parser.error("--processes must be >= 2 and divide --partitions")
    os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

    from contract.settings import ensure_topics
    from devstack.broker import start_broker

    broker = start_broker(log_path=Path("/tmp") / f"split-bench-{uuid.uuid4().hex[:6]}.log")
    try:
        suffix = uuid.uuid4().hex[:8]
        topic = f"split-predictions-{suffix}"
        os.environ.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "PREDICTIONS_TOPIC": topic,
                "LABELS_TOPIC": f"split-labels-{suffix}",
            }
        )
        ensure_topics([topic], args.partitions)
        from bench.monitor_bench import (
            heldout,
            publish_predictions,
        )  # here: the readers run without pandas

        publish_predictions(topic, heldout(), args.records)
        ends = count_by_partition(topic, args.partitions)
        every = list(range(args.partitions))
        split = [every[i :: args.processes] for i in range(args.processes)]
        runs = [
            ("bare", [every]),
            ("decode", [every]),
            ("monitor", [every]),
            ("decode", split),
            ("monitor", split),
        ]
        rates: dict[int, list[float]] = {i: [] for i in range(len(runs))}
        for _ in range(args.rounds):
            for i, (work, shares) in enumerate(runs):
                rates[i].append(timed_run(topic, shares, ends, work))
    finally:
        broker.stop()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    bare = median(rates[0])
    print(
        f"## Splitting the monitor across processes: the ceiling ({sum(ends.values()):,} predictions, "
        f"{args.partitions} partitions, local Tansu, {os.cpu_count()} cores; median of {args.rounds} rounds)\n"
    )
    print(
        "| readers | work per batch | records/s | ratio to bare | rounds: ratio to that round's bare |"
    )
    print("|---:|---|---:|---:|---|")
    for i, (work, shares) in enumerate(runs):
        by_round = ", ".join(f"{r / b:.2f}" for r, b in zip(rates[i], rates[0]))
        print(
            f"| {len(shares)} | {work} | {median(rates[i]):,.0f} | {median(rates[i]) / bare:.2f} | {by_round} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
