"""Fitting the performance estimators (`monitor.estimate`) from the reference, at start-up.

`monitor run --schema S --reference R` has what it needs: the reference rows, with labels,
predictions and (a classifier's) probabilities. Fitting is seeded, so the same reference gives the
same estimator in every process (workers' panes add up only then; compare `fingerprint()`; the
thread count does not change it), and single-threaded: on this 2-core machine, busy with other
work, diamonds' nanny took 35 s on OpenMP's default 2 threads and 1.0 s on one. It runs in
seconds (bench/ESTIMATE_RESULTS.md: diamonds' 10,788 rows in 1.4-3.4 s, 50,000 rows in 3.2-6.9 s;
9.5 s and 17.1 s with both cores held by busy loops).

Regression: the nanny. Five folds of the reference: the nanny fitted on four predicts the fifth,
so every reference row gets an out-of-fold estimate of its squared error (the null's values).
The nanny is scikit-learn's HistGradientBoostingRegressor with
- `interaction_cst="no_interactions"`: every tree splits on one column, so the model is a sum of
  one function per column and becomes a lookup table over the monitor's own bins (the features
  are the per-column bin indexes `PaneLayout.encode` gives, categories as categorical features):
  0.3 us a record instead of predict's 48 us (5,000-row batches) to 840 us (50-row batches);
- Poisson loss (log link): losses are multiplicative (a diamond's squared dollar error grows with
  its price), the estimate is positive, and the fit's mean matches the mean loss;
- 100 rounds at learning rate 0.1 of trees with 7 leaves of >= 100 rows (fewer on a small
  reference): as close to the realized MSE under the diamonds covariate shifts as 200 rounds at
  0.05 in 2/3 of the time, and as an unconstrained HGB (bench/ESTIMATE_RESULTS.md), where an
  unconstrained Poisson HGB underestimated by 10-12%. Larger trees fit the reference's own rows
  closer (better on a replay of them) but new rows worse, and widen the null: fitted on half the
  diamonds reference, the threshold at 1,000 records went from +0.44 to +0.89 with 31-leaf trees.
A second nanny, fitted once on all rows, gives the absolute error (MAE gauge, not alarmed).

Classification: top-label calibration per predicted class (Gupta & Ramdas, ICLR 2022). For the
rows predicted as class k, an isotonic map from the model's probability of k to whether the label
is k. Why this and not one-vs-rest per class then renormalised: the error rate needs exactly
P(predicted class is right | the record), a one-dimensional map per predicted class; one-vs-rest
fits K maps over every row (most far from where each class is predicted) and renormalising breaks
the calibration each map was fitted for. Why per predicted class and not one pooled top-class map:
precision and recall need each predicted class's own calibration (a model can be sure and wrong
more often on one side). A binary model is the same thing as calibrating P(positive) on each
side of its decision. A class predicted on fewer than `min_class_rows` reference rows keeps its
raw probability. The isotonic map is kept only when it lowers the held-out Brier score of the
predicted correctness on the same five folds (the Brier score's reducible part is the
calibration error; the rest, the resolution the isotonic steps give up, is charged too);
otherwise the raw probability is used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.estimate import ConfidenceEstimator, EstimateNull, LossEstimator
from monitor.reference import PREDICTION, Reference
from monitor.windows import EncodedBatch, PaneLayout, PredictionBatch

if TYPE_CHECKING:
    from contract.schema import Schema

log = logging.getLogger(__name__)

# The nanny's settings; see the module doc and bench/ESTIMATE_RESULTS.md for the comparison.
NANNY_PARAMS: dict[str, Any] = {
    "loss": "poisson",
    "interaction_cst": "no_interactions",
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 7,
    "early_stopping": False,
}
MIN_ROWS = 100  # fewer reference rows: no estimate (five folds of 20 rows estimate nothing)
MAX_CATEGORIES = (
    255  # HistGradientBoosting's limit for a categorical feature; above it, ordinal codes
)


@dataclass(frozen=True)
class Fitted:
    """An estimator (None: no estimate) and one line for the start-up log saying which, or why not."""

    estimator: LossEstimator | ConfidenceEstimator | None
    reason: str
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)


def reference_batch(schema: Schema, frame: Any) -> tuple[PredictionBatch, np.ndarray]:
    """The reference frame (`contract.artifacts.read_reference`) as the batch the monitor would
    receive, categories as text, and its labels ((m,) float, or class texts)."""
    from contract.artifacts import category_column

    def column(name: str) -> np.ndarray:
        return np.asarray(frame[name].to_numpy())

    m = len(frame)
    classification = schema.classification
    predictions = (
        category_column(column(schema.prediction))
        if classification
        else column(schema.prediction).astype(np.float64)
    )
    labels = (
        category_column(column(schema.target))
        if classification
        else column(schema.target).astype(np.float64)
    )
    probabilities = (
        {
            text: column(name).astype(np.float64)
            for text, name in zip(schema.probability_classes, schema.probability_columns)
        }
        if classification
        else {}
    )
    batch = PredictionBatch(
        np.array([f"reference-{i}" for i in range(m)], dtype=object),
        np.zeros(m, np.int64),
        predictions,
        {c: column(c).astype(np.float64) for c in schema.numeric},
        {c: category_column(column(c)) for c in schema.categorical},
        probabilities,
    )
    return batch, labels


def fit_from_schema(schema: Schema, frame: Any, reference: Reference, **options: Any) -> Fitted:
    """`fit_estimator` on the reference frame `read_reference(path, schema)` returns."""
    batch, labels = reference_batch(schema, frame)
    return fit_estimator(reference, batch, labels, **options)


def fit_estimator(
    reference: Reference,
    batch: PredictionBatch,
    labels: Sequence[Any],
    *,
    folds: int = 5,
    seed: int = 0,
    threads: int = 1,
    min_class_rows: int = 100,
) -> Fitted:
    """The estimator for this reference, fitted on its rows as a batch (`reference_batch`) and their
    labels, or None with the reason. Seeded; OpenMP bounded to `threads` (HistGradientBoosting
    takes every core otherwise, and stalls when the broker and the scorer hold them).

    A regression whose errors grow with x, 1,000 reference rows:

    >>> rng = np.random.default_rng(0)
    >>> x = np.round(rng.uniform(0, 10, 1000), 1)
    >>> labels = 2 * x + rng.normal(0, 1, 1000) * (1 + x)
    >>> reference = Reference.from_arrays({"x": x}, {}, 2 * x, labels)
    >>> batch = PredictionBatch(np.array([str(i) for i in range(1000)], dtype=object), np.zeros(1000, np.int64),
    ...                         2 * x, {"x": x}, {})
    >>> estimator = fit_estimator(reference, batch, labels, seed=0).estimator
    >>> estimator.names, round(reference.mse, 1), round(estimator.reference_value, 1)
    (('squared', 'absolute', 'outside'), 46.8, 46.5)
    >>> expected = estimator.per_record(batch, PaneLayout(reference).encode(batch))[:, 0]
    >>> squared = (2 * x - labels) ** 2  # the realized: 16.9 below x = 5, 72.8 above
    >>> round(float(expected[x < 5].mean()), 1), round(float(expected[x >= 5].mean()), 1)
    (17.1, 72.7)
    """
    # Loaded before the limit: threadpoolctl bounds only the OpenMP runtimes already loaded, and
    # the first HistGradientBoosting import is what loads it (imported inside the block, the first
    # fit, the only one at start-up, ran on every core: measured 2 threads, not 1).
    from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: F401
    from threadpoolctl import threadpool_limits

    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    m = len(batch)
    if m != reference.size or len(labels) != m:
        raise ValueError(
            f"the batch ({m} rows) and labels ({len(labels)}) must be the reference's "
            f"{reference.size} rows"
        )
    task = "error rate" if reference.classification else "MSE"
    if m < MIN_ROWS:
        return Fitted(
            None, f"no estimated {task}: the reference has {m} rows, {MIN_ROWS} needed to cross-fit"
        )
    if reference.classification:
        missing = [c for c in reference.classes if c not in batch.probabilities]
        if not batch.probabilities or (
            missing and not (len(reference.classes) == 2 and len(batch.probabilities) == 1)
        ):
            return Fitted(
                None,
                "no estimated error rate: the prediction messages carry no class probabilities "
                "(schema messages.probabilities or probability_fields), and estimating performance "
                "without labels needs the model's confidence; the error rate is known once labels come",
            )
    layout = PaneLayout(reference)
    encoded = layout.encode(batch)
    started = time.perf_counter()
    with threadpool_limits(limits=threads, user_api="openmp"):
        try:
            if reference.classification:
                estimator, details = _fit_confidence(
                    layout,
                    batch,
                    encoded,
                    np.asarray(labels, dtype=object),
                    folds,
                    seed,
                    min_class_rows,
                )
            else:
                estimator, details = _fit_loss(
                    layout, batch, encoded, np.asarray(labels, dtype=np.float64), folds, seed
                )
        except ValueError as exc:  # degenerate references: a perfect model, constant estimates
            return Fitted(None, f"no estimated {task}: {exc}")
    seconds = time.perf_counter() - started
    return Fitted(estimator, f"{estimator.describe()}; fitted in {seconds:.1f} s", seconds, details)


def _folds(m: int, folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """(m,) fold of every row: shuffled, seeded; stratified by `groups` (the predicted class) if given."""
    from sklearn.model_selection import KFold, StratifiedKFold

    out = np.empty(m, dtype=np.int64)
    stratified = groups is not None and np.unique(groups, return_counts=True)[1].min() >= folds
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if stratified
        else KFold(folds, shuffle=True, random_state=seed)
    )
    for k, (_, test) in enumerate(splitter.split(np.zeros(m), groups if stratified else None)):
        out[test] = k
    return out


# -- regression: the additive nanny -----------------------------------------------------------------
def _nanny(categorical: np.ndarray, seed: int, m: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        **NANNY_PARAMS,
        min_samples_leaf=min(100, max(20, m // 50)),
        categorical_features=categorical,
        random_state=seed,
    )


def _bin_features(layout: PaneLayout, encoded: EncodedBatch) -> tuple[np.ndarray, np.ndarray]:
    """(m, columns) per-column bin index (float) and which columns the nanny treats as categorical."""
    starts = np.array([s.start for s in layout.slices.values()])
    categorical = np.array(
        [
            name in layout.chi2_columns and layout.sizes[name] <= MAX_CATEGORIES
            for name in layout.sizes
        ]
    )
    return (encoded.flat - starts).astype(np.float64), categorical


def _additive_table(model, layout: PaneLayout, encoded: EncodedBatch) -> tuple[np.ndarray, float]:
    """An additive log-link model as (total + 1,) per-bin contributions and an intercept.

    Each column's function is read off by moving that column alone through all its bins from a
    base row (every bin 0): log f(x) = log f(base) + sum_j [g_j(x_j) - g_j(0)], exactly, because
    no tree mixes two columns. Each column's contributions are then centred on the reference
    rows, so the spill bin (an unseen category) contributes 0: the reference's average."""
    names = list(layout.sizes)
    grid = np.zeros((layout.total, len(names)))
    for j, name in enumerate(names):
        part = layout.slices[name]
        grid[part, j] = np.arange(layout.sizes[name])
    base = float(np.log(model.predict(np.zeros((1, len(names)))))[0])
    table = np.log(model.predict(grid)) - base
    centre = table[encoded.flat].mean(axis=0)
    for j, name in enumerate(names):
        table[layout.slices[name]] -= centre[j]
    return np.append(table, 0.0), base + float(centre.sum())


