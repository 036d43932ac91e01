"""Request rows joined to response rows by message id, with bounded pending state.

The paired formats (MLServer's Kafka mode, KServe's CloudEvents, Seldon Core 2) write a request and
its response as two messages, on two topics that are not co-partitioned (MLServer's aiokafka
producer hashes keys with murmur2, librdkafka with CRC32) and read in no fixed order. `RowJoin`
holds whichever side came first until the other arrives; a pair becomes rows of a PredictionBatch
(row i of the response belongs to row i of the request, named by the layout's row id):

    add(requests=[RequestRows], responses=[ResponseRows]) -> Paired(batch, expired, refused)

Pending state is bounded, and nothing leaves it silently:
- in time, against the other side's clock: a request expires (reason `no_response`) once the
  responses' watermark has passed its Kafka timestamp by `ttl_ms`, a response (reason `no_request`)
  once the requests' watermark has; a watermark is the minimum over a side's partitions of the
  newest Kafka timestamp seen, so a partition read ahead of the others expires nothing. A request
  the server refused leaves no response on any topic: it expires this way;
- by count: at most `max_pending_rows` rows per side; the oldest is evicted and expires.
Every expiry comes back with the `ref` it was added with (the shell's (topic, partition, offset)),
so the shell can count it, log it once and send it to the DLQ. A second request with a pending id
replaces the first (at-least-once redelivery), and a request or response whose id joined recently
(the last `recent_ids`) is a redelivery too: all are counted in `duplicates`, none joins twice.
A response whose row count differs from its request's refuses both (`shape_mismatch`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract.formats.layout import PairedLayout
from contract.formats.rows import RequestColumns, RequestRows, ResponseColumns, ResponseRows
from contract.formats.tensors import SHAPE_MISMATCH
from contract.rules import Rejection
from monitor.windows import PredictionBatch

NO_REQUEST = "no_request"
NO_RESPONSE = "no_response"

Refusal = tuple[Any, Rejection]  # (the ref the message was added with, why it leaves)


@dataclass
class Paired:
    """What one `add` produced: the joined rows, and the messages that left unjoined."""

    batch: PredictionBatch | None
    expired: list[Refusal] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


class _Side:
    """One side's pending messages, insertion-ordered, and its watermark."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[Any, Any]] = {}  # id -> (rows, ref)
        self.rows = 0
        self.newest: dict[Hashable, int] = {}  # partition -> newest Kafka timestamp seen

    def see(self, partition: Hashable, timestamp_ms: int) -> None:
        if timestamp_ms > self.newest.get(partition, -1):
            self.newest[partition] = timestamp_ms

    def watermark(self, partitions: int | None) -> int | None:
        """The slowest partition's newest timestamp; None until every partition has delivered."""
        if not self.newest or (partitions is not None and len(self.newest) < partitions):
            return None
        return min(self.newest.values())

    def put(self, ident: str, rows: Any, ref: Any) -> bool:
        """Add; True when it replaced a pending message of the same id."""
        old = self.pending.pop(ident, None)
        if old is not None:
            self.rows -= old[0].n
        self.pending[ident] = (rows, ref)
        self.rows += rows.n
        return old is not None

    def take(self, ident: str) -> tuple[Any, Any] | None:
        entry = self.pending.pop(ident, None)
        if entry is not None:
            self.rows -= entry[0].n
        return entry

    def expire(
        self, watermark: int | None, ttl_ms: int, max_rows: int, reason: str, what: str
    ) -> list[Refusal]:
        out = []
        for ident in list(self.pending):
            rows, ref = self.pending[ident]
            over = self.rows > max_rows
            late = watermark is not None and watermark - rows.timestamp_ms > ttl_ms
            if not (over or late):
                break  # insertion order: the rest came later
            self.take(ident)
            why = (
                f"{what} {ident!r}: none came within {ttl_ms} ms of Kafka time"
                if late
                else f"{what} {ident!r}: evicted, more than {max_rows} rows pending"
            )
            out.append((ref, Rejection(reason, why)))
        return out


