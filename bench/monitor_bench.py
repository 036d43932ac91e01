"""Monitor benchmarks: service throughput on the local broker, and the core's cost, delay, memory, false alarms.

    .venv/bin/python bench/monitor_bench.py [--records 200000] [--seeds 5] [--no-broker] [--quick] [--delay-only]

Prints markdown tables (copied into bench/MONITOR_RESULTS.md). Streams are the simulator's
(`producer.simulate.generate_chunks`, seeded): rows drawn from the model's held-out reference,
resampling scenarios drawing real rows with their own predictions, scenarios that edit features
re-scored with the real model, so predictions carry the drift as they would in production.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference  # noqa: E402
from contract.schema import Schema  # noqa: E402
from monitor.drift import DriftMonitor  # noqa: E402
from monitor.reference import Reference  # noqa: E402
from monitor.windows import CountWindow, PredictionBatch  # noqa: E402

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
SCENARIO_FEATURE = {
    "carat-shift": "carat",
    "gradual-carat": "carat",
    "cut-mix": "cut",
    "new-category": "clarity",
    "price-inflation": "concept",
}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_schema() -> Schema:
    """MODEL_DIR's schema (the diamonds one for the numbers in MONITOR_RESULTS.md)."""
    return load_model_schema(MODEL_DIR)


def heldout() -> pd.DataFrame:
    return read_reference(MODEL_DIR / REFERENCE_FILE, model_schema())


def reference_from(frame: pd.DataFrame) -> Reference:
    return Reference.from_schema(model_schema(), frame)


def batch_of(
    columns: dict[str, np.ndarray], ids: np.ndarray, ts: np.ndarray, predictions: np.ndarray
) -> PredictionBatch:
    schema = model_schema()
    return PredictionBatch(
        ids=ids,
        ts=ts,
        predictions=predictions,
        numeric={c: np.asarray(columns[c], np.float64) for c in schema.numeric},
        categorical={c: np.asarray(columns[c]).astype(str) for c in schema.categorical},
    )


def scenario_stream(frame: pd.DataFrame, model, scenario: str, count: int, onset: int, seed: int):
    """(columns, predictions, labels) of the stream `python -m producer simulate --count COUNT --onset ONSET
    --seed SEED --scenario SCENARIO` sends, record for record: `producer.simulate.generate_chunks` in the
    simulator's own chunks, so resampling scenarios (tilt, mix: carat-shift, gradual-carat, cut-mix) draw
    their weighted rows as it does. The reference's prediction column rides along with the drawn rows: a
    row the scenario leaves as drawn (none, inputs, labels) keeps the model's own prediction for it; a
    scenario that edits features in place (changes "both": new-category, scale, ...) is re-scored with
    the real model, as the scorer would."""
    from producer.grammar import parse_scenario
    from producer.scenarios import BOTH
    from producer.simulate import SimulateConfig, generate_chunks, source_columns

    schema = model_schema()
    source = source_columns(frame, schema)
    source[schema.prediction] = frame[schema.prediction].to_numpy(
        np.float64
    )  # each row's own prediction
    parsed = parse_scenario(scenario, schema, source)
    config = SimulateConfig(count=count, scenario=parsed, onset=onset, seed=seed)
    parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
    chunk = {c: np.concatenate([part[c] for part in parts]) for c in parts[0]}
    if parsed.changes == BOTH:
        predictions = model.predict(pd.DataFrame({c: chunk[c] for c in schema.feature_names}))
    else:
        predictions = chunk[schema.prediction]
    return chunk, np.asarray(predictions, np.float64), np.asarray(chunk[schema.target], np.float64)


def feed(monitor: DriftMonitor, chunk, predictions, prices, step: int = 250, seed: int = 0):
    """Step-sized batches, labels right after their predictions; yields (records so far, result) per evaluation."""
    n = len(predictions)
    ids = np.array([f"{seed}-{i}" for i in range(n)], dtype=object)
    ts = np.arange(n, dtype=np.int64) * 10
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        results = monitor.update(
            batch_of(
                {c: chunk[c][rows] for c in model_schema().feature_names},
                ids[rows],
                ts[rows],
                predictions[rows],
            )
        )
        monitor.update_labels(ids[rows], ts[rows], prices[rows])
        if results:
            # the concept fields of a pane closed in this batch see the labels just added
            yield rows.stop, monitor.result()