def _outside(layout: PaneLayout) -> np.ndarray:
    """(total + 1,) True at every numeric column's first and last bin (below the reference's
    minimum, above its maximum or NaN) and at the spill bin (a category the reference never held)."""
    outside = np.zeros(layout.total + 1, dtype=bool)
    for name in layout.ks_columns:
        part = layout.slices[name]
        outside[[part.start, part.stop - 1]] = True
    outside[layout.total] = True
    return outside


def _fit_loss(
    layout: PaneLayout,
    batch: PredictionBatch,
    encoded: EncodedBatch,
    labels: np.ndarray,
    folds: int,
    seed: int,
) -> tuple[LossEstimator, dict[str, Any]]:
    errors = np.asarray(batch.predictions, dtype=np.float64) - labels
    squared, absolute = errors**2, np.abs(errors)
    if not squared.any():
        raise ValueError(
            "the model makes no error on the reference, so there is no loss to estimate"
        )
    X, categorical = _bin_features(layout, encoded)
    m = len(X)
    fold = _folds(m, folds, seed)
    out_of_fold = np.empty(m)
    for k in range(folds):
        test = fold == k
        out_of_fold[test] = (
            _nanny(categorical, seed, m).fit(X[~test], squared[~test]).predict(X[test])
        )
    tables, intercepts = zip(
        *(
            _additive_table(_nanny(categorical, seed, m).fit(X, target), layout, encoded)
            for target in (squared, absolute)
        )
    )
    outside = _outside(layout)
    provisional = LossEstimator(
        layout.sizes, tables, intercepts, outside, EstimateNull(out_of_fold), 1.0, 1.0
    )
    in_sample = provisional.per_record(batch, encoded)[:, 0]
    null = EstimateNull(out_of_fold, in_sample)
    estimator = LossEstimator(
        layout.sizes, tables, intercepts, outside, null, squared.mean(), absolute.mean()
    )
    details = {
        "rows": m,
        "folds": folds,
        "realized_mse": float(squared.mean()),
        "mean_out_of_fold": null.reference,
        "mean_in_sample": float(in_sample.mean()),
        "correlation_out_of_fold": float(np.corrcoef(out_of_fold, squared)[0, 1]),
    }
    return estimator, details


