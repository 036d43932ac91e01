"""`python -m producer publish FILE|-`: JSONL feature records to the features topic.

A line with a `price` also publishes its label. Invalid lines are reported with their line
number and reason; with `strict`, nothing is published unless every line is valid.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterable, TextIO

from confluent_kafka import Producer

from contract.delivery import DeliveryReport, produce
from contract.records import FeatureRecord, LabelRecord, Rejection, decode_features, encode
from contract.settings import Topics, producer_config


@dataclass(frozen=True)
class InvalidLine:
    number: int  # 1-based
    rejection: Rejection

    def __str__(self) -> str:
        return f"line {self.number}: {self.rejection.reason}: {self.rejection.detail}"


def read_records(lines: Iterable[bytes]) -> tuple[list[FeatureRecord], list[InvalidLine]]:
    """Validate JSONL lines; blank lines are skipped."""
    records, invalid = [], []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        decoded = decode_features(line)
        if isinstance(decoded, Rejection):
            invalid.append(InvalidLine(number, decoded))
        else:
            records.append(decoded)
    return records, invalid


def publish(path: str, topics: Topics, strict: bool = False, out: TextIO = sys.stderr) -> int:
    """Returns 0 when every line was valid and delivered, 1 otherwise."""
    if path == "-":
        records, invalid = read_records(sys.stdin.buffer)
    else:
        try:
            with open(path, "rb") as handle:
                records, invalid = read_records(handle)
        except OSError as exc:
            out.write(f"error: cannot read {path}: {exc.strerror}\n")
            return 1
    for line in invalid:
        out.write(f"{path}: {line}\n")
    if invalid and strict:
        out.write(f"--strict: {len(invalid)} invalid lines, nothing published\n")
        return 1

    producer = Producer(producer_config())
    report = DeliveryReport()
    labels = 0
    for record in records:
        produce(producer, topics.features, encode(record.to_json()), record.id, report)
        if record.price is not None:
            label = LabelRecord(record.id, record.ts, record.price)
            produce(producer, topics.labels, encode(label.to_json()), record.id, report)
            labels += 1
        producer.poll(0)
    remaining = producer.flush(30)
    out.write(f"published {len(records)} records and {labels} labels, {len(invalid)} invalid lines skipped, "
              f"delivered {report.delivered}, failed {report.failed + remaining}\n")
    return 1 if invalid or report.failed or remaining else 0
