"""`scorer train` (the shipped examples), `scorer reference` (a user's own model), the commands'
help and tail's columns (no broker)."""

from __future__ import annotations

import json
import time

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml

from contract.artifacts import read_reference
from contract.schema import SCHEMAS
from contract.schema_file import load_schema, parse_schema
from scorer.__main__ import build_parser, main
from scorer.model import check_against_schema, load
from scorer.scoring import BatchCodec, predictor_of, score_batch
from scorer.tail import Columns
from tests.unit.test_scoring import CLASSIFIER_SCHEMA, PET_FEATURES, fit_classifier, pets


@pytest.fixture(scope="module")
def affairs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("affairs")
    started = time.perf_counter()
    assert main(["train", "--example", "affairs", "--model-dir", str(folder)]) == 0
    print(
        f"affairs example trained in {time.perf_counter() - started:.2f} s"
    )  # printed, not asserted
    return folder


def test_the_affairs_example_is_a_complete_model_dir(affairs, capsys):
    folder = affairs
    assert sorted(p.name for p in folder.iterdir()) == [
        "metadata.json",
        "model.joblib",
        "reference.csv",
        "schema.yaml",
    ]
    schema = load_schema(folder / "schema.yaml")
    assert (folder / "schema.yaml").read_bytes() == (
        SCHEMAS / "affairs.yaml"
    ).read_bytes()  # a copy, comments and all
    assert (schema.name, schema.task, schema.classes, schema.class_kind) == (
        "affairs",
        "classification",
        ("no", "yes"),
        "string",
    )
    assert {f.name: f.kind for f in schema.features} == {
        "rate_marriage": "integer",
        "age": "number",
        "yrs_married": "number",
        "children": "number",
        "religious": "integer",
        "educ": "number",
        "occupation": "string",
        "occupation_husb": "string",
    }
    assert schema.feature("occupation").known == {
        "student",
        "farming",
        "white-collar",
        "skilled",
        "managerial",
        "professional",
    }
    reference = read_reference(folder / "reference.csv", schema)
    assert list(pd.read_csv(folder / "reference.csv").columns) == [
        *schema.feature_names,
        "affair",
        "prediction",
        "proba_no",
        "proba_yes",
    ]
    assert len(reference) == 1274  # 20% of 6,366
    np.testing.assert_allclose(reference["proba_no"] + reference["proba_yes"], 1.0, atol=1e-12)
    assert set(reference["prediction"]) == {"no", "yes"}
    meta = json.loads((folder / "metadata.json").read_text())
    error = float(np.mean(reference["prediction"] != reference["affair"]))
    assert meta["holdout_error_rate"] == pytest.approx(error)
    assert (
        error < meta["holdout_majority_error_rate"] and 0.2 < error < 0.3
    )  # better than always "no"
    assert (meta["n_train"], meta["n_holdout"], meta["example"]) == (5092, 1274, "affairs")


def test_the_affairs_model_scores_through_its_schema_as_it_did_offline(affairs):
    folder = affairs
    schema, model = load_schema(folder / "schema.yaml"), load(folder)
    codec = BatchCodec(schema, check_against_schema(model, schema))
    reference = read_reference(folder / "reference.csv", schema).head(300)
    values = [
        json.dumps(
            {
                "id": str(i),
                "ts": 1,
                **{
                    c: row[c].item() if hasattr(row[c], "item") else row[c]
                    for c in schema.feature_names
                },
            }
        ).encode()
        for i, (_, row) in enumerate(reference.iterrows())
    ]
    batch = score_batch(values, predictor_of(model.pipeline, codec), model.version, 0, codec)
    got = [json.loads(v) for _, v in batch.predictions]
    assert [m["prediction"] for m in got] == reference["prediction"].tolist()
    np.testing.assert_allclose(
        [m["probabilities"]["yes"] for m in got], reference["proba_yes"], rtol=0, atol=1e-9
    )


