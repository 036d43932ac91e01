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

from contract.records import FEATURE_COLUMNS, FeatureRecord, Rejection, decode_features, encode, prediction_message

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class ScoredBatch:
    """Outputs of one batch, aligned with the input positions they came from."""

    predictions: list[tuple[str, bytes]] = field(default_factory=list)  # (record id, prediction JSON)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # column -> records with an unseen category


def records_frame(records: Sequence[FeatureRecord]) -> pd.DataFrame:
    """Column-wise frame in the order the pipeline was trained on."""
    return pd.DataFrame({c: [getattr(r, c) for r in records] for c in FEATURE_COLUMNS})


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
    for record in valid:
        batch.unseen.update(record.unseen_categories)
    for record, prediction in zip(valid, predict_records(valid, predict)):
        message = prediction_message(record, float(prediction), model_version, now_ms)
        batch.predictions.append((record.id, encode(message)))
    return batch
