"""The real MLServer 1.7.1 in Kafka mode on the local broker: its topics decoded into the columns sent.

One MLServer serves both examples (the diamonds regressor, the affairs classifier with
predict_proba); the test sends it reference rows in OIP requests of 1, 4 and 25 rows, reads
back its request and response topics, and checks that the decoders and the join give exactly the
rows sent, with the model's predictions as the reference file holds them. The same traffic, put
in Seldon Core 2's protobuf (by MLServer's own converters, contents and raw) and in KServe's
CloudEvents (OIP and v1 bodies), decodes to the same columns. Three known traps of MLServer on
this stack each have a test at the end (see devstack/mlserver.py).

MLServer runs from its own venv (`make mlserver`, which `make test` runs first); without it these tests fail.
About 40-60 s on a 2-core machine, most of it MLServer's start.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from contract.formats.kserve import KServeDecoder
from contract.formats.layout import parse_messages
from contract.formats.oip import OipDecoder
from contract.formats.seldon import SeldonDecoder
from contract.rules import Rejection
from contract.schema import SchemaError
from contract.schema_file import load_schema
from devstack.mlserver import MLServerMissing, ServedModel, mlserver_python, probe, start_mlserver
from monitor.pairing import RowJoin
from monitor.windows import PredictionBatch
from tests.serving import kserve_events, oip_request, seldon_messages

pytestmark = pytest.mark.broker

SIZES = (1, 4, 25)  # rows per request message, cycled
T0 = 1_800_000_000_000  # event times the test sets as the requests' Kafka timestamps


def _fail(key: str, message: str) -> SchemaError:
    return SchemaError(f"test: {key}: {message}")


def layout(fmt: str, task: str, name: str, **keys):
    extra = {"probabilities": "predict_proba"} if task == "classification" else {}
    return parse_messages({"format": fmt, **extra, **keys}, name=name, task=task, fail=_fail)[1]


def expected_batch(frame: pd.DataFrame, schema, ids: list[str], ts: list[int]) -> PredictionBatch:
    """The rows sent, as today's JSON path would see them from our own scorer's messages."""
    messages = []
    for row, ident, when in zip(frame.to_dict("records"), ids, ts):
        message = {
            "id": ident,
            "ts": when,
            "prediction": row["prediction"],
            "features": {f: row[f] for f in schema.feature_names},
        }
        if schema.classification:
            message["probabilities"] = {c: row[f"proba_{c}"] for c in schema.class_texts}
        messages.append(message)
    return PredictionBatch.from_messages(
        messages, schema.numeric, schema.categorical, classification=schema.classification
    )


def sorted_batch(batch: PredictionBatch) -> PredictionBatch:
    order = np.argsort(batch.ids.astype(str), kind="stable")
    return PredictionBatch(
        batch.ids[order],
        batch.ts[order],
        batch.predictions[order],
        {c: v[order] for c, v in batch.numeric.items()},
        {c: v[order] for c, v in batch.categorical.items()},
        {c: v[order] for c, v in batch.probabilities.items()},
    )


def assert_same(actual: PredictionBatch, expected: PredictionBatch) -> None:
    actual, expected = sorted_batch(actual), sorted_batch(expected)
    assert actual.ids.tolist() == expected.ids.tolist()
    assert actual.ts.tolist() == expected.ts.tolist()
    if actual.predictions.dtype == object:
        assert actual.predictions.tolist() == expected.predictions.tolist()
    else:
        np.testing.assert_allclose(actual.predictions, expected.predictions, rtol=1e-12)
    assert actual.numeric.keys() == expected.numeric.keys()
    for name in expected.numeric:
        assert actual.numeric[name].tolist() == expected.numeric[name].tolist(), name
    assert {c: v.tolist() for c, v in actual.categorical.items()} == {
        c: v.tolist() for c, v in expected.categorical.items()
    }
    assert actual.probabilities.keys() == expected.probabilities.keys()
    for name in expected.probabilities:
        np.testing.assert_allclose(
            actual.probabilities[name], expected.probabilities[name], rtol=1e-12
        )


def join(decoder, layout_, requests, responses) -> tuple[PredictionBatch, RowJoin]:
    """Decode (value, key, headers, timestamp) tuples and join them, responses offered first."""
    decoded_requests = decoder.requests(requests)
    decoded_responses = decoder.responses(responses)
    assert not [r for r in decoded_requests + decoded_responses if isinstance(r, Rejection)]
    joiner = RowJoin(layout_)
    first = joiner.add(responses=decoded_responses)
    second = joiner.add(requests=decoded_requests)
    assert first.batch is None and not first.expired and not second.expired and not second.refused
    assert joiner.pending == (0, 0)
    return second.batch, joiner


@pytest.fixture(scope="module")
def mlserver_traffic(broker, model_dir, affairs_dir, tmp_path_factory):
    """Requests of both examples sent through a real MLServer: {example: (frame, ids, ts, requests,
    responses)}, messages as (value, key, headers, Kafka timestamp) tuples read from its topics."""
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    try:
        mlserver_python()
    except MLServerMissing as missing:
        pytest.fail(f"{missing} (`make test` builds it: `make mlserver`)")
    suffix = uuid.uuid4().hex[:8]
    requests_topic, responses_topic = f"mlserver-in-{suffix}", f"mlserver-out-{suffix}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics(
        [NewTopic(requests_topic, 3, 1), NewTopic(responses_topic, 3, 1)]
    ).values():
        future.result()
    folder = tmp_path_factory.mktemp("mlserver")
    server = start_mlserver(
        [
            ServedModel("diamonds", model_dir / "model.joblib"),
            ServedModel("affairs", affairs_dir / "model.joblib"),
        ],
        broker.bootstrap,
        requests_topic,
        responses_topic,
        folder / "repository",
        log_path=folder / "mlserver.log",
    )
    try:
        examples = {
            "diamonds": (model_dir, ["predict"]),
            "affairs": (affairs_dir, ["predict", "predict_proba"]),
        }
        frames = {
            name: pd.read_csv(home / "reference.csv").head(60)
            for name, (home, _) in examples.items()
        }
        schemas = {name: load_schema(home / "schema.yaml") for name, (home, _) in examples.items()}
        warm = oip_request(
            frames["diamonds"][list(schemas["diamonds"].feature_names)].head(1), "", ["predict"]
        )
        probes = set(probe(broker.bootstrap, server, "diamonds", warm))

        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        sent, count = {}, 0
        for name, (_, outputs) in examples.items():
            frame, schema = frames[name], schemas[name]
            ids, ts, start, k = [], [], 0, 0
            while start < len(frame):
                size = SIZES[k % len(SIZES)]
                part = frame.iloc[start : start + size]
                ident, when = f"{name}-{k}", T0 + 1000 * k
                body = oip_request(part[list(schema.feature_names)], ident, outputs)
                # Every other request names its id only in the body: MLServer's id is the key, else the body id.
                key = ident.encode() if k % 2 == 0 else None
                producer.produce(
                    requests_topic,
                    json.dumps(body).encode(),
                    key=key,
                    timestamp=when,
                    headers=[("mlserver-model", name.encode())],
                )
                ids += [f"{ident}:{row}" for row in range(len(part))]
                ts += [when] * len(part)
                start, k, count = start + size, k + 1, count + 1
            sent[name] = (frame, ids, ts)
        producer.flush(30)

        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"test-{suffix}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
        consumer.subscribe([requests_topic, responses_topic])
        messages = {requests_topic: [], responses_topic: []}
        deadline = time.monotonic() + 90
        answered = 0
        while answered < count and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                if m.error() or (m.key() or b"").decode() in probes:
                    continue
                messages[m.topic()].append(m)
                answered += m.topic() == responses_topic
        consumer.close()
        assert answered == count, (
            f"MLServer answered {answered} of {count} requests (log: {folder / 'mlserver.log'})"
        )
        traffic = {}
        for name in examples:

            def mine(m, name=name):
                return json.loads(m.value()).get("id", "").startswith(f"{name}-") or (
                    m.key() or b""
                ).decode().startswith(f"{name}-")

            as_tuples = [
                [
                    (m.value(), m.key(), m.headers(), m.timestamp()[1])
                    for m in messages[topic]
                    if mine(m)
                ]
                for topic in (requests_topic, responses_topic)
            ]
            traffic[name] = (*sent[name], *as_tuples, schemas[name])
        yield traffic
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["diamonds", "affairs"])
def test_mlserver_topics_decode_into_the_rows_sent(mlserver_traffic, name):
    frame, ids, ts, requests, responses, schema = mlserver_traffic[name]
    oip = layout("oip-v2", schema.task, name)
    batch, joiner = join(OipDecoder(schema, oip), oip, requests, responses)
    assert_same(batch, expected_batch(frame, schema, ids, ts))
    assert joiner.counters["joined_rows"] == len(frame) and joiner.counters["duplicates"] == 0
    # What MLServer wrote, as measured: key = the id; CloudEvents headers naming the model.
    value, key, headers, _ = responses[0]
    names = dict(headers)
    assert (
        key.decode()
        == json.loads(value)["id"]
        == names["Ce-Id"].decode()
        == names["Ce-Requestid"].decode()
    )
    assert (
        names["Ce-Type"] == b"io.seldon.serving.inference.response"
        and names["Ce-Modelid"] == name.encode()
    )
    # One MLServer's topics carry both models: each monitor skips the other's messages, by their headers.
    decoder, other = (
        OipDecoder(schema, oip),
        OipDecoder(schema, layout("oip-v2", schema.task, "someone-else")),
    )
    assert {
        decoder.other_model(side, m[2])
        for side, ms in (("request", requests), ("response", responses))
        for m in ms
    } == {None}
    assert (
        {other.other_model("request", m[2]) for m in requests}
        == {other.other_model("response", headers)}
        == {name}
    )


@pytest.fixture(scope="module")
def seldon_traffic(mlserver_traffic):
    """The same traffic as Seldon Core 2 writes it, {(example, raw): (requests, responses)}: values
    converted by MLServer's own gRPC converters (tensor contents, or raw bytes), in one process
    (importing MLServer takes ~3 s). Seldon's pipeline gateway keys a request by
    <model>.<request id> and adds x-request-id; its model gateway copies both onto the response."""
    traffic = [
        ((name, raw, side), message)
        for (name, traffic), raw in itertools.product(mlserver_traffic.items(), (False, True))
        for side, messages in (("request", traffic[3]), ("response", traffic[4]))
        for message in messages
    ]
    converted: dict = {}
    for name in mlserver_traffic:
        mine = [(where, message) for where, message in traffic if where[0] == name]
        messages = seldon_messages(name, [(side, raw, message) for (_, raw, side), message in mine])
        for ((_, raw, side), _), message in zip(mine, messages):
            converted.setdefault((name, raw), ([], []))[side == "response"].append(message)
    return converted


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
@pytest.mark.parametrize("name", ["diamonds", "affairs"])
def test_seldon_protobuf_of_the_same_traffic_decodes_the_same(
    mlserver_traffic, seldon_traffic, name, raw
):
    frame, ids, ts, _, _, schema = mlserver_traffic[name]
    requests, responses = seldon_traffic[name, raw]
    seldon_layout = layout("seldon-v2", schema.task, name, namespace="models", model=name)
    assert seldon_layout.requests == f"seldon.models.model.{name}.inputs"
    batch, _ = join(SeldonDecoder(schema, seldon_layout), seldon_layout, requests, responses)
    assert_same(batch, expected_batch(frame, schema, ids, ts))


@pytest.mark.parametrize("body", ["oip-v2", "v1"])
def test_kserve_cloudevents_of_the_same_traffic_decode_the_same(mlserver_traffic, body):
    frame, ids, ts, requests, responses, schema = mlserver_traffic["affairs"]
    events = kserve_events(
        requests, responses, body, "affairs", list(schema.feature_names), classes=2
    )
    kserve = layout("kserve-cloudevents", "classification", "affairs", body=body)
    decoder = KServeDecoder(schema, kserve)
    assert [decoder.side("one-topic", e[2]) for _, e in events] == [side for side, _ in events]
    assert {decoder.other_model(side, e[2]) for side, e in events} == {
        None
    }  # ce_inferenceservicename: affairs
    sides = {side: [e for s, e in events if s == side] for side in ("request", "response")}
    batch, _ = join(decoder, kserve, sides["request"], sides["response"])
    assert_same(batch, expected_batch(frame, schema, ids, ts))


# -- the traps -------------------------------------------------------------------------------------
def _in_mlserver(code: str) -> str:
    try:
        python = mlserver_python()
    except MLServerMissing as missing:
        pytest.fail(f"{missing} (`make test` builds it: `make mlserver`)")
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_uvloop_trap_the_venv_has_a_uvloop_whose_loop_mlserver_workers_can_get():
    # MLServer's inference worker calls asyncio.get_event_loop() after uvloop.install(); uvloop 0.23
    # raises there ("no current event loop"), the worker dies, the model never loads and MLServer
    # exits 0. 0.21 gives the loop (the fixture above starts a real worker with it).
    out = _in_mlserver(
        "import warnings, asyncio, uvloop; warnings.simplefilter('ignore'); uvloop.install(); "
        "asyncio.get_event_loop(); print(uvloop.__version__)"
    )
    assert out == "0.21.0"


def test_pandas_codec_trap_string_columns_need_object_dtype():
    out = _in_mlserver("""
