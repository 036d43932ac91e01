"""Realised false-alarm rates of every column test at a deliberately loose budget.

The monitor's vectorised tests (`column_tests`, with `Calibration`'s thresholds: the exact
two-sample null for categorical columns, `monitor.exact`) score independent no-drift windows at
alpha 0.03 per test, so false alarms are common enough to count. Windows are built as the
monitor's panes are (`PaneLayout.encode` of resampled rows, counted per window), at both scales'
sizes, and with a varying n as time windows have. Every test must keep its share:
- categorical tests: a realised rate within [0.5, 1.0] x alpha when the reference is itself a
  sample of the population the stream comes from (the null the thresholds are built for),
  averaged over several references;
- numeric tests (KS): at most alpha (ties make KS conservative: bench/ks_ties_bench.py);
- every test at most alpha on windows resampled from the reference rows themselves (the soak).
Seeded, so the counts are the same at every run; each bound allows the count's own sampling error
(3 binomial s.d.), named in the assertion message.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.calibration import Calibration
from monitor.columns import column_tests
from monitor.reference import Reference
from monitor.windows import Pane, PaneLayout, PredictionBatch

ALPHA = 0.03


def loose(reference: Reference) -> Calibration:
    """alpha = ALPHA per test for an evaluation after 500 records."""
    return Calibration(reference, ert=500 / ALPHA / Calibration(reference).tests)


def windows(
    layout: PaneLayout, rows: dict[str, np.ndarray], sizes: np.ndarray, rng: np.random.Generator
) -> list[Pane]:
    """One pane per entry of `sizes`: that many rows resampled from `rows`, counted as the monitor counts."""
    count = len(rows["prediction"])
    batch = PredictionBatch(
        np.arange(count).astype(str).astype(object),
        np.arange(count),
        rows["prediction"],
        {c: rows[c] for c in layout.reference.numeric},
        {c: rows[c] for c in layout.reference.categorical},
    )
    encoded = layout.encode(batch)
    assert not encoded.unseen, "every category the stream draws is in the reference"
    panes = []
    for size in sizes.tolist():
        counts = np.bincount(
            encoded.flat[rng.integers(0, count, size)].ravel(), minlength=layout.total
        )
        panes.append(Pane(len(panes), counts.astype(np.int64), records=size))
    return panes


def tally(rates: dict, reference: Reference, panes: list[Pane], scale: str) -> None:
    """Add each column's alarms and evaluations at this scale to `rates`."""
    calibration = loose(reference)
    tested = column_tests(PaneLayout(reference), calibration, panes, ALPHA)
    alarms = (tested.statistic > tested.threshold).sum(axis=0)
    for c, name in enumerate(tested.names):
        before = rates.get((name, scale), (0, 0, tested.tests[c]))
        rates[name, scale] = (before[0] + int(alarms[c]), before[1] + len(panes), tested.tests[c])


def check(rates: dict, lower: float | None) -> None:
    """Every test at most ALPHA; categorical ones at least `lower` x ALPHA (None: no lower bound)."""
    shown = {
        f"{name}/{scale}": round(a / (ALPHA * e), 2) for (name, scale), (a, e, _) in rates.items()
    }
    print("realised rate / alpha:", shown)
    for (name, scale), (alarms, evaluations, test) in rates.items():
        expected = ALPHA * evaluations
        slack = 3 * np.sqrt(expected)
        message = f"{name} at {scale}: {alarms} alarms in {evaluations} windows = {alarms / expected:.2f} x alpha"
        assert alarms <= expected + slack, message
        if test == "chi2" and lower is not None:
            assert alarms >= lower * expected - slack, message


def sizes(rng: np.random.Generator, n: int, count: int, varying: bool) -> np.ndarray:
    return rng.poisson(n, count) if varying else np.full(count, n)


