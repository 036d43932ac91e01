"""River's sequential drift detectors on error series: the baselines of bench/concept_bench.py.

    .venv-river/bin/python bench/river_detectors.py SERIES.npz OUT.json --delta 1.67e-6

Runs in its own environment (`bench/requirements-river.txt`: River and what it needs, nothing of
this project), so it imports only numpy and river. SERIES.npz holds named 1-D float arrays (one
error per record, in stream order); OUT.json gets, per name and detector, the 0-based positions of
the records on which the detector flagged drift:
- ADWIN(delta): River's defaults otherwise (clock 32: it checks for a cut every 32 records, so its
  detections fall on multiples of 32);
- PageHinkley(): River's defaults (threshold 50, delta 0.005, mode "both"), fed the series divided
  by its given scale (`scale__<name>` in the npz, e.g. the reference's mean absolute error), so
  its fixed threshold means the same for dollars and 0/1 errors. Not calibrated to any budget.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from river import drift


def detections(detector, values: np.ndarray) -> list[int]:
    found = []
    for i, x in enumerate(values.tolist()):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("series")
    parser.add_argument("out")
    parser.add_argument(
        "--delta",
        type=float,
        required=True,
        help="ADWIN's confidence (the bench passes the per-test alpha)",
    )
    args = parser.parse_args(argv)
    data = np.load(args.series)
    out = {}
    for name in data.files:
        if name.startswith("scale__"):
            continue
        values = data[name].astype(np.float64)
        scale = float(data[f"scale__{name}"]) if f"scale__{name}" in data.files else 1.0
        out[name] = {
            "adwin": detections(drift.ADWIN(delta=args.delta), values),
            "page_hinkley": detections(drift.PageHinkley(), values / scale),
        }
    with open(args.out, "w") as handle:
        json.dump(out, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
