"""faust-streaming vs a bare confluent-kafka consumer, same topic, same run, on the local broker.

    .venv/bin/python bench/faust_bench.py [--records 200000] [--rounds 3] [--no-json]

Needs requirements-bench.txt. Starts Tansu, creates a 3-partition topic, produces N prediction
records, then for each round (fresh consumer group every time) runs, in this order:
  bare        confluent_kafka.Consumer, consume(5000, 0.2), counting messages, nothing else;
  faust-raw   faust worker (subprocess), one agent, value_serializer='raw', counting records;
  faust-json  same, value_serializer='json' (faust decodes every record; orjson is installed).
Each side is timed from its partition assignment to the N-th message (primary number); the
time from the first message to the N-th and the faust startup time are printed too.
Prints markdown tables (copied into bench/FAUST_RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SESSION_TIMEOUT_S = 6


# --------------------------------------------------------------------------- faust worker side
def run_faust_worker(args: argparse.Namespace) -> None:
    """Runs in a subprocess: one agent counts N records, writes its timings, then waits for SIGTERM."""
    t_process = time.monotonic()
    import faust

    state = {"count": 0, "t_assigned": None, "t_first": None, "done": False}
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        value_serializer=args.serializer,
        broker_session_timeout=SESSION_TIMEOUT_S,
        consumer_auto_offset_reset="earliest",
        topic_partitions=3,
        topic_allow_declare=False,
        store="memory://",
        web_enabled=False,
    )
    topic = app.topic(args.topic, value_serializer=args.serializer, internal=False)
    n = args.records

    def finish() -> None:
        t_end = time.monotonic()
        result = {
            "records": state["count"],
            "t_process": t_process,
            "t_assigned": state["t_assigned"],
            "t_first": state["t_first"],
            "t_end": t_end,
        }
        Path(args.result).write_text(json.dumps(result))
        state["done"] = True

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs):  # noqa: ANN001
        if assigned and state["t_assigned"] is None:
            state["t_assigned"] = time.monotonic()

    if args.serializer == "json":

        @app.agent(topic)
        async def count(stream):  # noqa: ANN001
            async for value in stream:
                if state["t_first"] is None:
                    state["t_first"] = time.monotonic()
                # faust has decoded the JSON; touch a field as the monitor would
                value["features"]["carat"]
                state["count"] += 1
                if state["count"] == n:
                    finish()
    else:

        @app.agent(topic)
        async def count(stream):  # noqa: ANN001
            async for _value in stream:
                if state["t_first"] is None:
                    state["t_first"] = time.monotonic()
                state["count"] += 1
                if state["count"] == n:
                    finish()

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# --------------------------------------------------------------------------- parent side
def make_records(n: int):
    import random

    from orjson import dumps as encode

    rng = random.Random(7)
    cuts = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    colors = list("DEFGHIJ")
    clarities = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]
    base = 1_760_000_000_000
    for i in range(n):
        yield (
            f"d-{i}",
            encode(
                {
                    "id": f"d-{i}",
                    "ts": base + i,
                    "scored_at": base + i + 3,
                    "model_version": "bench-1",
                    "prediction": round(rng.uniform(300, 19000), 2),
                    "features": {
                        "carat": round(rng.uniform(0.2, 3.0), 2),
                        "cut": rng.choice(cuts),
                        "color": rng.choice(colors),
                        "clarity": rng.choice(clarities),
                        "depth": round(rng.uniform(55, 70), 1),
                        "table": round(rng.uniform(50, 70), 1),
                    },
                }
            ),
        )


def produce(bootstrap: str, topic: str, n: int) -> float:
    from confluent_kafka import Producer

    from contract.settings import producer_config

    producer = Producer(producer_config({"KAFKA_BOOTSTRAP_SERVERS": bootstrap}))
    errors = []

    def on_delivery(err, msg):  # noqa: ANN001
        if err is not None:
            errors.append(err)

    t0 = time.monotonic()
    for key, value in make_records(n):
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(
            f"produce failed: {left} undelivered, {len(errors)} errors ({errors[:3]})"
        )
    return time.monotonic() - t0


def run_bare(bootstrap: str, topic: str, n: int, timeout: float) -> dict:
    from confluent_kafka import Consumer

    from contract.settings import consumer_config

    group = f"bench-bare-{uuid.uuid4().hex[:8]}"
    config = consumer_config(group, {"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    config["session.timeout.ms"] = SESSION_TIMEOUT_S * 1000
    t_start = time.monotonic()
    state = {"t_assigned": None}

    def on_assign(consumer, partitions):  # noqa: ANN001
        if partitions and state["t_assigned"] is None:
            state["t_assigned"] = time.monotonic()

    consumer = Consumer(config)
    consumer.subscribe([topic], on_assign=on_assign)
    count = 0
    t_first = None
    deadline = t_start + timeout
    try:
        while count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer got {count} of {n} in {timeout} s")
            msgs = consumer.consume(5000, 0.2)
            for msg in msgs:
                if msg.error() is None:
                    if t_first is None:
                        t_first = time.monotonic()
                    count += 1
        t_end = time.monotonic()
    finally:
        consumer.close()
    return {
        "records": count,
        "t_process": t_start,
        "t_assigned": state["t_assigned"],
        "t_first": t_first,
        "t_end": t_end,
    }


def run_faust(
    bootstrap: str, topic: str, n: int, serializer: str, timeout: float, workdir: Path
) -> dict:
    group = f"bench-faust-{serializer}-{uuid.uuid4().hex[:8]}"
    result_path = workdir / f"{group}.json"
    log_path = workdir / f"{group}.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--faust-worker",
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--records",
        str(n),
        "--serializer",
        serializer,
        "--group",
        group,
        "--result",
        str(result_path),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )
    t_launch = time.monotonic()
    try:
        deadline = t_launch + timeout
        while not result_path.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"faust worker exited with {proc.returncode}; log: {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"faust worker gave no result in {timeout} s; log: {log_path}")
            time.sleep(0.05)
        time.sleep(0.05)
        result = json.loads(result_path.read_text())
    finally:
        stop_process(proc)
    result["t_launch"] = t_launch
    result["log"] = str(log_path)
    result["exit_code"] = proc.returncode
    return result


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summarize(kind: str, r: dict, n: int) -> dict:
    assign_s = r["t_end"] - r["t_assigned"]
    first_s = r["t_end"] - r["t_first"]
    startup_s = r["t_assigned"] - r.get("t_launch", r["t_process"])
    return {
        "kind": kind,
        "rps_assign": n / assign_s,
        "rps_first": n / first_s,
        "assign_s": assign_s,
        "first_s": first_s,
        "startup_s": startup_s,
        "assign_to_first_s": r["t_first"] - r["t_assigned"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-json", action="store_true", help="skip the faust JSON-decoding variant"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per consumer run, seconds")
    # internal: the faust worker subprocess
    parser.add_argument("--faust-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--serializer", default="raw", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faust_worker:
        run_faust_worker(args)
        return

    import tempfile

    from contract.settings import ensure_topics
    from devstack.broker import start_broker

    n = args.records
    workdir = Path(tempfile.mkdtemp(prefix="faust-bench-"))
    broker = start_broker(log_path=workdir / "tansu.log")
    try:
        bootstrap = broker.bootstrap
        topic = f"bench.predictions.{uuid.uuid4().hex[:8]}"
        ensure_topics([topic], 3, environ={"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
        produce_s = produce(bootstrap, topic, n)
        print(
            f"broker {bootstrap}, topic {topic} (3 partitions), produced {n} records in {produce_s:.1f} s "
            f"({n / produce_s:,.0f}/s); logs in {workdir}",
            flush=True,
        )
        kinds = ["bare", "faust-raw"] + ([] if args.no_json else ["faust-json"])
        rows: dict[str, list[dict]] = {k: [] for k in kinds}
        for rnd in range(1, args.rounds + 1):
            for kind in kinds:
                if kind == "bare":
                    raw = run_bare(bootstrap, topic, n, args.timeout)
                else:
                    raw = run_faust(bootstrap, topic, n, kind.split("-")[1], args.timeout, workdir)
                if raw["records"] != n:
                    raise RuntimeError(f"{kind} counted {raw['records']} of {n}")
                s = summarize(kind, raw, n)
                rows[kind].append(s)
                print(
                    f"round {rnd} {kind:10s} {s['rps_assign']:>10,.0f} rec/s assign->N ({s['assign_s']:.2f} s), "
                    f"{s['rps_first']:>10,.0f} rec/s first->N, startup->assigned {s['startup_s']:.2f} s, "
                    f"assigned->first msg {s['assign_to_first_s']:.2f} s",
                    flush=True,
                )
        print_tables(rows, n, args.rounds)
    finally:
        broker.stop()


def print_tables(rows: dict[str, list[dict]], n: int, rounds: int) -> None:
    for metric, title in (
        ("rps_assign", "records/s, timed from partition assignment to the N-th message"),
        ("rps_first", "records/s, timed from the first message to the N-th message"),
    ):
        bare_median = statistics.median(r[metric] for r in rows["bare"])
        print(f"\n### {title} (N = {n:,})\n")
        header = (
            "| consumer | "
            + " | ".join(f"round {i}" for i in range(1, rounds + 1))
            + " | median | ratio to bare |"
        )
        print(header)
        print("|" + "---|" * (rounds + 3))
        for kind, results in rows.items():
            med = statistics.median(r[metric] for r in results)
            cells = " | ".join(f"{r[metric]:,.0f}" for r in results)
            print(f"| {kind} | {cells} | {med:,.0f} | {med / bare_median:.2f} |")
    print(
        "\n### startup (seconds from process/consumer start to partition assignment; "
        "assignment to first message)\n"
    )
    print("| consumer | startup->assigned (median) | assigned->first message (median) |")
    print("|---|---|---|")
    for kind, results in rows.items():
        print(
            f"| {kind} | {statistics.median(r['startup_s'] for r in results):.2f} | "
            f"{statistics.median(r['assign_to_first_s'] for r in results):.2f} |"
        )


if __name__ == "__main__":
    main()
