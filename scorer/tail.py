"""`python -m scorer tail`: print predictions as they arrive."""
from __future__ import annotations

import json
import sys
import uuid
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException

from contract.settings import Topics, client_config

HEADER = f"{'id':<24} {'event time':<23} {'prediction':>11}  {'carat':>5} {'cut':<9} {'color':<5} {'clarity':<7} {'depth':>5} {'table':>5}  model"


def format_row(prediction: dict[str, Any]) -> str:
    """One human-readable line for a prediction record."""
    import datetime as dt

    f = prediction.get("features", {})
    when = dt.datetime.fromtimestamp(prediction["ts"] / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return (f"{str(prediction['id'])[:24]:<24} {when:<23} {prediction['prediction']:>11,.2f}  {f.get('carat', ''):>5} "
            f"{str(f.get('cut', '')):<9} {str(f.get('color', '')):<5} {str(f.get('clarity', '')):<7} "
            f"{f.get('depth', ''):>5} {f.get('table', ''):>5}  {prediction.get('model_version', '')}")


def tail(topics: Topics, count: int = 0, from_beginning: bool = False, as_json: bool = False,
         out: TextIO = sys.stdout, idle_timeout: float = 0.0) -> int:
    """Print predictions; stop after `count` (0 = never) or `idle_timeout` seconds without one (0 = never)."""
    import time

    consumer = Consumer({
        **client_config(),
        # A throwaway group: tail reads, it never moves a service's offsets.
        "group.id": f"tail-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        # 'latest' asks the broker for end offsets; on Tansu those are approximate (see README).
        "auto.offset.reset": "earliest" if from_beginning else "latest",
    })
    # Subscribing to a topic that does not exist yet would only notice it at the next metadata
    # refresh (minutes): wait for the scorer to create it first.
    while topics.predictions not in consumer.list_topics(timeout=10).topics:
        time.sleep(0.5)
    consumer.subscribe([topics.predictions])
    printed = 0
    last = time.monotonic()
    if not as_json:
        out.write(HEADER + "\n")
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
                    out.write(format_row(json.loads(message.value())) + "\n")
                except (ValueError, KeyError, TypeError) as exc:
                    out.write(f"(unreadable prediction at offset {message.offset()}: {exc})\n")
            out.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
