"""How conservative is KS on tied columns, and how much detection power does that cost? Exact and simulated.

    .venv/bin/python bench/ks_ties_bench.py [--draws 500000] [--power-draws 20000] [--seed 7] [--ert 1e7]

The monitor's KS threshold (`Calibration.ks`) is Kolmogorov's law for continuous data at the
effective size n*m/(n+m). carat, depth and table take few values (231, 144, 89 in the reference),
so the true null of the statistic is stochastically smaller: fewer false alarms than budgeted, and
a drift must be larger to be seen. The prediction (~10,400 values, 500 quantile bins) is the
control: what the threshold gives away on (nearly) continuous data.

Windows are drawn from the reference rows, as the simulator does: a window's bin counts are then
Multinomial(n, reference bin masses), the monitor's statistic `stats.ks_statistic` of those counts
(bins with no reference mass stay empty, so the statistic over the bins that have mass is the
same number; checked against `bins.counts` + `ks_statistic` on real row draws). Two ways to its law:
- simulated (`--draws` windows per column and scale): the realised false-alarm rate of the
  monitor's threshold and the empirical (1 - alpha) quantile, where alpha is loose enough to count;
- exact, at any alpha: P(D > t) by dynamic programming over the window's cumulative count. The
  counts are independent Poisson(n * p_j) conditioned on their sum being n, so the probability that
  every cumulative count C_j stays within t of n*F_j is a chain of K convolutions with Poisson pmfs,
  divided by P(Poisson(n) = n) (Poissonisation; cf. Dimitrova, Kaishev & Tan 2020 for KS on
  discrete laws). It needs no draws, so it reaches the production alpha (~1.67e-6) that
  simulation cannot, and it gives the detection probability under a drift the same way. The
  simulated columns check it.

Drifts are the simulator's covariate shift (`producer.scenarios.tilt_weights`, as tilt:COL:FACTOR):
the column's rows redrawn with weights exp(theta*x) so its mean moves down by a few percent,
strengths chosen so the monitor's threshold detects them in ~25%, 50% and 80% of windows.
At the production alpha the brief's estimate is also shown: the exact / monitor threshold ratio
seen at 1e-3 and 1e-4 (simulated) extended linearly in log(alpha), labelled as an extrapolation.

Two reasons the monitor's threshold sits above the exact one here, told apart by the prediction
row: the ties (the subject), and the effective size (windows drawn from the reference rows carry
no reference sampling noise, which en = n*m/(n+m) budgets for: the production case). The column
"ties alone" divides the exact threshold by Kolmogorov's at the window's own n (en = n), which
removes the second reason; the "ties-alone threshold" is the monitor's times that ratio: what a
correction for ties only would use, keeping the allowance for the reference's noise (an estimate:
asymptotically the two-sample null on tied data is the one-sample one scaled by sqrt(n/en), as
for continuous data).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# One BLAS thread: the tilts' root search takes ~10^4 short dot products, each of which a threaded
# OpenBLAS turned into a 1 ms thread hand-off on this 2-core machine (100x the work itself).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from monitor.reference import NumericBins

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
LOOSE = (1e-2, 1e-3, 1e-4)  # alphas simulation can count
POWER_ALPHAS = (1e-3, 1e-4)  # plus the production alpha
TARGETS = (0.25, 0.5, 0.8)  # detection probability at the monitor's threshold that picks each drift


def ks_statistics(cdf: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`stats.ks_statistic` of each window: counts (W, K) over the bins with reference mass, cdf (K,)."""
    n = counts[0].sum()
    return np.abs(np.cumsum(counts, axis=1) / n - cdf).max(axis=1)


