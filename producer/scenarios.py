"""Drift scenarios: pure, seeded changes to the simulated stream from its onset on, one column each.

Two kinds. A resampling scenario (`Tilt`, `Reweight`) changes which of the source's rows are drawn
after onset: each row gets a weight, so a feature's distribution moves while every record stays
a real (features, label) pair and the input->label relation holds (covariate shift). A transform
edits the drawn rows in place: a feature (scale, shift, ...: the labels kept, so the relation
changes too) or the labels alone (concept drift).

A chunk is a dict of column arrays (the schema's features and its target) plus the stream
positions of its records; a scenario changes only records at positions >= onset. Every transform
and draw takes its randomness from the `rng` it is given, so a seed fixes the stream.

`producer.grammar.parse_scenario` builds a `Scenario` from a spec such as `scale:carat:1.1`,
checked against the model's schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Chunk = dict[str, np.ndarray]  # column -> values, all the same length
Transform = Callable[[Chunk, np.ndarray, int, np.random.Generator], Chunk]

GRADUAL_RAMP_RECORDS = 20_000

# What a scenario changes (shown in --help).
NOTHING = "nothing"
INPUTS = "inputs"  # real rows drawn differently: the features move, every label is its row's own
LABELS = "labels"  # the labels alone: the features as drawn
BOTH = (
    "both"  # features edited in place and the labels kept, so the input->label relation changes too
)
PAYLOADS = "payloads"  # records replaced by invalid payloads (bad-records)

# Below this many effective rows (Kish: (sum w)^2 / sum w^2) a resampled stream replays a handful
# of records over and over: a change the reference cannot really give.
MIN_EFFECTIVE_ROWS = 100


def _after(positions: np.ndarray, onset: int) -> np.ndarray:
    return positions >= onset


def _rounded(values: np.ndarray, decimals: int | None) -> np.ndarray:
    return values if decimals is None else np.round(values, decimals)


# -- transforms: (chunk, positions, onset, rng) -> chunk, the input left untouched -----------------
@dataclass(frozen=True)
class NoDrift:
    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
        return chunk


@dataclass(frozen=True)
class Scale:
    """A numeric column (a feature, or a regression target) x factor from onset on."""

    column: str
    factor: float
    decimals: int | None = None  # round the drifted values (price-inflation: whole dollars)

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
        values = chunk[self.column].astype(float)  # a copy
        drifted = _after(positions, onset)
        values[drifted] = _rounded(values[drifted] * self.factor, self.decimals)
        return {**chunk, self.column: values}


@dataclass(frozen=True)
class Shift:
    """A numeric feature + delta from onset on."""

    column: str
    delta: float

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
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

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
        progress = np.clip((positions - onset) / self.records, 0.0, 1.0)
        return {**chunk, self.column: chunk[self.column] * (1.0 + self.delta * progress)}


@dataclass(frozen=True)
class Redraw:
    """A categorical feature redrawn in place from `weights` over `values` from onset on (the
    labels kept: the rows' other features and labels no longer go with the new category)."""

    column: str
    values: tuple[Any, ...]
    weights: tuple[float, ...]

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
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

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
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

    def __call__(
        self, chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> Chunk:
        labels = chunk[self.column].copy()
        hit = _after(positions, onset) & (rng.random(len(positions)) < self.share)
        index = {value: i for i, value in enumerate(self.classes)}
        # A label outside the classes (-1) becomes one of them; a known one moves 1..K-1 classes on.
        codes = np.array([index.get(v, -1) for v in labels[hit].tolist()], dtype=np.int64)
        offsets = rng.integers(1, len(self.classes), size=len(codes))
        labels[hit] = np.array(self.classes, dtype=object)[(codes + offsets) % len(self.classes)]
        return {**chunk, self.column: labels}


# -- resampling: row weights over the source -------------------------------------------------------
def tilt_weights(values: np.ndarray, factor: float, column: str = "the column") -> np.ndarray:
    """(rows,) weights summing to 1 whose weighted mean of `values` is `factor` x their mean:
    the exponential tilt w_i ∝ exp(θ·x_i), θ solved with brentq.

    Of all reweightings of the rows with that mean, the tilt is the closest to the source in KL
    divergence (the I-projection): the smallest change of distribution that moves the mean.
    ValueError when no weights of these values reach it (a one-line reason).
    """
    from scipy.optimize import brentq  # here: only a tilt pays for loading scipy.optimize

    x = np.asarray(values, dtype=float)
    mean, spread = float(x.mean()), float(x.std())
    if spread == 0:
        raise ValueError(
            f"{column} is constant ({mean:g}) in the reference: no reweighting moves its mean"
        )
    if mean == 0:
        raise ValueError(f"{column}'s reference mean is 0: a factor cannot move it")
    low, high, target = float(x.min()), float(x.max()), factor * mean
    if not low < target < high:  # every weighted mean lies strictly between the extremes
        reach = sorted((low / mean, high / mean))
        raise ValueError(
            f"{column}'s reference values span {low:g} to {high:g} (mean {mean:g}): no draw of them has "
            f"mean {factor:g} x {mean:g} = {target:g}; choose FACTOR between {reach[0]:.3g} and {reach[1]:.3g}"
        )
    z = (x - mean) / spread  # θ on standardised values: the same family, a well-scaled root

    def weights(theta: float) -> np.ndarray:
        exponent = theta * z
        w = np.exp(exponent - exponent.max())  # shifted: no overflow at any θ
        return w / w.sum()

    def excess(theta: float) -> float:  # increasing in θ (its derivative is the weighted variance)
        return float(weights(theta) @ x) - target

    low_theta, high_theta = -1.0, 1.0
    while excess(low_theta) > 0:
        low_theta *= 2
    while excess(high_theta) < 0:
        high_theta *= 2
    return weights(brentq(excess, low_theta, high_theta, xtol=1e-12))


def category_weights(
    values: np.ndarray, targets: Mapping[Any, float] | None, column: str = "the column"
) -> np.ndarray:
    """(rows,) weights summing to 1 under which the categories of `values` have the `targets`
    shares (None: uniform over the categories the values hold): a row of category c weighs
    target_c / count_c. ValueError when a target category has no row to draw."""
    present, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
    held = present.tolist()
    if targets is None:
        shares = np.full(len(held), 1.0 / len(held))
    else:
        missing = [value for value, share in targets.items() if share > 0 and value not in held]
        if missing:
            raise ValueError(
                f"the reference has no {column} row of {', '.join(map(str, missing))} to draw: give it "
                f"weight 0, or use redraw:{column}:... to write it in place"
            )
        shares = np.array([targets.get(value, 0.0) for value in held], dtype=float)
    per_row = (shares / counts)[codes.reshape(-1)]
    return per_row / per_row.sum()


def effective_rows(weights: np.ndarray) -> float:
    """Kish's effective number of rows a weighted draw rests on: (sum w)^2 / sum w^2."""
    return float(weights.sum() ** 2 / (weights @ weights))


@dataclass(frozen=True)
class Tilt:
    """Rows drawn from onset on with exponential-tilt weights on numeric `column`, so that its mean
    becomes `factor` x the source's (`tilt_weights`); with `records`, the share of tilted draws
    ramps linearly from 0 at onset to 1 after that many records (gradual), then stays 1."""

    column: str
    factor: float
    records: int | None = None

    def weights(self, source: Chunk) -> np.ndarray:
        return tilt_weights(source[self.column], self.factor, self.column)

    def share(self, positions: np.ndarray, onset: int) -> np.ndarray:
        if self.records is None:
            return _after(positions, onset).astype(float)
        return np.clip((positions - onset) / self.records, 0.0, 1.0)


@dataclass(frozen=True)
class Reweight:
    """Rows drawn from onset on by the category of `column`, so that its mix becomes `shares` over
    `values` (empty: uniform over the categories the source holds); see `category_weights`."""

    column: str
    values: tuple[Any, ...] = ()
    shares: tuple[float, ...] = ()

    def weights(self, source: Chunk) -> np.ndarray:
        targets = dict(zip(self.values, self.shares)) if self.values else None
        return category_weights(source[self.column], targets, self.column)

    def share(self, positions: np.ndarray, onset: int) -> np.ndarray:
        return _after(positions, onset).astype(float)


Resample = Tilt | Reweight


@dataclass(frozen=True)
class WeightedDraw:
    """A resampling scenario's draw over one source: its row weights as a CDF, built once."""

    resample: Resample
    cdf: np.ndarray  # (rows,) cumulative weights, the last exactly 1

    @classmethod
    def over(cls, resample: Resample, source: Chunk) -> WeightedDraw:
        cdf = np.cumsum(resample.weights(source))
        return cls(resample, cdf / cdf[-1])

    def pick(
        self, uniform: np.ndarray, positions: np.ndarray, onset: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Row indices of a chunk: each record after onset is a weighted draw with the scenario's
        share (1, or the ramp), else keeps its uniform pick. A chunk wholly before onset uses no
        randomness, so the stream up to the onset is the `none` stream's."""
        share = self.resample.share(positions, onset)
        if not share.any():
            return uniform
        weighted = rng.random(len(positions)) < share
        picked = uniform.copy()
        # u in [0, 1) falls in row i's step of the CDF with probability w_i; a row of weight 0
        # has no step, and u < cdf[-1] = 1 keeps every index in range.
        picked[weighted] = np.searchsorted(self.cdf, rng.random(int(weighted.sum())), side="right")
        return picked


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: which rows are drawn (`resample`: row weights, None = uniform), its
    transform of the drawn rows, what it changes, and whether records become invalid payloads
    (bad-records: chosen by `bad_record_mask`, built by `producer.invalid`)."""

    spec: str
    transform: Transform
    changes: str  # nothing | inputs | labels | both | payloads
    bad_records: bool = False
    resample: Resample | None = None


NO_DRIFT = Scenario("none", NoDrift(), NOTHING)


def bad_record_mask(
    positions: np.ndarray, onset: int, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Which records of a chunk become invalid payloads (a `share` of those after onset)."""
    return _after(positions, onset) & (rng.random(len(positions)) < share)
