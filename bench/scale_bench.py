"""Monitor workers: records/s with 1 and 2 `monitor worker` processes over the same 6 partitions, and
what the evaluator pays per window, for the scale plan in docs/scale-out.md.

1. N predictions and N labels (diamonds, scorer layout, 10,000 records per second of event time) are
   produced once to 6-partition topics on the local broker;
2. for --rounds rounds, alternating: 1 worker, then 2 workers (a fresh group each time) read both
   topics from the start; records/s = predictions + labels read, from the first record read to the
   last, by each worker and in total (from their /metrics), and pane reports published;
3. the evaluator's cost: `PaneMerger` with 6 and 64 partitions, a 5 min / 10 s window (30 panes),
   timed for taking one pane report, merging a window and running its tests; the pane report size.

Run: `.venv/bin/python bench/scale_bench.py [--records N] [--rounds R]` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from devstack.broker import free_port, start_broker  # noqa: E402

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
PARTITIONS = 6
BASE_MS = 1_760_000_000_000
PER_MS = 10  # records per millisecond of event time: 10,000 a second


def produce(bootstrap: str, topics: dict[str, str], n: int) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference
    from contract.delivery import DeliveryReport, produce_all
    from contract.settings import producer_config

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(t, PARTITIONS) for t in (topics["PREDICTIONS_TOPIC"], topics["LABELS_TOPIC"])]
    ).values():
        future.result(30)
    schema = load_model_schema(MODEL_DIR)
    rows = read_reference(MODEL_DIR / REFERENCE_FILE, schema).sample(
        n, replace=True, random_state=3
    )
    features = list(schema.feature_names)
    option = orjson.OPT_SERIALIZE_NUMPY

    def prediction(i: int, row) -> tuple[str, bytes]:  # noqa: ANN001
        ts = BASE_MS + i // PER_MS
        return f"s-{i}", orjson.dumps(
            {
                "id": f"s-{i}",
                "ts": ts,
                "scored_at": ts,
                "model_version": "bench",
                "prediction": getattr(row, schema.prediction),
                "features": {c: getattr(row, c) for c in features},
            },
            option=option,
        )

    def label(i: int, row) -> tuple[str, bytes]:  # noqa: ANN001
        return f"s-{i}", orjson.dumps(
            schema.label_record(f"s-{i}", BASE_MS + i // PER_MS, getattr(row, schema.target)),
            option=option,
        )

    producer, report = (
        Producer(producer_config({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})),
        DeliveryReport(),
    )
    produce_all(
        producer,
        topics["PREDICTIONS_TOPIC"],
        (prediction(i, r) for i, r in enumerate(rows.itertuples())),
        report,
    )
    produce_all(
        producer,
        topics["LABELS_TOPIC"],
        (label(i, r) for i, r in enumerate(rows.itertuples())),
        report,
    )
    if producer.flush(120) or report.failed:
        raise RuntimeError(
            f"the bench topics were not filled: {report.failed} failed ({report.last_error})"
        )


def scrape(port: int) -> dict[str, float]:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "monitor_records_consumed_total":
                out["consumed"] = out.get("consumed", 0.0) + s.value
            elif s.name == "monitor_pane_reports_total":
                out["reports"] = s.value
            elif s.name == "monitor_worker_partitions":
                out["partitions"] = s.value
    return out


def run_workers(bootstrap: str, topics: dict[str, str], count: int, n: int, workdir: Path) -> dict:
    """`count` workers in a fresh group until they have read 2n messages; records/s each and in total."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "MODEL_DIR": str(MODEL_DIR),
        **topics,
        "MONITOR_STATE_TOPIC": f"state-{group}",
        "MONITOR_PANES_TOPIC": f"panes-{group}",
    }
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor",
                "worker",
                "--group",
                group,
                "--window",
                "5m",
                "--step",
                "10s",
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(port),
                "--state-interval",
                "5",
            ],
            env=env,
            cwd=ROOT,
            stdout=open(workdir / f"{group}-{i}.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for i, port in enumerate(ports)
    ]
    first: list[float | None] = [None] * count
    last = [0.0] * count
    seen = [0.0] * count
    held = [
        0.0
    ] * count  # partitions each worker owned when it first read (one generation: 6 / count)
    try:
        deadline = time.monotonic() + 600
        while sum(seen) < 2 * n:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(
                    f"workers did not read {2 * n} messages (read {sum(seen)}); logs in {workdir}"
                )
            for i, port in enumerate(ports):
                page = scrape(port)
                got = page.get("consumed", 0.0)
                now = time.monotonic()
                if got > seen[i]:
                    if first[i] is None:
                        first[i], held[i] = now, page.get("partitions", 0.0)
                    seen[i], last[i] = got, now
            time.sleep(0.05)
        reports = sum(scrape(port).get("reports", 0.0) for port in ports)
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.wait(30)
    spans = [last[i] - first[i] for i in range(count)]
    return {
        "workers": count,
        "each": [seen[i] / spans[i] for i in range(count)],
        "held": held,
        "total": sum(seen) / (max(last) - min(f for f in first if f is not None)),
        "reports": reports,
    }


