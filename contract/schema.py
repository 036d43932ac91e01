"""One model's schema: its columns, its task, and where each field sits in the messages.

A schema is a YAML file (`contract/schemas/diamonds.yaml` is the shipped example; docs/schema.md
documents every key), read and checked by `contract.schema_file.load_schema`. This module is the
model itself: what every service agrees on about a record derives from it:
- the field rule of each field (`feature_rule`, `target_rule`, `prediction_rule`, `record_rules`;
  the rules themselves are `contract.rules`), from which `contract.decoders` builds the typed
  decoders and their checks;
- where fields sit in the three message kinds: feature records (`{id, ts, <features>}` at top
  level), predictions (`messages`) and labels (`labels`);
- how the producer writes records and labels (`feature_record`, `label_record`, `timestamp_value`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.rules import Bounds, FieldRule, category_text, value_kind

TASKS = ("regression", "classification")
TIMESTAMP_FORMATS = ("epoch_ms", "epoch_s", "iso8601")
PROBABILITY_PREFIX = "proba_"  # reference-file column of a class's probability: proba_<class>

SCHEMAS = Path(__file__).resolve().parent / "schemas"
DEFAULT_SCHEMA = SCHEMAS / "diamonds.yaml"


class SchemaError(ValueError):
    """A schema (or a reference file checked against it) that cannot be used; the message names
    the file, the key and what to change."""


# -- the schema ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """One model input. type: numeric (`bounds`: valid range) or categorical (`categories`: the
    known values, of one kind: string, integer or boolean; other values are valid and counted as
    unseen, because a new category is drift, not bad input)."""

    name: str
    type: str
    bounds: Bounds = Bounds()
    categories: tuple[Any, ...] = ()
    observed: tuple[float, float] | None = (
        None  # numeric: range seen in the reference (information only)
    )

    @property
    def numeric(self) -> bool:
        return self.type == "numeric"

    @property
    def kind(self) -> str:
        """number, or the categories' kind: string, integer, boolean."""
        return "number" if self.numeric else value_kind(self.categories) or "string"

    @property
    def known(self) -> frozenset[str]:
        return frozenset(map(category_text, self.categories))


@dataclass(frozen=True)
class Layout:
    """Where fields sit in prediction messages (and, for id and timestamp, in feature records).

    Class probabilities come one of two ways: `probabilities`, the field of an object
    {"<class>": p, ...} with every class (what our scorer writes), or `probability_fields`,
    ((class text, field), ...) top-level number fields: every class's, or for a binary model only
    the positive class's (the other's is 1 - p, so it adds no test)."""

    id: str = "id"
    timestamp: str = "ts"
    timestamp_format: str = "epoch_ms"
    prediction: str = "prediction"
    probabilities: str | None = None
    features: str | None = "features"  # the object holding the features; None: top-level fields
    probability_fields: tuple[tuple[str, str], ...] = ()

    @property
    def carries_probabilities(self) -> bool:
        return bool(self.probabilities or self.probability_fields)

    @property
    def head(self) -> tuple[str, ...]:
        """The top-level fields other than the features."""
        return (
            self.id,
            self.timestamp,
            self.prediction,
            *([self.probabilities] if self.probabilities else []),
            *(f for _, f in self.probability_fields),
        )


@dataclass(frozen=True)
class LabelLayout:
    id: str = "id"
    timestamp: str = "ts"
    target: str = ""  # default: the schema's target