# -- classification: calibrated confidence ----------------------------------------------------------
def _predicted(
    layout: PaneLayout, classes: tuple[str, ...], encoded: EncodedBatch
) -> tuple[dict[int, int], np.ndarray]:
    """{flat bin of a predicted class: its index among `classes`} and every row's predicted class index."""
    part = layout.slices[PREDICTION]
    profile = layout.chi2_columns[PREDICTION]
    index = {c: k for k, c in enumerate(classes)}
    bins = {
        part.start + code: index[str(text)]
        for code, text in enumerate(profile.categories)
        if str(text) in index
    }
    lookup = np.full(layout.total + 1, -1, dtype=np.int64)
    lookup[list(bins)] = list(bins.values())
    return bins, lookup[encoded.flat[:, list(layout.sizes).index(PREDICTION)]]


def _isotonic(p: np.ndarray, right: np.ndarray):
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, right)


def _knots(model) -> tuple[np.ndarray, np.ndarray]:
    """The isotonic map as np.interp knots over [0, 1] (flat beyond its ends, as `clip` predicts)."""
    x, y = np.asarray(model.X_thresholds_, np.float64), np.asarray(model.y_thresholds_, np.float64)
    if x[0] > 0.0:
        x, y = np.r_[0.0, x], np.r_[y[0], y]
    if x[-1] < 1.0:
        x, y = np.r_[x, 1.0], np.r_[y, y[-1]]
    return x, y


