"""The schema file: YAML in, a checked `Schema` out.

`load_schema(path)` reads the file every service loads once at start-up; `parse_schema(raw)`
checks its mapping and raises `SchemaError` naming the file, the key and what to change (exit 2
in every service). YAML 1.2 booleans: `no` and `yes` stay strings (a class or category named no
is not silently False), and a key given twice is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from contract.formats.layout import FORMAT_KEYS, parse_messages
from contract.rules import MAX_CATEGORY_LENGTH, Bounds, category_text, value_kind
from contract.schema import (
    PROBABILITY_PREFIX,
    TASKS,
    TIMESTAMP_FORMATS,
    Feature,
    LabelLayout,
    Layout,
    Schema,
    SchemaError,
)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (only true/false: `no`, `yes`, `on` stay strings, so a class or category
    named no is not silently False) and refusal of a key given twice."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, regex) for tag, regex in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SchemaError(
                f"key {key!r} is given twice (line {key_node.start_mark.line + 1}): keep one"
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

_TOP_KEYS = {
    "name",
    "task",
    "target",
    "target_range",
    "classes",
    "prediction",
    "probabilities",
    "features",
    "messages",
    "labels",
}
_FEATURE_KEYS = {"name", "type", "range", "categories", "observed"}
_MESSAGE_KEYS = {"id", "timestamp", "timestamp_format", "prediction", "probabilities", "features"}
_LABEL_KEYS = {"id", "timestamp", "target"}
_RANGE_KEYS = {"gt", "ge", "lt", "le"}
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # a Prometheus label value and a file name


def load_schema(path: str | Path) -> Schema:
    """Read and check a schema file; SchemaError naming the file, the key and what to change."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SchemaError(f"cannot read schema {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SchemaError(
            f"{path} is not valid YAML: {str(exc).splitlines()[0]}"
            f"{f' (line {exc.problem_mark.line + 1})' if getattr(exc, 'problem_mark', None) else ''}"
        ) from None
    return parse_schema(raw, str(path))


def parse_schema(raw: Any, source: str = "<schema>") -> Schema:
    """A Schema from the YAML file's mapping (see load_schema); SchemaError naming the key otherwise.

    >>> schema = parse_schema({"name": "toy", "task": "regression", "target": "y", "features": [
    ...     {"name": "x", "type": "numeric"}, {"name": "c", "type": "categorical", "categories": ["a", "b"]}]})
    >>> schema.feature_names, schema.messages.id, schema.format
    (('x', 'c'), 'id', 'json')
    >>> parse_schema({"name": "toy", "task": "regresion", "target": "y", "features": []})
    Traceback (most recent call last):
    ...
    contract.schema.SchemaError: <schema>: task: 'regresion' is not a task: use regression or classification
    """

    def fail(key: str, message: str) -> SchemaError:
        return SchemaError(f"{source}: {key}: {message}")

    if not isinstance(raw, dict):
        raise SchemaError(
            f"{source}: a schema is a mapping with keys name, task, target, features, ... (see the README)"
        )
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; the keys are {', '.join(sorted(_TOP_KEYS))}")
    for key in ("name", "task", "target", "features"):
        if key not in raw:
            raise fail(key, "missing: every schema names its model, task, target and features")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(
            "name", f"{name!r} must be 1-64 letters, digits or _.:- (it labels every drift series)"
        )
    task = raw["task"]
    if task not in TASKS:
        raise fail("task", f"{task!r} is not a task: use regression or classification")
    target = raw["target"]
    if not isinstance(target, str) or not target:
        raise fail("target", "must be a column name")
    prediction = raw.get("prediction", "prediction")
    if not isinstance(prediction, str) or not prediction:
        raise fail("prediction", "must be the reference file's column of predictions")

    classes: tuple = ()
    if task == "classification":
        if "classes" not in raw:
            raise fail(
                "classes",
                "missing: list the classes the model predicts (strings, integers or booleans)",
            )
        classes = _values(raw["classes"], fail, "classes")
        if len(classes) < 2:
            raise fail("classes", "a classifier predicts at least 2 classes")
        if "target_range" in raw:
            raise fail("target_range", "only for regression: a classifier's labels are its classes")
    elif "classes" in raw:
        raise fail("classes", "only for classification (task: classification)")
    target_bounds = _bounds(raw.get("target_range"), fail, "target_range")

    features_raw = raw["features"]
    if not isinstance(features_raw, list) or not features_raw:
        raise fail("features", "must be a non-empty list of {name, type, ...}")
    features: list[Feature] = []
    for i, item in enumerate(features_raw):
        where = f"features[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "must be a mapping {name, type, ...}")
        unknown = set(item) - _FEATURE_KEYS
        if unknown:
            raise fail(
                f"{where}.{sorted(unknown)[0]}",
                f"unknown key; a feature has {', '.join(sorted(_FEATURE_KEYS))}",
            )
        fname = item.get("name")
        if not isinstance(fname, str) or not fname:
            raise fail(f"{where}.name", "every feature needs a name (its column and field)")
        where = f"features[{i}] ({fname})"
        if fname in {f.name for f in features}:
            raise fail(where, f"feature {fname!r} is listed twice: keep one")
        if fname == target:
            raise fail(
                where,
                f"the target {target!r} is among the features: a model cannot take its label as input",
            )
        if fname == prediction or fname.startswith(PROBABILITY_PREFIX) and task == "classification":
            raise fail(
                where,
                f"{fname!r} is the reference's prediction or probability column: rename the feature",
            )
        ftype = item.get("type")
        if ftype == "numeric":
            if "categories" in item:
                raise fail(f"{where}.categories", "only categorical features have categories")
            bounds = _bounds(item.get("range"), fail, f"{where}.range")
            observed = item.get("observed")
            features.append(
                Feature(
                    fname,
                    "numeric",
                    bounds,
                    observed=tuple(map(float, observed))
                    if isinstance(observed, list) and len(observed) == 2
                    else None,
                )
            )
        elif ftype == "categorical":
            if "range" in item:
                raise fail(f"{where}.range", "only numeric features have a range")
            if "categories" not in item:
                raise fail(f"{where}.categories", "missing: list the values the model knows")
            features.append(
                Feature(
                    fname,
                    "categorical",
                    categories=_values(item["categories"], fail, f"{where}.categories"),
                )
            )
        else:
            raise fail(
                f"{where}.type", f"{ftype!r} is not a feature type: use numeric or categorical"
            )

    # The log's format (json by default; contract.formats): a paired format's layout, and the keys
    # left for today's one-message-per-prediction Layout.
    message_format, paired, messages = parse_messages(
        _section(raw.get("messages"), _MESSAGE_KEYS | FORMAT_KEYS, fail, "messages"),
        name=name,
        task=task,
        fail=fail,
    )
    if (
        paired is not None and paired.probabilities
    ):  # the response's probabilities, one per class in class order
        messages["probabilities"] = paired.probabilities
    fmt = messages.get("timestamp_format", "epoch_ms")
    if fmt not in TIMESTAMP_FORMATS:
        raise fail("messages.timestamp_format", f"{fmt!r}: use epoch_ms, epoch_s or iso8601")
    probabilities = messages.get("probabilities")
    if probabilities is not None and task != "classification":
        raise fail(
            "messages.probabilities", "only a classifier's messages carry class probabilities"
        )
    probability_fields: tuple[tuple[str, str], ...] = ()
    if isinstance(probabilities, dict):
        probability_fields = _class_fields(
            probabilities, classes, fail, "messages.probabilities", "field"
        )
    layout = Layout(
        id=_field(messages, "id", "id", fail),
        timestamp=_field(messages, "timestamp", "ts", fail),
        timestamp_format=fmt,
        prediction=_field(messages, "prediction", "prediction", fail),
        probabilities=None if probability_fields else _field(messages, "probabilities", None, fail),
        features=_field(messages, "features", "features", fail, nullable=True),
        probability_fields=probability_fields,
    )
    reference_probabilities: tuple[tuple[str, str], ...] = ()
    if "probabilities" in raw:
        if not layout.carries_probabilities:
            raise fail(
                "probabilities",
                "the reference's probability columns are only read when the messages carry "
                "probabilities: set messages.probabilities too, or remove this key",
            )
        if not isinstance(raw["probabilities"], dict):
            raise fail(
                "probabilities",
                "must map each class to its reference column, e.g. {1: y_pred_proba}",
            )
        reference_probabilities = _class_fields(
            raw["probabilities"], classes, fail, "probabilities", "column"
        )
        carried = set(layout.probability_fields and dict(layout.probability_fields)) or set(
            map(category_text, classes)
        )
        if set(dict(reference_probabilities)) != carried:
            raise fail(
                "probabilities",
                f"name a reference column for each class whose probability the messages "
                f"carry: {', '.join(t for t in map(category_text, classes) if t in carried)}",
            )
    labels_raw = _section(raw.get("labels"), _LABEL_KEYS, fail, "labels")
    labels = LabelLayout(
        id=_field(labels_raw, "id", layout.id, fail, "labels"),
        timestamp=_field(labels_raw, "timestamp", layout.timestamp, fail, "labels"),
        target=_field(labels_raw, "target", target, fail, "labels"),
    )
    head = list(layout.head)
    if len(set(head)) != len(head):
        raise fail(
            "messages",
            f"id, timestamp, prediction and probabilities must be different fields, got {head}",
        )
    record_keys = [layout.id, layout.timestamp]
    clash = next((f.name for f in features if f.name in record_keys), None)
    if clash:
        raise fail(
            "features", f"feature {clash!r} has the name of the id or timestamp field: rename one"
        )
    if layout.features is None:
        clash = next((f.name for f in features if f.name in head), None)
        if clash:
            raise fail(
                "messages.features",
                f"top-level feature {clash!r} clashes with a message field: nest the features "
                "(messages.features: features) or rename the field",
            )
    elif layout.features in head:
        raise fail(
            "messages.features",
            f"{layout.features!r} is already the id, timestamp or prediction field",
        )
    if len({labels.id, labels.timestamp, labels.target}) != 3:
        raise fail("labels", "id, timestamp and target must be different fields")
    probability_columns = [c for _, c in reference_probabilities]
    clash = next(
        (c for c in probability_columns if c in (target, prediction, *(f.name for f in features))),
        None,
    )
    if clash:
        raise fail(
            "probabilities",
            f"{clash!r} is the target, the prediction or a feature, not a probability column",
        )
    return Schema(
        name=name,
        task=task,
        target=target,
        features=tuple(features),
        prediction=prediction,
        classes=classes,
        target_bounds=target_bounds,
        messages=layout,
        labels=labels,
        source=source,
        reference_probabilities=reference_probabilities,
        format=message_format,
        paired=paired,
    )


def _class_fields(
    raw: dict, classes: tuple, fail: Callable[[str, str], SchemaError], key: str, what: str
) -> tuple[tuple[str, str], ...]:
    """{class: name} of probability fields or columns as ((class text, name), ...) in class order:
    every class, or a binary model's positive class alone (the other's probability is 1 - p)."""
    texts = tuple(map(category_text, classes))
    given: dict[str, str] = {}
    for cls, name in raw.items():
        text = category_text(cls)
        if text not in texts:
            raise fail(f"{key}.{text}", f"not one of the classes ({', '.join(texts)})")
        if not isinstance(name, str) or not name:
            raise fail(f"{key}.{text}", f"must be a {what} name")
        given[text] = name
    if len(set(given.values())) != len(given):
        raise fail(key, f"each class needs its own {what}")
    if len(given) != len(texts) and not (len(texts) == 2 and len(given) == 1):
        raise fail(
            key,
            f"name a {what} for every class ({', '.join(texts)}); only a binary model may name one, "
            "its positive class, whose probability p makes the other's 1 - p",
        )
    return tuple((t, given[t]) for t in texts if t in given)


def _values(raw: Any, fail: Callable[[str, str], SchemaError], key: str) -> tuple:
    if not isinstance(raw, list) or not raw:
        raise fail(key, "must be a non-empty list (an empty list would make every value unseen)")
    kind = value_kind(raw)
    if kind is None:
        raise fail(
            key,
            "values must be all strings, all integers or all booleans (quote numbers meant as text)",
        )
    texts = [category_text(v) for v in raw]
    if len(set(texts)) != len(texts):
        repeated = next(t for t in texts if texts.count(t) > 1)
        raise fail(key, f"{repeated!r} is listed twice")
    if kind == "string" and any(not 0 < len(t) <= MAX_CATEGORY_LENGTH for t in texts):
        raise fail(key, f"values must be 1-{MAX_CATEGORY_LENGTH} characters")
    return tuple(raw)


def _bounds(raw: Any, fail: Callable[[str, str], SchemaError], key: str) -> Bounds:
    if raw is None:
        return Bounds()
    if not isinstance(raw, dict) or not raw or set(raw) - _RANGE_KEYS:
        raise fail(
            key,
            "must be a mapping of gt, ge (lower bound: greater than / at least) and lt, le (upper)",
        )
    if "gt" in raw and "ge" in raw or "lt" in raw and "le" in raw:
        raise fail(key, "give one lower bound (gt or ge) and one upper bound (lt or le)")
    for side, value in raw.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise fail(f"{key}.{side}", f"{value!r} must be a finite number")
    bounds = Bounds(**{k: float(v) for k, v in raw.items()})
    low = bounds.gt if bounds.gt is not None else bounds.ge
    high = bounds.lt if bounds.lt is not None else bounds.le
    if low is not None and high is not None and not low < high:
        raise fail(key, f"the lower bound {low:g} must be below the upper bound {high:g}")
    return bounds


def _section(raw: Any, keys: set[str], fail: Callable[[str, str], SchemaError], name: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail(name, f"must be a mapping of {', '.join(sorted(keys))}")
    unknown = set(raw) - keys
    if unknown:
        raise fail(
            f"{name}.{sorted(unknown)[0]}", f"unknown key; {name} has {', '.join(sorted(keys))}"
        )
    return raw


def _field(
    section: dict,
    key: str,
    default: str | None,
    fail: Callable[[str, str], SchemaError],
    name: str = "messages",
    nullable: bool = False,
) -> str | None:
    if key not in section:
        return default
    value = section[key]
    if value is None and (nullable or default is None):
        return None
    if not isinstance(value, str) or not value:
        raise fail(
            f"{name}.{key}",
            "must be a field name" + (" (or null for top-level features)" if nullable else ""),
        )
    return value
