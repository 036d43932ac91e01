"""The scoring step: raw feature messages in, predictions and dead letters out. No I/O.

    decode_batch(values)                      -> DecodedBatch (valid records as a frame, rejections)
    predict(decoded.frame)                    -> one prediction per valid record
    finish_batch(decoded, predictions, ...)   -> ScoredBatch (prediction messages, rejections)
One vectorized `predict` per batch: the forest's per-call overhead is paid once per batch, not
once per record (bench/scorer_bench.py shows the tutorial's one-record-per-call rate beside it).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from contract import wire
from contract.records import CATEGORICAL_FEATURES, FEATURE_COLUMNS, KNOWN_CATEGORIES, FeatureRecord, Rejection, decode_features

Predict = Callable[[pd.DataFrame], np.ndarray]

_FIELD_INDEX = {name: i for i, name in enumerate(FeatureRecord._fields)}


@dataclass
class DecodedBatch:
    ids: list[str]  # the valid records, in input order
    ts: list[int]
    frame: pd.DataFrame  # the same records, one column per feature
    rejections: list[tuple[int, Rejection]]  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # column -> records with an unseen category
    columns: dict[str, list] = field(default_factory=dict)  # the frame's columns as lists, for the messages


@dataclass
class ScoredBatch:
    """Outputs of one batch, aligned with the input positions they came from."""

    predictions: list[tuple[str, bytes]] = field(default_factory=list)  # (record id, prediction JSON)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # column -> records with an unseen category


def records_frame(records: Sequence[FeatureRecord]) -> pd.DataFrame:
    """Column-wise frame in the order the pipeline was trained on."""
    if not records:
        return pd.DataFrame({c: [] for c in FEATURE_COLUMNS})
    columns = list(zip(*records))  # records are tuples: transpose once
    return pd.DataFrame({c: columns[_FIELD_INDEX[c]] for c in FEATURE_COLUMNS})


def predict_records(records: Sequence[FeatureRecord], predict: Predict) -> np.ndarray:
    if not records:
        return np.empty(0)
    return np.asarray(predict(records_frame(records)), dtype=float)


def _feature_or_rejection(raw: bytes) -> wire.FeatureMessage | Rejection:
    """The contract's verdict on a record the typed decoder refused (it may still be valid: an integer id, say)."""
    decoded = decode_features(raw)
    return decoded if isinstance(decoded, Rejection) else wire.FeatureMessage(**decoded._asdict())


def decode_batch(values: Sequence[bytes | None]) -> DecodedBatch:
    """Decode and validate message payloads (in consumption order).

    msgspec's typed decoder (`contract.wire.decode_records`, the rules of contract.records) builds
    every record in C; a refused record goes through `decode_features`, which gives the verdict and
    its reason."""
    raw_values = [value if value is not None else b"" for value in values]
    records, rejections = wire.decode_records(raw_values, wire.feature_decoder, _feature_or_rejection)
    columns = {c: list(map(wire.field[c], records)) for c in FEATURE_COLUMNS}
    frame = pd.DataFrame(columns) if records else pd.DataFrame({c: [] for c in FEATURE_COLUMNS})
    unseen = Counter()
    for column in CATEGORICAL_FEATURES:
        count = int((~frame[column].isin(KNOWN_CATEGORIES[column])).sum())
        if count:
            unseen[column] = count
    return DecodedBatch(list(map(wire.field["id"], records)), list(map(wire.field["ts"], records)), frame, rejections,
                        unseen, columns)


def predict_decoded(decoded: DecodedBatch, predict: Predict) -> list[float]:
    return predict(decoded.frame).tolist() if decoded.ids else []


def finish_batch(decoded: DecodedBatch, predictions: Sequence[float], model_version: str, now_ms: int) -> ScoredBatch:
    """Prediction messages keyed by record id, plus the batch's rejections (built and encoded in C: map
    over the columns, as records.prediction_message would per record)."""
    if not all(map(math.isfinite, predictions)):
        raise ValueError(f"model returned {next(p for p in predictions if not math.isfinite(p))} for a record of this batch")
    features = map(wire.Features, *(decoded.columns[c] for c in wire.Features.__struct_fields__[:-1]))
    messages = map(wire.PredictionMessage, decoded.ids, decoded.ts, repeat(now_ms), repeat(model_version),
                   predictions, features)
    return ScoredBatch(list(zip(decoded.ids, map(wire.encode, messages))), decoded.rejections, decoded.unseen)


def score_batch(values: Sequence[bytes | None], predict: Predict, model_version: str, now_ms: int) -> ScoredBatch:
    """All three steps for one batch. Invalid messages come back as rejections with their
    position, so the caller can forward the original bytes to the DLQ."""
    decoded = decode_batch(values)
    return finish_batch(decoded, predict_decoded(decoded, predict), model_version, now_ms)
