"""The schema's `messages:` block for every format: which topics, and where each value sits.

`parse_messages(raw, name=..., task=..., fail=...)` reads the block and returns
`(format, PairedLayout | None, rest)`:
- `json` (the default, today's layout) and `avro` (the same layout, Avro-encoded with Schema Registry
  framing): one message per prediction on the predictions topic; `rest` holds the keys for today's
  `contract.schema.Layout` (id, timestamp, timestamp_format, prediction, probabilities, features).
- `oip-v2` (MLServer's Kafka mode), `kserve-cloudevents`, `seldon-v2`: requests and responses on
  their own topics, joined by id, many rows per message; the `PairedLayout` says where everything
  sits and `rest` holds only timestamp_format.

Values are named by their source: `key` (the Kafka key), `body` (the message's own `id`),
`header:NAME`, `kafka` (the Kafka timestamp), `input:NAME` (a request tensor, one value per row),
`parameter:NAME` (the request's `parameters`). `model` (default: the schema's name) is the model
the messages must name (MLServer: headers mlserver-model / Ce-Modelid; KServe: ce_inferenceservicename;
Seldon's topics are the model's own): a server's topics carry all its models, and another model's
messages are skipped, counted, not refused. Written for `contract.schema.parse_schema`, whose
`fail(key, message)` makes the SchemaError naming the file and the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Fail = Callable[[str, str], Exception]

FORMATS = ("json", "oip-v2", "kserve-cloudevents", "seldon-v2", "avro")
PAIRED = ("oip-v2", "kserve-cloudevents", "seldon-v2")
BODIES = (
    "oip-v2",
    "v1",
)  # kserve: the logged body is OIP JSON or KServe's v1 {"instances"} / {"predictions"}
SOURCE_KINDS = ("key", "body", "header", "kafka", "input", "parameter")

KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"

# Keys of today's Layout (json, avro) and of the paired formats; `format` goes with every one.
_LAYOUT_KEYS = {"id", "timestamp", "timestamp_format", "prediction", "probabilities", "features"}
_PAIRED_KEYS = {
    "requests",
    "responses",
    "id",
    "timestamp",
    "timestamp_format",
    "inputs",
    "prediction",
    "probabilities",
    "row_id",
    "model",
}
_KEYS = {
    "json": _LAYOUT_KEYS,
    "avro": _LAYOUT_KEYS,
    "oip-v2": _PAIRED_KEYS,
    "kserve-cloudevents": _PAIRED_KEYS | {"body", "request_type", "response_type"},
    "seldon-v2": (_PAIRED_KEYS - {"requests", "responses"})
    | {"namespace", "model", "topic_prefix"},
}
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
FORMAT_KEYS = set().union(*_KEYS.values()) | {"format"}  # every key some format's block may hold


@dataclass(frozen=True)
class Source:
    """Where a value comes from: kind in SOURCE_KINDS, name for header / input / parameter."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind


@dataclass(frozen=True)
class PairedLayout:
    """Requests and responses on two topics (or one, for KServe), joined by id.

    inputs: None when every feature is its own input tensor named as the feature (MLServer's
    pandas content type); else the name of one [n, k] tensor whose columns are the schema's
    features in order. prediction / probabilities: output names (a v1 body has one output,
    `predictions`: a class or number per row, or a list of class probabilities per row).
    row_id: the id of row `row` of message `id`, the one labels carry."""

    format: str
    requests: str
    responses: str
    id: tuple[Source, ...]
    timestamp: Source
    inputs: str | None = None
    prediction: str = "predict"
    probabilities: str | None = None
    row_id: str = "{id}:{row}"
    body: str = "oip-v2"
    request_type: str = KSERVE_REQUEST
    response_type: str = KSERVE_RESPONSE
    model: str | None = (
        None  # the model a message must name (oip-v2, kserve); others' messages are skipped
    )

    def to_yaml(self) -> dict[str, Any]:
        """The `messages:` block that `parse_messages` reads back into this layout."""
        out: dict[str, Any] = {"format": self.format}
        if self.format == "seldon-v2":
            prefix, namespace, model = re.fullmatch(
                r"(.+)\.([^.]+)\.model\.(.+)\.inputs", self.requests
            ).groups()
            out.update(topic_prefix=prefix, namespace=namespace, model=model)
        else:
            out.update(requests=self.requests, responses=self.responses, model=self.model)
        out.update(
            id=[str(s) for s in self.id],
            timestamp=str(self.timestamp),
            prediction=self.prediction,
            row_id=self.row_id,
        )
        if self.inputs is not None:
            out["inputs"] = self.inputs
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
        if self.format == "kserve-cloudevents":
            out.update(
                body=self.body, request_type=self.request_type, response_type=self.response_type
            )
        return out

    @property
    def batched(self) -> bool:
        """Whether a message may hold more than one row (row_id names the row)."""
        return "{row}" in self.row_id

    def row_ids(self, message_id: str, n: int) -> list[str]:
        """The n row ids of a message: row_id with {id} and {row} filled in."""
        head, _, tail = self.row_id.replace("{id}", message_id).partition("{row}")
        if not self.batched:
            return [head] * n
        return [head + str(row) + tail for row in range(n)]


def parse_source(
    text: Any, where: str, fail: Fail, allowed: tuple[str, ...] = SOURCE_KINDS
) -> Source:
    if not isinstance(text, str) or not text:
        raise fail(
            where,
            f"{text!r}: name a source ({', '.join(allowed)}; header:NAME, input:NAME, parameter:NAME)",
        )
    kind, _, name = text.partition(":")
    if kind not in allowed:
        raise fail(where, f"{text!r}: the source is one of {', '.join(allowed)}")
    if kind in ("header", "input", "parameter") and not name:
        raise fail(where, f"{text!r}: say which {kind}, e.g. {kind}:x-request-id")
    if kind in ("key", "body", "kafka") and name:
        raise fail(where, f"{text!r}: {kind} takes no name")
    return Source(kind, name)


