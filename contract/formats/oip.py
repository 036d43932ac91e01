"""Open Inference Protocol (V2) JSON: MLServer's Kafka mode, and KServe's logged OIP bodies.

A request is `{"id", "parameters", "inputs": [{"name", "datatype", "shape", "data", "parameters"}]}`,
a response `{"model_name", "model_version", "id", "parameters", "outputs": [...]}`, the tensors
columnar (MLServer's pandas content type: one input per column, shape [n, 1]). The envelope is
decoded by msgspec into Structs whose `data` stays raw JSON; a tensor's data is decoded, by a typed
decoder for its datatype, only when the schema names it (`tensors.json_values`).

As MLServer 1.7.1 writes them (measured on the local broker):
- request topic: header `mlserver-model: <name>`, key optional (it replaces the body's id);
- response topic: key = the request's key, else its body id, else a uuid MLServer makes up; headers
  Ce-Specversion 0.3, Ce-Source, Ce-Type io.seldon.serving.inference.response, Ce-Modelid,
  Ce-Inferenceservicename, Ce-Endpoint, Ce-Id and Ce-Requestid (= the id); body id = the id;
- a classifier's `predict` is BYTES (string classes) or INT64, shape [n, 1]; `predict_proba` FP64
  [n, k] flat row-major, columns in the model's `classes_` order (no class names: the schema's
  `classes` must list them in that order).
"""

from __future__ import annotations

from typing import Any, Union

import msgspec

from contract.formats.paired import Body, Headers, PairedDecoder
from contract.formats.tensors import (
    KINDS,
    MAX_ROWS,
    PYTHON,
    Refused,
    Values,
    json_values,
    matrix_shape,
)
from contract.rules import MISSING_FIELD, NOT_JSON, NOT_OBJECT, WRONG_TYPE


class JsonTensor(msgspec.Struct, gc=False):
    name: str
    datatype: Any
    shape: Any
    data: msgspec.Raw
    parameters: Any = None


class JsonRequest(msgspec.Struct, gc=False):
    inputs: list[JsonTensor]
    id: Any = None
    parameters: Any = None


class JsonResponse(msgspec.Struct, gc=False):
    outputs: list[JsonTensor]
    id: Any = None
    parameters: Any = None
    model_name: Any = None
    model_version: Any = None


_DECODERS = {
    "request": msgspec.json.Decoder(JsonRequest),
    "response": msgspec.json.Decoder(JsonResponse),
}


# The fast path: every tensor decoded in C by its datatype (a tagged union on "datatype"), flat data
# typed as the datatype says. A message it refuses (an unknown datatype, nested data, a number sent
# as a string, a null) goes through JsonTensor's raw data and `json_values`, which accept nested
# data and name the reason for the rest.
def _typed_tensor(datatype: str) -> type:
    return msgspec.defstruct(
        f"Tensor{datatype}",
        [
            ("name", str),
            ("shape", list[int]),
            ("data", list[PYTHON[KINDS[datatype]]]),
            ("parameters", Any, None),
        ],
        tag_field="datatype",
        tag=datatype,
        gc=False,
    )


_TYPED = tuple(_typed_tensor(datatype) for datatype in KINDS)
_TAGS = {
    struct: struct.__struct_config__.tag for struct in _TYPED
}  # (__struct_config__ is built per access)
_TypedTensor = Union[_TYPED]  # noqa: UP007 (a runtime union of Struct types)
_TYPED_DECODERS = {
    "request": msgspec.json.Decoder(
        msgspec.defstruct(
            "TypedRequest",
            [("inputs", list[_TypedTensor]), ("id", Any, None), ("parameters", Any, None)],
            gc=False,
        )
    ),
    "response": msgspec.json.Decoder(
        msgspec.defstruct(
            "TypedResponse",
            [("outputs", list[_TypedTensor]), ("id", Any, None), ("parameters", Any, None)],
            gc=False,
        )
    ),
}


def _typed_values(tensor: Any) -> Values:
    shape, data = tensor.shape, tensor.data
    if (
        len(shape) == 1
        and shape[0] == len(data)
        or len(shape) == 2
        and shape[0] * shape[1] == len(data)
        and shape[1] > 0
        and shape[0] >= 0
    ):
        n = shape[0]
        if n <= MAX_ROWS:
            return Values(_TAGS[type(tensor)], n, shape[1] if len(shape) == 2 else 1, data)
    n, k = matrix_shape(tensor.name, shape, len(data))  # raises, naming what is wrong
    return Values(_TAGS[type(tensor)], n, k, data)


def json_body(value: bytes, side: str) -> Body:
    """An OIP JSON request or response as a Body; raises Refused naming why not."""
    try:
        message = _TYPED_DECODERS[side].decode(value)
    except msgspec.DecodeError:  # ValidationError included: the slow path names the reason
        pass
    else:
        tensors = message.inputs if side == "request" else message.outputs
        parameters = message.parameters if isinstance(message.parameters, dict) else {}
        return Body(message.id, parameters, {t.name: t for t in tensors}, _typed_values)
    try:
        message = _DECODERS[side].decode(value)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        raise _refusal(value, side, exc) from None
    except msgspec.DecodeError as exc:
        raise Refused(NOT_JSON, f"not JSON: {exc}") from None
    tensors = message.inputs if side == "request" else message.outputs
    parameters = message.parameters if isinstance(message.parameters, dict) else {}
    return Body(message.id, parameters, {t.name: t for t in tensors}, _raw_values)


def _raw_values(tensor: JsonTensor) -> Values:
    return json_values(tensor.name, tensor.datatype, tensor.shape, tensor.data)


def _refusal(value: bytes, side: str, exc: msgspec.ValidationError) -> Refused:
    if not value.lstrip().startswith(b"{"):
        return Refused(NOT_OBJECT, f"an OIP {side} is a JSON object")
    text = str(exc)
    reason = MISSING_FIELD if text.startswith("Object missing required field") else WRONG_TYPE
    return Refused(reason, f"not an OIP {side}: {text}")


class OipDecoder(PairedDecoder):
    """MLServer's Kafka mode: OIP JSON requests and responses on their own topics."""

    MODEL_HEADERS = {
        "request": "mlserver-model",
        "response": "Ce-Modelid",
    }  # as MLServer 1.7.1 writes them

    def body(self, value: bytes, headers: Headers, side: str) -> Body:
        return json_body(value, side)
