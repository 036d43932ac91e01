"""`python -m monitor report`: the page saved to a file, from a running monitor and from a batch.

- a monitor on the local broker (scorer + monitor + `producer simulate` under carat-shift): the
  file written from `--url` is the page the monitor serves, and its numbers are the gauges of the
  same evaluation;
- a JSONL batch of prediction messages (the diamonds schema's `messages:` layout) drawn from the
  reference, carat shifted or not, tested as one window with no broker;
- bad input: exit 2 (1 when a monitor cannot be read) with one line on stderr, no traceback.

Every case runs the CLI as a subprocess (the exit code and stderr are the contract).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.artifacts import REFERENCE_FILE, SCHEMA_FILE
from devstack.broker import free_port
from tests.support import (
    ROOT,
    KafkaEnv,
    scrape,
    start_monitor,
    start_scorer,
    stop_process,
    wait_for_log,
    wait_monitored,
)

RECORDS, ONSET = 3000, 1000  # the last window (records 2,000-3,000) is all shifted
BATCH = 1000


def report(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m monitor report ARGS` without a broker (nothing it reads comes from the environment)."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "report", *map(str, args)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class Page(HTMLParser):
    """What a test reads of a saved page: its title, the header's facts, the cards in order
    (section, data-* attributes, CSS classes)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.title, self.facts, self.cards = "", {}, []
        self._section, self._in, self._dt = None, None, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
        elif tag == "article":
            self.cards.append(
                {**attrs, "section": self._section, "classes": attrs.get("class", "").split()}
            )
        elif tag in ("title", "dt", "dd") and self._in is None:
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "title" and not self.cards:
            self.title += data
        elif self._in == "dt":
            self._dt = data
        elif self._in == "dd" and self._dt is not None:
            self.facts[self._dt] = data
            self._dt = None

    def features(self) -> list[dict]:
        return [c for c in self.cards if c["section"] == "features"]

    def card(self, name: str) -> dict:
        return next(c for c in self.cards if c["data-name"] == name)

    def flagged(self) -> list[str]:
        return [c["data-name"] for c in self.cards if "flagged" in c["classes"]]


def wrote(result: subprocess.CompletedProcess, output: Path) -> Page:
    """The run succeeded, said what it wrote, and the file is a page."""
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout.decode().startswith(f"wrote {output} ("), result.stdout
    assert result.stderr.decode().strip() == "", result.stderr.decode()[-2000:]
    html = output.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>")
    return Page(html)


def evaluation(samples: dict) -> dict:
    """The series one evaluation sets (`MonitorMetrics.show`) and the evaluations counted, NaN as
    None (so that two scrapes of one evaluation compare equal)."""
    prefixes = (
        "drift_",
        "prediction_drift",
        "concept_",
        "estimated_",
        "rolling_",
        "reference_",
        "label_coverage",
        "window_records",
        "outside_support",
        "monitor_evaluations",
        "monitor_stream_records",
        "data_drift",
    )
    return {
        key: None if math.isnan(value) else value
        for key, value in samples.items()
        if key[0].startswith(prefixes)
    }


