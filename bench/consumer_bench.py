"""Two consumer-loop settings every service uses, measured on the local broker.

    .venv/bin/python bench/consumer_bench.py [--records 200000]

1. Garbage collection: a bare consume() loop in a process that has imported pandas and scikit-learn
   (as the scorer and the monitor have), with and without `contract.service.freeze_startup_heap`.
   Each variant runs in its own process (a frozen heap cannot be thawed).
2. Fetch backoff: a consume() loop doing N us of busy work per record, with librdkafka's default
   `fetch.queue.backoff.ms` (1,000) and with the services' 10 ms.
3. The monitor's floor: a consume() loop that only decodes each batch into the monitor's columns
   (`monitor.decode.Decoder(schema).predictions`, the schema's msgspec typed decoder; the diamonds
   schema, as the scorer writes its predictions) against the bare loop, in
   alternating reads: what any monitor that reads these JSON records pays before its own work.
Prints markdown tables; numbers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer  # noqa: E402

from contract.settings import consumer_config, ensure_topics, producer_config  # noqa: E402
from devstack.broker import start_broker  # noqa: E402

VALUE = (
    b'{"id":"b-0","ts":0,"scored_at":0,"model_version":"bench","prediction":752.472722138972,'
    b'"features":{"carat":0.4,"cut":"Very Good","color":"D","clarity":"SI2","depth":63.4,"table":59.0}}'
)


def read(
    topic: str, records: int, work_us: float = 0.0, per_batch=None, **settings: object
) -> tuple[float, float]:
    """(records/s, us per record inside consume()) for one new group reading the whole topic;
    `per_batch(messages)`, if given, runs on every batch consumed."""
    consumer = Consumer({**consumer_config(f"bench-{uuid.uuid4().hex[:8]}"), **settings})
    consumer.subscribe([topic])
    seen, in_consume, started = 0, 0.0, None
    while seen < records:
        before = time.perf_counter()
        got = consumer.consume(5000, 0.2)
        after = time.perf_counter()
        if got and started is None:
            started = before
        if started is not None:
            in_consume += after - before
        seen += len(got)
        if per_batch is not None:
            per_batch(got)
        busy_until = after + len(got) * work_us * 1e-6
        while time.perf_counter() < busy_until:  # the service's own work, holding the GIL
            pass
    elapsed = time.perf_counter() - started
    consumer.close()
    return records / elapsed, in_consume / records * 1e6


def gc_variant(topic: str, records: int, freeze: bool) -> None:
    """Child process: import what the services import, maybe freeze, read twice, print the rates."""
    import pandas  # noqa: F401
    import sklearn.ensemble  # noqa: F401

    from contract.service import freeze_startup_heap

    if freeze:
        freeze_startup_heap()
    rates = [read(topic, records)[0] for _ in range(2)]
    print(" ".join(f"{r:.0f}" for r in rates))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--gc-variant", choices=["frozen", "default"], help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gc_variant:
        gc_variant(args.topic, args.records, args.gc_variant == "frozen")
        return 0
    broker = start_broker()
    try:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topics([topic], 3)
        producer = Producer(producer_config())
        for i in range(args.records):
            while True:
                try:
                    producer.produce(topic, VALUE, key=str(i))
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

        print(
            "## Bare consume() with pandas and scikit-learn imported (records/s, two reads each)\n"
        )
        print("| start-up heap | reads |\n|---|---|")
        for variant in ("default", "frozen", "default", "frozen"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--gc-variant",
                    variant,
                    "--topic",
                    topic,
                    "--records",
                    str(args.records),
                ],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ},
            )
            print(f"| {variant} | {out.stdout.strip()} |")

        print(
            "\n## consume() cost with work per record (us per record inside consume(); records/s)\n"
        )
        print(
            "| work per record | fetch.queue.backoff.ms | in consume() | records/s |\n|---:|---:|---:|---:|"
        )
        for work_us in (0.0, 2.0, 5.0):
            for backoff in (1000, 10):
                rate, cost = read(
                    topic, args.records, work_us, **{"fetch.queue.backoff.ms": backoff}
                )
                print(f"| {work_us:.0f} us | {backoff} | {cost:.2f} us | {rate:,.0f} |")

        from contract.schema import DEFAULT_SCHEMA
        from contract.schema_file import load_schema
        from contract.service import freeze_startup_heap
        from monitor.decode import Decoder

        decode_predictions = Decoder(load_schema(DEFAULT_SCHEMA)).predictions

        def decode(messages) -> None:
            decode_predictions([m.value() for m in messages])

        freeze_startup_heap()
        print("\n## The monitor's floor: consume() and decode only (records/s)\n")
        print("| round | bare | decode only | ratio |\n|---:|---:|---:|---:|")
        for round_number in range(1, 4):
            bare, decoding = (
                read(topic, args.records)[0],
                read(topic, args.records, per_batch=decode)[0],
            )
            print(f"| {round_number} | {bare:,.0f} | {decoding:,.0f} | {decoding / bare:.2f} |")
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
