"""An inference log and its reference as another team's tooling writes them, generated in code.

Nothing of our scorer: the other team's model wrote `y_pred` (and a binary classifier's
`y_pred_proba`, the probability of the positive class) beside the inputs; classes are floats
(0.0/1.0); ids are strings; event times are text with a space ("2018-10-30 18:00:00.000"),
5 to 10 minutes apart; field names are the reference's column names. Labels come as
`{id, ts, <target>}`.

    reference(task, rows, seed)         -> the held-out frame (CSV-ready)
    stream(task, rows, seed, scenario, onset) -> (predictions, labels): lists of JSON-ready dicts

Scenarios: "none"; "shift" (one input, `income`, x1.4 from onset: the model's output moves with
it, its accuracy does not); "flip" (labels of 30% of records flipped, or a regressor's target x1.3:
the inputs as drawn, the accuracy drops).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west"]
EMPLOYMENT = ["salaried", "self-employed", "retired"]
START = dt.datetime(2018, 10, 30, 18, 0, 0)
TARGETS = {"classification": "repaid", "regression": "amount"}
SHIFTED = "income"


def _inputs(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "income": np.round(rng.gamma(4.0, 12_000.0, rows), 2),
            "age": rng.integers(21, 80, rows),  # an integer with many values: numeric
            "region": rng.choice(REGIONS, rows, p=[0.4, 0.3, 0.2, 0.1]),
            "employment": rng.choice(EMPLOYMENT, rows, p=[0.7, 0.2, 0.1]),
            "debt_ratio": np.round(rng.beta(2.0, 5.0, rows), 4),
        }
    )


def _score(inputs: pd.DataFrame) -> np.ndarray:
    region = (
        inputs["region"].map({"north": 0.3, "south": 0.0, "east": -0.2, "west": -0.5}).to_numpy()
    )
    employment = (
        inputs["employment"]
        .map({"salaried": 0.4, "self-employed": -0.3, "retired": 0.1})
        .to_numpy()
    )
    return (
        0.00004 * (inputs["income"].to_numpy() - 48_000)
        - 4.0 * (inputs["debt_ratio"].to_numpy() - 0.29)
        + 0.01 * (inputs["age"].to_numpy() - 50)
        + region
        + employment
        + 0.8
    )


def _frame(task: str, rows: int, seed: int, scenario: str = "none", onset: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = _inputs(rows, rng)
    after = np.arange(rows) >= onset
    if scenario == "shift":
        frame.loc[after, SHIFTED] = np.round(frame.loc[after, SHIFTED] * 1.4, 2)
    score = _score(frame)
    if task == "classification":
        proba = 1.0 / (
            1.0 + np.exp(-score)
        )  # a calibrated model: labels drawn with its probabilities
        labels = (rng.random(rows) < proba).astype(float)
        if scenario == "flip":
            flipped = after & (rng.random(rows) < 0.3)
            labels[flipped] = 1.0 - labels[flipped]
        frame["repaid"] = labels
        frame["y_pred"] = (proba >= 0.5).astype(float)
        frame["y_pred_proba"] = np.round(proba, 6)
    else:
        prediction = 10_000.0 + 4_000.0 * score
        amount = prediction + rng.normal(0.0, 1_500.0, rows)
        if scenario == "flip":
            amount[after] *= 1.3
        frame["amount"] = np.round(amount, 2)
        frame["y_pred"] = np.round(prediction, 2)
    minutes = np.cumsum(rng.uniform(5.0, 10.0, rows))
    frame.insert(0, "loan_id", [f"L{seed:02d}-{i:06d}" for i in range(rows)])
    frame.insert(
        1,
        "event_time",
        [
            (START + dt.timedelta(minutes=float(m))).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            for m in minutes
        ],
    )
    return frame


def reference(task: str, rows: int = 4000, seed: int = 1) -> pd.DataFrame:
    """Held-out rows with ids, text event times, the inputs, the target and the model's outputs."""
    return _frame(task, rows, seed)


def stream(
    task: str, rows: int, seed: int, scenario: str = "none", onset: int = 0
) -> tuple[list[dict], list[dict]]:
    """(prediction messages, label messages) of the log: one flat object per prediction, named as the
    reference's columns, and {loan_id, event_time, <target>} per label."""
    frame = _frame(task, rows, seed, scenario, onset)
    target = TARGETS[task]
    records = frame.to_dict("records")
    predictions = [{k: _native(v) for k, v in r.items() if k != target} for r in records]
    labels = [
        {"loan_id": r["loan_id"], "event_time": r["event_time"], target: _native(r[target])}
        for r in records
    ]
    return predictions, labels


def _native(value):
    return value.item() if isinstance(value, np.generic) else value
