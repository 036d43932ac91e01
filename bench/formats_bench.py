"""Records/s of the monitor on OIP batches of 1, 100 and 1,000 rows, against one JSON object per record.

Main table (end to end, no broker): the monitor's own per-batch work, as `monitor run` does it for
each consumer batch (monitor.run.Processor.process): `source.read(messages)` on the source that
`monitor.sources.prediction_source(schema, topics)` builds from the schema's `messages:` block,
then `DriftMonitor.update(read.batch)` on the monitor `monitor.baseline.build_monitor` builds
(count window 1000, step 250, calibrated thresholds; `Baseline(reference)` has no performance
estimator: as --estimate off). Not measured: the consumer itself, offsets, metrics, gauges, the DLQ
and label messages. The messages are real `confluent_kafka.Message` objects, constructed in Python
(confluent-kafka 2.16.1 has a constructor meant for tests), so `JsonPredictions` / `AvroPredictions` map
`Message.value` over them as over consumed ones. Per model (MODEL_DIR, default artifacts/: the
diamonds regression; MODEL_DIR/affairs: the affairs classifier) the same reference rows (drawn with
replacement, seeded) go through:
- json: today's path, the scorer's prediction messages (one JSON object per record) on
  <model>.predictions -> `JsonPredictions`, consumer batches of 1,000 messages;
- oip-v2 (MLServer's Kafka mode), schema `messages: {format: oip-v2}` -> `PairedPredictions`:
  request and response messages as MLServer writes them (pandas content type, one [n, 1] input per
  feature; `predict` [n, 1], a classifier's `predict_proba` [n, k]) at 1, 100 and 1,000 rows per
  message; a consumer batch is at most 1,000 messages: up to 500 responses, then the 500 requests
  they answer (responses offered first, so each request joins as it arrives);
- seldon-v2 at 100 rows: the same messages as OIP protobuf (tritonclient's classes, tensor
  contents) on Seldon Core 2's model topics, batched as oip-v2;
- avro: the JSON layout in Avro with Schema Registry framing -> `AvroPredictions`, the in-memory
  `mock://` registry shared by the serializer and the source; batches as json.
Each (path, round) gets a fresh source, and the model's one monitor is reset to its empty state
(`load_dict` of its state just after `build_monitor`, whose thresholds are kept, as in a running
monitor), both outside the timed part. The first round checks that every path closes the same
panes with the same drift scores as json (the same rows in the same order).

Second table (decode only, the first version of this bench): decoding and joining alone, into the
monitor's columns, without Message objects or the monitor: `monitor.decode.Decoder.predictions` for
json, `OipDecoder` / `SeldonDecoder` + `monitor.pairing.RowJoin` for the paired formats (up to
1,000 messages a side per step), `AvroReader` then the JSON path for avro.

Rounds alternate all paths; the tables give, over --rounds, the median records/s by the wall clock
and per CPU second of this process (time.process_time: on shared cores, the time other processes
take is not counted), each with its ratio to json's median, and the min-max over rounds of the CPU
ratio to json within a round. The messages are built first and frozen out of garbage collection,
as the monitor freezes its start-up heap. Timings are printed, never asserted.
Run: `nice -n 10 .venv/bin/python bench/formats_bench.py` (about 2 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.formats import paired_decoder
from contract.schema import Schema
from contract.schema_file import load_schema, parse_schema
from contract.settings import Topics
from monitor.baseline import Baseline, build_monitor, load_reference
from monitor.config import MonitorConfig
from monitor.decode import Decoder
from monitor.drift import DriftMonitor
from monitor.pairing import RowJoin
from monitor.sources import prediction_source

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
SIZES = (1, 100, 1_000)  # oip-v2 rows per message
SELDON_SIZE = 100
POLL = 1_000  # messages per consumer batch
CONFIG = MonitorConfig(window="1000", step="250")  # the default window and step
T0 = 1_800_000_000_000  # event time of the first record, ms


def json_messages(frame: pd.DataFrame, schema: Schema) -> list[bytes]:
    """The scorer's prediction messages: {id, ts, scored_at, model_version, prediction, [probabilities], features}."""
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        message = {
            "id": f"r{i}",
            "ts": T0 + i,
            "scored_at": T0 + 100 + i,
            "model_version": "v1",
            "prediction": row["prediction"],
        }
        if schema.classification:
            message["probabilities"] = {c: row[f"proba_{c}"] for c in schema.class_texts}
        message["features"] = {f: row[f] for f in schema.feature_names}
        out.append(orjson.dumps(message))
    return out


