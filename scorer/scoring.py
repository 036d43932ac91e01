"""The scoring step: raw feature records in, prediction messages and dead letters out. No I/O.

    codec = BatchCodec(schema, model_classes)          once at start-up, from the schema
    decode_batch(values, codec)                       -> DecodedBatch (valid records as a frame, rejections)
    codec.outputs(model_output(model, kind, frame))   -> Outputs (a prediction per valid record [, probabilities])
    finish_batch(decoded, outputs, version, now, codec) -> ScoredBatch (prediction messages, rejections)
One vectorized `predict` per batch: the forest's per-call overhead is paid once per batch, not
once per record (bench/scorer_bench.py shows the tutorial's one-record-per-call rate beside it).

Prediction messages are laid out as the schema's `messages` says, fields in this order:
`{id, ts, scored_at, model_version, prediction, [probabilities | one field per class], features}` (features nested
under `messages.features`, or top-level fields when it is null); `ts` as the record carried it.
The Structs that encode them are built once from the schema; `prediction_message` builds the same
message one record at a time, as the definition the batch path is tested against byte for byte.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from contract.decoders import Decoders, check_record, decode_records, verdict
from contract.rules import Rejection, category_text
from contract.schema import Schema
from scorer.predictor import CLASSES, CLASSES_AND_PROBABILITIES, NUMBERS, model_output

Predict = Callable[[pd.DataFrame], Any]  # a frame of valid records -> model_output(...)

SCORED_AT, MODEL_VERSION = (
    "scored_at",
    "model_version",
)  # fields the scorer adds to every prediction
encode = msgspec.json.Encoder().encode


@dataclass
class DecodedBatch:
    ids: list[str]  # the valid records, in input order
    ts: list  # their event times as decoded (epoch-ms ints, or datetimes for ISO-8601)
    columns: dict[
        str, list
    ]  # the same records, a list of native values per feature in the schema's order
    rejections: list[tuple[int, Rejection]]  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # feature -> records with an unseen category

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The columns as the frame a model takes: built only when asked for (~0.5 ms a batch of
        any size; the scorer's fast encoder reads the lists)."""
        return pd.DataFrame(self.columns)


@dataclass
class Outputs:
    """What the model said about a batch, in the schema's terms."""

    predictions: list  # one per valid record: a float, or the schema's class (str, int or bool)
    probabilities: np.ndarray | None = None  # (n, k) in schema.class_texts order, when published


@dataclass
class ScoredBatch:
    """Outputs of one batch, aligned with the input positions they came from."""

    predictions: list[tuple[str, bytes]] = field(
        default_factory=list
    )  # (record id, prediction JSON)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)  # (input position, why)
    unseen: Counter = field(default_factory=Counter)  # feature -> records with an unseen category


def _out_struct(name: str, keys: Sequence[str]) -> type:
    """A Struct encoding these JSON keys in this order (attributes f0, f1, ...: keys need not be
    identifiers). gc=False: they hold strings, numbers and other such Structs only."""
    if len(set(keys)) != len(keys):
        repeated = next(k for k in keys if list(keys).count(k) > 1)
        raise ValueError(
            f"prediction messages would carry the field {repeated!r} twice: rename the feature "
            f"or the messages field (the scorer adds {SCORED_AT} and {MODEL_VERSION})"
        )
    attrs = [f"f{i}" for i in range(len(keys))]
    return msgspec.defstruct(
        name, [(a, Any) for a in attrs], rename=dict(zip(attrs, keys)), gc=False
    )