import pandas as pd
from mlserver.codecs import PandasCodec
frame = pd.DataFrame({"cut": ["Ideal", "Good"], "carat": [0.3, 1.1]})
assert str(frame["cut"].dtype) == "str"  # pandas 3
try:
    PandasCodec.encode_request(frame)
    print("encoded")
except KeyError as error:
    print("KeyError", error)
request = PandasCodec.encode_request(frame.astype({"cut": object}))
print(request.inputs[0].datatype, request.inputs[0].data.root)
""")
    assert out.splitlines() == ["KeyError 'O'", "BYTES [b'Ideal', b'Good']"]


def test_fetch_wait_trap_the_launcher_sets_mlserver_consumers_fetch_wait():
    # aiokafka's default fetch_max_wait_ms=500 and Tansu holds each fetch that long: measured with
    # aiokafka 0.14 on Tansu 0.6, produce -> consume took median 84 ms, max 487 ms at the default and
    # median 4 ms, max 13 ms at 10 ms. Here only the setting is checked, not a time.
    from devstack.mlserver import _LAUNCH

    code = _LAUNCH.split("from mlserver.cli.main")[0] + (
        "import asyncio\n"
        "async def wait():  # aiokafka builds a consumer only inside an event loop\n"
        "    return kafka_server.AIOKafkaConsumer('t', bootstrap_servers='127.0.0.1:1')._fetch_max_wait_ms\n"
        "print(asyncio.run(wait()))\n"
    )
    out = _in_mlserver(f"import os; os.environ['DEVSTACK_FETCH_MAX_WAIT_MS'] = '10'\n{code}")
    default = _in_mlserver(code)
    assert (out, default) == ("10", "500")
