"""Command line: `python -m monitor run|status|profile`."""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import TextIO

log = logging.getLogger("monitor")

NAN_NOTE = (
    "Until the window holds enough records (the window size for a count window, 100 records for a time "
    "window) every drift gauge is NaN, not 0; the concept-drift gauges stay NaN until 100 of the window's "
    "records have labels. `status` prints NaN as 'n/a'."
)
TOPIC_ROLES = ("predictions", "labels", "monitor_dlq", "monitor_state")


def build_parser() -> argparse.ArgumentParser:
    from contract.settings import Topics

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
        "run", help="consume predictions and labels, export drift gauges", formatter_class=fmt,
        description="Monitor one model, described by its schema (columns, task, message layout) and its reference "
        "(held-out rows with the target and the model's prediction). Reads any serving system's inference log laid "
        "out as the schema says. Topics are named after the schema's model name, each overridden by its env var: "
        f"{Topics.help(TOPIC_ROLES)}.",
        epilog=NAN_NOTE + " Records that do not match the schema go to the monitor DLQ with headers reason, detail, "
        "source_topic, source_partition and source_offset, counted in monitor_invalid_records_total. State and "
        "offsets are saved to the state topic (compacted, keyed by group) and restored on start; SIGTERM finishes "
        "the batch, saves and exits 0. One `run` process per group: count windows always run this way; time windows "
        "can also be split over several `worker` processes and one `evaluate`.")
    add_monitor_arguments(run, env)
    scale = ("Several workers share the predictions and labels partitions (one consumer group; the topics must be "
             "co-partitioned: same partition count, keyed by record id) and publish closed event-time panes to the "
             "pane topic (<model>.monitor-panes, env MONITOR_PANES_TOPIC); one `evaluate` process merges them and "
             "exports the gauges. Time windows only (--window 5m --step 30s): a count window depends on the order "
             "records arrive across partitions, so count windows stay single-instance with `run`.")
    worker = commands.add_parser(
        "worker", help="one of several processes sharing the partitions: panes to the pane topic", formatter_class=fmt,
        description=scale, epilog="Each partition's panes, pending joins and offsets are saved to the state topic "
        "(key <group>/partition/<p>); when a worker dies its partitions move to the others, which resume from that "
        "state: no pane lost or counted twice. Exits 2 when the topics are not co-partitioned.")
    add_monitor_arguments(worker, env)
    evaluate = commands.add_parser(
        "evaluate", help="merge the workers' panes, run the tests, export the gauges", formatter_class=fmt,
        description=scale, epilog=NAN_NOTE + " One evaluator per group; its state (key <group>/evaluator) is "
        "restored on start. Pane reports that arrive after their window was evaluated are merged into later windows "
        "and counted in monitor_late_pane_records_total, or in monitor_dropped_pane_records_total once the pane has "
        "left every window.")
    add_monitor_arguments(evaluate, env)
    evaluate.add_argument("--grace", default=env.get("MONITOR_GRACE", "5s"),
                          help="evaluate a window once every partition is past it, or this long (wall clock) after "
                          "the first one was (env MONITOR_GRACE)")
    port = env.get("MONITOR_METRICS_PORT", "8000")
    status = commands.add_parser("status", help="print per-feature drift from a running monitor's /metrics",
                                 formatter_class=fmt, epilog=NAN_NOTE)
    status.add_argument("--url", default=f"http://localhost:{port}/metrics", help="the monitor's metrics URL")
    status.add_argument("--model", help="the model to show when the page holds several (default: the only one)")

    from contract.profile import command as profile

    profile.add_parser(commands)
    return parser


