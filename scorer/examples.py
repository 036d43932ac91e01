"""The shipped example models, trained by `python -m scorer train [--example diamonds|affairs]`.

Each writes a complete MODEL_DIR: model.joblib, schema.yaml (a copy of contract/schemas/<example>.yaml),
reference.csv (the held-out 20%: features, target, prediction [, proba_<class>]) and metadata.json
(model version = content hash, library versions, held-out error). Columns come from the schema.

diamonds   seaborn's diamonds, price regression: StandardScaler on the numerics, OneHotEncoder
           (unknown categories ignored) on the categoricals, a RandomForest (the tutorial's).
affairs    statsmodels' fair survey, did she have an affair (no/yes): OneHotEncoder on the
           categoricals, numerics as they are, a HistGradientBoostingClassifier; its
           predict_proba gives the published probabilities.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract.artifacts import METADATA_FILE, MODEL_FILE, REFERENCE_FILE, SCHEMA_FILE, model_version
from contract.dataset import LOADERS, split_holdout
from contract.schema import SCHEMAS, Schema
from contract.schema_file import load_schema
from scorer.reference import PREDICTION_COLUMN, reference_frame

# The tutorial used RandomForestRegressor() with defaults: 100 fully grown trees, 339 MB on
# disk and 3 minutes to train on 2 cores here. Leaves of at least 3 samples and 60 trees keep
# the held-out MSE (it is slightly lower, measured in bench/model_bench.py) at a fifth of the size
# and a sixth of the training time.
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 60, "min_samples_leaf": 3, "random_state": 42}

# Boosting on 5,092 rows: 200 shallow rounds at a small learning rate. Held-out error 27.2%
# (predicting "no" for everyone: 33.4%); RandomForestClassifier(200 trees, leaves of 5): 28.5%,
# sklearn's default boosting (100 rounds of 31 leaves): 28.8%. Trains in 3-8 s on 2 busy cores.
BOOSTING_PARAMS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "random_state": 42,
}


def build_pipeline(schema: Schema | None = None, **forest_params: Any):
    """The diamonds pipeline: scale numerics, one-hot categoricals (unknown ones ignored), a forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    schema = schema or load_schema(SCHEMAS / "diamonds.yaml")
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(schema.numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(schema.categorical)),
        ]
    )
    return Pipeline(
        [("preprocess", preprocess), ("forest", RandomForestRegressor(**forest_params))]
    )


def build_classifier(schema: Schema, **boosting_params: Any):
    """The affairs pipeline: one-hot categoricals (unknown ones ignored), numerics as they are
    (trees need no scaling), gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(schema.categorical),
            ),
            ("numeric", "passthrough", list(schema.numeric)),
        ]
    )
    return Pipeline(
        [
            ("preprocess", preprocess),
            ("boosting", HistGradientBoostingClassifier(**boosting_params)),
        ]
    )


def library_versions() -> dict[str, str]:
    import joblib
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


@dataclass(frozen=True)
class Example:
    build: Callable[[Schema, int], Any]  # (schema, n_jobs) -> an unfitted pipeline
    params: dict[str, Any]
    after_fit: Callable[[Any], None] = lambda pipeline: None


def _forest(schema: Schema, n_jobs: int):
    return build_pipeline(schema, **FOREST_PARAMS, n_jobs=n_jobs)


def _one_thread(pipeline) -> None:
    # Scoring runs one process per core (instances share partitions), so the saved model
    # predicts on one thread.
    pipeline.set_params(forest__n_jobs=1)


EXAMPLES: dict[str, Example] = {
    "diamonds": Example(_forest, FOREST_PARAMS, _one_thread),
    "affairs": Example(
        lambda schema, n_jobs: build_classifier(schema, **BOOSTING_PARAMS), BOOSTING_PARAMS
    ),
}


def heldout_metrics(schema: Schema, reference: pd.DataFrame) -> dict[str, float]:
    truth, predicted = reference[schema.target], reference[PREDICTION_COLUMN]
    if schema.classification:
        majority = truth.value_counts(normalize=True).iloc[0]
        return {
            "holdout_error_rate": float(np.mean(predicted.to_numpy() != truth.to_numpy())),
            "holdout_majority_error_rate": float(1 - majority),
        }
    errors = predicted - truth
    return {"holdout_mse": float(np.mean(errors**2)), "holdout_mae": float(np.mean(np.abs(errors)))}


def train(model_dir: Path, example: str = "diamonds", n_jobs: int = -1) -> dict[str, Any]:
    """Fit an example on 80% of its data, write MODEL_DIR's four files; return the metadata."""
    if example not in EXAMPLES:
        raise ValueError(f"no example {example!r}: choose one of {', '.join(EXAMPLES)}")
    spec, schema_file = EXAMPLES[example], SCHEMAS / f"{example}.yaml"
    schema = load_schema(schema_file)
    columns = list(schema.feature_names)
    train_frame, holdout = split_holdout(LOADERS[example](schema))
    started = time.perf_counter()
    pipeline = spec.build(schema, n_jobs)
    pipeline.fit(train_frame[columns], train_frame[schema.target])
    train_seconds = time.perf_counter() - started
    spec.after_fit(pipeline)
    reference = reference_frame(pipeline, holdout.reset_index(drop=True), columns, schema.target)

    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    import joblib

    joblib.dump(pipeline, model_path, compress=3)
    shutil.copyfile(schema_file, model_dir / SCHEMA_FILE)
    reference.to_csv(model_dir / REFERENCE_FILE, index=False)
    metadata = {
        "example": example,
        "task": schema.task,
        "model_version": model_version(model_path),
        "trained_at": int(time.time() * 1000),
        "train_seconds": round(train_seconds, 2),
        "params": spec.params,
        **({"forest_params": spec.params} if example == "diamonds" else {}),
        "features": columns,
        "n_train": len(train_frame),
        "n_holdout": len(reference),
        **heldout_metrics(schema, reference),
        "model_bytes": model_path.stat().st_size,
        "libraries": library_versions(),
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def summary(metadata: dict[str, Any], model_dir: Path) -> str:
    """One line for `scorer train`."""
    if "holdout_error_rate" in metadata:
        error = (
            f"held-out error rate {metadata['holdout_error_rate']:.1%} (predicting the majority class: "
            f"{metadata['holdout_majority_error_rate']:.1%})"
        )
    else:
        error = f"held-out MSE {metadata['holdout_mse']:,.0f}, MAE {metadata['holdout_mae']:,.1f}"
    return (
        f"{metadata['example']} model {metadata['model_version']} in {model_dir}: {error}, "
        f"{metadata['model_bytes'] / 1e6:.1f} MB, trained in {metadata['train_seconds']} s"
    )
