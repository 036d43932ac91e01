"""Command line: `python -m producer simulate|publish`."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from contract.settings import DEFAULT_PARTITIONS, Topics, ensure_topics
from contract.delivery import startup_exit_code
from contract.service import stop_on_signals
from producer.scenarios import SCENARIOS


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="Publish diamond records (and their price labels) to Kafka. "
        "Broker from KAFKA_BOOTSTRAP_SERVERS; any KAFKA_<KEY> env var sets a librdkafka key; "
        "topics from FEATURES_TOPIC and LABELS_TOPIC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--partitions", type=int, default=int(env.get("TOPIC_PARTITIONS", DEFAULT_PARTITIONS)),
                        help="partitions for topics this command creates (env TOPIC_PARTITIONS)")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="seeded diamond traffic with an optional drift scenario",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sim.add_argument("--count", type=int, default=10_000, help="records to send, 0 = until stopped")
    sim.add_argument("--rate", type=float, default=1000.0, help="records per second, 0 = as fast as possible")
    sim.add_argument("--scenario", choices=list(SCENARIOS), default="none",
                     help="drift applied from --onset on: carat-shift (carat x1.1), gradual-carat (ramp to x1.2 "
                     "over 20,000 records), cut-mix, price-inflation (labels x1.2), new-category (unseen clarity "
                     "in 5%%), bad-records (a share of invalid payloads)")
    sim.add_argument("--onset", type=int, default=0, help="stream position where the scenario starts")
    sim.add_argument("--seed", type=int, default=42, help="random seed: the same seed gives the same records")
    sim.add_argument("--label-delay", type=float, default=2.0, help="seconds before each record's label is sent")
    sim.add_argument("--bad-share", type=float, default=0.1, help="bad-records: share of invalid records")
    sim.add_argument("--id-prefix", default="sim", help="record ids are PREFIX-POSITION")
    sim.add_argument("--metrics-host", default=env.get("METRICS_HOST", "0.0.0.0"), help="metrics bind address (env METRICS_HOST)")
    sim.add_argument("--metrics-port", type=int, default=int(env.get("PRODUCER_METRICS_PORT", 0)),
                     help="Prometheus /metrics port for records sent and delivered, 0 = off (env PRODUCER_METRICS_PORT)")

    pub = commands.add_parser("publish", help="publish JSONL feature records (labels too when a line has price)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pub.add_argument("file", help="JSONL file, or - for standard input")
    pub.add_argument("--strict", action="store_true", help="publish nothing if any line is invalid")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    topics = Topics.from_env()
    if args.command == "simulate":
        from producer.simulate import SimulateConfig

        if not 0 <= args.metrics_port <= 65535:
            print("error: --metrics-port must be 0-65535 (0 = off)", file=sys.stderr)
            return 2
        try:
            config = SimulateConfig(count=args.count, rate=args.rate, scenario=args.scenario, onset=args.onset,
                                    seed=args.seed, label_delay=args.label_delay, bad_share=args.bad_share,
                                    id_prefix=args.id_prefix)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    # simulate stops drawing on SIGTERM/Ctrl-C from the start (even while waiting for the broker)
    # and still delivers what it sent; publish is a one-shot copy and keeps the default handlers.
    stop = stop_on_signals("delivering what was sent") if args.command == "simulate" else None
    if (code := startup_exit_code(stop=stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.features, topics.labels], args.partitions)
    if args.command == "simulate":
        from producer.simulate import SimulatorMetrics, simulate

        metrics = None
        if args.metrics_port:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry()
            metrics = SimulatorMetrics(registry)
            start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry)
        return simulate(config, topics, metrics=metrics, stop=stop)
    from producer.publish import publish

    return publish(args.file, topics, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