class BatchCodec:
    """A schema's decoding and encoding, built once at start-up: the typed record decoder, the
    column getters, and the Structs of prediction messages.

    `model_classes`: a classifier's `classes_` in its order (None for a regressor), matched to the
    schema's classes by text, so predictions are published as the schema's class values and
    probabilities in `schema.class_texts` order whatever order the model learned them in;
    `scorer.model.check_against_schema` refuses a model whose classes are not the schema's."""

    def __init__(self, schema: Schema, model_classes: Sequence[Any] | None = None) -> None:
        self.schema = schema
        self.decoders = d = Decoders(schema)
        m = schema.messages
        self.decoder = d.record
        self.id_of, self.ts_of = d.getter("record", m.id), d.getter("record", m.timestamp)
        self.column_of = {name: d.getter("record", name) for name in schema.feature_names}
        # Native known values: a categorical column holds its kind (str, int, bool), and for one kind
        # membership of the categories is exactly "category_text in Feature.known".
        self.known = {f.name: list(f.categories) for f in schema.features if not f.numeric}
        self.known_sets = {name: frozenset(categories) for name, categories in self.known.items()}
        self.probabilities = bool(schema.classification and m.carries_probabilities)
        # the field form: (field, column of the class in the schema's class order) per published class
        self.probability_fields = [
            (name, schema.class_texts.index(text)) for text, name in m.probability_fields
        ]
        self.kind = (
            NUMBERS
            if not schema.classification
            else CLASSES_AND_PROBABILITIES
            if self.probabilities
            else CLASSES
        )
        self._to_schema: dict | None = None  # model class -> schema class, when they differ
        self._order: list[int] | None = (
            None  # schema class i is the model's probability column _order[i]
        )
        if schema.classification:
            if model_classes is None:
                raise ValueError(
                    f"{schema.source} is a classification schema: give the model's classes"
                )
            texts = [category_text(c) for c in model_classes]
            if sorted(texts) != sorted(schema.class_texts):
                raise ValueError(
                    f"the model's classes {texts} are not {schema.source}'s {list(schema.class_texts)}"
                )
            by_text = dict(zip(schema.class_texts, schema.classes))
            if tuple(model_classes) != schema.classes or texts != list(schema.class_texts):
                self._to_schema = {c: by_text[t] for c, t in zip(model_classes, texts)}
            order = [texts.index(t) for t in schema.class_texts]
            self._order = None if order == list(range(len(order))) else order
        head = [m.id, m.timestamp, SCORED_AT, MODEL_VERSION, m.prediction] + (
            [m.probabilities] if m.probabilities else []
        )
        head += [name for name, _ in self.probability_fields]
        self.features_type = (
            _out_struct("FeaturesOut", schema.feature_names) if m.features else None
        )
        self.prediction_type = _out_struct(
            "PredictionOut", head + ([m.features] if m.features else list(schema.feature_names))
        )
        self.probabilities_type = (
            _out_struct("ProbabilitiesOut", schema.class_texts) if m.probabilities else None
        )

    def columns(self, records: Sequence[Any]) -> dict[str, list]:
        """The decoded records' columns as lists: one attrgetter mapped over the batch per feature, in C."""
        return {name: list(map(get, records)) for name, get in self.column_of.items()}

    def frame(self, records: Sequence[Any]) -> tuple[pd.DataFrame, dict[str, list]]:
        """(the frame the model takes, its columns as lists) of decoded records."""
        columns = self.columns(records)
        return pd.DataFrame(columns), columns

    def outputs(self, raw: Any) -> Outputs:
        """model_output(model, self.kind, frame) in the schema's terms: floats, or the schema's
        classes (and probabilities in its class order)."""
        if self.kind == NUMBERS:
            return Outputs(raw.tolist())
        classes, probabilities = raw
        predictions = classes.tolist()  # numpy scalars -> Python str/int/bool, which encode as JSON
        if self._to_schema is not None:
            predictions = list(map(self._to_schema.__getitem__, predictions))
        if probabilities is not None and self._order is not None:
            probabilities = probabilities[:, self._order]
        return Outputs(predictions, probabilities)


def decode_batch(values: Sequence[bytes | None], codec: BatchCodec) -> DecodedBatch:
    """Decode and validate message payloads (in consumption order).

    The schema's typed decoder builds every record in C (`contract.decoders.decode_records`); a
    refused record goes through `check_record`, which gives the verdict and its reason."""
    raw_values = [value if value is not None else b"" for value in values]
    records, rejections = decode_records(
        raw_values, codec.decoder, lambda raw: verdict(check_record, codec.decoders, raw)
    )
    columns = codec.columns(records)
    unseen = Counter()
    for name, known in codec.known_sets.items():
        count = len(columns[name]) - sum(map(known.__contains__, columns[name]))
        if count:
            unseen[name] = count
    return DecodedBatch(
        list(map(codec.id_of, records)),
        list(map(codec.ts_of, records)),
        columns,
        rejections,
        unseen,
    )