def add_monitor_arguments(sub: argparse.ArgumentParser, env) -> None:
    """The model, window, budget and consumer flags shared by run, worker and evaluate."""
    from contract.settings import DEFAULT_PARTITIONS, Groups

    # "%(default).0s" prints nothing: it only keeps the formatter from adding "(default: None)".
    sub.add_argument("--schema", type=Path, help="the model's schema file (default: MODEL_DIR/schema.yaml)%(default).0s")
    sub.add_argument("--reference", type=Path, help="the model's reference file, CSV or Parquet "
                     "(default: MODEL_DIR/reference.csv)%(default).0s")
    sub.add_argument("--model-dir", type=Path, default=Path(env.get("MODEL_DIR", "artifacts")),
                     help="folder with schema.yaml and reference.csv (env MODEL_DIR)")
    sub.add_argument("--group", default=Groups.from_env().monitor, help="consumer group, also the state key (env MONITOR_GROUP)")
    sub.add_argument("--metrics-host", default=env.get("METRICS_HOST", "0.0.0.0"), help="metrics bind address (env METRICS_HOST)")
    sub.add_argument("--metrics-port", type=int, default=int(env.get("MONITOR_METRICS_PORT", 8000)),
                     help="Prometheus /metrics port, 0 = off (env MONITOR_METRICS_PORT)")
    sub.add_argument("--window", default=env.get("MONITOR_WINDOW", "1000"),
                     help="records per window (1000) or an event-time span (30s, 5m, 1h) (env MONITOR_WINDOW)")
    sub.add_argument("--step", default=env.get("MONITOR_STEP", "250"),
                     help="evaluate every this many records or this long; same kind as --window, divides it (env MONITOR_STEP)")
    sub.add_argument("--ert", type=float, default=float(env.get("MONITOR_ERT", 1e7)),
                     help="calibrated mode: expected records between false alarms (env MONITOR_ERT)")
    sub.add_argument("--thresholds", choices=("calibrated", "fixed"), default=env.get("MONITOR_THRESHOLDS", "calibrated"),
                     help="calibrated: thresholds from --ert and the window size; fixed: the tutorial's 0.1 rules "
                     "(env MONITOR_THRESHOLDS)")
    sub.add_argument("--label-ttl", default=env.get("MONITOR_LABEL_TTL", "1h"),
                     help="how much later in event time than other records' labels a label may come: a prediction "
                     "waits for its label until labels this much newer than it have come on every label partition "
                     "(a label waits likewise for its prediction), so a label sent soon after its prediction always "
                     "joins whatever the event-time spacing of the stream; at most 200,000 wait per side "
                     "(env MONITOR_LABEL_TTL)")
    sub.add_argument("--state-interval", type=float, default=float(env.get("MONITOR_STATE_INTERVAL", 5.0)),
                     help="seconds between state snapshots and offset commits (env MONITOR_STATE_INTERVAL)")
    sub.add_argument("--batch-size", type=int, default=5000, help="most messages per batch")
    sub.add_argument("--batch-timeout", type=float, default=0.05,
                     help="longest wait for a batch to fill: a batch is --batch-size messages or what came in this time")
    sub.add_argument("--estimate", choices=("on", "off"), default=env.get("MONITOR_ESTIMATE", "on"),
                     help="estimate the model's performance without labels (the MSE from a nanny model of the "
                     "reference's errors, a classifier's error rate from its calibrated probabilities): gauges "
                     "estimated_*, alert EstimatedPerformanceDrop (env MONITOR_ESTIMATE)")
    sub.add_argument("--partitions", type=int, default=int(env.get("TOPIC_PARTITIONS", DEFAULT_PARTITIONS)),
                     help="partitions for the input and DLQ topics if this command creates them (env TOPIC_PARTITIONS)")
    sub.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the broker at start")



