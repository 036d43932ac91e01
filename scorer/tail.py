"""`python -m scorer tail`: print predictions as they arrive, in columns the schema names
(id, event time, prediction, then every feature, then the model version), or as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException

from contract.rules import category_text
from contract.schema import Schema
from contract.settings import Topics, reader_config

MAX_COLUMN_WIDTH = 16


class Columns:
    """The table layout of one schema's predictions: widths from the column names and categories."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.widths = {
            f.name: max(len(f.name), 5)
            if f.numeric
            else min(
                MAX_COLUMN_WIDTH, max(len(f.name), *(len(category_text(c)) for c in f.categories))
            )
            for f in schema.features
        }
        self.prediction_width = (
            11 if not schema.classification else max(10, *map(len, schema.class_texts))
        )

    def header(self) -> str:
        features = " ".join(
            f"{f.name[: self.widths[f.name]]:>{self.widths[f.name]}}"
            if f.numeric
            else f"{f.name[: self.widths[f.name]]:<{self.widths[f.name]}}"
            for f in self.schema.features
        )
        return f"{'id':<24} {'event time':<23} {'prediction':>{self.prediction_width}}  {features}  model"

    def row(self, prediction: dict[str, Any]) -> str:
        """One human-readable line for a prediction message."""
        m = self.schema.messages
        f = prediction.get(m.features, {}) if m.features else prediction
        ts = prediction[m.timestamp]
        when = (
            dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            if m.timestamp_format == "epoch_ms"
            else str(ts)[:23]
        )
        value = prediction[m.prediction]
        shown = (
            f"{value:>{self.prediction_width},.2f}"
            if not self.schema.classification
            else f"{category_text(value)[: self.prediction_width]:>{self.prediction_width}}"
        )
        cells = []
        for feature in self.schema.features:
            width, cell = self.widths[feature.name], f.get(feature.name, "")
            cells.append(
                f"{cell:>{width}}"
                if feature.numeric and cell != ""
                else f"{category_text(cell)[:width]:<{width}}"
                if cell != ""
                else " " * width
            )
        return (
            f"{str(prediction[m.id])[:24]:<24} {when:<23} {shown}  {' '.join(cells)}  "
            f"{prediction.get('model_version', '')}"
        )


def tail(
    schema: Schema,
    topics: Topics,
    count: int = 0,
    from_beginning: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    idle_timeout: float = 0.0,
) -> int:
    """Print predictions; stop after `count` (0 = never) or `idle_timeout` seconds without one (0 = never)."""
    import time

    columns = Columns(schema)
    # A throwaway group: tail reads, it never moves a service's offsets.
    consumer = Consumer(reader_config(f"tail-{uuid.uuid4().hex[:12]}", from_beginning))
    # Subscribing to a topic that does not exist yet would only notice it at the next metadata
    # refresh (minutes): wait for the scorer to create it first.
    while topics.predictions not in consumer.list_topics(timeout=10).topics:
        time.sleep(0.5)
    consumer.subscribe([topics.predictions])
    printed = 0
    last = time.monotonic()
    if not as_json:
        out.write(columns.header() + "\n")
    try:
        while count == 0 or printed < count:
            message = consumer.poll(0.5)
            if message is None:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    break
                continue
            if message.error():
                code = message.error().code()
                if code in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise KafkaException(message.error())
            last = time.monotonic()
            if as_json:
                out.write(message.value().decode() + "\n")
            else:
                try:
                    out.write(columns.row(json.loads(message.value())) + "\n")
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    out.write(f"(unreadable prediction at offset {message.offset()}: {exc})\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
