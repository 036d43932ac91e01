"""Concept drift once labels come: records from onset to alarm, before and after the error test.

    nice -n 10 .venv/bin/python bench/concept_bench.py --river .venv-river/bin/python \
        [--seeds 5] [--no-drift 2000000] [--bootstrap 20000] [--tail-references 10000] \
        [--examples diamonds,affairs]

Prints markdown (copied into bench/CONCEPT_RESULTS.md). Needs both example models
(`MODEL_DIR=artifacts .venv/bin/python -m scorer train`,
`MODEL_DIR=artifacts/affairs .venv/bin/python -m scorer train --example affairs`). The River
baselines run in their own environment (bench/requirements-river.txt, bench/river_detectors.py);
without --river they are left out.

Streams are the simulator's, record for record (`producer.simulate.generate_chunks`, seeds 0-4,
onset 10,000, watched for 10,000 records, as `bench/monitor_bench.py --delay-only`): diamonds under
`price-inflation` (labels x1.2) and two milder label changes, affairs under `labels:flip:0.3` and
`labels:flip:0.15`. Every method sees the same records, labels joined at once, predictions fed in
steps of 250 (the default step).

What runs on each stream:
- the monitor core (`DriftMonitor`, window 1,000, step 250, ert 1e7) without the error test: its
  concept test (the rolling MSE ratio, or the error-rate ratio) alone: "today";
- the monitor core with the error test (`DriftMonitor(error_test=True)`, as `monitor run` builds
  it): its concept test at the smaller alpha of 3 more tests OR its error test
  (`monitor.errortest` on the `ErrorWindow`'s complete panes, three scales): "after"; and its
  error test's verdict alone;
- ablations on the same monitor's error counts: the error test at two scales only (window and
  newest half), and on affairs the unweighted error rate at three scales (its own panes of joined
  records, `JoinedPanes`): what the pane scale and the confidence weights each bring;
- a two-sample KS on |error| against the reference's |error|, whole window, today's alpha (the
  side-by-side of issue 20);
- River's ADWIN on |error| with delta = today's alpha, and River's Page-Hinkley (its defaults, on
  |error| / the reference's mean |error|: not calibrated), record by record.
Delays: records after the onset until the first evaluation (River: the first record) that flags.
No drift: evaluations alarming per million records (River: detections per million records) on
`--no-drift` records of `none`; the error test at a loose budget (`--loose-ert`, 1e4) too, where
alarms are common enough to compare with the budget; and against `--bootstrap` references drawn
from the held-out rows with replacement, each tested on one independent window, so the
reference's own sampling error is in the check as in production (a stream resampled from the
reference rows themselves has none of it). For the classifier's test, whose threshold is the tail
of a mean, the same check is also computed without counting alarms (`--tail-references`): the
expected rate over references drawn the same way of P(window statistic > that reference's
threshold), the window's statistic a mean of n draws from the held-out rows under that
reference's cells and weights, its tail by the saddlepoint, which reaches alpha 1e-6; beside it
the plug-in null the test used before (the reference's own values, unsmoothed).
Inputs-only scenarios (covariate shift, the input->label relation kept): the share of windows
flagged by the monitor's concept test, the error test and the KS on |error|.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference  # noqa: E402
from contract.rules import category_text  # noqa: E402
from monitor import errortest  # noqa: E402
from monitor.drift import DriftMonitor  # noqa: E402
from monitor.reference import Reference  # noqa: E402
from monitor.stats import ks_threshold  # noqa: E402
from monitor.windows import CountWindow, PredictionBatch  # noqa: E402

# model dir, the concept scenarios (the target first), the inputs-only scenarios
EXAMPLES = {
    "diamonds": (
        ROOT / "artifacts",
        ("price-inflation", "labels:scale:1.05", "labels:scale:0.95"),
        ("carat-shift", "cut-mix", "tilt:carat:1.2"),
    ),
    "affairs": (
        ROOT / "artifacts" / "affairs",
        ("labels:flip:0.3", "labels:flip:0.15"),
        ("mix:occupation", "tilt:age:1.2"),
    ),
}
WINDOW, STEP, ERT = 1000, 250, 1e7
ONSET, AFTER = 10_000, 10_000
PANES = WINDOW // STEP
Stream = dict[str, Any]  # features {column: (n,)}, prediction (n,), label (n,), confidence (n,)


class Example:
    """A model dir: schema, held-out rows, the monitor's reference and the error test built from
    them; the model itself only when a scenario edits features and needs re-scoring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = EXAMPLES[name][0]
        self.schema = load_model_schema(self.dir)
        self.heldout = read_reference(self.dir / REFERENCE_FILE, self.schema)
        self.reference = Reference.from_schema(self.schema, self.heldout)
        self.truth = self.outputs(self.heldout)
        self.test = (
            self.reference.error_test
        )  # the monitor's own (`Reference.from_schema` builds it)
        self.loss = self.absolute_errors(self.truth)  # reference rows: |error|, classifier 0/1
        self._model: Any = None
        self._calibrations: dict[bool, Any] = {}
        self._source: dict[str, np.ndarray] | None = None

    @property
    def classification(self) -> bool:
        return self.schema.classification

    def monitor(self, error_test: bool = False) -> DriftMonitor:
        """A fresh monitor core (window 1,000, step 250, ert 1e7), with or without the error test.
        Those of a kind share one Calibration: its categorical nulls take seconds to build and
        depend on nothing but the reference and the number of tests."""
        monitor = DriftMonitor(
            self.reference,
            CountWindow(self.reference, WINDOW, STEP),
            ert=ERT,
            error_test=error_test,
        )
        monitor.calibration = self._calibrations.setdefault(error_test, monitor.calibration)
        return monitor

    def outputs(self, rows: Stream | pd.DataFrame) -> Stream:
        """prediction and label (floats, or class texts), probabilities (n, C), confidence (n,)."""
        s = self.schema
        if not self.classification:
            return {
                "prediction": np.asarray(rows[s.prediction], np.float64),
                "label": np.asarray(rows[s.target], np.float64),
            }

        def texts(values: Any) -> np.ndarray:
            return np.array([category_text(v) for v in np.asarray(values).tolist()], dtype=object)

        out = {"prediction": texts(rows[s.prediction]), "label": texts(rows[s.target])}
        if s.probability_columns:
            columns = [np.asarray(rows[c], np.float64) for c in s.probability_columns]
            out["probabilities"] = np.stack(columns, axis=1)
            # a binary model's messages may carry one class's probability
            out["confidence"] = errortest.confidence(
                columns[0] if len(columns) == 1 else out["probabilities"]
            )
        return out

    @property
    def model(self) -> Any:
        if self._model is None:
            from scorer.model import load

            self._model = load(self.dir)
        return self._model

    def stream(self, scenario: str, count: int, onset: int, seed: int) -> Stream:
        """What `python -m producer simulate --count COUNT --onset ONSET --seed SEED --scenario
        SCENARIO` sends, record for record. A drawn row keeps its own prediction (and
        probabilities); a scenario that edits features is re-scored with the model, as the scorer
        would."""
        from producer.grammar import parse_scenario
        from producer.scenarios import BOTH
        from producer.simulate import SimulateConfig, generate_chunks, source_columns

        s = self.schema
        if self._source is None:  # the rows the simulator draws, with the model's outputs
            self._source = source_columns(self.heldout, s)
            for column in (s.prediction, *s.probability_columns):
                self._source[column] = self.heldout[column].to_numpy()
        source = self._source
        parsed = parse_scenario(scenario, s, source)
        config = SimulateConfig(count=count, scenario=parsed, onset=onset, seed=seed)
        parts = [chunk for _, chunk, _ in generate_chunks(source, config)]
        chunk = {c: np.concatenate([part[c] for part in parts]) for c in parts[0]}
        if parsed.changes == BOTH:
            features = pd.DataFrame({c: chunk[c] for c in s.feature_names})
            chunk[s.prediction] = self.model.predict(features)
            if s.probability_columns:
                probabilities = self.model.pipeline.predict_proba(features)
                for j, column in enumerate(s.probability_columns):
                    chunk[column] = probabilities[:, j]
        return {"features": {c: chunk[c] for c in s.feature_names}, **self.outputs(chunk)}

    def batch(
        self, stream: Stream, rows: slice, ids: np.ndarray, ts: np.ndarray
    ) -> PredictionBatch:
        s, features = self.schema, stream["features"]
        probabilities = {}
        if "probabilities" in stream:
            probabilities = {
                text: stream["probabilities"][rows, j]
                for j, text in enumerate(s.probability_classes)
            }
        categorical = {
            c: np.array([category_text(v) for v in features[c][rows].tolist()], dtype=object)
            for c in s.categorical
        }
        return PredictionBatch(
            ids[rows],
            ts[rows],
            stream["prediction"][rows],
            {c: np.asarray(features[c][rows], np.float64) for c in s.numeric},
            categorical,
            probabilities,
        )

    def bins(self, stream: Stream, test: errortest.ErrorTest | None = None) -> np.ndarray:
        """The error test's bin of every record (its label joined), (n,)."""
        test = test or self.test
        return test.bin_index(stream["prediction"], stream["label"], stream.get("confidence"))

    def absolute_errors(self, stream: Stream) -> np.ndarray:
        if self.classification:
            return (stream["prediction"] != stream["label"]).astype(np.float64)
        return np.abs(stream["prediction"] - stream["label"])