def test_the_diamonds_example_writes_todays_reference_columns_and_its_schema(model_dir):
    assert list(pd.read_csv(model_dir / "reference.csv", nrows=1).columns) == [
        "carat",
        "cut",
        "color",
        "clarity",
        "depth",
        "table",
        "price",
        "prediction",
    ]
    assert (
        load_schema(model_dir / "schema.yaml").to_yaml()
        == load_schema(SCHEMAS / "diamonds.yaml").to_yaml()
    )


# -- `scorer reference`: a user's held-out rows -> reference.csv ---------------------------------
def sensors(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sensor": [f"s{i}" for i in range(rows)],
            "temp": rng.normal(20, 5, rows),
            "site": rng.choice(["north", "south"], rows),
        }
    )
    frame["output"] = (
        3 * frame["temp"] + np.where(frame["site"] == "north", 5.0, 0.0) + rng.normal(0, 1, rows)
    )
    return frame


def regressor_dir(folder):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder.mkdir()
    train = sensors(500, 1)
    model = Pipeline(
        [
            (
                "encode",
                ColumnTransformer([("site", OneHotEncoder(), ["site"])], remainder="passthrough"),
            ),
            ("model", LinearRegression()),
        ]
    ).fit(train[["temp", "site"]], train["output"])
    joblib.dump(model, folder / "model.joblib")
    return folder, model


def test_reference_for_a_regressor_writes_features_target_prediction(tmp_path, capsys):
    folder, model = regressor_dir(tmp_path / "reg")
    heldout = sensors(200, 2)
    heldout.to_csv(tmp_path / "heldout.csv", index=False)
    assert (
        main(
            [
                "reference",
                "--model-dir",
                str(folder),
                "--heldout",
                str(tmp_path / "heldout.csv"),
                "--target",
                "output",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    written = pd.read_csv(folder / "reference.csv")
    # The model's feature_names_in_ (temp, site): the id column is not a feature, and is left out.
    assert list(written.columns) == ["temp", "site", "output", "prediction"]
    np.testing.assert_allclose(
        written["prediction"], model.predict(heldout[["temp", "site"]]), rtol=1e-12
    )
    assert (
        out.count("\n") == 1
        and "200 rows" in out
        and "features temp, site" in out
        and "held-out MSE" in out
    )
    # --keep copies an id column through (for `monitor profile --id`), and Parquet works both ways.
    heldout.to_parquet(tmp_path / "heldout.parquet")
    assert (
        main(
            [
                "reference",
                "--model-dir",
                str(folder),
                "--heldout",
                str(tmp_path / "heldout.parquet"),
                "--target",
                "output",
                "--keep",
                "sensor",
                "-o",
                str(tmp_path / "ref.parquet"),
            ]
        )
        == 0
    )
    assert list(pd.read_parquet(tmp_path / "ref.parquet").columns) == [
        "temp",
        "site",
        "output",
        "prediction",
        "sensor",
    ]


def test_reference_for_a_classifier_adds_a_probability_per_class(tmp_path):
    folder = tmp_path / "pets"
    folder.mkdir()
    model = fit_classifier(pets(1000, 1))
    joblib.dump(model, folder / "model.joblib")
    heldout = pets(300, 2)
    heldout.to_csv(tmp_path / "heldout.csv", index=False)
    assert (
        main(
            [
                "reference",
                "--model-dir",
                str(folder),
                "--heldout",
                str(tmp_path / "heldout.csv"),
                "--target",
                "species",
                "-o",
                str(tmp_path / "out.csv"),
            ]
        )
        == 0
    )
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written.columns) == [
        *PET_FEATURES,
        "species",
        "prediction",
        "proba_bird",
        "proba_cat",
        "proba_dog",
    ]
    assert written["prediction"].tolist() == model.predict(heldout[PET_FEATURES]).tolist()
    np.testing.assert_allclose(
        written[["proba_bird", "proba_cat", "proba_dog"]],
        model.predict_proba(heldout[PET_FEATURES]),
        atol=1e-12,
    )


@pytest.mark.filterwarnings(
    "ignore:X has feature names"
)  # fitted on an array: sklearn says so, rightly
def test_a_model_without_feature_names_takes_every_column_but_the_target(tmp_path):
    from sklearn.linear_model import LinearRegression

    folder = tmp_path / "plain"
    folder.mkdir()
    frame = pd.DataFrame(
        {"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0], "y": [0.0, 2.0, 4.0, 6.0]}
    )
    joblib.dump(
        LinearRegression().fit(frame[["a", "b"]].to_numpy(), frame["y"]), folder / "model.joblib"
    )
    frame.to_csv(tmp_path / "heldout.csv", index=False)
    assert (
        main(
            [
                "reference",
                "--model-dir",
                str(folder),
                "--heldout",
                str(tmp_path / "heldout.csv"),
                "--target",
                "y",
            ]
        )
        == 0
    )
    assert list(pd.read_csv(folder / "reference.csv").columns) == ["a", "b", "y", "prediction"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"target": "nope"}, "has no column 'nope' (--target)"),
        ({"heldout": "missing.csv"}, "no held-out file"),
        ({"heldout": "heldout.txt"}, "CSV (.csv) or Parquet"),
        ({"model_dir": "empty"}, "no model.joblib in"),
        ({"drop": "temp"}, "no column 'temp', which the model was fitted on"),
        ({"empty": "site"}, "column 'site' is empty in 1 of 50 rows"),
        ({"keep": "nope"}, "no column 'nope' (--keep)"),
    ],
)
def test_bad_reference_input_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    folder, _ = regressor_dir(tmp_path / "reg")
    (tmp_path / "empty").mkdir()
    heldout = sensors(50, 2)
    if "drop" in change:
        heldout = heldout.drop(columns=change["drop"])
    if "empty" in change:
        heldout.loc[3, change["empty"]] = None
    heldout.to_csv(tmp_path / "heldout.csv", index=False)
    (tmp_path / "heldout.txt").write_text("x")
    args = [
        "reference",
        "--model-dir",
        str(tmp_path / change.get("model_dir", "reg")),
        "--heldout",
        str(tmp_path / change.get("heldout", "heldout.csv")),
        "--target",
        change.get("target", "output"),
    ]
    if "keep" in change:
        args += ["--keep", change["keep"]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: ")
        and err.count("\n") == 1
        and message in err
        and "Traceback" not in err
    )


