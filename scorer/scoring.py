"""The scoring step: decoded records in, predictions and dead letters out. No I/O.

One vectorized `predict` per batch: the forest's per-call overhead is paid once per batch,
not once per record (bench/scorer.py shows the tutorial's one-record-per-call rate beside it).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from contract.records import CATEGORICAL_FEATURES, FEATURE_COLUMNS, KNOWN_CATEGORIES, FeatureRecord, Rejection, decode_features, encode, prediction_message

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class ScoredBatch:
    """Outputs of one batch, aligned with the input positions they came from."""

    predictions: list[tuple[str, bytes]] = field(default_factory=list)  # (record id, prediction JSON)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # column -> records with an unseen category


_FIELD_INDEX = {name: i for i, name in enumerate(FeatureRecord._fields)}


def records_frame(records: Sequence[FeatureRecord]) -> pd.DataFrame:
    """Column-wise frame in the order the pipeline was trained on."""
    columns = list(zip(*records))  # records are tuples: transpose once
    return pd.DataFrame({c: columns[_FIELD_INDEX[c]] for c in FEATURE_COLUMNS})


def predict_records(records: Sequence[FeatureRecord], predict: Predict) -> np.ndarray:
    if not records:
        return np.empty(0)
    return np.asarray(predict(records_frame(records)), dtype=float)


def score_batch(values: Sequence[bytes], predict: Predict, model_version: str, now_ms: int) -> ScoredBatch:
    """Decode, validate and score raw feature messages.

    values: message payloads, in consumption order. Invalid ones come back as rejections with
    their position so the caller can forward the original bytes to the DLQ.
    """
    batch = ScoredBatch()
    valid: list[FeatureRecord] = []
    for position, value in enumerate(values):
        decoded = decode_features(value if value is not None else b"")
        if isinstance(decoded, Rejection):
            batch.rejections.append((position, decoded))
        else:
            valid.append(decoded)
    if not valid:
        return batch
    frame = records_frame(valid)
    for column in CATEGORICAL_FEATURES:
        unseen = int((~frame[column].isin(KNOWN_CATEGORIES[column])).sum())
        if unseen:
            batch.unseen[column] = unseen
    for record, prediction in zip(valid, predict(frame).tolist()):
        message = prediction_message(record, prediction, model_version, now_ms)
        batch.predictions.append((record.id, encode(message)))
    return batch
