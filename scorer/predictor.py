"""The forest in a process of its own, so it predicts one batch while the scorer delivers another.

A thread does not do: each of the forest's trees takes the GIL back several times per call, and
while the scorer's thread decodes or produces, every retake waits for it (`bench/predict_bench.py`
compares the two). A process shares nothing; a batch's frame goes over a pipe.

The pipe carries one batch at a time: `submit` is called only after the previous `result`, so the
worker is idle and reading when the frame is written.
"""
from __future__ import annotations

import atexit
import multiprocessing
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pandas as pd

STARTUP_TIMEOUT_SECONDS = 120.0  # spawn, imports and unpickling the model: ~2 s here
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class PredictorFailed(RuntimeError):
    """The predict process died or its model raised: the batch is not scored."""


def serve_predictions(connection: Connection, pipeline: Any) -> None:
    """The worker: frames in, ("ok", predictions) or ("error", traceback) out, until the pipe closes.

    Ctrl-C in a terminal signals the whole process group, and the scorer finishes its batches on
    SIGINT/SIGTERM, so the worker ignores both: it ends when the scorer closes the pipe or dies.
    It was started ignoring them already (`_start_ignoring_stop_signals`): one that lands while it
    imports and unpickles the model does not end it either."""
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
    try:
        connection.send(("ready", None))
        while True:
            try:
                frame = connection.recv()
            except (EOFError, OSError):
                return
            try:
                reply = ("ok", np.asarray(pipeline.predict(frame), dtype=float))
            except Exception:  # noqa: BLE001 - the scorer decides what a failed batch means
                reply = ("error", traceback.format_exc())
            connection.send(reply)
    except (BrokenPipeError, ConnectionResetError):
        return  # the scorer closed the pipe while a reply was pending: it no longer wants it


def _start_ignoring_stop_signals(process: multiprocessing.process.BaseProcess) -> None:
    """Start `process` with SIGINT and SIGTERM ignored from its first instruction.

    An ignored signal stays ignored across exec, and Python then installs no KeyboardInterrupt
    handler (a blocked signal mask does not carry over: spawn resets it). Dispositions can only
    be changed from the main thread; elsewhere the worker ignores them once it runs."""
    if threading.current_thread() is not threading.main_thread():
        process.start()
        return
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    changed = [s for s, handler in previous.items() if handler is not None]  # None: set outside Python
    for stop_signal in changed:
        signal.signal(stop_signal, signal.SIG_IGN)
    try:
        process.start()  # a few ms, in which a signal to this process is lost
    finally:
        for stop_signal in changed:
            signal.signal(stop_signal, previous[stop_signal])


class PredictProcess:
    """`submit(frame)` then `result()`, one batch at a time, in a spawned process holding the model."""

    def __init__(self, pipeline: Any) -> None:
        context = multiprocessing.get_context("spawn")  # not fork: this process runs threads already
        self._connection, worker_end = context.Pipe()
        self._process = context.Process(target=serve_predictions, args=(worker_end, pipeline),
                                         name="scorer-predict", daemon=True)
        self._waiting = False
        self._closed = False
        _start_ignoring_stop_signals(self._process)
        worker_end.close()  # only the worker holds it now: our death closes the pipe and ends the worker
        # At exit, multiprocessing joins its daemon children after sending SIGTERM, which this
        # one ignores: closing the pipe first (atexit runs newest first) lets it end.
        atexit.register(self.close)
        if not self._connection.poll(STARTUP_TIMEOUT_SECONDS):
            self.close()
            raise PredictorFailed(f"the predict process did not start within {STARTUP_TIMEOUT_SECONDS:.0f} s")
        status, _ = self._receive()
        if status != "ready":
            self.close()
            raise PredictorFailed(f"the predict process said {status!r} instead of 'ready'")

    def submit(self, frame: pd.DataFrame) -> None:
        if self._waiting:
            raise RuntimeError("submit() before the previous result()")
        try:
            self._connection.send(frame)
        except OSError as exc:  # BrokenPipeError included
            raise self._died() from exc
        self._waiting = True

    def result(self) -> np.ndarray:
        if not self._waiting:
            raise RuntimeError("result() without a submit()")
        self._waiting = False
        status, payload = self._receive()
        if status != "ok":
            raise PredictorFailed(f"the model failed on a batch; in the predict process:\n{payload}")
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
        """End the worker (idempotent): it reads EOF and returns; killed if it does not within 10 s."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._connection.close()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
