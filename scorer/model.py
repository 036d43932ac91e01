"""Training, saving and loading the price model, and the held-out reference the monitor uses.

MODEL_DIR holds three files:
  model.joblib    the fitted scikit-learn pipeline
  reference.csv   the held-out 20%: features, price (label) and the model's prediction
  metadata.json   model version (content hash), library versions, held-out MSE/MAE
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import pandas as pd

from contract.records import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

log = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
REFERENCE_FILE = "reference.csv"
METADATA_FILE = "metadata.json"

# The tutorial used RandomForestRegressor() with defaults: 100 fully grown trees, 339 MB on
# disk and 3 minutes to train on 2 cores here. Leaves of at least 3 samples and 60 trees keep
# the held-out MSE (it is slightly lower, measured in bench/model.py) at a fifth of the size
# and a sixth of the training time.
FOREST_PARAMS: dict[str, Any] = {"n_estimators": 60, "min_samples_leaf": 3, "random_state": 42}


class ModelError(RuntimeError):
    """A model that cannot be used, with a message that says what to do."""


def build_pipeline(**forest_params: Any):
    """The tutorial's pipeline: scale numerics, one-hot categoricals (unknown ones ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("forest", RandomForestRegressor(**forest_params))])


def library_versions() -> dict[str, str]:
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


def train(model_dir: Path, n_jobs: int = -1) -> dict[str, Any]:
    """Fit on 80% of diamonds, write model, held-out reference and metadata; return metadata."""
    from contract.dataset import load_diamonds, split_holdout

    train_frame, holdout = split_holdout(load_diamonds())
    started = time.perf_counter()
    pipeline = build_pipeline(**FOREST_PARAMS, n_jobs=n_jobs)
    pipeline.fit(train_frame[list(FEATURE_COLUMNS)], train_frame["price"])
    train_seconds = time.perf_counter() - started
    # Scoring runs one process per core (instances share partitions), so the saved model
    # predicts on one thread.
    pipeline.set_params(forest__n_jobs=1)

    reference = holdout.reset_index(drop=True)
    reference["prediction"] = pipeline.predict(reference[list(FEATURE_COLUMNS)])
    errors = reference["prediction"] - reference["price"]

    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    joblib.dump(pipeline, model_path, compress=3)
    reference.to_csv(model_dir / REFERENCE_FILE, index=False)
    metadata = {
        "model_version": hashlib.sha256(model_path.read_bytes()).hexdigest()[:16],
        "trained_at": int(time.time() * 1000),
        "train_seconds": round(train_seconds, 2),
        "forest_params": FOREST_PARAMS,
        "features": list(FEATURE_COLUMNS),
        "n_train": len(train_frame),
        "n_holdout": len(reference),
        "holdout_mse": float(np.mean(errors**2)),
        "holdout_mae": float(np.mean(np.abs(errors))),
        "model_bytes": model_path.stat().st_size,
        "libraries": library_versions(),
    }
    (model_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


class HandedOver:
    """What a LoadedModel holds once its final step went to another process."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("this model's final step was handed over to the scorer's predict process")


@dataclass
class LoadedModel:
    pipeline: Any
    metadata: dict[str, Any]

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(frame)

    def hand_over_final_step(self) -> tuple[Callable[[pd.DataFrame], Any], Any]:
        """(the transforms, the final estimator) for a scorer whose predict process runs the final
        step; this model keeps neither, and its `predict` raises from then on. Otherwise the scorer's
        main process would hold a second copy of the forest it never runs (~117 MB of the demo
        model's ~280 MB in memory)."""
        transform, final = split_final_step(self.pipeline)
        self.pipeline = HandedOver()
        return transform, final


def split_final_step(pipeline: Any) -> tuple[Callable[[pd.DataFrame], Any], Any]:
    """(the transforms, the final estimator) of a scikit-learn Pipeline; (identity, the model) otherwise.

    `Pipeline.predict` is exactly its transforms, then the final estimator's predict: split, the
    scorer encodes one batch while its predict process runs the forest on the previous one."""
    from sklearn.pipeline import Pipeline

    if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
        return pipeline[:-1].transform, pipeline[-1]
    return (lambda frame: frame), pipeline


def load(model_dir: Path) -> LoadedModel:
    """Load a trained model, refusing one that this scikit-learn cannot be trusted to read."""
    import sklearn

    model_path, metadata_path = model_dir / MODEL_FILE, model_dir / METADATA_FILE
    if not model_path.exists() or not metadata_path.exists():
        raise ModelError(f"no trained model in {model_dir}: run `python -m scorer train` (or set MODEL_DIR)")
    metadata = json.loads(metadata_path.read_text())
    trained_with = metadata.get("libraries", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        # Pickled estimators are only guaranteed to load in the version that wrote them.
        raise ModelError(
            f"model in {model_dir} was trained with scikit-learn {trained_with}, this is {sklearn.__version__}: "
            "retrain with `python -m scorer train` or install the matching scikit-learn"
        )
    return LoadedModel(joblib.load(model_path), metadata)


def load_reference(model_dir: Path) -> pd.DataFrame:
    """The held-out rows with price and prediction: the monitor's no-drift reference."""
    path = model_dir / REFERENCE_FILE
    if not path.exists():
        raise ModelError(f"no reference file {path}: run `python -m scorer train` (or set MODEL_DIR)")
    return pd.read_csv(path, dtype={c: str for c in CATEGORICAL_FEATURES})