def oip_messages(frame: pd.DataFrame, schema: Schema, size: int) -> tuple[list, list]:
    """(requests, responses) as (value, key, headers, Kafka timestamp), `size` rows a message."""
    columns = {}
    for name in schema.feature_names:
        column = frame[name]
        kind = column.dtype.kind
        datatype = "FP64" if kind == "f" else "INT64" if kind in "iu" else "BYTES"
        columns[name] = (
            datatype,
            column.astype(object).tolist() if datatype == "BYTES" else column.tolist(),
        )
    predictions = frame["prediction"].astype(object).tolist()
    proba = (
        frame[[f"proba_{c}" for c in schema.class_texts]].to_numpy().tolist()
        if schema.classification
        else []
    )
    requests, responses = [], []
    for k, start in enumerate(range(0, len(frame), size)):
        stop, ident = min(start + size, len(frame)), f"m{k}"
        n = stop - start
        inputs = [
            {"name": name, "datatype": datatype, "shape": [n, 1], "data": data[start:stop]}
            for name, (datatype, data) in columns.items()
        ]
        request = {"id": ident, "parameters": {"content_type": "pd"}, "inputs": inputs}
        outputs = [
            {
                "name": "predict",
                "shape": [n, 1],
                "datatype": "BYTES" if schema.classification else "FP64",
                "parameters": {"content_type": "np"},
                "data": predictions[start:stop],
            }
        ]
        if schema.classification:
            outputs.append(
                {
                    "name": "predict_proba",
                    "shape": [n, len(schema.class_texts)],
                    "datatype": "FP64",
                    "parameters": {"content_type": "np"},
                    "data": [p for row in proba[start:stop] for p in row],
                }
            )
        response = {
            "model_name": schema.name,
            "model_version": "v1",
            "id": ident,
            "parameters": {},
            "outputs": outputs,
        }
        when = T0 + k
        headers = [("mlserver-model", schema.name.encode())]
        requests.append((orjson.dumps(request), ident.encode(), headers, when))
        responses.append(
            (orjson.dumps(response), ident.encode(), [("Ce-Id", ident.encode())], when + 5)
        )
    return requests, responses