@pytest.fixture(scope="module")
def diamonds(model_dir):
    from contract.artifacts import REFERENCE_FILE, read_reference
    from contract.dataset import load_diamonds
    from contract.schema import DEFAULT_SCHEMA
    from contract.schema_file import load_schema

    schema = load_schema(DEFAULT_SCHEMA)
    heldout = read_reference(model_dir / REFERENCE_FILE, schema)
    population = load_diamonds()
    as_arrays = lambda frame, prediction: {  # noqa: E731
        **{c: frame[c].to_numpy(np.float64) for c in schema.numeric},
        **{c: frame[c].astype(str).to_numpy(object) for c in schema.categorical},
        "prediction": frame[prediction].to_numpy(np.float64),
    }
    # the population has no predictions: its price stands in for the prediction column (one more
    # numeric column, tied like the others)
    return schema, as_arrays(heldout, "prediction"), as_arrays(population, "price"), heldout


def reference_of(rows: dict[str, np.ndarray], numeric, categorical) -> Reference:
    return Reference.from_arrays(
        {c: rows[c] for c in numeric},
        {c: rows[c] for c in categorical},
        rows["prediction"],
        rows["prediction"],
    )


def test_diamonds_resampled_from_the_reference_rows_every_test_within_alpha(diamonds):
    """The soak's setting: windows resampled from the held-out rows, the reference itself."""
    schema, heldout_rows, _, heldout = diamonds
    reference = Reference.from_schema(schema, heldout)
    rng = np.random.default_rng(1)
    rates: dict = {}
    for n, scale in ((1000, "window"), (500, "recent")):
        tally(
            rates,
            reference,
            windows(PaneLayout(reference), heldout_rows, sizes(rng, n, 6000, False), rng),
            scale,
        )
    check(rates, lower=None)


@pytest.mark.parametrize(
    "varying", [False, True], ids=["count windows", "time windows (varying n)"]
)
def test_diamonds_references_drawn_from_the_population(diamonds, varying):
    schema, _, population, _ = diamonds
    rng = np.random.default_rng(2 + varying)
    rates: dict = {}
    size = len(population["prediction"])
    for _ in range(4):  # references of the held-out set's size, each a sample of the population
        picked = rng.integers(0, size, 10_788)
        reference = reference_of(
            {c: v[picked] for c, v in population.items()}, schema.numeric, schema.categorical
        )
        for n, scale in ((1000, "window"), (500, "recent")):
            tally(
                rates,
                reference,
                windows(PaneLayout(reference), population, sizes(rng, n, 2500, varying), rng),
                scale,
            )
    check(rates, lower=0.5)


def fifty_categories(
    rows: int, rng: np.random.Generator, shares: np.ndarray
) -> dict[str, np.ndarray]:
    names = np.array([f"c{i:02d}" for i in range(len(shares))], dtype=object)
    x = rng.normal(0, 1, rows)
    return {
        "x": x,
        "kind": rng.choice(names, rows, p=shares),
        "prediction": x + rng.normal(0, 0.1, rows),
    }


@pytest.mark.parametrize(
    "varying", [False, True], ids=["count windows", "time windows (varying n)"]
)
def test_fifty_categories_with_rare_ones(varying):
    """A generated schema: a numeric column and a categorical one of 50 categories, ten of them
    rare (0.05% to 0.18%: expected counts 0.25 to 0.9 in a 500-record half window)."""
    rng = np.random.default_rng(7 + varying)
    rare = np.linspace(0.0005, 0.0018, 10)
    shares = np.concatenate([rare, rng.dirichlet(np.full(40, 2.0)) * (1 - rare.sum())])
    assert (500 * shares < 1).sum() >= 10
    population = fifty_categories(400_000, rng, shares)
    rates: dict = {}
    for _ in range(3):
        reference = reference_of(fifty_categories(100_000, rng, shares), ("x",), ("kind",))
        assert reference.categorical["kind"].size == 50
        for n, scale in ((1000, "window"), (500, "recent")):
            tally(
                rates,
                reference,
                windows(PaneLayout(reference), population, sizes(rng, n, 3000, varying), rng),
                scale,
            )
    check(rates, lower=0.5)
