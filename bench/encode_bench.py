"""The scorer's fast encoder (`scorer/encoding.py`) against scikit-learn's `transform`, per batch size.

For each example model it checks the fast encoder at start-up as the scorer does, then times both
on batches drawn from the reference rows, alternating in one run (medians of --repeats calls).
Run: `.venv/bin/python bench/encode_bench.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contract.artifacts import load_model_schema  # noqa: E402
from scorer.encoding import compile_transform, difference  # noqa: E402
from scorer.model import load, load_reference  # noqa: E402

SIZES = (1, 32, 1_000, 20_000)


def median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    print("| model | records | scikit-learn ms | fast ms | ratio | same bits |")
    print("|---|---:|---:|---:|---:|---|")
    for name, directory in (
        ("diamonds", ROOT / "artifacts"),
        ("affairs", ROOT / "artifacts" / "affairs"),
    ):
        if not (directory / "model.joblib").exists():
            print(
                f"| {name} | - | - | - | - | no model in {directory} (`python -m scorer train --example {name}`) |"
            )
            continue
        model, schema = load(directory), load_model_schema(directory)
        reference = load_reference(directory)
        features = list(schema.feature_names)
        known = {f.name: list(f.categories) for f in schema.features if not f.numeric}
        transforms = model.pipeline[:-1]
        encoder = compile_transform(
            transforms, pd.DataFrame({c: reference[c].tolist() for c in features}).head(2000), known
        )
        if encoder.fast is None:
            print(f"| {name} | - | - | - | - | not fast: {encoder.reason} |")
            continue
        rng = np.random.default_rng(5)
        for size in SIZES:
            rows = reference.iloc[rng.integers(0, len(reference), size)]
            columns = {c: rows[c].tolist() for c in features}
            frame = pd.DataFrame(columns)
            repeats = max(3, args.repeats if size < 10_000 else args.repeats // 10)
            slow = median_ms(lambda: transforms.transform(frame), repeats)
            fast = median_ms(lambda: encoder(frame, columns), repeats)
            same = difference(encoder(frame, columns), transforms.transform(frame)) == ""
            print(
                f"| {name} | {size:,} | {slow:.2f} | {fast:.2f} | {slow / fast:.1f} | {'yes' if same else 'NO'} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
