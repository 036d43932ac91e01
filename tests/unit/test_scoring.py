"""The scoring step and the model files: the real diamonds model through its schema, and a
classifier built here on data no diamonds code knows (no broker)."""

from __future__ import annotations

import gc
import json
import textwrap
import weakref
from pathlib import Path

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
import yaml

from contract.artifacts import load_model_schema, model_version, read_reference
from contract.decoders import check_record, verdict
from contract.rules import Rejection
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema, parse_schema
from scorer.model import ModelError, check_against_schema, load, load_reference, split_final_step
from scorer.scoring import BatchCodec, prediction_message, predictor_of, score_batch
from tests.support import decoders_of


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


@pytest.fixture(scope="module")
def diamonds(model_dir):
    return load_model_schema(model_dir)


@pytest.fixture(scope="module")
def codec(model, diamonds):
    return BatchCodec(diamonds, check_against_schema(model, diamonds))


def feature_values(schema, row) -> dict:
    """A reference row's features as JSON values (numpy scalars -> Python)."""
    return {c: row[c].item() if hasattr(row[c], "item") else row[c] for c in schema.feature_names}


def per_record_reference(schema, values, by_id, version, now_ms) -> None:
    """Every scored record's bytes equal the one-record-at-a-time definition, encoded by orjson."""
    for value in values:
        record = verdict(check_record, decoders_of(schema), value)
        if isinstance(record, Rejection):
            continue
        record_id = decoders_of(schema).getter("record", schema.messages.id)(record)
        message = json.loads(by_id[record_id])
        probabilities = (
            [message[schema.messages.probabilities][t] for t in schema.class_texts]
            if schema.messages.probabilities
            else None
        )
        if schema.messages.probability_fields:  # every class has its field here
            fields = dict(schema.messages.probability_fields)
            probabilities = [message[fields[t]] for t in schema.class_texts]
        expected = prediction_message(
            decoders_of(schema),
            record,
            message[schema.messages.prediction],
            version,
            now_ms,
            probabilities,
        )
        assert by_id[record_id] == orjson.dumps(expected)


def test_batch_gives_predictions_equal_to_offline_and_dlq_positions(
    model, model_dir, diamonds, codec
):
    reference = load_reference(model_dir).head(50)
    values = [
        json.dumps({"id": f"r{i}", "ts": 1000 + i, **feature_values(diamonds, row)}).encode()
        for i, row in reference.iterrows()
    ]
    values.insert(3, b"garbage")
    values.insert(10, b'{"id":"x","ts":1,"carat":"big"}')
    unseen = {
        "id": "u",
        "ts": 5,
        "carat": 1.0,
        "cut": "Ideal",
        "color": "E",
        "clarity": "I2",
        "depth": 61.0,
        "table": 56.0,
    }
    values.append(json.dumps(unseen).encode())

    batch = score_batch(values, predictor_of(model.pipeline, codec), model.version, 99, codec)

    assert [(p, r.reason) for p, r in batch.rejections] == [(3, "not_json"), (10, "wrong_type")]
    assert len(batch.predictions) == 51
    expected = model.predict(reference[list(diamonds.feature_names)])
    got = {key: json.loads(value) for key, value in batch.predictions}
    np.testing.assert_allclose(
        [got[f"r{i}"]["prediction"] for i in range(50)], expected, rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        expected, reference["prediction"], rtol=1e-9
    )  # the reference file agrees
    assert got["u"]["model_version"] == model.version and got["u"]["scored_at"] == 99
    assert batch.unseen == {"clarity": 1}
    # Byte for byte what prediction_message builds one record at a time.
    per_record_reference(diamonds, values, dict(batch.predictions), model.version, 99)
    # The encoder ignores the unseen category instead of failing.
    assert got["u"]["prediction"] == pytest.approx(
        float(model.predict(pd.DataFrame([unseen])[list(diamonds.feature_names)])[0])
    )


def test_the_diamonds_wire_format_is_todays_byte_for_byte(diamonds, codec):
    record = (
        b'{"ts":1700000000000,"id":"a-1","carat":1,"cut":"Very Good","color":"E","clarity":"SI1","depth":61.5,'
        b'"table":55,"price":3000,"extra":[1]}'
    )
    batch = score_batch([record], lambda frame: np.array([1234.5]), "v7", 99, codec)
    assert batch.predictions == [
        (
            "a-1",
            b'{"id":"a-1","ts":1700000000000,"scored_at":99,"model_version":"v7",'
            b'"prediction":1234.5,"features":{"carat":1.0,"cut":"Very Good","color":"E",'
            b'"clarity":"SI1","depth":61.5,"table":55.0}}',
        )
    ]