def detection_delay(
    frame,
    model,
    reference,
    scenario: str,
    mode: str,
    seed: int,
    onset: int = 10_000,
    after: int = 10_000,
) -> int | None:
    """Records after onset until the first alarm for the scenario (None: never within `after`)."""
    chunk, predictions, prices = scenario_stream(frame, model, scenario, onset + after, onset, seed)
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250), mode=mode)
    target = SCENARIO_FEATURE[scenario]
    for seen, result in feed(monitor, chunk, predictions, prices, seed=seed):
        if seen <= onset or result is None or not result.ready:
            continue
        if target == "concept":
            hit = bool(result.concept_detected)
        elif mode == "fixed":
            hit = bool(result.dataset_detected)  # the tutorial: mean per-feature distance > 0.1
        else:
            hit = any(f.detected for f in result.features if f.name == target)
        if hit:
            return seen - onset
    return None


def false_alarms(frame, reference, records: int, seed: int = 99) -> dict[str, int]:
    """Evaluations with any alarm (dataset, prediction or concept) on a no-drift stream, per mode."""
    chunk, predictions, prices = scenario_stream(frame, None, "none", records, 0, seed)
    out = {}
    for mode in ("calibrated", "fixed"):
        monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250), mode=mode)
        out[mode] = sum(
            r is not None and r.drift_detected
            for _, r in feed(monitor, chunk, predictions, prices, seed=seed)
        )
    return out


def evaluation_cost(frame, reference, window: int, repeats: int = 50) -> float:
    chunk, predictions, prices = scenario_stream(frame, None, "none", window, 0, 1)
    monitor = DriftMonitor(reference, CountWindow(reference, window, window // 4))
    ids = np.array([str(i) for i in range(window)], dtype=object)
    monitor.update(batch_of(chunk, ids, np.arange(window, dtype=np.int64), predictions))
    monitor.update_labels(ids, np.arange(window, dtype=np.int64), prices)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        monitor.result()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def memory(
    frame, reference, checkpoints=(1_000_000, 5_000_000), batch: int = 10_000
) -> dict[int, float]:
    chunk, predictions, prices = scenario_stream(frame, None, "none", batch, 0, 2)
    monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))
    b = batch_of(chunk, np.empty(batch, object), np.zeros(batch, np.int64), predictions)
    out, seen = {}, 0
    for checkpoint in checkpoints:
        while seen < checkpoint:
            ids = np.array([f"r{seen + i}" for i in range(batch)], dtype=object)
            ts = np.arange(seen, seen + batch, dtype=np.int64)
            monitor.update(PredictionBatch(ids, ts, b.predictions, b.numeric, b.categorical))
            monitor.update_labels(ids, ts, prices)
            seen += batch
        out[checkpoint] = rss_mb()
    return out


