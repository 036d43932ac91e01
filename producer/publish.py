"""`python -m producer publish FILE|-`: JSONL feature records to the features topic.

Each line is checked against the model's schema (the scorer's own rules); a line that also has
the schema's target publishes its label. Invalid lines are reported with their line number and
reason; with `strict`, nothing is published unless every line is valid.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import msgspec
from confluent_kafka import Producer

from contract.decoders import Decoders, check_record, decode_records, verdict
from contract.delivery import DeliveryReport, produce
from contract.rules import Rejection
from contract.schema import Schema
from contract.settings import Topics, producer_config


@dataclass(frozen=True)
class InvalidLine:
    number: int  # 1-based
    rejection: Rejection

    def __str__(self) -> str:
        return f"line {self.number}: {self.rejection.reason}: {self.rejection.detail}"


def read_records(lines: Iterable[bytes], decoders: Decoders) -> tuple[list[Any], list[InvalidLine]]:
    """Validate JSONL lines (blank lines are skipped): (records as the schema's typed Structs,
    invalid lines). The typed decoder takes the whole file in one pass; only the lines it refuses
    go through the checks that name the reason."""
    numbered = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
    numbered = [(number, line) for number, line in numbered if line]
    records, rejections = decode_records(
        [line for _, line in numbered],
        decoders.record,
        lambda raw: verdict(check_record, decoders, raw),
    )
    invalid = [InvalidLine(numbered[position][0], rejection) for position, rejection in rejections]
    return records, invalid


def publish(
    path: str, schema: Schema, topics: Topics, strict: bool = False, out: TextIO = sys.stderr
) -> int:
    """Returns 0 when every line was valid and delivered, 1 otherwise."""
    decoders = Decoders(schema)
    if path == "-":
        records, invalid = read_records(sys.stdin.buffer, decoders)
    else:
        try:
            with open(path, "rb") as handle:
                records, invalid = read_records(handle, decoders)
        except OSError as exc:
            out.write(f"error: cannot read {path}: {exc.strerror}\n")
            return 1
    for line in invalid:
        out.write(f"{path}: {line}\n")
    if invalid and strict:
        out.write(f"--strict: {len(invalid)} invalid lines, nothing published\n")
        return 1

    record_id = decoders.getter("record", schema.messages.id)
    timestamp = decoders.getter("record", schema.messages.timestamp)
    target_attr = decoders.record_attrs[schema.target]
    encode = msgspec.json.Encoder().encode
    producer = Producer(producer_config())
    report = DeliveryReport()
    labels = 0
    for record in records:
        key, target = record_id(record), getattr(record, target_attr)
        # The record as the scorer reads it: id, timestamp and features (the target, None, is omitted).
        features = (
            record if target is None else msgspec.structs.replace(record, **{target_attr: None})
        )
        produce(producer, topics.features, encode(features), key, report)
        if target is not None:
            label = decoders.label_type(
                key, timestamp(record), target
            )  # {id, ts, <target>} as the schema lays out labels
            produce(producer, topics.labels, encode(label), key, report)
            labels += 1
        producer.poll(0)
    remaining = producer.flush(30)
    out.write(
        f"published {len(records)} records and {labels} labels, {len(invalid)} invalid lines skipped, "
        f"delivered {report.delivered}, failed {report.failed + remaining}\n"
    )
    return 1 if invalid or report.failed or remaining else 0