class ExactKS:
    """P(D > t) for windows of n records against one reference CDF, by Poissonised dynamic programming.

    cdf (K,): the reference's cumulative fractions at the bins with mass (the last is 1.0)."""

    def __init__(self, cdf: np.ndarray, n: int) -> None:
        from scipy import special

        self.cdf, self.n = cdf, n
        # |C_j/n - F_j| for every count C_j = 0..n and bin j, (K, n+1): computed as the monitor computes it
        self.distance = np.abs(np.arange(n + 1)[None, :] / n - cdf[:, None])
        self.log_factorial = special.gammaln(np.arange(n + 1) + 1.0)  # log k!

    def crossing(self, t: float, probabilities: np.ndarray) -> float:
        """P(max_j |C_j/n - F_j| > t) when the window's bin counts are Multinomial(n, probabilities)."""
        allowed = self.distance <= t  # the monitor's `not D > t`, per bin: an interval of counts
        if not allowed.any(axis=1).all():
            return 1.0
        lows, highs = allowed.argmax(axis=1), self.n - allowed[:, ::-1].argmax(axis=1)
        n, low, v = (
            self.n,
            0,
            np.ones(1),
        )  # v[i] = P(C_j = low + i, no crossing so far), Poissonised
        for start, stop, p in zip(lows.tolist(), highs.tolist(), probabilities.tolist()):
            if stop < low:
                return 1.0
            start = max(start, low)
            k = np.arange(
                stop - low + 1
            )  # larger increments cannot land in the band: no truncation
            mu = n * p
            pmf = np.exp(k * math.log(mu) - mu - self.log_factorial[k])
            v = np.convolve(v, pmf)[start - low : stop - low + 1]
            low = start
        total = n * float(np.sum(probabilities))
        at_n = math.exp(n * math.log(total) - total - self.log_factorial[n])
        return float(1.0 - v[n - low] / at_n)

    def threshold(self, alpha: float, probabilities: np.ndarray, near: float) -> float:
        """The smallest attainable t with P(D > t) <= alpha (bisection over the values D can take)."""
        values = np.unique(self.distance)
        values = values[(values > 0.5 * near) & (values < 1.5 * near)]
        lo, hi = 0, len(values) - 1
        if (
            self.crossing(values[hi], probabilities) > alpha
            or self.crossing(values[lo], probabilities) <= alpha
        ):
            raise ValueError(f"exact threshold outside 0.5-1.5 x {near:.4f}")
        while lo < hi:
            mid = (lo + hi) // 2
            if self.crossing(values[mid], probabilities) <= alpha:
                hi = mid
            else:
                lo = mid + 1
        return float(values[lo])


def simulate(
    rng: np.random.Generator, cdf: np.ndarray, probabilities: np.ndarray, n: int, draws: int
) -> np.ndarray:
    """(draws,) KS statistics of windows of n records drawn with these bin probabilities."""
    chunk, out = 20_000, []
    for done in range(0, draws, chunk):
        out.append(
            ks_statistics(cdf, rng.multinomial(n, probabilities, size=min(chunk, draws - done)))
        )
    return np.concatenate(out)


def upper_quantile(statistics: np.ndarray, alpha: float) -> float:
    """The simulated exact threshold: the smallest drawn value t with (share of draws > t) <= alpha."""
    k = int(math.floor(alpha * statistics.size))
    return float(np.partition(statistics, statistics.size - 1 - k)[statistics.size - 1 - k])


def shift_label(shift: float, values: np.ndarray) -> str:
    """A downward mean shift of `shift` SD, as a percentage of the mean and in SD."""
    return f"{-100 * shift * values.std() / values.mean():+.2g}% ({-shift:+.2g} SD)"


class Column:
    """One KS column as the bench draws it: the bins with reference mass, their CDF and probabilities."""

    def __init__(self, name: str, bins: NumericBins, values: np.ndarray) -> None:
        self.name, self.bins, self.values = name, bins, values
        mass = np.diff(bins.reference_cdf, prepend=0.0)
        self.kept = (
            mass > 0
        )  # bins holding reference rows; the others stay empty in every window drawn here
        self.cdf, self.p = bins.reference_cdf[self.kept], mass[self.kept] / mass[self.kept].sum()
        self.row_bin = (
            np.cumsum(self.kept)[bins.bin_index(values)] - 1
        )  # each row's place among the kept bins

    def tilted(self, shift: float) -> np.ndarray:
        """Bin probabilities when the rows are redrawn so the mean moves down by `shift` SD."""
        from producer.scenarios import tilt_weights  # the simulator's tilt:COL:FACTOR

        w = tilt_weights(
            self.values, 1.0 - shift * self.values.std() / self.values.mean(), self.name
        )
        return np.bincount(self.row_bin, weights=w, minlength=self.cdf.size)

    def check_statistic(self, rng: np.random.Generator, n: int) -> None:
        """The vectorised statistic is the monitor's (`bins.counts` + `stats.ks_statistic`) on real row draws."""
        from monitor import stats

        windows = np.stack(
            [self.bins.counts(self.values[r]) for r in rng.integers(0, self.values.size, (5, n))]
        )
        assert (windows[:, ~self.kept] == 0).all()
        ours = ks_statistics(self.cdf, windows[:, self.kept])
        assert all(
            stats.ks_statistic(self.bins.reference_cdf, w) == d for w, d in zip(windows, ours)
        ), self.name


