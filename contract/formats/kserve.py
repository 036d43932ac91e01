"""KServe's inference logger: CloudEvents in Kafka binary mode (through Knative's Kafka broker).

Binary mode puts the event's attributes in headers `ce_<attribute>` (`content-type` for
datacontenttype) and its data in the value, as the `cloudevents` package's `to_binary` writes
them. KServe's logger sends one event per request and one per response:
- `ce_type` `org.kubeflow.serving.inference.request` / `.response` (so both may share a topic),
- `ce_id` the same for a request and its response (the join key), `ce_source`, `ce_time`,
  extensions `ce_inferenceservicename`, `ce_namespace`, `ce_component`, `ce_endpoint`;
- the data is the body as the model server saw it: KServe v1 `{"instances": [...]}` /
  `{"predictions": [...]}`, or OIP JSON (`messages.body: oip-v2`, read by `oip.json_body`).

Read straight from the headers (no event object is built); the `cloudevents` package writes the
tests' events. A v1 instance is a list of values in the schema's feature order, or an object keyed
by feature name; a v1 prediction is a class or number per row, or a list of class probabilities
per row (then the predicted class is the most probable, the first on a tie, as scikit-learn's
`predict` picks it).
"""

from __future__ import annotations

import orjson

from contract.formats.layout import PairedLayout
from contract.formats.oip import json_body
from contract.formats.paired import Body, Headers, PairedDecoder, header
from contract.formats.tensors import SHAPE_MISMATCH, Refused, Values
from contract.rules import MISSING_FIELD, NOT_JSON, NOT_OBJECT, WRONG_TYPE
from contract.schema import Schema

UNKNOWN_EVENT = (
    "unknown_event"  # reason: a CloudEvent that is neither an inference request nor a response
)
STRUCTURED = "application/cloudevents"  # content-type of structured mode


class KServeDecoder(PairedDecoder):
    """KServe's logged CloudEvents; requests and responses told apart by ce_type."""

    MODEL_HEADERS = {"request": "ce_inferenceservicename", "response": "ce_inferenceservicename"}

    def __init__(
        self, schema: Schema, layout: PairedLayout, timestamp_format: str = "epoch_ms"
    ) -> None:
        super().__init__(schema, layout, timestamp_format)
        self._types = {
            layout.request_type.encode(): "request",
            layout.response_type.encode(): "response",
        }

    def side(self, topic: str, headers: Headers) -> str | None:
        """From ce_type, whatever the topic (Knative's broker writes both to one)."""
        return self._types.get(header(headers, "ce_type") or b"")

    def body(self, value: bytes, headers: Headers, side: str) -> Body:
        kind = header(headers, "ce_type")
        if kind is None:
            content_type = header(headers, "content-type") or b""
            if content_type.startswith(STRUCTURED.encode()):
                raise Refused(
                    UNKNOWN_EVENT,
                    "a structured-mode CloudEvent: KServe's events are read in binary "
                    "mode (attributes in ce_ headers)",
                )
            raise Refused(MISSING_FIELD, "no ce_type header: not a CloudEvent in binary mode")
        if self._types.get(kind) != side:
            raise Refused(
                UNKNOWN_EVENT,
                f"ce_type {kind.decode(errors='replace')!r} is not an inference {side} "
                f"({self.layout.request_type if side == 'request' else self.layout.response_type})",
            )
        if self.layout.body == "oip-v2":
            return json_body(value, side)
        return self._v1(value, side)

    def _v1(self, value: bytes, side: str) -> Body:
        try:
            message = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Refused(NOT_JSON, f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise Refused(NOT_OBJECT, f"a v1 {side} is a JSON object")
        key = "instances" if side == "request" else "predictions"
        rows = message.get(key)
        if not isinstance(rows, list):
            raise Refused(
                MISSING_FIELD if rows is None else WRONG_TYPE, f"a v1 {side} has a list '{key}'"
            )
        tensors = self._instances(rows) if side == "request" else self._predictions(rows)
        return Body(message.get("id"), {}, tensors, _same)

    def _instances(self, rows: list) -> dict[str, Values]:
        """One (n, 1) tensor per feature from v1 instances: lists by position, objects by name."""
        names = [f.name for f in self.schema.features]
        if all(isinstance(row, list) for row in rows):
            if any(len(row) != len(names) for row in rows):
                raise Refused(
                    SHAPE_MISMATCH,
                    f"a v1 instance is a list of {len(names)} values ({', '.join(names)})",
                )
            columns = list(zip(*rows)) if rows else [()] * len(names)
        elif all(isinstance(row, dict) for row in rows):
            missing = next((name for row in rows for name in names if name not in row), None)
            if missing is not None:
                raise Refused(MISSING_FIELD, f"a v1 instance has no {missing!r}")
            columns = [[row[name] for row in rows] for name in names]
        else:
            raise Refused(
                WRONG_TYPE, "v1 instances are all lists (features in schema order) or all objects"
            )
        return {name: _column(name, list(values)) for name, values in zip(names, columns)}

    def _predictions(self, rows: list) -> dict[str, Values]:
        layout, classes = self.layout, self.schema.class_texts
        if rows and all(isinstance(row, list) for row in rows):
            if not layout.probabilities:
                raise Refused(
                    WRONG_TYPE,
                    "v1 predictions are lists (probabilities) but messages.probabilities "
                    "is not set",
                )
            probabilities = _column(layout.probabilities, rows)
            if probabilities.kind not in ("float", "int") or probabilities.k != len(classes):
                raise Refused(
                    SHAPE_MISMATCH, f"a v1 prediction is {len(classes)} class probabilities"
                )
            # scikit-learn's predict is classes_[argmax(predict_proba)]; max() keeps the first on a tie.
            columns = range(len(classes))
            predicted = [classes[max(columns, key=row.__getitem__)] for row in rows]
            return {
                layout.prediction: Values("BYTES", len(rows), 1, predicted),
                layout.probabilities: probabilities,
            }
        if layout.probabilities:
            raise Refused(
                MISSING_FIELD, "messages.probabilities is set but v1 predictions are single values"
            )
        return {layout.prediction: _column(layout.prediction, rows)}


def _same(values: Values) -> Values:
    return values


def _column(name: str, values: list) -> Values:
    """v1 values as OIP-typed Values: integers INT64, other numbers FP64, strings BYTES, booleans BOOL;
    a list per row is a row of k values."""
    width = len(values[0]) if values and isinstance(values[0], list) else 1
    if width > 1 or values and isinstance(values[0], list):
        if not all(isinstance(row, list) and len(row) == width for row in values):
            raise Refused(SHAPE_MISMATCH, f"{name!r}: v1 rows of different lengths")
        flat = [v for row in values for v in row]
    else:
        flat = values
    if all(type(v) is bool for v in flat):
        datatype = "BOOL"
    elif all(type(v) is int for v in flat):
        datatype = "INT64"
    elif all(type(v) in (int, float) for v in flat):
        datatype = "FP64"
    elif all(type(v) is str for v in flat):
        datatype = "BYTES"
    else:
        bad = next(type(v).__name__ for v in flat if type(v) not in (int, float, str))
        raise Refused(
            WRONG_TYPE,
            f"{name!r}: v1 values of one column are all numbers, all strings or all "
            f"booleans (found a {bad})",
        )
    return Values(datatype, len(values), width, flat)
