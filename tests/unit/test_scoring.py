"""The scoring step and the model files, with the real trained model (no broker)."""
from __future__ import annotations

import gc
import json
import weakref

import numpy as np
import pandas as pd
import pytest

from contract.records import FEATURE_COLUMNS, FeatureRecord, decode_features, encode, prediction_message
from scorer.model import ModelError, load, load_reference, split_final_step
from scorer.scoring import score_batch


@pytest.fixture(scope="module")
def model(model_dir):
    return load(model_dir)


def test_batch_gives_predictions_equal_to_offline_and_dlq_positions(model, model_dir):
    reference = load_reference(model_dir).head(50)
    values = [json.dumps({"id": f"r{i}", "ts": 1000 + i, **{c: row[c] for c in FEATURE_COLUMNS}}).encode()
              for i, row in reference.iterrows()]
    values.insert(3, b"garbage")
    values.insert(10, b'{"id":"x","ts":1,"carat":"big"}')
    unseen = {"id": "u", "ts": 5, "carat": 1.0, "cut": "Ideal", "color": "E", "clarity": "I2", "depth": 61.0, "table": 56.0}
    values.append(json.dumps(unseen).encode())

    batch = score_batch(values, model.predict, model.version, now_ms=99)

    assert [(p, r.reason) for p, r in batch.rejections] == [(3, "not_json"), (10, "wrong_type")]
    assert len(batch.predictions) == 51
    expected = model.predict(reference[list(FEATURE_COLUMNS)])
    got = {key: json.loads(value) for key, value in batch.predictions}
    np.testing.assert_allclose([got[f"r{i}"]["prediction"] for i in range(50)], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(expected, reference["prediction"], rtol=1e-9)  # the reference file agrees
    assert got["u"]["model_version"] == model.version and got["u"]["scored_at"] == 99
    assert batch.unseen == {"clarity": 1}
    # Byte for byte what contract.records builds one record at a time (the wire format is unchanged).
    by_id = dict(batch.predictions)
    for value in values:
        record = decode_features(value)
        if isinstance(record, FeatureRecord):
            prediction = json.loads(by_id[record.id])["prediction"]
            assert by_id[record.id] == encode(prediction_message(record, prediction, model.version, 99))
    # The encoder ignores the unseen category instead of failing.
    assert got["u"]["prediction"] == pytest.approx(float(model.predict(pd.DataFrame([unseen])[list(FEATURE_COLUMNS)])[0]))


def test_empty_and_all_invalid_batches(model):
    assert score_batch([], model.predict, "v", 0).predictions == []
    batch = score_batch([b"", None], model.predict, "v", 0)
    assert batch.predictions == [] and [r.reason for _, r in batch.rejections] == ["not_json", "not_json"]


def test_metadata_describes_the_model(model):
    meta = model.metadata
    assert len(meta["model_version"]) == 16 and meta["n_holdout"] == 10788 and meta["n_train"] == 43152
    assert 250_000 < meta["holdout_mse"] < 400_000
    assert meta["model_bytes"] < 339_000_000 / 3


def test_missing_or_foreign_model_gives_a_message(tmp_path, model_dir):
    with pytest.raises(ModelError, match="run `python -m scorer train`"):
        load(tmp_path)
    (tmp_path / "model.joblib").write_bytes((model_dir / "model.joblib").read_bytes())
    meta = json.loads((model_dir / "metadata.json").read_text())
    meta["libraries"]["scikit-learn"] = "0.24.2"
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="trained with scikit-learn 0.24.2"):
        load(tmp_path)


def test_the_transforms_then_the_final_estimator_predict_exactly_what_the_pipeline_does(model, model_dir):
    frame = load_reference(model_dir).head(2000)[list(FEATURE_COLUMNS)]
    transform, forest = split_final_step(model.pipeline)
    assert type(forest).__name__ == "RandomForestRegressor"
    assert np.array_equal(forest.predict(transform(frame)), model.predict(frame))  # bit for bit, not approximately
    # Anything that is not a multi-step Pipeline is predicted on the frame as it is.
    identity, same = split_final_step(forest)
    assert same is forest and identity(frame) is frame


def test_a_model_that_hands_over_its_final_step_keeps_only_the_transforms(model, model_dir):
    frame = load_reference(model_dir).head(500)[list(FEATURE_COLUMNS)]
    expected = model.predict(frame)
    loaded = load(model_dir)  # its own copy: the module's model stays whole for the other tests
    transform, forest = loaded.hand_over_final_step()
    assert np.array_equal(forest.predict(transform(frame)), expected)
    with pytest.raises(RuntimeError, match="handed over to the scorer's predict process"):
        loaded.predict(frame)
    # Nothing left in this process holds the forest once the predict process has its copy.
    forest_ref = weakref.ref(forest)
    del forest
    gc.collect()
    assert forest_ref() is None
