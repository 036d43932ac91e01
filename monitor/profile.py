"""`python -m monitor profile`: a first schema for a model, written from its reference file.

The pure core, `profile(frame, options)`, types every column of the reference (held-out rows
with the target and the model's prediction) and returns a `Profile`; `render(profile, ...)`
writes it as a commented schema file (`contract.schema`'s format). `main` reads the file,
checks that the text loads with `load_schema` and that the reference passes `read_reference`
against it, and only then writes it.

Typing rules (each decision a user may want to revisit is a comment in the file):
- floats are numeric; strings and booleans categorical; integers categorical when they take
  few values (a code: 0/1, a rating, a month), numeric otherwise (a count, an amount);
- numeric features get their observed range as information and no `range`: a range refuses
  values outside it (to the DLQ), so a range drawn from the data would hide the drift that
  pushes values past it;
- strings with too many distinct values (ids, free text) and columns with empty values are
  left out with a note, never binned or filled: a chi-square test over hundreds of one-off
  values, or over what a fill made up, measures nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract.artifacts import read_reference, read_table
from contract.schema import (MAX_CATEGORY_LENGTH, PROBABILITY_PREFIX, TASKS, TIMESTAMP_FORMATS, SchemaError, category_text,
                             load_schema)

MAX_INTEGER_CATEGORIES = 20
MAX_CATEGORIES = 100
RARE_SHARE = 0.01  # a category under 1% of the reference rows is pointed out as rare
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProfileError(ValueError):
    """Input that cannot be profiled; the message says what to change."""


@dataclass(frozen=True)
class Options:
    target: str
    prediction: str
    task: str | None = None  # None: inferred from the target
    id: str = "id"
    ts: str = "ts"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    max_integer_categories: int = MAX_INTEGER_CATEGORIES
    max_categories: int = MAX_CATEGORIES
    probabilities_field: str | None = None  # None: "probabilities" when every proba_<class> column is there


@dataclass(frozen=True)
class Column:
    """A feature as profiled: its type, categories or observed range, and notes for the file."""

    name: str
    type: str  # numeric | categorical
    categories: tuple[Any, ...] = ()
    observed: tuple[Any, Any] | None = None
    type_note: str | None = None  # why an integer got its type, and how to change it (above the entry)
    notes: tuple[str, ...] = ()  # what the data says about it (below the entry)


@dataclass(frozen=True)
class Profile:
    task: str
    target: str
    prediction: str
    features: tuple[Column, ...]
    not_features: tuple[tuple[str, str], ...]  # (column, what it is): the id, the event time, probabilities
    left_out: tuple[tuple[str, str], ...]  # (column, why it was left out): a decision the user may revisit
    rows: int
    classes: tuple[Any, ...] = ()
    probabilities: str | None = None  # the messages' probabilities field, when the reference has them
    task_note: str | None = None  # how the task was inferred (None when --task gave it)
    target_observed: tuple[float, float] | None = None  # regression


# -- typing ----------------------------------------------------------------------------------------
def _kind(values: pd.Series) -> str | None:
    """float, integer, boolean or string for the non-empty values of a column; None for other types."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_bool_dtype(values.dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(values.dtype):
        return "integer"
    if pd.api.types.is_float_dtype(values.dtype):
        return "float"
    if pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(values.dtype):
        present = values.dropna().tolist()
        if all(isinstance(v, str) for v in present):
            return "string"
        if all(isinstance(v, (bool, np.bool_)) for v in present):
            return "boolean"
    return None


def _empty(values: pd.Series) -> int:
    """Rows without a value (NaN/None, or an empty string, which no category can be)."""
    missing = values.isna()
    if _kind(values) == "string":
        missing |= values.astype(object).map(lambda v: isinstance(v, str) and not v.strip())
    return int(missing.sum())


def _integral(values: pd.Series) -> bool:
    numbers = values.to_numpy(np.float64)
    return bool(np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)))


