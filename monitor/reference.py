"""The no-drift reference profile: per-column bins and frequencies built once from held-out arrays.

Numeric columns (features and the model's prediction) are summarised by an ordered list of edges
e_0 < ... < e_{K-1}. A value x falls in one of 2K+1 bins:

  bin 2j     the open interval (e_{j-1}, e_j)   (bin 0 is x < e_0)
  bin 2j+1   exactly e_j
  bin 2K     x > e_{K-1} (and NaN, which sorts last)

Cumulative sums over these bins give both F(e_j^-) and F(e_j) for any sample. When the edges are
all the reference's distinct values (few of them: carat 231, depth 144, table 89 in the held-out
set), the reference CDF is flat inside every open bin while a window's CDF is monotone there, so
the maximum over bin boundaries *is* the two-sample KS statistic, exactly. Continuous columns
(predictions: ~10,400 distinct values) get `quantile_bins` reference-quantile edges instead; the
binned KS then differs from the exact one by at most the mass of one bin (~1/quantile_bins under
no drift), measured < 0.01 on 1,000-record windows.

Categorical columns keep the reference's category counts; categories the reference never saw are
handled at evaluation time (see `stats.chi2_statistic`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

PREDICTION = "prediction"  # name of the prediction column in bins and results


@dataclass(frozen=True)
class NumericBins:
    """Edges of one numeric column and the reference's cumulative fractions over its 2K+1 bins."""

    name: str
    edges: np.ndarray  # (K,) float64, strictly increasing
    reference_cdf: np.ndarray  # (2K+1,) float64, cumsum of reference bin counts / m
    exact: bool  # True when edges are all distinct reference values (binned KS == exact KS)

    @property
    def size(self) -> int:
        """Number of bins, 2K+1."""
        return 2 * len(self.edges) + 1

    def bin_index(self, values: ArrayLike) -> np.ndarray:
        """Bin of each value, (n,) int64 in [0, 2K]; vectorised with one searchsorted."""
        values = np.asarray(values, dtype=np.float64)
        left = np.searchsorted(self.edges, values, side="left")
        on_edge = np.zeros(values.shape, dtype=bool)
        inside = left < len(self.edges)
        on_edge[inside] = self.edges[left[inside]] == values[inside]
        return 2 * left + on_edge

    def counts(self, values: ArrayLike) -> np.ndarray:
        """Bin counts of a sample, (2K+1,) int64."""
        return np.bincount(self.bin_index(values), minlength=self.size)


def build_bins(name: str, values: ArrayLike, max_exact: int = 1000, quantile_bins: int = 500) -> NumericBins:
    """Edges at the distinct reference values if there are at most `max_exact`, else at quantiles."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"reference column '{name}' must be non-empty and finite")
    distinct = np.unique(values)
    exact = distinct.size <= max_exact
    edges = distinct if exact else np.unique(np.quantile(values, np.linspace(0.0, 1.0, quantile_bins + 1)))
    bins = NumericBins(name, edges, np.empty(0), exact)
    cdf = np.cumsum(bins.counts(values)) / values.size
    return NumericBins(name, edges, cdf, exact)


@dataclass(frozen=True)
class CategoricalProfile:
    """Known categories of one column (sorted) and their reference counts."""

    name: str
    categories: np.ndarray  # (C,) str, sorted: a category's position is its bin
    counts: np.ndarray  # (C,) int64
    index: dict[str, int] = field(init=False, repr=False, compare=False)  # category -> its position

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {str(c): i for i, c in enumerate(self.categories)})

    @property
    def size(self) -> int:
        return len(self.categories)

    def codes(self, values: Sequence[str]) -> np.ndarray:
        """Position of each value among the known categories, -1 when unseen, (n,) int64.

        One C-level dict lookup per value: faster than sorting or searching strings."""
        return np.fromiter(map(self.index.get, values, repeat(-1)), np.int64, len(values))


@dataclass(frozen=True)
class Reference:
    """Everything the monitor compares windows against, built from held-out arrays.

    numeric:      {feature: NumericBins}      e.g. carat, depth, table
    prediction:   NumericBins of the model's held-out predictions
    categorical:  {feature: CategoricalProfile} e.g. cut, color, clarity
    squared_errors: (m,) held-out (prediction - price)**2, for the MSE-ratio calibration
    """

    numeric: Mapping[str, NumericBins]
    categorical: Mapping[str, CategoricalProfile]
    prediction: NumericBins
    squared_errors: np.ndarray
    size: int
    mse: float = field(init=False)
    mae: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mse", float(np.mean(self.squared_errors)))
        object.__setattr__(self, "mae", float(np.mean(np.sqrt(self.squared_errors))))

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names in result order: numeric first, then categorical."""
        return tuple(self.numeric) + tuple(self.categorical)

    @property
    def layout(self) -> dict[str, int]:
        """Bins per column; a pane serialised under another layout cannot be restored."""
        sizes = {name: b.size for name, b in self.numeric.items()}
        sizes[PREDICTION] = self.prediction.size
        sizes.update({name: p.size for name, p in self.categorical.items()})
        return sizes

    @classmethod
    def from_arrays(
        cls,
        numeric: Mapping[str, ArrayLike],
        categorical: Mapping[str, Sequence[str]],
        predictions: ArrayLike,
        labels: ArrayLike,
        max_exact: int = 1000,
        quantile_bins: int = 500,
    ) -> "Reference":
        """Profile of m held-out rows: numeric {name: (m,) float}, categorical {name: (m,) str},
        predictions (m,) and labels (m,) (true prices)."""
        predictions = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.float64)
        m = predictions.size
        if m < 2 or labels.shape != predictions.shape:
            raise ValueError(f"predictions and labels must be (m,) with m >= 2, got {predictions.shape} and {labels.shape}")
        columns = {**numeric, **categorical}
        if not columns:
            raise ValueError("reference needs at least one feature column")
        for name, values in columns.items():
            if len(values) != m:
                raise ValueError(f"reference column '{name}' has {len(values)} rows, predictions have {m}")
        squared = (predictions - labels) ** 2
        if not np.all(np.isfinite(squared)):
            raise ValueError("reference predictions and labels must be finite")
        profiles = {}
        for name, values in categorical.items():
            cats, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
            profiles[name] = CategoricalProfile(name, cats, counts.astype(np.int64))
        return cls(
            numeric={name: build_bins(name, v, max_exact, quantile_bins) for name, v in numeric.items()},
            categorical=profiles,
            prediction=build_bins(PREDICTION, predictions, max_exact, quantile_bins),
            squared_errors=squared,
            size=m,
        )
