"""Loading a user's scikit-learn model from MODEL_DIR, and checking it against the schema.

MODEL_DIR (see contract.artifacts) holds model.joblib, schema.yaml and reference.csv; metadata.json
is optional (`scorer train` writes one). The model is any fitted estimator or Pipeline taking a
DataFrame of the schema's feature columns; its version is metadata.json's, else the content hash
of model.joblib. Training the shipped examples is `scorer.examples`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from contract.artifacts import (
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    load_model_schema,
    model_version,
    read_reference,
)
from contract.rules import category_text
from contract.schema import Schema

if TYPE_CHECKING:
    from scorer.encoding import Encoder

log = logging.getLogger(__name__)

__all__ = [
    "METADATA_FILE",
    "MODEL_FILE",
    "REFERENCE_FILE",
    "ModelError",
    "LoadedModel",
    "load",
    "load_reference",
    "split_final_step",
    "check_against_schema",
]


class ModelError(RuntimeError):
    """A model that cannot be used, with a message that says what to do."""


class HandedOver:
    """What a LoadedModel holds once its final step went to another process."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        raise RuntimeError(
            "this model's final step was handed over to the scorer's predict process"
        )


@dataclass
class LoadedModel:
    pipeline: Any
    metadata: dict[str, Any]  # at least model_version

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @property
    def classes(self) -> tuple | None:
        """A classifier's classes in its predict_proba column order, as Python values; None for a regressor."""
        classes = getattr(self.pipeline, "classes_", None)
        return None if classes is None else tuple(np.asarray(classes).tolist())

    @property
    def has_probabilities(self) -> bool:
        return hasattr(self.pipeline, "predict_proba")  # a Pipeline answers for its final step

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict(frame)

    def hand_over_final_step(
        self, sample: pd.DataFrame | None = None, known: dict[str, list] | None = None
    ) -> tuple[Encoder, Any]:
        """(the transforms as an `Encoder`, the final estimator) for a scorer whose predict process
        runs the final step; this model keeps neither, and its `predict` raises from then on.
        Otherwise the scorer's main process would hold a second copy of the forest it never runs
        (~117 MB of the demo model's ~280 MB in memory).

        The encoder is `scorer.encoding`'s fast one when it is scikit-learn's transform on `sample`
        (reference rows as the scorer's frames hold them) and on unseen values of the `known`
        categorical columns; scikit-learn's own otherwise (its `reason` says why)."""
        from scorer.encoding import Encoder, compile_transform

        transform, final = split_final_step(self.pipeline)
        if transform is _identity:
            encoder = Encoder(transform, reason="the model is not a Pipeline with transforms")
        else:
            encoder = compile_transform(self.pipeline[:-1], sample, known or {})
        self.pipeline = HandedOver()
        return encoder, final


def split_final_step(pipeline: Any) -> tuple[Callable[[pd.DataFrame], Any], Any]:
    """(the transforms, the final estimator) of a scikit-learn Pipeline; (identity, the model) otherwise.

    `Pipeline.predict` (and `predict_proba`) is exactly its transforms, then the final estimator's:
    split, the scorer encodes one batch while its predict process runs the forest on the previous one."""
    from sklearn.pipeline import Pipeline

    if isinstance(pipeline, Pipeline) and len(pipeline.steps) > 1:
        return pipeline[:-1].transform, pipeline[-1]
    return _identity, pipeline


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


def _version_refusal(model_dir: Path, trained_with: str, current: str) -> ModelError:
    # Pickled estimators are only guaranteed to load in the version that wrote them.
    return ModelError(
        f"model in {model_dir} was trained with scikit-learn {trained_with}, this is {current}: "
        "retrain it (`python -m scorer train` for the examples) or install the matching scikit-learn"
    )


def load(model_dir: Path) -> LoadedModel:
    """Load model.joblib, refusing one that this scikit-learn cannot be trusted to read: the version
    metadata.json names, or (without metadata) the one scikit-learn recorded in the pickle."""
    import joblib
    import sklearn
    from sklearn.exceptions import InconsistentVersionWarning

    model_dir = Path(model_dir)
    model_path, metadata_path = model_dir / MODEL_FILE, model_dir / METADATA_FILE
    if not model_path.exists():
        raise ModelError(
            f"no {MODEL_FILE} in {model_dir}: run `python -m scorer train` for an example model, or save "
            "your fitted scikit-learn model there with joblib.dump (or set MODEL_DIR / --model-dir)"
        )
    metadata: dict[str, Any] = {}
    if metadata_path.exists():
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot read {metadata_path} ({exc}): fix or delete it (it is optional)"
            ) from None
        if not isinstance(metadata, dict):
            raise ModelError(
                f"{metadata_path} must hold a JSON object: fix or delete it (it is optional)"
            )
    trained_with = (metadata.get("libraries") or {}).get("scikit-learn")
    if trained_with and trained_with != sklearn.__version__:
        raise _version_refusal(model_dir, trained_with, sklearn.__version__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            pipeline = joblib.load(model_path)
        except Exception as exc:  # noqa: BLE001 - unpickling runs arbitrary code: any error means unusable
            raise ModelError(f"cannot load {model_path}: {type(exc).__name__}: {exc}") from None
    for warning in caught:
        if issubclass(warning.category, InconsistentVersionWarning):
            raise _version_refusal(
                model_dir, warning.message.original_sklearn_version, sklearn.__version__
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if not hasattr(pipeline, "predict"):
        raise ModelError(
            f"{model_path} holds a {type(pipeline).__name__}, not a fitted estimator with predict()"
        )
    return LoadedModel(
        pipeline,
        {**metadata, "model_version": metadata.get("model_version") or model_version(model_path)},
    )


def check_against_schema(model: LoadedModel, schema: Schema) -> tuple | None:
    """The model's classes (None for a regressor) once its task and classes fit the schema;
    ModelError naming what to change otherwise. The classes are matched by their text
    (`category_text`): the scorer maps the model's order onto the schema's, never by position."""
    classes = model.classes
    where = schema.source
    if not schema.classification:
        if classes is not None:
            raise ModelError(
                f"the model is a classifier (classes {list(classes)[:10]}) but {where} says task: "
                "regression: set task: classification and its classes"
            )
        return None
    if classes is None:
        raise ModelError(
            f"{where} says task: classification but the model has no classes_ (a regressor?): "
            "set task: regression, or use the fitted classifier"
        )
    texts = [category_text(c) for c in classes]
    unknown = [t for t in texts if t not in schema.class_texts]
    absent = [t for t in schema.class_texts if t not in texts]
    if unknown or absent:
        raise ModelError(
            f"the model's classes {texts} are not {where}'s classes {list(schema.class_texts)}"
            f" ({'the schema lacks ' + repr(unknown[0]) if unknown else 'the model never predicts ' + repr(absent[0])})"
            ": make the schema's classes the model's"
        )
    if schema.messages.carries_probabilities and not model.has_probabilities:
        raise ModelError(
            f"{where} sets messages.probabilities but the model has no predict_proba: remove "
            "messages.probabilities from the schema, or use a classifier with predict_proba"
        )
    return classes


def load_reference(model_dir: Path) -> pd.DataFrame:
    """The held-out rows of MODEL_DIR/reference.csv, checked against its schema.yaml."""
    model_dir = Path(model_dir)
    return read_reference(model_dir / REFERENCE_FILE, load_model_schema(model_dir))