class RowJoin:
    """Requests joined to responses by id; see the module doc."""

    def __init__(
        self,
        layout: PairedLayout,
        *,
        ttl_ms: int = 300_000,
        max_pending_rows: int = 200_000,
        request_partitions: int | None = None,
        response_partitions: int | None = None,
        recent_ids: int = 100_000,
    ) -> None:
        if ttl_ms <= 0 or max_pending_rows <= 0:
            raise ValueError("ttl_ms and max_pending_rows must be positive")
        self.layout, self.ttl_ms, self.max_pending_rows = layout, ttl_ms, max_pending_rows
        self.partitions = {"request": request_partitions, "response": response_partitions}
        self.requests, self.responses = _Side(), _Side()
        self._recent: dict[
            str, None
        ] = {}  # ids joined lately, oldest first (redelivered responses)
        self._recent_cap = recent_ids
        self.counters = {
            "joined_messages": 0,
            "joined_rows": 0,
            "expired_requests": 0,
            "expired_responses": 0,
            "duplicates": 0,
            "mismatched": 0,
        }

    @property
    def pending(self) -> tuple[int, int]:
        """(request rows, response rows) waiting."""
        return self.requests.rows, self.responses.rows

    def add(
        self,
        requests: Sequence[RequestRows] = (),
        responses: Sequence[ResponseRows] = (),
        request_refs: Sequence[Any] | None = None,
        response_refs: Sequence[Any] | None = None,
        request_partition: Hashable = 0,
        response_partition: Hashable = 0,
    ) -> Paired:
        """Join what pairs; the rest waits or expires. refs: one per message (default: its id)."""
        pairs: list[tuple[RequestRows, ResponseRows]] = []
        refused: list[Refusal] = []
        for rows, ref in zip(requests, request_refs or [r.id for r in requests]):
            self.requests.see(request_partition, rows.timestamp_ms)
            if rows.id in self._recent:
                self.counters["duplicates"] += 1
                continue
            partner = self.responses.take(rows.id)
            if partner is None:
                self.counters["duplicates"] += self.requests.put(rows.id, rows, ref)
            else:
                self._pair(rows, ref, *partner, pairs, refused)
        for rows, ref in zip(responses, response_refs or [r.id for r in responses]):
            self.responses.see(response_partition, rows.timestamp_ms)
            if rows.id in self._recent:
                self.counters["duplicates"] += 1
                continue
            partner = self.requests.take(rows.id)
            if partner is None:
                self.counters["duplicates"] += self.responses.put(rows.id, rows, ref)
            else:
                self._pair(*partner, rows, ref, pairs, refused)
        expired = self.expire()
        return Paired(self._batch(pairs), expired, refused)

    def to_dict(self) -> dict[str, Any]:
        """The pending messages (their own rows, copied, and their refs), clocks, recent ids and
        counters, JSON-friendly: saved with the window they feed, so a restart loses no pending half."""
        return {
            side: {
                "pending": [
                    [_rows_state(rows), list(ref) if isinstance(ref, tuple) else ref]
                    for rows, ref in getattr(self, side).pending.values()
                ],
                "newest": [[p, t] for p, t in getattr(self, side).newest.items()],
            }
            for side in ("requests", "responses")
        } | {"recent": list(self._recent), "counters": dict(self.counters)}

    def load_dict(self, state: dict[str, Any]) -> None:
        """Restore what `to_dict` wrote into this (empty) join."""
        for side, request in (("requests", True), ("responses", False)):
            held = getattr(self, side)
            for rows_state, ref in state[side]["pending"]:
                held.put(
                    rows_state["id"],
                    _rows_of(rows_state, request),
                    tuple(ref) if isinstance(ref, list) else ref,
                )
            held.newest = {p: int(t) for p, t in state[side]["newest"]}
        self._recent = dict.fromkeys(state["recent"])
        self.counters.update({k: int(v) for k, v in state["counters"].items()})

    def expire(self) -> list[Refusal]:
        """Requests the responses' clock passed by ttl_ms, responses the requests' clock passed, and the
        oldest of a side over max_pending_rows; counted."""
        requests = self.requests.expire(
            self.responses.watermark(self.partitions["response"]),
            self.ttl_ms,
            self.max_pending_rows,
            NO_RESPONSE,
            "request",
        )
        responses = self.responses.expire(
            self.requests.watermark(self.partitions["request"]),
            self.ttl_ms,
            self.max_pending_rows,
            NO_REQUEST,
            "response",
        )
        self.counters["expired_requests"] += len(requests)
        self.counters["expired_responses"] += len(responses)
        return requests + responses

    def _pair(
        self,
        request: RequestRows,
        request_ref: Any,
        response: ResponseRows,
        response_ref: Any,
        pairs: list,
        refused: list[Refusal],
    ) -> None:
        self._recent[request.id] = None
        if len(self._recent) > self._recent_cap:
            del self._recent[next(iter(self._recent))]
        if request.n != response.n:
            self.counters["mismatched"] += 1
            why = Rejection(
                SHAPE_MISMATCH,
                f"id {request.id!r}: the request has {request.n} rows, the response {response.n}",
            )
            refused.extend([(request_ref, why), (response_ref, why)])
            return
        pairs.append((request, response))

    def _batch(self, pairs: list[tuple[RequestRows, ResponseRows]]) -> PredictionBatch | None:
        """The valid rows of every pair as one PredictionBatch, rows named by the layout's row id.

        Pairs are grouped by the two decoded batches their rows sit in (usually one or two groups a
        call); each group's rows are gathered with one index array per side, so a call costs a few
        numpy operations per column whatever the number of messages. Rows come out grouped so."""
        if not pairs:
            return None
        groups: dict[tuple[int, int], list[tuple[RequestRows, ResponseRows]]] = {}
        for pair in pairs:
            groups.setdefault((id(pair[0].columns), id(pair[1].columns)), []).append(pair)
        parts = [self._gather(group) for group in groups.values()]
        self.counters["joined_messages"] += len(pairs)
        self.counters["joined_rows"] += sum(len(part[0]) for part in parts)

        def column(index: int, name: str | None = None) -> np.ndarray:
            arrays = [part[index] if name is None else part[index][name] for part in parts]
            return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

        first = parts[0]
        return PredictionBatch(
            ids=column(0),
            ts=column(1),
            predictions=column(2),
            numeric={name: column(3, name) for name in first[3]},
            categorical={name: column(4, name) for name in first[4]},
            probabilities={name: column(5, name) for name in first[5]},
        )

    def _gather(self, group: list[tuple[RequestRows, ResponseRows]]) -> tuple:
        """(ids, ts, predictions, numeric, categorical, probabilities) of one group's valid rows."""
        requests, responses = group[0][0].columns, group[0][1].columns
        lengths = np.fromiter((request.n for request, _ in group), np.int64, len(group))
        total = int(lengths.sum())
        # Row r of pair p sits at start_p + r on each side: one index array per side for the group.
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        request_rows = (
            np.repeat(np.fromiter((r.start for r, _ in group), np.int64, len(group)), lengths)
            + within
        )
        response_rows = (
            np.repeat(np.fromiter((s.start for _, s in group), np.int64, len(group)), lengths)
            + within
        )
        ids = [name for request, _ in group for name in self.layout.row_ids(request.id, request.n)]
        ids = np.array(ids, dtype=object) if ids else np.empty(0, dtype=object)
        if not (requests.all_valid and responses.all_valid):
            keep = requests.valid[request_rows] & responses.valid[response_rows]
            ids, request_rows, response_rows = ids[keep], request_rows[keep], response_rows[keep]
        return (
            ids,
            requests.ts[request_rows],
            responses.predictions[response_rows],
            {name: values[request_rows] for name, values in requests.numeric.items()},
            {name: values[request_rows] for name, values in requests.categorical.items()},
            {name: values[response_rows] for name, values in responses.probabilities.items()},
        )


