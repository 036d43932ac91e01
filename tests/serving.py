"""The serving systems' messages, as the tests write them: an OIP request as an MLServer client builds
one, the same traffic as KServe's logger (CloudEvents in binary mode, OIP or v1 bodies) and as Seldon
Core 2 (OIP protobuf by MLServer's own gRPC converters, run in MLServer's venv)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Sequence

import pandas as pd

from contract.formats.layout import KSERVE_REQUEST, KSERVE_RESPONSE
from devstack.mlserver import mlserver_python

Message = tuple[bytes, bytes | None, list, int]  # (value, key, headers, Kafka timestamp ms)


def oip_request(frame: pd.DataFrame, ident: str, outputs: Sequence[str]) -> dict:
    """An OIP request as an MLServer client builds one from a frame (pandas content type: one
    input per column). String columns go in as Python str: pandas 3's own str dtype is what
    MLServer's PandasCodec cannot encode (test_mlserver's pandas codec trap)."""
    inputs = []
    for name, column in frame.items():
        kind = column.dtype.kind
        datatype = (
            "FP64"
            if kind == "f"
            else "INT64"
            if kind in "iu"
            else "BOOL"
            if kind == "b"
            else "BYTES"
        )
        data = column.astype(object).tolist() if datatype == "BYTES" else column.tolist()
        inputs.append({"name": name, "datatype": datatype, "shape": [len(column), 1], "data": data})
    return {
        "id": ident,
        "parameters": {"content_type": "pd"},
        "inputs": inputs,
        "outputs": [{"name": o} for o in outputs],
    }


def cloud_event(kind: str, ident: str, data: dict, when: int, service: str) -> Message:
    """One event of KServe's logger, in Kafka binary mode, written by the `cloudevents` package."""
    from cloudevents.core.bindings.kafka import to_binary
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(
        attributes={
            "type": kind,
            "source": "http://localhost:9081/",
            "id": ident,
            "datacontenttype": "application/json",
            "inferenceservicename": service,
        },
        data=data,
    )
    message = to_binary(event, JSONFormat())
    return message.value, None, list(message.headers.items()), when


def v1_body(side: str, oip: dict, features: Sequence[str], classes: int = 0) -> dict:
    """KServe's v1 body of an OIP request or response: instances as lists in feature order; a
    classifier's predictions as lists of class probabilities, a regressor's as numbers."""
    tensors = {t["name"]: t for t in oip["inputs" if side == "request" else "outputs"]}
    if side == "request":
        return {"instances": [list(row) for row in zip(*(tensors[n]["data"] for n in features))]}
    if classes:
        proba = tensors["predict_proba"]["data"]
        return {"predictions": [proba[i : i + classes] for i in range(0, len(proba), classes)]}
    return {"predictions": tensors["predict"]["data"]}


def kserve_events(
    requests: Iterable[Message],
    responses: Iterable[Message],
    body: str,
    service: str,
    features: Sequence[str],
    classes: int = 0,
) -> list[tuple[str, Message]]:
    """MLServer's traffic as KServe's logger writes it: (side, event), a request and its response
    sharing ce_id (the request's key, else its body id)."""
    events = []
    for side, kind, messages in (
        ("request", KSERVE_REQUEST, requests),
        ("response", KSERVE_RESPONSE, responses),
    ):
        for value, key, _, when in messages:
            oip = json.loads(value)
            ident = (key or b"").decode() or oip["id"]
            data = oip if body == "oip-v2" else v1_body(side, oip, features, classes)
            events.append((side, cloud_event(kind, ident, data, when, service)))
    return events


_TO_PROTOBUF = """
import json, sys
from mlserver.grpc.converters import ModelInferRequestConverter, ModelInferResponseConverter
from mlserver.types import InferenceRequest, InferenceResponse
for line in sys.stdin:
    side, raw, value = json.loads(line)
    for tensor in value["inputs" if side == "request" else "outputs"]:
        if tensor["datatype"] == "BYTES":  # gRPC carries BYTES as bytes; JSON had them as text
            tensor["data"] = [item.encode() for item in tensor["data"]]
    if side == "request":
        message = ModelInferRequestConverter.from_types(InferenceRequest(**value), "model", use_raw=raw)
    else:
        message = ModelInferResponseConverter.from_types(InferenceResponse(**value), use_raw=raw)
    print(message.SerializeToString().hex())
"""


def seldon_messages(model: str, traffic: Sequence[tuple[str, bool, Message]]) -> list[Message]:
    """OIP JSON messages (side, raw, message) as Seldon Core 2 writes them: protobuf by MLServer's
    own converters (tensor contents, or raw bytes), in one process (importing MLServer takes ~3 s).
    Seldon's pipeline gateway keys a request by <model>.<request id> and adds x-request-id; its
    model gateway copies both onto the response."""
    lines = [json.dumps([side, raw, json.loads(message[0])]) for side, raw, message in traffic]
    out = subprocess.run(
        [mlserver_python(), "-c", _TO_PROTOBUF],
        input="\n".join(lines),
        text=True,
        capture_output=True,
        check=True,
    ).stdout.split()
    converted = []
    for value_hex, (_, _, (value, key, _, when)) in zip(out, traffic):
        ident = json.loads(value)["id"] or key.decode()
        converted.append(
            (
                bytes.fromhex(value_hex),
                f"{model}.{ident}".encode(),
                [("x-request-id", ident.encode())],
                when,
            )
        )
    return converted