def predict_decoded(decoded: DecodedBatch, predict: Predict, codec: BatchCodec) -> Outputs:
    return codec.outputs(predict(decoded.frame)) if decoded.ids else Outputs([])


def _check(outputs: Outputs, count: int, codec: BatchCodec) -> None:
    if len(outputs.predictions) != count:
        raise ValueError(
            f"model returned {len(outputs.predictions)} predictions for {count} records"
        )
    if codec.kind == NUMBERS and not all(map(math.isfinite, outputs.predictions)):
        raise ValueError(
            f"model returned {next(p for p in outputs.predictions if not math.isfinite(p))} "
            "for a record of this batch"
        )
    if codec.probabilities:
        p = outputs.probabilities
        if (
            p is None
            or p.shape != (count, len(codec.schema.classes))
            or not np.all((p >= 0) & (p <= 1))
        ):
            raise ValueError(
                "model returned probabilities that are not one in [0, 1] per record and class"
            )


def finish_batch(
    decoded: DecodedBatch, outputs: Outputs, model_version: str, now_ms: int, codec: BatchCodec
) -> ScoredBatch:
    """Prediction messages keyed by record id, plus the batch's rejections (built and encoded in C:
    the Structs mapped over the columns, as `prediction_message` would per record)."""
    if not decoded.ids:
        return ScoredBatch([], decoded.rejections, decoded.unseen)
    _check(outputs, len(decoded.ids), codec)
    fields: list = [
        decoded.ids,
        decoded.ts,
        repeat(now_ms),
        repeat(model_version),
        outputs.predictions,
    ]
    if codec.probabilities_type is not None:
        fields.append(map(codec.probabilities_type, *outputs.probabilities.T.tolist()))
    fields += [outputs.probabilities[:, column].tolist() for _, column in codec.probability_fields]
    columns = [decoded.columns[name] for name in codec.schema.feature_names]
    if codec.features_type is not None:
        fields.append(map(codec.features_type, *columns))
    else:
        fields.extend(columns)
    messages = map(codec.prediction_type, *fields)
    return ScoredBatch(
        list(zip(decoded.ids, map(encode, messages))), decoded.rejections, decoded.unseen
    )


def score_batch(
    values: Sequence[bytes | None],
    predict: Predict,
    model_version: str,
    now_ms: int,
    codec: BatchCodec,
) -> ScoredBatch:
    """All three steps for one batch. Invalid messages come back as rejections with their
    position, so the caller can forward the original bytes to the DLQ."""
    decoded = decode_batch(values, codec)
    return finish_batch(
        decoded, predict_decoded(decoded, predict, codec), model_version, now_ms, codec
    )


def predictor_of(model: Any, codec: BatchCodec) -> Predict:
    """`predict` for score_batch in this process (the HTTP API, tests): what the predict process does."""
    return lambda frame: model_output(model, codec.kind, frame)


def prediction_message(
    d: Decoders,
    record: Any,
    prediction: Any,
    model_version: str,
    scored_at: int,
    probabilities: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The prediction message of one record decoded by `d`, one field at a time: the definition of
    the layout (see the module doc). `finish_batch` builds whole batches in C, tested byte for byte
    against this."""
    schema, m = d.schema, d.schema.messages
    if not schema.classification and not math.isfinite(prediction):
        raise ValueError(f"model returned {prediction} for a record")
    message: dict[str, Any] = {
        m.id: d.getter("record", m.id)(record),
        m.timestamp: d.getter("record", m.timestamp)(record),
        SCORED_AT: scored_at,
        MODEL_VERSION: model_version,
        m.prediction: prediction,
    }
    if schema.classification and m.probabilities:
        message[m.probabilities] = dict(zip(schema.class_texts, map(float, probabilities)))
    for text, name in m.probability_fields:
        message[name] = float(probabilities[schema.class_texts.index(text)])
    features = {name: d.getter("record", name)(record) for name in schema.feature_names}
    if m.features:
        message[m.features] = features
    else:
        message.update(features)
    return message
