"""`python -m monitor report`: the monitor's page saved to a file, for an incident ticket.

Two ways:
- `--url URL`: a running monitor's page (`monitor run` or `monitor evaluate` serves it at `/` on
  its metrics port), saved as it is;
- `--schema S --reference R FILE`: a batch of records, JSONL (one prediction message per line, laid
  out as the schema's `messages:` says) or CSV / Parquet (columns named as the reference's; the
  target, when present, gives the realized performance), tested as one window against the
  reference with the same calibrated tests as the stream; no broker. What batch drift tools do,
  with the stream's thresholds.
The page is self-contained HTML (inline SVG, no script, nothing fetched): `monitor.page`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_ERT = 10_000_000


def add_parser(subparsers: Any, env: Any) -> argparse.ArgumentParser:
    port = env.get("MONITOR_METRICS_PORT", "8000")
    report = subparsers.add_parser(
        "report",
        help="save the monitor's page (from a running monitor, or for a batch of records) to a file",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Save the drift page: from a running monitor (--url), or for a file of records tested as one "
        "window against the reference (--schema, --reference and FILE: JSONL prediction messages, or a CSV/Parquet "
        "file named like the reference; no broker).",
    )
    report.add_argument(
        "records",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="JSONL, CSV or Parquet records to test as one window (with --schema and --reference)",
    )
    report.add_argument("--url", help=f"a running monitor's page, e.g. http://localhost:{port}/")
    report.add_argument("--schema", type=Path, help="the model's schema file (batch use)")
    report.add_argument("--reference", type=Path, help="the model's reference file (batch use)")
    report.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE.html", help="the page to write"
    )
    report.add_argument(
        "--ert",
        type=float,
        default=DEFAULT_ERT,
        help="expected records between false alarms, as the monitor's --ert (batch use)",
    )
    report.add_argument(
        "--estimate",
        choices=("on", "off"),
        default="on",
        help="estimate the performance without labels (batch use)",
    )
    return report


def command(args: argparse.Namespace) -> int:
    """Write the page; exit 2 with one line naming what to change on bad input, 1 if a monitor cannot be read."""
    try:
        if args.url:
            if args.records or args.schema or args.reference:
                raise ValueError(
                    "give either --url (a running monitor) or --schema, --reference and FILE (a batch)"
                )
            page = fetch(args.url)
        else:
            if not (args.schema and args.reference and args.records):
                raise ValueError(
                    "give --url URL (a running monitor), or --schema S --reference R FILE (a batch of "
                    "records tested against the reference)"
                )
            page = batch_page(
                args.schema, args.reference, args.records, args.ert, args.estimate == "on"
            )
        if not args.output.parent.is_dir():
            raise ValueError(f"-o {args.output}: no directory {args.output.parent}")
    except OSError as exc:  # the monitor does not answer
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # SchemaError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.write_bytes(page)
    print(f"wrote {args.output} ({len(page):,} bytes)")
    return 0


def fetch(url: str) -> bytes:
    """A running monitor's page; OSError naming the URL when it does not answer with one."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    try:
        with urlopen(url, timeout=30) as response:
            body = response.read()
            kind = response.headers.get("Content-Type", "")
    except HTTPError as exc:
        raise OSError(
            f"{url} answered {exc.code}: {exc.read().decode(errors='replace').strip()[:200]}"
        ) from None
    except (URLError, OSError) as exc:
        raise OSError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from None
    if not kind.startswith("text/html"):
        raise OSError(
            f"{url} is not a monitor's page ({kind or 'no content type'}): the page is at / on the "
            "monitor's metrics port"
        )
    return body


def batch_page(
    schema_path: Path, reference_path: Path, records_path: Path, ert: float, estimate: bool
) -> bytes:
    """The page of `records_path` tested as one window against the reference."""
    from contract.schema_file import load_schema
    from monitor.baseline import load_baseline
    from monitor.decode import Decoder
    from monitor.drift import DriftMonitor
    from monitor.page import render
    from monitor.snapshot import order_from_schema, snapshot
    from monitor.windows import CountWindow

    schema = load_schema(schema_path)
    baseline = load_baseline(schema, reference_path, estimate)
    batch, labels = _records(schema, records_path, Decoder(schema))
    n = len(batch)
    if n < 2:
        raise ValueError(f"{records_path}: {n} valid records; a window needs at least 2")
    window = CountWindow(baseline.reference, window=n, step=n, estimator=baseline.estimator)
    monitor = DriftMonitor(baseline.reference, window, ert=ert, min_records=n, min_joined=1)
    monitor.update(batch)
    if labels is not None:
        monitor.update_labels(batch.ids, batch.ts, labels)
    result = monitor.result()
    html = render(
        snapshot(
            result,
            window.layout,
            window.aggregate(result.pane),
            window.aggregate(result.pane, window.panes_per_window // 2),
            model=schema.name,
            window_text=f"the {n:,} records of {records_path.name}",
            estimate=result.estimate,
            order=order_from_schema(schema),
            evaluated_ms=int(time.time() * 1000),
        )
    )
    return html.encode()


def _records(schema: Any, path: Path, decoder: Any) -> tuple[Any, Any]:
    """(PredictionBatch, labels or None) of a JSONL file of prediction messages, or of a CSV/Parquet
    file named like the reference (its target column, when present, the labels)."""
    import numpy as np

    from contract.artifacts import TABLE_SUFFIXES

    lines_suffixes = (".jsonl", ".json", ".ndjson")
    if path.suffix.lower() not in (*lines_suffixes, *TABLE_SUFFIXES):
        raise ValueError(
            f"{path}: a batch is a JSONL file (.jsonl) of prediction messages, or CSV (.csv) or "
            "Parquet (.parquet) rows with the feature and prediction columns"
        )
    if not path.is_file():
        raise ValueError(
            f"no file {path}: give the batch of records to test (JSONL prediction messages, or CSV "
            "or Parquet rows)"
        )
    if path.suffix.lower() in lines_suffixes:
        try:
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        batch, rejected = decoder.predictions(lines)
        if rejected:
            position, why = rejected[0]
            raise ValueError(
                f"{path}: line {position + 1} is not a prediction message of this schema "
                f"({why.reason}: {why.detail}); {len(rejected)} such lines"
            )
        return batch, None
    from contract.artifacts import read_reference, read_table
    from monitor.nanny import reference_batch

    has_labels = schema.target in read_table(path).columns
    frame = read_reference(path, schema, target=has_labels)  # typed and checked as the reference is
    if not has_labels:
        frame = frame.assign(
            **{schema.target: frame[schema.prediction]}
        )  # a placeholder, never used as labels
    batch, labels = reference_batch(schema, frame)
    ids = np.array([f"row-{i}" for i in range(len(batch))], dtype=object)
    batch = type(batch)(
        ids, batch.ts, batch.predictions, batch.numeric, batch.categorical, batch.probabilities
    )
    return batch, (labels if has_labels else None)
