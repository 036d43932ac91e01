"""Drift scenarios: pure, seeded transforms of a chunk of simulated records, one column each.

A chunk is a dict of column arrays (the schema's features and its target) plus the stream
positions of its records; a scenario changes only records at positions >= onset. Every transform
takes its randomness from the `rng` it is given, so a seed fixes the stream.

`producer.grammar.parse_scenario` builds a `Scenario` from a spec such as `scale:carat:1.1`,
checked against the model's schema.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Chunk = dict[str, np.ndarray]  # column -> values, all the same length
Transform = Callable[[Chunk, np.ndarray, int, np.random.Generator], Chunk]

GRADUAL_RAMP_RECORDS = 20_000

# What a scenario changes (shown in --help).
INPUTS, LABELS, NOTHING = "inputs", "labels", "nothing"


def _after(positions: np.ndarray, onset: int) -> np.ndarray:
    return positions >= onset


def _rounded(values: np.ndarray, decimals: int | None) -> np.ndarray:
    return values if decimals is None else np.round(values, decimals)


# -- transforms: (chunk, positions, onset, rng) -> chunk, the input left untouched -----------------
@dataclass(frozen=True)
class NoDrift:
    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        return chunk


@dataclass(frozen=True)
class Scale:
    """A numeric column (a feature, or a regression target) x factor from onset on."""

    column: str
    factor: float
    decimals: int | None = None  # round the drifted values (the diamonds shorthands keep their precision)

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        values = chunk[self.column].astype(float)  # a copy
        drifted = _after(positions, onset)
        values[drifted] = _rounded(values[drifted] * self.factor, self.decimals)
        return {**chunk, self.column: values}


@dataclass(frozen=True)
class Shift:
    """A numeric feature + delta from onset on."""

    column: str
    delta: float

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        values = chunk[self.column].astype(float)
        drifted = _after(positions, onset)
        values[drifted] += self.delta
        return {**chunk, self.column: values}


@dataclass(frozen=True)
class Ramp:
    """A numeric feature scaled by a factor ramping linearly from 1 at onset to 1 + `delta` after
    `records` records, and staying there."""

    column: str
    delta: float  # factor - 1, computed in decimal so that 1.2 gives exactly 0.2
    records: int = GRADUAL_RAMP_RECORDS
    decimals: int | None = None

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        progress = np.clip((positions - onset) / self.records, 0.0, 1.0)
        return {**chunk, self.column: _rounded(chunk[self.column] * (1.0 + self.delta * progress), self.decimals)}


@dataclass(frozen=True)
class Mix:
    """A categorical feature redrawn from `weights` over `values` from onset on."""

    column: str
    values: tuple[Any, ...]
    weights: tuple[float, ...]

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        drifted = _after(positions, onset)
        column = chunk[self.column].copy()
        names = np.array(self.values, dtype=object)
        column[drifted] = rng.choice(names, size=int(drifted.sum()), p=list(self.weights))
        return {**chunk, self.column: column}


@dataclass(frozen=True)
class Unseen:
    """A category the model never saw in a `share` of the records from onset on."""

    column: str
    value: Any
    share: float

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        column = chunk[self.column].copy()
        hit = _after(positions, onset) & (rng.random(len(positions)) < self.share)
        column[hit] = self.value
        return {**chunk, self.column: column}


@dataclass(frozen=True)
class FlipLabels:
    """A `share` of a classifier's labels replaced by another class (uniform over the others)
    from onset on: concept drift, the features unchanged."""

    column: str
    classes: tuple[Any, ...]
    share: float

    def __call__(self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
        labels = chunk[self.column].copy()
        hit = _after(positions, onset) & (rng.random(len(positions)) < self.share)
        index = {value: i for i, value in enumerate(self.classes)}
        # A label outside the classes (-1) becomes one of them; a known one moves 1..K-1 classes on.
        codes = np.array([index.get(v, -1) for v in labels[hit].tolist()], dtype=np.int64)
        offsets = rng.integers(1, len(self.classes), size=len(codes))
        labels[hit] = np.array(self.classes, dtype=object)[(codes + offsets) % len(self.classes)]
        return {**chunk, self.column: labels}


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: its transform, what it changes, and whether records become invalid
    payloads (bad-records: chosen by `bad_record_mask`, built by `producer.invalid`)."""

    spec: str
    transform: Transform
    changes: str  # inputs | labels | nothing
    bad_records: bool = False


NO_DRIFT = Scenario("none", NoDrift(), NOTHING)


def bad_record_mask(positions: np.ndarray, onset: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which records of a chunk become invalid payloads (a `share` of those after onset)."""
    return _after(positions, onset) & (rng.random(len(positions)) < share)