def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _flag(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else ("DRIFT" if value >= 0.5 else "no")


def status(url: str, out: TextIO, model: str | None = None) -> int:
    """Per-feature and per-output statistic, threshold, p-value and flag from a monitor's /metrics, as a
    table, then the dataset, concept and window lines; one model's (`model`, or the page's only one)."""
    from urllib.error import URLError
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except (URLError, OSError) as exc:
        print(f"error: cannot read {url}: {exc}", file=sys.stderr)
        return 1
    # {(sample name, frozenset of labels): value}
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    tasks = {dict(labels)["model"]: dict(labels).get("task") for name, labels in samples if name == "drift_model_info"}
    if not tasks:
        print(f"error: {url} has no drift_model_info: is it a drift monitor?", file=sys.stderr)
        return 1
    if model is None:
        if len(tasks) > 1:
            print(f"error: {url} holds the models {', '.join(sorted(tasks))}: choose one with --model", file=sys.stderr)
            return 2
        model = next(iter(tasks))
    elif model not in tasks:
        print(f"error: {url} has no model {model!r} (it holds {', '.join(sorted(tasks))}): change --model", file=sys.stderr)
        return 2
    classification = tasks[model] == "classification"

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset({"model": model, **labels}.items())))

    def labelled(name: str, key: str) -> list[dict[str, str]]:
        return [dict(labels) for n, labels in samples if n == name and dict(labels).get("model") == model and key in dict(labels)]

    tests = {labels["feature"]: labels["test"] for labels in labelled("drift_feature_statistic", "feature")}
    width = max([11, *(len(name) + 2 for name in tests)])
    out.write(f"model {model} ({tasks[model]})\n")
    out.write(f"{'feature':<{width}}{'test':<6}{'statistic':>11}{'threshold':>11}{'p-value':>11}  {'flagged':<8}"
              f"{'evaluations flagged':>20}\n")
    for feature, test in tests.items():
        out.write(f"{feature:<{width}}{test:<6}{_fmt(get('drift_feature_statistic', feature=feature, test=test)):>11}"
                  f"{_fmt(get('drift_feature_threshold', feature=feature)):>11}{_fmt(get('drift_feature_pvalue', feature=feature)):>11}"
                  f"  {_flag(get('drift_feature_detected', feature=feature)):<8}"
                  f"{_fmt(get('drift_feature_detections_total', feature=feature), '.0f'):>20}\n")
    prediction_test = "chi2" if classification else "ks"
    out.write(f"{'prediction':<{width}}{prediction_test:<6}{_fmt(get('prediction_drift_statistic')):>11}"
              f"{_fmt(get('prediction_drift_threshold')):>11}{'':>11}  {_flag(get('prediction_drift_detected')):<8}"
              f"{_fmt(get('prediction_drift_detections_total'), '.0f'):>20}\n")
    for cls in (labels["class"] for labels in labelled("drift_probability_statistic", "class")):
        out.write(f"{f'p({cls})':<{width}}{'ks':<6}{_fmt(get('drift_probability_statistic', **{'class': cls})):>11}"
                  f"{_fmt(get('drift_probability_threshold', **{'class': cls})):>11}{'':>11}  "
                  f"{_flag(get('drift_probability_detected', **{'class': cls})):<8}{'':>20}\n")
    out.write(f"dataset: data_drift {_fmt(get('data_drift'))}, share of features flagged {_fmt(get('drift_share_detected'), '.2f')}, "
              f"flagged {_flag(get('drift_dataset_detected'))}\n")
    if classification:
        measured = (f"rolling error rate {_fmt(get('rolling_error_rate'), '.4f')} vs reference "
                    f"{_fmt(get('reference_error_rate'), '.4f')}")
    else:
        measured = f"rolling MSE {_fmt(get('rolling_mse'), ',.0f')} vs reference {_fmt(get('reference_mse'), ',.0f')}"
    out.write(f"concept: {measured}, ratio {_fmt(get('concept_drift'))} (threshold {_fmt(get('concept_drift_threshold'))}), "
              f"label coverage {_fmt(get('label_coverage_ratio'), '.2f')}, flagged {_flag(get('concept_drift_detected'))}\n")
    if get("estimated_concept_drift") is not None:  # the monitor estimates the performance without labels
        estimate = (f"error rate {_fmt(get('estimated_error_rate'), '.4f')}" if classification
                    else f"MSE {_fmt(get('estimated_mse'), ',.0f')}")
        out.write(f"estimated (no labels): {estimate}, ratio {_fmt(get('estimated_concept_drift'))} (threshold "
                  f"{_fmt(get('estimated_concept_drift_threshold'))}), outside the reference's support "
                  f"{_fmt(get('outside_support_ratio'), '.2f')}, flagged {_flag(get('estimated_concept_drift_detected'))}\n")
    out.write(f"window: {_fmt(get('window_records'), '.0f')} records; {_fmt(get('monitor_evaluations_total'), '.0f')} "
              f"evaluations since start\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "status":
        return status(args.url, sys.stdout, args.model)
    if args.command == "profile":
        from contract.profile import command as profile

        return profile.command(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prometheus_client import CollectorRegistry

    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from contract.delivery import startup_exit_code
    from contract.service import PortInUse, check_port, serve_metrics, stop_on_signals
    from contract.settings import Topics, ensure_topics
    from monitor.persist import StateMismatch
    from monitor.service import MonitorConfig, load_baseline, parse_duration_ms, run
    from monitor.state import create_state_topic

    from monitor.worker import NotCoPartitioned, check_co_partitioned, panes_topic, require_time_windows

    try:
        config = MonitorConfig(
            group=args.group, metrics_host=args.metrics_host, metrics_port=args.metrics_port, window=args.window,
            step=args.step, ert=args.ert, thresholds=args.thresholds, label_ttl=args.label_ttl,
            state_interval=args.state_interval, batch_size=args.batch_size, batch_timeout=args.batch_timeout,
            partitions=args.partitions, estimate=args.estimate == "on")
        if args.command != "run":
            require_time_windows(config, args.command)
        grace_s = parse_duration_ms(args.grace, "--grace") / 1000 if args.command == "evaluate" else 0.0
        schema = load_model_schema(args.model_dir, args.schema)
        baseline = load_baseline(schema, args.reference or args.model_dir / REFERENCE_FILE, config.estimate)
        check_port(config.metrics_host, config.metrics_port, "--metrics-port")  # before the broker wait: fail fast
    except (ValueError, PortInUse) as exc:  # SchemaError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("%s", baseline.estimate)  # the estimator fitted, or why there is none
    topics = Topics.for_model(schema.name)
    stop = stop_on_signals("finishing the current batch, saving state")
    if (code := startup_exit_code(args.startup_timeout, stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.predictions, topics.labels, topics.monitor_dlq], config.partitions)
    create_state_topic(topics.monitor_state)
    try:
        partitions = check_co_partitioned(topics) if args.command != "run" else 0
    except NotCoPartitioned as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command != "run":
        ensure_topics([panes_topic(topics)], 1)  # one partition: the one evaluator reads it in order
    registry = CollectorRegistry()
    try:
        serve_metrics(registry, config.metrics_host, config.metrics_port, "--metrics-port")
    except PortInUse as exc:  # taken while this process waited for the broker
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "worker":
            from monitor.worker import run_worker

            return run_worker(config, schema, baseline, topics, registry, stop)
        if args.command == "evaluate":
            from monitor.evaluator import run_evaluator

            return run_evaluator(config, schema, baseline, topics, partitions, grace_s, registry, stop)
        return run(config, schema, baseline, topics, registry, stop)
    except StateMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