class JoinedPanes:
    """Bin counts of joined records in panes of `step`, in join order, as `ErrorWindow` keeps its
    sums: the newest pane fills, and the newest `panes` complete ones are what the test sees."""

    def __init__(self, size: int, panes: int) -> None:
        self.size, self.panes = size, panes
        self.complete: list[np.ndarray] = []
        self.filling = np.zeros(size, np.int64)
        self.filled = 0

    def add(self, bins: np.ndarray, step: int = STEP) -> None:
        start = 0
        while start < len(bins):
            take = min(step - self.filled, len(bins) - start)
            self.filling += np.bincount(bins[start : start + take], minlength=self.size)
            self.filled += take
            start += take
            if self.filled == step:
                self.complete = (self.complete + [self.filling])[-self.panes :]
                self.filling, self.filled = np.zeros(self.size, np.int64), 0


class AbsoluteErrorKS:
    """Two-sample KS of |error| against the reference's: bins at the reference's distinct values
    when there are few (exact), else at 500 quantiles; Kolmogorov's law at n*m/(n+m), as the
    monitor's KS of a numeric feature."""

    def __init__(self, reference_loss: np.ndarray, bins: int = 500) -> None:
        distinct = np.unique(reference_loss)
        quantiles = np.quantile(reference_loss, np.linspace(0, 1, bins + 1))
        self.edges = distinct if len(distinct) <= bins else np.unique(quantiles)
        self.m = len(reference_loss)
        self.size = 2 * len(self.edges) + 1
        counts = np.bincount(self.bin_index(reference_loss), minlength=self.size)
        self.cdf = np.cumsum(counts) / self.m

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        left = np.searchsorted(self.edges, values, side="left")
        inside = left < len(self.edges)
        on_edge = np.zeros(len(values), bool)
        on_edge[inside] = self.edges[left[inside]] == values[inside]
        return 2 * left + on_edge

    def detected(self, counts: np.ndarray, alpha: float) -> bool:
        n = counts.sum()
        return bool(np.abs(np.cumsum(counts) / n - self.cdf).max() > ks_threshold(alpha, n, self.m))


