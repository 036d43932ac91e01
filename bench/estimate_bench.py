"""Performance estimation without labels (`monitor.estimate`, `monitor.nanny`): accuracy against the
realized values and NannyML's CBPE/DLE, detection, false alarms, and cost.

    .venv/bin/python bench/estimate_bench.py [--windows 50] [--seeds 5] [--quick] [--no-nannyml] [--cost-only]
    .venv/bin/python bench/estimate_bench.py --nannies     # which nanny: accuracy of four candidates

Needs both examples trained: `MODEL_DIR=artifacts .venv/bin/python -m scorer train` (diamonds) and
`MODEL_DIR=artifacts/affairs .venv/bin/python -m scorer train --example affairs`; NannyML in its own
environment (bench/requirements-nannyml.txt: it needs pandas<3):

    python3.11 -m venv .venv-nannyml && .venv-nannyml/bin/pip install -r bench/requirements-nannyml.txt

Streams are the simulator's (`producer.simulate.generate_chunks`, seeded; only resampling and label
scenarios, so every record keeps its row's own prediction and probabilities). Two set-ups:
- replay: the estimator is fitted on the whole reference and the stream draws the same rows, as
  `producer simulate` does (the demo, the soak): the estimator sees rows it was fitted on;
- split: fitted on a random half of the reference, the stream drawn from the other half (new rows,
  as in production); both halves in turn, results pooled.
Per tumbling window of 1,000 records: the estimate against the realized MSE / error rate of the
same records; over all windows, the mean estimate against the realized value on all their records.
NannyML (0.13.1, in .venv-nannyml) gets the same fitting rows and the same windows (chunk_size=1000).
Prints markdown (copied into bench/ESTIMATE_RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOW = 1000
NANNYML_PYTHON = ROOT / ".venv-nannyml" / "bin" / "python"
EXAMPLES = {"diamonds": ROOT / "artifacts", "affairs": ROOT / "artifacts" / "affairs"}
# scenario -> what it is; covariate shifts (resampled real rows) and pure concept drift (labels only)
SCENARIOS = {
    "diamonds": {
        "none": "no drift",
        "tilt:carat:1.2": "harmful covariate shift",
        "carat-shift": "harmless (MSE down)",
        "cut-mix": "covariate shift",
        "price-inflation": "concept drift (labels x1.2)",
    },
    "affairs": {
        "none": "no drift",
        "mix:occupation": "covariate shift",
        "mix:rate_marriage:2=0.3,3=0.4,4=0.3": "shift toward less sure rows",
        "tilt:age:1.3": "older, less sure",
        "labels:flip:0.3": "concept drift (30% of labels flipped)",
    },
}
HARMFUL = {"diamonds": "tilt:carat:1.2", "affairs": "mix:rate_marriage:2=0.3,3=0.4,4=0.3"}


# -- data ---------------------------------------------------------------------------------------------
def load(example: str):
    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference

    schema = load_model_schema(EXAMPLES[example])
    return schema, read_reference(EXAMPLES[example] / REFERENCE_FILE, schema)


def fit(schema, frame, seed: int = 0):
    from monitor.nanny import fit_from_schema
    from monitor.reference import Reference

    reference = Reference.from_schema(schema, frame)
    return reference, fit_from_schema(schema, frame, reference, seed=seed)


def stream(schema, frame, spec: str, count: int, onset: int, seed: int) -> dict[str, np.ndarray]:
    """The columns `producer simulate --scenario SPEC --count COUNT --onset ONSET --seed SEED` draws
    from `frame`, each row with its own prediction (and probabilities)."""
    from producer.grammar import parse_scenario
    from producer.simulate import SimulateConfig, generate_chunks, source_columns

    source = source_columns(frame, schema)
    source[schema.prediction] = frame[schema.prediction].to_numpy(
        object if schema.classification else np.float64
    )
    for column in schema.probability_columns:
        source[column] = frame[column].to_numpy(np.float64)
    config = SimulateConfig(
        count=count, scenario=parse_scenario(spec, schema, source), onset=onset, seed=seed
    )
    parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def as_batch(schema, columns: dict[str, np.ndarray]):
    from contract.artifacts import category_column
    from monitor.windows import PredictionBatch

    n = len(columns[schema.prediction])
    predictions = (
        category_column(columns[schema.prediction])
        if schema.classification
        else columns[schema.prediction].astype(np.float64)
    )
    return PredictionBatch(
        np.array([str(i) for i in range(n)], dtype=object),
        np.zeros(n, np.int64),
        predictions,
        {c: columns[c].astype(np.float64) for c in schema.numeric},
        {c: category_column(columns[c]) for c in schema.categorical},
        {t: columns[c] for t, c in zip(schema.probability_classes, schema.probability_columns)},
    )


def realized_loss(schema, columns) -> np.ndarray:
    """(n,) per record: squared error (regression) or 1.0 when misclassified."""
    from contract.artifacts import category_column

    if schema.classification:
        return (
            category_column(columns[schema.prediction]) != category_column(columns[schema.target])
        ).astype(float)
    return (columns[schema.prediction].astype(float) - columns[schema.target].astype(float)) ** 2


def per_record(reference, estimator, schema, columns) -> np.ndarray:
    from monitor.windows import PaneLayout

    batch = as_batch(schema, columns)
    return estimator.per_record(batch, PaneLayout(reference).encode(batch))


def windows_of(values: np.ndarray) -> np.ndarray:
    """Per tumbling window of WINDOW records: the mean of each column."""
    return (
        values[: len(values) // WINDOW * WINDOW].reshape(-1, WINDOW, *values.shape[1:]).mean(axis=1)
    )


# -- accuracy -----------------------------------------------------------------------------------------
def accuracy_runs(example: str, windows: int, seed: int, workdir: Path) -> list[dict]:
    """One row per (set-up, scenario, fitted half): our per-window estimates and the realized ones,
    plus the files NannyML reads (its fitting rows and the same windows)."""
    schema, frame = load(example)
    m = len(frame)
    halves = np.array_split(np.random.default_rng(seed).permutation(m), 2)
    setups = [("replay", np.arange(m), np.arange(m))]
    setups += [("split", halves[h], halves[1 - h]) for h in (0, 1)]
    runs = []
    for setup, fit_rows, stream_rows in setups:
        fit_frame = frame.iloc[fit_rows].reset_index(drop=True)
        stream_frame = frame.iloc[stream_rows].reset_index(drop=True)
        reference, fitted = fit(schema, fit_frame, seed)
        estimator = fitted.estimator
        tag = f"{example}-{setup}-{len(runs)}"
        fit_path = workdir / f"{tag}-fit.csv"
        nannyml_frame(schema, {c: fit_frame[c].to_numpy() for c in fit_frame.columns}).to_csv(
            fit_path, index=False
        )
        for spec in SCENARIOS[example]:
            columns = stream(schema, stream_frame, spec, windows * WINDOW, 0, seed)
            values = per_record(reference, estimator, schema, columns)
            analysis_path = workdir / f"{tag}-{len(runs)}-analysis.csv"
            nannyml_frame(schema, columns).to_csv(analysis_path, index=False)
            runs.append(
                {
                    "example": example,
                    "setup": setup,
                    "scenario": spec,
                    "fit": str(fit_path),
                    "analysis": str(analysis_path),
                    "estimate": windows_of(values).tolist(),
                    "realized": windows_of(realized_loss(schema, columns)).tolist(),
                    "realized_confusion": confusion(schema, columns)
                    if schema.classification
                    else None,
                    "names": list(estimator.names),
                    "reference_value": estimator.reference_value,
                    "realized_reference": estimator.realized_reference,
                }
            )
    return runs


def confusion(schema, columns) -> list[list[float]]:
    """Per window: realized (tp, fp, fn) counts of the positive (second) class."""
    from contract.artifacts import category_column

    positive = schema.class_texts[-1]
    predicted = category_column(columns[schema.prediction]) == positive
    actual = category_column(columns[schema.target]) == positive
    return windows_of(
        np.stack([predicted & actual, predicted & ~actual, ~predicted & actual], axis=1).astype(
            float
        )
    ).tolist()


def nannyml_frame(schema, columns):
    """The columns NannyML reads: features, y_pred, y_true (binary 0/1 for a classifier), proba."""
    import pandas as pd

    from contract.artifacts import category_column

    out = {c: columns[c] for c in schema.numeric}
    out.update({c: category_column(columns[c]) for c in schema.categorical})
    if schema.classification:
        positive = schema.class_texts[-1]
        out["y_pred"] = (category_column(columns[schema.prediction]) == positive).astype(int)
        out["y_true"] = (category_column(columns[schema.target]) == positive).astype(int)
        out["proba"] = columns[schema.probability_columns[-1]]
    else:
        out["y_pred"], out["y_true"] = columns[schema.prediction], columns[schema.target]
    return pd.DataFrame(out)


def nannyml_side(manifest_path: str) -> int:
    """Run in .venv-nannyml: CBPE/DLE fitted on each run's fitting rows, estimated on its windows."""
    import warnings

    import nannyml as nml
    import pandas as pd

    warnings.filterwarnings("ignore")
    manifest = json.loads(Path(manifest_path).read_text())
    fitted: dict[str, object] = {}
    out = []
    for run in manifest["runs"]:
        features = run["features"]
        categorical = run["categorical"]

        def read(path: str) -> pd.DataFrame:
            frame = pd.read_csv(path)
            for c in categorical:
                frame[c] = frame[c].astype(str).astype("category")
            return frame

        if run["fit"] not in fitted:
            started = time.perf_counter()
            if run["classification"]:
                calculator = nml.CBPE(
                    metrics=["accuracy", "precision", "recall", "f1"],
                    y_pred_proba="proba",
                    y_pred="y_pred",
                    y_true="y_true",
                    problem_type="classification_binary",
                    chunk_size=WINDOW,
                )
            else:
                calculator = nml.DLE(
                    feature_column_names=features,
                    y_pred="y_pred",
                    y_true="y_true",
                    metrics=["mse", "mae"],
                    chunk_size=WINDOW,
                    hyperparameters={"verbosity": -1},
                )
            calculator.fit(read(run["fit"]))
            fitted[run["fit"]] = calculator
            fit_seconds = time.perf_counter() - started
        else:
            fit_seconds = None
        results = fitted[run["fit"]].estimate(read(run["analysis"]).drop(columns=["y_true"]))
        frame = results.filter(period="analysis").to_df()
        metrics = (
            ["accuracy", "precision", "recall", "f1"] if run["classification"] else ["mse", "mae"]
        )
        out.append(
            {
                "analysis": run["analysis"],
                "fit_seconds": fit_seconds,
                **{k: frame[(k, "value")].astype(float).tolist() for k in metrics},
            }
        )
    Path(manifest["out"]).write_text(json.dumps(out))
    return 0


