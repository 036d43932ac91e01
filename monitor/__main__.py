"""Command line: `python -m monitor run|worker|evaluate|status|profile`.

The three processes (`monitor.run`, `monitor.worker`, `monitor.evaluator`) stand side by side: each
takes the configuration (`monitor.config`), the baseline (`monitor.baseline`) and its topics, and
shares the checkpoint (`monitor.checkpoint`) and the gauges (`monitor.metrics`); none imports
another. This module only parses the flags and starts the one asked for."""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger("monitor")

NAN_NOTE = (
    "Until the window holds enough records (the window size for a count window, 100 records for a time "
    "window) every drift gauge is NaN, not 0; the concept-drift gauges stay NaN until 100 of the window's "
    "records have labels. `status` prints NaN as 'n/a'."
)
TOPIC_ROLES = ("predictions", "labels", "monitor_dlq", "monitor_state")


def build_parser() -> argparse.ArgumentParser:
    from contract.settings import Topics
    from monitor.config import add_arguments, add_grace

    env = os.environ
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m monitor",
        description="Drift monitor: compare windows of a model's predictions topic (and the labels joined to them) "
        "with the model's held-out reference, and export the result to Prometheus. Broker from "
        "KAFKA_BOOTSTRAP_SERVERS (any KAFKA_<KEY> env var sets a librdkafka key).",
        formatter_class=fmt,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="consume predictions and labels, export drift gauges",
        formatter_class=fmt,
        description="Monitor one model, described by its schema (columns, task, message layout) and its reference "
        "(held-out rows with the target and the model's prediction). Reads any serving system's inference log laid "
        "out as the schema says. Topics are named after the schema's model name, each overridden by its env var: "
        f"{Topics.help(TOPIC_ROLES)}.",
        epilog=NAN_NOTE
        + " Records that do not match the schema go to the monitor DLQ with headers reason, detail, "
        "source_topic, source_partition and source_offset, counted in monitor_invalid_records_total. State and "
        "offsets are saved to the state topic (compacted, keyed by group) and restored on start; SIGTERM finishes "
        "the batch, saves and exits 0. One `run` process per group: count windows always run this way; time windows "
        "can also be split over several `worker` processes and one `evaluate`.",
    )
    add_arguments(run, env)
    scale = (
        "Several workers share the predictions and labels partitions (one consumer group; the topics must be "
        "co-partitioned: same partition count, keyed by record id) and publish closed event-time panes to the "
        "pane topic (<model>.monitor-panes, env MONITOR_PANES_TOPIC); one `evaluate` process merges them and "
        "exports the gauges. Time windows only (--window 5m --step 30s): a count window depends on the order "
        "records arrive across partitions, so count windows stay single-instance with `run`."
    )
    worker = commands.add_parser(
        "worker",
        help="one of several processes sharing the partitions: panes to the pane topic",
        formatter_class=fmt,
        description=scale,
        epilog="Each partition's panes, pending joins and offsets are saved to the state topic "
        "(key <group>/partition/<p>); when a worker dies its partitions move to the others, which resume from that "
        "state: no pane lost or counted twice. Exits 2 when the topics are not co-partitioned, and for a log of "
        "requests and responses on their own topics (messages.format oip-v2, kserve-cloudevents, seldon-v2: "
        "a request and its response meet only in one `run` process).",
    )
    add_arguments(worker, env)
    evaluate = commands.add_parser(
        "evaluate",
        help="merge the workers' panes, run the tests, export the gauges",
        formatter_class=fmt,
        description=scale,
        epilog=NAN_NOTE + " One evaluator per group; its state (key <group>/evaluator) is "
        "restored on start. Pane reports that arrive after their window was evaluated are merged into later windows "
        "and counted in monitor_late_pane_records_total, or in monitor_dropped_pane_records_total once the pane has "
        "left every window.",
    )
    add_arguments(evaluate, env)
    add_grace(evaluate, env)
    port = env.get("MONITOR_METRICS_PORT", "8000")
    status = commands.add_parser(
        "status",
        help="print per-feature drift from a running monitor's /metrics",
        formatter_class=fmt,
        epilog=NAN_NOTE,
    )
    status.add_argument(
        "--url", default=f"http://localhost:{port}/metrics", help="the monitor's metrics URL"
    )
    status.add_argument(
        "--model", help="the model to show when the page holds several (default: the only one)"
    )

    from contract.profile import command as profile
    from monitor import report

    profile.add_parser(commands)
    report.add_parser(commands, env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "status":
        from monitor.status import status

        return status(args.url, sys.stdout, args.model)
    if args.command == "profile":
        from contract.profile import command as profile

        return profile.command(args)
    if args.command == "report":
        from monitor.report import command as report

        return report(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from prometheus_client import CollectorRegistry

    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from contract.delivery import startup_exit_code
    from contract.service import PortInUse, check_port, serve_metrics, stop_on_signals
    from contract.settings import Topics, ensure_topics, partition_counts
    from monitor.baseline import load_baseline
    from monitor.checkpoint import StateMismatch
    from monitor.config import MonitorConfig, NotCoPartitioned, check_co_partitioned
    from monitor.page import PageCache
    from monitor.sources import prediction_source
    from monitor.state import create_state_topic

    try:
        config = MonitorConfig.from_args(args)
        if args.command != "run":
            config.require_time_windows(args.command)
        schema = load_model_schema(args.model_dir, args.schema)
        baseline = load_baseline(
            schema, args.reference or args.model_dir / REFERENCE_FILE, config.estimate
        )
        topics = Topics.for_model(schema.name)
        source = prediction_source(
            schema, topics
        )  # the inference log's format (schema messages.format)
        if args.command == "worker" and not source.shareable:
            raise ValueError(
                f"messages.format {schema.format}: the request and response topics are not "
                "co-partitioned, so workers cannot split them; monitor this log with `run`"
            )
        check_port(
            config.metrics_host, config.metrics_port, "--metrics-port"
        )  # before the broker wait: fail fast
    except (ValueError, PortInUse) as exc:  # SchemaError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("%s", baseline.estimate)  # the estimator fitted, or why there is none
    stop = stop_on_signals("finishing the current batch, saving state")
    if (code := startup_exit_code(args.startup_timeout, stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([*source.topics, topics.labels, topics.monitor_dlq], config.partitions)
    create_state_topic(topics.monitor_state)
    partitions = 0
    if args.command != "run":
        try:
            partitions = check_co_partitioned(
                topics, partition_counts([*source.topics, topics.labels])
            )
        except NotCoPartitioned as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        ensure_topics(
            [topics.monitor_panes], 1
        )  # one partition: the one evaluator reads it in order
    registry = CollectorRegistry()
    page = PageCache() if args.command != "worker" else None  # the page, at / beside /metrics
    try:
        serve_metrics(
            registry,
            config.metrics_host,
            config.metrics_port,
            "--metrics-port",
            pages={"/": page.answer} if page is not None else None,
        )
    except PortInUse as exc:  # taken while this process waited for the broker
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "worker":
            from monitor.worker import run_worker

            return run_worker(config, schema, baseline, topics, registry, stop, source)
        if args.command == "evaluate":
            from monitor.evaluator import run_evaluator

            return run_evaluator(config, schema, baseline, topics, partitions, registry, stop, page)
        from monitor.run import run

        return run(config, schema, baseline, topics, registry, stop, source, page)
    except StateMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