def alphas(example: Example, loose_ert: float | None = None) -> dict[str, float]:
    """Per-test alphas of an evaluation after STEP records: today's; the monitor's with the error
    test (its three scales in the Bonferroni split); with two scales only; at the loose budget."""
    tests = example.monitor().calibration.tests
    after = example.monitor(error_test=True).calibration
    out = {"today": STEP / ERT / tests, "after": after.alpha(STEP), "two": STEP / ERT / (tests + 2)}
    if loose_ert:
        out["loose"] = STEP / loose_ert / after.tests
    return out


def evaluations(
    example: Example, stream: Stream, seed: int, loose_ert: float | None = None
) -> Iterator[dict[str, Any]]:
    """Feed a stream to both monitor cores (without and with the error test) and to the baselines'
    panes a step at a time, labels right after their predictions; yield what each method says at
    each evaluation of a full window."""
    today, monitor = example.monitor(), example.monitor(error_test=True)
    test = monitor.calibration.error_test
    level = alphas(example, loose_ert)
    plain: errortest.ErrorTest | None = None
    plain_panes: JoinedPanes | None = None
    if example.classification:
        plain = errortest.ConfidenceWeightedErrors(example.loss.astype(bool))  # every weight 1
        plain_panes = JoinedPanes(plain.size, PANES)
    ks = AbsoluteErrorKS(example.loss)
    loss_bins = ks.bin_index(example.absolute_errors(stream))
    plain_bins = plain.bin_index(stream["prediction"], stream["label"]) if plain else None
    loss_panes = JoinedPanes(ks.size, PANES)
    n = len(stream["label"])
    ids = np.array([f"{seed}-{i}" for i in range(n)], dtype=object)
    ts = np.arange(n, dtype=np.int64) * 10
    for start in range(0, n - STEP + 1, STEP):
        rows = slice(start, start + STEP)
        batch = example.batch(stream, rows, ids, ts)
        for core in (today, monitor):
            core.update(batch)
            core.update_labels(ids[rows], ts[rows], stream["label"][rows])
        loss_panes.add(loss_bins[rows])
        if plain_panes:
            plain_panes.add(plain_bins[rows])
        before, result = today.result(), monitor.result()
        if not result.ready or len(loss_panes.complete) < PANES:
            continue
        # the error test's counts per scale, as the monitor tested them (its complete concept panes)
        scaled = monitor.errors.scale_counts()
        two = test.evaluate({k: v for k, v in scaled.items() if k != "pane"}, level["two"])
        row = {
            "seen": start + STEP,
            "before": bool(before.concept_detected),
            "concept_after": bool(result.concept_detected),
            "error_test": bool(result.error_detected),
            "after": bool(result.concept_detected or result.error_detected),
            "two_scales": two.detected,
            "scale": result.error_scale,
            "margin_before": before.concept_drift / before.concept_threshold,
            "margin_after": result.error_statistic / result.error_threshold,
            "ks_abs": ks.detected(sum(loss_panes.complete), level["today"]),
        }
        if plain_panes:
            plain_scaled = errortest.scale_counts(plain_panes.complete)
            row["plain_error_rate"] = plain.evaluate(plain_scaled, level["after"]).detected
        if loose_ert:
            row["loose"] = {
                name: test.statistic(c) > test.threshold(int(c.sum()), level["loose"])
                for name, c in scaled.items()
            }
        yield row


