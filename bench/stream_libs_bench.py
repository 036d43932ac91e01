"""Quix Streams and Bytewax vs the hand-written monitor worker loop: event-time panes, same topic, same run.

    .venv/bin/python bench/stream_libs_bench.py [--records 200000] [--rounds 3] [--step-ms 10000]
                                                [--kinds hand,quix-count,quix-panes,bytewax-panes]
                                                [--no-recovery]

Needs requirements-bench.txt and MODEL_DIR (default artifacts/, `make train`). Starts Tansu, creates a
6-partition predictions topic and fills it once with N prediction messages as the scorer writes them
(held-out diamonds rows resampled with their predictions; ts = BASE + i ms, so ~N/6 records per
partition and step_ms/6 records per pane and partition), then one closing record per partition whose
ts is two steps later: it closes every partition's last pane, so the closed panes hold exactly N records.

Every kind is a subprocess (this script with --worker KIND) in a fresh consumer group, reading the
topic from the start, turning it into panes (pane = floor(ts / step_ms), one per partition and pane id:
a flat int64 counts vector of PaneLayout.total bins plus a record count) and publishing each closed
pane as one JSON message to its own 6-partition output topic:
  hand           confluent_kafka Consumer (consumer_config), consume(5000, 0.2), per partition of the
                 batch Decoder.predictions -> PaneLayout.encode -> one bincount per pane; panes in
                 memory; a pane closes when a later pane of its partition arrives (monitor.windows.TimeWindow).
  quix-count     Quix Streams: a tumbling window per partition that only counts (the library's floor).
  quix-panes     Quix Streams: a tumbling window per partition that collects the raw messages in its
                 changelogged RocksDB state; on close, the same Decoder / encode / bincount on the pane.
  bytewax-panes  Bytewax: KafkaSource -> key by partition -> fold_window (TumblingWindower, EventClock)
                 collecting the raw messages; on close the same decode / encode / bincount; KafkaSink.
Quix reads the key of every message as one constant (a key deserializer), so its per-key state and
windows are per partition, as the monitor's are, with no repartition topic; event time comes from the
message's `ts` (a timestamp extractor), not the Kafka timestamp.

Timing: from the worker's first partition assignment (Bytewax has no group: from its first message)
to the moment its closed panes sum to N records (the last one handed to the producer); launch ->
assigned is printed apart. Rounds alternate the kinds; medians and ratios to `hand` are printed as
markdown tables (copied into bench/STREAM_LIBS_RESULTS.md).

Recovery (Quix, at-least-once then exactly-once): a quix-panes worker (commit every 0.5 s) is
SIGKILLed once its published panes hold >= 40% of N, a new worker in the same group with an empty
state dir (its state must come back from the changelog topic) runs to the end; the output topic is
then read whole (read_committed) and its pane totals compared with N: all messages summed (a pane
published twice counts twice) and one message per (partition, pane).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
PARTITIONS = 6
BASE_MS = (
    1_760_000_000_000  # a multiple of every step used: pane boundaries fall on record boundaries
)
SESSION_TIMEOUT_MS = 6000
KINDS = ("hand", "quix-count", "quix-panes", "bytewax-panes")
# The consumer_config tuning for Tansu (short fetch wait, short queue backoff), given to the libraries too.
FETCH_TUNING = {
    "fetch.wait.max.ms": 50,
    "fetch.queue.backoff.ms": 10,
    "session.timeout.ms": SESSION_TIMEOUT_MS,
}


# =========================================================================== shared by the workers
class PaneCounter:
    """Decoder + PaneLayout of the model: raw prediction messages -> per-pane bin counts."""

    def __init__(self, step_ms: int) -> None:
        from contract.artifacts import REFERENCE_FILE, load_model_schema
        from monitor.baseline import load_reference
        from monitor.decode import Decoder
        from monitor.windows import PaneLayout

        schema = load_model_schema(MODEL_DIR)
        self.decoder = Decoder(schema)
        self.layout = PaneLayout(load_reference(schema, MODEL_DIR / REFERENCE_FILE))
        self.step = step_ms

    def count(self, values: list[bytes]):
        """{pane id: (counts (total,) int64, records)} of a run of messages."""
        import numpy as np

        batch, _rejected = self.decoder.predictions(values)
        flat = self.layout.encode(batch).flat
        pane_ids = np.asarray(batch.ts, dtype=np.int64) // self.step
        total = self.layout.total
        out = {}
        for pane_id in np.unique(pane_ids).tolist():
            rows = pane_ids == pane_id
            out[pane_id] = (
                np.bincount(flat[rows].ravel(), minlength=total + 1)[:total],
                int(rows.sum()),
            )
        return out


def pane_message(partition: int, pane_id: int, records: int, counts) -> bytes:
    import orjson

    return orjson.dumps(
        {
            "partition": partition,
            "pane": pane_id,
            "records": records,
            "counts": counts.tolist() if hasattr(counts, "tolist") else counts,
        }
    )


class Progress:
    """The worker's clock marks and published record total; result file when N is reached."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.published, self.panes = args, 0, 0
        self.marks: dict[str, float] = {"launch": args.launch}
        self.last_progress = 0.0

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.time())

    def publish(self, records: int) -> None:
        self.published += records
        self.panes += 1
        if self.args.progress:
            now = time.monotonic()
            if now - self.last_progress > 0.05:
                Path(self.args.progress).write_text(str(self.published))
                self.last_progress = now
        if self.published >= self.args.records and "done" not in self.marks:
            self.mark("done")
            Path(self.args.result).write_text(
                json.dumps({"published": self.published, "panes": self.panes, **self.marks})
            )


