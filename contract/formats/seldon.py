"""Seldon Core 2's model topics: OIP protobuf `ModelInferRequest` / `ModelInferResponse`.

Seldon Core 2 writes a model's requests to `<prefix>.<namespace>.model.<model>.inputs` and the
responses to `.outputs` (prefix `seldon`). Its pipeline gateway keys a request by
`<model>.<request id>` and adds the header `x-request-id`; the model gateway copies the request's
key and headers onto the response (scheduler/pkg/kafka/pipeline/kafkamanager.go, gateway/worker.go).
Values are the protobuf messages of the Open Inference Protocol's gRPC API (package `inference`, as
in KServe's grpc_predict_v2.proto).

The generated classes come from `tritonclient` (`tritonclient.grpc.service_pb2`, NVIDIA's
maintained client; its `inference.ModelInferRequest` has the same field numbers: the MLServer
integration test decodes bytes written by MLServer's own converters). Import cost measured on a
2-core machine: MLServer's `mlserver.grpc.dataplane_pb2` imports all of MLServer (~3.3 s, ~1,300
modules: FastAPI, pandas, OpenTelemetry); tritonclient's imports grpcio and protobuf (~0.45 s,
~330 modules). Imported on first use only, so the other formats never pay for it.

A tensor's values are in `contents.<type>_contents` or, when the client sent raw bytes, in
`raw_input_contents[i]` / `raw_output_contents[i]` (little-endian; BYTES as 4-byte length + bytes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from contract.formats.paired import Body, Headers, PairedDecoder
from contract.formats.tensors import SHAPE_MISMATCH, Refused, Values, kind_of, matrix_shape
from contract.rules import WRONG_TYPE

NOT_PROTOBUF = "not_protobuf"  # reason

_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_RAW = {
    "BOOL": "<?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _messages() -> Any:
    from tritonclient.grpc import service_pb2  # ~0.45 s: only when a schema names this format

    return service_pb2


def _parameter(value: Any) -> Any:
    which = value.WhichOneof("parameter_choice")
    return getattr(value, which) if which else None


def proto_values(tensor: Any, raw: bytes | None) -> Values:
    """The values of an InferInputTensor / InferOutputTensor, from its contents or its raw bytes."""
    name, datatype = tensor.name, tensor.datatype
    kind = kind_of(name, datatype)
    if raw is not None:
        values = _raw(name, datatype, raw)
    else:
        field = _CONTENTS.get(datatype)
        if field is None:
            raise Refused(WRONG_TYPE, f"tensor {name!r} ({datatype}) can only travel as raw bytes")
        contents = getattr(tensor.contents, field)
        if not len(contents) and tensor.HasField("contents"):
            other = next((f.name for f, v in tensor.contents.ListFields() if len(v)), None)
            if other is not None:
                raise Refused(
                    WRONG_TYPE, f"tensor {name!r} is {datatype} but its values are in {other}"
                )
        values = _texts(name, list(contents)) if kind == "bytes" else list(contents)
    n, k = matrix_shape(name, list(tensor.shape), len(values))
    return Values(datatype, n, k, values)


def _texts(name: str, items: list[bytes]) -> list[str]:
    try:
        return [item.decode() for item in items]
    except UnicodeDecodeError:
        raise Refused(WRONG_TYPE, f"tensor {name!r} holds bytes that are not UTF-8 text") from None


def _raw(name: str, datatype: str, raw: bytes) -> list:
    if datatype != "BYTES":
        size = np.dtype(_RAW[datatype]).itemsize
        if len(raw) % size:
            raise Refused(
                SHAPE_MISMATCH,
                f"tensor {name!r}: {len(raw)} raw bytes are not whole {datatype} values",
            )
        return np.frombuffer(raw, _RAW[datatype]).tolist()
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise Refused(SHAPE_MISMATCH, f"tensor {name!r}: raw BYTES cut inside a length prefix")
        length = int.from_bytes(raw[at : at + 4], "little")
        items.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
        if at > len(raw):
            raise Refused(SHAPE_MISMATCH, f"tensor {name!r}: raw BYTES cut inside a value")
    return _texts(name, items)


class SeldonDecoder(PairedDecoder):
    """Seldon Core 2's .inputs / .outputs topics."""

    def body(self, value: bytes, headers: Headers, side: str) -> Body:
        from google.protobuf.message import DecodeError

        pb = _messages()
        message = pb.ModelInferRequest() if side == "request" else pb.ModelInferResponse()
        try:
            message.ParseFromString(value)
        except DecodeError as exc:
            raise Refused(NOT_PROTOBUF, f"not a {type(message).__name__}: {exc}") from None
        tensors = message.inputs if side == "request" else message.outputs
        raws = list(
            message.raw_input_contents if side == "request" else message.raw_output_contents
        )
        if raws and len(raws) != len(tensors):
            raise Refused(SHAPE_MISMATCH, f"{len(raws)} raw contents for {len(tensors)} tensors")
        parameters = {key: _parameter(v) for key, v in message.parameters.items()}
        return Body(
            message.id or None,
            parameters,
            {t.name: (t, raws[i] if raws else None) for i, t in enumerate(tensors)},
            _values,
        )


def _values(tensor_and_raw: tuple[Any, bytes | None]) -> Values:
    return proto_values(*tensor_and_raw)
