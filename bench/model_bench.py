"""The model bar, measured in one run: our forest against the tutorial's default RandomForest.

Held-out MSE (ours within 5% of the tutorial's), artifact size on disk (at most a third of the
tutorial's) and training time on this machine's cores (under 60 s).
Run: `.venv/bin/python bench/model_bench.py` (the tutorial's forest takes ~3 minutes to train).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contract.dataset import example_schema, load_diamonds, split_holdout  # noqa: E402
from scorer.examples import FOREST_PARAMS, build_pipeline  # noqa: E402

FEATURE_COLUMNS = example_schema("diamonds").feature_names


def measure(name: str, pipeline, train, holdout, compress) -> tuple[str, float, float, float]:
    started = time.perf_counter()
    pipeline.fit(train[list(FEATURE_COLUMNS)], train["price"])
    seconds = time.perf_counter() - started
    mse = float(np.mean((pipeline.predict(holdout[list(FEATURE_COLUMNS)]) - holdout["price"]) ** 2))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.joblib"
        joblib.dump(pipeline, path, compress=compress)
        size = path.stat().st_size
    return name, mse, size / 1e6, seconds


def main() -> int:
    train, holdout = split_holdout(load_diamonds())
    rows = [
        # The tutorial: RandomForestRegressor() with defaults, saved with plain joblib.dump.
        measure(
            "tutorial RandomForestRegressor()", build_pipeline(random_state=42), train, holdout, 0
        ),
        measure(
            f"ours {FOREST_PARAMS}, n_jobs=-1",
            build_pipeline(**FOREST_PARAMS, n_jobs=-1),
            train,
            holdout,
            3,
        ),
    ]
    print(f"| model ({os.cpu_count()} cores) | held-out MSE | artifact MB | training s |")
    print("|---|---:|---:|---:|")
    for name, mse, size, seconds in rows:
        print(f"| {name} | {mse:,.0f} | {size:.1f} | {seconds:.1f} |")
    (_, base_mse, base_size, _), (_, mse, size, seconds) = rows
    print(
        f"\nMSE ratio {mse / base_mse:.3f} (bar <= 1.05), size ratio {size / base_size:.3f} (bar <= 0.333), "
        f"training {seconds:.1f} s (bar < 60 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
