"""Command line: `python -m scorer train|run|tail|serve|reference`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path

from contract.settings import DEFAULT_PARTITIONS, Groups, Topics

log = logging.getLogger("scorer")

MODEL_DIR_HELP = (
    "model folder (env MODEL_DIR): model.joblib (a fitted scikit-learn estimator or Pipeline taking a "
    "DataFrame of the schema's feature columns), schema.yaml, reference.csv; metadata.json optional"
)
SCHEMA_HELP = "the model's schema file (default MODEL_DIR/schema.yaml); its name gives the default topic names"

DESCRIPTION = f"""\
Score a Kafka topic of feature records with any scikit-learn model, and train the shipped examples.

MODEL_DIR (--model-dir, env MODEL_DIR, default artifacts/) holds model.joblib, schema.yaml (the
model's columns, task and message layout: see the README's "Schema format") and reference.csv
(held-out rows with the target and the model's prediction); metadata.json is optional (the model
version is then the content hash of model.joblib). `train` writes all four for an example;
`reference` writes reference.csv for your own model from labelled held-out rows.

Broker from KAFKA_BOOTSTRAP_SERVERS (any KAFKA_<KEY> env var sets a librdkafka key). Topics are
named after the schema's `name`: {Topics.help(("features", "predictions", "dlq"))}.
"""


def paragraphs(text: str, width: int = 100) -> str:
    """Each paragraph of `text` filled to `width` (argparse's raw description keeps the breaks)."""
    return "\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    fmt = argparse.RawDescriptionHelpFormatter

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        def _get_help_string(self, action: argparse.Action) -> str:
            # An option whose default is "none given" says what it falls back to in its own help.
            return action.help if action.default is None else super()._get_help_string(action)

    parser = argparse.ArgumentParser(
        prog="python -m scorer", description=paragraphs(DESCRIPTION), formatter_class=fmt
    )
    default_dir = Path(env.get("MODEL_DIR", "artifacts"))
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=default_dir,
        help=MODEL_DIR_HELP + f" (default {default_dir})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, description: str = "") -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            formatter_class=Formatter,
            description=paragraphs(f"{summary.replace('%%', '%')}.\n\n{description}".strip()),
        )
        # After the command too (`scorer run --model-dir DIR`); SUPPRESS keeps a value given before it.
        sub.add_argument(
            "--model-dir",
            type=Path,
            default=argparse.SUPPRESS,
            help=MODEL_DIR_HELP + f" (default {default_dir})",
        )
        return sub

    from scorer.examples import EXAMPLES

    train = command(
        "train",
        "fit a shipped example on 80%% of its data; write MODEL_DIR's model.joblib, schema.yaml, "
        "reference.csv (the held-out 20%%) and metadata.json",
        "diamonds: price regression (seaborn's diamonds, RandomForest). affairs: classification "
        "(statsmodels' fair survey, no download; gradient boosting with class probabilities).",
    )
    train.add_argument(
        "--example", choices=sorted(EXAMPLES), default="diamonds", help="which example"
    )

    schema_topics = Topics.help(("features", "predictions", "dlq"))
    run = command(
        "run",
        "consume features, publish predictions laid out as the schema says (at-least-once)",
        f"Reads MODEL_DIR/schema.yaml once at start; {schema_topics}. Invalid records go to the DLQ with "
        "the reason in a header. Broker from KAFKA_BOOTSTRAP_SERVERS.",
    )
    run.add_argument("--schema", type=Path, help=SCHEMA_HELP)
    run.add_argument(
        "--group", default=Groups.from_env().scorer, help="consumer group (env SCORER_GROUP)"
    )
    run.add_argument(
        "--metrics-host",
        default=env.get("METRICS_HOST", "0.0.0.0"),
        help="metrics bind address (env METRICS_HOST)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("SCORER_METRICS_PORT", 8001)),
        help="Prometheus /metrics port, 0 = off (env SCORER_METRICS_PORT)",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=50000,
        help="most records per batch (one predict call each). A batch is what is waiting when the "
        "predict process is free, never held back to fill: a slow stream is scored as it comes, a "
        "backlog in batches up to this size. A crash duplicates at most one batch's outputs and "
        "re-scores up to two batches",
    )
    run.add_argument(
        "--partitions",
        type=int,
        default=int(env.get("TOPIC_PARTITIONS", DEFAULT_PARTITIONS)),
        help="partitions for topics this command creates (env TOPIC_PARTITIONS)",
    )
    run.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the broker at start",
    )

    tail = command(
        "tail",
        "print predictions as they arrive: columns from the schema (prediction, then the features), "
        "or JSON lines",
        f"{Topics.help(('predictions',))}. Broker from KAFKA_BOOTSTRAP_SERVERS.",
    )
    tail.add_argument("--schema", type=Path, help=SCHEMA_HELP)
    tail.add_argument("--count", type=int, default=0, help="stop after N predictions, 0 = never")
    tail.add_argument(
        "--from-beginning", action="store_true", help="start at the topic's first prediction"
    )
    tail.add_argument("--json", action="store_true", help="print JSON lines instead of columns")
    tail.add_argument(
        "--idle-timeout",
        type=float,
        default=0.0,
        help="stop after this many seconds without a prediction, 0 = never",
    )

    serve = command(
        "serve",
        "HTTP API: POST /predict, GET /healthz, GET /metrics",
        "POST /predict takes one feature record or a list, as the schema describes them (id and timestamp "
        "optional) and answers {id, prediction, model_version, unseen_categories, [probabilities]}.",
    )
    serve.add_argument("--schema", type=Path, help=SCHEMA_HELP)
    serve.add_argument(
        "--host", default=env.get("API_HOST", "127.0.0.1"), help="bind address (env API_HOST)"
    )
    serve.add_argument(
        "--port", type=int, default=int(env.get("API_PORT", 5000)), help="port (env API_PORT)"
    )
    from scorer.api import MAX_BATCH_RECORDS, MAX_BODY_BYTES

    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="largest request body; bigger ones get 413",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=MAX_BATCH_RECORDS,
        help="most records in one POST /predict list",
    )

    reference = command(
        "reference",
        "write MODEL_DIR's reference file from your labelled held-out rows",
        "Predicts every row with MODEL_DIR/model.joblib and writes the features, the target, "
        "`prediction` and, for a classifier with predict_proba, `proba_<class>` columns. The features "
        "are the model's feature_names_in_ when it has them, else every column but the target. Needs "
        "no schema: write it afterwards from this file with `python -m monitor profile`.",
    )
    reference.add_argument(
        "--heldout",
        type=Path,
        required=True,
        help="CSV or Parquet of labelled rows the model never trained on",
    )
    reference.add_argument("--target", required=True, help="the label column of the held-out file")
    reference.add_argument(
        "-o",
        "--output",
        type=Path,
        help="where to write it, .csv or .parquet (default MODEL_DIR/reference.csv)",
    )
    reference.add_argument(
        "--keep",
        metavar="COL,...",
        help="other columns to copy through, e.g. an id or event-time column for `monitor profile --id/--ts`",
    )
    return parser


def fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "train":
        from scorer.examples import summary, train

        try:
            metadata = train(args.model_dir, args.example)
        except RuntimeError as exc:  # the example's data cannot be loaded (no cache, no internet)
            return fail(exc)
        print(summary(metadata, args.model_dir))
        return 0
    if args.command == "reference":
        from scorer.model import ModelError
        from scorer.reference import ReferenceError, write_reference

        try:
            written = write_reference(
                args.model_dir,
                args.heldout,
                args.target,
                args.output,
                [c for c in (args.keep or "").split(",") if c],
            )
        except (ReferenceError, ModelError) as exc:
            return fail(exc)
        print(written.summary())
        return 0

    from contract.artifacts import load_model_schema
    from contract.schema import SchemaError

    try:
        schema = load_model_schema(args.model_dir, args.schema)
    except SchemaError as exc:
        return fail(exc)
    topics = Topics.for_model(schema.name)
    if args.command == "tail":
        from scorer.tail import tail

        return tail(
            schema,
            topics,
            count=args.count,
            from_beginning=args.from_beginning,
            as_json=args.json,
            idle_timeout=args.idle_timeout,
        )

    from contract.service import PortInUse, check_port
    from scorer.model import ModelError, check_against_schema, load
    from scorer.scoring import BatchCodec

    try:
        model = load(args.model_dir)
        codec = BatchCodec(schema, check_against_schema(model, schema))
    except (ModelError, ValueError) as exc:  # ValueError: prediction messages whose fields clash
        return fail(exc)
    if args.command == "serve":
        from scorer.api import create_app, serve

        if args.max_body_bytes < 1 or args.max_batch < 1:
            return fail("--max-body-bytes and --max-batch must be at least 1")
        try:
            check_port(args.host, args.port, "--port")
        except PortInUse as exc:
            return fail(exc)
        return serve(
            create_app(model, codec, max_body_bytes=args.max_body_bytes, max_batch=args.max_batch),
            args.host,
            args.port,
        )

    from prometheus_client import CollectorRegistry

    from contract.delivery import startup_exit_code
    from contract.service import serve_metrics, stop_on_signals
    from contract.settings import ensure_topics
    from scorer.service import ScorerConfig, run

    try:
        config = ScorerConfig(
            group=args.group,
            model_dir=args.model_dir,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            batch_size=args.batch_size,
            topic_partitions=args.partitions,
        )
        check_port(
            config.metrics_host, config.metrics_port, "--metrics-port"
        )  # before waiting for the broker
    except (ValueError, PortInUse) as exc:
        return fail(exc)
    stop = stop_on_signals("finishing the batches in hand")
    if (code := startup_exit_code(args.startup_timeout, stop)) is not None:
        return code  # stopped while waiting (0), or no broker (2)
    ensure_topics([topics.features, topics.predictions, topics.dlq], args.partitions)
    registry = CollectorRegistry()
    try:
        serve_metrics(registry, config.metrics_host, config.metrics_port)
    except PortInUse as exc:  # taken while we waited for the broker
        return fail(exc)
    return run(config, model, codec, topics, registry, stop)


if __name__ == "__main__":
    sys.exit(main(None))
