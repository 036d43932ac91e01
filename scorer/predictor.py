"""The forest in a process of its own, so it predicts one batch while the scorer delivers another.

A thread does not do: each of the forest's trees takes the GIL back several times per call, and
while the scorer's thread decodes or produces, every retake waits out the interpreter's switch
interval (a 5,000-record predict went from 17 to 190 us a record beside a busy Python thread,
and 30 with a 0.1 ms interval). A process shares nothing; a batch's frame goes over a pipe in
about a millisecond.

The pipe carries one batch at a time: `submit` is called only after the previous `result`, so the
worker is idle and reading when the frame is written.
"""
from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd


STARTUP_TIMEOUT_SECONDS = 120.0  # spawn, imports and unpickling the model: ~2 s here


class PredictorFailed(RuntimeError):
    """The predict process died or its model raised: the batch is not scored."""


def serve_predictions(connection: Connection, pipeline: Any) -> None:
    """The worker: frames in, ("ok", predictions) or ("error", message) out, until the pipe closes.

    Ctrl-C in a terminal signals the whole process group and the scorer finishes its batches on
    SIGTERM, so the worker ignores both: it ends when the scorer closes the pipe or dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection.send(("ready", None))
    while True:
        try:
            frame = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", np.asarray(pipeline.predict(frame), dtype=float))
        except Exception as exc:  # noqa: BLE001 - the scorer decides what a failed batch means
            reply = ("error", f"{type(exc).__name__}: {exc}")
        connection.send(reply)


class PredictProcess:
    """`submit(frame)` then `result()`, one batch at a time, in a spawned process holding the model."""

    def __init__(self, pipeline: Any) -> None:
        # spawn, not fork: the parent may already run librdkafka and metrics threads.
        context = multiprocessing.get_context("spawn")
        self._connection, worker_end = context.Pipe()
        self._process = context.Process(target=serve_predictions, args=(worker_end, pipeline),
                                         name="scorer-predict", daemon=True)
        self._process.start()
        worker_end.close()  # only the worker holds it now: our death closes the pipe and ends the worker
        self._waiting = False
        if not self._connection.poll(STARTUP_TIMEOUT_SECONDS):
            self.close()
            raise PredictorFailed(f"the predict process did not start within {STARTUP_TIMEOUT_SECONDS:.0f} s")
        self._receive()  # "ready": the model is loaded and the worker ignores signals from here on

    def submit(self, frame: pd.DataFrame) -> None:
        if self._waiting:
            raise RuntimeError("submit() before the previous result()")
        try:
            self._connection.send(frame)
        except OSError as exc:  # BrokenPipeError included
            raise self._died() from exc
        self._waiting = True

    def result(self) -> np.ndarray:
        self._waiting = False
        status, payload = self._receive()
        if status != "ok":
            raise PredictorFailed(f"the model failed on a batch: {payload}")
        return payload

    def _receive(self) -> tuple[str, Any]:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc

    def _died(self) -> PredictorFailed:
        self._process.join(1)  # reap it, for its exit code
        return PredictorFailed(f"the predict process died (exit code {self._process.exitcode})")

    def close(self) -> None:
        self._connection.close()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
