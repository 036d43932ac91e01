"""A model directory and the reference file every service reads, checked against the schema.

MODEL_DIR holds
  model.joblib    a fitted scikit-learn estimator or Pipeline taking a DataFrame of the feature columns
  schema.yaml     the model's schema (`contract.schema`)
  reference.csv   held-out rows the model never trained on: the features, the target, the model's
                  prediction (and, for a classifier whose messages carry them, proba_<class> columns)
  metadata.json   optional (written by `scorer train`): library versions, held-out error
The model version is the content hash of model.joblib, so nothing else is required.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from contract.rules import FieldRule, InvalidRecord, category_text
from contract.schema import Schema, SchemaError
from contract.schema_file import load_schema

MODEL_FILE = "model.joblib"
SCHEMA_FILE = "schema.yaml"
REFERENCE_FILE = "reference.csv"
METADATA_FILE = "metadata.json"
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def model_version(model_path: Path) -> str:
    """The first 16 hex digits of the model file's SHA-256: the same file, the same version."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def schema_path(model_dir: Path) -> Path:
    return Path(model_dir) / SCHEMA_FILE


def load_model_schema(model_dir: Path, schema: Path | None = None) -> Schema:
    """The schema given, else MODEL_DIR/schema.yaml; SchemaError with what to do when there is none."""
    path = Path(schema) if schema is not None else schema_path(model_dir)
    if schema is None and not path.exists():
        raise SchemaError(
            f"no schema file {path}: run `python -m scorer train` for the diamonds example, or "
            "`python -m monitor profile` to write one for your model (or set MODEL_DIR)"
        )
    return load_schema(path)


def read_table(path: Path, text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; `text_columns` are read as strings from CSV (so a
    category like "01" keeps its leading zero). SchemaError naming the file when it cannot be read."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise SchemaError(
            f"{path}: reference and held-out files are CSV (.csv) or Parquet (.parquet)"
        )
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(
                path, dtype={c: str for c in text_columns} or None, keep_default_na=True
            )
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise SchemaError(
            f"no reference file {path}: write one with `python -m scorer reference` "
            "(or `python -m scorer train` for the diamonds example)"
        ) from None
    except (OSError, ValueError, ImportError) as exc:
        raise SchemaError(f"cannot read {path}: {exc}") from None


def reference_columns(schema: Schema, target: bool = True) -> tuple[str, ...]:
    """Columns the reference file must have: features, target, prediction, probabilities."""
    return (
        *schema.feature_names,
        *([schema.target] if target else []),
        schema.prediction,
        *schema.probability_columns,
    )


def read_reference(path: Path, schema: Schema, target: bool = True) -> pd.DataFrame:
    """The reference rows with every column the schema needs, in the schema's types:
    numeric features, regression targets and predictions, probabilities as float64; categorical
    features and classes as their kind (str, int, bool). SchemaError naming the file and column
    when one is missing, empty in some rows, or of the wrong type. `target=False`: rows named like
    the reference whose labels are not known (a batch to test), read without the target."""
    text = tuple(f.name for f in schema.features if not f.numeric and f.kind == "string")
    if schema.classification and schema.class_kind == "string":
        text += (schema.target, schema.prediction)
    frame = read_table(path, text)
    missing = [c for c in reference_columns(schema, target) if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{path}: no column {missing[0]!r}, which {schema.source} needs "
            f"({'feature' if missing[0] in schema.feature_names else 'target, prediction or probability'}); "
            f"the file has {', '.join(map(str, frame.columns[:20]))}"
        )
    if len(frame) < 2:
        raise SchemaError(f"{path}: a reference needs at least 2 rows, it has {len(frame)}")
    out = {}
    for column in reference_columns(schema, target):
        values = frame[column]
        empty = int(values.isna().sum())
        if empty:
            raise SchemaError(
                f"{path}: column {column!r} is empty in {empty} of {len(frame)} rows: drop or fill them"
            )
        kind = _column_kind(schema, column)
        out[column] = _as_kind(values, kind, path, column)
        if kind == "number" and not np.all(np.isfinite(out[column])):
            raise SchemaError(f"{path}: column {column!r} holds infinite values")
    _check_timestamps(frame, schema, path)
    return pd.DataFrame(out)


def _check_timestamps(frame: pd.DataFrame, schema: Schema, path: Path) -> None:
    """A reference holding the messages' event-time column must hold it in the schema's format:
    a log written like its reference would otherwise have every message refused."""
    column, fmt = schema.messages.timestamp, schema.messages.timestamp_format
    if column not in frame.columns or column in schema.feature_names:
        return
    rule = FieldRule(column, fmt)
    for value in frame[column].dropna().tolist():
        if fmt == "iso8601" and isinstance(value, dt.datetime):  # a Parquet timestamp column
            continue
        try:
            rule.check(value.item() if isinstance(value, np.generic) else value)
        except InvalidRecord:
            raise SchemaError(
                f"{path}: column {column!r} holds {_shown(value)}, not {fmt} as {schema.source} says "
                "(messages.timestamp_format: epoch_ms, epoch_s or iso8601; `monitor profile` infers it)"
            ) from None


def _column_kind(schema: Schema, column: str) -> str:
    if column in schema.feature_names:
        return schema.feature(column).kind
    if column in (schema.target, schema.prediction) and schema.classification:
        return schema.class_kind
    return "number"


def _as_kind(values: pd.Series, kind: str, path: Path, column: str) -> np.ndarray:
    if kind == "number":
        converted = pd.to_numeric(values, errors="coerce")
        if converted.isna().any():
            bad = values[converted.isna()].iloc[0]
            raise SchemaError(
                f"{path}: column {column!r} is numeric in the schema but holds {_shown(bad)}"
            )
        return converted.to_numpy(np.float64)
    if kind == "string":
        return values.astype(str).to_numpy(object)
    if kind == "boolean":
        if values.dtype == bool:
            return values.to_numpy(object)
        mapping = {"true": True, "false": False, "1": True, "0": False}
        texts = values.astype(str).str.strip().str.lower()
        if not texts.isin(list(mapping)).all():
            raise SchemaError(
                f"{path}: column {column!r} is boolean in the schema but holds "
                f"{_shown(values[~texts.isin(list(mapping))].iloc[0])}"
            )
        return texts.map(mapping).to_numpy(object)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or not np.all(numbers == np.round(numbers)):
        bad = values[numbers.isna() | (numbers != np.round(numbers))].iloc[0]
        raise SchemaError(
            f"{path}: column {column!r} holds integer categories in the schema but has {_shown(bad)}"
        )
    return numbers.astype(np.int64).to_numpy(object)


def _shown(value: object) -> str:
    """A cell for a message: 1.5, not np.float64(1.5)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def category_column(values: np.ndarray) -> np.ndarray:
    """A categorical column of a reference frame as the text the monitor counts (object array)."""
    return np.array([category_text(v) for v in values.tolist()], dtype=object)
