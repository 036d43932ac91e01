"""The schema file `monitor profile` writes: a header saying where it came from, then every key,
commented where a decision was made from the data, and the message layout (`message_layout`)."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.profile.model import SCORER_PREDICTION, Options, Profile, scalar

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {
    "true",
    "false",
    "null",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
}  # plain, some YAML reads them as non-strings


def _name(text: str) -> str:
    """A field or column name: plain when YAML reads it back as that string, else quoted."""
    return (
        text
        if _PLAIN.match(text) and text.lower() not in _YAML_WORDS
        else json.dumps(text, ensure_ascii=False)
    )


def _flow(key: str, values: tuple[Any, ...], indent: int, width: int = 100) -> list[str]:
    """`key: [a, b, ...]`, wrapped onto indented lines when long."""
    lines, line = [], f"{' ' * indent}{key}: ["
    for i, value in enumerate(values):
        item = scalar(value) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item) > width and not line.endswith("["):
            lines.append(line.rstrip())
            line = " " * (indent + 2)
        line += item
    return lines + [line]


def default_name(path: Path) -> str:
    """The file's stem as a model name ([A-Za-z0-9_.:-], at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", path.stem).strip("_")[:64] or "model"


@dataclass(frozen=True)
class MessageLayout:
    """Where the fields sit in the prediction and label messages the schema will describe."""

    layout: str  # scorer | columns
    why: str  # how the layout was chosen, for the file's comment
    id: str
    ts: str
    prediction: str
    features: str | None  # the object holding the features; None: top-level fields
    probabilities: str | None = None  # the object {class: p} (our scorer's)
    probability_fields: tuple[tuple[Any, str], ...] = ()  # (class, top-level field)
    label_target: str | None = None


def message_layout(
    result: Profile,
    options: Options,
    layout: str | None = None,
    features_field: str | None = None,
    prediction_field: str | None = None,
    probabilities_field: str | None = None,
    label_target_field: str | None = None,
) -> MessageLayout:
    """Our scorer's layout when the prediction column is `prediction` (what `scorer reference`
    writes: the reference comes from our scorer's model dir), else the reference's own columns as
    top-level fields (another system's log, written like its reference). `layout` forces one; the
    field arguments (None: the layout's default; features_field "": top-level) move single fields."""
    if layout is None:
        layout = "scorer" if result.prediction == SCORER_PREDICTION else "columns"
        why = (
            f"our scorer's, as the prediction column is {SCORER_PREDICTION!r} (what `scorer reference` writes)"
            if layout == "scorer"
            else f"the reference's column names as top-level fields (the prediction column is {result.prediction!r}, "
            "not our scorer's): another system's log written like its reference"
        )
    else:
        why = (
            "our scorer's"
            if layout == "scorer"
            else "the reference's column names as top-level fields"
        ) + f" (--layout {layout})"
    scorer = layout == "scorer"
    features = (
        ("features" if scorer else None) if features_field is None else (features_field or None)
    )
    probabilities, fields = None, ()
    if result.probabilities:
        if scorer and result.scorer_probabilities:
            probabilities = probabilities_field or "probabilities"
        else:
            fields = result.probabilities  # one top-level field per column, named as the column
    return MessageLayout(
        layout,
        why,
        options.id,
        options.ts,
        prediction_field or ("prediction" if scorer else result.prediction),
        features,
        probabilities,
        fields,
        label_target_field,
    )


# The serving systems' log formats (contract.formats): their `messages:` block, for `--format`.
PAIRED_BLOCKS = {
    "oip-v2": [
        "  # MLServer's Kafka mode (Open Inference Protocol V2 JSON): requests and responses joined by id",
        "  format: oip-v2",
        "  requests: mlserver-input  # MLServer's kafka_topic_input",
        "  responses: mlserver-output  # its kafka_topic_output",
        "  model: {name}  # the mlserver-model header: other models' messages on these topics are skipped",
        "  id: [key, body]  # the request's Kafka key, else its body id (MLServer keys the response alike)",
    ],
    "kserve-cloudevents": [
        "  # KServe's inference logger: CloudEvents in Kafka binary mode, requests and responses joined by ce_id",
        "  format: kserve-cloudevents",
        "  requests: {name}.inference-log  # one topic for both: ce_type tells them apart",
        "  responses: {name}.inference-log",
        "  model: {name}  # the ce_inferenceservicename header: other services' events are skipped",
        '  body: v1  # {{"instances": [...]}} / {{"predictions": [...]}}; oip-v2 for OIP JSON bodies',
    ],
    "seldon-v2": [
        "  # Seldon Core 2: OIP protobuf on seldon.<namespace>.model.<model>.inputs / .outputs",
        "  format: seldon-v2",
        "  namespace: seldon-mesh",
        "  model: {name}",
    ],
}


def _paired(fmt: str, name: str, probabilities: bool) -> list[str]:
    lines = [line.format(name=name) for line in PAIRED_BLOCKS[fmt]]
    lines.append("  timestamp: kafka  # the request's Kafka timestamp is the rows' event time")
    if (
        fmt == "kserve-cloudevents"
    ):  # v1: instances are lists in this file's feature order, or objects
        if probabilities:
            lines.append(
                "  probabilities: predict_proba  # v1: each prediction is its class probabilities, in the "
                "order of classes above (drop this line if the service returns classes)"
            )
    else:
        lines += [
            "  # inputs: one input tensor per feature, named as the feature (MLServer's pandas content type);",
            "  # `inputs: NAME` for one [n, k] tensor holding the features in this file's order",
            "  prediction: predict  # the output holding the predictions",
        ]
        if probabilities:
            lines.append(
                "  probabilities: predict_proba  # the output holding the class probabilities, [n, k] in "
                "the order of classes above"
            )
    lines.append('  row_id: "{id}:{row}"  # the id labels carry for row <row> of message <id>')
    return lines