def run_nannyml(runs: list[dict], workdir: Path) -> dict[str, dict]:
    if not NANNYML_PYTHON.exists():
        print(f"(no {NANNYML_PYTHON}: NannyML columns skipped; see the module doc)")
        return {}
    manifest = {"out": str(workdir / "nannyml.json"), "runs": []}
    for run in runs:
        schema, _ = load(run["example"])
        manifest["runs"].append(
            {
                "fit": run["fit"],
                "analysis": run["analysis"],
                "classification": schema.classification,
                "features": list(schema.feature_names),
                "categorical": list(schema.categorical),
            }
        )
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(NANNYML_PYTHON), __file__, "--nannyml-side", str(workdir / "manifest.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        print("NannyML failed:", done.stderr[-2000:])
        return {}
    return {r["analysis"]: r for r in json.loads(Path(manifest["out"]).read_text())}


def accuracy_table(runs: list[dict], nannyml: dict[str, dict]) -> list[str]:
    lines = [
        "| example | set-up | scenario | realized (all windows) | vs reference | ours: mean est. | ours: "
        "rel./abs. error of mean | ours: per-window abs. error mean / p95 | NannyML: mean est. | NannyML: "
        "error of mean | NannyML: per-window mean / p95 |",
        "|" + "---|" * 11,
    ]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["example"], run["setup"], run["scenario"]), []).append(run)
    for (example, setup, spec), members in groups.items():
        classification = "error" in members[0]["names"]
        ours = np.concatenate([np.asarray(r["estimate"])[:, 0] for r in members])
        realized = np.concatenate([np.asarray(r["realized"]) for r in members])
        theirs = None
        if all(r["analysis"] in nannyml for r in members):
            theirs = np.concatenate(
                [
                    (1 - np.asarray(nannyml[r["analysis"]]["accuracy"]))
                    if classification
                    else np.asarray(nannyml[r["analysis"]]["mse"])
                    for r in members
                ]
            )
        reference = np.mean([r["realized_reference"] for r in members])

        def show(x: float) -> str:
            return f"{x:.4f}" if classification else f"{x:,.0f}"

        def of_mean(estimates: np.ndarray) -> str:
            gap = estimates.mean() - realized.mean()
            return f"{gap:+.4f}" if classification else f"{gap / realized.mean():+.1%}"

        def per_window(estimates: np.ndarray) -> str:
            gaps = np.abs(estimates - realized)
            if classification:
                return f"{gaps.mean():.4f} / {np.quantile(gaps, 0.95):.4f}"
            return f"{gaps.mean() / realized.mean():.1%} / {np.quantile(gaps, 0.95) / realized.mean():.1%}"

        row = [
            example,
            setup,
            f"`{spec}`",
            show(realized.mean()),
            f"x{realized.mean() / reference:.2f}",
            show(ours.mean()),
            of_mean(ours),
            per_window(ours),
        ]
        row += (
            [show(theirs.mean()), of_mean(theirs), per_window(theirs)]
            if theirs is not None
            else ["", "", ""]
        )
        lines.append("| " + " | ".join(row) + " |")
    return lines