def _topic(raw: Mapping[str, Any], key: str, default: str, fail: Fail) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not _TOPIC.match(value):
        raise fail(f"messages.{key}", f"{value!r} is not a topic name (letters, digits, . _ -)")
    return value


def _name(raw: Mapping[str, Any], key: str, default: str | None, fail: Fail) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail(f"messages.{key}", "must be a name")
    return value


def parse_messages(
    raw: Mapping[str, Any] | None, *, name: str, task: str, fail: Fail
) -> tuple[str, PairedLayout | None, dict[str, Any]]:
    """(format, its PairedLayout or None for json/avro, the keys left for today's Layout).

    >>> from contract.schema import SchemaError
    >>> fmt, layout, rest = parse_messages({"format": "oip-v2", "requests": "in", "responses": "out"}, name="toy",
    ...                                    task="regression", fail=lambda key, why: SchemaError(f"{key}: {why}"))
    >>> fmt, [str(s) for s in layout.id], str(layout.timestamp), layout.model, layout.row_ids("b7", 2)
    ('oip-v2', ['key', 'body'], 'kafka', 'toy', ['b7:0', 'b7:1'])
    """
    raw = dict(raw or {})
    fmt = raw.pop("format", "json")
    if fmt not in FORMATS:
        raise fail("messages.format", f"{fmt!r}: use one of {', '.join(FORMATS)}")
    unknown = set(raw) - _KEYS[fmt]
    if unknown:
        raise fail(
            f"messages.{sorted(unknown)[0]}",
            f"not a key of format {fmt}; it has {', '.join(sorted(_KEYS[fmt] | {'format'}))}",
        )
    if fmt not in PAIRED:
        return fmt, None, raw
    rest = {k: raw[k] for k in ("timestamp_format",) if k in raw}

    if fmt == "seldon-v2":
        # Seldon Core 2 names a model's topics <prefix>.<namespace>.model.<model>.inputs / .outputs.
        prefix = _name(raw, "topic_prefix", "seldon", fail)
        namespace = _name(raw, "namespace", "seldon-mesh", fail)
        model = _name(raw, "model", name, fail)
        base = f"{prefix}.{namespace}.model.{model}"
        requests, responses = f"{base}.inputs", f"{base}.outputs"
        if not _TOPIC.match(requests):
            raise fail("messages.model", f"{requests!r} is not a topic name")
    else:
        defaults = {
            "oip-v2": ("mlserver-input", "mlserver-output"),
            "kserve-cloudevents": (f"{name}.inference-log", f"{name}.inference-log"),
        }[fmt]
        requests = _topic(raw, "requests", defaults[0], fail)
        responses = _topic(raw, "responses", defaults[1], fail)

    default_id = {
        "oip-v2": ["key", "body"],
        "kserve-cloudevents": ["header:ce_id"],
        "seldon-v2": ["header:x-request-id", "key"],
    }[fmt]
    ids = raw.get("id", default_id)
    ids = [ids] if isinstance(ids, str) else ids
    if not isinstance(ids, list) or not ids:
        raise fail("messages.id", "a source or a list of sources tried in order, e.g. [key, body]")
    id_sources = tuple(
        parse_source(s, "messages.id", fail, ("key", "body", "header", "parameter")) for s in ids
    )
    timestamp = parse_source(
        raw.get("timestamp", "kafka"),
        "messages.timestamp",
        fail,
        ("kafka", "header", "input", "parameter"),
    )

    body = raw.get("body", "oip-v2")
    if body not in BODIES:
        raise fail("messages.body", f"{body!r}: use oip-v2 or v1")
    if body == "v1" and timestamp.kind in ("input", "parameter"):
        raise fail(
            "messages.timestamp", "a v1 body has no tensors or parameters: use kafka or header:NAME"
        )

    probabilities = _name(raw, "probabilities", None, fail)
    if probabilities is not None and task != "classification":
        raise fail(
            "messages.probabilities", "only a classifier's responses carry class probabilities"
        )
    row_id = raw.get("row_id", "{id}:{row}")
    if (
        not isinstance(row_id, str)
        or "{id}" not in row_id
        or re.sub(r"\{id\}|\{row\}", "", row_id).count("{")
    ):
        raise fail(
            "messages.row_id",
            f"{row_id!r}: a template with {{id}} and, for batched messages, {{row}} "
            '(e.g. "{id}:{row}"); labels carry this id',
        )
    layout = PairedLayout(
        format=fmt,
        requests=requests,
        responses=responses,
        id=id_sources,
        timestamp=timestamp,
        inputs=_name(raw, "inputs", None, fail),
        prediction=_name(raw, "prediction", "predict", fail),
        probabilities=probabilities,
        row_id=row_id,
        body=body,
        request_type=_name(raw, "request_type", KSERVE_REQUEST, fail),
        response_type=_name(raw, "response_type", KSERVE_RESPONSE, fail),
        # one server's topics carry all its models: a message naming another is someone else's
        model=None if fmt == "seldon-v2" else _name(raw, "model", name, fail),
    )
    if fmt == "kserve-cloudevents" and layout.request_type == layout.response_type:
        raise fail("messages.response_type", "requests and responses need different ce_type values")
    if requests == responses and fmt != "kserve-cloudevents":
        raise fail(
            "messages.responses",
            "requests and responses need their own topics (only KServe's "
            "CloudEvents tell them apart by ce_type)",
        )
    return fmt, layout, rest
