"""Drift scenarios are pure and seeded, start exactly at the onset, are named by column and checked
against the model's schema. Resampling scenarios (tilt, mix) draw real rows with weights, so every
(features, label) pair is the source's own; transforms edit features or labels in place. The
diamonds names are shorthands; invalid payloads come from the schema, one per reason the decoder names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from contract.artifacts import read_reference
from contract.decoders import check_record, verdict
from contract.rules import Rejection
from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema, parse_schema
from producer.__main__ import main
from producer.grammar import CUT_MIX, SHORTHANDS, ScenarioError, parse_scenario, scenario_help
from producer.invalid import bad_payload, invalid_payloads
from producer.scenarios import (
    NO_DRIFT,
    FlipLabels,
    NoDrift,
    Ramp,
    Redraw,
    Reweight,
    Scale,
    Tilt,
    Unseen,
    WeightedDraw,
    bad_record_mask,
    effective_rows,
    tilt_weights,
)
from producer.simulate import SimulateConfig, generate_chunks, source_columns
from tests.support import decoders_of

DIAMONDS = load_schema(DEFAULT_SCHEMA)

CHUNK = {
    "carat": np.array([0.3, 1.0, 1.51, 0.7]),
    "cut": np.array(["Ideal", "Good", "Fair", "Premium"], dtype=object),
    "clarity": np.array(["SI1"] * 4, dtype=object),
    "price": np.array([500, 5000, 9000, 2000]),
}
POSITIONS = np.array([8, 9, 10, 11])

# A classification model no diamonds code knows: ISO timestamps, its own field names, integer and
# string categories, one numeric feature with a range and one without.
CHURN = {
    "name": "churn",
    "task": "classification",
    "target": "churned",
    "classes": ["stay", "leave", "downgrade"],
    "prediction": "predicted",
    "features": [
        {"name": "tenure", "type": "numeric", "range": {"ge": 0, "le": 1000}},
        {"name": "spend", "type": "numeric"},
        {"name": "plan", "type": "categorical", "categories": ["basic", "plus", "pro"]},
        {"name": "region", "type": "categorical", "categories": [1, 2, 3]},
    ],
    "messages": {
        "id": "event_id",
        "timestamp": "event_time",
        "timestamp_format": "iso8601",
        "prediction": "predicted",
        "features": "inputs",
    },
    "labels": {"id": "event_id", "timestamp": "event_time", "target": "churned"},
}
CHURN_ROWS = 400


def churn_reference(rows: int = CHURN_ROWS) -> pd.DataFrame:
    """Seeded rows; `tenure` is unique per row, so a record's tenure names the row it was drawn from."""
    rng = np.random.default_rng(11)
    churned = rng.choice(["stay", "leave", "downgrade"], size=rows, p=[0.6, 0.3, 0.1])
    return pd.DataFrame(
        {
            "tenure": np.arange(rows) + 0.5,
            "spend": np.round(rng.gamma(2.0, 30.0, size=rows), 2),
            "plan": rng.choice(
                ["basic", "plus", "pro"], size=rows, p=[0.6, 0.35, 0.05]
            ),  # pro: the rare one
            "region": rng.integers(1, 4, size=rows),
            "churned": churned,
            "predicted": np.where(rng.random(rows) < 0.8, churned, "stay"),
        }
    )


