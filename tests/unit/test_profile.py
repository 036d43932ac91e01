"""`monitor profile`: a schema written from a reference file loads, passes its reference, and says
what it decided. No broker: the command runs in-process through add_parser/main."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.artifacts import read_reference
from contract.profile.text import default_name
from contract.rules import Bounds
from contract.schema_file import load_schema
from monitor.__main__ import main

ROWS = 400
FEATURES = ["weight", "plan", "rooms", "visits", "account", "member", "code"]


def reference_frame(seed: int = 7) -> pd.DataFrame:
    """Every kind of column a user's reference may hold; `plan` has one rare category."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "gold"], ROWS).astype(object)
    plan[17] = "platinum"
    gap = rng.random(ROWS)
    gap[:20] = np.nan
    frame = pd.DataFrame(
        {
            "id": [f"row-{i}" for i in range(ROWS)],
            "weight": rng.normal(1.0, 1.0, ROWS).round(3),
            "plan": plan,
            "rooms": rng.integers(1, 6, ROWS),
            "visits": rng.integers(0, 10_000, ROWS),
            "account": rng.permutation(ROWS) + 5000,  # an integer id
            "comment": [f"called on day {i}, said {rng.integers(100)}" for i in range(ROWS)],
            "member": rng.random(ROWS) < 0.3,
            "code": rng.choice(["no", "yes", "1.0"], ROWS),
            "gap": gap,
        }
    )
    frame["churn"] = rng.choice(["no", "yes"], ROWS)
    frame["prediction"] = np.where(
        rng.random(ROWS) < 0.8, frame["churn"], rng.choice(["no", "yes"], ROWS)
    )
    frame["proba_yes"] = rng.random(ROWS).round(4)
    frame["proba_no"] = 1 - frame["proba_yes"]
    return frame


def regression_frame() -> pd.DataFrame:
    frame = reference_frame().drop(columns=["churn", "prediction", "proba_yes", "proba_no"])
    rng = np.random.default_rng(11)
    frame["price"] = rng.gamma(2.0, 500.0, ROWS).round(2)
    frame["prediction"] = (frame["price"] * rng.normal(1.0, 0.1, ROWS)).round(2)
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