WINDOW_METHODS = ("before", "after", "error_test", "two_scales", "plain_error_rate", "ks_abs")
LABELS = {
    "before": "today: {concept} (whole window, alpha {today:.2e})",
    "after": "after: the monitor with the error test, {concept} at alpha {after:.2e} OR the error test",
    "error_test": "the monitor's error test alone ({test}, 3 scales)",
    "two_scales": "the error test at 2 scales (window + newest half; alpha {two:.2e})",
    "plain_error_rate": "unweighted error rate at 3 scales (ablation)",
    "ks_abs": "two-sample KS on abs(error), whole window, alpha {today:.2e}",
    "adwin": "River ADWIN on abs(error), delta {today:.2e}",
    "page_hinkley": "River Page-Hinkley on abs(error) / reference MAE, defaults",
}


def run_river(
    python: str, series: dict[str, np.ndarray], scales: dict[str, float], delta: float
) -> dict[str, dict[str, list[int]]]:
    """River's detections (0-based record positions) per series, from its own environment."""
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "series.npz", Path(tmp) / "out.json"
        np.savez(data, **series, **{f"scale__{k}": np.float64(v) for k, v in scales.items()})
        command = [
            python,
            str(ROOT / "bench" / "river_detectors.py"),
            str(data),
            str(out),
            "--delta",
            repr(delta),
        ]
        subprocess.run(command, check=True)
        return json.loads(out.read_text())


def first_after(flags: list[tuple[int, bool]], onset: int) -> int | None:
    return next((seen - onset for seen, hit in flags if hit and seen > onset), None)


def cell(delays: list[int | None]) -> str:
    found = [d for d in delays if d is not None]
    if not found:
        return "never"
    missed = len(delays) - len(found)
    return f"{np.median(found):,.0f}" + (f" ({missed} of {len(delays)} missed)" if missed else "")


def per_seed(delays: list[int | None]) -> str:
    return " / ".join("-" if d is None else f"{d:,}" for d in delays)