def test_empty_and_all_invalid_batches(model, codec):
    predict = predictor_of(model.pipeline, codec)
    assert score_batch([], predict, "v", 0, codec).predictions == []
    batch = score_batch([b"", None], predict, "v", 0, codec)
    assert batch.predictions == [] and [r.reason for _, r in batch.rejections] == [
        "not_json",
        "not_json",
    ]


def test_a_model_returning_nan_fails_the_batch(codec):
    record = b'{"id":"a","ts":1,"carat":1,"cut":"Ideal","color":"E","clarity":"SI1","depth":61.5,"table":55}'
    with pytest.raises(ValueError, match="model returned nan"):
        score_batch([record], lambda frame: np.array([np.nan]), "v", 0, codec)


def test_metadata_describes_the_model(model):
    meta = model.metadata
    assert (
        len(meta["model_version"]) == 16 and meta["n_holdout"] == 10788 and meta["n_train"] == 43152
    )
    assert 250_000 < meta["holdout_mse"] < 400_000
    assert meta["model_bytes"] < 339_000_000 / 3


def test_missing_or_foreign_model_gives_a_message(tmp_path, model_dir):
    with pytest.raises(ModelError, match="no model.joblib in .*run `python -m scorer train`"):
        load(tmp_path)
    (tmp_path / "model.joblib").write_bytes((model_dir / "model.joblib").read_bytes())
    meta = json.loads((model_dir / "metadata.json").read_text())
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(
        ModelError,
        match="trained with scikit-learn 0.24.2, this is .*retrain .*or install the matching",
    ):
        load(tmp_path)
    (tmp_path / "metadata.json").write_text("{oops")
    with pytest.raises(ModelError, match="cannot read .*metadata.json"):
        load(tmp_path)
    (tmp_path / "metadata.json").unlink()
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot load .*model.joblib: KeyError"):
        load(tmp_path)


def test_without_metadata_the_version_is_the_content_hash(tmp_path):
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]), tmp_path / "model.joblib")
    loaded = load(tmp_path)
    assert loaded.version == model_version(tmp_path / "model.joblib") and len(loaded.version) == 16
    (tmp_path / "metadata.json").write_text(json.dumps({"model_version": "mine-3"}))
    assert load(tmp_path).version == "mine-3"  # metadata's version when it names one


def test_without_metadata_a_model_pickled_by_another_scikit_learn_is_refused(tmp_path, monkeypatch):
    import sklearn
    import sklearn.base
    from sklearn.linear_model import LinearRegression

    fitted = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    with monkeypatch.context() as patch:
        patch.setattr(
            sklearn.base, "__version__", "0.24.2"
        )  # what BaseEstimator.__getstate__ records
        joblib.dump(fitted, tmp_path / "model.joblib")
    with pytest.raises(
        ModelError,
        match=f"trained with scikit-learn 0.24.2, this is {sklearn.__version__}: retrain",
    ):
        load(tmp_path)


def test_the_transforms_then_the_final_estimator_predict_exactly_what_the_pipeline_does(
    model, model_dir, diamonds
):
    frame = load_reference(model_dir).head(2000)[list(diamonds.feature_names)]
    transform, forest = split_final_step(model.pipeline)
    assert type(forest).__name__ == "RandomForestRegressor"
    assert np.array_equal(
        forest.predict(transform(frame)), model.predict(frame)
    )  # bit for bit, not approximately
    # Anything that is not a multi-step Pipeline is predicted on the frame as it is.
    identity, same = split_final_step(forest)
    assert same is forest and identity(frame) is frame


def test_a_model_that_hands_over_its_final_step_keeps_only_the_transforms(
    model, model_dir, diamonds
):
    frame = load_reference(model_dir).head(500)[list(diamonds.feature_names)]
    expected = model.predict(frame)
    loaded = load(model_dir)  # its own copy: the module's model stays whole for the other tests
    columns = {name: frame[name].tolist() for name in frame.columns}
    encode, forest = loaded.hand_over_final_step(
        frame, {f.name: list(f.categories) for f in diamonds.features if not f.numeric}
    )
    assert encode.fast is not None, (
        encode.reason
    )  # the scorer's fast encoder, checked against scikit-learn
    assert np.array_equal(forest.predict(encode(frame, columns)), expected)
    with pytest.raises(RuntimeError, match="handed over to the scorer's predict process"):
        loaded.predict(frame)
    # Nothing left in this process holds the forest once the predict process has its copy.
    forest_ref = weakref.ref(forest)
    del forest
    gc.collect()
    assert forest_ref() is None


