"""`python -m scorer reference`: a model's reference file from labelled held-out rows.

The monitor compares the stream against a reference: rows the model never trained on, with their
label and the model's own prediction (and, for a classifier, its class probabilities). This
writes one from a user's held-out file, so nobody computes predictions by hand; it needs only the
model (the schema is written afterwards from this file, by `python -m monitor profile`).
Columns: the features, the target, `prediction`, and `proba_<class>` per class for a classifier
with predict_proba (the class's text: `proba_yes`, `proba_3`, `proba_true`); then any columns asked
for with `keep` (an id or event-time column for `monitor profile --id/--ts`). Other columns of the
held-out file are left out: `monitor profile` would take each for a feature the model never reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract.artifacts import REFERENCE_FILE, TABLE_SUFFIXES, read_table
from contract.rules import category_text
from contract.schema import PROBABILITY_PREFIX, SchemaError
from scorer.model import load

PREDICTION_COLUMN = "prediction"


class ReferenceError(ValueError):
    """Held-out rows that cannot become a reference; the message says what to change."""


def reference_frame(
    model: Any, rows: pd.DataFrame, features: Sequence[str], target: str, keep: Sequence[str] = ()
) -> pd.DataFrame:
    """The features and target of `rows`, the model's prediction and (classifiers with predict_proba)
    one probability column per class, in the model's class order; then the `keep` columns."""
    inputs = rows[list(features)]
    out = rows[[*features, target]].reset_index(drop=True)
    try:
        out[PREDICTION_COLUMN] = model.predict(inputs)
        classes = getattr(model, "classes_", None)
        if classes is not None and hasattr(model, "predict_proba"):
            probabilities = np.asarray(model.predict_proba(inputs), dtype=float)
            for i, cls in enumerate(np.asarray(classes).tolist()):
                out[PROBABILITY_PREFIX + category_text(cls)] = probabilities[:, i]
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, the user's rows are the cause to name
        raise ReferenceError(
            f"the model cannot predict these rows: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    for column in keep:
        out[column] = rows[column].to_numpy()
    return out


@dataclass(frozen=True)
class Written:
    path: Path
    rows: int
    features: tuple[str, ...]
    target: str
    extra: tuple[str, ...]  # prediction and probability columns
    kept: tuple[str, ...]
    error: str  # held-out MSE or error rate, for the summary

    def summary(self) -> str:
        kept = f"; kept {', '.join(self.kept)}" if self.kept else ""
        return (
            f"wrote {self.path}: {self.rows:,} rows; features {', '.join(self.features)}; target {self.target}; "
            f"{', '.join(self.extra)}{kept}; {self.error}"
        )


def feature_columns(model: Any, columns: Sequence[str], target: str) -> tuple[str, ...]:
    """The model's `feature_names_in_` (what it was fitted on) when it has them, else every column but the target."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return tuple(c for c in columns if c != target)
    names = tuple(map(str, names))
    missing = [n for n in names if n not in columns]
    if missing:
        raise ReferenceError(
            f"no column {missing[0]!r}, which the model was fitted on (features: {', '.join(names)})"
        )
    if target in names:
        raise ReferenceError(
            f"the target {target!r} is one of the model's features: name the label column with --target"
        )
    return names


def write_reference(
    model_dir: Path, heldout: Path, target: str, out: Path | None = None, keep: Sequence[str] = ()
) -> Written:
    """Read held-out rows, predict them with MODEL_DIR's model, write the reference (CSV or Parquet
    by `out`'s suffix; default MODEL_DIR/reference.csv). ReferenceError or ModelError on bad input."""
    out = Path(out) if out is not None else Path(model_dir) / REFERENCE_FILE
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise ReferenceError(f"-o {out}: write the reference as .csv or .parquet")
    if not Path(heldout).is_file():
        raise ReferenceError(
            f"no held-out file {heldout}: give a CSV or Parquet file of labelled rows the model never trained on"
        )
    model = load(model_dir)
    try:
        rows = read_table(heldout)
    except SchemaError as exc:
        raise ReferenceError(str(exc)) from None
    columns = [str(c) for c in rows.columns]
    if target not in columns:
        raise ReferenceError(
            f"{heldout} has no column {target!r} (--target): it has {', '.join(columns[:20])}"
        )
    features = feature_columns(model.pipeline, columns, target)
    if not features:
        raise ReferenceError(
            f"{heldout} has no column but the target {target!r}: the model's features are missing"
        )
    taken = [c for c in features if c == PREDICTION_COLUMN or c.startswith(PROBABILITY_PREFIX)]
    if taken:
        raise ReferenceError(
            f"feature {taken[0]!r} has the name of a reference column the scorer writes: rename it"
        )
    absent = [c for c in keep if c not in columns]
    if absent:
        raise ReferenceError(
            f"{heldout} has no column {absent[0]!r} (--keep): it has {', '.join(columns[:20])}"
        )
    keep = tuple(c for c in dict.fromkeys(keep) if c not in (*features, target))
    clash = [c for c in keep if c == PREDICTION_COLUMN or c.startswith(PROBABILITY_PREFIX)]
    if clash:
        raise ReferenceError(
            f"--keep {clash[0]}: the scorer writes a column of that name; rename it in the held-out file"
        )
    needed = rows[[*features, target]]
    empty = needed.isna().sum()
    if empty.any():
        column = empty[empty > 0].index[0]
        raise ReferenceError(
            f"{heldout}: column {column!r} is empty in {int(empty[column])} of {len(rows)} rows: "
            "drop or fill them (a reference has no empty values)"
        )
    if len(rows) < 2:
        raise ReferenceError(f"{heldout}: a reference needs at least 2 rows, it has {len(rows)}")
    frame = reference_frame(model.pipeline, rows, features, target, keep)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    except (OSError, ValueError, ImportError) as exc:
        raise ReferenceError(f"cannot write {out}: {exc}") from None
    classifier = getattr(model.pipeline, "classes_", None) is not None
    extra = tuple(frame.columns[len(features) + 1 : len(frame.columns) - len(keep)])
    return Written(
        out, len(frame), features, target, extra, keep, heldout_error(frame, target, classifier)
    )


def heldout_error(frame: pd.DataFrame, target: str, classifier: bool) -> str:
    """Held-out MSE (a regressor) or error rate (a classifier), in words."""
    predictions, labels = frame[PREDICTION_COLUMN], frame[target]
    if not classifier:
        errors = pd.to_numeric(labels, errors="coerce").to_numpy(float) - predictions.to_numpy(
            float
        )
        return f"held-out MSE {float(np.nanmean(errors**2)):,.4g}"
    wrong = np.mean(
        [
            category_text(p) != category_text(t)
            for p, t in zip(predictions.tolist(), labels.tolist())
        ]
    )
    return f"held-out error rate {wrong:.1%}"