def detectable(column: Column, exact: ExactKS, threshold: float, target: float) -> float:
    """The downward mean shift (in SD) that a threshold detects in a `target` share of windows."""
    from scipy import optimize

    return optimize.brentq(
        lambda s: exact.crossing(threshold, column.tilted(s)) - target, 1e-4, 0.5, xtol=1e-5
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--draws", type=int, default=500_000, help="simulated no-drift windows per column and scale"
    )
    parser.add_argument(
        "--power-draws", type=int, default=20_000, help="simulated drifted windows per check"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ert", type=float, default=None, help="the budget (default: the monitor's)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

    from scipy import special

    from contract.artifacts import REFERENCE_FILE, load_model_schema, read_reference
    from monitor.baseline import load_reference
    from monitor.calibration import Calibration
    from monitor.config import MonitorConfig

    started, cpu = time.perf_counter(), time.process_time()
    config = MonitorConfig()
    schema = load_model_schema(MODEL_DIR)
    reference = load_reference(schema, MODEL_DIR / REFERENCE_FILE)
    frame = read_reference(
        MODEL_DIR / REFERENCE_FILE, schema
    )  # the same rows: the tilts need their values
    calibration = Calibration(reference, args.ert or config.ert, "calibrated", recent=True)
    production = calibration.alpha(config.step_size)
    rng = np.random.default_rng(args.seed)

    def kolmogorov(
        alpha: float, n: int
    ) -> float:  # the monitor's law at en = n: no reference noise
        return float(special.kolmogi(alpha)) / (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n))

    null_rows, power_rows, half_rows, check_rows = [], [], [], []
    for name, bins in reference.ks_columns.items():
        column = Column(name, bins, frame[name].to_numpy(dtype=np.float64))
        for n in (config.window_size, config.window_size // 2):
            column.check_statistic(rng, n)
            exact = ExactKS(column.cdf, n)
            null = simulate(rng, column.cdf, column.p, n, args.draws)
            key = {"column": name, "n": n, "tied": bins.exact}
            thresholds = {}  # alpha -> (monitor's, exact, ties alone)
            for alpha in (*LOOSE, production):
                monitor = calibration.ks(n, alpha)
                t_exact = exact.threshold(alpha, column.p, monitor)
                ties = t_exact / kolmogorov(alpha, n)
                thresholds[alpha] = monitor, t_exact, monitor * ties
                row = {
                    **key,
                    "values": int(column.kept.sum()),
                    "alpha": alpha,
                    "monitor": monitor,
                    "exact": t_exact,
                    "exact_rate": exact.crossing(monitor, column.p) / alpha,
                    "ties": ties,
                }
                if alpha in LOOSE:
                    crossings = int((null > monitor).sum())
                    row.update(
                        sim_rate=crossings / args.draws / alpha,
                        crossings=crossings,
                        sim_exact=upper_quantile(null, alpha),
                    )
                null_rows.append(row)
            # the brief's production estimate: the simulated exact / monitor ratio at 1e-3 and 1e-4,
            # extended linearly in log(alpha) (capped at 1) -- an extrapolation, shown beside the exact value
            r3, r4 = (r["sim_exact"] / r["monitor"] for r in null_rows[-3:-1])
            ratio = min(1.0, r4 + (r4 - r3) * (math.log10(production) + 4.0))
            null_rows[-1]["extrapolated"] = ratio * thresholds[production][0]

            for alpha in (*POWER_ALPHAS, production):
                monitor, t_exact, ties = thresholds[alpha]
                named = {"monitor": monitor, "exact": t_exact, "ties": ties}
                if alpha == production:
                    named["extrapolated"] = null_rows[-1]["extrapolated"]
                for target in TARGETS:
                    shift = detectable(column, exact, monitor, target)
                    shift = (
                        float(f"{shift * column.values.std() / column.values.mean():.2g}")
                        * column.values.mean()
                        / column.values.std()
                    )  # a round percentage of the mean
                    q = column.tilted(shift)
                    power = {k: exact.crossing(t, q) for k, t in named.items()}
                    power_rows.append(
                        {**key, "alpha": alpha, "shift": shift_label(shift, column.values), **power}
                    )
                    if alpha == POWER_ALPHAS[0] and target == TARGETS[1]:
                        drifted = simulate(rng, column.cdf, q, n, args.power_draws)
                        check_rows.append(
                            {
                                **key,
                                "shift": shift_label(shift, column.values),
                                "sim_monitor": float((drifted > monitor).mean()),
                                "sim_exact": float((drifted > t_exact).mean()),
                                "monitor": power["monitor"],
                                "exact": power["exact"],
                            }
                        )
                half = {
                    k: detectable(column, exact, named[k], 0.5)
                    for k in ("monitor", "ties", "exact")
                }
                half_rows.append({**key, "alpha": alpha, **half, "values": column.values})
            print(
                f"{name} n={n}: done at {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    print_tables(args, reference.size, production, null_rows, power_rows, half_rows, check_rows)
    print(conclusion(production, null_rows, power_rows, half_rows))
    print(
        f"\n({time.perf_counter() - started:.0f} s, {time.process_time() - cpu:.0f} s of CPU; seed {args.seed})"
    )
    return 0


def print_tables(
    args: argparse.Namespace,
    m: int,
    production: float,
    null_rows: list[dict],
    power_rows: list[dict],
    half_rows: list[dict],
    check_rows: list[dict],
) -> None:
    print(
        f"## KS on no-drift windows drawn from the reference rows ({m:,} rows; {args.draws:,} simulated windows "
        f"per column and window size; production alpha per test {production:.3g})\n"
    )
    print(
        "Exact: the dynamic programme (no draws). Ties alone: the exact threshold / Kolmogorov's at en = n, the "
        "part of the gap that is not the reference-noise allowance.\n"
    )
    print(
        "| column | window records | values (bins with mass) | alpha | monitor's threshold "
        "| its false alarms / alpha: simulated (crossings) | exact | exact threshold: simulated | exact "
        "| exact / monitor's | ties alone |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in null_rows:
        simulated = (
            (f"{r['sim_rate']:.2f} ({r['crossings']:,})", f"{r['sim_exact']:.4f}")
            if "sim_rate" in r
            else ("cannot count", f"extrapolated: {r['extrapolated']:.4f}")
        )
        print(
            f"| {r['column']} | {r['n']:,} | {r['values']} | {r['alpha']:.3g} | {r['monitor']:.4f} "
            f"| {simulated[0]} | {r['exact_rate']:.3f} | {simulated[1]} | {r['exact']:.4f} "
            f"| {r['exact'] / r['monitor']:.3f} | {r['ties']:.3f} |"
        )

    print("\n## Detection probability per window under a small tilt of the column (exact)\n")
    print(
        "The drift: the column's rows redrawn with weights exp(theta*x) (tilt:COL:FACTOR), its mean moved down by "
        "the shift shown. Ties-alone threshold: the monitor's x the ties-alone ratio above (keeps the allowance for "
        "the reference's noise). Last column, production alpha only: the extrapolated threshold above.\n"
    )
    print(
        "| column | window records | alpha | mean shift | P(detect): monitor's threshold | ties-alone threshold "
        "| exact tied threshold | extrapolated exact threshold |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for r in power_rows:
        extra = f"{r['extrapolated']:.3f}" if "extrapolated" in r else ""
        print(
            f"| {r['column']} | {r['n']:,} | {r['alpha']:.3g} | {r['shift']} | {r['monitor']:.3f} | {r['ties']:.3f} "
            f"| {r['exact']:.3f} | {extra} |"
        )

    print("\n## The drift each threshold detects in half the windows (exact)\n")
    print(
        "| column | window records | alpha | monitor's threshold | ties-alone threshold | exact tied threshold "
        "| monitor's / ties-alone |"
    )
    print("|---|---:|---|---|---|---|---:|")
    for r in half_rows:
        shifts = " | ".join(shift_label(r[k], r["values"]) for k in ("monitor", "ties", "exact"))
        print(
            f"| {r['column']} | {r['n']:,} | {r['alpha']:.3g} | {shifts} | {r['monitor'] / r['ties']:.3f} |"
        )

    print(
        f"\n## Check: simulated vs exact detection probability ({args.power_draws:,} drifted windows, alpha 1e-3)\n"
    )
    print(
        "| column | window records | mean shift | monitor's threshold: simulated | exact "
        "| exact threshold: simulated | exact |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in check_rows:
        print(
            f"| {r['column']} | {r['n']:,} | {r['shift']} | {r['sim_monitor']:.3f} | {r['monitor']:.3f} | "
            f"{r['sim_exact']:.3f} | {r['exact']:.3f} |"
        )


def conclusion(
    production: float, null_rows: list[dict], power_rows: list[dict], half_rows: list[dict]
) -> str:
    """One paragraph from the production-alpha rows: how conservative, what it costs, keep or not."""

    def at(rows: list[dict], **match: object) -> dict:
        return next(r for r in rows if all(r[k] == v for k, v in match.items()))

    tied = list(dict.fromkeys(r["column"] for r in null_rows if r["tied"]))
    control = next(r["column"] for r in null_rows if not r["tied"])
    big, small = sorted({r["n"] for r in null_rows}, reverse=True)

    def per_column(
        text: Callable[[str, int], str],
    ) -> str:  # "carat a (b), depth ..." for the two window sizes
        return ", ".join(f"{c} {text(c, big)} ({text(c, small)})" for c in tied)

    def half_way(
        c: str, n: int
    ) -> dict:  # the production drift the monitor detects in about half its windows
        rows = [
            r for r in power_rows if r["column"] == c and r["n"] == n and r["alpha"] == production
        ]
        return min(rows, key=lambda r: abs(r["monitor"] - 0.5))

    def growth(
        c: str, alpha: float
    ) -> float:  # monitor's / ties-alone drift for 50%, worst window size
        rows = [at(half_rows, column=c, n=n, alpha=alpha) for n in (big, small)]
        return max(r["monitor"] / r["ties"] for r in rows)

    rate = per_column(
        lambda c, n: f"{at(null_rows, column=c, n=n, alpha=production)['exact_rate']:.2f}"
    )
    ties = per_column(lambda c, n: f"{at(null_rows, column=c, n=n, alpha=production)['ties']:.3f}")
    gains = per_column(lambda c, n: "{monitor:.2f} -> {ties:.2f}".format(**half_way(c, n)))
    resampled = per_column(lambda c, n: f"{half_way(c, n)['exact']:.2f}")
    ctrl = at(null_rows, column=control, n=big, alpha=production)
    costs = {c: growth(c, production) for c in tied}
    loosest = max(POWER_ALPHAS)
    worst = max(tied, key=lambda c: growth(c, loosest))
    larger = ", ".join(f"{c} {100 * (g - 1):.0f}%" for c, g in costs.items())
    costly = [c for c, g in costs.items() if g > 1.10]
    if costly:
        verdict = (
            f"That is not small for {', '.join(costly)} (more than 10% more drift): keep the law on "
            f"{', '.join(c for c in tied if c not in costly) or 'no column'} and give {', '.join(costly)} an "
            f"exact tied threshold (the dynamic programme here, cacheable per n and alpha like monitor.exact) "
            f"times the effective-size allowance."
        )
    else:
        shrinking = (
            ", and less the smaller alpha is"
            if all(g < growth(c, loosest) for c, g in costs.items())
            else ""
        )
        verdict = (
            f"That cost is small (under 10% more drift on every tied column{shrinking}): keep Kolmogorov's "
            f"law, which never lets through more than the budget and needs no per-column table."
        )
    return (
        f"\n**Conclusion.** At the production alpha ({production:.3g}) KS on the tied columns is conservative: "
        f"in windows of {big:,} ({small:,}) records its exact false-alarm rate is {rate} x alpha. Part of that "
        f"is the effective size n*m/(n+m), which the continuous {control} shows too ({ctrl['exact_rate']:.2f} x "
        f"alpha; its ties-alone ratio {ctrl['ties']:.3f}) and which production needs, the reference being itself "
        f"a sample; the ties alone put the exact threshold at {ties} x Kolmogorov's. Correcting for ties alone "
        f"would raise the per-window detection probability of a drift the monitor catches about half the time: "
        f"{gains}; put the other way, the monitor needs a drift {larger} larger to detect it in half its "
        f"windows (worst window size; more at looser budgets: {worst} {100 * (growth(worst, loosest) - 1):.0f}% at "
        f"alpha {loosest:g}). The rest of the way to the exact threshold of windows drawn from the reference rows "
        f"({resampled}) is the effective-size allowance, which only a stream of those very rows (the "
        f"simulator's) could drop. {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
