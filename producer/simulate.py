"""`python -m producer simulate`: seeded traffic for the model in MODEL_DIR, with an optional drift scenario.

Records are drawn from the model's reference file (held-out rows the model never trained on, like
production traffic), so the monitor's no-drift reference and the stream share a distribution.
Feature records, labels and their timestamps are laid out as the model's schema says.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import numpy as np
import orjson
import pandas as pd
from confluent_kafka import Producer

from contract.delivery import DeliveryReport, produce
from contract.schema import Schema
from contract.service import Totals
from contract.settings import Topics, producer_config
from producer.invalid import bad_payload, invalid_payloads
from producer.scenarios import NO_DRIFT, Chunk, Scenario, WeightedDraw, bad_record_mask

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

CHUNK_SIZE = 1000

# numpy dtype of a source column by its schema kind: floats, and native categories and classes.
_DTYPES = {"number": np.float64, "string": object, "integer": np.int64, "boolean": bool}


@dataclass(frozen=True)
class SimulateConfig:
    count: int = 10_000  # 0 = until stopped
    rate: float = 1000.0  # records per second, 0 = as fast as possible
    scenario: Scenario = (
        NO_DRIFT  # producer.scenarios.parse_scenario checks a spec against the schema
    )
    onset: int = 0
    seed: int = 42
    label_delay: float = 2.0  # seconds between a record and its label
    labels: bool = True  # False: no label is ever sent (labels that come late or never)
    bad_share: float = 0.1  # bad-records only: share of invalid payloads after onset
    id_prefix: str = "sim"

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("--count must be >= 0 (0 runs until stopped)")
        if self.rate < 0:
            raise ValueError("--rate must be >= 0 (0 is as fast as possible)")
        if self.onset < 0:
            raise ValueError("--onset must be >= 0")
        if self.label_delay < 0:
            raise ValueError("--label-delay must be >= 0 seconds")
        if not 0 <= self.bad_share <= 1:
            raise ValueError("--bad-share must be between 0 and 1")


def source_columns(reference: pd.DataFrame, schema: Schema) -> Chunk:
    """The reference's features and target as arrays in the schema's types (the draws' source)."""
    kinds = {f.name: f.kind for f in schema.features}
    kinds[schema.target] = schema.class_kind if schema.classification else "number"
    return {
        column: np.asarray(reference[column].to_numpy(), dtype=_DTYPES[kind])
        for column, kind in kinds.items()
    }


def generate_chunks(
    source: Chunk, config: SimulateConfig, chunk_size: int = CHUNK_SIZE
) -> Iterator[tuple[np.ndarray, Chunk, np.ndarray]]:
    """Yield (positions, columns, bad mask) chunk by chunk: rows sampled with replacement, seeded;
    after onset a resampling scenario draws them with its row weights instead."""
    rng = np.random.default_rng(config.seed)
    scenario = config.scenario
    rows = len(next(iter(source.values())))
    weighted = WeightedDraw.over(scenario.resample, source) if scenario.resample else None
    start = 0
    while config.count == 0 or start < config.count:
        size = chunk_size if config.count == 0 else min(chunk_size, config.count - start)
        positions = np.arange(start, start + size)
        # The uniform pick comes first for every scenario: the streams without resampling draw
        # exactly what they always drew (the seed-42 streams are pinned).
        picked = rng.integers(0, rows, size=size)
        if weighted is not None:
            picked = weighted.pick(picked, positions, config.onset, rng)
        chunk = scenario.transform(
            {c: v[picked] for c, v in source.items()}, positions, config.onset, rng
        )
        if scenario.bad_records:
            bad = bad_record_mask(positions, config.onset, config.bad_share, rng)
        else:
            bad = np.zeros(size, dtype=bool)
        yield positions, chunk, bad
        start += size


@dataclass
class Summary:
    records: int = 0
    invalid: int = 0
    labels: int = 0
    elapsed: float = 0.0

    def line(self, report: DeliveryReport) -> str:
        rate = self.records / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"records {self.records} (invalid {self.invalid}), labels {self.labels}, delivered {report.delivered}, "
            f"failed {report.failed}, {self.elapsed:.1f} s, {rate:,.0f} records/s"
        )