def binary_table(runs: list[dict], nannyml: dict[str, dict]) -> list[str]:
    """Precision, recall, F1: per-window mean absolute error against the realized, ours and NannyML's."""
    lines = [
        "| set-up | scenario | realized P / R / F1 | ours: per-window abs. error P / R / F1 | "
        "NannyML: P / R / F1 |",
        "|---|---|---|---|---|",
    ]
    for setup in ("replay", "split"):
        for spec in SCENARIOS["affairs"]:
            members = [
                r
                for r in runs
                if r["example"] == "affairs" and r["setup"] == setup and r["scenario"] == spec
            ]
            if not members:
                continue
            real = np.concatenate([np.asarray(r["realized_confusion"]) for r in members])
            ours = np.concatenate([np.asarray(r["estimate"])[:, 1:4] for r in members])

            def prf(c: np.ndarray) -> np.ndarray:
                tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
                return np.stack(
                    [tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)], axis=1
                )

            truth = prf(real)
            row = [
                setup,
                f"`{spec}`",
                " / ".join(f"{v:.3f}" for v in np.nanmean(truth, axis=0)),
                " / ".join(f"{v:.3f}" for v in np.nanmean(np.abs(prf(ours) - truth), axis=0)),
            ]
            if all(r["analysis"] in nannyml for r in members):
                theirs = np.concatenate(
                    [
                        np.stack(
                            [nannyml[r["analysis"]][k] for k in ("precision", "recall", "f1")], 1
                        )
                        for r in members
                    ]
                )
                row.append(
                    " / ".join(f"{v:.3f}" for v in np.nanmean(np.abs(theirs - truth), axis=0))
                )
            else:
                row.append("")
            lines.append("| " + " | ".join(row) + " |")
    return lines