# =========================================================================== (a) hand-written loop
def run_hand(args: argparse.Namespace) -> None:
    import numpy as np
    from confluent_kafka import Consumer, Producer

    from contract.settings import consumer_config, producer_config

    counter, progress = PaneCounter(args.step_ms), Progress(args)
    env = {"KAFKA_BOOTSTRAP_SERVERS": args.bootstrap}
    config = consumer_config(args.group, env)
    config["session.timeout.ms"] = SESSION_TIMEOUT_MS
    consumer, producer = Consumer(config), Producer(producer_config(env))

    def on_assign(consumer, partitions):  # noqa: ANN001
        if partitions:
            progress.mark("assigned")

    consumer.subscribe([args.topic], on_assign=on_assign)
    total = counter.layout.total
    panes: dict[tuple[int, int], list] = {}  # (partition, pane id) -> [counts, records]
    newest: dict[int, int] = {}
    while True:
        by_partition: dict[int, list[bytes]] = {}
        for message in consumer.consume(5000, 0.2):
            if message.error() is None:
                by_partition.setdefault(message.partition(), []).append(message.value())
        for partition, values in by_partition.items():
            progress.mark("first")
            for pane_id, (counts, records) in counter.count(values).items():
                pane = panes.get((partition, pane_id))
                if pane is None:
                    pane = panes[(partition, pane_id)] = [np.zeros(total, dtype=np.int64), 0]
                pane[0] += counts
                pane[1] += records
                newest[partition] = max(newest.get(partition, pane_id), pane_id)
            for key in [k for k in panes if k[0] == partition and k[1] < newest[partition]]:
                counts, records = panes.pop(key)
                producer.produce(
                    args.out_topic, pane_message(key[0], key[1], records, counts), str(key[0])
                )
                progress.publish(records)
        producer.poll(0)