# The churn reference's target and prediction, as most tests profile it.
CHURN = ("--target", "churn", "--prediction", "prediction")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """`python -m monitor profile ARGV` in-process: (exit code, stdout, stderr)."""
    code = main(["profile", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def profiled_ok(capsys, *argv: str) -> str:
    """`run` that must exit 0 (else fails with its stderr); its stdout."""
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


@pytest.fixture(params=["csv", "parquet"])
def classification_file(request, tmp_path) -> Path:
    return write(reference_frame(), tmp_path / f"churn-model.{request.param}")


def test_classification_schema_loads_and_its_reference_passes(
    classification_file, tmp_path, capsys
):
    out_path = tmp_path / "schema.yaml"
    code, out, err = run(
        capsys,
        classification_file,
        *CHURN,
        "-o",
        out_path,
    )
    assert code == 0, err
    schema = load_schema(out_path)
    assert schema.name == "churn-model" and schema.task == "classification"
    assert schema.target == "churn" and schema.prediction == "prediction"
    assert schema.classes == ("no", "yes")  # strings: YAML's `no` is not read as False
    assert schema.feature_names == tuple(FEATURES)
    frame = reference_frame()
    weight = schema.feature("weight")
    assert (
        weight.type == "numeric" and weight.bounds == Bounds()
    )  # no range: it would refuse drifted values
    assert weight.observed == (frame["weight"].min(), frame["weight"].max())
    assert schema.feature("plan").categories == ("basic", "gold", "platinum")
    assert (
        schema.feature("rooms").categories == (1, 2, 3, 4, 5)
        and schema.feature("rooms").kind == "integer"
    )
    assert (
        schema.feature("visits").type == "numeric"
    )  # an integer with thousands of values is a count
    assert schema.feature("account").type == "numeric"
    assert schema.feature("member").categories == (False, True)
    assert schema.feature("code").categories == ("1.0", "no", "yes")  # strings stay strings
    assert schema.messages.probabilities == "probabilities"
    assert schema.probability_columns == ("proba_no", "proba_yes")
    assert (schema.messages.id, schema.messages.timestamp, schema.messages.timestamp_format) == (
        "id",
        "ts",
        "epoch_ms",
    )
    assert (schema.messages.prediction, schema.messages.features) == ("prediction", "features")
    assert (schema.labels.id, schema.labels.timestamp, schema.label_field) == ("id", "ts", "churn")
    assert len(read_reference(classification_file, schema)) == ROWS

    text = out_path.read_text()
    assert text.startswith(
        f"# Schema of model churn-model, written by `python -m monitor profile` from {classification_file} "
        f"({ROWS} rows)"
    )
    assert 'README ("Schema format")' in text
    assert "# task: inferred (the target holds strings); --task changes it." in text
    assert (
        "  # integer with 5 distinct values: categorical; make it numeric if it is a count or a measure"
        in text
    )
    assert (
        "  # integer with a different value in every row: numeric; if it is an id, not a measure, delete this entry"
        in text
    )
    assert f'    # rare in the reference: "platinum" (1 of {ROWS} rows)' in text
    assert (
        f"#   comment: {ROWS} distinct strings in {ROWS} rows: an id or free text, not a category"
        in text
    )
    assert f"#   gap: empty in 20 of {ROWS} rows" in text
    assert "#   id: the record id (--id)" in text
    assert (
        "    # range: {ge: <lowest possible>, le: <highest possible>}" in text
    )  # weight takes negative values
    assert "    # range: {ge: 0}  # optional" in text  # visits does not
    # Left-out columns are reported on stderr too; the summary is one line.
    assert [line.split(":")[0] for line in err.splitlines()] == ["note", "note"]
    assert "column comment left out" in err and "column gap left out: empty in 20" in err
    assert out.count("\n") == 1
    assert out.startswith(
        f"wrote {out_path}: model churn-model (classification, 2 classes, probabilities, inferred), "
        "7 features (3 numeric, 4 categorical) from 400 rows; left out: comment, gap"
    )


def test_csv_and_parquet_give_the_same_schema(tmp_path, capsys):
    frame = reference_frame()
    schemas = []
    for suffix in ("csv", "parquet"):
        source = write(frame, tmp_path / f"ref.{suffix}")
        profiled_ok(
            capsys,
            source,
            *CHURN,
            "-o",
            tmp_path / f"{suffix}.yaml",
        )
        schemas.append(load_schema(tmp_path / f"{suffix}.yaml").to_yaml())
    assert schemas[0] == schemas[1]


def test_regression_schema(tmp_path, capsys):
    source = write(regression_frame(), tmp_path / "prices.csv")
    code, out, err = run(
        capsys, source, "--target", "price", "--prediction", "prediction", "-o", tmp_path / "s.yaml"
    )
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert (
        schema.task == "regression"
        and schema.classes == ()
        and schema.messages.probabilities is None
    )
    assert schema.feature_names == tuple(FEATURES)
    assert schema.target_bounds == Bounds()
    assert len(read_reference(source, schema)) == ROWS
    text = (tmp_path / "s.yaml").read_text()
    assert "# task: inferred (the target is a float); --task changes it." in text
    assert "# target_range: {ge: 0}  # optional: labels outside go to the DLQ; observed [" in text
    assert "model prices (regression, inferred)" in out


def test_integer_target_with_few_values_is_a_classifier_unless_told(tmp_path, capsys):
    frame = regression_frame()
    frame["price"] = (frame["price"] > 1000).astype(int)
    frame["prediction"] = (frame["prediction"] > 1000).astype(int)
    source = write(frame, tmp_path / "ref.csv")
    profiled_ok(
        capsys, source, "--target", "price", "--prediction", "prediction", "-o", tmp_path / "a.yaml"
    )
    schema = load_schema(tmp_path / "a.yaml")
    assert schema.task == "classification" and schema.classes == (0, 1)
    assert schema.messages.probabilities is None  # no proba_0 / proba_1 columns
    assert len(read_reference(source, schema)) == ROWS
    profiled_ok(
        capsys,
        source,
        "--target",
        "price",
        "--prediction",
        "prediction",
        "--task",
        "regression",
        "-o",
        tmp_path / "b.yaml",
    )
    assert load_schema(tmp_path / "b.yaml").task == "regression"
    assert "# task: inferred" not in (tmp_path / "b.yaml").read_text()


def test_probabilities_only_when_every_class_has_a_column(tmp_path, capsys):
    source = write(reference_frame().drop(columns=["proba_no"]), tmp_path / "ref.csv")
    profiled_ok(capsys, source, *CHURN, "-o", tmp_path / "s.yaml")
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.messages.probabilities is None
    assert "proba_yes" not in schema.feature_names  # still not a feature


def test_flags_describe_another_message_layout(tmp_path, capsys):
    frame = reference_frame().rename(columns={"id": "request_id"})
    frame["event_time"] = pd.date_range("2026-01-01", periods=ROWS, freq="min").astype(str)
    source = write(frame, tmp_path / "ref.csv")
    code, _, err = run(
        capsys,
        source,
        *CHURN,
        "-o",
        tmp_path / "s.yaml",
        "--id",
        "request_id",
        "--ts",
        "event_time",
        "--timestamp-format",
        "iso8601",
        "--top-level-features",
        "--prediction-field",
        "label_hat",
        "--probabilities-field",
        "scores",
        "--label-target-field",
        "outcome",
        "--name",
        "churn.v2",
    )
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.name == "churn.v2"
    m = schema.messages
    assert (m.id, m.timestamp, m.timestamp_format, m.prediction, m.probabilities, m.features) == (
        "request_id",
        "event_time",
        "iso8601",
        "label_hat",
        "scores",
        None,
    )
    assert (schema.labels.id, schema.labels.timestamp, schema.label_field) == (
        "request_id",
        "event_time",
        "outcome",
    )
    assert schema.feature_names == tuple(FEATURES)  # the id and time columns are not features
    assert schema.timestamp_value(0) == "1970-01-01T00:00:00.000Z"

    for flags in (["--features-field", ""], ["--features-field", "inputs"]):
        profiled_ok(
            capsys,
            source,
            *CHURN,
            "-o",
            tmp_path / "t.yaml",
            "--force",
            *flags,
        )
        assert load_schema(tmp_path / "t.yaml").messages.features == (flags[1] or None)


def test_types_can_be_forced_and_limits_moved(tmp_path, capsys):
    source = write(reference_frame(), tmp_path / "ref.csv")
    common = [
        source,
        *CHURN,
        "-o",
        tmp_path / "s.yaml",
        "--force",
    ]
    assert run(capsys, *common, "--categorical", "visits,comment", "--numeric", "rooms")[0] == 0
    schema = load_schema(tmp_path / "s.yaml")
    visits = schema.feature("visits")
    assert visits.type == "categorical" and visits.kind == "integer"
    assert visits.categories == tuple(
        sorted(set(reference_frame()["visits"].tolist()))
    )  # a long list wraps and loads
    assert (
        schema.feature("comment").type == "categorical"
        and len(schema.feature("comment").categories) == ROWS
    )
    assert schema.feature("rooms").type == "numeric" and schema.feature("rooms").observed == (
        1.0,
        5.0,
    )
    assert len(read_reference(source, schema)) == ROWS

    assert run(capsys, *common, "--max-integer-categories", "4")[0] == 0
    assert load_schema(tmp_path / "s.yaml").feature("rooms").type == "numeric"
    assert (
        "# integer with 5 distinct values: numeric; make it categorical if it is a code"
        in (tmp_path / "s.yaml").read_text()
    )
    assert run(capsys, *common, "--max-categories", "2")[0] == 0
    assert "code" not in load_schema(tmp_path / "s.yaml").feature_names  # 3 distinct strings > 2


def test_categories_that_look_like_other_types_stay_strings(tmp_path, capsys):
    frame = reference_frame()
    words = np.array(["no", "true", "null", "1e3", 'say "hi": ok', "~", "Yes"], dtype=object)
    frame["code"] = words[np.arange(ROWS) % len(words)]
    source = write(frame, tmp_path / "ref.parquet")
    profiled_ok(capsys, source, *CHURN, "-o", tmp_path / "s.yaml")
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.feature("code").categories == tuple(sorted(words))
    assert len(read_reference(source, schema)) == ROWS


def test_name_defaults_to_the_file_stem_made_valid(tmp_path, capsys):
    source = write(reference_frame(), tmp_path / "my churn (2026) v1.csv")
    profiled_ok(capsys, source, *CHURN, "-o", tmp_path / "s.yaml")
    assert load_schema(tmp_path / "s.yaml").name == "my_churn_2026_v1"
    assert default_name(Path("!!!.csv")) == "model"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--target", "nope"], "error: --target nope: no such column; the file has id, weight"),
        (["--prediction", "churn"], "error: --target and --prediction name the same column"),
        (
            ["--categorical", "churn"],
            "error: --categorical churn: that column is the target (a model cannot take its label as input)",
        ),
        (
            ["--numeric", "plan"],
            "error: --numeric plan: the column holds string values, not numbers",
        ),
        (["--numeric", "gap"], "error: --numeric gap: the column is empty in 20 of 400 rows"),
        (
            ["--categorical", "weight"],
            "error: --categorical weight: the column holds fractional numbers",
        ),
        (
            ["--categorical", "rooms", "--numeric", "rooms"],
            "error: rooms is given to both --categorical and --numeric",
        ),
        (["--categorical", "nope"], "error: --categorical nope: no such column"),
        (
            ["--task", "regression"],
            "error: --task regression: column 'churn' holds string values, not numbers",
        ),
        (["--name", "my model"], "error: --name 'my model': use 1-64 letters, digits or _.:-"),
        (
            ["--top-level-features", "--features-field", "x"],
            "error: --top-level-features and --features-field x: give one",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, message):
    source = write(reference_frame(), tmp_path / "ref.csv")
    # A flag given again wins (argparse keeps the last), so `flags` may override --target or --prediction.
    code, out, err = run(
        capsys,
        source,
        *CHURN,
        *flags,
        "-o",
        tmp_path / "s.yaml",
    )
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith(message), err
    assert not (tmp_path / "s.yaml").exists()


def test_bad_files_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "ref.txt").write_text("a,b\n1,2\n")
    for source, message in (
        (tmp_path / "missing.csv", "error: no reference file"),
        (tmp_path / "ref.txt", "error: "),
        (write(regression_frame(), tmp_path / "reg.csv"), "error: --target churn: no such column"),
    ):
        code, out, err = run(capsys, source, *CHURN, "-o", tmp_path / "s.yaml")
        assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(message), err
    only_ids = write(
        reference_frame()[["id", "comment", "churn", "prediction"]], tmp_path / "ids.csv"
    )
    code, _, err = run(capsys, only_ids, *CHURN, "-o", tmp_path / "s.yaml")
    assert code == 2 and err.startswith(
        "error: no column is left as a feature: comment: 400 distinct strings"
    )
    regression = write(regression_frame(), tmp_path / "reg2.csv")
    code, _, err = run(
        capsys,
        regression,
        "--target",
        "price",
        "--prediction",
        "prediction",
        "--probabilities-field",
        "p",
        "-o",
        tmp_path / "s.yaml",
    )
    assert (
        code == 2 and err == "error: --probabilities-field p: only a classifier has probabilities\n"
    )
    assert not (tmp_path / "s.yaml").exists()


def test_an_existing_schema_is_kept_unless_forced(tmp_path, capsys):
    source = write(reference_frame(), tmp_path / "ref.csv")
    out_path = tmp_path / "schema.yaml"
    out_path.write_text("mine\n")
    code, out, err = run(capsys, source, *CHURN, "-o", out_path)
    assert (code, out, err) == (
        2,
        "",
        f"error: {out_path} exists: pass --force to overwrite it, or choose another -o\n",
    )
    assert out_path.read_text() == "mine\n"
    profiled_ok(capsys, source, *CHURN, "-o", out_path, "--force")
    assert load_schema(out_path).name == "ref"
    code, _, err = run(
        capsys,
        source,
        *CHURN,
        "-o",
        tmp_path / "no" / "s.yaml",
    )
    assert code == 2 and err.startswith("error: -o ") and err.count("\n") == 1


# -- another team's reference (tests/foreign.py): every inference rule, and what it refuses ----------
from tests import foreign  # noqa: E402


def profile_foreign(capsys, tmp_path, task: str, *flags: str, frame: pd.DataFrame | None = None):
    source = write(
        foreign.reference(task, rows=600) if frame is None else frame,
        tmp_path / f"loans-{task}.csv",
    )
    code, out, err = run(
        capsys,
        source,
        "--target",
        foreign.TARGETS[task],
        "--prediction",
        "y_pred",
        "--id",
        "loan_id",
        "--ts",
        "event_time",
        *flags,
        "-o",
        tmp_path / "s.yaml",
        "--force",
    )
    return code, out, err, source


def test_float_classes_make_a_classifier_with_its_positive_class_probability(tmp_path, capsys):
    code, out, err, source = profile_foreign(capsys, tmp_path, "classification")
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.task == "classification" and schema.classes == (0, 1)
    text = (tmp_path / "s.yaml").read_text()
    assert (
        "# task: inferred (the target holds whole numbers with 2 distinct values (0.0, 1.0) and so does the "
        "prediction: classes (at most 20, --max-integer-categories)); --task changes it."
    ) in text
    # y_pred_proba is the probability of class 1, never a feature; the other class's is 1 - p
    assert schema.feature_names == ("income", "age", "region", "employment", "debt_ratio")
    assert schema.probability_classes == ("1",) and schema.probability_columns == ("y_pred_proba",)
    assert "# probabilities: y_pred_proba is the probability of class 1 (mean 0." in text
    assert len(read_reference(source, schema)) == 600
    assert "(classification, 2 classes, probabilities, inferred)" in out
    # the same with --task classification, and when the column is named as a "field"
    for flags in (
        ["--task", "classification"],
        ["--probabilities-field", "y_pred_proba"],
        ["--probabilities", "y_pred_proba"],
    ):
        assert profile_foreign(capsys, tmp_path, "classification", *flags)[0] == 0
        assert load_schema(tmp_path / "s.yaml").probability_columns == ("y_pred_proba",), flags


def test_the_log_layout_defaults_to_the_references_column_names(tmp_path, capsys):
    assert profile_foreign(capsys, tmp_path, "classification")[0] == 0
    schema = load_schema(tmp_path / "s.yaml")
    m = schema.messages
    assert (m.id, m.timestamp, m.timestamp_format, m.prediction, m.features) == (
        "loan_id",
        "event_time",
        "iso8601",
        "y_pred",
        None,
    )
    assert m.probability_fields == (("1", "y_pred_proba"),) and m.probabilities is None
    assert (schema.labels.id, schema.labels.timestamp, schema.label_field) == (
        "loan_id",
        "event_time",
        "repaid",
    )
    text = (tmp_path / "s.yaml").read_text()
    assert (
        "# messages: laid out as the reference's column names as top-level fields (the prediction column is "
        "'y_pred', not our scorer's)" in text
    )
    assert (
        "# timestamp_format: inferred from the event_time column's values, e.g. '2018-10-30 18:"
        in text
    )
    # our scorer's layout on request: the probability still a field per class, as the reference has it
    assert profile_foreign(capsys, tmp_path, "classification", "--layout", "scorer")[0] == 0
    m = load_schema(tmp_path / "s.yaml").messages
    assert (m.prediction, m.features, m.probability_fields) == (
        "prediction",
        "features",
        (("1", "y_pred_proba"),),
    )


def test_few_whole_numbers_are_classes_only_when_the_prediction_is_too(tmp_path, capsys):
    frame = foreign.reference("regression", rows=600)
    frame["amount"] = (frame["amount"] // 10_000).astype(
        float
    )  # a target of a few whole numbers...
    code, _, err, _ = profile_foreign(
        capsys, tmp_path, "regression", frame=frame
    )  # ...a fractional prediction
    assert code == 0, err
    assert load_schema(tmp_path / "s.yaml").task == "regression"
    assert (
        "# task: inferred (the target holds few whole numbers but the prediction does not)"
        in (tmp_path / "s.yaml").read_text()
    )


@pytest.mark.parametrize(
    "times, expected",
    [
        ([1540922400, 1540922700], "epoch_s"),
        ([1540922400.5, 1540922700.25], "epoch_s"),
        ([1540922400000, 1540922700000], "epoch_ms"),
        (["2018-10-30T18:00:00Z", "2018-10-30T18:05:00Z"], "iso8601"),
        (["2018-10-30 18:00:00.000", "2018-10-30 18:05:00.000"], "iso8601"),
        (["2018-10-30 18:00:00+02:00", "2018-10-30T18:05:00.123-05:00"], "iso8601"),
    ],
)
def test_the_timestamp_format_is_inferred_from_the_values(tmp_path, capsys, times, expected):
    frame = foreign.reference("classification", rows=600)
    frame["event_time"] = [times[i % 2] for i in range(len(frame))]
    code, _, err, source = profile_foreign(capsys, tmp_path, "classification", frame=frame)
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.messages.timestamp_format == expected
    assert len(read_reference(source, schema)) == 600  # the values pass the schema's rule


@pytest.mark.parametrize(
    "times, message",
    [
        (
            ["30/10/2018 18:00", "30/10/2018 18:05"],
            "error: --ts event_time: cannot tell the time format from its values "
            "(e.g. '30/10/2018 18:00'): write epoch seconds, epoch milliseconds or ISO 8601 "
            "date-times, or give --timestamp-format",
        ),
        (
            ["2018-10-30", "2018-10-31"],
            "error: --ts event_time: cannot tell the time format from its values (e.g. '2018-10-30')",
        ),
        (
            [12345, 12346],
            "error: --ts event_time: cannot tell the time format from its values (e.g. 12345)",
        ),
        (
            [1540922400, 1540922400000],
            "error: --ts event_time: cannot tell the time format from its values (e.g. 1540922400)",
        ),
    ],
)
def test_a_timestamp_format_that_cannot_be_told_is_refused_with_an_example(
    tmp_path, capsys, times, message
):
    frame = foreign.reference("classification", rows=600)
    frame["event_time"] = [times[i % 2] for i in range(len(frame))]
    code, out, err, _ = profile_foreign(capsys, tmp_path, "classification", frame=frame)
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(message), err


def test_a_given_timestamp_format_must_fit_the_column(tmp_path, capsys):
    code, _, err, _ = profile_foreign(
        capsys, tmp_path, "classification", "--timestamp-format", "epoch_ms"
    )
    assert code == 2 and err.startswith(
        "error: --timestamp-format epoch_ms: the event_time column holds iso8601 values "
        "(e.g. '2018-10-30 18:"
    ), err


def test_probability_columns_per_class_and_the_ones_that_fit_no_class(tmp_path, capsys):
    frame = foreign.reference("classification", rows=600)
    # one column, for the class predicted where it is low: class 0's probability
    flipped = frame.assign(prob_no_repay=(1 - frame["y_pred_proba"]).round(6)).drop(
        columns="y_pred_proba"
    )
    assert profile_foreign(capsys, tmp_path, "classification", frame=flipped)[0] == 0
    assert load_schema(tmp_path / "s.yaml").probability_columns == ("prob_no_repay",)
    assert load_schema(tmp_path / "s.yaml").probability_classes == ("0",)
    # two columns named like probabilities, neither naming a class: no probabilities, and no features either
    two = frame.assign(prob_raw=frame["y_pred_proba"]).rename(
        columns={"y_pred_proba": "prob_calibrated"}
    )
    code, _, err, _ = profile_foreign(capsys, tmp_path, "classification", frame=two)
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.probability_classes == () and {"prob_raw", "prob_calibrated"}.isdisjoint(
        schema.feature_names
    )
    assert (
        "#   prob_raw: looks like a class probability (name and values in [0, 1]) of no class found"
        in (tmp_path / "s.yaml").read_text()
    )
    # one column per class, the class in its name
    named = flipped.assign(**{"proba-1": frame["y_pred_proba"]}).rename(
        columns={"prob_no_repay": "p_0"}
    )
    assert (
        profile_foreign(
            capsys, tmp_path, "classification", "--probabilities", "p_0,proba-1", frame=named
        )[0]
        == 0
    )
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.probability_classes == ("0", "1") and schema.probability_columns == (
        "p_0",
        "proba-1",
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--probabilities", "income"],
            "error: --probabilities income: the column holds values outside [0, 1] or not numbers",
        ),
        (["--probabilities", "nope"], "error: --probabilities nope: no such column"),
        (
            ["--probabilities", "y_pred_proba,debt_ratio"],
            "error: --probabilities y_pred_proba,debt_ratio: give one column "
            "(a binary model's positive class) or one per class",
        ),
        (
            ["--task", "regression", "--probabilities", "y_pred_proba"],
            "error: --probabilities y_pred_proba: only a classifier has probabilities",
        ),
    ],
)
def test_probability_flags_that_cannot_apply_are_refused(tmp_path, capsys, flags, message):
    code, out, err, _ = profile_foreign(capsys, tmp_path, "classification", *flags)
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(message), err


