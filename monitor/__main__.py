"""Command line: `python -m monitor run|status`."""
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


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m monitor",
        description="Drift monitor: compare windows of the predictions topic (and the labels joined to them) "
        "with the model's held-out reference, and export the result to Prometheus. Broker from "
        "KAFKA_BOOTSTRAP_SERVERS (any KAFKA_<KEY> env var sets a librdkafka key); topics from PREDICTIONS_TOPIC "
        "and LABELS_TOPIC; reference from MODEL_DIR.",
        formatter_class=fmt,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume predictions and labels, export drift gauges", formatter_class=fmt,
                              epilog=NAN_NOTE + " State and offsets are saved to MONITOR_STATE_TOPIC (compacted, keyed "
                              "by group) and restored on start; SIGTERM finishes the batch, saves and exits 0.")
    run.add_argument("--group", default=env.get("MONITOR_GROUP", "monitor"), help="consumer group, also the state key (env MONITOR_GROUP)")
    run.add_argument("--model-dir", type=Path, default=Path(env.get("MODEL_DIR", "artifacts")),
                     help="folder with reference.csv (env MODEL_DIR)")
    run.add_argument("--metrics-host", default=env.get("METRICS_HOST", "0.0.0.0"), help="metrics bind address (env METRICS_HOST)")
    run.add_argument("--metrics-port", type=int, default=int(env.get("MONITOR_METRICS_PORT", 8000)),
                     help="Prometheus /metrics port, 0 = off (env MONITOR_METRICS_PORT)")
    run.add_argument("--window", default=env.get("MONITOR_WINDOW", "1000"),
                     help="records per window (1000) or an event-time span (30s, 5m, 1h) (env MONITOR_WINDOW)")
    run.add_argument("--step", default=env.get("MONITOR_STEP", "250"),
                     help="evaluate every this many records or this long; same kind as --window, divides it (env MONITOR_STEP)")
    run.add_argument("--ert", type=float, default=float(env.get("MONITOR_ERT", 1e7)),
                     help="calibrated mode: expected records between false alarms (env MONITOR_ERT)")
    run.add_argument("--thresholds", choices=("calibrated", "fixed"), default=env.get("MONITOR_THRESHOLDS", "calibrated"),
                     help="calibrated: thresholds from --ert and the window size; fixed: the tutorial's 0.1 rules "
                     "(env MONITOR_THRESHOLDS)")
    run.add_argument("--label-ttl", default=env.get("MONITOR_LABEL_TTL", "1h"),
                     help="how long (event time) a prediction waits for its label (env MONITOR_LABEL_TTL)")
    run.add_argument("--state-interval", type=float, default=float(env.get("MONITOR_STATE_INTERVAL", 5.0)),
                     help="seconds between state snapshots and offset commits (env MONITOR_STATE_INTERVAL)")
    run.add_argument("--batch-size", type=int, default=5000, help="most messages per batch")
    run.add_argument("--batch-timeout", type=float, default=0.2, help="seconds to wait for a batch to fill")
    run.add_argument("--partitions", type=int, default=int(env.get("TOPIC_PARTITIONS", 3)),
                     help="partitions for the input topics if this command creates them (env TOPIC_PARTITIONS)")
    run.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the broker at start")

    port = env.get("MONITOR_METRICS_PORT", "8000")
    status = commands.add_parser("status", help="print per-feature drift from a running monitor's /metrics",
                                 formatter_class=fmt, epilog=NAN_NOTE)
    status.add_argument("--url", default=f"http://localhost:{port}/metrics", help="the monitor's metrics URL")
    return parser


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def _flag(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else ("DRIFT" if value >= 0.5 else "no")


def status(url: str, out: TextIO) -> int:
    """Per-feature statistic, threshold, p-value and flag from a monitor's /metrics, as a table."""
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

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    tests = {dict(labels)["feature"]: dict(labels)["test"] for name, labels in samples if name == "drift_feature_statistic"}
    if not tests:
        print(f"error: {url} has no drift_feature_statistic: is it a drift monitor?", file=sys.stderr)
        return 1
    out.write(f"{'feature':<11}{'test':<6}{'statistic':>11}{'threshold':>11}{'p-value':>11}  {'flagged':<8}{'evaluations flagged':>20}\n")
    for feature, test in tests.items():
        out.write(f"{feature:<11}{test:<6}{_fmt(get('drift_feature_statistic', feature=feature, test=test)):>11}"
                  f"{_fmt(get('drift_feature_threshold', feature=feature)):>11}{_fmt(get('drift_feature_pvalue', feature=feature)):>11}"
                  f"  {_flag(get('drift_feature_detected', feature=feature)):<8}"
                  f"{_fmt(get('drift_feature_detections_total', feature=feature), '.0f'):>20}\n")
    out.write(f"{'prediction':<11}{'ks':<6}{_fmt(get('prediction_drift_statistic')):>11}{_fmt(get('prediction_drift_threshold')):>11}"
              f"{'':>11}  {_flag(get('prediction_drift_detected')):<8}{_fmt(get('prediction_drift_detections_total'), '.0f'):>20}\n")
    out.write(f"dataset: data_drift {_fmt(get('data_drift'))}, share of features flagged {_fmt(get('drift_share_detected'), '.2f')}, "
              f"flagged {_flag(get('drift_dataset_detected'))}\n")
    out.write(f"concept: rolling MSE {_fmt(get('rolling_mse'), ',.0f')} vs reference {_fmt(get('reference_mse'), ',.0f')}, "
              f"ratio {_fmt(get('concept_drift'))} (threshold {_fmt(get('concept_drift_threshold'))}), "
              f"label coverage {_fmt(get('label_coverage_ratio'), '.2f')}, flagged {_flag(get('concept_drift_detected'))}\n")
    out.write(f"window: {_fmt(get('window_records'), '.0f')} records; {_fmt(get('monitor_evaluations_total'), '.0f')} "
              f"evaluations since start\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "status":
        return status(args.url, sys.stdout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from prometheus_client import CollectorRegistry, start_http_server

    from contract.delivery import startup_exit_code
    from contract.service import stop_on_signals
    from contract.settings import Topics, ensure_topics
    from monitor.service import MonitorConfig, StateMismatch, load_reference, run
    from monitor.state import create_state_topic
    from scorer.model import ModelError

    try:
        config = MonitorConfig(
            group=args.group, model_dir=args.model_dir, metrics_host=args.metrics_host, metrics_port=args.metrics_port,
            window=args.window, step=args.step, ert=args.ert, thresholds=args.thresholds, label_ttl=args.label_ttl,
            state_topic=os.environ.get("MONITOR_STATE_TOPIC", "diamonds.monitor-state"),
            state_interval=args.state_interval, batch_size=args.batch_size, batch_timeout=args.batch_timeout)
        reference = load_reference(config.model_dir)
    except (ValueError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topics = Topics.from_env()
    stop = stop_on_signals("finishing the current batch, saving state")
    if (code := startup_exit_code(args.startup_timeout, stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.predictions, topics.labels], args.partitions)
    create_state_topic(config.state_topic)
    registry = CollectorRegistry()
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, config.metrics_port)
    try:
        return run(config, reference, topics, registry, stop)
    except StateMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