def seldon_messages(requests: list, responses: list) -> tuple[list, list]:
    """The same messages as OIP protobuf (tensor contents), keyed and headed as Seldon Core 2 does."""
    from tritonclient.grpc import service_pb2 as pb

    fields = {"FP64": "fp64_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}

    def convert(value: bytes, side: str) -> bytes:
        body = json.loads(value)
        message = (
            pb.ModelInferRequest(id=body["id"])
            if side == "request"
            else pb.ModelInferResponse(id=body["id"])
        )
        for t in body["inputs" if side == "request" else "outputs"]:
            tensor = (message.inputs if side == "request" else message.outputs).add(
                name=t["name"], datatype=t["datatype"], shape=t["shape"]
            )
            data = [v.encode() for v in t["data"]] if t["datatype"] == "BYTES" else t["data"]
            getattr(tensor.contents, fields[t["datatype"]]).extend(data)
        return message.SerializeToString()

    def seldon(messages: list, side: str) -> list:
        return [
            (convert(v, side), b"model." + k, [("x-request-id", k)], ts) for v, k, _, ts in messages
        ]

    return seldon(requests, "request"), seldon(responses, "response")


def avro_messages(
    frame: pd.DataFrame, schema: Schema, values: list[bytes], topic: str
) -> tuple[list[bytes], object]:
    """The JSON messages in Avro with Schema Registry framing, and the in-memory registry holding their schema."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    def avro_type(column: pd.Series) -> str:
        return (
            "double"
            if column.dtype.kind == "f"
            else "long"
            if column.dtype.kind in "iu"
            else "string"
        )

    fields = [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": "long"},
        {"name": "scored_at", "type": "long"},
        {"name": "model_version", "type": "string"},
        {"name": "prediction", "type": "string" if schema.classification else "double"},
    ]
    if schema.classification:
        fields.append(
            {
                "name": "probabilities",
                "type": {
                    "type": "record",
                    "name": "P",
                    "fields": [{"name": c, "type": "double"} for c in schema.class_texts],
                },
            }
        )
    fields.append(
        {
            "name": "features",
            "type": {
                "type": "record",
                "name": "F",
                "fields": [{"name": f, "type": avro_type(frame[f])} for f in schema.feature_names],
            },
        }
    )
    registry = SchemaRegistryClient.new_client({"url": "mock://bench"})
    serialize = AvroSerializer(
        registry, json.dumps({"type": "record", "name": "Prediction", "fields": fields})
    )
    context = SerializationContext(topic, MessageField.VALUE)
    return [serialize(orjson.loads(v), context) for v in values], registry


def with_messages(schema: Schema, messages: dict) -> Schema:
    """The schema with another `messages:` block (another format), checked as a schema file is."""
    raw = schema.to_yaml()
    raw["messages"] = messages
    return parse_schema(raw, f"{schema.source} (messages.format {messages.get('format', 'json')})")


def kafka(topic: str, items: list) -> list[Message]:
    """Message objects as a consumer returns them, from (value, key, headers, Kafka timestamp ms)."""
    return [
        Message(
            topic=topic,
            partition=0,
            offset=offset,
            key=key,
            value=value,
            headers=headers,
            timestamp=(TIMESTAMP_CREATE_TIME, ts),
        )
        for offset, (value, key, headers, ts) in enumerate(items)
    ]


def polls(messages: list[Message]) -> list[list[Message]]:
    return [messages[start : start + POLL] for start in range(0, len(messages), POLL)]


def paired_polls(requests: list[Message], responses: list[Message]) -> list[list[Message]]:
    """Consumer batches of at most POLL messages: half responses, then the requests they answer."""
    half = POLL // 2
    return [
        responses[start : start + half] + requests[start : start + half]
        for start in range(0, len(requests), half)
    ]


# -- end to end: source.read, then DriftMonitor.update ----------------------------------------------
class EndToEnd:
    """One path of the monitor's per-batch work on prebuilt consumer batches: a fresh source per
    call and the model's one monitor reset to its empty state, both outside the timed part."""

    def __init__(
        self,
        schema: Schema,
        batches: list[list[Message]],
        monitor: DriftMonitor,
        empty: dict,
        registry: object = None,
    ) -> None:
        self.schema, self.batches, self.monitor, self.empty, self.registry = (
            schema,
            batches,
            monitor,
            empty,
            registry,
        )
        self.topics = Topics.for_model(schema.name, {})
        self.fingerprint: tuple | None = (
            None  # what the monitor made of the rows (compared with json's)
        )

    def prepare(self):
        source = prediction_source(self.schema, self.topics, self.registry)
        source.expect_partitions({topic: 1 for topic in source.topics})
        self.monitor.load_dict(self.empty)
        self.monitor.join.expect_partitions(source.partitions, 1)
        return source

    def run(self, source) -> int:
        monitor, rows, results = self.monitor, 0, []
        for messages in self.batches:
            read = source.read(messages)
            if read.rejected:
                raise AssertionError(f"{self.schema.format}: refused {read.rejected[0][1]}")
            if read.batch is not None:
                results += monitor.update(read.batch)
                rows += len(read.batch)
        join = getattr(source, "join", None)
        if join is not None and join.pending != (0, 0):
            raise AssertionError(f"{self.schema.format}: halves left unjoined: {join.pending}")
        ready = [r for r in results if r.ready]
        self.fingerprint = (
            len(results),
            len(ready),
            monitor.window.records,
            round(sum(r.data_drift for r in ready), 9),
            round(sum(r.prediction_drift for r in ready), 9),
        )
        return rows


# -- decode only: the first version of this bench ---------------------------------------------------
def run_json(decoder: Decoder, values: list[bytes]) -> int:
    rows = 0
    for start in range(0, len(values), POLL):
        batch, refused = decoder.predictions(values[start : start + POLL])
        assert not refused
        rows += len(batch)
    return rows


def run_paired(decoder, layout, requests: list, responses: list) -> int:
    join, rows = RowJoin(layout, max_pending_rows=10_000_000), 0
    for start in range(0, len(requests), POLL):
        answers = decoder.responses(responses[start : start + POLL])
        asked = decoder.requests(requests[start : start + POLL])
        join.add(responses=answers)
        paired = join.add(requests=asked)
        rows += len(paired.batch) if paired.batch is not None else 0
    assert join.pending == (0, 0)
    return rows


def run_avro(reader, decoder: Decoder, values: list[bytes], topic: str) -> int:
    rows = 0
    for start in range(0, len(values), POLL):
        json_values, _, refused = reader.read_batch(values[start : start + POLL], topic)
        assert not refused
        batch, refused = decoder.predictions(json_values)
        rows += len(batch)
    return rows


def model_paths(directory: Path, records: int) -> tuple[dict, dict]:
    """One model's paths, keyed (path, rows per message): the end-to-end ones (EndToEnd) and the
    decode-only ones (callables returning the rows decoded)."""
    from contract.formats.avro import AvroReader

    schema = load_schema(directory / "schema.yaml")
    reference = pd.read_csv(directory / "reference.csv")
    frame = reference.iloc[
        np.random.default_rng(3).integers(0, len(reference), records)
    ].reset_index(drop=True)
    task_keys = {"probabilities": "predict_proba"} if schema.classification else {}
    schemas = {
        "avro": with_messages(schema, {**schema.to_yaml()["messages"], "format": "avro"}),
        **{
            fmt: with_messages(schema, {"format": fmt, **task_keys})
            for fmt in ("oip-v2", "seldon-v2")
        },
    }
    topics = Topics.for_model(schema.name, {})
    # One monitor for every path of the model (the count window's thresholds take ~1 s to compute
    # in build_monitor), reset to this state before each timed call.
    monitor = build_monitor(CONFIG, Baseline(load_reference(schema, directory / "reference.csv")))
    empty = monitor.to_dict()

    values = json_messages(frame, schema)
    avro_values, registry = avro_messages(frame, schema, values, topics.predictions)
    keys = [f"r{i}".encode() for i in range(len(values))]
    sent = [
        T0 + 50 + i for i in range(len(values))
    ]  # the scorer's Kafka time, a little after the record's
    end_to_end = {
        ("json", 1): EndToEnd(
            schema,
            polls(kafka(topics.predictions, list(zip(values, keys, [None] * len(keys), sent)))),
            monitor,
            empty,
        ),
        ("avro", 1): EndToEnd(
            schemas["avro"],
            polls(
                kafka(topics.predictions, list(zip(avro_values, keys, [None] * len(keys), sent)))
            ),
            monitor,
            empty,
            registry,
        ),
    }
    reader = AvroReader(registry)
    decoding = {
        ("json", 1): lambda: run_json(Decoder(schema), values),
        ("avro", 1): lambda: run_avro(reader, Decoder(schema), avro_values, topics.predictions),
    }
    for size in SIZES:
        oip = oip_messages(frame, schema, size)
        formats = {
            "oip-v2": oip,
            **({"seldon-v2": seldon_messages(*oip)} if size == SELDON_SIZE else {}),
        }
        for fmt, (requests, responses) in formats.items():
            layout = schemas[fmt].paired
            end_to_end[fmt, size] = EndToEnd(
                schemas[fmt],
                paired_polls(kafka(layout.requests, requests), kafka(layout.responses, responses)),
                monitor,
                empty,
            )
            decoding[fmt, size] = lambda r=requests, s=responses, lay=layout: run_paired(
                paired_decoder(schema, lay), lay, r, s
            )
    order = [
        ("json", 1),
        *((("oip-v2", size)) for size in SIZES),
        ("seldon-v2", SELDON_SIZE),
        ("avro", 1),
    ]
    return {key: end_to_end[key] for key in order}, {key: decoding[key] for key in order}


def timed(call, *args) -> tuple[int, float, float]:
    """(what call returns: rows, wall-clock seconds, CPU seconds of this process)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    rows = call(*args)
    return rows, time.perf_counter() - started, time.process_time() - cpu_started


def table(name: str, wall: dict, cpu: dict, batch_rows: dict) -> list[str]:
    """Rows of one model's table: median records/s (wall clock) and records per CPU second, each
    with its ratio to json's median; for CPU, its min-max and the min-max over rounds of the ratio
    to json within a round (both paths measured in the same round)."""
    wall_base = float(np.median(wall["json", 1]))
    cpu_json = np.asarray(cpu["json", 1])
    cpu_base = float(np.median(cpu_json))
    lines = []
    for key, per_round in cpu.items():
        path, size = key
        wall_median, cpu_median = float(np.median(wall[key])), float(np.median(per_round))
        by_round = np.asarray(per_round) / cpu_json
        batch = f" {batch_rows[key]:,.0f} |" if batch_rows else ""
        lines.append(
            f"| {name} | {path} | {size:,} |{batch} {wall_median:,.0f} | {wall_median / wall_base:.2f}x "
            f"| {cpu_median:,.0f} | {min(per_round):,.0f}-{max(per_round):,.0f} | {cpu_median / cpu_base:.2f}x "
            f"| {by_round.min():.2f}-{by_round.max():.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000, help="records per path and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-decode", action="store_true", help="skip the decode-only paths")
    args = parser.parse_args(argv)
    out = {"end to end": [], "decode only": []}
    for name, directory in (("diamonds", MODEL_DIR), ("affairs", MODEL_DIR / "affairs")):
        if not (directory / "reference.csv").exists():
            print(
                f"{name}: no reference in {directory} (`python -m scorer train`)", file=sys.stderr
            )
            continue
        began = time.perf_counter()
        end_to_end, decoding = model_paths(directory, args.records)
        if args.no_decode:
            decoding = {}
        print(
            f"{name}: messages and monitor built in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
        )
        # As the monitor does at start-up (contract.service.freeze_startup_heap): the messages built
        # above are not walked by every full collection the decoders' garbage triggers.
        gc.collect()
        gc.freeze()
        keys = [("end to end", *key) for key in end_to_end] + [
            ("decode only", *key) for key in decoding
        ]
        wall: dict = {key: [] for key in keys}
        cpu: dict = {key: [] for key in keys}

        for round_ in range(args.rounds):
            for key, path in end_to_end.items():
                rows, wall_s, cpu_s = timed(path.run, path.prepare())
                assert rows == args.records, (key, rows)
                wall["end to end", *key].append(rows / wall_s)
                cpu["end to end", *key].append(rows / cpu_s)
                if round_ == 0 and path.fingerprint != end_to_end["json", 1].fingerprint:
                    raise AssertionError(
                        f"{key}: the monitor saw other rows than json's: {path.fingerprint} "
                        f"against {end_to_end['json', 1].fingerprint}"
                    )
            for key, call in decoding.items():
                rows, wall_s, cpu_s = timed(call)
                assert rows == args.records, (key, rows)
                wall["decode only", *key].append(rows / wall_s)
                cpu["decode only", *key].append(rows / cpu_s)
        gc.unfreeze()
        batch_rows = {key: args.records / len(path.batches) for key, path in end_to_end.items()}
        for title in out:
            part = [key for key in keys if key[0] == title]
            if part:
                out[title] += table(
                    name,
                    {key[1:]: wall[key] for key in part},
                    {key[1:]: cpu[key] for key in part},
                    batch_rows if title == "end to end" else {},
                )
        print(f"{name}: done in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    for title, lines in out.items():
        if lines:
            batch = " rows/consumer batch |" if title == "end to end" else ""
            print(
                f"\n{title}: median over {args.rounds} rounds of {args.records:,} records a path; records/s by the "
                "wall clock, and per CPU second of this process (time.process_time: what the shared cores' other "
                "load does not take away); vs json by round: the CPU ratio within each round, min-max"
            )
            print(
                f"| model | path | rows/message |{batch} records/s | vs json | records/CPU-s | min-max "
                "| vs json | vs json by round |"
            )
            print("|---|---|---:|" + ("---:|" if batch else "") + "---:|---:|---:|---:|---:|---:|")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
