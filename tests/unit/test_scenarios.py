"""Drift scenarios are pure, seeded transforms that start exactly at the onset."""
from __future__ import annotations

import numpy as np
import pytest

from producer.scenarios import (
    NEW_CLARITY, SCENARIOS, bad_payload, bad_record_mask, carat_shift, cut_mix, gradual_carat, new_category,
    no_drift, price_inflation, validate_scenario,
)
from producer.simulate import SimulateConfig, generate_chunks
from contract.records import Rejection, decode_features

CHUNK = {
    "carat": np.array([0.3, 1.0, 1.51, 0.7]),
    "cut": np.array(["Ideal", "Good", "Fair", "Premium"], dtype=object),
    "clarity": np.array(["SI1"] * 4, dtype=object),
    "price": np.array([500, 5000, 9000, 2000]),
}
POSITIONS = np.array([8, 9, 10, 11])


def rng():
    return np.random.default_rng(1)


def test_carat_shift_scales_only_after_onset():
    np.testing.assert_array_equal(carat_shift(CHUNK, POSITIONS, 10, rng())["carat"], [0.3, 1.0, 1.66, 0.77])
    np.testing.assert_array_equal(CHUNK["carat"], [0.3, 1.0, 1.51, 0.7])  # input untouched


def test_gradual_carat_ramps_to_1_2_over_20000_records():
    out = gradual_carat(CHUNK, np.array([0, 10_000, 20_000, 40_000]), 0, rng())["carat"]
    np.testing.assert_array_equal(out, [0.3, 1.1, 1.81, 0.84])


def test_cut_mix_redraws_cut_after_onset_with_the_seed():
    np.testing.assert_array_equal(cut_mix(CHUNK, POSITIONS, 10, rng())["cut"], ["Ideal", "Good", "Very Good", "Ideal"])


def test_price_inflation_changes_labels_not_features():
    out = price_inflation(CHUNK, POSITIONS, 10, rng())
    np.testing.assert_array_equal(out["price"], [500, 5000, 10800, 2400])
    np.testing.assert_array_equal(out["carat"], CHUNK["carat"])


def test_new_category_hits_five_percent_after_onset():
    clarity = new_category({"clarity": np.array(["SI1"] * 20_000, dtype=object)}, np.arange(20_000), 10_000,
                           np.random.default_rng(3))["clarity"]
    assert (clarity[:10_000] == NEW_CLARITY).sum() == 0
    assert (clarity[10_000:] == NEW_CLARITY).sum() == 487  # 4.87% of 10,000


def test_bad_records_cover_every_reason_the_decoder_names():
    mask = bad_record_mask(np.arange(20_000), 10_000, 0.1, np.random.default_rng(0))
    assert mask[:10_000].sum() == 0 and mask[10_000:].sum() == 1001
    for position in range(6):
        reason, payload = bad_payload(position, f"r-{position}", 1)
        decoded = decode_features(payload)
        assert isinstance(decoded, Rejection) and decoded.reason == reason


def test_no_drift_is_identity_and_unknown_scenarios_are_refused():
    assert no_drift(CHUNK, POSITIONS, 0, rng()) is CHUNK
    assert set(SCENARIOS) == {"none", "carat-shift", "gradual-carat", "cut-mix", "price-inflation",
                              "new-category", "bad-records"}
    with pytest.raises(ValueError, match="unknown scenario 'drift': choose one of none, carat-shift"):
        validate_scenario("drift")


def test_same_seed_same_stream_and_count_is_exact():
    source = {"carat": np.arange(100) / 10, "price": np.arange(100)}
    config = SimulateConfig(count=2500, seed=7, scenario="none")
    first = [c["carat"] for _, c, _ in generate_chunks(source, config)]
    second = [c["carat"] for _, c, _ in generate_chunks(source, config)]
    assert [len(c) for c in first] == [1000, 1000, 500]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = next(generate_chunks(source, SimulateConfig(count=10, seed=8)))[1]["carat"]
    assert not np.array_equal(other, first[0][:10])


@pytest.mark.parametrize("kwargs, message", [
    ({"scenario": "nope"}, "unknown scenario"), ({"count": -1}, "--count"), ({"rate": -5}, "--rate"),
    ({"label_delay": -1}, "--label-delay"), ({"bad_share": 2}, "--bad-share"),
])
def test_bad_configuration_says_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulateConfig(**kwargs)