@pytest.mark.parametrize(
    "fmt, topics",
    [
        ("json", ("churn.predictions",)),
        ("avro", ("churn.predictions",)),
        ("oip-v2", ("mlserver-input", "mlserver-output")),
        ("kserve-cloudevents", ("churn.inference-log",)),
        (
            "seldon-v2",
            ("seldon.seldon-mesh.model.churn.inputs", "seldon.seldon-mesh.model.churn.outputs"),
        ),
    ],
)
def test_format_writes_that_logs_messages_block(tmp_path, capsys, fmt, topics):
    """`--format` writes the serving system's block: the monitor reads its topics, the model's own
    messages only, the classifier's probabilities from its output; the labels stay as they were."""
    from contract.settings import Topics
    from monitor.sources import prediction_source

    source = write(reference_frame(), tmp_path / "ref.csv")
    code, _, err = run(
        capsys,
        source,
        *CHURN,
        "--name",
        "churn",
        "--format",
        fmt,
        "-o",
        tmp_path / "s.yaml",
    )
    assert code == 0, err
    schema = load_schema(tmp_path / "s.yaml")
    assert schema.format == fmt and (schema.labels.id, schema.label_field) == ("id", "churn")
    if fmt in ("json", "avro"):
        assert schema.paired is None and schema.messages.probabilities == "probabilities"
        return
    assert prediction_source(schema, Topics.for_model("churn", {})).topics == topics
    assert schema.paired.model == ("churn" if fmt != "seldon-v2" else None)
    assert schema.paired.probabilities == "predict_proba" and schema.paired.row_id == "{id}:{row}"