def _natives(values: pd.Series, kind: str) -> list[Any]:
    """The values as Python str, int or bool: what a schema lists."""
    convert = {"string": str, "integer": int, "boolean": bool}[kind]
    return [convert(v) for v in values.tolist()]


def _categorical(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    natives = _natives(values, kind)
    counts = Counter(natives)
    categories = tuple(sorted(counts))
    rows, notes = len(natives), []
    rare = [(c, int(counts[c])) for c in categories if counts[c] < RARE_SHARE * rows]
    if rare:
        listed = ", ".join(f"{_scalar(c)} ({n} of {rows} rows)" for c, n in rare[:5])
        notes.append(f"rare in the reference: {listed}" if len(rare) <= 5 else
                     f"rare in the reference: {len(rare)} of {len(categories)} categories each under {RARE_SHARE:.0%} "
                     f"of the rows, e.g. {listed}")
    if len(categories) == 1:
        notes.append("one value in the whole reference: only unseen values can move its drift test")
    return Column(name, "categorical", categories=categories, type_note=type_note, notes=tuple(notes))


def _numeric(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    low, high = values.min(), values.max()
    observed = (int(low), int(high)) if kind == "integer" else (float(low), float(high))
    notes = ("constant in the reference: any other value is drift",) if low == high else ()
    return Column(name, "numeric", observed=observed, type_note=type_note, notes=notes)


def _feature(name: str, values: pd.Series, forced: str | None, options: Options) -> Column | str:
    """The feature, or why the column is left out (a str). ProfileError when a forced type cannot apply."""
    rows = len(values)
    empty = _empty(values)
    if empty:
        if forced:
            raise ProfileError(f"--{forced} {name}: the column is empty in {empty} of {rows} rows: fill or drop those rows")
        return f"empty in {empty} of {rows} rows: fill or drop those rows, then profile again to monitor it"
    kind = _kind(values)
    if kind is None:
        if forced:
            raise ProfileError(f"--{forced} {name}: the column holds {values.dtype} values, not numbers, strings or booleans")
        return f"its values ({values.dtype}) are neither numbers, strings nor booleans"
    if kind == "float" and not np.all(np.isfinite(values.to_numpy(np.float64))):
        bad = int((~np.isfinite(values.to_numpy(np.float64))).sum())
        if forced:
            raise ProfileError(f"--{forced} {name}: the column holds infinite values in {bad} of {rows} rows")
        return f"infinite in {bad} of {rows} rows: fix or drop those rows, then profile again to monitor it"
    distinct = int(values.nunique())
    if forced == "numeric":
        if kind not in ("float", "integer"):
            raise ProfileError(f"--numeric {name}: the column holds {kind} values, not numbers")
        return _numeric(name, values, kind)
    if forced == "categorical":
        if kind == "float" and not _integral(values):
            raise ProfileError(f"--categorical {name}: the column holds fractional numbers ({values.iloc[0]!r}, ...); "
                               "categories are strings, integers or booleans")
        if kind == "string" and values.astype(str).str.len().max() > MAX_CATEGORY_LENGTH:
            raise ProfileError(f"--categorical {name}: some values are longer than {MAX_CATEGORY_LENGTH} characters, "
                               "the longest a category can be")
        return _categorical(name, values, "integer" if kind == "float" else kind)
    if kind == "float":
        return _numeric(name, values, kind)
    if kind == "boolean":
        return _categorical(name, values, kind)
    if kind == "integer":
        if distinct <= options.max_integer_categories:
            return _categorical(name, values, kind, (
                f"integer with {distinct} distinct values: categorical; make it numeric if it is a count or a measure "
                f"(type: numeric without categories, or profile again with --numeric {name})"))
        if distinct == rows:  # an id, most likely: its drift test would flag every new id range
            return _numeric(name, values, kind, (
                f"integer with a different value in every row: numeric; if it is an id, not a measure, delete this entry "
                f"(or profile again with --id {name})"))
        return _numeric(name, values, kind, (
            f"integer with {distinct} distinct values: numeric; make it categorical if it is a code "
            f"(or profile again with --categorical {name})"))
    longest = int(values.astype(str).str.len().max())
    if distinct > options.max_categories or distinct > rows / 2:
        return (f"{distinct} distinct strings in {rows} rows: an id or free text, not a category "
                f"(--categorical {name} keeps it, --max-categories raises the limit of {options.max_categories})")
    if longest > MAX_CATEGORY_LENGTH:
        return f"values up to {longest} characters: free text (a category is at most {MAX_CATEGORY_LENGTH})"
    return _categorical(name, values, kind)


def _task(target: pd.Series, options: Options) -> tuple[str, str | None]:
    if options.task:
        return options.task, None
    kind = _kind(target)
    if kind in ("string", "boolean"):
        return "classification", f"the target holds {kind}s"
    distinct = int(target.nunique())
    if kind == "integer" and distinct <= options.max_integer_categories:
        return "classification", f"the target is an integer with {distinct} distinct values"
    if kind in ("integer", "float"):
        return "regression", f"the target is {'an integer with many values' if kind == 'integer' else 'a float'}"
    raise ProfileError(f"target {options.target!r}: its values ({target.dtype}) are neither numbers, strings nor booleans")


def _classes(frame: pd.DataFrame, options: Options) -> tuple[Any, ...]:
    """The classes seen in the target and the prediction, sorted, all of one kind."""
    kinds, values = set(), []
    for column in (options.target, options.prediction):
        column_values = frame[column]
        kind = _kind(column_values)
        if kind == "float":
            if not _integral(column_values):
                raise ProfileError(f"--task classification: column {column!r} holds fractional numbers "
                                   f"({column_values.iloc[0]!r}, ...), not classes")
            kind = "integer"
        if kind is None:
            raise ProfileError(f"column {column!r}: its values ({column_values.dtype}) are not classes "
                               "(strings, integers or booleans)")
        kinds.add(kind)
        values += _natives(column_values, kind)
    if len(kinds) > 1:
        raise ProfileError(f"the target {options.target!r} and the prediction {options.prediction!r} hold different kinds of "
                           f"classes ({' and '.join(sorted(kinds))}): write both the same way")
    classes = tuple(sorted(set(values)))
    if len(classes) < 2:
        raise ProfileError(f"the target and prediction columns hold one class ({_scalar(classes[0])}): a classifier needs 2")
    if any(isinstance(c, str) and len(c) > MAX_CATEGORY_LENGTH for c in classes):
        raise ProfileError(f"a class is longer than {MAX_CATEGORY_LENGTH} characters")
    return classes


def profile(frame: pd.DataFrame, options: Options) -> Profile:
    """Type every column of a reference frame. ProfileError for input that cannot make a schema."""
    columns = list(map(str, frame.columns))
    frame = frame.set_axis(columns, axis=1)
    for flag, column in (("--target", options.target), ("--prediction", options.prediction)):
        if column not in columns:
            raise ProfileError(f"{flag} {column}: no such column; the file has {', '.join(columns[:20])}")
    if options.target == options.prediction:
        raise ProfileError("--target and --prediction name the same column: the reference needs both the label and "
                           "the model's prediction")
    if options.task is not None and options.task not in TASKS:
        raise ProfileError(f"--task {options.task}: use regression or classification")
    for column in (options.target, options.prediction):
        empty = _empty(frame[column])
        if empty:
            raise ProfileError(f"column {column!r} is empty in {empty} of {len(frame)} rows: drop those rows")
    task, task_note = _task(frame[options.target], options)
    classes: tuple[Any, ...] = ()
    target_observed = None
    if task == "classification":
        classes = _classes(frame, options)
    else:
        for column in (options.target, options.prediction):
            if _kind(frame[column]) not in ("float", "integer"):
                raise ProfileError(f"--task regression: column {column!r} holds {_kind(frame[column]) or frame[column].dtype} "
                                   "values, not numbers (use --task classification for classes)")
        target = frame[options.target].to_numpy(np.float64)
        target_observed = (float(target.min()), float(target.max()))

    probability_columns = {f"{PROBABILITY_PREFIX}{category_text(c)}" for c in classes}
    # Columns that are not features; the target and prediction need no note in the file.
    not_features = {options.id: "the record id (--id)", options.ts: "the event time (--ts)",
                    options.target: None, options.prediction: None}
    if task == "classification":
        not_features |= {c: "a class probability" if c in probability_columns else "a probability column of no known class"
                         for c in columns if c.startswith(PROBABILITY_PREFIX)}
    forced = {**{c: "categorical" for c in options.categorical}, **{c: "numeric" for c in options.numeric}}
    both = sorted(set(options.categorical) & set(options.numeric))
    if both:
        raise ProfileError(f"{both[0]} is given to both --categorical and --numeric: keep one")
    for column, kind in forced.items():
        if column not in columns:
            raise ProfileError(f"--{kind} {column}: no such column; the file has {', '.join(columns[:20])}")
        if column in not_features:
            what = {options.target: "the target (a model cannot take its label as input)",
                    options.prediction: "the prediction"}.get(column) or not_features[column]
            raise ProfileError(f"--{kind} {column}: that column is {what}, not a feature")

    features, left_out = [], []
    for column in columns:
        if column in not_features:
            continue
        result = _feature(column, frame[column], forced.get(column), options)
        if isinstance(result, str):
            left_out.append((column, result))
        else:
            features.append(result)
    if not features:
        raise ProfileError("no column is left as a feature: " + ("; ".join(f"{c}: {why}" for c, why in left_out)
                                                               or "the file holds only the target, prediction, id and time"))

    probabilities = None
    if task == "classification" and probability_columns <= set(columns):
        probabilities = options.probabilities_field or "probabilities"
    elif options.probabilities_field:
        missing = sorted(probability_columns - set(columns)) if task == "classification" else []
        why = f"the reference has no column {missing[0]!r}" if missing else "only a classifier has probabilities"
        raise ProfileError(f"--probabilities-field {options.probabilities_field}: {why}")
    return Profile(task=task, target=options.target, prediction=options.prediction, features=tuple(features),
                   not_features=tuple((c, not_features[c]) for c in columns if not_features.get(c)),
                   left_out=tuple(left_out), rows=len(frame), classes=classes, probabilities=probabilities,
                   task_note=task_note, target_observed=target_observed)


# -- the schema file -------------------------------------------------------------------------------
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}  # plain, some YAML reads them as non-strings


def _name(text: str) -> str:
    """A field or column name: plain when YAML reads it back as that string, else quoted."""
    return text if _PLAIN.match(text) and text.lower() not in _YAML_WORDS else json.dumps(text, ensure_ascii=False)


def _scalar(value: Any) -> str:
    """A category, class or bound; strings always quoted, so no, yes and 1.0 stay strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        # PyYAML reads 1e-05 as a string: a float needs a dot in its mantissa.
        return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text
    return json.dumps(str(value), ensure_ascii=False)


def _flow(key: str, values: tuple[Any, ...], indent: int, width: int = 100) -> list[str]:
    """`key: [a, b, ...]`, wrapped onto indented lines when long."""
    lines, line = [], f"{' ' * indent}{key}: ["
    for i, value in enumerate(values):
        item = _scalar(value) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item) > width and not line.endswith("["):
            lines.append(line.rstrip())
            line = " " * (indent + 2)
        line += item
    return lines + [line]


def default_name(path: Path) -> str:
    """The file's stem as a model name ([A-Za-z0-9_.:-], at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", path.stem).strip("_")[:64] or "model"


def render(result: Profile, name: str, source: str, today: dt.date, timestamp_format: str = "epoch_ms",
           id_field: str = "id", ts_field: str = "ts", prediction_field: str = "prediction",
           features_field: str | None = "features", label_target_field: str | None = None) -> str:
    """The schema file: a header saying where it came from, then every key, commented where a
    decision was made from the data."""
    lines = [f"# Schema of model {name}, written by `python -m monitor profile` from {source} ({result.rows} rows)",
             f"# on {today.isoformat()}. Every key is documented in the README (\"Schema format\"). Review it: types,",
             "# categories and ranges come from the data, not from the model."]
    if result.task_note:
        lines.append(f"# task: inferred ({result.task_note}); --task changes it.")
    if result.left_out:
        lines += ["#", "# Left out:"] + [f"#   {column}: {why}" for column, why in result.left_out]
    if result.not_features:
        lines += ["#", "# Not features:"] + [f"#   {column}: {what}" for column, what in result.not_features]
    lines += [f"name: {_name(name)}", f"task: {result.task}", f"target: {_name(result.target)}"]
    if result.task == "classification":
        lines += _flow("classes", result.classes, 0)
        lines[-1] += "  # from the target and prediction columns"
    elif result.target_observed:
        low, high = result.target_observed
        suggestion = "{ge: 0}" if low >= 0 else "{ge: <lowest possible>, le: <highest possible>}"
        lines.append(f"# target_range: {suggestion}  # optional: labels outside go to the DLQ; observed "
                     f"[{_scalar(low)}, {_scalar(high)}]")
    lines += [f"prediction: {_name(result.prediction)}  # the reference file's column of predictions", "features:"]
    for feature in result.features:
        if feature.type_note:
            lines.append(f"  # {feature.type_note}")
        lines += [f"  - name: {_name(feature.name)}", f"    type: {feature.type}"]
        if feature.type == "categorical":
            lines += _flow("categories", feature.categories, 4)
        else:
            low, high = feature.observed
            lines.append(f"    observed: [{_scalar(low)}, {_scalar(high)}]  # min and max in the reference (information only)")
            lines.append("    # range: {ge: 0}  # optional, if it can never be negative: values outside go to the DLQ, "
                         "not to the drift test" if low >= 0 else
                         "    # range: {ge: <lowest possible>, le: <highest possible>}  # optional: values outside go to the "
                         "DLQ, not to the drift test, so bound only the impossible")
        lines += [f"    # {note}" for note in feature.notes]
    lines += ["messages:  # where fields sit in prediction messages (the scorer's output or any inference log)",
              f"  id: {_name(id_field)}",
              f"  timestamp: {_name(ts_field)}",
              f"  timestamp_format: {timestamp_format}  # epoch_ms (integer) or iso8601 (string)",
              f"  prediction: {_name(prediction_field)}"]
    if result.probabilities:
        lines.append(f"  probabilities: {_name(result.probabilities)}  # an object {{\"<class>\": probability, ...}}")
    features = _name(features_field) if features_field else "null"
    lines += [f"  features: {features}  # the object holding the features; null: top-level fields",
              "labels:  # label messages: {id, timestamp, target}",
              f"  id: {_name(id_field)}",
              f"  timestamp: {_name(ts_field)}",
              f"  target: {_name(label_target_field or result.target)}"]
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------------
def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `profile` subcommand on the monitor's subparsers."""
    parser = subparsers.add_parser(
        "profile", help="write a schema for your model from its reference file",
        description="Write a schema (YAML) from a reference file: held-out rows with the features, the target, the model's "
        "prediction and, for a classifier, optional proba_<class> columns. Floats become numeric features; strings and "
        "booleans categorical; integers categorical when they take few values. Ids, free text and columns with empty values "
        "are left out with a note. Review the file before use.")
    parser.add_argument("reference", type=Path, metavar="REFERENCE", help="CSV or Parquet file")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="SCHEMA.yaml", help="schema file to write")
    parser.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    parser.add_argument("--target", required=True, metavar="COL", help="column of the label (and the label messages' field)")
    parser.add_argument("--prediction", required=True, metavar="COL", help="column of the model's prediction")
    parser.add_argument("--task", choices=TASKS,
                        help="default: classification for a string, boolean or few-valued integer target")
    parser.add_argument("--name", help="model name, the `model` label of every series (default: the file's stem)")
    parser.add_argument("--id", default="id", metavar="FIELD",
                        help="messages' record-id field; a column of that name is not a feature (default: id)")
    parser.add_argument("--ts", default="ts", metavar="FIELD",
                        help="messages' event-time field; a column of that name is not a feature (default: ts)")
    parser.add_argument("--categorical", action="append", type=_names, default=[], metavar="COL,...",
                        help="make these columns categorical (repeatable)")
    parser.add_argument("--numeric", action="append", type=_names, default=[], metavar="COL,...",
                        help="make these columns numeric (repeatable)")
    parser.add_argument("--max-integer-categories", type=int, default=MAX_INTEGER_CATEGORIES, metavar="N",
                        help="an integer column with at most N distinct values is categorical "
                        f"(default: {MAX_INTEGER_CATEGORIES})")
    parser.add_argument("--max-categories", type=int, default=MAX_CATEGORIES, metavar="N",
                        help="a string column with more distinct values (or more than half its rows distinct) is left out "
                        f"(default: {MAX_CATEGORIES})")
    layout = parser.add_argument_group("message layout (default: the scorer's)")
    layout.add_argument("--timestamp-format", choices=TIMESTAMP_FORMATS, default="epoch_ms",
                        help="how messages write the event time (default: epoch_ms)")
    layout.add_argument("--features-field", default="features", metavar="FIELD",
                        help='object holding the features in prediction messages; "" for top-level fields '
                        "(default: features)")
    layout.add_argument("--top-level-features", action="store_true", help='features are top-level fields (--features-field "")')
    layout.add_argument("--prediction-field", default="prediction", metavar="FIELD",
                        help="prediction messages' prediction field (default: prediction)")
    layout.add_argument("--probabilities-field", metavar="FIELD",
                        help="prediction messages' class-probability object (default: probabilities, when the reference has "
                        "a proba_<class> column for every class)")
    layout.add_argument("--label-target-field", metavar="FIELD", help="label messages' field of the label (default: --target)")
    return parser


