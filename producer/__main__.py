"""Command line: `python -m producer simulate|publish`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from contract.delivery import startup_exit_code
from contract.service import PortInUse, check_port, serve_metrics, stop_on_signals
from contract.settings import DEFAULT_PARTITIONS, Topics, ensure_topics
from producer.grammar import scenario_help


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the scenario table as written."""


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m producer",
        description="Publish feature records (and their labels) of the model in MODEL_DIR to Kafka, laid out as "
        "its schema.yaml says. Broker from KAFKA_BOOTSTRAP_SERVERS; any KAFKA_<KEY> env var sets a librdkafka key; "
        + Topics.help(("features", "labels"))
        + ", where <model> is the schema's name.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=int(env.get("TOPIC_PARTITIONS", DEFAULT_PARTITIONS)),
        help="partitions for topics this command creates (env TOPIC_PARTITIONS)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    model_dir = Path(env.get("MODEL_DIR", "artifacts"))

    sim = commands.add_parser(
        "simulate",
        help="seeded traffic drawn from the model's reference, with an optional drift scenario",
        epilog=scenario_help(),
        formatter_class=_Formatter,
    )
    sim.add_argument(
        "--model-dir",
        type=Path,
        default=model_dir,
        help="folder with schema.yaml and reference.csv (the rows records are drawn from; env MODEL_DIR)",
    )
    sim.add_argument("--count", type=int, default=10_000, help="records to send, 0 = until stopped")
    sim.add_argument(
        "--rate", type=float, default=1000.0, help="records per second, 0 = as fast as possible"
    )
    sim.add_argument(
        "--scenario",
        default="none",
        help="drift from --onset on, by column: see the scenarios below",
    )
    sim.add_argument(
        "--onset", type=int, default=0, help="stream position where the scenario starts"
    )
    sim.add_argument(
        "--seed", type=int, default=42, help="random seed: the same seed gives the same records"
    )
    sim.add_argument(
        "--label-delay", type=float, default=2.0, help="seconds before each record's label is sent"
    )
    sim.add_argument(
        "--no-labels",
        action="store_true",
        help="send no label at all: labels that come late or never (the estimated performance is then "
        "all the monitor knows of the model's accuracy)",
    )
    sim.add_argument(
        "--bad-share", type=float, default=0.1, help="bad-records: share of invalid records"
    )
    sim.add_argument("--id-prefix", default="sim", help="record ids are PREFIX-POSITION")
    sim.add_argument(
        "--metrics-host",
        default=env.get("METRICS_HOST", "0.0.0.0"),
        help="metrics bind address (env METRICS_HOST)",
    )
    sim.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("PRODUCER_METRICS_PORT", 0)),
        help="Prometheus /metrics port for records sent and delivered, 0 = off (env PRODUCER_METRICS_PORT)",
    )

    pub = commands.add_parser(
        "publish",
        help="publish JSONL feature records (labels too when a line has the target)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pub.add_argument("file", help="JSONL file, or - for standard input")
    pub.add_argument(
        "--model-dir",
        type=Path,
        default=model_dir,
        help="folder with schema.yaml, whose rules every line must meet (env MODEL_DIR)",
    )
    pub.add_argument("--strict", action="store_true", help="publish nothing if any line is invalid")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference

    try:  # everything a user can get wrong is checked before the broker is waited for
        schema = load_model_schema(args.model_dir)
        if args.command == "simulate":
            from producer.grammar import parse_scenario
            from producer.simulate import SimulateConfig, source_columns

            if not 0 <= args.metrics_port <= 65535:
                raise ValueError("--metrics-port must be 0-65535 (0 = off)")
            check_port(args.metrics_host, args.metrics_port, "--metrics-port")
            source = source_columns(read_reference(args.model_dir / REFERENCE_FILE, schema), schema)
            config = SimulateConfig(
                count=args.count,
                rate=args.rate,
                scenario=parse_scenario(args.scenario, schema, source),
                onset=args.onset,
                seed=args.seed,
                label_delay=args.label_delay,
                labels=not args.no_labels,
                bad_share=args.bad_share,
                id_prefix=args.id_prefix,
            )
    except (ValueError, PortInUse) as exc:  # SchemaError, ScenarioError, bad flags, a taken port
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topics = Topics.for_model(schema.name)
    # simulate stops drawing on SIGTERM/Ctrl-C from the start (even while waiting for the broker)
    # and still delivers what it sent; publish is a one-shot copy and keeps the default handlers.
    stop = stop_on_signals("delivering what was sent") if args.command == "simulate" else None
    if (code := startup_exit_code(stop=stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.features, topics.labels], args.partitions)
    if args.command == "simulate":
        from producer.simulate import simulate

        registry = None
        if args.metrics_port:
            from prometheus_client import CollectorRegistry

            registry = CollectorRegistry()
            try:
                serve_metrics(registry, args.metrics_host, args.metrics_port)
            except PortInUse as exc:  # taken since the check at start
                print(f"error: {exc}", file=sys.stderr)
                return 2
        return simulate(config, schema, source, topics, registry=registry, stop=stop)
    from producer.publish import publish

    return publish(args.file, schema, topics, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
