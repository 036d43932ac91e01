"""Requests and responses of the paired formats as rows: the part every format shares.

A format's decoder reads one Kafka message (value bytes, key, headers, Kafka timestamp: no client
objects) into a `Body` (its id, its parameters, its tensors, decoded only when asked for). This
module finds each message's id and event time where the `PairedLayout` says, and turns a batch of
messages into rows, column by column:

    requests([(value, key, headers, timestamp_ms), ...])  -> [RequestRows | Rejection, ...]
        RequestRows(id, ts (n,), numeric {feature: (n,)}, categorical {feature: (n,)})
    responses([...])                                      -> [ResponseRows | Rejection, ...]
        ResponseRows(id, predictions (n,), probabilities {class: (n,)})

one result per message, in order: rows, or the `Rejection` naming why the whole message was
refused. Rows that fail the schema's checks are marked invalid (`valid` (n,) bool) with their
reasons in `rejected`; the others stay. A message's rows are a run of its batch's columns
(`RequestColumns` / `ResponseColumns`), read as views; the join gathers whole batches at once. Row
i of a response belongs to row i of the request with the same id (OIP: outputs are row-aligned
with inputs); `monitor.pairing` joins them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from contract.formats.layout import PairedLayout, Source
from contract.formats.rows import RequestColumns, RequestRows, ResponseColumns, ResponseRows
from contract.formats.tensors import (
    MAX_ROWS,
    SHAPE_MISMATCH,
    Column,
    Refused,
    RowChecks,
    Values,
    epoch_ms_values,
    needed,
    rows_of,
    single,
)
from contract.rules import (
    MAX_ID_LENGTH,
    MISSING_FIELD,
    NOT_FINITE,
    OUT_OF_RANGE,
    OVERSIZE,
    WRONG_TYPE,
    Rejection,
)
from contract.schema import Schema

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a batched message; Kafka's default limit is 1 MiB
BATCHED = "batched"  # reason: a message of several rows when row_id has no {row}

Headers = (
    Sequence[tuple[str, bytes | None]] | None
)  # as confluent-kafka's Message.headers() gives them
Message = tuple[
    bytes | None, bytes | None, Headers, int | None
]  # (value, key, headers, Kafka timestamp ms)


@dataclass
class Body:
    """A decoded message body: its own id, its parameters, and its tensors by name as the format
    parsed them, each made `Values` by `make` only when taken (a request's tensors the schema does
    not name are never converted)."""

    id: Any
    parameters: Mapping[str, Any]
    tensors: Mapping[str, Any]
    make: Callable[[Any], Values]

    def take(self, names: Sequence[str], what: str) -> dict[str, Values]:
        try:
            return {name: self.make(self.tensors[name]) for name in names}
        except KeyError:
            needed(self.tensors, names, what)  # raises, naming the missing tensor
            raise


def header(headers: Headers, name: str) -> bytes | None:
    """The last value of header `name`, matched without case (MLServer writes Ce-Id, KServe ce_id)."""
    found = None
    lowered = name.lower()
    for key, value in headers or ():
        if key.lower() == lowered:
            found = value
    return found


def text(value: Any) -> str | None:
    """An id as text: strings and integers (bytes as UTF-8); anything else is no id."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value) or None