# What was sent and what the broker acknowledged, as counters read from the run's own totals at scrape time.
SIMULATOR_COUNTERS = [
    ("producer_records", "Feature records sent to the features topic", "records"),
    ("producer_labels", "Labels sent to the labels topic", "labels"),
    ("producer_delivered", "Messages acknowledged by the broker", "delivered"),
    ("producer_failed", "Messages the broker did not take", "failed"),
]


def simulate(
    config: SimulateConfig,
    schema: Schema,
    source: Chunk,
    topics: Topics,
    out: TextIO = sys.stderr,
    registry: CollectorRegistry | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Produce the stream drawn from `source` (see source_columns) until done or `stop` is set;
    returns the exit code (1 if anything was not delivered).

    On `stop` no further record is drawn, but every record already sent gets its label and all
    of it is flushed: a stopped run still delivers what it promised. With `registry`, its counters
    (SIMULATOR_COUNTERS) are read from the run's totals whenever it is scraped."""
    names, target = schema.feature_names, schema.target
    payloads = invalid_payloads(schema)
    producer = Producer(producer_config())
    report = DeliveryReport()
    summary = Summary()
    if registry is not None:
        Totals(
            registry,
            lambda: {
                "records": summary.records,
                "labels": summary.labels,
                "delivered": report.delivered,
                "failed": report.failed,
            },
            SIMULATOR_COUNTERS,
            {},
        )
    pending_labels: deque[tuple[float, str, bytes]] = (
        deque()
    )  # (due monotonic time, id, label JSON)
    stop = stop or threading.Event()
    live = out.isatty()
    started = time.monotonic()
    last_progress = started

    def publish_due_labels(now: float, everything: bool = False) -> None:
        while pending_labels and (everything or pending_labels[0][0] <= now):
            _, record_id, label = pending_labels.popleft()
            produce(producer, topics.labels, label, record_id, report)
            summary.labels += 1

    try:
        for positions, chunk, bad in generate_chunks(source, config):
            # (records,) rows of native values: one feature dict per record, in the schema's order
            rows = [dict(zip(names, row)) for row in zip(*(chunk[c].tolist() for c in names))]
            targets = chunk[target].tolist()
            for i, position in enumerate(positions.tolist()):
                if stop.is_set():
                    break
                if config.rate > 0:
                    # Pace against the start time, not the previous record, so drift in sleep
                    # granularity does not accumulate.
                    ahead = started + summary.records / config.rate - time.monotonic()
                    if ahead > 0:
                        stop.wait(ahead)
                now = time.monotonic()
                ts = int(time.time() * 1000)
                record_id = f"{config.id_prefix}-{position}"
                record = schema.feature_record(record_id, ts, rows[i])
                if bad[i]:
                    _, value = bad_payload(payloads, position, record)
                    summary.invalid += 1
                else:
                    value = orjson.dumps(record)
                    if config.labels:
                        label = orjson.dumps(schema.label_record(record_id, ts, targets[i]))
                        pending_labels.append((now + config.label_delay, record_id, label))
                produce(producer, topics.features, value, record_id, report)
                summary.records += 1
                publish_due_labels(now)
                producer.poll(0)
                if now - last_progress > 0.5:
                    last_progress = now
                    if live:
                        summary.elapsed = now - started
                        out.write("\r" + summary.line(report) + " ")
                        out.flush()
            if stop.is_set():
                break
        # Labels still waiting for their delay are due eventually: wait for them, unless stopping.
        while pending_labels and not stop.is_set():
            time.sleep(max(0.0, min(0.2, pending_labels[0][0] - time.monotonic())))
            publish_due_labels(time.monotonic())
            producer.poll(0)
        publish_due_labels(time.monotonic(), everything=True)
    finally:
        remaining = producer.flush(30)
    summary.elapsed = time.monotonic() - started
    if live:
        out.write("\r")
    undelivered = report.failed + remaining
    out.write(summary.line(report) + (f", undelivered {remaining}" if remaining else "") + "\n")
    if undelivered:
        out.write(
            f"error: {undelivered} messages were not delivered ({report.last_error or 'flush timed out'})\n"
        )
        return 1
    return 0