def _fit_confidence(
    layout: PaneLayout,
    batch: PredictionBatch,
    encoded: EncodedBatch,
    labels: np.ndarray,
    folds: int,
    seed: int,
    min_class_rows: int,
) -> tuple[ConfidenceEstimator, dict[str, Any]]:
    reference = layout.reference
    classes = reference.classes
    bins, predicted = _predicted(layout, classes, encoded)
    positive = (
        1 if len(classes) == 2 else None
    )  # sklearn's convention: the second class is the positive one
    raw = ConfidenceEstimator(
        layout.sizes,
        classes,
        [([0.0, 1.0], [0.0, 1.0])] * len(classes),
        bins,
        positive,
        _outside(layout),
        EstimateNull([0.0, 1.0]),
        0.0,
    )
    p = (
        1.0 - raw.per_record(batch, encoded)[:, 0]
    )  # the model's probability of the class it predicted
    right = (np.asarray(batch.predictions, dtype=object) == labels).astype(np.float64)
    fold = _folds(len(p), folds, seed, predicted)
    right_out_of_fold = p.copy()
    knots: list[tuple[Any, Any]] = []
    calibration: dict[
        str, dict[str, Any]
    ] = {}  # per class: rows, kept or not, held-out Brier scores
    details: dict[str, Any] = {
        "rows": len(p),
        "folds": folds,
        "realized_error_rate": float(1 - right.mean()),
        "classes": calibration,
    }
    for k, name in enumerate(classes):
        rows = predicted == k
        count = int(rows.sum())
        if count < min_class_rows or right[rows].min() == right[rows].max():
            knots.append(([0.0, 1.0], [0.0, 1.0]))
            calibration[name] = {
                "rows": count,
                "calibrated": False,
                "why": f"fewer than {min_class_rows} rows or one outcome",
            }
            continue
        held_out = np.empty(count)
        for f in range(folds):
            train, test = rows & (fold != f), rows & (fold == f)
            if test.any():
                held_out[test[rows]] = _isotonic(p[train], right[train]).predict(p[test])
        brier_raw = float(np.mean((p[rows] - right[rows]) ** 2))
        brier_isotonic = float(np.mean((held_out - right[rows]) ** 2))
        keep = brier_isotonic < brier_raw
        calibration[name] = {
            "rows": count,
            "calibrated": keep,
            "brier_raw": brier_raw,
            "brier_isotonic": brier_isotonic,
        }
        if keep:
            right_out_of_fold[rows] = held_out
            knots.append(_knots(_isotonic(p[rows], right[rows])))
        else:
            knots.append(([0.0, 1.0], [0.0, 1.0]))
    provisional = ConfidenceEstimator(
        layout.sizes,
        classes,
        knots,
        bins,
        positive,
        _outside(layout),
        EstimateNull([0.0, 1.0]),
        0.0,
    )
    in_sample = provisional.per_record(batch, encoded)[:, 0]
    null = EstimateNull(1.0 - right_out_of_fold, in_sample)
    estimator = ConfidenceEstimator(
        layout.sizes, classes, knots, bins, positive, _outside(layout), null, 1.0 - right.mean()
    )
    details.update(mean_out_of_fold=null.reference, mean_in_sample=float(in_sample.mean()))
    return estimator, details
