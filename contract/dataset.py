"""The shipped examples' data, and the one train/held-out split every example uses.

diamonds: seaborn's diamonds (price regression). seaborn caches datasets in the folder named by
SEABORN_DATA; with internet access an empty cache is filled by download, otherwise SEABORN_DATA
must point at a folder with diamonds.csv.

affairs: statsmodels' `fair` (Fair 1978, extramarital affairs; 6,366 women surveyed by Redbook in
1974), shipped inside the statsmodels package: no download. Classification: did she have an affair.

Each loader returns the schema's feature columns (in the schema's order and types: numbers as
floats, categories as their kind) and its target, so training reads columns from the schema only.
"""

from __future__ import annotations

import pandas as pd

from contract.schema import SCHEMAS, Schema
from contract.schema_file import load_schema

HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 42

# The dataset's documented occupation codes (statsmodels.api.datasets.fair.DESCRLONG), one short
# name each: a string category reads better on a dashboard than "3".
OCCUPATIONS = {
    1: "student",
    2: "farming",  # farming, agriculture; semi-skilled or unskilled worker
    3: "white-collar",
    4: "skilled",  # teacher, counselor, social worker, nurse; artist, writer; technician, skilled worker
    5: "managerial",  # managerial, administrative, business
    6: "professional",  # professional with an advanced degree
}


def example_schema(name: str) -> Schema:
    return load_schema(SCHEMAS / f"{name}.yaml")


def load_diamonds(schema: Schema | None = None) -> pd.DataFrame:
    """Features and price, categoricals as plain strings."""
    import seaborn as sns

    schema = schema or example_schema("diamonds")
    try:
        frame = sns.load_dataset("diamonds")
    except OSError as exc:  # URLError is an OSError: no cache and no internet
        raise RuntimeError(
            "cannot load seaborn's diamonds dataset: set SEABORN_DATA to a folder holding diamonds.csv "
            f"or allow the download ({exc})"
        ) from exc
    frame = frame[[*schema.feature_names, schema.target]].copy()
    for column in schema.categorical:
        frame[column] = frame[column].astype(str)  # seaborn gives pandas categoricals
    return frame


def load_affairs(schema: Schema | None = None) -> pd.DataFrame:
    """The fair data as the affairs schema describes it: integer codes of the ratings, occupation
    names, and the target affair = "yes" when the time spent in affairs is above 0, else "no"."""
    import statsmodels.api as sm

    schema = schema or example_schema("affairs")
    data = sm.datasets.fair.load_pandas().data  # every column is float64 in the package
    frame = pd.DataFrame(index=data.index)
    for feature in schema.features:
        values = data[feature.name]
        if feature.numeric:
            frame[feature.name] = values.astype(float)
        elif feature.kind == "integer":
            frame[feature.name] = values.astype("int64")
        else:  # occupation codes -> names
            frame[feature.name] = values.astype("int64").map(OCCUPATIONS)
    frame[schema.target] = (data["affairs"] > 0).map({True: "yes", False: "no"})
    return frame


LOADERS = {"diamonds": load_diamonds, "affairs": load_affairs}


def split_holdout(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tutorial's 80/20 split with random_state=42: (train, held-out)."""
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(frame, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED)
    return train, holdout