@dataclass(frozen=True)
class Schema:
    """A model's columns, task and message layout; see the module doc and the README."""

    name: str
    task: str
    target: str
    features: tuple[Feature, ...]
    prediction: str = "prediction"  # reference-file column of the model's prediction
    classes: tuple[Any, ...] = ()  # classification: the classes the model predicts
    target_bounds: Bounds = Bounds()  # regression: valid label range
    messages: Layout = Layout()
    labels: LabelLayout = LabelLayout()
    source: str = "<schema>"  # the file it came from, for messages
    reference_probabilities: tuple[
        tuple[str, str], ...
    ] = ()  # (class text, reference column); () = proba_<class>
    format: str = (
        "json"  # how the inference log is written (contract.formats): json, avro, oip-v2, ...
    )
    paired: Any = (
        None  # a paired format's requests/responses layout (contract.formats.layout.PairedLayout)
    )

    # -- columns ---------------------------------------------------------------------------------
    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if f.numeric)

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features if not f.numeric)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(
            f"{self.source}: no feature {name!r} (features: {', '.join(self.feature_names)})"
        )

    @property
    def class_kind(self) -> str:
        return value_kind(self.classes) or "string"

    @property
    def class_texts(self) -> tuple[str, ...]:
        return tuple(map(category_text, self.classes))

    @property
    def probability_classes(self) -> tuple[str, ...]:
        """The class texts whose probabilities the messages carry (every class, or a binary model's
        positive class alone), in the schema's class order."""
        if self.messages.probabilities:
            return self.class_texts
        given = dict(self.messages.probability_fields)
        return tuple(t for t in self.class_texts if t in given)

    @property
    def probability_columns(self) -> tuple[str, ...]:
        """Reference-file columns of `probability_classes`: the schema's `probabilities` mapping, else proba_<class>."""
        named = dict(self.reference_probabilities)
        return tuple(
            named.get(text, PROBABILITY_PREFIX + text) for text in self.probability_classes
        )

    @property
    def label_field(self) -> str:
        return self.labels.target or self.target

    # -- field rules (contract.rules) --------------------------------------------------------------
    def feature_rule(self, feature: Feature) -> FieldRule:
        return FieldRule(feature.name, feature.kind, feature.bounds)

    def target_rule(self, key: str) -> FieldRule:
        """The rule of a label (or a feature record's optional target) in the field `key`."""
        if self.classification:
            return FieldRule(key, self.class_kind)
        return FieldRule(key, "number", self.target_bounds)

    def prediction_rule(self) -> FieldRule:
        if self.classification:
            return FieldRule(self.messages.prediction, self.class_kind)
        return FieldRule(self.messages.prediction, "number")  # any finite number: the model said it

    @property
    def record_rules(self) -> tuple[FieldRule, ...]:
        """Feature records: id, timestamp, the features (top level)."""
        return (
            FieldRule(self.messages.id, "id"),
            FieldRule(self.messages.timestamp, self.messages.timestamp_format),
            *map(self.feature_rule, self.features),
        )

    # -- encoding --------------------------------------------------------------------------------
    def timestamp_value(self, epoch_ms: int) -> int | float | str:
        """An event time as the messages carry it."""
        if self.messages.timestamp_format == "epoch_ms":
            return int(epoch_ms)
        if self.messages.timestamp_format == "epoch_s":
            return int(epoch_ms) // 1000 if int(epoch_ms) % 1000 == 0 else int(epoch_ms) / 1000
        return (
            dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def feature_record(
        self, record_id: str, epoch_ms: int, features: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A feature record as the producer publishes it."""
        return {
            self.messages.id: record_id,
            self.messages.timestamp: self.timestamp_value(epoch_ms),
            **{name: features[name] for name in self.feature_names},
        }

    def label_record(self, record_id: str, epoch_ms: int, target: Any) -> dict[str, Any]:
        return {
            self.labels.id: record_id,
            self.labels.timestamp: self.timestamp_value(epoch_ms),
            self.label_field: target,
        }

    def to_yaml(self) -> dict[str, Any]:
        """The schema as the YAML file's mapping (load_schema(dump) gives an equal schema)."""
        out: dict[str, Any] = {"name": self.name, "task": self.task, "target": self.target}
        if self.classification:
            out["classes"] = list(self.classes)
        elif self.target_bounds != Bounds():
            out["target_range"] = self.target_bounds.to_yaml()
        out["prediction"] = self.prediction
        features = []
        for f in self.features:
            entry: dict[str, Any] = {"name": f.name, "type": f.type}
            if f.numeric and f.bounds != Bounds():
                entry["range"] = f.bounds.to_yaml()
            if not f.numeric:
                entry["categories"] = list(f.categories)
            features.append(entry)
        out["features"] = features
        if self.reference_probabilities:
            out["probabilities"] = {self._class_of(t): c for t, c in self.reference_probabilities}
        m = self.messages
        probabilities = m.probabilities or (
            {self._class_of(t): f for t, f in m.probability_fields} or None
        )
        if self.paired is not None:  # a serving system's requests and responses
            out["messages"] = {**self.paired.to_yaml(), "timestamp_format": m.timestamp_format}
        else:
            out["messages"] = {
                **({"format": self.format} if self.format != "json" else {}),
                "id": m.id,
                "timestamp": m.timestamp,
                "timestamp_format": m.timestamp_format,
                "prediction": m.prediction,
                **({"probabilities": probabilities} if probabilities else {}),
                "features": m.features,
            }
        out["labels"] = {
            "id": self.labels.id,
            "timestamp": self.labels.timestamp,
            "target": self.label_field,
        }
        return out

    def _class_of(self, text: str) -> Any:
        """The schema's class whose text is `text` (1 for "1")."""
        return dict(zip(self.class_texts, self.classes))[text]
