"""The model's transforms without scikit-learn's per-call overhead, checked against scikit-learn at start-up.

At a low rate a batch holds a few dozen records, and the diamonds pipeline's ColumnTransformer
takes ~13 ms to encode 32 of them, this module 0.34 ms (`bench/encode_bench.py`): nearly all of
scikit-learn's time is validation, pandas indexing and joblib dispatch around microseconds of
arithmetic, paid once per batch on the scorer's latency path. `compile_transform` reads the
fitted parameters of a ColumnTransformer made of StandardScaler, OneHotEncoder, 'passthrough'
and 'drop', and does the same arithmetic in the same order with numpy on the batch's columns
(lists, as `scoring.decode_batch` makes them).
It is used only when its output is scikit-learn's on the reference rows, and on each categorical
column once with a value the encoder never saw: the same container, dtype, shape and bits.
Anything else (another transformer, a pandas-output pipeline, an encoder that drops or groups
categories, an output that differs) keeps scikit-learn's `transform`, and `reason` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

Columns = Mapping[str, Sequence]  # feature -> its values in the batch, in record order
Part = Callable[[Columns], np.ndarray]  # a ColumnTransformer part, dense
UNSEEN_TEXT = "\x00not-a-category"  # a text category no schema has (it starts with a NUL)


class Unsupported(Exception):
    """A part of the pipeline the fast transform does not reproduce."""


@dataclass(frozen=True)
class Encoder:
    """The model's transforms for one batch: the fast path on its columns, or scikit-learn's on its frame."""

    slow: Callable[[pd.DataFrame], Any]
    fast: Callable[[Columns], Any] | None = None
    reason: str = ""  # why `fast` is None

    def __call__(self, frame: pd.DataFrame, columns: Columns) -> Any:
        return self.fast(columns) if self.fast is not None else self.slow(frame)


def _float_block(columns: Columns, names: list[str]) -> np.ndarray:
    """The columns as a C-ordered float64 (rows, len(names)) array, as validate_data makes of the frame's."""
    return np.ascontiguousarray(np.array([columns[name] for name in names], dtype=np.float64).T)


def _scaler(step: Any, names: list[str]) -> Part:
    mean = step.mean_ if step.with_mean else None
    scale = step.scale_ if step.with_std else None

    def scale_columns(columns: Columns) -> np.ndarray:
        values = _float_block(columns, names)
        if mean is not None:  # in place and in this order, as StandardScaler.transform does
            values -= mean
        if scale is not None:
            values /= scale
        return values

    return scale_columns


def _one_hot(step: Any, names: list[str]) -> Part:
    if step.drop is not None or getattr(step, "_infrequent_enabled", False):
        raise Unsupported("a OneHotEncoder that drops or groups categories")
    if step.handle_unknown not in ("ignore", "infrequent_if_exist"):
        raise Unsupported(f"a OneHotEncoder with handle_unknown={step.handle_unknown!r}")
    for categories in step.categories_:
        if any(
            value is None or value != value for value in categories
        ):  # None or NaN: sklearn maps them apart
            raise Unsupported("a OneHotEncoder whose categories include a missing value")
    # The dict lookup is OneHotEncoder's own for text categories (sklearn.utils._encode._map_to_integer).
    lookups = [
        {value: index for index, value in enumerate(categories)} for categories in step.categories_
    ]
    offsets = np.cumsum([0] + [len(categories) for categories in step.categories_])[:-1]
    width, dtype = int(sum(len(categories) for categories in step.categories_)), step.dtype

    def encode_columns(columns: Columns) -> np.ndarray:
        """A 1 in each known category's column; an unseen category is a row of zeros (handle_unknown='ignore')."""
        codes = (
            np.array(
                [
                    [lookup.get(value, -1) for value in columns[name]]
                    for name, lookup in zip(names, lookups)
                ],
                dtype=np.int64,
            )
            .reshape(len(names), -1)
            .T
        )
        out = np.zeros((codes.shape[0], width), dtype=dtype)
        rows, features = np.nonzero(codes >= 0)
        out[rows, codes[rows, features] + offsets[features]] = 1
        return out

    return encode_columns


def _column_names(ct: Any, columns: Any) -> list[str]:
    if isinstance(columns, (str, int, slice)) or callable(columns):  # a scalar selects a 1-D column
        raise Unsupported(
            f"a ColumnTransformer column selection {columns!r} (give a list of column names)"
        )
    selected = list(columns)
    if all(isinstance(c, str) for c in selected):
        return selected
    names = list(getattr(ct, "feature_names_in_", []))
    if names and all(
        isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in selected
    ):
        return [names[c] for c in selected]
    raise Unsupported(f"a ColumnTransformer column selection {columns!r}")


def _is_identity(step: Any) -> bool:
    """'passthrough', or the identity FunctionTransformer a fitted ColumnTransformer puts in its place."""
    from sklearn.preprocessing import FunctionTransformer

    if isinstance(step, str):
        return step == "passthrough"
    return type(step) is FunctionTransformer and step.func is None


