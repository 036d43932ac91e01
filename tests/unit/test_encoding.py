"""The scorer's fast encoder: scikit-learn's transform, bit for bit, or scikit-learn's own transform."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from contract.artifacts import load_model_schema
from scorer.encoding import UNSEEN_TEXT, compile_transform, difference, with_unseen_values
from scorer.model import load, load_reference


def frame_and_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list]]:
    """A frame as the scorer builds one from decoded records (native values), and its columns as lists."""
    columns = {name: frame[name].tolist() for name in frame.columns}
    return pd.DataFrame(columns), columns


def known_categories(model_dir) -> dict[str, list]:
    return {
        f.name: list(f.categories) for f in load_model_schema(model_dir).features if not f.numeric
    }


def assert_same_bits(encoder, transforms, frame: pd.DataFrame) -> None:
    frame, columns = frame_and_columns(frame)
    assert difference(encoder(frame, columns), transforms.transform(frame)) == ""


@pytest.mark.parametrize("example", ["diamonds", "affairs"])
def test_the_examples_encode_fast_and_exactly_as_scikit_learn_on_any_batch(
    example, model_dir, affairs_dir
):
    directory = model_dir if example == "diamonds" else affairs_dir
    model, known = load(directory), known_categories(directory)
    reference = load_reference(directory)[[f.name for f in load_model_schema(directory).features]]
    transforms = model.pipeline[:-1]
    encoder = compile_transform(transforms, frame_and_columns(reference.head(2000))[0], known)
    assert encoder.fast is not None, encoder.reason
    rng = np.random.default_rng(7)
    for size in (1, 2, 31, 500):
        batch = reference.iloc[rng.integers(0, len(reference), size)].reset_index(drop=True)
        for (
            name
        ) in known:  # some records with a category the model never saw: a row of zeros in its block
            batch.loc[rng.random(size) < 0.2, name] = UNSEEN_TEXT
        assert_same_bits(encoder, transforms, batch)
    # ... and so the model's predictions are the same bits too.
    frame, columns = frame_and_columns(reference.tail(300).reset_index(drop=True))
    final = model.pipeline[-1]
    assert np.array_equal(final.predict(encoder(frame, columns)), model.pipeline.predict(frame))


def test_the_diamonds_encoding_is_the_same_sparse_matrix_entry_for_entry(model_dir):
    model = load(model_dir)
    frame, columns = frame_and_columns(
        load_reference(model_dir).head(200)[["carat", "cut", "color", "clarity", "depth", "table"]]
    )
    encoder = compile_transform(model.pipeline[:-1], frame, known_categories(model_dir))
    ours, theirs = encoder(frame, columns), model.pipeline[:-1].transform(frame)
    assert sparse.issparse(ours) and type(ours) is type(theirs)
    assert np.array_equal(ours.indptr, theirs.indptr) and np.array_equal(
        ours.indices, theirs.indices
    )
    assert ours.data.tobytes() == theirs.data.tobytes()


def mixed_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.normal(3, 2, rows).tolist(),
            "weight": rng.exponential(5, rows).tolist(),
            "colour": rng.choice(["red", "green", "blue"], rows).tolist(),
            "floor": rng.choice([0, 1, 2, 5], rows).tolist(),
        }
    )


def fitted(preprocess: ColumnTransformer, frame: pd.DataFrame) -> Pipeline:
    target = frame["size"] * 2 + frame["floor"]
    return Pipeline(
        [("preprocess", preprocess), ("forest", RandomForestRegressor(5, random_state=0))]
    ).fit(frame, target)


KNOWN = {"colour": ["red", "green", "blue"], "floor": [0, 1, 2, 5]}


@pytest.mark.parametrize(
    "preprocess",
    [
        ColumnTransformer(
            [
                ("n", StandardScaler(with_mean=False), ["size"]),
                ("c", OneHotEncoder(handle_unknown="ignore"), ["colour", "floor"]),
            ],
            remainder="passthrough",
        ),
        ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [2, 3]),
                ("n", StandardScaler(), [0, 1]),
            ],
            sparse_threshold=0,
        ),
        ColumnTransformer(
            [
                ("c", OneHotEncoder(handle_unknown="infrequent_if_exist"), ["floor"]),
                ("gone", "drop", ["colour"]),
                ("n", "passthrough", ["weight", "size"]),
            ]
        ),
    ],
    ids=[
        "sparse, scaled without mean, remainder",
        "dense, positional columns",
        "dropped column, passthrough",
    ],
)
def test_column_transformers_of_the_common_encoders_are_reproduced(preprocess):
    frame = mixed_frame()
    pipeline = fitted(preprocess, frame)
    encoder = compile_transform(pipeline[:-1], frame, KNOWN)
    assert encoder.fast is not None, encoder.reason
    batch = mixed_frame(50, seed=1)
    batch.loc[::7, "colour"] = "purple"
    batch.loc[::5, "floor"] = 9  # integer categories unseen in training too
    assert_same_bits(encoder, pipeline[:-1], batch)


@pytest.mark.parametrize(
    "preprocess, reason",
    [
        (
            ColumnTransformer([("c", OrdinalEncoder(), ["colour"])]),
            "a OrdinalEncoder in the ColumnTransformer",
        ),
        (
            ColumnTransformer([("c", OneHotEncoder(drop="first"), ["colour"])]),
            "drops or groups categories",
        ),
        (ColumnTransformer([("c", OneHotEncoder(), ["colour"])]), "handle_unknown='error'"),
        (ColumnTransformer([("n", SimpleImputer(), ["size"])]), "a SimpleImputer"),
        (ColumnTransformer([("n", StandardScaler(), slice(0, 2))]), "column selection slice(0, 2"),
        (ColumnTransformer([("c", "passthrough", ["colour"])]), "fast transform fails"),
    ],
)
def test_anything_else_keeps_scikit_learns_transform_and_says_why(preprocess, reason):
    frame = mixed_frame()
    pipeline = fitted(preprocess, frame) if reason != "fast transform fails" else None
    if pipeline is None:  # text passed through: a forest cannot fit it, the transforms alone can
        pipeline = Pipeline([("preprocess", preprocess)]).fit(frame)
        transforms = pipeline
    else:
        transforms = pipeline[:-1]
    encoder = compile_transform(transforms, frame, KNOWN)
    assert encoder.fast is None and reason in encoder.reason
    frame, columns = frame_and_columns(frame.head(20))
    expected = transforms.transform(frame)
    got = encoder(frame, columns)
    assert (
        (got != expected).nnz == 0 if sparse.issparse(expected) else np.array_equal(got, expected)
    )


def test_other_pipelines_and_outputs_keep_scikit_learns_transform():
    frame = mixed_frame()
    two_steps = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    ).fit(frame[["colour"]])
    assert (
        "not one ColumnTransformer" in compile_transform(two_steps, frame[["colour"]], KNOWN).reason
    )
    pandas_out = ColumnTransformer([("n", StandardScaler(), ["size"])]).set_output(
        transform="pandas"
    )
    pipeline = fitted(pandas_out, frame)
    assert "DataFrame" in compile_transform(pipeline[:-1], frame, KNOWN).reason
    scaled = fitted(ColumnTransformer([("n", StandardScaler(), ["size"])]), frame)
    assert "no reference rows" in compile_transform(scaled[:-1], None, KNOWN).reason


def test_the_check_sample_gets_one_unseen_value_per_categorical_column():
    sample = mixed_frame(3)
    checked = with_unseen_values(sample, KNOWN)
    assert len(checked) == 5
    assert checked["colour"].tolist()[3] == UNSEEN_TEXT and checked["floor"].tolist()[4] == 6
    assert with_unseen_values(sample, {"flag": [True, False]}).equals(
        sample
    )  # no bool outside both values