# -- help ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "run", "tail", "serve", "reference"])
def test_every_command_explains_the_model_dir_and_its_env_vars(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MODEL_DIR" in text and "model.joblib" in text and "schema.yaml" in text
    if command in ("run", "tail"):
        assert (
            "PREDICTIONS_TOPIC" in text
            and "KAFKA_BOOTSTRAP_SERVERS" in text
            and "<model>.predictions" in text
        )
    if command == "run":
        assert (
            "FEATURES_TOPIC" in text
            and "DLQ_TOPIC" in text
            and "SCORER_GROUP" in text
            and "SCORER_METRICS_PORT" in text
        )
    if command == "serve":
        assert "API_PORT" in text and "API_HOST" in text


# -- tail's columns ------------------------------------------------------------------------------
def test_tail_columns_come_from_the_schema():
    columns = Columns(parse_schema(yaml.safe_load(CLASSIFIER_SCHEMA)))
    assert columns.header().split() == [
        "id",
        "event",
        "time",
        "prediction",
        "weight",
        "colour",
        "legs",
        "age",
        "model",
    ]
    row = columns.row(
        {
            "id": "p1",
            "ts": 1_700_000_000_000,
            "scored_at": 2,
            "model_version": "v9",
            "prediction": "cat",
            "probabilities": {"dog": 0.1, "cat": 0.8, "bird": 0.1},
            "features": {"weight": 4.2, "colour": "ginger", "legs": 4, "age": 3.0},
        }
    )
    assert row.split() == [
        "p1",
        "2023-11-14",
        "22:13:20.000",
        "cat",
        "4.2",
        "ginger",
        "4",
        "3.0",
        "v9",
    ]
    diamonds = Columns(load_schema(SCHEMAS / "diamonds.yaml"))
    assert diamonds.header().split()[:4] == ["id", "event", "time", "prediction"]
    assert "1,234.50" in diamonds.row(
        {"id": "d", "ts": 0, "prediction": 1234.5, "features": {}, "model_version": "v"}
    )