# -- on the broker ------------------------------------------------------------------------------
def publish_predictions(topic: str, frame: pd.DataFrame, records: int) -> None:
    """`records` prediction messages as the scorer writes them, resampled (seeded) from the held-out rows
    with the model's held-out predictions."""
    import orjson
    from confluent_kafka import Producer

    from contract.delivery import DeliveryReport, produce_all
    from contract.settings import producer_config

    schema = model_schema()
    rows = frame.sample(records, replace=True, random_state=3)
    features = list(schema.feature_names)
    messages = (
        (
            f"b-{i}",
            orjson.dumps(
                {
                    "id": f"b-{i}",
                    "ts": i,
                    "scored_at": i,
                    "model_version": "bench",
                    "prediction": getattr(row, schema.prediction),
                    "features": {c: getattr(row, c) for c in features},
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            ),
        )
        for i, row in enumerate(rows.itertuples())
    )
    producer, report = Producer(producer_config()), DeliveryReport()
    produce_all(producer, topic, messages, report)
    if producer.flush(60) or report.failed:
        raise RuntimeError(
            f"the bench topic was not filled: {report.failed} failed, last error {report.last_error}"
        )


def throughput(frame, records: int, rounds: int = 3) -> dict[str, list[dict[str, float]]]:
    """records/s of a bare consumer vs the monitor's run loop on the same full topic, the monitor
    once without and once with the performance estimated from its reference (`--estimate on`, the
    default: the nanny fitted at start, the per-record estimates summed in the panes).

    Both sides use the monitor's consumer settings (`consumer_config`), join a new group subscribed
    to the predictions and labels topics, and read with `consume(batch_size, batch_timeout)`.
    The fair number ("assigned") is timed from the partition assignment (the moment fetching can
    start: the local queue is empty, so librdkafka's prefetch cannot hide the fetch cost) to the
    last record done (the bare loop has it in hand; the monitor has it in its windows, evaluated and
    on the gauges). "first" is the old timing, first message to last: the bare consumer has
    prefetched during the group join by then, so it mostly measures draining its local queue.
    """
    import dataclasses

    from confluent_kafka import Consumer
    from prometheus_client import CollectorRegistry

    from contract.service import freeze_startup_heap
    from contract.settings import Topics, consumer_config, ensure_topics
    from devstack.broker import start_broker
    from monitor.baseline import Baseline
    from monitor.config import MonitorConfig
    from monitor.nanny import fit_from_schema
    from monitor.run import Processor, Rebalance, run
    from monitor.sources import JsonPredictions

    broker = start_broker(log_path=Path("/tmp") / f"monitor-bench-{uuid.uuid4().hex[:6]}.log")
    suffix = uuid.uuid4().hex[:8]
    os.environ.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "PREDICTIONS_TOPIC": f"bench-predictions-{suffix}",
            "LABELS_TOPIC": f"bench-labels-{suffix}",
        }
    )
    schema = model_schema()
    topics = Topics.for_model(schema.name)
    try:
        ensure_topics([topics.predictions, topics.labels], 3)
        publish_predictions(topics.predictions, frame, records)

        def bare_run(tag: str) -> dict[str, float]:
            assigned: list[float] = []

            def on_assign(consumer, partitions):
                assigned.append(time.perf_counter())
                consumer.assign(partitions)

            settings = MonitorConfig()
            consumer = Consumer(consumer_config(f"bare-{suffix}-{tag}"))
            consumer.subscribe([topics.predictions, topics.labels], on_assign=on_assign)
            seen, first = 0, None
            while seen < records:
                got = [
                    m
                    for m in consumer.consume(settings.batch_size, settings.batch_timeout)
                    if m.error() is None
                ]
                if got and first is None:
                    first = time.perf_counter()
                seen += len(got)
            done = time.perf_counter()
            consumer.close()
            return {"assigned": seen / (done - assigned[0]), "first": seen / (done - first)}

        def monitor_run(tag: str, baseline: Baseline) -> dict[str, float]:
            from monitor.state import create_state_topic

            config = MonitorConfig(
                group=f"monitor-{suffix}-{tag}", metrics_port=0, state_interval=5.0
            )
            run_topics = dataclasses.replace(
                topics,
                monitor_state=f"bench-state-{suffix}-{tag}",
                monitor_dlq=f"bench-dlq-{suffix}-{tag}",
            )
            create_state_topic(run_topics.monitor_state)
            ensure_topics([run_topics.monitor_dlq], 3)
            registry, stop = CollectorRegistry(), threading.Event()
            # Timestamps taken inside the monitor's thread (wrapped methods), so the bench's own thread
            # only wakes every 50 ms: polling the Prometheus registry often would take the GIL from the loop.
            assigned: list[float] = []
            marks: dict[str, float] = {}
            finished = threading.Event()
            original_assign, original_process = Rebalance.on_assign, Processor.process

            def timed_assign(self, consumer, partitions):
                assigned.append(time.perf_counter())
                original_assign(self, consumer, partitions)

            def timed_process(self, messages):
                marks.setdefault("first", time.perf_counter())  # first messages in hand
                original_process(self, messages)
                if (
                    self.monitor.counters["records"] >= records
                ):  # in the windows, evaluated, gauges shown
                    marks.setdefault("done", time.perf_counter())
                    finished.set()

            Rebalance.on_assign, Processor.process = timed_assign, timed_process
            try:
                thread = threading.Thread(
                    target=run,
                    args=(
                        config,
                        schema,
                        baseline,
                        run_topics,
                        registry,
                        stop,
                        JsonPredictions(schema, run_topics),
                    ),
                )
                thread.start()
                while not finished.wait(0.05):
                    if not thread.is_alive():
                        raise RuntimeError(
                            "the monitor's run loop stopped before reading every record"
                        )
                stop.set()
                thread.join(60)
            finally:
                Rebalance.on_assign, Processor.process = original_assign, original_process
            done, first = marks["done"], marks["first"]
            return {"assigned": records / (done - assigned[0]), "first": records / (done - first)}

        reference = reference_from(frame)
        plain = Baseline(reference)
        estimated = Baseline(reference, fit_from_schema(schema, frame, reference).estimator)
        # Both sides run in this process, which has loaded pandas and the model: without this, every
        # full garbage collection the bare consumer's messages trigger walks those objects too, and the
        # bare loop is slowed (see bench/consumer_bench.py; the monitor freezes its own start-up heap).
        freeze_startup_heap()
        bare, monitored, with_estimate = [], [], []
        for round_ in range(rounds):  # alternating, so every side sees the same machine load
            bare.append(bare_run(str(round_)))
            monitored.append(monitor_run(str(round_), plain))
            with_estimate.append(monitor_run(f"{round_}e", estimated))
        return {"bare": bare, "monitor": monitored, "estimate": with_estimate}
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=200_000, help="messages for the throughput run"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds per scenario for detection delays"
    )
    parser.add_argument("--no-broker", action="store_true", help="skip the throughput run")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating bare/monitor rounds of the throughput run",
    )
    parser.add_argument("--throughput-only", action="store_true", help="only the throughput run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller runs (no 5M memory run, 200k no-drift records)",
    )
    parser.add_argument(
        "--after",
        type=int,
        default=10_000,
        help="detection delays: records watched after the onset (10,000) before a seed counts as missed",
    )
    parser.add_argument(
        "--delay-only",
        action="store_true",
        help="only the detection delays and the no-drift false alarms (no broker, cost or memory run)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))
    from scorer.model import load

    frame, model = heldout(), load(MODEL_DIR)
    reference = reference_from(frame)

    if not (args.no_broker or args.delay_only):
        t = throughput(frame, args.records, args.rounds)

        def median(side: str, timing: str) -> float:
            return float(np.median([r[timing] for r in t[side]]))

        ratios = [m["assigned"] / b["assigned"] for b, m in zip(t["bare"], t["monitor"])]
        print(
            f"## Throughput ({args.records:,} predictions, 3 partitions, local Tansu; "
            f"median of {args.rounds} alternating rounds)\n"
        )
        print(
            "| consumer | records/s from assignment | ratio "
            "| records/s first to last message (prefetch-hidden) | ratio |"
        )
        print("|---|---:|---:|---:|---:|")
        print(
            f"| bare confluent-kafka consume() | {median('bare', 'assigned'):,.0f} | 1.00 "
            f"| {median('bare', 'first'):,.0f} | 1.00 |"
        )
        print(
            f"| monitor run loop (decode + update + evaluate + gauges) | {median('monitor', 'assigned'):,.0f} | "
            f"{median('monitor', 'assigned') / median('bare', 'assigned'):.2f} | {median('monitor', 'first'):,.0f} | "
            f"{median('monitor', 'first') / median('bare', 'first'):.2f} |\n"
        )
        print(
            "rounds (from assignment, bare / monitor / ratio): "
            + "; ".join(
                f"{b['assigned']:,.0f} / {m['assigned']:,.0f} / {r:.2f}"
                for b, m, r in zip(t["bare"], t["monitor"], ratios)
            )
            + "\n"
        )
        estimate_ratios = [
            e["assigned"] / m["assigned"] for m, e in zip(t["monitor"], t["estimate"])
        ]
        print(
            f"monitor with the performance estimated (--estimate on) vs off, from assignment: "
            f"{median('estimate', 'assigned'):,.0f} vs {median('monitor', 'assigned'):,.0f} records/s, ratio "
            f"{median('estimate', 'assigned') / median('monitor', 'assigned'):.2f} (bar 0.8); rounds "
            + ", ".join(f"{r:.2f}" for r in estimate_ratios)
            + "\n"
        )
        if args.throughput_only:
            return 0

    if not args.delay_only:
        print("## Evaluation cost (median of 50 `monitor.result()` calls, full window)\n")
        print("| window records | ms per evaluation |\n|---:|---:|")
        for window in (1_000, 10_000, 100_000):
            print(f"| {window:,} | {evaluation_cost(frame, reference, window) * 1000:.3f} |")
        print()

    no_drift = 200_000 if args.quick else 1_000_000
    print(
        f"## Detection delay (records after onset, median over {args.seeds} seeds; window 1000, step 250; "
        f"watched {args.after:,} records after the onset) "
        f"and false alarms on {no_drift:,} no-drift records\n"
    )
    modes = ("calibrated", "fixed")
    delays = {
        (scenario, mode): [
            detection_delay(frame, model, reference, scenario, mode, seed, after=args.after)
            for seed in range(args.seeds)
        ]
        for scenario in SCENARIO_FEATURE
        for mode in modes
    }
    print(
        "| scenario | calibrated (ert 1e7): delay | tutorial rules (fixed 0.1): delay |\n|---|---:|---:|"
    )
    for scenario in SCENARIO_FEATURE:
        cells = []
        for mode in modes:
            seeds = delays[scenario, mode]
            missed = sum(d is None for d in seeds)
            found = [d for d in seeds if d is not None]
            cells.append(
                (f"{np.median(found):,.0f}" if found else "never")
                + (f" ({missed} of {len(seeds)} missed in {args.after:,})" if missed else "")
            )
        print(f"| {scenario} | {cells[0]} | {cells[1]} |")
    alarms = false_alarms(frame, reference, no_drift)
    scale = 1_000_000 / no_drift
    print(
        f"| none: evaluations alarming per 1M records | {alarms['calibrated'] * scale:,.1f} "
        f"| {alarms['fixed'] * scale:,.1f} |"
    )
    print(
        f"\nper seed (0-{args.seeds - 1}; - = not within {args.after:,}), min-max of the seeds that flagged:\n"
    )
    print(
        "| scenario | calibrated: per seed | min-max | fixed: per seed | min-max |\n|---|---|---:|---|---:|"
    )
    for scenario in SCENARIO_FEATURE:
        cells = []
        for mode in modes:
            seeds = delays[scenario, mode]
            found = [d for d in seeds if d is not None]
            cells.append(" / ".join("-" if d is None else f"{d:,}" for d in seeds))
            cells.append(f"{min(found):,}-{max(found):,}" if found else "-")
        print(f"| {scenario} | {' | '.join(cells)} |")
    if args.delay_only:
        return 0

    checkpoints = (1_000_000,) if args.quick else (1_000_000, 5_000_000)
    rss = memory(frame, reference, checkpoints)
    print("\n## Memory of the core (RSS of this process, window 1000, labels joined)\n")
    print("| records through the core | RSS MB |\n|---:|---:|")
    for records, mb in rss.items():
        print(f"| {records:,} | {mb:.1f} |")
    if len(rss) == 2:
        a, b = rss.values()
        print(f"\ngrowth 1M -> 5M: {(b - a) / a * 100:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