# =========================================================================== (b) Quix Streams
def quix_app(args: argparse.Namespace, progress: Progress):
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer

    class OneKeyPerPartition(Deserializer):
        """Every message's key reads as the same value: Quix's per-key state is then per partition."""

        def __call__(self, value, ctx):  # noqa: ANN001
            return b"p"

    class Text(Deserializer):
        """The raw JSON as str: the window state (JSON by default) can hold it as it is."""

        def __call__(self, value, ctx):  # noqa: ANN001
            return value.decode()

    import msgspec

    class EventTime(msgspec.Struct):
        ts: int

    event_time = msgspec.json.Decoder(EventTime).decode

    def extract_ts(value, headers, timestamp, timestamp_type) -> int:  # noqa: ANN001
        progress.mark("first")
        return event_time(value).ts

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        processing_guarantee=args.guarantee,
        commit_interval=args.commit_interval,
        consumer_extra_config=dict(FETCH_TUNING),
        loglevel="WARNING",
    )
    # Partition assignment is where the clock starts (the app subscribes with this method as on_assign).
    original_assign = app._on_assign

    def timed_assign(consumer, partitions):  # noqa: ANN001
        if partitions:
            progress.mark("assigned")
        return original_assign(consumer, partitions)

    app._on_assign = timed_assign
    source = app.topic(
        args.topic,
        key_deserializer=OneKeyPerPartition(),
        value_deserializer=Text(),
        timestamp_extractor=extract_ts,
    )
    sink = app.topic(args.out_topic, key_serializer="str", value_serializer="bytes")
    return app, source, sink


def run_quix(args: argparse.Namespace) -> None:
    from quixstreams.context import message_context

    progress = Progress(args)
    app, source, sink = quix_app(args, progress)
    step = args.step_ms
    sdf = app.dataframe(source)
    if args.kind == "quix-count":
        sdf = sdf.tumbling_window(duration_ms=step).count().final()

        def to_pane(window: dict) -> bytes:
            progress.publish(window["value"])
            return pane_message(
                message_context().partition, window["start"] // step, window["value"], []
            )
    else:
        counter = PaneCounter(step)
        sdf = sdf.tumbling_window(duration_ms=step).collect().final()

        def to_pane(window: dict) -> bytes:
            values = [v.encode() for v in window["value"]]
            ((pane_id, (counts, records)),) = counter.count(values).items()
            progress.publish(records)
            return pane_message(message_context().partition, pane_id, records, counts)

    sdf = sdf.apply(to_pane)
    sdf = sdf.to_topic(sink, key=lambda value: str(message_context().partition))
    app.run()


# =========================================================================== (c) Bytewax
def run_bytewax(args: argparse.Namespace) -> None:
    from datetime import datetime, timedelta

    import bytewax.operators as op
    import msgspec
    from bytewax._bytewax import cli_main
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window

    class EventTime(msgspec.Struct):
        ts: int

    event_time = msgspec.json.Decoder(EventTime).decode
    progress, counter, step = Progress(args), PaneCounter(args.step_ms), args.step_ms
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def ts_of(message) -> datetime:  # noqa: ANN001
        progress.mark("first")
        return epoch + timedelta(milliseconds=event_time(message.value).ts)

    def fold(values: list, message) -> list:  # noqa: ANN001
        values.append(message.value)
        return values

    def to_pane(item) -> KafkaSinkMessage:  # noqa: ANN001
        partition, (window_id, values) = item
        ((pane_id, (counts, records)),) = counter.count(values).items()
        progress.publish(records)
        return KafkaSinkMessage(partition, pane_message(int(partition), pane_id, records, counts))

    flow = Dataflow("panes")
    config = {k: str(v) for k, v in FETCH_TUNING.items() if k != "session.timeout.ms"}
    messages = op.input(
        "predictions",
        flow,
        KafkaSource([args.bootstrap], [args.topic], tail=True, add_config=config, batch_size=5000),
    )
    keyed = op.key_on("by_partition", messages, lambda m: str(m.partition))
    # Event time only: the default clock also advances the watermark with the wall clock, which on a
    # replayed topic would close a partition's pane while its records are still arriving (late, dropped).
    clock = EventClock(
        ts_getter=ts_of,
        wait_for_system_duration=timedelta(0),
        now_getter=lambda: epoch,
        to_system_utc=lambda _: None,
    )
    windows = fold_window(
        "panes",
        keyed,
        clock,
        TumblingWindower(timedelta(milliseconds=step), epoch),
        list,
        fold,
        lambda a, b: a + b,
    )
    op.output(
        "out", op.map("encode", windows.down, to_pane), KafkaSink([args.bootstrap], args.out_topic)
    )
    cli_main(flow)