def _options(args: argparse.Namespace) -> Options:
    return Options(target=args.target, prediction=args.prediction, task=args.task, id=args.id, ts=args.ts,
                   categorical=tuple(c for group in args.categorical for c in group),
                   numeric=tuple(c for group in args.numeric for c in group),
                   max_integer_categories=args.max_integer_categories, max_categories=args.max_categories,
                   probabilities_field=args.probabilities_field)


def main(args: argparse.Namespace) -> int:
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
    if args.top_level_features and args.features_field not in ("", "features"):
        raise ProfileError(f"--top-level-features and --features-field {args.features_field}: give one")
    features_field = None if args.top_level_features or args.features_field == "" else args.features_field
    name = args.name if args.name is not None else default_name(args.reference)
    if not _NAME.match(name):
        raise ProfileError(f"--name {name!r}: use 1-64 letters, digits or _.:- (it labels every drift series)")
    for flag in ("max_integer_categories", "max_categories"):
        if getattr(args, flag) < 1:
            raise ProfileError(f"--{flag.replace('_', '-')} must be at least 1")

    result = profile(read_table(args.reference), _options(args))
    text = render(result, name, str(args.reference), dt.date.today(), args.timestamp_format, args.id, args.ts,
                  args.prediction_field, features_field, args.label_target_field)
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
        task = f"classification, {len(result.classes)} classes" + (", probabilities" if result.probabilities else "")
    if result.task_note:
        task += ", inferred"
    left = f"; left out: {', '.join(c for c, _ in result.left_out)}" if result.left_out else ""
    return (f"wrote {output}: model {name} ({task}), {len(result.features)} features ({numeric} numeric, "
            f"{len(result.features) - numeric} categorical) from {result.rows} rows{left}")
