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

The model's outputs are columns too, tested like features (see `drift`): a regression model's
prediction is a numeric column; a classifier's predicted class is a categorical one (its profile:
the reference's predicted-class counts) and each class probability, when the messages carry them,
a numeric column named `p(<class>)`. Every column is either a KS column (binned, numeric) or a
chi-square column (counted categories): `Reference.ks_columns` / `chi2_columns`.

The reference also holds the error test on joined records (`monitor.errortest`), built from the
held-out predictions and labels (and a classifier's confidence, from its probability columns), so
every process that builds the same reference (`monitor run`, `worker`, `evaluate`) has the same one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from monitor import errortest

if TYPE_CHECKING:  # the core imports no pandas: `from_schema` takes the frame its caller read
    from contract.schema import Schema

PREDICTION = "prediction"  # name of the prediction column in bins and results
TASKS = ("regression", "classification")


def probability_column(class_text: str) -> str:
    """Name of a class's probability column in bins and results: p(<class>)."""
    return f"p({class_text})"


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


def build_bins(
    name: str, values: ArrayLike, max_exact: int = 1000, quantile_bins: int = 500
) -> NumericBins:
    """Edges at the distinct reference values if there are at most `max_exact`, else at quantiles."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"reference column '{name}' must be non-empty and finite")
    distinct = np.unique(values)
    exact = distinct.size <= max_exact
    edges = (
        distinct
        if exact
        else np.unique(np.quantile(values, np.linspace(0.0, 1.0, quantile_bins + 1)))
    )
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


def build_profile(name: str, values: Sequence[str]) -> CategoricalProfile:
    """The categories a reference column holds (as text) and how often."""
    cats, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return CategoricalProfile(name, cats, counts.astype(np.int64))


@dataclass(frozen=True)
class Reference:
    """Everything the monitor compares windows against, built from held-out arrays.

    numeric:      {feature: NumericBins}        e.g. carat, depth, table
    categorical:  {feature: CategoricalProfile} e.g. cut, color, clarity
    prediction:   regression: NumericBins of the held-out predictions;
                  classification: CategoricalProfile of the held-out predicted classes
    squared_errors: (m,) per-row loss behind concept drift: regression (prediction - label)**2,
                  classification 1.0 where the predicted class is not the label, else 0.0 (its
                  own square), so `mse` is the error rate
    probabilities: classification with probabilities: {class text: NumericBins of p(class)}
    classes:      classification: the class texts the model knows (the schema's)
    error_test:   the test on the joined errors' distribution (`errortest.from_reference`): a
                  regression's `ResidualKS`, a classifier's `ConfidenceWeightedErrors` (weighted by
                  its confidence when the reference has probability columns)

    >>> rng = np.random.default_rng(0)
    >>> reference = Reference.from_arrays({"x": rng.normal(0, 1, 500)}, {"c": rng.choice(["a", "b"], 500)},
    ...                                   rng.normal(0, 1, 500), rng.normal(0, 1, 500))  # predictions, labels
    >>> reference.features, reference.task, reference.size, round(reference.mse, 3)
    (('x', 'c'), 'regression', 500, 2.023)
    """

    numeric: Mapping[str, NumericBins]
    categorical: Mapping[str, CategoricalProfile]
    prediction: NumericBins | CategoricalProfile
    squared_errors: np.ndarray
    size: int
    task: str = "regression"
    probabilities: Mapping[str, NumericBins] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    error_test: errortest.ErrorTest | None = field(default=None, compare=False, repr=False)
    mse: float = field(init=False)
    mae: float = field(init=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "mse", float(np.mean(self.squared_errors)))
        object.__setattr__(self, "mae", float(np.mean(np.sqrt(self.squared_errors))))

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def error_rate(self) -> float | None:
        """Classification: share of held-out rows whose predicted class is not the label."""
        return self.mse if self.classification else None

    def confidences(self, probabilities: Mapping[str, ArrayLike]) -> np.ndarray | None:
        """The model's confidence per record (`errortest.confidence`: its top class probability) from
        a batch's probabilities {class text: (n,) float}, (n,); None when the reference has no
        probability columns or the batch lacks one of them."""
        if not self.probabilities or any(c not in probabilities for c in self.probabilities):
            return None
        return _confidence({c: probabilities[c] for c in self.probabilities})

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names in result order: numeric first, then categorical."""
        return tuple(self.numeric) + tuple(self.categorical)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model's output columns in result order: the prediction, then p(<class>) columns."""
        return (PREDICTION, *map(probability_column, self.probabilities))

    @property
    def ks_columns(self) -> dict[str, NumericBins]:
        """Columns tested with KS, in pane order: numeric features, then the regression prediction
        or the class probabilities."""
        columns = dict(self.numeric)
        if self.classification:
            columns.update({probability_column(c): bins for c, bins in self.probabilities.items()})
        else:
            columns[PREDICTION] = self.prediction  # type: ignore[assignment]
        return columns

    @property
    def chi2_columns(self) -> dict[str, CategoricalProfile]:
        """Columns tested with chi-square, in pane order: categorical features, then the predicted class."""
        columns = dict(self.categorical)
        if self.classification:
            columns[PREDICTION] = self.prediction  # type: ignore[assignment]
        return columns

    @property
    def layout(self) -> dict[str, int]:
        """Bins per column, KS columns then chi-square columns; a pane serialised under another
        layout cannot be restored. Regression: numeric..., prediction, categorical... (as always)."""
        sizes = {name: b.size for name, b in self.ks_columns.items()}
        sizes.update({name: p.size for name, p in self.chi2_columns.items()})
        return sizes

    @classmethod
    def from_arrays(
        cls,
        numeric: Mapping[str, ArrayLike],
        categorical: Mapping[str, Sequence[str]],
        predictions: ArrayLike,
        labels: ArrayLike,
        *,
        task: str = "regression",
        probabilities: Mapping[str, ArrayLike] | None = None,
        classes: Sequence[str] = (),
        max_exact: int = 1000,
        quantile_bins: int = 500,
    ) -> Reference:
        """Profile of m held-out rows: numeric {name: (m,) float}, categorical {name: (m,) str},
        predictions (m,) and labels (m,): floats for regression; class texts for classification,
        with `classes` the known class texts and `probabilities` {class text: (m,) float} (or None)."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        classification = task == "classification"
        kind = object if classification else np.float64
        predictions, labels = np.asarray(predictions, dtype=kind), np.asarray(labels, dtype=kind)
        m = predictions.size
        if m < 2 or labels.shape != predictions.shape:
            raise ValueError(
                f"predictions and labels must be (m,) with m >= 2, got {predictions.shape} and {labels.shape}"
            )
        columns = {**numeric, **categorical}
        if not columns:
            raise ValueError("reference needs at least one feature column")
        probabilities = dict(probabilities or {})
        if probabilities and not classification:
            raise ValueError("class probabilities belong to a classification reference")
        outputs = {PREDICTION, *map(probability_column, probabilities)}
        for name, values in {**columns, **probabilities}.items():
            if len(values) != m:
                raise ValueError(
                    f"reference column '{name}' has {len(values)} rows, predictions have {m}"
                )
            if name in outputs:
                raise ValueError(f"feature '{name}' has the name of an output column; rename it")
        if classification:
            predictions, labels = predictions.astype(str), labels.astype(str)
            squared = (predictions != labels).astype(np.float64)
            prediction: NumericBins | CategoricalProfile = build_profile(PREDICTION, predictions)
            classes = tuple(map(str, classes)) or tuple(
                np.unique(np.concatenate((predictions, labels))).tolist()
            )
            confidences = _confidence(probabilities) if probabilities else None
        else:
            squared = (predictions - labels) ** 2
            if not np.all(np.isfinite(squared)):
                raise ValueError("reference predictions and labels must be finite")
            prediction = build_bins(PREDICTION, predictions, max_exact, quantile_bins)
            classes = ()
            confidences = None
        return cls(
            numeric={
                name: build_bins(name, v, max_exact, quantile_bins) for name, v in numeric.items()
            },
            categorical={name: build_profile(name, values) for name, values in categorical.items()},
            prediction=prediction,
            squared_errors=squared,
            size=m,
            task=task,
            probabilities={
                str(c): build_bins(probability_column(str(c)), v, max_exact, quantile_bins)
                for c, v in probabilities.items()
            },
            classes=classes,
            error_test=errortest.from_reference(task, predictions, labels, confidences),
        )

    @classmethod
    def from_schema(cls, schema: Schema, frame: Any, **bins: int) -> Reference:
        """Profile of the frame `contract.artifacts.read_reference(path, schema)` returns: numeric
        features float, categorical ones (and classes) in their native kind, counted as text
        (`contract.rules.category_text`: 3 -> "3", True -> "true"); `bins`: max_exact, quantile_bins."""
        from contract.artifacts import category_column  # the caller already holds a pandas frame

        def column(name: str) -> np.ndarray:
            return np.asarray(frame[name].to_numpy())

        numeric = {name: column(name).astype(np.float64) for name in schema.numeric}
        categorical = {name: category_column(column(name)) for name in schema.categorical}
        if schema.classification:
            probabilities = {
                text: column(name).astype(np.float64)
                for text, name in zip(schema.probability_classes, schema.probability_columns)
            }
            return cls.from_arrays(
                numeric,
                categorical,
                category_column(column(schema.prediction)),
                category_column(column(schema.target)),
                task="classification",
                probabilities=probabilities,
                classes=schema.class_texts,
                **bins,
            )
        return cls.from_arrays(
            numeric,
            categorical,
            column(schema.prediction).astype(np.float64),
            column(schema.target).astype(np.float64),
            **bins,
        )


def _confidence(probabilities: Mapping[str, ArrayLike]) -> np.ndarray:
    """Top class probability per record from {class text: (n,) float}: one column is a binary
    model's positive class (confidence max(p, 1 - p)), several are stacked (n, C)."""
    columns = [np.asarray(v, dtype=np.float64) for v in probabilities.values()]
    return errortest.confidence(columns[0] if len(columns) == 1 else np.stack(columns, axis=1))
