"""The rows the paired formats decode: a batch's columns, and each message's run of rows in them.

`PairedDecoder.requests` / `.responses` decode a consumer batch of messages into one
`RequestColumns` / `ResponseColumns` (numpy columns over all its rows) and one `RequestRows` /
`ResponseRows` per message: the message's id and its rows start..start+n-1, read as views. The join
(`monitor.pairing`) gathers whole batches by index arrays instead of slicing per message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from contract.rules import Rejection

RowRejections = list[tuple[int, Rejection]]  # (row within its message, why it was refused)


@dataclass(frozen=True)
class RequestColumns:
    """The rows of a batch of request messages, column by column (each message a run of rows)."""

    ts: np.ndarray  # (N,) int64 epoch ms
    numeric: Mapping[str, np.ndarray]  # {feature: (N,) float64}
    categorical: Mapping[str, np.ndarray]  # {feature: (N,) object texts}
    valid: np.ndarray  # (N,) bool: rows that passed the schema's checks
    all_valid: bool = True


@dataclass(frozen=True)
class ResponseColumns:
    """The rows of a batch of response messages."""

    predictions: np.ndarray  # (N,) float64 (regression) or object class texts
    probabilities: Mapping[str, np.ndarray]  # {class text: (N,) float64}, empty when not configured
    valid: np.ndarray
    all_valid: bool = True


class RequestRows(NamedTuple):  # NamedTuples: one per message, built in 0.3 us
    """The n rows of one request message: rows start..start+n-1 of its batch's columns."""

    id: str
    columns: RequestColumns
    start: int
    n: int
    rejected: RowRejections = ()  # (row, why) of the rows that failed the schema's checks
    timestamp_ms: int = 0  # the message's Kafka timestamp (the join's clock)

    @property
    def rows(self) -> slice:
        return slice(self.start, self.start + self.n)

    @property
    def ts(self) -> np.ndarray:
        return self.columns.ts[self.rows]

    @property
    def numeric(self) -> dict[str, np.ndarray]:
        return {name: column[self.rows] for name, column in self.columns.numeric.items()}

    @property
    def categorical(self) -> dict[str, np.ndarray]:
        return {name: column[self.rows] for name, column in self.columns.categorical.items()}

    @property
    def valid(self) -> np.ndarray:
        return self.columns.valid[self.rows]


class ResponseRows(NamedTuple):
    """The n rows of one response message: rows start..start+n-1 of its batch's columns."""

    id: str
    columns: ResponseColumns
    start: int
    n: int
    rejected: RowRejections = ()
    timestamp_ms: int = 0

    @property
    def rows(self) -> slice:
        return slice(self.start, self.start + self.n)

    @property
    def predictions(self) -> np.ndarray:
        return self.columns.predictions[self.rows]

    @property
    def probabilities(self) -> dict[str, np.ndarray]:
        return {name: column[self.rows] for name, column in self.columns.probabilities.items()}

    @property
    def valid(self) -> np.ndarray:
        return self.columns.valid[self.rows]
