"""The scoring step: raw feature messages in, predictions and dead letters out. No I/O.

    decode_batch(values)                      -> DecodedBatch (valid records as a frame, rejections)
    predict(decoded.frame)                    -> one prediction per valid record
    finish_batch(decoded, predictions, ...)   -> ScoredBatch (prediction messages, rejections)
One vectorized `predict` per batch: the forest's per-call overhead is paid once per batch, not
once per record (bench/scorer_bench.py shows the tutorial's one-record-per-call rate beside it).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from contract.records import (
    CATEGORICAL_FEATURES, FEATURE_COLUMNS, KNOWN_CATEGORIES, FeatureRecord, Rejection, decode_features, encode,
    prediction_message,
)

Predict = Callable[[pd.DataFrame], np.ndarray]

_FIELD_INDEX = {name: i for i, name in enumerate(FeatureRecord._fields)}


@dataclass
class DecodedBatch:
    records: list[FeatureRecord]  # the valid records, in input order
    frame: pd.DataFrame  # the same records, one column per feature
    rejections: list[tuple[int, Rejection]]  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # column -> records with an unseen category


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


def decode_batch(values: Sequence[bytes | None]) -> DecodedBatch:
    """Decode and validate message payloads (in consumption order)."""
    records: list[FeatureRecord] = []
    rejections: list[tuple[int, Rejection]] = []
    for position, value in enumerate(values):
        decoded = decode_features(value if value is not None else b"")
        if isinstance(decoded, Rejection):
            rejections.append((position, decoded))
        else:
            records.append(decoded)
    frame = records_frame(records)
    unseen = Counter()
    for column in CATEGORICAL_FEATURES:
        count = int((~frame[column].isin(KNOWN_CATEGORIES[column])).sum())
        if count:
            unseen[column] = count
    return DecodedBatch(records, frame, rejections, unseen)


def predict_decoded(decoded: DecodedBatch, predict: Predict) -> list[float]:
    return predict(decoded.frame).tolist() if decoded.records else []


def finish_batch(decoded: DecodedBatch, predictions: Sequence[float], model_version: str, now_ms: int) -> ScoredBatch:
    """Prediction messages keyed by record id, plus the batch's rejections."""
    messages = [(record.id, encode(prediction_message(record, prediction, model_version, now_ms)))
                for record, prediction in zip(decoded.records, predictions)]
    return ScoredBatch(messages, decoded.rejections, decoded.unseen)


def score_batch(values: Sequence[bytes | None], predict: Predict, model_version: str, now_ms: int) -> ScoredBatch:
    """All three steps for one batch. Invalid messages come back as rejections with their
    position, so the caller can forward the original bytes to the DLQ."""
    decoded = decode_batch(values)
    return finish_batch(decoded, predict_decoded(decoded, predict), model_version, now_ms)
