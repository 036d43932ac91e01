"""Where the scorer's time goes: each step of its loop timed in-process on N records.

The scorer's own functions are wrapped with timers, then `scorer.service.run` drains a topic that
already holds every record; times are summed from the first non-empty batch on (group join excluded).
`--predict-thread S` predicts on a thread of this process instead of the predict process, with a
GIL switch interval of S seconds (the comparison behind `scorer.predictor`).
Run: `.venv/bin/python bench/scorer_breakdown.py [--records N] [--batch-size N] [--predict-thread S]`.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scorer.service as service  # noqa: E402
from bench.scorer_bench import feature_records, sample_records  # noqa: E402
from contract.artifacts import load_model_schema  # noqa: E402
from contract.settings import Topics, ensure_topics  # noqa: E402
from devstack.broker import start_broker  # noqa: E402
from scorer.model import check_against_schema, load  # noqa: E402
from scorer.scoring import BatchCodec  # noqa: E402

timings: dict[str, list[tuple[float, float, int]]] = {}  # step -> [(start, seconds, records)]


def timed(name: str, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        size = (
            len(result)
            if isinstance(result, list)
            else len(args[0])
            if args and hasattr(args[0], "__len__")
            else 0
        )
        timings.setdefault(name, []).append((started, time.perf_counter() - started, size))
        return result

    return wrapper


class ThreadPredictor:
    """`scorer.predictor.PredictProcess`'s interface on a thread of this process."""

    def __init__(self, model, outputs) -> None:
        from scorer.predictor import model_output

        self.predict = lambda batch: model_output(model, outputs, batch)
        self.batches, self.results = queue.Queue(), queue.Queue()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while (batch := self.batches.get()) is not None:
            self.results.put(self.predict(batch))

    def submit(self, batch) -> None:
        self.batches.put(batch)

    def result(self):
        return self.results.get()

    def close(self) -> None:
        self.batches.put(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=service.ScorerConfig.batch_size,
        help="the scorer's --batch-size",
    )
    parser.add_argument(
        "--predict-thread",
        type=float,
        metavar="S",
        help="predict on a thread, GIL switch interval S seconds (default: the predict process)",
    )
    args = parser.parse_args(argv)
    if args.predict_thread:
        sys.setswitchinterval(args.predict_thread)
        service.PredictProcess = ThreadPredictor
    model_dir = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts")).resolve()
    broker = start_broker()
    try:
        os.environ.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "FEATURES_TOPIC": "bf",
                "PREDICTIONS_TOPIC": "bp",
                "DLQ_TOPIC": "bd",
            }
        )
        ensure_topics(["bf", "bp", "bd"])
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        for key, value in feature_records(
            model_dir, sample_records(model_dir, args.records), now_ms=1
        ):
            while True:
                try:
                    producer.produce("bf", value, key=key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush()
        model, schema = load(model_dir), load_model_schema(model_dir)
        codec = BatchCodec(schema, check_against_schema(model, schema))
        service.collect_batch = timed("consume (collect_batch)", service.collect_batch)
        service.decode_batch = timed("decode + validate", service.decode_batch)
        service.PredictProcess.result = timed(
            "wait for the prediction", service.PredictProcess.result
        )
        service.finish_batch = timed("prediction messages", service.finish_batch)
        service.deliver = timed("produce + flush", service.deliver)
        service.commit = timed("commit", service.commit)
        registry, stop = CollectorRegistry(), threading.Event()

        def stop_when_done() -> None:
            while (registry.get_sample_value("scorer_records_consumed_total") or 0) < args.records:
                time.sleep(0.01)
            stop.set()

        threading.Thread(target=stop_when_done, daemon=True).start()
        service.run(
            service.ScorerConfig(metrics_port=0, batch_size=args.batch_size),
            model,
            codec,
            Topics.for_model(schema.name),
            registry,
            stop,
        )
    finally:
        broker.stop()
    first = min(start for start, _, size in timings["consume (collect_batch)"] if size)
    end = max(start + seconds for rows in timings.values() for start, seconds, _ in rows)
    print(f"| step ({args.records:,} records, from the first batch) | seconds | us per record |")
    print("|---|---:|---:|")
    for name, rows in timings.items():
        seconds = sum(s for start, s, _ in rows if start >= first)
        print(f"| {name} | {seconds:.2f} | {seconds / args.records * 1e6:.1f} |")
    print(f"| wall | {end - first:.2f} | {(end - first) / args.records * 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
