"""The simulator on a model no diamonds code knows, through the real broker: records and labels laid
out as its schema says, drawn from its reference, and seeded label flips."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from contract.artifacts import read_reference
from contract.decoders import Decoders, check_record, verdict
from contract.rules import Rejection
from contract.schema_file import load_schema
from producer.grammar import parse_scenario
from producer.simulate import SimulateConfig, generate_chunks, source_columns
from tests.unit.test_scenarios import write_churn_model_dir

pytestmark = pytest.mark.broker

COUNT, ONSET, SEED = 3000, 1000, 9


def expected_stream(model_dir, scenario: str) -> dict[str, tuple[dict, object]]:
    """id -> (features, label) the simulator draws for this seed, computed here without Kafka."""
    schema = load_schema(model_dir / "schema.yaml")
    source = source_columns(read_reference(model_dir / "reference.csv", schema), schema)
    config = SimulateConfig(
        count=COUNT, scenario=parse_scenario(scenario, schema, source), onset=ONSET, seed=SEED
    )
    stream = {}
    for positions, chunk, _ in generate_chunks(source, config):
        columns = {c: chunk[c].tolist() for c in chunk}
        for i, position in enumerate(positions.tolist()):
            stream[f"sim-{position}"] = (
                {c: columns[c][i] for c in schema.feature_names},
                columns[schema.target][i],
            )
    return stream


def test_a_classification_model_streams_in_its_layout_with_seeded_label_flips(kafka, tmp_path):
    model_dir = write_churn_model_dir(tmp_path / "churn")
    schema = load_schema(model_dir / "schema.yaml")
    sim = kafka.run(
        "producer",
        "simulate",
        "--count",
        str(COUNT),
        "--rate",
        "0",
        "--label-delay",
        "0",
        "--scenario",
        "labels:flip:0.2",
        "--onset",
        str(ONSET),
        "--seed",
        str(SEED),
        MODEL_DIR=str(model_dir),
    )
    assert sim.returncode == 0, sim.stderr.decode()[-2000:]
    assert (
        f"records {COUNT} (invalid 0), labels {COUNT}, delivered {2 * COUNT}, failed 0"
        in sim.stderr.decode()
    )
    features = kafka.consume("FEATURES_TOPIC", expected=COUNT)
    labels = kafka.consume("LABELS_TOPIC", expected=COUNT)

    records = {m.key().decode(): json.loads(m.value()) for m in features}
    answers = {m.key().decode(): json.loads(m.value()) for m in labels}
    ids = {f"sim-{i}" for i in range(COUNT)}
    assert len(features) == len(labels) == COUNT and set(records) == set(answers) == ids
    decoders = Decoders(schema)
    for message in features:  # what the scorer will take, in the schema's field names and order
        assert not isinstance(verdict(check_record, decoders, message.value()), Rejection)
    for record_id, record in records.items():
        assert list(record) == ["event_id", "event_time", "tenure", "spend", "plan", "region"]
        assert record["event_id"] == record_id and record["event_time"].endswith("Z")
        assert dt.datetime.fromisoformat(record["event_time"]).tzinfo == dt.UTC
        assert list(answers[record_id]) == ["event_id", "event_time", "churned"]
        assert (
            answers[record_id]["event_time"] == record["event_time"]
            and answers[record_id]["event_id"] == record_id
        )

    # The stream is the seed's: the same features and labels as drawn here without Kafka.
    expected = expected_stream(model_dir, "labels:flip:0.2")
    assert {
        i: {k: v for k, v in r.items() if k not in ("event_id", "event_time")}
        for i, r in records.items()
    } == {i: features for i, (features, _) in expected.items()}
    assert {i: a["churned"] for i, a in answers.items()} == {
        i: label for i, (_, label) in expected.items()
    }

    # Flipped labels: each record's tenure is unique in the reference, so it names the row drawn.
    reference = read_reference(model_dir / "reference.csv", schema)
    truth = dict(zip(reference["tenure"].tolist(), reference["churned"].tolist()))
    flipped = {i for i, r in records.items() if answers[i]["churned"] != truth[r["tenure"]]}
    assert all(int(i.split("-")[1]) >= ONSET for i in flipped)  # nothing before the onset
    assert len(flipped) == 394  # of the 2,000 records after onset, from seed 9: 19.7%
    assert {answers[i]["churned"] for i in flipped} <= set(schema.classes)


def test_a_resampling_scenario_sends_real_rows_whose_labels_are_their_own(kafka, tmp_path):
    """tilt:spend:1.25 moves spend by drawing other rows: every record sent is a reference row and
    every label its row's own label, the relation the model learnt untouched."""
    model_dir = write_churn_model_dir(tmp_path / "churn")
    schema = load_schema(model_dir / "schema.yaml")
    sim = kafka.run(
        "producer",
        "simulate",
        "--count",
        str(COUNT),
        "--rate",
        "0",
        "--label-delay",
        "0",
        "--scenario",
        "tilt:spend:1.25",
        "--onset",
        str(ONSET),
        "--seed",
        str(SEED),
        MODEL_DIR=str(model_dir),
    )
    assert sim.returncode == 0, sim.stderr.decode()[-2000:]
    records = {
        m.key().decode(): json.loads(m.value())
        for m in kafka.consume("FEATURES_TOPIC", expected=COUNT)
    }
    answers = {
        m.key().decode(): json.loads(m.value())
        for m in kafka.consume("LABELS_TOPIC", expected=COUNT)
    }
    assert set(records) == set(answers) == {f"sim-{i}" for i in range(COUNT)}

    expected = expected_stream(model_dir, "tilt:spend:1.25")
    assert {
        i: {k: v for k, v in r.items() if k not in ("event_id", "event_time")}
        for i, r in records.items()
    } == {i: features for i, (features, _) in expected.items()}
    # tenure is unique per reference row: it names the row each record was drawn from
    reference = read_reference(model_dir / "reference.csv", schema)
    rows = {row["tenure"]: row for row in reference.to_dict("records")}
    for record_id, record in records.items():
        row = rows[record["tenure"]]
        assert {c: record[c] for c in schema.feature_names} == {
            c: row[c] for c in schema.feature_names
        }
        assert answers[record_id]["churned"] == row["churned"]
    spend = [(int(i.split("-")[1]) >= ONSET, r["spend"]) for i, r in records.items()]
    before = sum(v for after, v in spend if not after) / ONSET
    after = sum(v for later, v in spend if later) / (COUNT - ONSET)
    mean = float(reference["spend"].mean())
    assert abs(before / mean - 1) < 0.1 and abs(after / mean - 1.25) < 0.06, (before, after, mean)
