"""How often does each categorical test cross its threshold on windows without drift? Simulated.

    .venv/bin/python bench/chi2_tail_bench.py [--draws 10000000] [--seed 7]

The monitor's categorical thresholds are quantiles of the chi-square distribution
(`monitor.stats.chi2_threshold`), which Pearson's statistic follows only approximately; the
approximation is weakest in the far tail and for small expected counts, and the thresholds sit
at a per-test level alpha near 1e-6 (the default budget). This bench draws no-drift windows
(multinomial, the reference's own frequencies) at both scales of the default window (1,000 records
and its newest 500), computes the monitor's statistic (`monitor.stats.chi2_statistic`) and counts
how often it crosses the threshold, against alpha. A ratio above 1 means more false alarms than
that test's share of the budget.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=10_000_000, help="simulated windows per column and scale")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from monitor.calibration import Calibration
    from monitor.service import MonitorConfig, load_reference
    from monitor.stats import chi2_statistic

    config = MonitorConfig()
    reference = load_reference(load_model_schema(MODEL_DIR), MODEL_DIR / REFERENCE_FILE)
    calibration = Calibration(reference, config.ert, "calibrated", recent=True)
    alpha = calibration.alpha(config.step_size)
    rng = np.random.default_rng(args.seed)
    chunk = 1_000_000
    print(f"## Categorical tests on simulated no-drift windows ({args.draws:,} per row, alpha per test {alpha:.3g})\n")
    print("| column | window records | smallest expected count | threshold | crossings | rate | rate / alpha |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, profile in reference.categorical.items():
        counts = np.asarray(profile.counts, dtype=np.int64)
        frequencies = counts / counts.sum()
        threshold = calibration.chi2(len(counts) - 1, alpha)
        m = counts.sum()
        for n in (config.window_size, config.window_size // 2):
            # chi2_statistic, vectorised over windows (same smoothing and reference-size scaling)
            expected = n * (counts + 0.5) / (m + 0.5 * len(counts))
            crossings, done = 0, 0
            while done < args.draws:
                size = min(chunk, args.draws - done)
                windows = rng.multinomial(n, frequencies, size=size)
                statistics = (((windows - expected) ** 2) / expected).sum(axis=1) * m / (n + m)
                crossings += int((statistics > threshold).sum())
                done += size
            # the vectorised form is the monitor's statistic: checked on the first window drawn
            check, _ = chi2_statistic(counts, windows[0], np.empty(0, np.int64))
            assert abs(check - statistics[0]) < 1e-9 * max(1.0, check), (check, statistics[0])
            rate = crossings / args.draws
            print(f"| {name} | {n:,} | {n * frequencies.min():.1f} | {threshold:.2f} | {crossings:,} | {rate:.2e} | "
                  f"{rate / alpha:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
