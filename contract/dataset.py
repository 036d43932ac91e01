"""The diamonds data and the one train/held-out split every service uses.

seaborn caches datasets in the folder named by SEABORN_DATA; with internet access an empty
cache is filled by download, otherwise SEABORN_DATA must point at a folder with diamonds.csv.
"""
from __future__ import annotations

import pandas as pd

from contract.records import CATEGORICAL_FEATURES, FEATURE_COLUMNS

HOLDOUT_FRACTION = 0.2
SPLIT_SEED = 42


def load_diamonds() -> pd.DataFrame:
    """Features and price, categoricals as plain strings."""
    import seaborn as sns

    try:
        frame = sns.load_dataset("diamonds")
    except OSError as exc:  # URLError is an OSError: no cache and no internet
        raise RuntimeError(
            "cannot load seaborn's diamonds dataset: set SEABORN_DATA to a folder holding diamonds.csv "
            f"or allow the download ({exc})"
        ) from exc
    frame = frame[list(FEATURE_COLUMNS) + ["price"]].copy()
    for column in CATEGORICAL_FEATURES:
        frame[column] = frame[column].astype(str)
    return frame


def split_holdout(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tutorial's 80/20 split with random_state=42: (train, held-out)."""
    from sklearn.model_selection import train_test_split

    train, holdout = train_test_split(frame, test_size=HOLDOUT_FRACTION, random_state=SPLIT_SEED)
    return train, holdout
