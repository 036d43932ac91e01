"""What one forest `predict` costs by batch size, and how it overlaps the scorer's other work.

1. `model.predict` over N records in one call, and in slices of 1,000 / 5,000 / 20,000 / 50,000
   records: the forest walks tree by tree, and each call brings every tree back into the cache;
2. slices of the scorer's default batch (50,000 records) while the main thread also runs `--work`
   µs of Python per record (the scorer's decoding and delivering): one after the other; the
   predict on a second thread (at the default GIL switch interval and at 0.1 ms); the predict in
   `scorer.predictor.PredictProcess` (what the scorer does). Perfect overlap would cost
   max(predict, work).

Run: `.venv/bin/python bench/predict_bench.py [--records N] [--work US]` (part of `make bench`).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scorer_bench import sample_records  # noqa: E402
from scorer.model import load, split_final_step  # noqa: E402
from scorer.predictor import PredictProcess  # noqa: E402
from scorer.service import ScorerConfig  # noqa: E402

SLICE = ScorerConfig.batch_size


def us_per_record(predict, frame, size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(frame), size):
        predict(frame.iloc[start : start + size])
    return (time.perf_counter() - started) / len(frame) * 1e6


def python_work(seconds: float) -> None:
    """Bytecode for `seconds`: holds the GIL as the scorer's loop does between its C calls."""
    end, total = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for i in range(200):
            total += i


def sequential(predict, work_seconds: float):
    def step(batch):
        predict(batch)
        python_work(work_seconds)

    return step


def on_a_thread(predict, work_seconds: float):
    def step(batch):
        worker = threading.Thread(target=predict, args=(batch,))
        worker.start()
        python_work(work_seconds)
        worker.join()

    return step


def in_the_predict_process(predictor: PredictProcess, work_seconds: float):
    def step(batch):
        predictor.submit(batch)
        python_work(work_seconds)
        predictor.result()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument(
        "--work",
        type=float,
        default=12.0,
        help="µs of Python per record beside the predict "
        "(the scorer's main process: ~12, bench/scorer_breakdown.py)",
    )
    args = parser.parse_args(argv)
    model_dir = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts")).resolve()
    model = load(model_dir)
    frame = sample_records(model_dir, args.records)
    model.predict(frame.head(1000))  # first-call costs out of the way

    print(f"| forest `predict` ({args.records:,} records) | µs per record |")
    print("|---|---:|")
    print(f"| one call | {us_per_record(model.predict, frame, len(frame)):.1f} |")
    for size in (1000, 5000, 20000, 50000):
        print(f"| slices of {size:,} | {us_per_record(model.predict, frame, size):.1f} |")
    transform, _ = split_final_step(model.pipeline)
    print(
        f"| of which the pipeline's transforms (the encoding the scorer's main process does), slices of {SLICE:,} "
        f"| {us_per_record(transform, frame, SLICE):.1f} |"
    )
    work = args.work * 1e-6 * SLICE
    print(
        f"| slices of {SLICE:,}, and {args.work:g} µs of Python per record on the main thread: | |"
    )
    print(
        f"| one after the other | {us_per_record(sequential(model.predict, work), frame, SLICE):.1f} |"
    )
    interval = sys.getswitchinterval()
    print(
        f"| predict on a thread (switch interval {interval * 1000:g} ms) "
        f"| {us_per_record(on_a_thread(model.predict, work), frame, SLICE):.1f} |"
    )
    sys.setswitchinterval(0.0001)
    print(
        "| predict on a thread (switch interval 0.1 ms) "
        f"| {us_per_record(on_a_thread(model.predict, work), frame, SLICE):.1f} |"
    )
    sys.setswitchinterval(interval)
    predictor = PredictProcess(model.pipeline)
    try:
        print(
            f"| predict in the predict process (`scorer.predictor`) "
            f"| {us_per_record(in_the_predict_process(predictor, work), frame, SLICE):.1f} |"
        )
    finally:
        predictor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