# -- which nanny -----------------------------------------------------------------------------------------
NANNIES = {  # name -> (features, HistGradientBoostingRegressor settings beyond the shared ones)
    "full HGB, squared loss (raw features)": (
        "raw",
        {
            "loss": "squared_error",
            "max_iter": 200,
            "learning_rate": 0.1,
            "max_leaf_nodes": 15,
            "min_samples_leaf": 50,
        },
    ),
    "full HGB, Poisson loss (raw features)": (
        "raw",
        {
            "loss": "poisson",
            "max_iter": 200,
            "learning_rate": 0.1,
            "max_leaf_nodes": 15,
            "min_samples_leaf": 50,
        },
    ),
    "additive, Poisson, 7 leaves (monitor.nanny)": ("bins", {}),
    "additive, Poisson, 31 leaves of 20, 300 rounds": (
        "bins",
        {"max_leaf_nodes": 31, "min_samples_leaf": 20, "max_iter": 300},
    ),
}


def nanny_rows(splits: int = 2) -> list[str]:
    """Each nanny fitted on a random half of the diamonds reference, judged on the other half: the
    estimated MSE under each scenario's exact row weights (`Resample.weights`) against the realized
    MSE under the same weights, so no stream sampling adds noise. Both halves, `splits` halvings."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    from monitor import nanny
    from monitor.reference import Reference
    from monitor.windows import PaneLayout
    from producer.grammar import parse_scenario
    from producer.simulate import source_columns

    schema, frame = load("diamonds")
    specs = ["none", "tilt:carat:1.2", "carat-shift", "cut-mix"]
    gaps: dict[str, list[list[float]]] = {name: [] for name in NANNIES}
    for split in range(splits):
        halves = np.array_split(np.random.default_rng(split).permutation(len(frame)), 2)
        for fit_rows, test_rows in ((halves[0], halves[1]), (halves[1], halves[0])):
            fitting, test = (frame.iloc[r].reset_index(drop=True) for r in (fit_rows, test_rows))
            squared = {
                k: (f[schema.prediction] - f[schema.target]).to_numpy() ** 2
                for k, f in (("fit", fitting), ("test", test))
            }
            source = source_columns(test, schema)
            weights = [
                parse_scenario(s, schema, source).resample.weights(source)
                if s != "none"
                else np.full(len(test), 1 / len(test))
                for s in specs
            ]
            layout = PaneLayout(Reference.from_schema(schema, fitting))
            bins = {
                k: nanny._bin_features(
                    layout, layout.encode(as_batch(schema, {c: f[c].to_numpy() for c in f}))
                )
                for k, f in (("fit", fitting), ("test", test))
            }
            for name, (kind, settings) in NANNIES.items():
                if kind == "raw":
                    X_fit, X_test, categorical = (
                        raw_features(schema, fitting),
                        raw_features(schema, test),
                        "from_dtype",
                    )
                    params = {"early_stopping": False, **settings}
                else:
                    (X_fit, categorical), (X_test, _) = bins["fit"], bins["test"]
                    params = {
                        **nanny.NANNY_PARAMS,
                        "min_samples_leaf": min(100, max(20, len(X_fit) // 50)),
                        **settings,
                    }
                with threadpool_limits(limits=1, user_api="openmp"):
                    model = HistGradientBoostingRegressor(
                        **params, categorical_features=categorical, random_state=0
                    ).fit(X_fit, squared["fit"])
                    estimates = model.predict(X_test)
                gaps[name].append(
                    [float(w @ estimates / (w @ squared["test"]) - 1) for w in weights]
                )
    lines = [
        "| nanny | " + " | ".join(f"`{s}`" for s in specs) + " |",
        "|---|" + "---:|" * len(specs),
    ]
    for name, rows in gaps.items():
        rows_ = np.asarray(rows)
        cells = [
            f"{rows_[:, i].mean():+.1%} ({np.sqrt((rows_[:, i] ** 2).mean()):.1%})"
            for i in range(len(specs))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# -- detection and false alarms -----------------------------------------------------------------------
def alpha_per_test(reference) -> float:
    """The per-test level at the defaults (ert 1e7, step 250) once the estimate's two scales count."""
    from monitor.calibration import Calibration

    calibration = Calibration(reference)
    return calibration.alpha(250) * calibration.tests / (calibration.tests + 2)