def delays_section(example: Example, scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    delays: dict[str, list[int | None]] = {}
    margins: dict[str, list[float]] = {"before": [], "after": []}
    scales_fired: list[str] = []
    river_series, river_scales = {}, {}
    for seed in range(args.seeds):
        stream = example.stream(scenario, ONSET + AFTER, ONSET, seed)
        rows = list(evaluations(example, stream, seed))
        for method in WINDOW_METHODS:
            if method in rows[0]:
                flags = [(r["seen"], r[method]) for r in rows]
                delays.setdefault(method, []).append(first_after(flags, ONSET))
        first = next(r for r in rows if r["seen"] > ONSET)
        margins["before"].append(first["margin_before"])
        margins["after"].append(first["margin_after"])
        hit = next((r for r in rows if r["seen"] > ONSET and r["error_test"]), None)
        scales_fired.append(hit["scale"] if hit else "-")
        river_series[f"s{seed}"] = example.absolute_errors(stream)
        river_scales[f"s{seed}"] = float(example.loss.mean())
    if args.river:
        found = run_river(args.river, river_series, river_scales, alphas(example)["today"])
        for detector in ("adwin", "page_hinkley"):  # position i flagged: i + 1 records seen
            delays[detector] = [
                first_after([(i + 1, True) for i in found[f"s{seed}"][detector]], ONSET)
                for seed in range(args.seeds)
            ]
    return {"scenario": scenario, "delays": delays, "scales": scales_fired, "margins": margins}


def no_drift_section(example: Example, args: argparse.Namespace) -> dict[str, Any]:
    stream = example.stream("none", args.no_drift, 0, 99)
    counts: dict[str, int] = {}
    loose: dict[str, int] = {}
    evaluated = 0
    for row in evaluations(example, stream, 99, loose_ert=args.loose_ert):
        evaluated += 1
        for method in WINDOW_METHODS:
            if method in row:
                counts[method] = counts.get(method, 0) + int(row[method])
        for name, hit in row["loose"].items():
            loose[name] = loose.get(name, 0) + int(hit)
    if args.river:
        found = run_river(
            args.river,
            {"none": example.absolute_errors(stream)},
            {"none": float(example.loss.mean())},
            alphas(example)["today"],
        )["none"]
        counts.update({k: len(v) for k, v in found.items()})
    return {"records": args.no_drift, "evaluations": evaluated, "counts": counts, "loose": loose}


def bootstrap_section(
    example: Example, args: argparse.Namespace
) -> dict[tuple[float, str], list[int]]:
    """The error test against references drawn from the held-out rows with replacement (m rows),
    each tested on one window of WINDOW records drawn the same way: reference and window are
    independent draws from one population, and every evaluation is independent of the others
    (a stream's overlapping windows share records and its reference, so their alarms come in
    clusters). Returns {(alpha, scale): [evaluations over the threshold, evaluations]}."""
    hits: dict[tuple[float, str], list[int]] = {}
    rows = len(example.heldout)
    for b in range(args.bootstrap):
        drawn = np.random.default_rng(10_000 + b).integers(0, rows, rows)
        truth = {k: v[drawn] for k, v in example.truth.items()}
        test = errortest.from_reference(
            example.schema.task, truth["prediction"], truth["label"], truth.get("confidence")
        )
        bins = example.bins(example.stream("none", WINDOW, 0, 20_000 + b), test)
        panes = [
            np.bincount(bins[i : i + STEP], minlength=test.size) for i in range(0, WINDOW, STEP)
        ]
        for name, counts in errortest.scale_counts(panes).items():
            for alpha in (1e-2, 1e-3):
                tally = hits.setdefault((alpha, name), [0, 0])
                tally[0] += int(test.statistic(counts) > test.threshold(int(counts.sum()), alpha))
                tally[1] += 1
    return hits


def upper_tail(values: np.ndarray, n: int, t: float) -> float:
    """P(mean of n draws from `values` > t), t above their mean: the Lugannani-Rice saddlepoint
    tail, the forward twin of `stats.mean_upper_quantile`."""
    u, c = np.unique(values, return_counts=True)
    p = c / c.sum()
    if t >= u.max():
        return 0.0
    if t <= p @ u:
        return 0.5

    def cumulants(s: float) -> tuple[float, float, float]:
        w = p * np.exp(s * (u - u.max()))
        mean = float(w @ u / w.sum())
        return s * u.max() + math.log(w.sum()), mean, float(w @ (u - mean) ** 2 / w.sum())

    s = optimize.brentq(lambda s: cumulants(s)[1] - t, 1e-12, 1e4)
    k, _, var = cumulants(s)
    r, w = math.sqrt(2 * n * (s * t - k)), s * math.sqrt(n * var)
    return float(special.ndtr(-r) + math.exp(-r * r / 2) / math.sqrt(2 * math.pi) * (1 / w - 1 / r))


TAIL_ALPHAS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
TAIL_SIZES = (250, 500, 1000)


def tail_section(example: Example, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The classifier's test against `--tail-references` references drawn from the held-out rows
    with replacement: per (alpha, n), the mean over references of P(the statistic of a window of n
    records drawn from the held-out rows > that reference's threshold) / alpha, and its standard
    error; for the test as the monitor builds it ("smoothed") and with the plug-in null."""
    rows, truth = len(example.heldout), example.truth
    out = {
        name: np.zeros((args.tail_references, len(TAIL_ALPHAS), len(TAIL_SIZES)))
        for name in ("smoothed", "plug-in")
    }
    for b in range(args.tail_references):
        drawn = np.random.default_rng(50_000 + b).integers(0, rows, rows)
        sample = {k: v[drawn] for k, v in truth.items()}
        test, plug_in = (
            errortest.from_reference(
                example.schema.task, sample["prediction"], sample["label"], sample.get("confidence")
            )
            for _ in range(2)
        )
        plug_in.null_values = plug_in.values
        for name, tested in (("smoothed", test), ("plug-in", plug_in)):
            per_bin = np.zeros(tested.size)
            per_bin[1::2] = tested.weights  # bin 2k + e carries e * w_k
            population = per_bin[example.bins(truth, tested)]
            for i, alpha in enumerate(TAIL_ALPHAS):
                for j, n in enumerate(TAIL_SIZES):
                    out[name][b, i, j] = (
                        upper_tail(population, n, tested.threshold(n, alpha)) / alpha
                    )
    return out


def shift_section(example: Example, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out = {}
    for scenario in EXAMPLES[example.name][2]:
        flagged: dict[str, list[bool]] = {"concept_after": [], "error_test": [], "ks_abs": []}
        for seed in range(args.seeds):
            stream = example.stream(scenario, ONSET + AFTER, ONSET, seed)
            for row in evaluations(example, stream, seed):
                if row["seen"] >= ONSET + WINDOW:  # windows holding only records after the onset
                    for method, values in flagged.items():
                        values.append(row[method])
        out[scenario] = {method: float(np.mean(values)) for method, values in flagged.items()}
    return out


def report(
    example: Example,
    sections: list[dict],
    no_drift: dict,
    boot: dict,
    shifts: dict,
    args: argparse.Namespace,
    tails: dict[str, np.ndarray] | None = None,
) -> None:
    tests = example.monitor().calibration.tests
    level = alphas(example, args.loose_ert)
    concept = "error-rate ratio" if example.classification else "MSE ratio"
    text = {
        k: v.format(concept=concept, test=example.test.name, **level) for k, v in LABELS.items()
    }
    print(
        f"## {example.name} (reference {example.reference.size:,} rows; {tests} tests today, "
        f"{example.monitor(error_test=True).calibration.tests} with the error test)\n"
    )
    per_million = 1_000_000 / no_drift["records"]
    for position, section in enumerate(sections):
        print(f"### `{section['scenario']}` from record {ONSET:,}\n")
        head = f"| method | records from onset to alarm (median of {args.seeds} seeds) | per seed |"
        if position == 0:
            print(head + f" no drift: alarms per 1M records ({no_drift['records']:,} records) |")
            print("|---|---:|---|---:|")
        else:
            print(head + "\n|---|---:|---|")
        for method, seeds in section["delays"].items():
            line = f"| {text[method]} | {cell(seeds)} | {per_seed(seeds)} |"
            alarms = no_drift["counts"].get(method)
            if position == 0 and alarms is not None:
                line += f" {alarms * per_million:,.1f} ({alarms}) |"
            print(line)
        margins = section["margins"]
        before, after = (" / ".join(f"{x:.2f}" for x in margins[k]) for k in ("before", "after"))
        print(
            f"\nAt the first evaluation after the onset ({STEP} drifted records), statistic / "
            f"threshold per seed: today's {concept} {before}; the error test {after} (its first "
            f"alarm from scale: {', '.join(section['scales'])}).\n"
        )
    evaluated = no_drift["evaluations"]
    print(
        f"No drift, the error test at a loose budget (ert {args.loose_ert:g}: alpha "
        f"{level['loose']:.2e} per scale), {evaluated:,} evaluations of {no_drift['records']:,} "
        "records, evaluations over the threshold: "
        + ", ".join(f"{k} {v} ({v / evaluated:.1e} of them)" for k, v in no_drift["loose"].items())
        + ".\n"
    )
    print(
        f"Against {args.bootstrap:,} references drawn from the held-out rows with replacement "
        f"({example.reference.size:,} rows each), each tested on one window of {WINDOW:,} "
        "records drawn the same way (independent evaluations), share over the threshold:\n"
    )
    names = [name for name, _ in errortest.scales(PANES)]
    print("| alpha per test | " + " | ".join(names) + " |\n|---:|" + "---:|" * len(names))
    for alpha in (1e-2, 1e-3):
        cells = [
            f"{over / total:.2e} ({over}/{total})"
            for over, total in (boot[alpha, name] for name in names)
        ]
        print(f"| {alpha:g} | " + " | ".join(cells) + " |")
    if tails is not None:
        references = len(tails["smoothed"])
        print(
            f"\nThe same check without counting alarms, down to alpha 1e-6: {references:,} references "
            "drawn with replacement, the expected rate P(window statistic > the reference's "
            "threshold) / alpha, windows drawn from the held-out rows, mean (standard error); the "
            "test as the monitor builds it (each cell's error rate smoothed, Jeffreys) and with "
            "the plug-in null it had before:\n"
        )
        sizes = " | ".join(f"n = {n:,}" for n in TAIL_SIZES)
        print(f"| null | alpha per test | {sizes} |\n|---|---:|" + "---:|" * len(TAIL_SIZES))
        for name, rates in tails.items():
            mean, error = rates.mean(axis=0), rates.std(axis=0) / math.sqrt(len(rates))
            for i, alpha in enumerate(TAIL_ALPHAS):
                cells = " | ".join(
                    f"{mean[i, j]:.2f}x ({error[i, j]:.2f})" for j in range(len(TAIL_SIZES))
                )
                print(f"| {name} | {alpha:g} | {cells} |")
    print(
        f"\nInputs-only scenarios (covariate shift), share of the windows holding only drifted "
        f"records that are flagged ({args.seeds} seeds, windows ending {WINDOW:,} to {AFTER:,} "
        "records after the onset):\n"
    )
    print(f"| scenario | {concept} (after) | error test | KS on abs(error) (today's alpha) |")
    print("|---|---:|---:|---:|")
    for scenario, shares in shifts.items():
        print(
            f"| `{scenario}` | {shares['concept_after']:.1%} | {shares['error_test']:.1%} | "
            f"{shares['ks_abs']:.1%} |"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--no-drift", type=int, default=2_000_000, help="records of the no-drift stream per example"
    )
    parser.add_argument(
        "--loose-ert", type=float, default=1e4, help="the loose budget of the calibration check"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=20_000,
        help="references drawn with replacement for the calibration check",
    )
    parser.add_argument(
        "--tail-references",
        type=int,
        default=10_000,
        help="references of the classifier's expected-rate check (0: left out)",
    )
    parser.add_argument(
        "--river",
        default=None,
        help="python of the River environment (e.g. .venv-river/bin/python)",
    )
    parser.add_argument("--examples", default="diamonds,affairs")
    args = parser.parse_args(argv)
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(
        f"# Concept drift with labels ({datetime.date.today()}; `bench/concept_bench.py {shown}`)\n"
    )
    for name in args.examples.split(","):
        example = Example(name)
        sections = [delays_section(example, scenario, args) for scenario in EXAMPLES[name][1]]
        no_drift = no_drift_section(example, args)
        boot = bootstrap_section(example, args)
        shifts = shift_section(example, args)
        tails = (
            tail_section(example, args) if example.classification and args.tail_references else None
        )
        report(example, sections, no_drift, boot, shifts, args, tails)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
