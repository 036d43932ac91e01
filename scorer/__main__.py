"""Command line: `python -m scorer train|run|tail|serve`."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from contract.service import stop_on_signals
from contract.settings import DEFAULT_PARTITIONS, Topics

log = logging.getLogger("scorer")


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m scorer",
        description="Train the diamond price model and score the features topic. Broker from "
        "KAFKA_BOOTSTRAP_SERVERS (any KAFKA_<KEY> env var sets a librdkafka key); topics from FEATURES_TOPIC, "
        "PREDICTIONS_TOPIC, DLQ_TOPIC; model files in MODEL_DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, default=Path(env.get("MODEL_DIR", "artifacts")),
                        help="folder of model.joblib, reference.csv, metadata.json (env MODEL_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    commands.add_parser("train", help="fit the RandomForest pipeline on 80%% of diamonds; write model, "
                        "held-out reference and metadata", formatter_class=fmt)

    run = commands.add_parser("run", help="consume features, publish predictions (at-least-once)", formatter_class=fmt)
    run.add_argument("--group", default=env.get("SCORER_GROUP", "scorer"), help="consumer group (env SCORER_GROUP)")
    run.add_argument("--metrics-host", default=env.get("METRICS_HOST", "0.0.0.0"), help="metrics bind address (env METRICS_HOST)")
    run.add_argument("--metrics-port", type=int, default=int(env.get("SCORER_METRICS_PORT", 8001)),
                     help="Prometheus /metrics port, 0 = off (env SCORER_METRICS_PORT)")
    run.add_argument("--batch-size", type=int, default=50000,
                     help="most records per batch (one predict call each); a crash duplicates at most one batch's "
                     "outputs and re-scores up to two batches")
    run.add_argument("--batch-timeout", type=float, default=0.5,
                     help="longest time filling one batch while records keep arriving (a lull scores at once)")
    run.add_argument("--partitions", type=int, default=int(env.get("TOPIC_PARTITIONS", DEFAULT_PARTITIONS)),
                     help="partitions for topics this command creates (env TOPIC_PARTITIONS)")
    run.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for the broker at start")

    tail = commands.add_parser("tail", help="print predictions as they arrive", formatter_class=fmt)
    tail.add_argument("--count", type=int, default=0, help="stop after N predictions, 0 = never")
    tail.add_argument("--from-beginning", action="store_true", help="start at the topic's first prediction")
    tail.add_argument("--json", action="store_true", help="print JSON lines instead of columns")
    tail.add_argument("--idle-timeout", type=float, default=0.0, help="stop after this many seconds without a prediction, 0 = never")

    serve = commands.add_parser("serve", help="HTTP API: POST /predict, GET /healthz, GET /metrics", formatter_class=fmt)
    serve.add_argument("--host", default=env.get("API_HOST", "127.0.0.1"), help="bind address (env API_HOST)")
    serve.add_argument("--port", type=int, default=int(env.get("API_PORT", 5000)), help="port (env API_PORT)")
    from scorer.api import MAX_BATCH_RECORDS, MAX_BODY_BYTES

    serve.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="largest request body; bigger ones get 413")
    serve.add_argument("--max-batch", type=int, default=MAX_BATCH_RECORDS, help="most records in one POST /predict list")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    topics = Topics.from_env()
    from scorer.model import ModelError, load

    if args.command == "train":
        from scorer.model import train

        metadata = train(args.model_dir)
        print(f"model {metadata['model_version']} in {args.model_dir}: held-out MSE {metadata['holdout_mse']:,.0f}, "
              f"MAE {metadata['holdout_mae']:,.1f}, {metadata['model_bytes'] / 1e6:.1f} MB, trained in {metadata['train_seconds']} s")
        return 0
    if args.command == "tail":
        from scorer.tail import tail

        return tail(topics, count=args.count, from_beginning=args.from_beginning, as_json=args.json,
                    idle_timeout=args.idle_timeout)
    try:
        model = load(args.model_dir)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from scorer.api import create_app, serve

        if args.max_body_bytes < 1 or args.max_batch < 1:
            print("error: --max-body-bytes and --max-batch must be at least 1", file=sys.stderr)
            return 2
        return serve(create_app(model, max_body_bytes=args.max_body_bytes, max_batch=args.max_batch), args.host, args.port)

    from prometheus_client import CollectorRegistry, start_http_server

    from contract.delivery import startup_exit_code
    from contract.settings import ensure_topics
    from scorer.service import ScorerConfig, run

    try:
        config = ScorerConfig(group=args.group, model_dir=args.model_dir, metrics_host=args.metrics_host,
                              metrics_port=args.metrics_port, batch_size=args.batch_size, batch_timeout=args.batch_timeout,
                              topic_partitions=args.partitions)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = stop_on_signals("finishing the batches in hand")
    if (code := startup_exit_code(args.startup_timeout, stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.features, topics.predictions, topics.dlq], args.partitions)
    registry = CollectorRegistry()
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.metrics_host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, config.metrics_port)
    return run(config, model, topics, registry, stop)


if __name__ == "__main__":
    sys.exit(main())
