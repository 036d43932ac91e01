"""Prediction and label messages -> the core's columns, for any schema; refused records become data.

Built once at start-up from the schema (`Decoder(schema)`), then per batch of thousands:
    prediction bytes -> PredictionBatch(ids, ts, predictions, numeric, categorical, probabilities)
                        + [(position, Rejection)]
    label bytes      -> (ids, ts (k,) int64, labels (k,) float64 or class texts) + [(position, Rejection)]

The schema's typed msgspec decoders (`contract.decoders.Decoders`) build every record of a batch in one C
pass; a batch holding a record they refuse goes record by record, each refusal through the
schema's checks (`check_prediction` / `check_label`), which give the verdict and name the reason
(`contract.decoders.decode_records`). The typed decoders only ever accept what the checks accept
(tests/unit/test_monitor_decode.py), so no invalid record slips through.

Columns are read one at a time with `map` over attrgetters (C loops): a tuple per record would cost
more in garbage collection than the decoding itself. Categorical values and classes become text
(`category_texts`: 3 -> "3", True -> "true"), event times epoch milliseconds (`epoch_ms`).
No Kafka here: the service hands in message values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np

from contract.decoders import (
    Decoders,
    check_label,
    check_prediction,
    decode_records,
    epoch_ms,
    verdict,
)
from contract.rules import Rejection, category_texts
from contract.schema import Schema
from monitor.windows import PredictionBatch

Rejected = list[tuple[int, Rejection]]  # (position in the batch, why it was refused)


class Decoder:
    """One schema's prediction and label messages as columns; see the module doc.

    >>> from contract.schema_file import parse_schema
    >>> schema = parse_schema({"name": "toy", "task": "regression", "target": "y", "features": [
    ...     {"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical", "categories": ["a", "b"]}]})
    >>> batch, rejected = Decoder(schema).predictions([
    ...     b'{"id": "r1", "ts": 5, "prediction": 2.5, "features": {"x": 1.5, "c": "a"}}', b'{"id": "r2"}'])
    >>> batch.ids.tolist(), batch.numeric["x"].tolist(), [(position, why.reason) for position, why in rejected]
    (['r1'], [1.5], [(1, 'missing_field')])
    """

    def __init__(self, schema: Schema) -> None:
        d, m = Decoders(schema), schema.messages
        self.schema = schema
        self.timestamp_format = m.timestamp_format
        self._prediction = (d.prediction, partial(verdict, check_prediction, d))
        self._label = (d.label, partial(verdict, check_label, d))

        def field(key: str) -> Callable[[Any], Any]:
            return d.getter("prediction", key)

        self._id, self._ts, self._output = field(m.id), field(m.timestamp), field(m.prediction)
        # Nested features: one getter for the features Struct, then one per feature on it;
        # top-level features are read off the prediction Struct itself.
        self._features = field(m.features) if m.features else None
        holder = "features" if m.features else "prediction"
        self._numeric = [(f.name, d.getter(holder, f.name)) for f in schema.features if f.numeric]
        self._categorical = [
            (f.name, d.getter(holder, f.name), f.kind) for f in schema.features if not f.numeric
        ]
        # Probabilities decode to a Struct with one float per class, p0..pK-1 in class_texts order, or
        # sit in top-level fields, one per class (a binary model's positive class alone).
        self._probabilities = field(m.probabilities) if m.probabilities else None
        self._classes = [(text, attrgetter(f"p{i}")) for i, text in enumerate(schema.class_texts)]
        self._probability_fields = [(text, field(name)) for text, name in m.probability_fields]
        self._label_id = d.getter("label", schema.labels.id)
        self._label_ts = d.getter("label", schema.labels.timestamp)
        self._label_value = d.getter("label", schema.label_field)

    def _outputs(self, values: Any, n: int) -> np.ndarray:
        """A regression model's numbers as (n,) float64; a classifier's classes as (n,) object texts."""
        if self.schema.classification:
            return np.array(category_texts(values, self.schema.class_kind), dtype=object)
        return np.fromiter(values, np.float64, n)

    def predictions(self, values: Sequence[bytes]) -> tuple[PredictionBatch, Rejected]:
        """Columns of the valid predictions, and (position, rejection) of the others."""
        decoder, fallback = self._prediction
        records, rejected = decode_records(values, decoder, fallback)
        n = len(records)
        holders = list(map(self._features, records)) if self._features is not None else records
        probabilities = {}
        if self._probabilities is not None:
            per_record = list(map(self._probabilities, records))
            probabilities = {
                text: np.fromiter(map(get, per_record), np.float64, n)
                for text, get in self._classes
            }
        for text, get in self._probability_fields:
            probabilities[text] = np.fromiter(map(get, records), np.float64, n)
        batch = PredictionBatch(
            ids=np.array(list(map(self._id, records)), dtype=object),
            ts=epoch_ms(list(map(self._ts, records)), self.timestamp_format),
            predictions=self._outputs(map(self._output, records), n),
            numeric={
                name: np.fromiter(map(get, holders), np.float64, n) for name, get in self._numeric
            },
            categorical={
                name: np.array(category_texts(map(get, holders), kind), dtype=object)
                for name, get, kind in self._categorical
            },
            probabilities=probabilities,
        )
        return batch, rejected

    def labels(self, values: Sequence[bytes]) -> tuple[list[str], np.ndarray, np.ndarray, Rejected]:
        """(ids, ts (k,) int64, labels: (k,) float64 or a classifier's (k,) object texts) of the valid
        labels, and (position, rejection) of the others."""
        decoder, fallback = self._label
        records, rejected = decode_records(values, decoder, fallback)
        return (
            list(map(self._label_id, records)),
            epoch_ms(list(map(self._label_ts, records)), self.timestamp_format),
            self._outputs(map(self._label_value, records), len(records)),
            rejected,
        )
