"""How often does each categorical test cross its threshold on windows without drift? Simulated.

    .venv/bin/python bench/chi2_tail_bench.py [--draws 100000000] [--seed 7] [--ert 1e7]

No-drift windows are drawn from the reference's own category frequencies (multinomial, as the
simulator resamples the held-out rows) at both scales of the default window (1,000 records and
its newest 500). Each is scored with the monitor's statistic (`monitor.stats.chi2_statistic`,
scaled by m/(n+m)) and compared with two thresholds at the per-test alpha of the budget:
- the chi-square law's quantile (the thresholds before `monitor.exact`), and
- the monitor's threshold: the exact null's quantile (`Calibration.chi2`).
A rate / alpha above 1 means more false alarms than that test's share of the budget. The draws'
own error: with k crossings the rate is known to about 1/sqrt(k).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_DIR = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--draws", type=int, default=100_000_000, help="simulated windows per column and scale"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ert", type=float, default=None, help="the budget (default: the monitor's)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("SEABORN_DATA", str(ROOT.parent / "shared" / "data" / "seaborn"))

    from scipy import special

    from contract.artifacts import REFERENCE_FILE, load_model_schema
    from monitor.baseline import load_reference
    from monitor.calibration import Calibration
    from monitor.config import MonitorConfig
    from monitor.stats import chi2_statistic

    config = MonitorConfig()
    reference = load_reference(load_model_schema(MODEL_DIR), MODEL_DIR / REFERENCE_FILE)
    calibration = Calibration(reference, args.ert or config.ert, "calibrated", recent=True)
    alpha = calibration.alpha(config.step_size)
    rng = np.random.default_rng(args.seed)
    chunk = 1_000_000
    print(
        f"## Categorical tests on simulated no-drift windows ({args.draws:,} per row, alpha per test {alpha:.3g})\n"
    )
    print(
        "| column | window records | smallest expected count | chi-square law: threshold | its rate / alpha "
        "| exact null: threshold | its rate / alpha (crossings) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, profile in reference.chi2_columns.items():
        counts = np.asarray(profile.counts, dtype=np.int64)
        frequencies = counts / counts.sum()
        m = counts.sum()
        for n in (config.window_size, config.window_size // 2):
            law = float(special.chdtri(len(counts) - 1, alpha))
            started = time.perf_counter()
            exact = calibration.chi2(name, n, alpha)
            seconds = time.perf_counter() - started
            # chi2_statistic, vectorised over windows (same smoothing and reference-size scaling)
            expected = n * (counts + 0.5) / (m + 0.5 * len(counts))
            over_law, over_exact, done = 0, 0, 0
            while done < args.draws:
                size = min(chunk, args.draws - done)
                windows = rng.multinomial(n, frequencies, size=size)
                statistics = (((windows - expected) ** 2) / expected).sum(axis=1) * m / (n + m)
                over_law += int((statistics > law).sum())
                over_exact += int((statistics > exact).sum())
                done += size
            # the vectorised form is the monitor's statistic: checked on the last window drawn
            check, _ = chi2_statistic(counts, windows[-1], np.empty(0, np.int64))
            assert abs(check - statistics[-1]) < 1e-9 * max(1.0, check), (check, statistics[-1])
            rate_law, rate_exact = over_law / args.draws, over_exact / args.draws
            print(
                f"| {name} | {n:,} | {n * frequencies.min():.1f} | {law:.2f} | {rate_law / alpha:.2f} | "
                f"{exact:.2f} ({seconds:.2f} s to compute) | {rate_exact / alpha:.2f} ({over_exact:,}) |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