def write_churn_model_dir(path: Path) -> Path:
    """A model dir the simulator can run on: schema.yaml and reference.csv (no model needed)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "schema.yaml").write_text(yaml.safe_dump(CHURN, sort_keys=False))
    churn_reference().to_csv(path / "reference.csv", index=False)
    return path


@pytest.fixture(scope="module")
def churn_dir(tmp_path_factory) -> Path:
    return write_churn_model_dir(tmp_path_factory.mktemp("churn"))


@pytest.fixture(scope="module")
def churn(churn_dir):
    return load_schema(churn_dir / "schema.yaml")


@pytest.fixture(scope="module")
def churn_source(churn_dir, churn):
    return source_columns(read_reference(churn_dir / "reference.csv", churn), churn)


def rng():
    return np.random.default_rng(1)


def run(spec, chunk=CHUNK, positions=POSITIONS, onset=10, schema=DIAMONDS, generator=None):
    return parse_scenario(spec, schema).transform(chunk, positions, onset, generator or rng())


# -- the edit-in-place forms: features changed, labels not ----------------------------------------
def test_scale_edits_carat_in_place_after_onset_and_keeps_the_labels():
    out = run("scale:carat:1.1")
    np.testing.assert_array_equal(
        out["carat"], [0.3, 1.0, 1.51 * 1.1, 0.7 * 1.1]
    )  # the product, unrounded
    np.testing.assert_array_equal(out["price"], CHUNK["price"])
    np.testing.assert_array_equal(CHUNK["carat"], [0.3, 1.0, 1.51, 0.7])  # input untouched
    assert parse_scenario("scale:carat:1.1", DIAMONDS).changes == "both"


def test_gradual_ramps_the_factor_over_its_records():
    out = run("gradual:carat:1.2", positions=np.array([0, 10_000, 20_000, 40_000]), onset=0)[
        "carat"
    ]
    np.testing.assert_allclose(out, [0.3, 1.1, 1.812, 0.84])
    short = run("gradual:carat:2:100", positions=np.array([0, 50, 100, 400]), onset=0)["carat"]
    np.testing.assert_allclose(short, [0.3, 1.5, 3.02, 1.4])
    assert parse_scenario("gradual:carat:1.2", DIAMONDS).transform == Ramp("carat", 0.2, 20_000)


def test_redraw_rewrites_cut_after_onset_with_the_seed():
    spec = "redraw:cut:" + ",".join(f"{k}={v}" for k, v in CUT_MIX.items())
    np.testing.assert_array_equal(
        run(spec)["cut"], ["Ideal", "Good", "Very Good", "Ideal"]
    )  # the old cut-mix draw
    assert parse_scenario(spec, DIAMONDS).changes == "both"


def test_price_inflation_changes_labels_not_features():
    out = run("price-inflation")
    np.testing.assert_array_equal(out["price"], [500, 5000, 10800, 2400])
    np.testing.assert_array_equal(out["carat"], CHUNK["carat"])
    assert parse_scenario("price-inflation", DIAMONDS).changes == "labels"


def test_new_category_is_i2_in_five_percent_after_onset():
    chunk = {"clarity": np.array(["SI1"] * 20_000, dtype=object)}
    for spec in ("new-category", "unseen:clarity:I2:0.05"):
        clarity = run(spec, chunk, np.arange(20_000), 10_000, generator=np.random.default_rng(3))[
            "clarity"
        ]
        assert (clarity[:10_000] == "I2").sum() == 0
        assert (clarity[10_000:] == "I2").sum() == 487  # 4.87% of 10,000


def test_every_shorthand_is_its_column_form_on_diamonds():
    assert parse_scenario("none", DIAMONDS) is NO_DRIFT and isinstance(NO_DRIFT.transform, NoDrift)
    assert NO_DRIFT.transform(CHUNK, POSITIONS, 0, rng()) is CHUNK and NO_DRIFT.resample is None
    carat_shift = parse_scenario("carat-shift", DIAMONDS)
    assert (carat_shift.resample, carat_shift.transform, carat_shift.changes) == (
        Tilt("carat", 0.8),
        NoDrift(),
        "inputs",
    )
    assert parse_scenario("gradual-carat", DIAMONDS).resample == Tilt("carat", 0.8, 20_000)
    cut_mix = parse_scenario("cut-mix", DIAMONDS)
    assert cut_mix.resample == Reweight(
        "cut", ("Fair", "Good", "Very Good", "Premium", "Ideal"), (0.15, 0.25, 0.25, 0.20, 0.15)
    )
    assert cut_mix.changes == "inputs" and cut_mix.transform == NoDrift()
    assert parse_scenario("price-inflation", DIAMONDS).transform == Scale("price", 1.2, 0)
    assert parse_scenario("new-category", DIAMONDS).transform == Unseen("clarity", "I2", 0.05)
    assert parse_scenario("new-category", DIAMONDS).changes == "both"
    bad = parse_scenario("bad-records", DIAMONDS)
    assert bad.bad_records and bad.changes == "payloads"
    assert set(SHORTHANDS) == {
        "carat-shift",
        "gradual-carat",
        "cut-mix",
        "price-inflation",
        "new-category",
    }


def test_help_names_what_every_scenario_changes():
    text = scenario_help()
    for line in (
        "tilt:COL:FACTOR[:RECORDS]     inputs    reference rows drawn with exponential-tilt weights",
        "mix:COL[:A=0.5,B=0.3,...]     inputs    reference rows drawn by categorical COL",
        "scale:COL:FACTOR              both      numeric feature COL x FACTOR, labels not changed",
        "redraw:COL[:A=0.5,B=0.3,...]  both      categorical COL rewritten",
        "unseen:COL:VALUE:SHARE        both",
        "labels:flip:SHARE             labels",
        "none                          nothing",
        "bad-records                   payloads",
        "inputs   = real reference rows drawn differently: the features move, every label is its row's own",
        "both     = features edited in place, labels not changed: so the input->label relation changes too",
        "carat-shift      tilt:carat:0.8          fewer big stones: data drift on carat, no concept drift",
        "gradual-carat    tilt:carat:0.8:20000",
        "price-inflation  labels:scale:1.2",
    ):
        assert line in text, text


# -- resampling: real rows drawn with weights --------------------------------------------------------
def weighted_ks(values: np.ndarray, weights: np.ndarray) -> float:
    """KS distance between the weighted and the plain empirical distribution of `values`."""
    order = np.argsort(values, kind="stable")
    ends = np.r_[
        np.flatnonzero(np.diff(values[order])), len(values) - 1
    ]  # the last row of each distinct value
    return float(np.abs(np.cumsum(weights[order])[ends] - (ends + 1) / len(values)).max())


def stream(source, spec, schema, count, onset, seed=5):
    """The whole simulated stream of a spec as one chunk of columns."""
    config = SimulateConfig(
        count=count, scenario=parse_scenario(spec, schema, source), onset=onset, seed=seed
    )
    chunks = [chunk for _, chunk, _ in generate_chunks(source, config)]
    return {c: np.concatenate([chunk[c] for chunk in chunks]) for c in chunks[0]}


def test_tilt_weights_give_the_target_mean_and_a_large_draw_reaches_it(churn, churn_source):
    spend = churn_source["spend"]
    for factor in (0.7, 0.9, 1.25):
        weights = tilt_weights(spend, factor)
        assert weights.sum() == pytest.approx(1.0) and (weights > 0).all()
        assert weights @ spend == pytest.approx(factor * spend.mean(), rel=1e-9)
        # exponential in the value: log-weights are a straight line in spend
        slope, intercept = np.polyfit(spend, np.log(weights), 1)
        np.testing.assert_allclose(np.log(weights), slope * spend + intercept, atol=1e-9)
        assert (slope > 0) == (factor > 1)
    drawn = stream(churn_source, "tilt:spend:1.25", churn, 200_000, 20_000)["spend"]
    assert drawn[:20_000].mean() == pytest.approx(
        spend.mean(), rel=0.02
    )  # before onset: uniform draws
    assert drawn[20_000:].mean() == pytest.approx(1.25 * spend.mean(), rel=0.01)


def test_resampled_records_are_source_rows_with_their_own_labels(churn, churn_source):
    rows = {
        tuple(row)
        for row in zip(*(churn_source[c].tolist() for c in (*churn.feature_names, "churned")))
    }
    none = stream(churn_source, "none", churn, 6000, 3000)
    for spec in ("tilt:spend:1.25", "tilt:tenure:0.6:1000", "mix:plan", "mix:region:1=0.7,2=0.3"):
        drawn = stream(churn_source, spec, churn, 6000, 3000)
        pairs = set(zip(*(drawn[c].tolist() for c in (*churn.feature_names, "churned"))))
        assert pairs <= rows, spec  # every (features, label) drawn is a row of the source
        for column in drawn:  # before the onset, the very records of the no-drift stream
            np.testing.assert_array_equal(drawn[column][:3000], none[column][:3000])
        assert not np.array_equal(drawn["tenure"][3000:], none["tenure"][3000:]), spec


def test_resampled_streams_are_seeded(churn, churn_source):
    first, again = (stream(churn_source, "mix:plan", churn, 3000, 1000, seed=4) for _ in range(2))
    other = stream(churn_source, "mix:plan", churn, 3000, 1000, seed=6)
    assert all(np.array_equal(first[c], again[c]) for c in first)
    assert not np.array_equal(first["tenure"], other["tenure"])


def test_a_gradual_tilt_ramps_the_share_of_weighted_draws():
    tilt = Tilt("x", 2.0, records=1000)
    np.testing.assert_array_equal(
        tilt.share(np.array([0, 99, 100, 350, 600, 1100, 5000]), 100), [0, 0, 0, 0.25, 0.5, 1, 1]
    )
    np.testing.assert_array_equal(Tilt("x", 2.0).share(np.array([99, 100, 5000]), 100), [0, 1, 1])
    # A draw whose weights sit on row 0 alone, over uniform picks that never are row 0: the share
    # of row 0 in each 1,000 records is the ramp's mean there.
    draw = WeightedDraw(Tilt("x", 2.0, records=4000), cdf=np.ones(50))
    positions = np.arange(6000)
    picked = draw.pick(
        np.random.default_rng(0).integers(1, 50, 6000), positions, 1000, np.random.default_rng(1)
    )
    shares = [(picked[k : k + 1000] == 0).mean() for k in range(0, 6000, 1000)]
    assert shares == [
        0.0,
        0.133,
        0.395,
        0.621,
        0.883,
        1.0,
    ]  # the ramp: 0, 0.125, 0.375, 0.625, 0.875, 1


def test_mix_draws_the_rows_so_the_category_shares_become_the_targets(churn, churn_source):
    uniform = stream(churn_source, "mix:plan", churn, 40_000, 10_000)["plan"]
    before = pd.Series(uniform[:10_000]).value_counts(normalize=True)
    after = pd.Series(uniform[10_000:]).value_counts(normalize=True)
    assert before["pro"] < 0.08 and before["basic"] > 0.5  # the reference's mix: pro the rare one
    np.testing.assert_allclose(after[["basic", "plus", "pro"]], [1 / 3] * 3, atol=0.01)
    weighted = stream(churn_source, "mix:region:1=0.25,3=0.75", churn, 40_000, 0)["region"]
    assert weighted.dtype == np.int64 and set(weighted.tolist()) == {1, 3}
    assert (weighted == 3).mean() == pytest.approx(0.75, abs=0.01)


def test_a_redraw_rewrites_uniformly_or_from_the_weights_given(churn, churn_source):
    chunk, positions = churn_chunk(churn_source, 20_000), np.arange(20_000)
    uniform = parse_scenario("redraw:plan", churn).transform(
        chunk, positions, 10_000, np.random.default_rng(2)
    )["plan"]
    np.testing.assert_array_equal(uniform[:10_000], chunk["plan"][:10_000])
    counts = pd.Series(uniform[10_000:]).value_counts().to_dict()
    assert counts == {"pro": 3372, "basic": 3358, "plus": 3270}  # the rare pro is now a third
    weighted = parse_scenario("redraw:region:1=0.25,3=0.75", churn).transform(
        chunk, positions, 0, np.random.default_rng(2)
    )
    assert weighted["region"].dtype == np.int64 and set(weighted["region"].tolist()) == {1, 3}
    assert (weighted["region"] == 3).sum() == 15_001
    assert parse_scenario("redraw:plan", churn).transform == Redraw(
        "plan", ("basic", "plus", "pro"), (1 / 3,) * 3
    )


def test_the_diamonds_shorthands_move_carat_as_measured(model_dir):
    """docs/scenarios.md's numbers: KS of carat and the model's MSE under each tilt of carat, on the
    diamonds reference (MSE ratio: weighted squared error over the plain mean)."""
    frame = read_reference(model_dir / "reference.csv", DIAMONDS)
    carat, squared = (
        frame["carat"].to_numpy(float),
        (frame["price"] - frame["prediction"]).to_numpy() ** 2,
    )
    measured = {}
    for factor in (0.8, 1.1, 1.2):
        weights = tilt_weights(carat, factor)
        measured[factor] = (
            round(weighted_ks(carat, weights), 3),
            round(weights @ squared / squared.mean(), 3),
            round(effective_rows(weights)),
        )
    assert measured == {
        0.8: (0.149, 0.48, 9645),
        1.1: (0.065, 1.315, 10490),
        1.2: (0.123, 1.652, 9639),
    }
    source = source_columns(frame, DIAMONDS)
    drawn = stream(source, "carat-shift", DIAMONDS, 100_000, 0)["carat"]
    assert drawn.mean() == pytest.approx(0.8 * carat.mean(), rel=0.01)
    cut = stream(source, "cut-mix", DIAMONDS, 100_000, 0)["cut"]
    shares = pd.Series(cut).value_counts(normalize=True)
    np.testing.assert_allclose([shares[k] for k in CUT_MIX], list(CUT_MIX.values()), atol=0.01)


def test_the_no_drift_and_label_streams_are_the_bytes_they_always_were(model_dir):
    """Seed 42 over the diamonds reference: digests from the code before resampling existed."""
    source = source_columns(read_reference(model_dir / "reference.csv", DIAMONDS), DIAMONDS)
    digests = {}
    for spec in (
        "none",
        "price-inflation",
        "new-category",
        "scale:carat:1.1",
        "redraw:cut",
        "bad-records",
    ):
        config = SimulateConfig(
            count=30_000, scenario=parse_scenario(spec, DIAMONDS, source), onset=10_000, seed=42
        )
        digest = hashlib.sha256()
        for _, chunk, bad in generate_chunks(source, config):
            for column in sorted(chunk):
                digest.update(repr(chunk[column].tolist()).encode())
            digest.update(bad.tobytes())
        digests[spec] = digest.hexdigest()[:16]
    assert digests == {
        "none": "83e96bc0de15bbae",
        "price-inflation": "408604ba3a21d73c",
        "new-category": "92e8dfe42905fe80",
        "scale:carat:1.1": "2ca27c73743baf5c",
        "redraw:cut": "7dd5f24f0cf65ff4",  # mix:cut before it became a resampling
        "bad-records": "bf95818e68d17ae0",
    }


# -- column forms on a classification model --------------------------------------------------------
def churn_chunk(churn_source, rows: int, seed: int = 0):
    picked = np.random.default_rng(seed).integers(0, CHURN_ROWS, size=rows)
    return {c: v[picked] for c, v in churn_source.items()}


def test_labels_flip_changes_exactly_the_seeded_share_to_another_class(churn, churn_source):
    chunk, positions = churn_chunk(churn_source, 20_000), np.arange(20_000)
    scenario = parse_scenario("labels:flip:0.2", churn)
    assert scenario.changes == "labels" and scenario.transform == FlipLabels(
        "churned", ("stay", "leave", "downgrade"), 0.2
    )
    out = scenario.transform(chunk, positions, 10_000, np.random.default_rng(4))
    changed = out["churned"] != chunk["churned"]
    expected = (positions >= 10_000) & (
        np.random.default_rng(4).random(20_000) < 0.2
    )  # the transform's own draw
    np.testing.assert_array_equal(changed, expected)
    assert changed.sum() == 2042  # 20.42% of the 10,000 after onset; none before
    assert set(out["churned"][changed]) == {"stay", "leave", "downgrade"}
    for column in churn.feature_names:  # concept drift only
        np.testing.assert_array_equal(out[column], chunk[column])
    # A flipped label moves to each of the other classes about equally often.
    was_stay = changed & (chunk["churned"] == "stay")
    assert 0.45 < (out["churned"][was_stay] == "leave").mean() < 0.55
    again = scenario.transform(chunk, positions, 10_000, np.random.default_rng(4))["churned"]
    np.testing.assert_array_equal(again, out["churned"])  # seeded


def test_unseen_puts_a_new_category_of_the_columns_kind_in_its_share(churn, churn_source):
    chunk, positions = churn_chunk(churn_source, 20_000), np.arange(20_000)
    plan = parse_scenario("unseen:plan:enterprise:0.1", churn).transform(
        chunk, positions, 10_000, np.random.default_rng(5)
    )
    assert (plan["plan"][:10_000] == "enterprise").sum() == 0 and (
        plan["plan"][10_000:] == "enterprise"
    ).sum() == 992
    region = parse_scenario("unseen:region:9:0.1", churn).transform(
        chunk, positions, 0, np.random.default_rng(5)
    )["region"]
    assert region.dtype == np.int64 and (region == 9).sum() == 2027
    url = parse_scenario("unseen:plan:http://x:0.5", churn).transform  # VALUE may hold colons
    assert url == Unseen("plan", "http://x", 0.5)


def test_shift_and_scale_change_one_numeric_column(churn, churn_source):
    chunk, positions = churn_chunk(churn_source, 10), np.arange(10)
    shifted = parse_scenario("shift:spend:+5", churn).transform(chunk, positions, 5, rng())
    np.testing.assert_allclose(
        shifted["spend"], chunk["spend"] + np.where(positions >= 5, 5.0, 0.0)
    )
    np.testing.assert_array_equal(shifted["tenure"], chunk["tenure"])
    down = parse_scenario("shift:spend:-2.5", churn).transform(chunk, positions, 0, rng())["spend"]
    np.testing.assert_allclose(down, chunk["spend"] - 2.5)
    scaled = parse_scenario("scale:tenure:0.5", churn).transform(chunk, positions, 0, rng())[
        "tenure"
    ]
    np.testing.assert_array_equal(scaled, chunk["tenure"] * 0.5)


# -- validation: one line naming the scenario and what to change -----------------------------------
@pytest.mark.parametrize(
    "schema_name, spec, message",
    [
        (
            "diamonds",
            "drift",
            "unknown scenario 'drift': use one of none, scale:COL:FACTOR, shift:COL:+DELTA",
        ),
        (
            "diamonds",
            "scale:price:1.1",
            "scenario 'scale:price:1.1': diamonds has no feature 'price': use one of carat, cut",
        ),
        (
            "diamonds",
            "scale:cut:1.1",
            "scenario 'scale:cut:1.1': cut is categorical; scale works on numeric features "
            "(carat, depth, table): use mix:cut, redraw:cut or unseen:cut:VALUE:SHARE",
        ),
        (
            "diamonds",
            "mix:carat",
            "carat is numeric; mix works on categorical features (cut, color, clarity): use "
            "tilt:carat:FACTOR, scale:carat:FACTOR",
        ),
        ("diamonds", "tilt:cut:0.8", "cut is categorical; tilt works on numeric features"),
        ("diamonds", "tilt:carat:0", "FACTOR must be above 0"),
        ("diamonds", "tilt:carat:0.8:soon", "RECORDS 'soon' must be a whole number"),
        ("diamonds", "tilt:carat", "write tilt:COL:FACTOR[:RECORDS]"),
        ("diamonds", "redraw:cut:Ideal=0.5", "the weights sum to 0.5: make them sum to 1"),
        (
            "diamonds",
            "labels:flip:0.2",
            "diamonds is a regression model: flip is for classes, use labels:scale:FACTOR",
        ),
        (
            "churn",
            "labels:scale:1.2",
            "churn is a classifier: its labels are classes, use labels:flip:SHARE",
        ),
        ("diamonds", "scale:carat:abc", "FACTOR 'abc' is not a number"),
        ("diamonds", "scale:carat:-1", "FACTOR must be above 0 (1.1 is +10%), not '-1'"),
        ("diamonds", "scale:carat:nan", "FACTOR must be a finite number"),
        ("diamonds", "scale:carat", "write scale:COL:FACTOR"),
        ("diamonds", "shift:depth:up", "DELTA 'up' is not a number"),
        ("diamonds", "gradual:carat:1.2:0", "RECORDS must be at least 1"),
        ("diamonds", "gradual:carat:1.2:many", "RECORDS 'many' must be a whole number"),
        ("diamonds", "unseen:clarity:I2:1.5", "SHARE must be a fraction in (0, 1]"),
        (
            "diamonds",
            "unseen:clarity:SI1:0.1",
            "'SI1' is a known category of clarity: choose a value the model never saw",
        ),
        ("diamonds", "unseen:clarity:0.1", "write unseen:COL:VALUE:SHARE"),
        ("diamonds", "mix:cut:Ideal=0.5", "the weights sum to 0.5: make them sum to 1"),
        (
            "diamonds",
            "mix:cut:Perfect=1",
            "'Perfect' is not a known category of cut (Fair, Good, Very Good, Premium, Ideal); "
            "for a new one use unseen:cut:Perfect:SHARE",
        ),
        ("diamonds", "mix:cut:Ideal", "weights are CATEGORY=WEIGHT separated by commas"),
        ("diamonds", "labels:flip", "write labels:flip:SHARE"),
        (
            "churn",
            "carat-shift",
            "scenario 'carat-shift' (= tilt:carat:0.8): churn has no feature 'carat'",
        ),
        (
            "churn",
            "unseen:region:north:0.1",
            "region's categories are integers: VALUE 'north' must be one too",
        ),
    ],
)
def test_a_scenario_the_schema_cannot_run_says_what_to_change(schema_name, spec, message, churn):
    schema = DIAMONDS if schema_name == "diamonds" else churn
    with pytest.raises(ScenarioError) as error:
        parse_scenario(spec, schema)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_a_drift_past_a_features_range_is_refused_when_the_reference_is_known(churn, churn_source):
    with pytest.raises(
        ScenarioError, match=r"takes tenure to 1997.5, outside its valid range \[0, 1000\]"
    ):
        parse_scenario("scale:tenure:5", churn, churn_source)
    with pytest.raises(ScenarioError, match=r"takes tenure to -9.5, outside"):
        parse_scenario("shift:tenure:-10", churn, churn_source)
    assert parse_scenario("scale:tenure:2", churn, churn_source).transform == Scale("tenure", 2.0)
    assert parse_scenario("shift:spend:+1e6", churn, churn_source)  # no range: any shift


def test_a_resampling_the_reference_cannot_give_is_refused(churn, churn_source):
    # tenure is 0.5 .. 399.5 (mean 200): no weights of those rows have mean 3 x 200
    with pytest.raises(ScenarioError) as error:
        parse_scenario("tilt:tenure:3", churn, churn_source)
    assert str(error.value) == (
        "scenario 'tilt:tenure:3': tenure's reference values span 0.5 to 399.5 (mean 200): no draw "
        "of them has mean 3 x 200 = 600; choose FACTOR between 0.0025 and 2"
    )
    # reachable, but only by leaning on the few largest rows: the stream would replay them
    with pytest.raises(
        ScenarioError,
        match=r"'tilt:tenure:1.9': the weights rest on about \d+ of the reference's 400 rows "
        r"\(at least 100 needed",
    ):
        parse_scenario("tilt:tenure:1.9", churn, churn_source)
    assert effective_rows(Tilt("tenure", 1.5).weights(churn_source)) > 100
    thin = {
        **churn_source,
        "plan": np.where(churn_source["plan"] == "pro", "plus", churn_source["plan"]),
    }
    with pytest.raises(ScenarioError) as error:
        parse_scenario("mix:plan:pro=0.5,basic=0.5", churn, thin)
    assert str(error.value) == (
        "scenario 'mix:plan:pro=0.5,basic=0.5': the reference has no plan row of pro to draw: "
        "give it weight 0, or use redraw:plan:... to write it in place"
    )
    assert parse_scenario("mix:plan", churn, thin).resample.weights(thin)[
        thin["plan"] == "plus"
    ].sum() == pytest.approx(0.5)
    constant = {**churn_source, "spend": np.full(CHURN_ROWS, 7.0)}
    with pytest.raises(
        ScenarioError,
        match="spend is constant \\(7\\) in the reference: no reweighting moves its mean",
    ):
        parse_scenario("tilt:spend:1.1", churn, constant)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scenario", "scale:plan:1.1"], "error: scenario 'scale:plan:1.1': plan is categorical"),
        (
            ["--scenario", "labels:scale:2"],
            "error: scenario 'labels:scale:2': churn is a classifier",
        ),
        (
            ["--scenario", "tilt:tenure:3"],
            "error: scenario 'tilt:tenure:3': tenure's reference values span 0.5 to 399.5",
        ),
        (["--rate", "-5"], "error: --rate must be >= 0"),
    ],
)
def test_the_cli_stops_on_a_bad_scenario_before_it_waits_for_a_broker(
    args, message, churn_dir, capsys
):
    assert main(["simulate", "--model-dir", str(churn_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


def test_the_cli_stops_on_a_reference_that_does_not_fit_the_schema(churn_dir, tmp_path, capsys):
    (tmp_path / "schema.yaml").write_bytes((churn_dir / "schema.yaml").read_bytes())
    churn_reference().drop(columns="plan").to_csv(tmp_path / "reference.csv", index=False)
    assert main(["simulate", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {tmp_path / 'reference.csv'}: no column 'plan'")
        and len(err.splitlines()) == 1
    ), err


# -- the stream ------------------------------------------------------------------------------------
def test_same_seed_same_stream_and_count_is_exact():
    source = {"carat": np.arange(100) / 10, "price": np.arange(100)}
    config = SimulateConfig(count=2500, seed=7)
    first = [c["carat"] for _, c, _ in generate_chunks(source, config)]
    second = [c["carat"] for _, c, _ in generate_chunks(source, config)]
    assert [len(c) for c in first] == [1000, 1000, 500]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = next(generate_chunks(source, SimulateConfig(count=10, seed=8)))[1]["carat"]
    assert not np.array_equal(other, first[0][:10])


def test_source_columns_hold_the_schemas_native_types(churn, churn_source):
    assert {c: v.dtype.kind for c, v in churn_source.items()} == {
        "tenure": "f",
        "spend": "f",
        "plan": "O",
        "region": "i",
        "churned": "O",
    }
    record = churn.feature_record(
        "sim-0", 1_700_000_000_000, {c: churn_source[c].tolist()[0] for c in churn.feature_names}
    )
    assert list(record) == ["event_id", "event_time", "tenure", "spend", "plan", "region"]
    assert record["event_time"] == "2023-11-14T22:13:20.000Z" and type(record["region"]) is int


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"count": -1}, "--count"),
        ({"rate": -5}, "--rate"),
        ({"onset": -1}, "--onset"),
        ({"label_delay": -1}, "--label-delay"),
        ({"bad_share": 2}, "--bad-share"),
    ],
)
def test_bad_configuration_says_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulateConfig(**kwargs)


# -- invalid payloads from the schema --------------------------------------------------------------
EVERY_REASON = ["not_json", "missing_field", "wrong_type", "not_finite", "out_of_range", "oversize"]


def test_bad_records_cover_every_reason_the_decoder_names_for_diamonds():
    mask = bad_record_mask(np.arange(20_000), 10_000, 0.1, np.random.default_rng(0))
    assert mask[:10_000].sum() == 0 and mask[10_000:].sum() == 1001
    payloads = invalid_payloads(DIAMONDS)
    record = DIAMONDS.feature_record(
        "r-0",
        1,
        {
            "carat": 0.7,
            "cut": "Ideal",
            "color": "E",
            "clarity": "SI1",
            "depth": 61.5,
            "table": 55.0,
        },
    )
    assert not isinstance(
        verdict(check_record, decoders_of(DIAMONDS), record, parsed=True), Rejection
    )  # the record they break
    reasons = []
    for position in range(12):
        reason, payload = bad_payload(payloads, position, record)
        rejection = verdict(check_record, decoders_of(DIAMONDS), payload)
        assert isinstance(rejection, Rejection) and rejection.reason == reason, (reason, rejection)
        reasons.append(reason)
    assert reasons == EVERY_REASON * 2  # in turn
    assert (
        verdict(check_record, decoders_of(DIAMONDS), bad_payload(payloads, 4, record)[1]).detail
        == "'carat'=-1 outside (0, 20]"
    )


def test_invalid_payloads_follow_a_classification_schema(churn, churn_source):
    payloads = invalid_payloads(churn)
    assert [reason for reason, _ in payloads] == EVERY_REASON
    for row in range(5):
        record = churn.feature_record(
            f"sim-{row}",
            1_700_000_000_000 + row,
            {c: churn_source[c].tolist()[row] for c in churn.feature_names},
        )
        assert not isinstance(
            verdict(check_record, decoders_of(churn), record, parsed=True), Rejection
        )
        for reason, breaker in payloads:
            rejection = verdict(check_record, decoders_of(churn), breaker(record))
            assert isinstance(rejection, Rejection) and rejection.reason == reason, (
                reason,
                rejection,
            )


def test_a_reason_the_schema_cannot_produce_is_left_out():
    no_range = parse_schema(
        {**CHURN, "features": [{"name": "spend", "type": "numeric"}, CHURN["features"][2]]}
    )
    assert [reason for reason, _ in invalid_payloads(no_range)] == [
        r for r in EVERY_REASON if r != "out_of_range"
    ]
    categorical = parse_schema({**CHURN, "features": CHURN["features"][2:]})
    reasons = [reason for reason, _ in invalid_payloads(categorical)]
    assert reasons == ["not_json", "missing_field", "wrong_type", "oversize"]
    record = categorical.feature_record("a", 1, {"plan": "pro", "region": 2})
    for reason, breaker in invalid_payloads(categorical):
        assert verdict(check_record, decoders_of(categorical), breaker(record)).reason == reason


def test_scenarios_and_payloads_import_without_kafka_prometheus_or_pandas():
    import subprocess
    import sys

    from tests.support import ROOT

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('confluent_kafka', 'prometheus_client', 'pandas'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import producer.scenarios, producer.grammar, producer.invalid\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