def refused(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The run failed with `code` and one line on stderr naming `words`, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- a running monitor on the local broker ---------------------------------------------------------
@pytest.mark.broker
def test_report_from_a_running_monitor_is_its_page(kafka: KafkaEnv, tmp_path: Path):
    port, log = free_port(), tmp_path / "monitor.log"
    scorer = start_scorer(kafka, tmp_path / "scorer.log")
    monitor = start_monitor(kafka, log, f"monitor-{kafka.suffix}", port)
    try:
        wait_for_log(tmp_path / "scorer.log", "scoring ")
        wait_for_log(log, "monitoring ")
        produced = kafka.run(
            "producer",
            "simulate",
            "--count",
            str(RECORDS),
            "--rate",
            "0",
            "--scenario",
            "carat-shift",
            "--onset",
            str(ONSET),
            "--seed",
            "5",
            "--label-delay",
            "0",
            TOPIC_PARTITIONS="1",
        )
        assert produced.returncode == 0, produced.stderr.decode()[-2000:]
        wait_monitored(port, RECORDS, kafka.topics["LABELS_TOPIC"], timeout=180)
        # the last evaluation's gauges, then the page, then the gauges again: one evaluation between
        before = scrape(port)
        output = tmp_path / "x.html"
        page = wrote(
            kafka.run("monitor", "report", "--url", f"http://127.0.0.1:{port}/", "-o", str(output)),
            output,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            served = response.read()
        after = scrape(port)
        assert evaluation(before) == evaluation(after), (
            "the monitor evaluated again while the page was saved"
        )
        # a page that is not the monitor's (its /metrics): exit 1, one line
        refused(
            kafka.run(
                "monitor",
                "report",
                "--url",
                f"http://127.0.0.1:{port}/metrics",
                "-o",
                str(tmp_path / "m.html"),
            ),
            1,
            "not a monitor's page",
        )
        assert not (tmp_path / "m.html").exists()
        assert stop_process(monitor) == 0
    finally:
        stop_process(monitor)
        stop_process(scorer)
    assert output.read_bytes() == served  # the file is the page, byte for byte
    assert page.title.startswith("diamonds drift: ") and "carat" in page.title
    features = page.features()
    assert features[0]["data-name"] == "carat" and "flagged" in features[0]["classes"]
    assert "carat" in page.flagged()
    assert after[("drift_feature_detected", (("feature", "carat"),))] == 1.0
    # the numbers shown are the gauges scraped at the same time, unrounded
    for card in features:
        name, test = card["data-name"], card["data-test"]
        assert (
            float(card["data-statistic"])
            == after[("drift_feature_statistic", (("feature", name), ("test", test)))]
        )
        assert (
            float(card["data-threshold"])
            == after[("drift_feature_threshold", (("feature", name),))]
        )
        assert float(card["data-p-value"]) == after[("drift_feature_pvalue", (("feature", name),))]
        assert ("flagged" in card["classes"]) == (
            after[("drift_feature_detected", (("feature", name),))] == 1.0
        )
    prediction = page.card("prediction")
    assert float(prediction["data-statistic"]) == after[("prediction_drift_statistic", ())]
    assert float(prediction["data-threshold"]) == after[("prediction_drift_threshold", ())]
    assert page.facts["Records"] == f"{after[('window_records', ())]:,.0f}" == "1,000"
    assert page.facts["Labels"] == "100%" and after[("label_coverage_ratio", ())] == 1.0
    realized = re.search(
        r"Realized MSE</th><td><b>([\d,.]+)</b> over the latest ([\d,]+) labelled records",
        output.read_text(),
    )
    assert realized, "the realized MSE is shown"
    mse = after[("rolling_mse", ())]
    assert float(realized[1].replace(",", "")) == pytest.approx(
        mse, abs=0.5 if mse >= 1000 else mse * 5e-4
    )


# -- a JSONL batch, no broker ----------------------------------------------------------------------
def prediction_messages(model_dir: Path, path: Path, carat: float, seed: int) -> Path:
    """BATCH reference rows as the scorer writes prediction messages (the schema's `messages:`:
    {id, ts, prediction, features: {...}}), carat multiplied by `carat`."""
    import yaml

    schema = yaml.safe_load((model_dir / SCHEMA_FILE).read_text())
    layout = schema["messages"]
    names = [f["name"] for f in schema["features"]]
    frame = pd.read_csv(model_dir / REFERENCE_FILE).sample(BATCH, random_state=seed)
    frame["carat"] = (frame["carat"] * carat).round(2)
    with path.open("w") as out:
        for i, row in enumerate(frame.itertuples(index=False)):
            values = row._asdict()
            out.write(
                json.dumps(
                    {
                        layout["id"]: f"batch-{i}",
                        layout["timestamp"]: 1_796_644_800_000 + i,
                        layout["prediction"]: float(values[schema["prediction"]]),
                        layout["features"]: {
                            n: values[n].item() if isinstance(values[n], np.generic) else values[n]
                            for n in names
                        },
                    }
                )
                + "\n"
            )
    return path


@pytest.fixture(scope="module")
def batches(model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("batches")
    return {
        "shifted": prediction_messages(model_dir, folder / "shifted.jsonl", 1.3, seed=1),
        "calm": prediction_messages(model_dir, folder / "calm.jsonl", 1.0, seed=2),
    }


def batch_args(model_dir: Path, records: Path | str) -> list:
    return ["--schema", model_dir / SCHEMA_FILE, "--reference", model_dir / REFERENCE_FILE, records]


def test_report_of_a_shifted_jsonl_batch_flags_carat_first(model_dir, batches, tmp_path):
    output = tmp_path / "y.html"
    page = wrote(report(*batch_args(model_dir, batches["shifted"]), "-o", output), output)
    html = output.read_text()
    features = page.features()
    assert features[0]["data-name"] == "carat" and "flagged" in features[0]["classes"]
    assert page.title.startswith("diamonds drift: carat")
    # a JSONL batch carries no labels: none joined, the realized performance not known
    assert page.facts["Records"] == f"{BATCH:,}" and page.facts["Labels"] == "0%"
    assert "Realized MSE</th><td>not known yet (0 labelled records)" in html
    assert page.facts["Window"].startswith(f"the {BATCH:,} records of shifted.jsonl")
    carat = page.card("carat")
    assert int(carat["data-records"]) == BATCH and float(carat["data-statistic"]) > float(
        carat["data-threshold"]
    )
    # carat only: the other features were not touched
    assert [c["data-name"] for c in features if "flagged" in c["classes"]] == ["carat"]


def test_report_of_a_labelled_csv_batch_joins_its_labels(model_dir, tmp_path):
    """A CSV named like the reference, its target column the labels: carat shifted and flagged first,
    every row labelled, the realized MSE the batch's own (the mean squared error of its rows)."""
    frame = pd.read_csv(model_dir / REFERENCE_FILE).sample(BATCH, random_state=3)
    frame["carat"] = (frame["carat"] * 1.3).round(2)
    batch = tmp_path / "shifted.csv"
    frame.to_csv(batch, index=False)
    output = tmp_path / "c.html"
    page = wrote(report(*batch_args(model_dir, batch), "-o", output), output)
    features = page.features()
    assert features[0]["data-name"] == "carat" and "flagged" in features[0]["classes"]
    assert page.facts["Records"] == f"{BATCH:,}" and page.facts["Labels"] == "100%"
    assert page.facts["Window"].startswith(f"the {BATCH:,} records of shifted.csv")
    realized = re.search(
        r"Realized MSE</th><td><b>([\d,.]+)</b> over the latest ([\d,]+) labelled records",
        output.read_text(),
    )
    assert realized and realized[2] == f"{BATCH:,}", "the realized MSE over every row"
    mse = float(((frame["prediction"] - frame["price"]) ** 2).mean())
    assert float(realized[1].replace(",", "")) == pytest.approx(mse, rel=5e-4)


def test_report_of_a_calm_jsonl_batch_flags_nothing(model_dir, batches, tmp_path):
    output = tmp_path / "y.html"
    page = wrote(report(*batch_args(model_dir, batches["calm"]), "-o", output), output)
    assert page.title == "diamonds drift: nothing flagged"
    assert page.flagged() == [] and len(page.features()) == 6
    assert "Nothing flagged in this window" in output.read_text()
    assert all(float(c["data-statistic"]) <= float(c["data-threshold"]) for c in page.cards)


# -- bad input -------------------------------------------------------------------------------------
def test_report_without_arguments_shows_the_usage(tmp_path):
    """argparse's own refusal (-o is required): exit 2, the usage, no traceback."""
    result = report()
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("error: the following arguments are required: -o/--output")
    )


@pytest.mark.parametrize(
    "case",
    [
        "no source",
        "url and file",
        "missing jsonl",
        "missing output folder",
        "line not of the schema",
        "not json",
        "unreachable monitor",
    ],
)
def test_report_refuses_bad_input_in_one_line(case, model_dir, batches, tmp_path):
    output = tmp_path / "z.html"
    bad = tmp_path / "bad.jsonl"
    lines = batches["calm"].read_text().splitlines()
    if case == "no source":
        result, code, words = report("-o", output), 2, ("--url", "--schema")
    elif case == "url and file":
        result = report(
            "--url", "http://127.0.0.1:9/", *batch_args(model_dir, batches["calm"]), "-o", output
        )
        code, words = 2, ("either --url",)
    elif case == "missing jsonl":
        missing = tmp_path / "missing.jsonl"
        result, code, words = (
            report(*batch_args(model_dir, missing), "-o", output),
            2,
            (str(missing),),
        )
    elif case == "missing output folder":
        output = tmp_path / "nowhere" / "z.html"
        result = report(*batch_args(model_dir, batches["calm"]), "-o", output)
        code, words = 2, (str(output.parent),)
    elif case == "line not of the schema":
        record = json.loads(lines[5])
        record["features"]["carat"] = "heavy"  # a number in the schema
        bad.write_text("\n".join([*lines[:5], json.dumps(record), *lines[6:]]) + "\n")
        result, code, words = (
            report(*batch_args(model_dir, bad), "-o", output),
            2,
            ("line 6", "carat"),
        )
    elif case == "not json":
        bad.write_text("\n".join([*lines[:10], "{not json", *lines[10:]]) + "\n")
        result, code, words = report(*batch_args(model_dir, bad), "-o", output), 2, ("line 11",)
    else:  # nothing listens on a port just freed
        url = f"http://127.0.0.1:{free_port()}/"
        result, code, words = report("--url", url, "-o", output), 1, (url,)
    refused(result, code, *words)
    assert not output.exists()
    assert result.stdout.decode() == ""


def test_report_names_a_missing_csv_batch_as_the_records(model_dir, tmp_path):
    missing = tmp_path / "missing.csv"
    line = refused(
        report(*batch_args(model_dir, missing), "-o", tmp_path / "z.html"), 2, str(missing)
    )
    assert "reference" not in line, line