def _parts(ct: Any) -> list[Part]:
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[Part] = []
    for _name, step, columns in ct.transformers_:
        names = _column_names(ct, columns)
        if (isinstance(step, str) and step == "drop") or not names:
            continue  # ColumnTransformer leaves out dropped and empty selections
        if _is_identity(step):
            parts.append(
                lambda columns, names=names: _float_block(columns, names)
            )  # numeric columns only: checked
        elif type(step) is StandardScaler:
            parts.append(_scaler(step, names))
        elif type(step) is OneHotEncoder:
            parts.append(_one_hot(step, names))
        else:
            raise Unsupported(f"a {type(step).__name__} in the ColumnTransformer")
    if not parts:
        raise Unsupported("a ColumnTransformer that keeps no column")
    return parts


def _stacked(parts: list[Part], sparse_type: type | None) -> Callable[[Columns], Any]:
    """The parts side by side; `sparse_type`: the CSR class scikit-learn's output has, None when dense."""
    if sparse_type is None:
        return lambda columns: np.hstack([part(columns) for part in parts])
    # ColumnTransformer stacks through COO, which keeps no zero and sorts each row's columns: the
    # CSR of the dense stack is the same matrix, entry for entry (checked, indices included).
    return lambda columns: sparse_type(np.hstack([part(columns) for part in parts]))


def unseen_value(known: Sequence) -> Any:
    """A value of the column's kind outside its `known` categories (None for bool: both may be known)."""
    if all(isinstance(value, str) for value in known):
        return UNSEEN_TEXT
    if all(isinstance(value, int) and not isinstance(value, bool) for value in known):
        return max(known, default=0) + 1
    return None


def with_unseen_values(sample: pd.DataFrame, known: Mapping[str, Sequence]) -> pd.DataFrame:
    """The sample and, per categorical column ({name: its known categories}), its first row again with
    a value of the column's kind that no encoder learned."""
    extra = []
    for name, categories in known.items():
        value = unseen_value(categories)
        if value is not None and len(sample):
            row = sample.iloc[:1].copy()
            row[name] = pd.Series([value], index=row.index, dtype=object)
            extra.append(row)
    return pd.concat([sample, *extra], ignore_index=True) if extra else sample


def difference(fast: Any, slow: Any) -> str:
    """ "" when two transform outputs are the same container, dtype, shape and bits (a CSR's indices
    too); else how they differ."""
    if type(fast) is not type(slow):
        return f"it makes a {type(fast).__name__} where scikit-learn makes a {type(slow).__name__}"
    if fast.shape != slow.shape or fast.dtype != slow.dtype:
        return (
            f"it makes {fast.dtype} {fast.shape} where scikit-learn makes {slow.dtype} {slow.shape}"
        )
    pairs = (
        [(fast.indptr, slow.indptr), (fast.indices, slow.indices), (fast.data, slow.data)]
        if sparse.issparse(slow)
        else [(fast, slow)]
    )
    for ours, theirs in pairs:
        if ours.shape != theirs.shape or ours.tobytes() != np.ascontiguousarray(theirs).tobytes():
            return "its values differ from scikit-learn's on the reference rows"
    return ""


def compile_transform(
    transforms: Any, sample: pd.DataFrame | None, known: Mapping[str, Sequence]
) -> Encoder:
    """The encoder for `transforms` (the pipeline before its final step): fast when its output is
    scikit-learn's on `sample` (frames as the scorer builds them: a column per feature, native
    values) and on each categorical column ({name: its known categories}) given an unseen value."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    slow = transforms.transform
    steps = (
        [step for _, step in transforms.steps] if isinstance(transforms, Pipeline) else [transforms]
    )
    if len(steps) != 1 or type(steps[0]) is not ColumnTransformer:
        return Encoder(slow, reason="the transforms are not one ColumnTransformer")
    if sample is None or not len(sample):
        return Encoder(slow, reason="there are no reference rows to check the fast transform on")
    try:
        parts = _parts(steps[0])
    except Unsupported as exc:
        return Encoder(slow, reason=f"the ColumnTransformer has {exc}")
    try:
        checked = with_unseen_values(sample, known)
        expected = slow(checked)
    except Exception as exc:  # noqa: BLE001 - the model's own transform fails: it keeps failing its own way
        return Encoder(slow, reason=f"scikit-learn's transform fails on the reference rows ({exc})")
    try:
        fast = _stacked(parts, type(expected) if sparse.issparse(expected) else None)
        why = difference(fast({name: checked[name].tolist() for name in checked.columns}), expected)
    except Exception as exc:  # noqa: BLE001 - any failure of the fast path means it is not the same
        why = f"the fast transform fails on the reference rows ({type(exc).__name__}: {exc})"
    return Encoder(slow, reason=why) if why else Encoder(slow, fast)