# =========================================================================== parent side
def produce_predictions(bootstrap: str, topic: str, n: int, step_ms: int) -> float:
    """N prediction messages as the scorer writes them, then one closing record per partition."""
    import orjson
    from confluent_kafka import Producer

    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference
    from contract.delivery import DeliveryReport, produce_all
    from contract.settings import producer_config

    schema = load_model_schema(MODEL_DIR)
    rows = read_reference(MODEL_DIR / REFERENCE_FILE, schema).sample(
        n, replace=True, random_state=3
    )
    features = list(schema.feature_names)

    def message(i: int, row) -> bytes:  # noqa: ANN001
        return orjson.dumps(
            {
                "id": f"b-{i}",
                "ts": BASE_MS + i,
                "scored_at": BASE_MS + i,
                "model_version": "bench",
                "prediction": getattr(row, schema.prediction),
                "features": {c: getattr(row, c) for c in features},
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    producer, report = (
        Producer(producer_config({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})),
        DeliveryReport(),
    )
    started = time.monotonic()
    produce_all(
        producer,
        topic,
        ((f"b-{i}", message(i, row)) for i, row in enumerate(rows.itertuples())),
        report,
    )
    if producer.flush(120) or report.failed:
        raise RuntimeError(
            f"the bench topic was not filled: {report.failed} failed, last error {report.last_error}"
        )
    closer = next(rows.itertuples())
    for partition in range(PARTITIONS):
        value = orjson.loads(message(n + partition, closer))
        value["ts"] = BASE_MS + n + 2 * step_ms
        producer.produce(
            topic,
            orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY),
            f"close-{partition}",
            partition=partition,
        )
    if producer.flush(30):
        raise RuntimeError("the closing records were not delivered")
    return time.monotonic() - started


def create_input_topic(bootstrap: str, topic: str) -> None:
    """The predictions topic, with retention set explicitly: Tansu's DescribeConfigs returns only the
    configs a topic was created with, and Quix Streams reads `retention.ms` of its input topic to
    create the changelog topics (KeyError 'retention.ms' without it)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"retention.ms": "-1", "retention.bytes": "-1"}
    admin.create_topics([NewTopic(topic, PARTITIONS, config=config)])[topic].result(30)


def launch(
    kind: str,
    bootstrap: str,
    topic: str,
    n: int,
    step_ms: int,
    workdir: Path,
    *,
    group: str | None = None,
    guarantee: str = "at-least-once",
    commit_interval: float = 5.0,
    progress: bool = False,
    out_topic: str | None = None,
) -> dict:
    """Start a worker; returns its handles (the parent creates its output topic first)."""
    from contract.settings import ensure_topics

    tag = uuid.uuid4().hex[:8]
    group = group or f"bench-{kind}-{tag}"
    out_topic = out_topic or f"bench.panes.{kind}.{tag}"
    ensure_topics([out_topic], PARTITIONS, environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    result, log = workdir / f"{kind}-{tag}.json", workdir / f"{kind}-{tag}.log"
    progress_path = workdir / f"{kind}-{tag}.progress"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--out-topic",
        out_topic,
        "--records",
        str(n),
        "--step-ms",
        str(step_ms),
        "--group",
        group,
        "--result",
        str(result),
        "--state-dir",
        str(workdir / f"state-{tag}"),
        "--guarantee",
        guarantee,
        "--commit-interval",
        str(commit_interval),
        "--launch",
        repr(time.time()),
    ]
    if progress:
        command += ["--progress", str(progress_path)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    return {
        "proc": proc,
        "result": result,
        "log": log,
        "progress": progress_path,
        "group": group,
        "out_topic": out_topic,
    }


def wait_result(worker: dict, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not worker["result"].exists():
        if worker["proc"].poll() is not None:
            raise RuntimeError(
                f"worker exited with {worker['proc'].returncode}; log: {worker['log']}\n"
                + tail(worker["log"])
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"worker gave no result in {timeout} s; log: {worker['log']}\n"
                + tail(worker["log"])
            )
        time.sleep(0.05)
    time.sleep(0.05)
    return json.loads(worker["result"].read_text())


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(worker: dict, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    proc = worker["proc"]
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(
    kind: str, bootstrap: str, topic: str, n: int, step_ms: int, workdir: Path, timeout: float
) -> dict:
    worker = launch(kind, bootstrap, topic, n, step_ms, workdir)
    try:
        r = wait_result(worker, timeout)
    finally:
        stop(worker)
    start = r.get("assigned", r["first"])
    return {
        "kind": kind,
        "rps": n / (r["done"] - start),
        "rps_first": n / (r["done"] - r["first"]),
        "busy_s": r["done"] - start,
        "startup_s": start - r["launch"],
        "panes": r["panes"],
        "published": r["published"],
        "log": str(worker["log"]),
    }


def read_panes(
    bootstrap: str, topic: str, quiet_s: float = 4.0, isolation: str = "read_committed"
) -> list[dict]:
    """Every message of an output topic (committed ones by default), read until nothing new for quiet_s."""
    import orjson
    from confluent_kafka import Consumer

    from contract.settings import consumer_config

    config = consumer_config(
        f"bench-reader-{uuid.uuid4().hex[:8]}", {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    )
    config.update({"session.timeout.ms": SESSION_TIMEOUT_MS, "isolation.level": isolation})
    consumer = Consumer(config)
    consumer.subscribe([topic])
    panes, last = [], time.monotonic() + 10  # the group join takes ~3 s
    try:
        while time.monotonic() - last < quiet_s:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    panes.append(orjson.loads(message.value()))
                    last = time.monotonic()
    finally:
        consumer.close()
    return panes


def recovery(
    bootstrap: str, topic: str, n: int, step_ms: int, workdir: Path, guarantee: str, timeout: float
) -> dict:
    """SIGKILL a quix-panes worker at >= 40% of N, restart it with an empty state dir, compare totals."""
    group = f"bench-recovery-{guarantee}-{uuid.uuid4().hex[:8]}"
    first = launch(
        "quix-panes",
        bootstrap,
        topic,
        n,
        step_ms,
        workdir,
        group=group,
        guarantee=guarantee,
        commit_interval=0.5,
        progress=True,
    )
    out = {"guarantee": guarantee, "log_1": str(first["log"])}
    try:
        deadline = time.monotonic() + timeout
        while True:
            done = int(first["progress"].read_text() or 0) if first["progress"].exists() else 0
            if done >= 0.4 * n:
                break
            if first["proc"].poll() is not None:
                raise RuntimeError(
                    f"first worker exited with {first['proc'].returncode}\n" + tail(first["log"])
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"first worker published {done} records in {timeout} s\n" + tail(first["log"])
                )
            time.sleep(0.02)
    finally:
        stop(first, signal.SIGKILL)
    out["killed_at"] = int(first["progress"].read_text())
    second = launch(
        "quix-panes",
        bootstrap,
        topic,
        n,
        step_ms,
        workdir,
        group=group,
        guarantee=guarantee,
        commit_interval=0.5,
        progress=True,
        out_topic=first["out_topic"],
    )
    out["log_2"] = str(second["log"])
    try:
        deadline = time.monotonic() + timeout
        # The restarted worker only counts what it publishes itself: wait for its first pane (after the
        # group join and the state recovery), then until it has published nothing for 6 s.
        last, seen = time.monotonic(), 0
        while seen == 0 or time.monotonic() - last < 6.0:
            done = int(second["progress"].read_text() or 0) if second["progress"].exists() else 0
            if done != seen:
                seen, last = done, time.monotonic()
            if second["proc"].poll() is not None:
                raise RuntimeError(
                    f"restarted worker exited with {second['proc'].returncode}\n"
                    + tail(second["log"])
                )
            if time.monotonic() > deadline:
                raise TimeoutError("restarted worker did not settle\n" + tail(second["log"]))
            time.sleep(0.1)
        out["restart_published"] = seen
    finally:
        stop(second)
    out["restart_log"] = tail(second["log"], 5)
    out.update(totals(read_panes(bootstrap, first["out_topic"])))
    if guarantee == "exactly-once" and out["total_unique"] != n:
        # Quix gives each start a new random transactional.id, so the killed worker's open transaction
        # is not fenced by its successor; only the broker's transaction timeout (librdkafka's default
        # transaction.timeout.ms, 60 s) can abort it, and until then read_committed readers stop at it.
        out["uncommitted"] = totals(
            read_panes(bootstrap, first["out_topic"], isolation="read_uncommitted")
        )
        time.sleep(75)
        out["committed_after_75s"] = totals(read_panes(bootstrap, first["out_topic"]))
    return out


def totals(panes: list[dict]) -> dict:
    """Pane totals of an output topic: all messages, and one per (partition, pane)."""
    unique = {(pane["partition"], pane["pane"]): pane for pane in panes}
    return {
        "messages": len(panes),
        "unique_panes": len(unique),
        "total_all": sum(p["records"] for p in panes),
        "total_unique": sum(p["records"] for p in unique.values()),
        "bins_unique": sum(sum(p["counts"]) for p in unique.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--step-ms", type=int, default=10_000)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of {', '.join(KINDS)}"
    )
    parser.add_argument(
        "--no-recovery", action="store_true", help="skip the Quix kill-and-restart checks"
    )
    parser.add_argument(
        "--recovery-only", action="store_true", help="only the Quix kill-and-restart checks"
    )
    parser.add_argument(
        "--guarantees",
        default="at-least-once,exactly-once",
        help="Quix processing guarantees to check recovery for, comma-separated",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per worker run, seconds")
    # internal: the worker subprocess
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    for name in (
        "--bootstrap",
        "--topic",
        "--out-topic",
        "--group",
        "--result",
        "--state-dir",
        "--progress",
    ):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--guarantee", default="at-least-once", help=argparse.SUPPRESS)
    parser.add_argument("--commit-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--launch", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or args.records < 1 or args.rounds < 1 or args.step_ms < 1:
        print(
            f"stream_libs_bench: give --kinds from {', '.join(KINDS)} (not {', '.join(bad)}) and positive "
            "--records, --rounds, --step-ms"
            if bad
            else "stream_libs_bench: --records, --rounds and --step-ms must be positive",
            file=sys.stderr,
        )
        return 2
    if args.worker:
        args.kind = args.worker
        {
            "hand": run_hand,
            "quix-count": run_quix,
            "quix-panes": run_quix,
            "bytewax-panes": run_bytewax,
        }[args.worker](args)
        return 0
    if not (MODEL_DIR / "schema.yaml").exists():
        print(
            f"stream_libs_bench: no model in {MODEL_DIR}: run `make train` or set MODEL_DIR",
            file=sys.stderr,
        )
        return 2

    from devstack.broker import start_broker

    n, workdir = args.records, Path(tempfile.mkdtemp(prefix="stream-libs-bench-"))
    broker = start_broker(log_path=workdir / "tansu.log")
    try:
        bootstrap = broker.bootstrap
        topic = f"bench.predictions.{uuid.uuid4().hex[:8]}"
        create_input_topic(bootstrap, topic)
        produce_s = produce_predictions(bootstrap, topic, n, args.step_ms)
        print(
            f"broker {bootstrap}, topic {topic} ({PARTITIONS} partitions), produced {n:,} records + "
            f"{PARTITIONS} closing ones in {produce_s:.1f} s; logs in {workdir}",
            flush=True,
        )
        rows: dict[str, list[dict]] = {k: [] for k in kinds}
        failures: dict[str, str] = {}
        for rnd in range(1, 0 if args.recovery_only else args.rounds + 1):
            for kind in kinds:
                if kind in failures:
                    continue
                try:
                    s = measure(kind, bootstrap, topic, n, args.step_ms, workdir, args.timeout)
                except (RuntimeError, TimeoutError) as exc:
                    failures[kind] = str(exc)
                    print(f"round {rnd} {kind}: FAILED: {exc}", flush=True)
                    continue
                rows[kind].append(s)
                print(
                    f"round {rnd} {kind:14s} {s['rps']:>9,.0f} rec/s assigned->done ({s['busy_s']:.2f} s), "
                    f"{s['rps_first']:>9,.0f} first->done, launch->assigned {s['startup_s']:.2f} s, "
                    f"{s['panes']} panes holding {s['published']:,} records",
                    flush=True,
                )
        if not args.recovery_only:
            print_tables({k: v for k, v in rows.items() if v}, n, args.rounds)
        for kind, error in failures.items():
            print(f"\n{kind} failed: {error}")
        if not args.no_recovery:
            print("\n### Quix recovery: SIGKILL at >= 40% of N, restart with an empty state dir\n")
            print(
                "| guarantee | killed after (records in panes) | output messages | unique panes | records, all "
                "messages | records, one per pane | bins, one per pane | N |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for guarantee in args.guarantees.split(","):
                try:
                    r = recovery(
                        bootstrap, topic, n, args.step_ms, workdir, guarantee, args.timeout
                    )
                except (RuntimeError, TimeoutError) as exc:
                    print(f"| {guarantee} | FAILED: {str(exc).splitlines()[0]} |", flush=True)
                    print(str(exc), file=sys.stderr)
                    continue
                layout = PaneCounter(args.step_ms).layout
                columns = len(layout.ks_columns) + len(
                    layout.chi2_columns
                )  # one bin per record and column
                reads = [("", r)] + [
                    (f" ({label})", r[key])
                    for key, label in (
                        ("uncommitted", "read_uncommitted"),
                        ("committed_after_75s", "read_committed 75 s later"),
                    )
                    if key in r
                ]
                for label, t in reads:
                    print(
                        f"| {guarantee}{label} | {r['killed_at']:,} | {t['messages']} | {t['unique_panes']} | "
                        f"{t['total_all']:,} | {t['total_unique']:,} | {t['bins_unique']:,} (= {columns} x "
                        f"{t['bins_unique'] // columns:,}) | {n:,} |",
                        flush=True,
                    )
    finally:
        broker.stop()
    return 0


def print_tables(rows: dict[str, list[dict]], n: int, rounds: int) -> None:
    if "hand" not in rows:
        return
    for metric, title in (
        ("rps", "records/s, partition assignment (Bytewax: first message) -> closed panes hold N"),
        ("rps_first", "records/s, first message -> closed panes hold N"),
    ):
        hand = statistics.median(r[metric] for r in rows["hand"])
        print(f"\n### {title} (N = {n:,})\n")
        print(
            "| worker | "
            + " | ".join(f"round {i}" for i in range(1, rounds + 1))
            + " | median | ratio to hand |"
        )
        print("|" + "---|" * (rounds + 3))
        for kind, results in rows.items():
            med = statistics.median(r[metric] for r in results)
            cells = " | ".join(f"{r[metric]:,.0f}" for r in results) + " | " * (
                rounds - len(results)
            )
            print(f"| {kind} | {cells} | {med:,.0f} | {med / hand:.2f} |")
    print("\n| worker | launch -> assigned (median, s) | panes published |")
    print("|---|---|---|")
    for kind, results in rows.items():
        print(
            f"| {kind} | {statistics.median(r['startup_s'] for r in results):.2f} | {results[0]['panes']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