class PairedDecoder:
    """One schema's requests and responses in one paired format; subclasses read bodies."""

    def __init__(
        self, schema: Schema, layout: PairedLayout, timestamp_format: str = "epoch_ms"
    ) -> None:
        self.schema, self.layout, self.timestamp_format = schema, layout, timestamp_format
        self.request_tensors = list(
            dict.fromkeys(
                [f.name for f in schema.features] if layout.inputs is None else [layout.inputs]
            )
        )
        if layout.timestamp.kind == "input":
            self.request_tensors.append(layout.timestamp.name)
        self.response_tensors = [layout.prediction] + (
            [layout.probabilities] if layout.probabilities else []
        )
        # (feature, tensor name, column in it, where for messages) in schema order
        self._features = [
            (f, f.name, 0, repr(f.name))
            if layout.inputs is None
            else (f, layout.inputs, j, f"{layout.inputs}[:, {j}] ({f.name})")
            for j, f in enumerate(schema.features)
        ]

    MODEL_HEADERS: Mapping[
        str, str
    ] = {}  # side -> the header naming the message's model (none: not named)

    def other_model(self, side: str, headers: Headers) -> str | None:
        """The model a message names when it is not the layout's (skip it: another model's traffic
        on a shared topic), else None (this model's, or a message that names none)."""
        name = self.MODEL_HEADERS.get(side)
        named = header(headers, name) if name and self.layout.model else None
        if named is None or named == self.layout.model.encode():
            return None
        return named.decode(errors="replace")

    # -- what subclasses provide ----------------------------------------------------------------
    def body(self, value: bytes, headers: Headers, side: str) -> Body:
        """The body of a request (side "request") or response; raises Refused."""
        raise NotImplementedError

    def side(self, topic: str, headers: Headers) -> str | None:
        """ "request" or "response" for a message of `topic` (None: neither, refuse it)."""
        if topic == self.layout.requests:
            return "request"
        return "response" if topic == self.layout.responses else None

    # -- one message ----------------------------------------------------------------------------
    def request(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers = None,
        timestamp_ms: int | None = None,
    ) -> RequestRows | Rejection:
        return self.requests([(value, key, headers, timestamp_ms)])[0]

    def response(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers = None,
        timestamp_ms: int | None = None,
    ) -> ResponseRows | Rejection:
        return self.responses([(value, key, headers, timestamp_ms)])[0]

    # -- a batch of messages --------------------------------------------------------------------
    def requests(self, messages: Sequence[Message]) -> list[RequestRows | Rejection]:
        out: list = [None] * len(messages)
        columns = {f.name: Column(f.numeric) for f in self.schema.features}
        times: list[list[int]] = []
        spans: list[
            tuple[int, str, int, int, int]
        ] = []  # (position, id, first row, rows, Kafka ts)
        start = 0
        for position, (value, key, headers, timestamp_ms) in enumerate(messages):
            try:
                body = self._body(value, headers, "request")
                tensors = body.take(self.request_tensors, "request")
                n = self._rows(tensors)
                ident = self._id(body, key, headers)
                parts = [
                    (columns[f.name], columns[f.name].convert(where, tensors[name], j))
                    for f, name, j, where in self._features
                ]
                if self.layout.inputs is None:
                    for name, values in tensors.items():
                        if values.k != 1:
                            single(name, values, "input")
                when = self._event_time(body, tensors, headers, timestamp_ms, n)
            except Refused as refused:
                out[position] = refused.rejection
                continue
            for column, part in parts:
                column.add(part)
            times.append(when)
            spans.append((position, ident, start, n, timestamp_ms or 0))
            start += n
        checks = RowChecks(start)
        numeric, categorical = {}, {}
        for feature in self.schema.features:
            array = columns[feature.name].array()
            if feature.numeric:
                numeric[feature.name] = array
                checks.numbers(feature.name, array, feature.bounds)
            else:
                categorical[feature.name] = array
                checks.texts(feature.name, array)
        batch = RequestColumns(
            np.fromiter(chain.from_iterable(times), np.int64, start),
            numeric,
            categorical,
            checks.valid,
            not checks.rejected,
        )
        for position, ident, first, n, timestamp_ms in spans:
            out[position] = RequestRows(ident, batch, first, n, checks.of(first, n), timestamp_ms)
        return out

    def responses(self, messages: Sequence[Message]) -> list[ResponseRows | Rejection]:
        layout, schema = self.layout, self.schema
        classes = schema.class_texts if layout.probabilities else ()
        out: list = [None] * len(messages)
        predictions = Column(not schema.classification)
        probabilities = [Column(True) for _ in classes]
        spans: list[tuple[int, str, int, int, int]] = []
        start = 0
        for position, (value, key, headers, timestamp_ms) in enumerate(messages):
            try:
                body = self._body(value, headers, "response")
                tensors = body.take(self.response_tensors, "response")
                n = self._rows(tensors)
                ident = self._id(body, key, headers)
                parts = [
                    (
                        predictions,
                        predictions.convert(
                            f"prediction {layout.prediction!r}",
                            single(layout.prediction, tensors[layout.prediction], "output"),
                        ),
                    )
                ]
                if classes:
                    proba = tensors[layout.probabilities]
                    if proba.kind != "float" or proba.k != len(classes):
                        raise Refused(
                            SHAPE_MISMATCH,
                            f"output {layout.probabilities!r} must be [n, {len(classes)}] "
                            f"floats (one per class of {list(classes)}), got {proba.datatype} [n, {proba.k}]",
                        )
                    parts += [
                        (column, column.convert(layout.probabilities, proba, j))
                        for j, column in enumerate(probabilities)
                    ]
            except Refused as refused:
                out[position] = refused.rejection
                continue
            for column, part in parts:
                column.add(part)
            spans.append((position, ident, start, n, timestamp_ms or 0))
            start += n
        checks = RowChecks(start)
        predicted = predictions.array()
        if not schema.classification:
            checks.refuse(
                ~np.isfinite(predicted),
                NOT_FINITE,
                f"prediction {layout.prediction!r} is not finite",
            )
        probability = {text: column.array() for text, column in zip(classes, probabilities)}
        checks.probabilities(layout.probabilities or "", list(probability.values()))
        batch = ResponseColumns(predicted, probability, checks.valid, not checks.rejected)
        for position, ident, first, n, timestamp_ms in spans:
            out[position] = ResponseRows(ident, batch, first, n, checks.of(first, n), timestamp_ms)
        return out

    # -- shared pieces --------------------------------------------------------------------------
    def _body(self, value: bytes | None, headers: Headers, side: str) -> Body:
        if value is None:
            raise Refused(MISSING_FIELD, "the message has no value (a tombstone)")
        if len(value) > MAX_MESSAGE_BYTES:
            raise Refused(OVERSIZE, f"message is {len(value)} bytes, limit {MAX_MESSAGE_BYTES}")
        return self.body(value, headers, side)

    def _rows(self, tensors: dict[str, Values]) -> int:
        n = rows_of(tensors)
        if n > 1 and not self.layout.batched:
            raise Refused(
                BATCHED,
                f"a message of {n} rows, but messages.row_id "
                f"{self.layout.row_id!r} has no {{row}} to name them",
            )
        if n > MAX_ROWS:
            raise Refused(OUT_OF_RANGE, f"{n} rows, at most {MAX_ROWS} per message")
        return n

    def _id(self, body: Body, key: bytes | None, headers: Headers) -> str:
        for source in self.layout.id:
            ident = text(self._scalar(source, body, key, headers))
            if ident is not None:
                if len(ident) > MAX_ID_LENGTH:
                    raise Refused(
                        OUT_OF_RANGE,
                        f"id from {source} has {len(ident)} characters, at most {MAX_ID_LENGTH}",
                    )
                return ident
        raise Refused(
            MISSING_FIELD,
            "no id in "
            + ", ".join(map(str, self.layout.id))
            + " (a request without one is answered under an id its server makes up, so it cannot be joined)",
        )

    def _scalar(self, source: Source, body: Body, key: bytes | None, headers: Headers) -> Any:
        if source.kind == "key":
            return key or None
        if source.kind == "body":
            return body.id
        if source.kind == "header":
            return header(headers, source.name)
        if source.kind == "parameter":
            return (body.parameters or {}).get(source.name)
        raise AssertionError(source)

    def _event_time(
        self,
        body: Body,
        tensors: dict[str, Values],
        headers: Headers,
        timestamp_ms: int | None,
        n: int,
    ) -> list[int]:
        """The event time of each of a message's n rows, epoch ms."""
        source = self.layout.timestamp
        if source.kind == "kafka":
            if timestamp_ms is None or timestamp_ms < 0:
                raise Refused(
                    MISSING_FIELD, "the message has no Kafka timestamp (messages.timestamp: kafka)"
                )
            return [timestamp_ms] * n
        if source.kind == "input":
            return epoch_ms_values(
                str(source),
                single(source.name, tensors[source.name], "input").flat,
                self.timestamp_format,
            )
        value = self._scalar(source, body, None, headers)
        if value is None:
            raise Refused(MISSING_FIELD, f"no event time in {source}")
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
            if self.timestamp_format == "epoch_ms":
                if not value.isdigit():
                    raise Refused(
                        WRONG_TYPE, f"event time {source} is {value[:40]!r}, not integer epoch ms"
                    )
                value = int(value)
        return epoch_ms_values(str(source), [value], self.timestamp_format) * n