# -- persistence: the pending messages survive a restart with the window they feed ---------------
def _rows_state(rows: Any) -> dict[str, Any]:
    """One pending message's own rows as plain lists (its slice of the batch columns, copied)."""
    if isinstance(rows, RequestRows):
        columns = {
            "ts": rows.ts.tolist(),
            "numeric": {k: v.tolist() for k, v in rows.numeric.items()},
            "categorical": {k: v.tolist() for k, v in rows.categorical.items()},
        }
    else:
        columns = {
            "predictions": rows.predictions.tolist(),
            "probabilities": {k: v.tolist() for k, v in rows.probabilities.items()},
        }
    return {
        "id": rows.id,
        "n": rows.n,
        "valid": rows.valid.tolist(),
        "timestamp_ms": rows.timestamp_ms,
        "rejected": [[row, why.reason, why.detail] for row, why in rows.rejected],
        **columns,
    }


def _rows_of(state: dict[str, Any], request: bool) -> Any:
    valid = np.asarray(state["valid"], dtype=bool)
    rejected = [(int(row), Rejection(reason, detail)) for row, reason, detail in state["rejected"]]
    if request:
        columns = RequestColumns(
            np.asarray(state["ts"], dtype=np.int64),
            {k: np.asarray(v, dtype=np.float64) for k, v in state["numeric"].items()},
            {k: np.asarray(v, dtype=object) for k, v in state["categorical"].items()},
            valid,
            bool(valid.all()),
        )
        return RequestRows(
            state["id"], columns, 0, int(state["n"]), rejected, int(state["timestamp_ms"])
        )
    classes = bool(state["predictions"]) and isinstance(
        state["predictions"][0], str
    )  # a classifier's texts
    predictions = np.asarray(state["predictions"], dtype=object if classes else np.float64)
    columns = ResponseColumns(
        predictions,
        {k: np.asarray(v, dtype=np.float64) for k, v in state["probabilities"].items()},
        valid,
        bool(valid.all()),
    )
    return ResponseRows(
        state["id"], columns, 0, int(state["n"]), rejected, int(state["timestamp_ms"])
    )
