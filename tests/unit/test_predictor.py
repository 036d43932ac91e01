"""The scorer's predict process: same predictions as the model, failures named, no orphan left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from contract.schema import DEFAULT_SCHEMA
from contract.schema_file import load_schema
from scorer.model import load, load_reference
from scorer.predictor import CLASSES, CLASSES_AND_PROBABILITIES, PredictorFailed, PredictProcess
from tests.support import wait_until

FEATURE_COLUMNS = load_schema(DEFAULT_SCHEMA).feature_names

ROOT = Path(__file__).resolve().parents[2]


class Exploding:
    def predict(self, frame):
        raise ValueError(f"cannot score {len(frame)} rows")


class Doubling:
    def predict(self, frame):
        return [2 * x for x in frame]


class SlowToLoad:
    """A model that takes `delay` seconds to unpickle; it creates `loading_marker` as it starts."""

    def __init__(self, delay: float, loading_marker: str | None = None) -> None:
        self.delay, self.loading_marker = delay, loading_marker

    def __setstate__(self, state):
        if state.get("loading_marker"):
            Path(state["loading_marker"]).touch()
        time.sleep(
            state["delay"]
        )  # the slow load itself: what the stand-in is for, no event to await
        self.__dict__.update(state)

    def predict(self, frame):
        return [3 * x for x in frame]


def refuse_to_load(reason: str):
    raise ValueError(reason)


class Unloadable:
    def __reduce__(self):
        return refuse_to_load, ("this model cannot be loaded",)

    def predict(self, frame):
        return frame


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_predictions_equal_the_model_batch_after_batch(model_dir):
    model = load(model_dir)
    frame = load_reference(model_dir)[list(FEATURE_COLUMNS)]
    predictor = PredictProcess(model.pipeline)
    try:
        for start, size in ((0, 1), (1, 700), (701, 5000)):
            batch = frame.iloc[start : start + size]
            predictor.submit(batch)
            np.testing.assert_array_equal(predictor.result(), model.predict(batch))
    finally:
        predictor.close()
    assert predictor._process.poll() is not None


def test_the_forest_without_its_per_call_overhead_predicts_the_same_bits(model_dir):
    from scorer.predictor import forest_predict, forest_trees

    model = load(model_dir)
    transform, forest = model.pipeline[:-1], model.pipeline[-1]
    trees = forest_trees(forest)
    assert trees is not None and len(trees) == forest.n_estimators
    frame = load_reference(model_dir)[list(FEATURE_COLUMNS)]
    for start, size in ((0, 1), (1, 37), (38, 5000)):
        encoded = transform.transform(frame.iloc[start : start + size])
        np.testing.assert_array_equal(forest_predict(trees, encoded), forest.predict(encoded))
        dense = encoded.toarray() if hasattr(encoded, "toarray") else encoded
        np.testing.assert_array_equal(forest_predict(trees, dense), forest.predict(dense))
    from sklearn.linear_model import LinearRegression

    assert forest_trees(LinearRegression()) is None  # any other model keeps its own predict
    forest.set_params(n_jobs=2)  # threads add the trees in no fixed order: not this path
    assert forest_trees(forest) is None


def test_a_classifier_returns_classes_and_probabilities_in_one_round_trip():
    from tests.unit.test_scoring import PET_FEATURES, fit_classifier, pets

    model = fit_classifier(pets(500, seed=1))
    frame = pets(300, seed=2)[PET_FEATURES]
    with_probabilities, classes_only = (
        PredictProcess(model, CLASSES_AND_PROBABILITIES),
        PredictProcess(model, CLASSES),
    )
    try:
        with_probabilities.submit(frame)
        classes, probabilities = with_probabilities.result()
        assert classes.tolist() == model.predict(frame).tolist()
        np.testing.assert_array_equal(probabilities, model.predict_proba(frame))
        classes_only.submit(frame)
        classes, none = classes_only.result()
        assert classes.tolist() == model.predict(frame).tolist() and none is None
    finally:
        with_probabilities.close()
        classes_only.close()
    with pytest.raises(ValueError, match="outputs must be one of"):
        PredictProcess(model, "labels")


def test_one_batch_at_a_time():
    predictor = PredictProcess(Exploding())
    try:
        predictor.submit([1, 2])
        with pytest.raises(RuntimeError, match="previous result"):
            predictor.submit([3])
    finally:
        predictor.close()


def test_a_model_error_is_reported_and_the_worker_keeps_serving():
    predictor = PredictProcess(Exploding())
    try:
        predictor.submit([1, 2, 3])
        with pytest.raises(PredictorFailed, match="ValueError: cannot score 3 rows"):
            predictor.result()
        predictor.submit([1])
        with pytest.raises(PredictorFailed, match="cannot score 1 rows"):
            predictor.result()
    finally:
        predictor.close()


def test_a_dead_worker_fails_the_batch_instead_of_hanging():
    predictor = PredictProcess(Exploding())
    try:
        os.kill(predictor._process.pid, signal.SIGKILL)
        predictor._process.wait(10)
        with pytest.raises(PredictorFailed, match=r"died \(exit code -9\)"):
            predictor.submit([1])
            predictor.result()
    finally:
        predictor.close()


def test_the_worker_ignores_ctrl_c_and_ends_when_its_parent_is_killed(tmp_path):
    """Ctrl-C reaches the whole process group: the worker must outlive it until the scorer closes
    the pipe; a SIGKILLed scorer must not leave the worker (and its model) behind."""
    script = textwrap.dedent("""
        import sys
        from scorer.predictor import PredictProcess
        from tests.unit.test_predictor import Doubling
        if __name__ == "__main__":
            predictor = PredictProcess(Doubling())
            print(predictor._process.pid, flush=True)
            sys.stdin.readline()  # the test has signalled the worker
            predictor.submit([1, 2])
            print(predictor.result().tolist(), flush=True)
            sys.stdin.read()  # until the test kills this process (or ends, closing the pipe)
    """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        worker = int(parent.stdout.readline())
        assert os.getsid(worker) == worker != os.getsid(parent.pid), (
            "the worker must not share the terminal's session"
        )
        os.kill(worker, signal.SIGINT)
        os.kill(worker, signal.SIGTERM)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "[2.0, 4.0]"
        assert process_alive(worker)
        parent.kill()
        parent.wait(10)
        wait_until(
            lambda: not process_alive(worker),
            10,
            interval=0.05,
            message="the predict process ending with its SIGKILLed scorer",
        )
    finally:
        parent.kill()


def test_ctrl_c_while_the_worker_starts_does_not_kill_it(tmp_path):
    """Ctrl-C signals the terminal's process group; one that lands while the worker is still
    loading the model (here: a model that takes 1.5 s to unpickle) reaches the scorer only."""
    script = textwrap.dedent("""
        import signal
        import sys
        from scorer.predictor import PredictProcess
        from tests.unit.test_predictor import SlowToLoad
        if __name__ == "__main__":
            signal.signal(signal.SIGINT, lambda *_: print("parent: SIGINT", flush=True))
            predictor = PredictProcess(SlowToLoad(1.5, sys.argv[1]))
            predictor.submit([1, 2])
            print(predictor.result().tolist(), flush=True)
            predictor.close()
    """)
    (tmp_path / "parent.py").write_text(script)
    loading = tmp_path / "loading"
    parent = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py"), str(loading)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    )
    try:
        # the worker is spawned and unpickling its model (for 1.5 s after the marker appears)
        wait_until(
            lambda: loading.exists() or parent.poll() is not None,
            60,
            interval=0.02,
            message="the worker starting to load",
        )
        assert parent.poll() is None, "the worker never started loading"
        os.killpg(parent.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, _ = parent.communicate(timeout=60)
        assert parent.returncode == 0, out
        assert out.splitlines() == ["parent: SIGINT", "[3.0, 6.0]"]
    finally:
        parent.kill()


def test_a_model_the_worker_cannot_load_is_refused_with_the_reason():
    with pytest.raises(
        PredictorFailed, match="could not load the model(.|\n)*this model cannot be loaded"
    ):
        PredictProcess(Unloadable())