def render(
    result: Profile,
    name: str,
    source: str,
    today: dt.date,
    messages: MessageLayout,
    fmt: str = "json",
) -> str:
    """The schema file: a header saying where it came from, then every key, commented where a
    decision was made from the data. `fmt`: the log's format (contract.formats: json, avro, or a
    serving system's requests and responses)."""
    lines = [
        f"# Schema of model {name}, written by `python -m monitor profile` from {source} ({result.rows} rows)",
        f'# on {today.isoformat()}. Every key is documented in the README ("Schema format"). Review it: types,',
        "# categories and ranges come from the data, not from the model.",
    ]
    if result.task_note:
        lines.append(f"# task: inferred ({result.task_note}); --task changes it.")
    if fmt in PAIRED_BLOCKS:
        lines.append(
            f"# messages: {fmt} (--format): check the topics and the model's name against the server's."
        )
    else:
        lines.append(f"# messages: laid out as {messages.why}; --layout changes it.")
    if result.timestamp_note and fmt not in PAIRED_BLOCKS:
        lines.append(f"# timestamp_format: {result.timestamp_note}; --timestamp-format changes it.")
    if result.probability_note:
        lines.append(f"# probabilities: {result.probability_note}.")
    if result.left_out:
        lines += ["#", "# Left out:"] + [f"#   {column}: {why}" for column, why in result.left_out]
    if result.not_features:
        lines += ["#", "# Not features:"] + [
            f"#   {column}: {what}" for column, what in result.not_features
        ]
    lines += [f"name: {_name(name)}", f"task: {result.task}", f"target: {_name(result.target)}"]
    if result.task == "classification":
        lines += _flow("classes", result.classes, 0)
        lines[-1] += "  # from the target and prediction columns"
    elif result.target_observed:
        low, high = result.target_observed
        suggestion = "{ge: 0}" if low >= 0 else "{ge: <lowest possible>, le: <highest possible>}"
        lines.append(
            f"# target_range: {suggestion}  # optional: labels outside go to the DLQ; observed "
            f"[{scalar(low)}, {scalar(high)}]"
        )
    lines.append(
        f"prediction: {_name(result.prediction)}  # the reference file's column of predictions"
    )
    if result.probabilities and not result.scorer_probabilities:
        lines.append(
            f"probabilities: {_mapping(result.probabilities)}  # the reference's column of each class's probability"
        )
    lines.append("features:")
    for feature in result.features:
        if feature.type_note:
            lines.append(f"  # {feature.type_note}")
        lines += [f"  - name: {_name(feature.name)}", f"    type: {feature.type}"]
        if feature.type == "categorical":
            lines += _flow("categories", feature.categories, 4)
        else:
            low, high = feature.observed
            lines.append(
                f"    observed: [{scalar(low)}, {scalar(high)}]  # min and max in the reference (information only)"
            )
            lines.append(
                "    # range: {ge: 0}  # optional, if it can never be negative: values outside go to the DLQ, "
                "not to the drift test"
                if low >= 0
                else "    # range: {ge: <lowest possible>, le: <highest possible>}  # optional: "
                "values outside go to the DLQ, not to the drift test, so bound only the impossible"
            )
        lines += [f"    # {note}" for note in feature.notes]
    if fmt in PAIRED_BLOCKS:
        lines += ["messages:"] + _paired(fmt, name, bool(result.probabilities))
    else:
        lines += _messages(result, messages, fmt)
    lines += [
        "labels:  # label messages: {id, timestamp, target}",
        f"  id: {_name(messages.id)}",
        f"  timestamp: {_name(messages.ts)}",
        f"  target: {_name(messages.label_target or result.target)}",
    ]
    return "\n".join(lines) + "\n"


def _messages(result: Profile, messages: MessageLayout, fmt: str) -> list[str]:
    """The one-message-per-prediction layout (json, or the same fields in Avro)."""
    lines = [
        "messages:  # where fields sit in prediction messages (the scorer's output or any inference log)"
    ]
    if fmt == "avro":
        lines.append(
            "  format: avro  # these fields as an Avro record, Schema Registry framing (SCHEMA_REGISTRY_URL)"
        )
    lines += [
        f"  id: {_name(messages.id)}",
        f"  timestamp: {_name(messages.ts)}",
        f"  timestamp_format: {result.timestamp_format}  # epoch_ms, epoch_s (numbers) or iso8601 (strings)",
        f"  prediction: {_name(messages.prediction)}",
    ]
    if messages.probabilities:
        lines.append(
            f'  probabilities: {_name(messages.probabilities)}  # an object {{"<class>": probability, ...}}'
        )
    elif messages.probability_fields:
        lines.append(
            f"  probabilities: {_mapping(messages.probability_fields)}  # a top-level field per class"
            + (
                " (the other's is 1 - p)"
                if len(messages.probability_fields) < len(result.classes)
                else ""
            )
        )
    features = _name(messages.features) if messages.features else "null"
    lines.append(
        f"  features: {features}  # the object holding the features; null: top-level fields"
    )
    return lines


def _mapping(pairs: tuple[tuple[Any, str], ...]) -> str:
    """{class: name, ...} in YAML flow style; classes as the schema lists them."""
    return "{" + ", ".join(f"{scalar(cls)}: {_name(name)}" for cls, name in pairs) + "}"