# -- a classifier the test builds: string and integer categories, string classes ------------------
CLASSIFIER_SCHEMA = textwrap.dedent("""\
    name: pets
    task: classification
    target: species
    classes: [dog, cat, bird]      # not the model's (sorted) order: the scorer maps by class
    prediction: prediction
    features:
      - {name: weight, type: numeric, range: {gt: 0, le: 100}}
      - {name: colour, type: categorical, categories: [black, white, ginger, grey]}
      - {name: legs, type: categorical, categories: [2, 4]}
      - {name: age, type: numeric}
    messages: {id: id, timestamp: ts, prediction: prediction, probabilities: probabilities, features: features}
    labels: {id: id, timestamp: ts, target: species}
""")
PET_FEATURES = ["weight", "colour", "legs", "age"]


def pets(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.choice(["dog", "cat", "bird"], rows, p=[0.5, 0.35, 0.15])
    weight = (
        np.where(
            species == "dog",
            rng.gamma(9, 2.5, rows),
            np.where(species == "cat", rng.gamma(8, 0.5, rows), rng.gamma(2, 0.2, rows)),
        )
        + 0.01
    )
    legs = np.where(species == "bird", 2, 4)
    legs = np.where(rng.random(rows) < 0.03, 6 - legs, legs)  # a few mislabelled
    colour = rng.choice(
        ["black", "white", "ginger", "grey"], rows, p=[0.4, 0.3, 0.25, 0.05]
    )  # grey is rare
    return pd.DataFrame(
        {
            "weight": np.round(weight, 3),
            "colour": colour,
            "legs": legs.astype(int),
            "age": np.round(rng.uniform(0, 15, rows), 1),
            "species": species,
        }
    )


def fit_classifier(frame: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["colour", "legs"]),
            ("numbers", StandardScaler(), ["weight", "age"]),
        ]
    )
    return Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=500))]).fit(
        frame[PET_FEATURES], frame["species"]
    )


