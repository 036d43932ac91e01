"""`profile(frame, options)`: every column of a reference typed, the model's outputs found, the
event time read (the package doc states the rules). Pure: a frame in, a `Profile` out, or a
`ProfileError` saying what to change."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from contract.profile.model import (
    RARE_SHARE,
    Column,
    Options,
    Profile,
    ProfileError,
    empty_rows,
    integral,
    kind_of,
    natives,
    scalar,
)
from contract.profile.outputs import classes_of, probabilities_of, task_of, timestamp_format_of
from contract.rules import MAX_CATEGORY_LENGTH
from contract.schema import PROBABILITY_PREFIX, TASKS


# -- features ----------------------------------------------------------------------------------------
def categorical(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    values_ = natives(values, kind)
    counts = Counter(values_)
    categories = tuple(sorted(counts))
    rows, notes = len(values_), []
    rare = [(c, int(counts[c])) for c in categories if counts[c] < RARE_SHARE * rows]
    if rare:
        listed = ", ".join(f"{scalar(c)} ({n} of {rows} rows)" for c, n in rare[:5])
        notes.append(
            f"rare in the reference: {listed}"
            if len(rare) <= 5
            else f"rare in the reference: {len(rare)} of {len(categories)} categories each under {RARE_SHARE:.0%} "
            f"of the rows, e.g. {listed}"
        )
    if len(categories) == 1:
        notes.append("one value in the whole reference: only unseen values can move its drift test")
    return Column(
        name, "categorical", categories=categories, type_note=type_note, notes=tuple(notes)
    )


def numeric(name: str, values: pd.Series, kind: str, type_note: str | None = None) -> Column:
    low, high = values.min(), values.max()
    observed = (int(low), int(high)) if kind == "integer" else (float(low), float(high))
    notes = ("constant in the reference: any other value is drift",) if low == high else ()
    return Column(name, "numeric", observed=observed, type_note=type_note, notes=notes)


def feature_of(name: str, values: pd.Series, forced: str | None, options: Options) -> Column | str:
    """The feature, or why the column is left out (a str). ProfileError when a forced type cannot apply."""
    rows = len(values)
    empty = empty_rows(values)
    if empty:
        if forced:
            raise ProfileError(
                f"--{forced} {name}: the column is empty in {empty} of {rows} rows: fill or drop those rows"
            )
        return f"empty in {empty} of {rows} rows: fill or drop those rows, then profile again to monitor it"
    kind = kind_of(values)
    if kind is None:
        if forced:
            raise ProfileError(
                f"--{forced} {name}: the column holds {values.dtype} values, not numbers, strings or booleans"
            )
        return f"its values ({values.dtype}) are neither numbers, strings nor booleans"
    if kind == "float" and not np.all(np.isfinite(values.to_numpy(np.float64))):
        bad = int((~np.isfinite(values.to_numpy(np.float64))).sum())
        if forced:
            raise ProfileError(
                f"--{forced} {name}: the column holds infinite values in {bad} of {rows} rows"
            )
        return f"infinite in {bad} of {rows} rows: fix or drop those rows, then profile again to monitor it"
    distinct = int(values.nunique())
    if forced == "numeric":
        if kind not in ("float", "integer"):
            raise ProfileError(f"--numeric {name}: the column holds {kind} values, not numbers")
        return numeric(name, values, kind)
    if forced == "categorical":
        if kind == "float" and not integral(values):
            raise ProfileError(
                f"--categorical {name}: the column holds fractional numbers ({values.iloc[0]!r}, ...); "
                "categories are strings, integers or booleans"
            )
        if kind == "string" and values.astype(str).str.len().max() > MAX_CATEGORY_LENGTH:
            raise ProfileError(
                f"--categorical {name}: some values are longer than {MAX_CATEGORY_LENGTH} characters, "
                "the longest a category can be"
            )
        return categorical(name, values, "integer" if kind == "float" else kind)
    if kind == "float":
        return numeric(name, values, kind)
    if kind == "boolean":
        return categorical(name, values, kind)
    if kind == "integer":
        if distinct <= options.max_integer_categories:
            return categorical(
                name,
                values,
                kind,
                (
                    f"integer with {distinct} distinct values: categorical; "
                    "make it numeric if it is a count or a measure "
                    f"(type: numeric without categories, or profile again with --numeric {name})"
                ),
            )
        if distinct == rows:  # an id, most likely: its drift test would flag every new id range
            return numeric(
                name,
                values,
                kind,
                (
                    "integer with a different value in every row: numeric; "
                    "if it is an id, not a measure, delete this entry "
                    f"(or profile again with --id {name})"
                ),
            )
        return numeric(
            name,
            values,
            kind,
            (
                f"integer with {distinct} distinct values: numeric; make it categorical if it is a code "
                f"(or profile again with --categorical {name})"
            ),
        )
    longest = int(values.astype(str).str.len().max())
    if distinct > options.max_categories or distinct > rows / 2:
        return (
            f"{distinct} distinct strings in {rows} rows: an id or free text, not a category "
            f"(--categorical {name} keeps it, --max-categories raises the limit of {options.max_categories})"
        )
    if longest > MAX_CATEGORY_LENGTH:
        return f"values up to {longest} characters: free text (a category is at most {MAX_CATEGORY_LENGTH})"
    return categorical(name, values, kind)


def profile(frame: pd.DataFrame, options: Options) -> Profile:
    """Type every column of a reference frame. ProfileError for input that cannot make a schema."""
    columns = list(map(str, frame.columns))
    frame = frame.set_axis(columns, axis=1)
    for flag, column in (("--target", options.target), ("--prediction", options.prediction)):
        if column not in columns:
            raise ProfileError(
                f"{flag} {column}: no such column; the file has {', '.join(columns[:20])}"
            )
    if options.target == options.prediction:
        raise ProfileError(
            "--target and --prediction name the same column: the reference needs both the label and "
            "the model's prediction"
        )
    if options.task is not None and options.task not in TASKS:
        raise ProfileError(f"--task {options.task}: use regression or classification")
    for column in (options.target, options.prediction):
        empty = empty_rows(frame[column])
        if empty:
            raise ProfileError(
                f"column {column!r} is empty in {empty} of {len(frame)} rows: drop those rows"
            )
    task, task_note = task_of(frame[options.target], frame[options.prediction], options)
    classes: tuple[Any, ...] = ()
    target_observed = None
    if task == "classification":
        classes = classes_of(frame, options)
    else:
        for column in (options.target, options.prediction):
            if kind_of(frame[column]) not in ("float", "integer"):
                raise ProfileError(
                    f"--task regression: column {column!r} holds {kind_of(frame[column]) or frame[column].dtype} "
                    "values, not numbers (use --task classification for classes)"
                )
        target = frame[options.target].to_numpy(np.float64)
        target_observed = (float(target.min()), float(target.max()))

    for column in options.probabilities:
        if column not in columns:
            raise ProfileError(
                f"--probabilities {column}: no such column; the file has {', '.join(columns[:20])}"
            )
    if options.probabilities and task != "classification":
        raise ProfileError(
            f"--probabilities {','.join(options.probabilities)}: only a classifier has probabilities"
        )
    probabilities, probability_note, looks_like = ((), None, ())
    if task == "classification":
        probabilities, probability_note, looks_like = probabilities_of(frame, classes, options)
    timestamp_format, timestamp_note = timestamp_format_of(frame, options)
    # Columns that are not features; the target and prediction need no note in the file.
    not_features = {
        options.id: "the record id (--id)",
        options.ts: "the event time (--ts)",
        options.target: None,
        options.prediction: None,
    }
    for cls, column in probabilities:
        not_features[column] = f"the probability of class {scalar(cls)}"
    for column in looks_like:
        not_features.setdefault(
            column,
            "looks like a class probability (name and values in [0, 1]) of no class "
            "found: --probabilities names the columns",
        )
    if task == "classification":
        not_features |= {
            c: "a probability column of no known class"
            for c in columns
            if c.startswith(PROBABILITY_PREFIX) and c not in not_features
        }
    forced = {
        **{c: "categorical" for c in options.categorical},
        **{c: "numeric" for c in options.numeric},
    }
    both = sorted(set(options.categorical) & set(options.numeric))
    if both:
        raise ProfileError(f"{both[0]} is given to both --categorical and --numeric: keep one")
    for column, kind in forced.items():
        if column not in columns:
            raise ProfileError(
                f"--{kind} {column}: no such column; the file has {', '.join(columns[:20])}"
            )
        if column in not_features:
            what = {
                options.target: "the target (a model cannot take its label as input)",
                options.prediction: "the prediction",
            }.get(column) or not_features[column]
            raise ProfileError(f"--{kind} {column}: that column is {what}, not a feature")

    features, left_out = [], []
    for column in columns:
        if column in not_features:
            continue
        result = feature_of(column, frame[column], forced.get(column), options)
        if isinstance(result, str):
            left_out.append((column, result))
        else:
            features.append(result)
    if not features:
        raise ProfileError(
            "no column is left as a feature: "
            + (
                "; ".join(f"{c}: {why}" for c, why in left_out)
                or "the file holds only the target, prediction, id and time"
            )
        )

    return Profile(
        task=task,
        target=options.target,
        prediction=options.prediction,
        features=tuple(features),
        not_features=tuple((c, not_features[c]) for c in columns if not_features.get(c)),
        left_out=tuple(left_out),
        rows=len(frame),
        classes=classes,
        probabilities=probabilities,
        probability_note=probability_note,
        task_note=task_note,
        target_observed=target_observed,
        timestamp_format=timestamp_format,
        timestamp_note=timestamp_note,
    )
