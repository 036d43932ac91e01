"""Drift scenarios: pure, seeded transforms of a chunk of simulated records.

A chunk is a dict of column arrays (carat, cut, color, clarity, depth, table, price) plus the
stream positions of its records; a scenario changes only records at positions >= onset.
Every transform takes its randomness from the `rng` it is given, so a seed fixes the stream.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Chunk = dict[str, np.ndarray]  # column -> values, all the same length
Transform = Callable[[Chunk, np.ndarray, int, np.random.Generator], Chunk]

# cut-mix: the reference has Ideal 40%, Premium 26%, Very Good 22%, Good 9%, Fair 3%;
# after onset every record's cut is redrawn from this flatter mix.
CUT_MIX = {"Fair": 0.15, "Good": 0.25, "Very Good": 0.25, "Premium": 0.20, "Ideal": 0.15}
GRADUAL_RAMP_RECORDS = 20_000
NEW_CLARITY = "I2"  # a real grade the training data never had
NEW_CATEGORY_SHARE = 0.05


def _after(positions: np.ndarray, onset: int) -> np.ndarray:
    return positions >= onset


def no_drift(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    return chunk


def carat_shift(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    """carat x1.1 from onset on."""
    carat = chunk["carat"].copy()
    drifted = _after(positions, onset)
    carat[drifted] = np.round(carat[drifted] * 1.1, 2)
    return {**chunk, "carat": carat}


def gradual_carat(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    """carat scaled by a factor ramping linearly from 1 at onset to 1.2 after 20,000 records."""
    progress = np.clip((positions - onset) / GRADUAL_RAMP_RECORDS, 0.0, 1.0)
    return {**chunk, "carat": np.round(chunk["carat"] * (1.0 + 0.2 * progress), 2)}


def cut_mix(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    """cut redrawn from CUT_MIX after onset (other columns unchanged)."""
    drifted = _after(positions, onset)
    cut = chunk["cut"].copy()
    names = np.array(list(CUT_MIX), dtype=object)
    cut[drifted] = rng.choice(names, size=int(drifted.sum()), p=list(CUT_MIX.values()))
    return {**chunk, "cut": cut}


def price_inflation(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    """Labels x1.2 after onset, features unchanged: concept drift only."""
    price = chunk["price"].astype(float)
    drifted = _after(positions, onset)
    price[drifted] = np.round(price[drifted] * 1.2)
    return {**chunk, "price": price}


def new_category(chunk: Chunk, positions: np.ndarray, onset: int, rng: np.random.Generator) -> Chunk:
    """A clarity value never seen in training in 5% of records after onset."""
    clarity = chunk["clarity"].copy()
    hit = _after(positions, onset) & (rng.random(len(positions)) < NEW_CATEGORY_SHARE)
    clarity[hit] = NEW_CLARITY
    return {**chunk, "clarity": clarity}


SCENARIOS: dict[str, Transform] = {
    "none": no_drift,
    "carat-shift": carat_shift,
    "gradual-carat": gradual_carat,
    "cut-mix": cut_mix,
    "price-inflation": price_inflation,
    "new-category": new_category,
    "bad-records": no_drift,  # its records are replaced at encoding time: see bad_payload
}

# One invalid payload per reason the decoder names; bad-records cycles through them.
BAD_PAYLOADS: tuple[tuple[str, Callable[[str, int], bytes]], ...] = (
    ("not_json", lambda rid, ts: b"{not json" + rid.encode()),
    ("missing_field", lambda rid, ts: f'{{"id":"{rid}","ts":{ts},"carat":1.0}}'.encode()),
    ("wrong_type", lambda rid, ts: f'{{"id":"{rid}","ts":{ts},"carat":"heavy","cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}}'.encode()),
    ("not_finite", lambda rid, ts: f'{{"id":"{rid}","ts":{ts},"carat":NaN,"cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}}'.encode()),
    ("out_of_range", lambda rid, ts: f'{{"id":"{rid}","ts":{ts},"carat":-1.0,"cut":"Ideal","color":"E","clarity":"SI1","depth":61.0,"table":55.0}}'.encode()),
    ("oversize", lambda rid, ts: (f'{{"id":"{rid}","ts":{ts},"pad":"' + "x" * 9000 + '"}').encode()),
)


def bad_record_mask(positions: np.ndarray, onset: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which records of a chunk become invalid payloads (a `share` of those after onset)."""
    return _after(positions, onset) & (rng.random(len(positions)) < share)


def bad_payload(position: int, record_id: str, ts: int) -> tuple[str, bytes]:
    """(reason the decoder will give, payload) for the record at this stream position."""
    reason, make = BAD_PAYLOADS[position % len(BAD_PAYLOADS)]
    return reason, make(record_id, ts)


def validate_scenario(name: str) -> Transform:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]