def evaluations(values: np.ndarray, estimator, alpha: float, window: int = 1000, step: int = 250):
    """(pane end, detected) of every evaluation of a count window (and its newest half) over the
    per-record values, as the monitor would evaluate them."""
    total = np.concatenate(([0.0], np.cumsum(values[:, 0])))
    reference = estimator.reference_value
    whole, half = estimator.threshold(window, alpha), estimator.threshold(window // 2, alpha)
    for end in range(window, len(values) + 1, step):
        score = (total[end] - total[end - window]) / window / reference - 1
        recent = (total[end] - total[end - window // 2]) / (window // 2) / reference - 1
        yield end, score > whole or recent > half


def detection_rows(example: str, seeds: int, onset: int, after: int) -> list[str]:
    schema, frame = load(example)
    reference, fitted = fit(schema, frame)
    estimator = fitted.estimator
    alpha = alpha_per_test(reference)
    lines = []
    for spec, what in SCENARIOS[example].items():
        if spec == "none":
            continue
        delays, flagged, evaluated = [], 0, 0
        for seed in range(seeds):
            columns = stream(schema, frame, spec, onset + after, onset, seed)
            values = per_record(reference, estimator, schema, columns)
            first = None
            for end, hit in evaluations(values, estimator, alpha):
                if end - 1000 >= onset:
                    evaluated += 1
                    flagged += hit
                if hit and end > onset and first is None:
                    first = end - onset
            delays.append(first)
        found = [d for d in delays if d is not None]
        median = f"{int(np.median(found)):,}" if len(found) > seeds / 2 else "not detected"
        lines.append(
            f"| {example} | `{spec}` ({what}) | {median} | {sum(d is not None for d in delays)} of {seeds} | "
            f"{flagged} of {evaluated} |"
        )
    return lines


def false_alarm_row(example: str, seeds: int, records: int) -> str:
    schema, frame = load(example)
    reference, fitted = fit(schema, frame)
    estimator = fitted.estimator
    alpha = alpha_per_test(reference)
    flagged = evaluated = 0
    worst = 0.0
    for seed in range(seeds):
        columns = stream(schema, frame, "none", records, 0, 100 + seed)
        values = per_record(reference, estimator, schema, columns)
        total = np.concatenate(([0.0], np.cumsum(values[:, 0])))
        for end, hit in evaluations(values, estimator, alpha):
            evaluated += 1
            flagged += hit
            score = (total[end] - total[end - 1000]) / 1000 / estimator.reference_value - 1
            worst = max(worst, score / estimator.threshold(1000, alpha))
    return (
        f"| {example} | {seeds} x {records:,} | {alpha:.3g} | {estimator.threshold(1000, alpha):+.3f} / "
        f"{estimator.threshold(500, alpha):+.3f} | {flagged} of {evaluated:,} | {worst:.2f} |"
    )


# -- cost ---------------------------------------------------------------------------------------------
def per_record_cost(example: str, sizes=(50, 5000), seconds: float = 1.0) -> dict[int, float]:
    from monitor.windows import PaneLayout

    schema, frame = load(example)
    reference, fitted = fit(schema, frame)
    columns = stream(schema, frame, "none", max(sizes), 0, 1)
    batch = as_batch(schema, columns)
    encoded = PaneLayout(reference).encode(batch)
    out = {}
    for n in sizes:
        part, codes = batch.rows(0, n), encoded.rows(0, n)
        out[n] = timed(lambda: fitted.estimator.per_record(part, codes), seconds) / n * 1e6
    return out


def timed(call, seconds: float) -> float:
    """Median seconds per call over ~`seconds` of repeats (5 rounds)."""
    call()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds / 5 or calls < 3:
        call()
        calls += 1
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - started) / calls)
    return float(np.median(rounds))


def raw_features(schema, frame):
    import pandas as pd

    X = pd.DataFrame({c: frame[c].to_numpy(np.float64) for c in schema.numeric})
    for c in schema.categorical:
        X[c] = pd.Categorical(frame[c].astype(str))
    X["prediction"] = frame[schema.prediction].to_numpy(np.float64)
    return X


def full_hgb_cost(
    sizes=(50, 5000), threads: int | None = 1, seconds: float = 1.0
) -> dict[str, float]:
    """The unconstrained HistGradientBoosting nanny on the raw features: fit and predict per record
    (`seconds` of repeats per size; 0: one call, for the slow runs under load)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    schema, frame = load("diamonds")
    X = raw_features(schema, frame)
    target = (frame[schema.prediction] - frame[schema.target]).to_numpy() ** 2
    out = {}
    with threadpool_limits(limits=threads, user_api="openmp"):
        started = time.perf_counter()
        model = HistGradientBoostingRegressor(
            max_iter=200,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=50,
            categorical_features="from_dtype",
            early_stopping=False,
            random_state=0,
        ).fit(X, target)
        out["fit_s"] = time.perf_counter() - started
        for n in sizes:
            part = X.iloc[:n]
            if seconds:
                out[f"predict_{n}_us"] = timed(lambda: model.predict(part), seconds) / n * 1e6
            else:
                started = time.perf_counter()
                model.predict(part)
                out[f"predict_{n}_us"] = (time.perf_counter() - started) / n * 1e6
    return out


def big_reference(rows: int = 50_000, seed: int = 0):
    """A 50,000-row reference for the start-up cost: diamonds' rows resampled (seeded)."""
    schema, frame = load("diamonds")
    picked = np.random.default_rng(seed).integers(0, len(frame), rows)
    return schema, frame.iloc[picked].reset_index(drop=True)


def fit_seconds(threads: int) -> dict[str, float]:
    from monitor.nanny import fit_from_schema
    from monitor.reference import Reference

    out = {}
    for name, (schema, frame) in {
        "diamonds (10,788 rows)": load("diamonds"),
        "diamonds resampled (50,000 rows)": big_reference(),
        "affairs (1,274 rows)": load("affairs"),
    }.items():
        reference = Reference.from_schema(schema, frame)
        started = time.perf_counter()
        fitted = fit_from_schema(schema, frame, reference, threads=threads)
        out[name] = time.perf_counter() - started
        out[name + " fingerprint"] = fitted.estimator.fingerprint()
    return out


class Busy:
    """Both cores held by busy loops (the state in which HistGradientBoosting's OpenMP stalled)."""

    def __enter__(self):
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)
        ]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def core_throughput(records: int = 200_000, batch: int = 5000) -> dict[str, float]:
    """Records/s of DriftMonitor.update (count window 1000/250) on the diamonds stream, and the time
    per_record adds on the same batches (its encoded bins shared, as the monitor will)."""
    from monitor.drift import DriftMonitor
    from monitor.windows import CountWindow, PaneLayout

    schema, frame = load("diamonds")
    reference, fitted = fit(schema, frame)
    columns = stream(schema, frame, "none", records, 0, 3)
    full = as_batch(schema, columns)
    batches = [full.rows(s, s + batch) for s in range(0, records, batch)]
    layout = PaneLayout(reference)
    encoded = [layout.encode(b) for b in batches]
    rounds = {"update": [], "per_record": []}
    for _ in range(3):
        monitor = DriftMonitor(reference, CountWindow(reference, 1000, 250))
        started = time.perf_counter()
        for b in batches:
            monitor.update(b)
        rounds["update"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for b, e in zip(batches, encoded):
            fitted.estimator.per_record(b, e).sum(axis=0)
        rounds["per_record"].append(time.perf_counter() - started)
    update, extra = min(rounds["update"]), min(rounds["per_record"])
    return {
        "update_rate": records / update,
        "with_estimate_rate": records / (update + extra),
        "ratio": update / (update + extra),
    }


def lightgbm_cost(sizes=(50, 5000)) -> dict[str, float]:
    """Run in .venv-nannyml (LightGBM is NannyML's nanny): the same full nanny, one thread."""
    import lightgbm
    import pandas as pd

    frame = pd.read_csv(EXAMPLES["diamonds"] / "reference.csv")
    X = pd.DataFrame({c: frame[c] for c in ("carat", "depth", "table")})
    for c in ("cut", "color", "clarity"):
        X[c] = frame[c].astype("category")
    X["prediction"] = frame["prediction"]
    target = (frame["prediction"] - frame["price"]) ** 2
    started = time.perf_counter()
    model = lightgbm.LGBMRegressor(
        n_estimators=200,
        learning_rate=0.1,
        num_leaves=15,
        min_child_samples=50,
        num_threads=1,
        verbosity=-1,
        random_state=0,
    ).fit(X, target)
    out = {"fit_s": time.perf_counter() - started}
    for n in sizes:
        part = X.iloc[:n]
        out[f"predict_{n}_us"] = timed(lambda: model.predict(part, num_threads=1), 1.0) / n * 1e6
    return out


def cost_section(under_load: bool) -> list[str]:
    lines = ["| what | 50-record batches | 5,000-record batches |", "|---|---:|---:|"]
    for example in ("diamonds", "affairs"):
        cost = per_record_cost(example)
        lines.append(f"| `per_record`, {example} (us/record) | {cost[50]:.2f} | {cost[5000]:.3f} |")
    hgb = full_hgb_cost()
    lines.append(
        f"| full HistGradientBoosting nanny predict, 1 thread (us/record) | {hgb['predict_50_us']:.1f} | "
        f"{hgb['predict_5000_us']:.1f} |"
    )
    if NANNYML_PYTHON.exists():
        done = subprocess.run(
            [str(NANNYML_PYTHON), __file__, "--lightgbm-cost"], capture_output=True, text=True
        )
        if done.returncode == 0:
            lgb = json.loads(done.stdout.strip().splitlines()[-1])
            lines.append(
                f"| LightGBM nanny predict, 1 thread (us/record) | {lgb['predict_50_us']:.1f} | "
                f"{lgb['predict_5000_us']:.1f} |"
            )
            lines.append(
                f"| (fits: full HGB {hgb['fit_s']:.2f} s, LightGBM {lgb['fit_s']:.2f} s, one thread) | | |"
            )
    throughput = core_throughput()
    lines += [
        "",
        f"Core throughput (DriftMonitor.update, diamonds, 5,000-record batches): "
        f"{throughput['update_rate']:,.0f} records/s; with `per_record` on the same batches "
        f"{throughput['with_estimate_rate']:,.0f} records/s (x{throughput['ratio']:.3f}).",
    ]
    lines += [
        "",
        "| start-up fit (`fit_from_schema`) | as found, 1 thread | both cores busy, 1 thread |",
        "|---|---:|---:|",
    ]
    quiet = fit_seconds(threads=1)
    loaded = quiet
    if under_load:
        with Busy():
            loaded = fit_seconds(threads=1)
    for name in (
        "diamonds (10,788 rows)",
        "diamonds resampled (50,000 rows)",
        "affairs (1,274 rows)",
    ):
        same = quiet[name + " fingerprint"] == loaded[name + " fingerprint"]
        note = "" if same else " (DIFFERENT estimator!)"
        lines.append(f"| {name} | {quiet[name]:.1f} s | {loaded[name]:.1f} s{note} |")
    if under_load:
        with Busy():
            hgb_loaded = full_hgb_cost(sizes=(5000,), threads=None, seconds=0)
            hgb_one = full_hgb_cost(sizes=(5000,), threads=1, seconds=0)
        lines += [
            "",
            f"Both cores busy, the full HGB nanny on diamonds: fit {hgb_loaded['fit_s']:.1f} s and predict "
            f"{hgb_loaded['predict_5000_us']:.1f} us/record with OpenMP's default threads, "
            f"{hgb_one['fit_s']:.1f} s and {hgb_one['predict_5000_us']:.1f} us/record bounded to one.",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--windows", type=int, default=50, help="tumbling windows of 1,000 records per scenario"
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="seeds for detection delays and false alarms"
    )
    parser.add_argument("--quick", action="store_true", help="10 windows, 2 seeds, no load runs")
    parser.add_argument("--no-nannyml", action="store_true", help="skip NannyML")
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument(
        "--nannies", action="store_true", help="only the comparison of nanny models (diamonds)"
    )
    parser.add_argument("--nannyml-side", help=argparse.SUPPRESS)
    parser.add_argument("--lightgbm-cost", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nannyml_side:
        return nannyml_side(args.nannyml_side)
    if args.lightgbm_cost:
        print(json.dumps(lightgbm_cost()))
        return 0
    windows, seeds = (10, 2) if args.quick else (args.windows, args.seeds)
    if args.nannies:
        print(
            "Estimated / realized MSE - 1 on the held-out half, mean (root mean square) over 4 fits:\n"
        )
        print("\n".join(nanny_rows()))
        return 0
    print(
        f"# estimate bench, {time.strftime('%Y-%m-%d')}, {windows} windows of {WINDOW}, {seeds} seeds\n"
    )
    if not args.cost_only:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            runs = [
                run for example in EXAMPLES for run in accuracy_runs(example, windows, 0, workdir)
            ]
            nannyml = {} if args.no_nannyml else run_nannyml(runs, workdir)
            print("\n".join(accuracy_table(runs, nannyml)), "\n")
            print("\n".join(binary_table(runs, nannyml)), "\n")
        print(
            "| example | scenario | records from onset to detection (median) | detected | evaluations flagged "
            "after onset |\n|---|---|---:|---:|---:|"
        )
        for example in EXAMPLES:
            print("\n".join(detection_rows(example, seeds, onset=10_000, after=20_000)))
        print(
            "\n| example | no-drift records | alpha per test | threshold (1,000 / 500) | evaluations flagged | "
            "worst score / threshold |\n|---|---:|---:|---:|---:|---:|"
        )
        for example in EXAMPLES:
            print(false_alarm_row(example, seeds, 40_000 if args.quick else 200_000))
        print()
    if not args.no_cost:
        print("\n".join(cost_section(under_load=not args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
