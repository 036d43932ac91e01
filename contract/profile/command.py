"""`python -m monitor profile`: the command line around `profile` and `render`.

It reads the reference, profiles it, renders the schema, checks that the text loads with
`load_schema` and that the reference passes `read_reference` against it, and only then writes
the file. Bad input exits 2 with one line naming what to change."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from contract.artifacts import read_reference, read_table
from contract.formats.layout import FORMATS
from contract.profile.columns import profile
from contract.profile.model import (
    LAYOUTS,
    MAX_CATEGORIES,
    MAX_INTEGER_CATEGORIES,
    Options,
    Profile,
    ProfileError,
)
from contract.profile.text import default_name, message_layout, render
from contract.schema import TASKS, TIMESTAMP_FORMATS, SchemaError
from contract.schema_file import load_schema

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `profile` subcommand on the monitor's subparsers."""
    parser = subparsers.add_parser(
        "profile",
        help="write a schema for your model from its reference file",
        description="Write a schema (YAML) from a reference file: held-out rows with the features, "
        "the target, the model's prediction and, for a classifier, optional proba_<class> columns. "
        "Floats become numeric features; strings and booleans categorical; integers categorical "
        "when they take few values. Ids, free text and columns with empty values are left out "
        "with a note. Review the file before use.",
    )
    parser.add_argument("reference", type=Path, metavar="REFERENCE", help="CSV or Parquet file")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="SCHEMA.yaml",
        help="schema file to write",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the output file if it exists"
    )
    parser.add_argument(
        "--target",
        required=True,
        metavar="COL",
        help="column of the label (and the label messages' field)",
    )
    parser.add_argument(
        "--prediction", required=True, metavar="COL", help="column of the model's prediction"
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="default: classification for a string, boolean or few-valued integer target",
    )
    parser.add_argument(
        "--name", help="model name, the `model` label of every series (default: the file's stem)"
    )
    parser.add_argument(
        "--id",
        default="id",
        metavar="FIELD",
        help="messages' record-id field; a column of that name is not a feature (default: id)",
    )
    parser.add_argument(
        "--ts",
        default="ts",
        metavar="FIELD",
        help="messages' event-time field; a column of that name is not a feature (default: ts)",
    )
    parser.add_argument(
        "--categorical",
        action="append",
        type=_names,
        default=[],
        metavar="COL,...",
        help="make these columns categorical (repeatable)",
    )
    parser.add_argument(
        "--numeric",
        action="append",
        type=_names,
        default=[],
        metavar="COL,...",
        help="make these columns numeric (repeatable)",
    )
    parser.add_argument(
        "--max-integer-categories",
        type=int,
        default=MAX_INTEGER_CATEGORIES,
        metavar="N",
        help="an integer column with at most N distinct values is categorical "
        f"(default: {MAX_INTEGER_CATEGORIES})",
    )
    parser.add_argument(
        "--max-categories",
        type=int,
        default=MAX_CATEGORIES,
        metavar="N",
        help="a string column with more distinct values (or more than half its rows distinct) is left out "
        f"(default: {MAX_CATEGORIES})",
    )
    parser.add_argument(
        "--probabilities",
        type=_names,
        default=[],
        metavar="COL[,COL...]",
        help="a classifier's probability columns: one for a binary model (its positive class's, found "
        "from the predictions) or one per class with the class in the name (default: proba_<class> "
        "columns, else columns named like a probability holding values in [0, 1])",
    )
    layout = parser.add_argument_group(
        "message layout",
        "Default: our scorer's messages when --prediction is `prediction` (what `scorer reference` "
        "writes), else one flat object per prediction with fields named as the reference's columns (another system's "
        "log written like its reference). The flags below move single fields.",
    )
    layout.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="scorer: {id, ts, prediction, probabilities: {class: p}, "
        "features: {...}}; columns: top-level fields named as the reference's columns",
    )
    layout.add_argument(
        "--format",
        choices=FORMATS,
        default="json",
        help="the inference log's format: json (one object per prediction), avro (the same fields "
        "in Avro, Schema Registry framing), or a serving system's requests and responses: oip-v2 "
        "(MLServer's Kafka mode), kserve-cloudevents (KServe's logger), seldon-v2 (Seldon Core 2); "
        "writes that format's messages block, its topics to check (docs/serving.md)",
    )
    layout.add_argument(
        "--timestamp-format",
        choices=TIMESTAMP_FORMATS,
        help="how messages write the event time (default: inferred from the --ts column's values; "
        "epoch_ms when the reference has no such column)",
    )
    layout.add_argument(
        "--features-field",
        metavar="FIELD",
        help='object holding the features in prediction messages; "" for top-level fields (default: '
        "the layout's: features, or top-level fields)",
    )
    layout.add_argument(
        "--top-level-features", action="store_true", help="features are top-level fields"
    )
    layout.add_argument(
        "--prediction-field",
        metavar="FIELD",
        help="prediction messages' prediction field (default: the layout's: prediction, or the column's name)",
    )
    layout.add_argument(
        "--probabilities-field",
        metavar="FIELD",
        help="the scorer layout's class-probability object (default: probabilities); a column of the "
        "reference here is taken as --probabilities",
    )
    layout.add_argument(
        "--label-target-field",
        metavar="FIELD",
        help="label messages' field of the label (default: --target)",
    )
    return parser