def evaluator_cost(partitions: int, repeats: int = 20) -> dict:
    """ms per report taken, per window merged and per window tested, for `partitions` partitions."""
    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from monitor.baseline import Baseline, build_monitor, load_reference
    from monitor.config import MonitorConfig
    from monitor.drift import evaluate_all
    from monitor.panes import PaneMerger, PaneReport
    from monitor.windows import Pane

    schema = load_model_schema(MODEL_DIR)
    reference = load_reference(schema, MODEL_DIR / REFERENCE_FILE)
    monitor = build_monitor(MonitorConfig(window="5m", step="10s"), Baseline(reference))
    layout, calibration = monitor.window.layout, monitor.calibration
    panes = monitor.window.panes_per_window
    merger = PaneMerger(layout, partitions, panes, grace_s=5)
    rng = np.random.default_rng(0)
    per_partition = (
        1_000_000 * 10 // partitions
    )  # records of one partition's pane at 1M records/s, 10 s panes
    reports = []
    for q in range(panes + repeats):
        for p in range(partitions):
            counts = np.zeros(layout.total, dtype=np.int64)
            for where in layout.slices.values():
                size = where.stop - where.start
                counts[where] = rng.multinomial(per_partition, np.full(size, 1 / size))
            pane = Pane(
                q, counts, records=per_partition, joined=per_partition // 2, sse=1e9, sae=1e6
            )
            reports.append(
                orjson.dumps(PaneReport(p, 1, q * partitions + p + 1, q + 1, pane).to_dict())
            )
    started = time.perf_counter()
    for raw in reports:
        merger.add(PaneReport.from_dict(orjson.loads(raw)), 0.0)
    take_ms = (time.perf_counter() - started) * 1000 / len(reports)
    due = merger.ready(0.0)
    started = time.perf_counter()
    evaluations = [merger.evaluation(q, calibration.recent) for q in due[-repeats:]]
    merge_ms = (time.perf_counter() - started) * 1000 / len(evaluations)
    started = (
        time.perf_counter()
    )  # the first window of a size computes its thresholds (cached after)
    evaluate_all(layout, calibration, evaluations, monitor.min_records, monitor.min_joined)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    evaluate_all(layout, calibration, evaluations, monitor.min_records, monitor.min_joined)
    test_ms = (time.perf_counter() - started) * 1000 / len(evaluations)
    return {
        "partitions": partitions,
        "report_bytes": statistics.median(map(len, reports)),
        "take_ms": take_ms,
        "merge_ms": merge_ms,
        "test_ms": test_ms,
        "first_s": first_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=1_000_000, help="predictions (and as many labels)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-bench-{uuid.uuid4().hex[:6]}"
    workdir.mkdir(parents=True)
    broker = start_broker(log_path=workdir / "tansu.log")
    try:
        suffix = uuid.uuid4().hex[:8]
        topics = {
            "PREDICTIONS_TOPIC": f"p-{suffix}",
            "LABELS_TOPIC": f"l-{suffix}",
            "MONITOR_DLQ_TOPIC": f"d-{suffix}",
        }
        started = time.monotonic()
        produce(broker.bootstrap, topics, args.records)
        print(
            f"produced {args.records:,} predictions and {args.records:,} labels over {PARTITIONS} partitions in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        rows = {1: [], 2: []}
        for round_ in range(1, args.rounds + 1):
            for count in (1, 2):
                result = run_workers(broker.bootstrap, topics, count, args.records, workdir)
                rows[count].append(result)
                each = ", ".join(f"{x:,.0f}" for x in result["each"])
                print(
                    f"round {round_}, {count} worker(s): total {result['total']:,.0f} messages/s (each {each}; "
                    f"partitions held {result['held']}); {result['reports']:.0f} pane reports",
                    flush=True,
                )
    finally:
        broker.stop()
    one = statistics.median(r["total"] for r in rows[1])
    two = statistics.median(r["total"] for r in rows[2])
    per_two = statistics.median(x for r in rows[2] for x in r["each"])
    print("\n| workers | messages/s in total (median) | per worker (median) | total vs 1 worker |")
    print("|---|---:|---:|---:|")
    print(f"| 1 | {one:,.0f} | {one:,.0f} | 1.00 |")
    print(f"| 2 | {two:,.0f} | {per_two:,.0f} | {two / one:.2f} |")
    print(
        "\nEvaluator, 5 min window of 10 s panes (30 panes), panes of 1M records/s split over the partitions:"
    )
    print(
        "| partitions | report bytes (median) | take one report, ms | merge one window, ms | test one window, ms | "
        "first window of a new size (thresholds), s |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for partitions in (6, 64):
        cost = evaluator_cost(partitions)
        print(
            f"| {partitions} | {cost['report_bytes']:,.0f} | {cost['take_ms']:.3f} | {cost['merge_ms']:.2f} | "
            f"{cost['test_ms']:.2f} | {cost['first_s']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
