"""The scenario grammar: specs that name a column (`tilt:carat:0.8`, `mix:cut`, `labels:flip:0.2`)
turned into `producer.scenarios.Scenario`s, checked against the model's schema at start-up.

A spec the schema cannot run (unknown column, a numeric operation on a categorical, label flips of
a regression model, a bad number, a resampling the reference's rows cannot give) raises
`ScenarioError`: one line naming the scenario and what to change. The diamonds names (carat-shift,
cut-mix, ...) are shorthands for column forms (`SHORTHANDS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from contract.rules import MAX_CATEGORY_LENGTH, Bounds, category_text
from contract.schema import Feature, Schema
from producer.scenarios import (
    BOTH,
    GRADUAL_RAMP_RECORDS,
    INPUTS,
    LABELS,
    MIN_EFFECTIVE_ROWS,
    NO_DRIFT,
    NOTHING,
    PAYLOADS,
    FlipLabels,
    NoDrift,
    Ramp,
    Redraw,
    Resample,
    Reweight,
    Scale,
    Scenario,
    Shift,
    Tilt,
    Transform,
    Unseen,
    effective_rows,
)


class ScenarioError(ValueError):
    """A scenario spec that cannot run against this schema; the message says what to change."""


# operation -> (form, what it changes, what it does): the usage in messages, --help, and the
# list of forms when a spec is unknown all read it. Grouped by what they change.
FORMS: dict[str, tuple[str, str, str]] = {
    "none": ("none", NOTHING, "no drift"),
    "scale": ("scale:COL:FACTOR", BOTH, "numeric feature COL x FACTOR, labels not changed"),
    "shift": ("shift:COL:+DELTA", BOTH, "numeric feature COL + DELTA, labels not changed"),
    "gradual": (
        "gradual:COL:FACTOR[:RECORDS]",
        BOTH,
        f"COL x a factor ramping from 1 to FACTOR over RECORDS records (default {GRADUAL_RAMP_RECORDS:,}), "
        "labels not changed",
    ),
    "redraw": (
        "redraw:COL[:A=0.5,B=0.3,...]",
        BOTH,
        "categorical COL rewritten uniformly over its known categories or from the weights given, labels "
        "not changed",
    ),
    "unseen": (
        "unseen:COL:VALUE:SHARE",
        BOTH,
        "categorical COL set to VALUE, a category the model never saw, in SHARE of the records",
    ),
    "tilt": (
        "tilt:COL:FACTOR[:RECORDS]",
        INPUTS,
        "reference rows drawn with exponential-tilt weights so numeric COL's mean is FACTOR x its mean; "
        "with RECORDS the tilted share ramps from 0 to 1 over RECORDS records",
    ),
    "mix": (
        "mix:COL[:A=0.5,B=0.3,...]",
        INPUTS,
        "reference rows drawn by categorical COL so its mix is uniform (over the categories the reference "
        "holds) or the weights given",
    ),
    "labels:scale": (
        "labels:scale:FACTOR",
        LABELS,
        "regression targets x FACTOR, features unchanged",
    ),
    "labels:flip": (
        "labels:flip:SHARE",
        LABELS,
        "classification: SHARE of the labels replaced by another class, features unchanged",
    ),
    "bad-records": (
        "bad-records",
        PAYLOADS,
        "--bad-share of the records replaced by invalid payloads, one per "
        "rejection reason in turn (no label is sent for them)",
    ),
}

# What the `changes` column of --help means.
CHANGES = {
    INPUTS: "real reference rows drawn differently: the features move, every label is its row's own (covariate shift)",
    LABELS: "the labels alone: concept drift",
    BOTH: "features edited in place, labels not changed: so the input->label relation changes too",
}

# cut-mix: the reference has Ideal 40%, Premium 26%, Very Good 22%, Good 9%, Fair 3%;
# after onset the rows are drawn so that cut follows this flatter mix.
CUT_MIX = {"Fair": 0.15, "Good": 0.25, "Very Good": 0.25, "Premium": 0.20, "Ideal": 0.15}

# The diamonds scenarios: name -> (column form, decimals its edited values are rounded to, what the
# monitor shows). carat-shift tilts carat's mean down by 20%, fewer big stones (on the diamonds
# reference: KS(carat) 0.149, MSE x0.48). A tilt up by 10% moves KS by only 0.065, under a
# 1,000-record window's threshold (0.087); up by 20% raises the MSE x1.65 (it is unconditional, and
# big stones carry big dollar errors), enough to fire concept drift for a pure input shift.
SHORTHANDS: dict[str, tuple[str, int | None, str]] = {
    "carat-shift": (
        "tilt:carat:0.8",
        None,
        "fewer big stones: data drift on carat, no concept drift",
    ),
    "gradual-carat": (
        f"tilt:carat:0.8:{GRADUAL_RAMP_RECORDS}",
        None,
        "the same tilt, its share ramping in over the records",
    ),
    "cut-mix": (
        "mix:cut:" + ",".join(f"{k}={v}" for k, v in CUT_MIX.items()),
        None,
        "a flatter cut mix: depth, table, clarity and carat move with it",
    ),
    "price-inflation": ("labels:scale:1.2", 0, "concept drift, rounded to whole dollars"),
    "new-category": (
        "unseen:clarity:I2:0.05",
        None,
        "a clarity the model never saw",
    ),  # I2: a real grade the training data never had
}


def scenario_help() -> str:
    """--help text (an epilog, one line each): every form, what it changes, what it does; the shorthands."""
    width = max(len(form) for form, _, _ in FORMS.values())
    lines = ["scenarios (--scenario; each starts at --onset), and what they change:"]
    lines += [f"  {form:<{width}}  {changes:<8}  {what}" for form, changes, what in FORMS.values()]
    lines += [f"  {changes:<8} = {meaning}" for changes, meaning in CHANGES.items()]
    lines.append("diamonds shorthands:")
    width = max(map(len, SHORTHANDS))
    form_width = max(len(form) for form, _, _ in SHORTHANDS.values() if len(form) < 30)
    for name, (form, _, shows) in SHORTHANDS.items():
        lines.append(f"  {name:<{width}}  {form:<{form_width}}  {shows}")
    return "\n".join(lines)


@dataclass(frozen=True)
class _Spec:
    """One spec being parsed: its operation and arguments, and what they are checked against."""

    shown: str  # the spec as messages name it
    op: str
    args: list[str]
    schema: Schema
    source: Mapping[str, np.ndarray] | None  # the reference's columns, for range checks
    decimals: int | None  # a shorthand rounds its edited values (price-inflation: whole dollars)

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"scenario {self.shown}: {message}")

    def arity(self, *counts: int) -> None:
        if len(self.args) not in counts:
            raise self.fail(f"write {FORMS[self.op][0]}")

    def feature(self, numeric: bool) -> Feature:
        schema, name = self.schema, self.args[0]
        if name not in schema.feature_names:
            raise self.fail(
                f"{schema.name} has no feature {name!r}: use one of {', '.join(schema.feature_names)}"
            )
        feature = schema.feature(name)
        if numeric and not feature.numeric:
            raise self.fail(
                f"{name} is categorical; {self.op} works on numeric features "
                f"({', '.join(schema.numeric) or 'none'}): use mix:{name}, redraw:{name} or "
                f"unseen:{name}:VALUE:SHARE"
            )
        if not numeric and feature.numeric:
            raise self.fail(
                f"{name} is numeric; {self.op} works on categorical features "
                f"({', '.join(schema.categorical) or 'none'}): use tilt:{name}:FACTOR, scale:{name}:FACTOR "
                f"or shift:{name}:+DELTA"
            )
        return feature

    def number(self, text: str, what: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise self.fail(f"{what} {text!r} is not a number") from None
        if not math.isfinite(value):
            raise self.fail(f"{what} must be a finite number, not {text!r}")
        return value

    def factor(self, text: str) -> float:
        value = self.number(text, "FACTOR")
        if value <= 0:
            raise self.fail(f"FACTOR must be above 0 (1.1 is +10%), not {text!r}")
        try:
            Decimal(text)  # gradual takes FACTOR - 1 in decimal
        except InvalidOperation:  # float() takes a few spellings Decimal does not ("1_0")
            raise self.fail(f"FACTOR {text!r}: write a plain decimal number such as 1.2") from None
        return value

    def records(self, text: str) -> int:
        try:
            records = int(text)
        except ValueError:
            raise self.fail(f"RECORDS {text!r} must be a whole number of records") from None
        if records < 1:
            raise self.fail(f"RECORDS must be at least 1, not {text!r}")
        return records

    def share(self, text: str) -> float:
        share = self.number(text, "SHARE")
        if not 0 < share <= 1:
            raise self.fail(
                f"SHARE must be a fraction in (0, 1] (0.05 is 5% of the records), not {text!r}"
            )
        return share

    def within(
        self, column: str, bounds: Bounds, moved: Callable[[float, float], tuple[float, float]]
    ) -> None:
        """Refuse a drift that takes the reference's values outside the column's valid range: such
        records would be refused as out_of_range instead of showing drift (bad-records tests that)."""
        if self.source is None or column not in self.source or not len(self.source[column]):
            return
        values = np.asarray(self.source[column], dtype=float)
        for value in moved(float(values.min()), float(values.max())):
            if not (math.isfinite(value) and bounds.contains(value)):
                raise self.fail(
                    f"takes {column} to {value:g}, outside its valid range {bounds} (such records are "
                    "refused as out_of_range): choose a smaller change"
                )

    def drawable(self, resample: Resample) -> None:
        """Refuse row weights the reference's rows cannot give: a target they cannot reach, or one
        reached only by leaning on a handful of rows (the stream would replay them)."""
        if (
            self.source is None
            or resample.column not in self.source
            or not len(self.source[resample.column])
        ):
            return
        try:
            weights = resample.weights(self.source)
        except ValueError as exc:
            raise self.fail(str(exc)) from None
        rows = effective_rows(weights)
        if rows < MIN_EFFECTIVE_ROWS:
            raise self.fail(
                f"the weights rest on about {rows:.0f} of the reference's {len(weights):,} rows (at least "
                f"{MIN_EFFECTIVE_ROWS} needed, or the stream replays a few records): choose a change "
                "closer to the reference"
            )


def parse_scenario(
    spec: str, schema: Schema, source: Mapping[str, np.ndarray] | None = None
) -> Scenario:
    """The Scenario a spec names, checked against the schema (and, given the reference's columns
    as `source`, against the features' ranges and the row weights its rows can give);
    ScenarioError naming what to change."""
    form, decimals, _ = SHORTHANDS.get(spec, (spec, None, ""))
    if form == "none":
        return NO_DRIFT
    if form == "bad-records":
        return Scenario(
            form, NoDrift(), PAYLOADS, bad_records=True
        )  # records replaced at encoding time
    op, *args = form.split(":")
    if op == "labels" and args:
        op, args = f"labels:{args[0]}", args[1:]
    if op not in _OPERATIONS:
        forms = ", ".join(form for form, _, _ in FORMS.values())
        raise ScenarioError(
            f"unknown scenario {spec!r}: use one of {forms}, or a diamonds shorthand "
            f"({', '.join(SHORTHANDS)})"
        )
    shown = f"{spec!r} (= {form})" if spec in SHORTHANDS else repr(spec)
    made = _OPERATIONS[op](_Spec(shown, op, args, schema, source, decimals))
    if isinstance(made, Resample):  # real rows drawn differently: nothing to edit
        return Scenario(spec, NoDrift(), FORMS[op][1], resample=made)
    return Scenario(spec, made, FORMS[op][1])


# -- one parser per operation: _Spec -> row weights or transform -----------------------------------
def _tilt(spec: _Spec) -> Resample:
    spec.arity(2, 3)
    feature, factor = spec.feature(numeric=True), spec.factor(spec.args[1])
    tilt = Tilt(feature.name, factor, spec.records(spec.args[2]) if len(spec.args) == 3 else None)
    spec.drawable(tilt)
    return tilt


def _mix(spec: _Spec) -> Resample:
    spec.arity(1, 2)
    feature = spec.feature(numeric=False)
    mix = (
        Reweight(feature.name)
        if len(spec.args) == 1
        else Reweight(feature.name, *_category_weights(spec, feature))
    )
    spec.drawable(mix)
    return mix


def _scale(spec: _Spec) -> Transform:
    spec.arity(2)
    feature, factor = spec.feature(numeric=True), spec.factor(spec.args[1])
    spec.within(feature.name, feature.bounds, lambda lo, hi: (lo * factor, hi * factor))
    return Scale(feature.name, factor, spec.decimals)


def _shift(spec: _Spec) -> Transform:
    spec.arity(2)
    feature, delta = spec.feature(numeric=True), spec.number(spec.args[1], "DELTA")
    spec.within(feature.name, feature.bounds, lambda lo, hi: (lo + delta, hi + delta))
    return Shift(feature.name, delta)


def _gradual(spec: _Spec) -> Transform:
    spec.arity(2, 3)
    feature, factor = spec.feature(numeric=True), spec.factor(spec.args[1])
    records = spec.records(spec.args[2]) if len(spec.args) == 3 else GRADUAL_RAMP_RECORDS
    spec.within(
        feature.name, feature.bounds, lambda lo, hi: (min(lo, lo * factor), max(hi, hi * factor))
    )
    # factor - 1 in decimal: 1.2 ramps by exactly 0.2
    return Ramp(feature.name, float(Decimal(spec.args[1]) - 1), records)


def _redraw(spec: _Spec) -> Transform:
    spec.arity(1, 2)
    feature = spec.feature(numeric=False)
    categories = feature.categories
    if len(spec.args) == 1:
        return Redraw(
            feature.name, tuple(categories), tuple(1.0 / len(categories) for _ in categories)
        )
    return Redraw(feature.name, *_category_weights(spec, feature))


def _category_weights(spec: _Spec, feature: Feature) -> tuple[tuple[Any, ...], tuple[float, ...]]:
    """(categories, weights) of a CATEGORY=WEIGHT,... list: known categories, weights summing to 1."""
    categories = feature.categories
    by_text = {category_text(c): c for c in categories}
    weights: dict[str, float] = {}
    for part in spec.args[1].split(","):
        text, equals, weight = part.rpartition("=")
        if not equals or not text:
            raise spec.fail(
                f"weights are CATEGORY=WEIGHT separated by commas, e.g. {category_text(categories[0])}=0.5; "
                f"got {part!r}"
            )
        if text not in by_text:
            raise spec.fail(
                f"{text!r} is not a known category of {feature.name} ({', '.join(by_text)}); "
                f"for a new one use unseen:{feature.name}:{text}:SHARE"
            )
        if text in weights:
            raise spec.fail(f"{text!r} is given twice")
        weights[text] = spec.number(weight, f"the weight of {text!r}")
        if weights[text] < 0:
            raise spec.fail(f"the weight of {text!r} must be 0 or more")
    total = sum(weights.values())
    if abs(total - 1) > 1e-6:
        raise spec.fail(
            f"the weights sum to {total:g}: make them sum to 1 (categories left out get 0)"
        )
    return tuple(by_text[t] for t in weights), tuple(weights.values())


def _unseen(spec: _Spec) -> Transform:
    if len(spec.args) < 3:
        raise spec.fail(f"write {FORMS['unseen'][0]}")
    feature = spec.feature(numeric=False)
    text = ":".join(
        spec.args[1:-1]
    )  # VALUE may itself hold a colon: everything between COL and SHARE
    if feature.kind == "integer":
        try:
            value: Any = int(text)
        except ValueError:
            raise spec.fail(
                f"{feature.name}'s categories are integers: VALUE {text!r} must be one too"
            ) from None
    elif feature.kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise spec.fail(
                f"{feature.name}'s categories are true/false: VALUE must be one of them, not {text!r}"
            )
        value = text.lower() == "true"
    else:
        if not 0 < len(text) <= MAX_CATEGORY_LENGTH:
            raise spec.fail(f"VALUE must be 1-{MAX_CATEGORY_LENGTH} characters")
        value = text
    if category_text(value) in feature.known:
        raise spec.fail(
            f"{text!r} is a known category of {feature.name}: choose a value the model never saw"
        )
    return Unseen(feature.name, value, spec.share(spec.args[-1]))


def _label_scale(spec: _Spec) -> Transform:
    spec.arity(1)
    schema = spec.schema
    if schema.classification:
        raise spec.fail(
            f"{schema.name} is a classifier: its labels are classes, use labels:flip:SHARE"
        )
    factor = spec.factor(spec.args[0])
    spec.within(schema.target, schema.target_bounds, lambda lo, hi: (lo * factor, hi * factor))
    return Scale(schema.target, factor, spec.decimals)


def _label_flip(spec: _Spec) -> Transform:
    spec.arity(1)
    schema = spec.schema
    if not schema.classification:
        raise spec.fail(
            f"{schema.name} is a regression model: flip is for classes, use labels:scale:FACTOR"
        )
    return FlipLabels(schema.target, schema.classes, spec.share(spec.args[0]))


_OPERATIONS: dict[str, Callable[[_Spec], Transform | Resample]] = {
    "tilt": _tilt,
    "mix": _mix,
    "scale": _scale,
    "shift": _shift,
    "gradual": _gradual,
    "redraw": _redraw,
    "unseen": _unseen,
    "labels:scale": _label_scale,
    "labels:flip": _label_flip,
}