def _options(args: argparse.Namespace, columns: list[str]) -> Options:
    probabilities = tuple(args.probabilities)
    if (
        args.probabilities_field in columns and not probabilities
    ):  # a column named where a field was asked for
        probabilities = (args.probabilities_field,)
    return Options(
        target=args.target,
        prediction=args.prediction,
        task=args.task,
        id=args.id,
        ts=args.ts,
        categorical=tuple(c for group in args.categorical for c in group),
        numeric=tuple(c for group in args.numeric for c in group),
        max_integer_categories=args.max_integer_categories,
        max_categories=args.max_categories,
        probabilities=probabilities,
        timestamp_format=args.timestamp_format,
    )


def command(args: argparse.Namespace) -> int:
    """Profile args.reference and write args.output; 2 with one line on stderr for bad input."""
    try:
        return _run(args)
    except (ProfileError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.exists() and not args.force:
        raise ProfileError(f"{output} exists: pass --force to overwrite it, or choose another -o")
    if not output.parent.is_dir():
        raise ProfileError(f"-o {output}: no directory {output.parent}")
    if args.top_level_features and args.features_field not in (None, ""):
        raise ProfileError(
            f"--top-level-features and --features-field {args.features_field}: give one"
        )
    features_field = (
        "" if args.top_level_features else args.features_field
    )  # "": top level; None: the layout's
    name = args.name if args.name is not None else default_name(args.reference)
    if not _NAME.match(name):
        raise ProfileError(
            f"--name {name!r}: use 1-64 letters, digits or _.:- (it labels every drift series)"
        )
    for flag in ("max_integer_categories", "max_categories"):
        if getattr(args, flag) < 1:
            raise ProfileError(f"--{flag.replace('_', '-')} must be at least 1")

    frame = read_table(args.reference)
    options = _options(args, list(map(str, frame.columns)))
    result = profile(frame, options)
    if (
        args.probabilities_field
        and args.probabilities_field not in options.probabilities
        and not result.probabilities
    ):
        why = (
            "only a classifier has probabilities"
            if result.task != "classification"
            else "the reference has no probability columns (proba_<class>, or --probabilities)"
        )
        raise ProfileError(f"--probabilities-field {args.probabilities_field}: {why}")
    probabilities_field = (
        None if args.probabilities_field in options.probabilities else args.probabilities_field
    )
    messages = message_layout(
        result,
        options,
        args.layout,
        features_field,
        args.prediction_field,
        probabilities_field,
        args.label_target_field,
    )
    text = render(result, name, str(args.reference), dt.date.today(), messages, args.format)
    # Check before writing: the text loads as a schema, and the reference passes against it.
    with tempfile.TemporaryDirectory() as scratch:
        draft = Path(scratch) / output.name
        draft.write_text(text)
        try:
            schema = load_schema(draft)
            read_reference(args.reference, schema)
        except SchemaError as exc:
            raise SchemaError(str(exc).replace(str(draft), str(output))) from None
    try:
        with open(output, "w" if args.force else "x") as handle:
            handle.write(text)
    except OSError as exc:
        raise ProfileError(f"cannot write {output}: {exc.strerror or exc}") from None

    for column, why in result.left_out:
        print(f"note: column {column} left out: {why}", file=sys.stderr)
    print(summary(result, name, output))
    return 0


def summary(result: Profile, name: str, output: Path) -> str:
    """The one line printed after writing."""
    numeric = sum(f.type == "numeric" for f in result.features)
    task = "regression"
    if result.task == "classification":
        task = f"classification, {len(result.classes)} classes" + (
            ", probabilities" if result.probabilities else ""
        )
    if result.task_note:
        task += ", inferred"
    left = f"; left out: {', '.join(c for c, _ in result.left_out)}" if result.left_out else ""
    return (
        f"wrote {output}: model {name} ({task}), {len(result.features)} features ({numeric} numeric, "
        f"{len(result.features) - numeric} categorical) from {result.rows} rows{left}"
    )