def build_classifier_dir(folder: Path) -> Path:
    """model.joblib, schema.yaml and reference.csv of the pets classifier (what a user brings)."""
    folder.mkdir(parents=True, exist_ok=True)
    model = fit_classifier(pets(3000, seed=1))
    joblib.dump(model, folder / "model.joblib")
    (folder / "schema.yaml").write_text(CLASSIFIER_SCHEMA)
    heldout = pets(1000, seed=2)
    reference = heldout.assign(prediction=model.predict(heldout[PET_FEATURES]))
    for i, cls in enumerate(model.classes_):
        reference[f"proba_{cls}"] = model.predict_proba(heldout[PET_FEATURES])[:, i]
    reference.to_csv(folder / "reference.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def pets_dir(tmp_path_factory):
    return build_classifier_dir(tmp_path_factory.mktemp("pets"))


def test_a_classifier_publishes_classes_and_probabilities_equal_to_offline(pets_dir):
    schema, model = load_model_schema(pets_dir), load(pets_dir)
    assert model.classes == ("bird", "cat", "dog") and schema.class_texts == ("dog", "cat", "bird")
    codec = BatchCodec(schema, check_against_schema(model, schema))
    rows = read_reference(pets_dir / "reference.csv", schema).head(200)
    values = [
        json.dumps({"id": f"p{i}", "ts": 1000 + i, **feature_values(schema, row)}).encode()
        for i, row in rows.iterrows()
    ]
    values.insert(
        5, b'{"id":"bad","ts":1,"weight":1,"colour":"black","legs":"four","age":2}'
    )  # legs is an integer category
    values.append(b'{"id":"new","ts":1,"weight":3.5,"colour":"purple","legs":4,"age":2}')

    batch = score_batch(values, predictor_of(model.pipeline, codec), model.version, 7, codec)

    assert [(p, r.reason) for p, r in batch.rejections] == [(5, "wrong_type")]
    assert batch.unseen == {"colour": 1}
    got = {key: json.loads(value) for key, value in batch.predictions}
    assert len(got) == 201
    frame = rows[PET_FEATURES]
    messages = [got[f"p{i}"] for i in range(200)]
    assert (
        [m["prediction"] for m in messages]
        == model.predict(frame).tolist()
        == rows["prediction"].tolist()
    )
    offline = pd.DataFrame(model.pipeline.predict_proba(frame), columns=model.classes)
    for cls in ("dog", "cat", "bird"):  # mapped by class, not by position
        np.testing.assert_allclose(
            [m["probabilities"][cls] for m in messages], offline[cls], rtol=0, atol=1e-12
        )
    assert all(list(m["probabilities"]) == ["dog", "cat", "bird"] for m in got.values())
    np.testing.assert_allclose(
        [sum(m["probabilities"].values()) for m in got.values()], 1.0, atol=1e-12
    )
    assert list(got["p0"]) == [
        "id",
        "ts",
        "scored_at",
        "model_version",
        "prediction",
        "probabilities",
        "features",
    ]
    assert got["p0"]["features"]["legs"] in (2, 4) and isinstance(
        got["p0"]["features"]["legs"], int
    )
    per_record_reference(schema, values, dict(batch.predictions), model.version, 7)


def test_top_level_features_and_iso_timestamps_follow_the_schema(pets_dir):
    raw = yaml.safe_load(CLASSIFIER_SCHEMA)
    raw["messages"] = {
        "id": "uid",
        "timestamp": "when",
        "timestamp_format": "iso8601",
        "prediction": "label",
        "features": None,
    }
    schema = parse_schema(raw)
    model = load(pets_dir)
    codec = BatchCodec(schema, check_against_schema(model, schema))
    record = b'{"uid":"a","when":"2024-05-01T12:00:00.250Z","weight":20.0,"colour":"black","legs":4,"age":3.0}'
    batch = score_batch([record], predictor_of(model.pipeline, codec), "v", 5, codec)
    message = json.loads(batch.predictions[0][1])
    assert list(message) == [
        "uid",
        "when",
        "scored_at",
        "model_version",
        "label",
        "weight",
        "colour",
        "legs",
        "age",
    ]
    assert message["when"].startswith("2024-05-01T12:00:00.25") and message["label"] == "dog"


def test_probabilities_as_a_field_per_class_follow_the_schema(pets_dir):
    """A schema written for another system's log (a top-level field per class) drives the scorer
    too: each class's probability in its own field, equal to the object form's."""
    raw = yaml.safe_load(CLASSIFIER_SCHEMA)
    raw["messages"] = {
        **raw["messages"],
        "probabilities": {"dog": "p_dog", "cat": "p_cat", "bird": "p_bird"},
    }
    schema, model = parse_schema(raw), load(pets_dir)
    codec = BatchCodec(schema, check_against_schema(model, schema))
    objects = BatchCodec(load_model_schema(pets_dir), model.classes)
    rows = read_reference(pets_dir / "reference.csv", schema).head(50)
    values = [
        json.dumps({"id": f"p{i}", "ts": 1000 + i, **feature_values(schema, row)}).encode()
        for i, row in rows.iterrows()
    ]
    fields = [
        json.loads(v)
        for _, v in score_batch(
            values, predictor_of(model.pipeline, codec), "v", 7, codec
        ).predictions
    ]
    nested = [
        json.loads(v)
        for _, v in score_batch(
            values, predictor_of(model.pipeline, objects), "v", 7, objects
        ).predictions
    ]
    assert list(fields[0]) == [
        "id",
        "ts",
        "scored_at",
        "model_version",
        "prediction",
        "p_dog",
        "p_cat",
        "p_bird",
        "features",
    ]
    assert [[m[f"p_{c}"] for c in ("dog", "cat", "bird")] for m in fields] == [
        [m["probabilities"][c] for c in ("dog", "cat", "bird")] for m in nested
    ]
    per_record_reference(
        schema,
        values,
        dict(score_batch(values, predictor_of(model.pipeline, codec), "v", 7, codec).predictions),
        "v",
        7,
    )


def test_a_model_whose_classes_or_task_differ_from_the_schema_is_refused(pets_dir, model):
    schema, pets_model = load_model_schema(pets_dir), load(pets_dir)
    other = parse_schema({**yaml.safe_load(CLASSIFIER_SCHEMA), "classes": ["dog", "cat", "fish"]})
    with pytest.raises(
        ModelError, match=r"classes \['bird', 'cat', 'dog'\] are not .* \(the schema lacks 'bird'\)"
    ):
        check_against_schema(pets_model, other)
    with pytest.raises(ModelError, match="the model is a classifier .* task: regression"):
        check_against_schema(pets_model, load_schema(DEFAULT_SCHEMA))
    with pytest.raises(ModelError, match="task: classification but the model has no classes_"):
        check_against_schema(model, schema)
    from sklearn.svm import LinearSVC

    no_proba = load(pets_dir)
    no_proba.pipeline.steps[-1] = (
        "model",
        LinearSVC().fit(
            no_proba.pipeline[:-1].transform(pets(300, 3)[PET_FEATURES]), pets(300, 3)["species"]
        ),
    )
    with pytest.raises(
        ModelError, match="sets messages.probabilities but the model has no predict_proba"
    ):
        check_against_schema(no_proba, schema)
    with pytest.raises(ValueError, match="not .*'s"):
        BatchCodec(schema, ("dog", "cat"))


def test_a_feature_clashing_with_a_field_the_scorer_adds_is_refused():
    raw = yaml.safe_load(CLASSIFIER_SCHEMA)
    raw["features"].append({"name": "scored_at", "type": "numeric"})
    raw["messages"]["features"] = None
    with pytest.raises(ValueError, match="'scored_at' twice"):
        BatchCodec(parse_schema(raw), ("bird", "cat", "dog"))
