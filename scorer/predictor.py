"""The forest in a process of its own, so it predicts one batch while the scorer delivers another.

A thread does not do: each of the forest's trees takes the GIL back several times per call, and
while the scorer's thread decodes or produces, every retake waits for it (`bench/predict_bench.py`
and `bench/scorer_breakdown.py --predict-thread` compare the two). A process shares nothing; a
batch goes over a socket. The scorer sends the pipeline's final estimator and each batch
already transformed (`scorer.model.split_final_step`), so the encoding of the next batch
overlaps the forest too; any model with `predict` works. What comes back is `model_output`: the
predictions, and for a classifier whose messages carry them, its class probabilities from the
same batch in the same round trip.

The worker is `python -m scorer.predictor FD` in a session of its own: a terminal's Ctrl-C (sent
to the foreground process group) reaches only the scorer, which finishes the batches in hand
with the worker's help; it ignores SIGINT and SIGTERM sent to it directly too (a service
manager may signal every process), and ends when the scorer closes the socket or dies. The
model goes over the socket after start-up, and the socket carries one batch at a time: `submit`
is called only after the previous `result`, so the worker is idle and reading when a batch is
written.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

STARTUP_TIMEOUT_SECONDS = 120.0  # interpreter, imports and unpickling the model: ~2 s here
PROJECT_ROOT = Path(__file__).resolve().parents[1]


# What a model returns per batch (`model_output`).
NUMBERS = "numbers"  # a regressor: predictions as float64
CLASSES = "classes"  # a classifier: (predicted classes, None)
CLASSES_AND_PROBABILITIES = "classes+probabilities"  # (predicted classes, predict_proba as float64)
OUTPUTS = (NUMBERS, CLASSES, CLASSES_AND_PROBABILITIES)


class PredictorFailed(RuntimeError):
    """The predict process died or its model raised: the batch is not scored."""


def forest_trees(model: Any) -> list | None:
    """The trees of a single-output scikit-learn forest regressor predicting in one thread, else None.

    Such a forest's `predict` is its trees' predictions summed in order and divided by their count;
    at a low rate, batches of a few dozen records, most of its 11-15 ms a call is validation and
    joblib dispatch around the trees' 5 ms (`bench/latency_bench.py`'s notes)."""
    try:
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return None
    if (
        type(model) in (RandomForestRegressor, ExtraTreesRegressor)
        and getattr(model, "n_outputs_", 0) == 1
        and model.n_jobs in (None, 1)
        and all(hasattr(tree, "tree_") for tree in model.estimators_)
    ):
        return list(model.estimators_)
    return None


def forest_predict(trees: list, batch: Any) -> np.ndarray:
    """What `ForestRegressor.predict` returns for an already-valid batch, bit for bit: the same
    float32 input (CSR stays CSR), each tree's `tree_.predict` added in order, divided at the end."""
    if hasattr(batch, "tocsr"):
        X = batch.astype(np.float32).tocsr()
    else:
        X = np.ascontiguousarray(batch, dtype=np.float32)
    total = np.zeros(X.shape[0], dtype=np.float64)
    for tree in trees:
        total += tree.tree_.predict(X)[:, 0]
    total /= len(trees)
    return total


def model_output(model: Any, outputs: str, batch: Any, trees: list | None = None) -> Any:
    """One batch through the model: an (n,) float array (NUMBERS), or (the (n,) predicted classes,
    None or the (n, k) probabilities in the model's `classes_` order). `trees`: the model's
    `forest_trees`, to predict without the forest's per-call overhead."""
    if outputs == NUMBERS:
        if trees is not None:
            return forest_predict(trees, batch)
        return np.asarray(model.predict(batch), dtype=float)
    classes = np.asarray(model.predict(batch))
    if outputs == CLASSES:
        return classes, None
    return classes, np.asarray(model.predict_proba(batch), dtype=float)


def serve_predictions(connection: Connection) -> None:
    """The worker: (outputs, the model), then batches in, ("ok", model_output) or ("error",
    traceback) out, until the socket closes."""
    try:
        try:
            outputs, model = connection.recv()
        except (EOFError, OSError):
            return
        except Exception:  # noqa: BLE001 - a model this process cannot load: say why
            connection.send(("error", traceback.format_exc()))
            return
        connection.send(("ready", None))
        trees = forest_trees(model) if outputs == NUMBERS else None
        while True:
            try:
                batch = connection.recv()
            except (EOFError, OSError):
                return
            try:
                reply = ("ok", model_output(model, outputs, batch, trees))
            except Exception:  # noqa: BLE001 - the scorer decides what a failed batch means
                reply = ("error", traceback.format_exc())
            connection.send(reply)
    except (BrokenPipeError, ConnectionResetError):
        return  # the scorer closed the socket while a reply was pending: it no longer wants it


class PredictProcess:
    """`submit(batch)` then `result()`, one batch at a time, in a spawned process holding the model.
    `outputs`: what `result()` returns (see `model_output`)."""

    def __init__(self, model: Any, outputs: str = NUMBERS) -> None:
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        ours, theirs = socket.socketpair()
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        with ours, theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "scorer.predictor", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                start_new_session=True,
                env=environment,
            )
            self._connection = Connection(
                os.dup(ours.fileno())
            )  # theirs closes here: the worker holds the only copy
        self._waiting = False
        self._closed = False
        try:
            self._connection.send((outputs, model))
        except OSError as exc:
            self.close()
            raise self._died() from exc
        if not self._connection.poll(STARTUP_TIMEOUT_SECONDS):
            self.close()
            raise PredictorFailed(
                f"the predict process did not load the model within {STARTUP_TIMEOUT_SECONDS:.0f} s"
            )
        status, payload = self._receive()
        if status != "ready":
            self.close()
            raise PredictorFailed(f"the predict process could not load the model:\n{payload}")

    def submit(self, batch: Any) -> None:
        """A batch as `model.predict` takes it (a frame, or the matrix a pipeline's transforms made)."""
        if self._waiting:
            raise RuntimeError("submit() before the previous result()")
        try:
            self._connection.send(batch)
        except OSError as exc:  # BrokenPipeError included
            raise self._died() from exc
        self._waiting = True

    def result(self) -> Any:
        """The last submitted batch's `model_output`."""
        if not self._waiting:
            raise RuntimeError("result() without a submit()")
        self._waiting = False
        status, payload = self._receive()
        if status != "ok":
            raise PredictorFailed(
                f"the model failed on a batch; in the predict process:\n{payload}"
            )
        return payload

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc

    def _died(self) -> PredictorFailed:
        try:
            code = self._process.wait(1)  # reap it, for its exit code
        except subprocess.TimeoutExpired:
            code = None
        return PredictorFailed(f"the predict process died (exit code {code})")

    def close(self) -> None:
        """End the worker (idempotent): it reads EOF and returns; killed if it does not within 10 s."""
        if self._closed:
            return
        self._closed = True
        self._connection.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(argv: list[str] | None = None) -> int:
    """`python -m scorer.predictor FD`: serve predictions on the socket FD until its other end closes."""
    argv = sys.argv[1:] if argv is None else argv
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    serve_predictions(Connection(int(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
