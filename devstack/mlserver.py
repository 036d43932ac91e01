"""Start the real MLServer (PyPI `mlserver` + `mlserver-sklearn`) in Kafka mode against a local broker.

MLServer lives in its own virtualenv (`.venv-mlserver`, `MLSERVER_PYTHON` overrides the
interpreter): it brings ~500 MB of FastAPI, gRPC, OpenTelemetry and tritonclient that the
monitor never needs, and pins nothing we pin. Its scikit-learn, numpy and pandas are pinned to
ours (requirements-mlserver.txt), because its sklearn runtime unpickles our model.joblib and a
pickled estimator is only guaranteed to load in the scikit-learn that wrote it.

What MLServer does in Kafka mode (mlserver/kafka/, measured with 1.7.1 on Tansu):
- one `AIOKafkaConsumer` on `kafka_topic_input`, **without a group**: it starts at the latest
  offset, so a request produced before its first fetch is never answered. `probe` sends a request
  until one is answered: readiness is a round trip, not a log line.
- the model is named by the header `mlserver-model`; the Kafka key, when set, replaces the body's
  `id`; the response goes to `kafka_topic_output` keyed by that id (a uuid MLServer makes up when
  the request has neither key nor id), with `Ce-*` headers.
- a request it cannot serve (unknown model, bad tensor) is logged and dropped: nothing is written.

Three traps, each dealt with here or in the caller:
- uvloop 0.23 kills its inference worker at start: the venv pins uvloop==0.21.0.
- its pandas codec (`PandasCodec.encode_request`, what an MLServer client uses to build
  requests) raises KeyError 'O' on pandas-3 string columns: clients convert them to `object` first
  (`astype(object)`); the server's own decoding of BYTES inputs is not affected.
- its consumer keeps aiokafka's `fetch_max_wait_ms=500`, and Tansu holds every fetch that long even
  when records arrive meanwhile, so each request waits up to 0.5 s before MLServer even sees it.
  MLServer has no setting for it; `start_mlserver(fetch_max_wait_ms=...)` launches the real CLI with
  that one consumer argument changed (a Kafka broker answers a waiting fetch as soon as data
  arrives, so the patch is only needed for the local broker).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import free_port

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".venv-mlserver"
MODEL_HEADER = "mlserver-model"  # mlserver.kafka.handlers.MLSERVER_MODEL_NAME_HEADER

# Runs in MLServer's interpreter: its CLI, with the Kafka server's consumer built with one more
# keyword argument. The Kafka server runs in MLServer's main process, so patching it there suffices.
_LAUNCH = """\
import functools, os, sys
import mlserver.kafka.server as kafka_server
wait = os.environ.get("DEVSTACK_FETCH_MAX_WAIT_MS")
if wait:
    kafka_server.AIOKafkaConsumer = functools.partial(kafka_server.AIOKafkaConsumer, fetch_max_wait_ms=int(wait))
from mlserver.cli.main import main
sys.argv = ["mlserver", *sys.argv[1:]]
sys.exit(main())
"""


class MLServerMissing(RuntimeError):
    """No MLServer interpreter: the message says how to install it."""


def mlserver_python() -> str:
    """The interpreter that has MLServer: MLSERVER_PYTHON, else .venv-mlserver/bin/python."""
    python = os.environ.get("MLSERVER_PYTHON") or str(DEFAULT_VENV / "bin" / "python")
    if not Path(python).exists():
        raise MLServerMissing(
            f"no MLServer interpreter at {python}: run `make mlserver` (a separate venv from "
            "requirements-mlserver.txt) or set MLSERVER_PYTHON"
        )
    return python


@dataclass(frozen=True)
class ServedModel:
    """One model MLServer serves: its name (the `mlserver-model` header) and a joblib file."""

    name: str
    model_file: Path
    version: str = "v1"


def write_repository(
    folder: Path, models: Sequence[ServedModel], settings: Mapping[str, object]
) -> Path:
    """A model repository MLServer loads at start: settings.json, and one folder per model holding
    model-settings.json and a link to its model.joblib."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    for model in models:
        home = folder / model.name
        home.mkdir(exist_ok=True)
        link = home / "model.joblib"
        if not link.exists():
            link.symlink_to(Path(model.model_file).resolve())
        (home / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": model.name,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": model.version},
                },
                indent=2,
            )
        )
    return folder


@dataclass
class LocalMLServer:
    process: subprocess.Popen
    http_port: int
    request_topic: str
    response_topic: str
    folder: Path

    def ready(self, model: str) -> bool:
        """`model` loaded (its HTTP ready endpoint); the Kafka consumer may still be starting.

        Not /v2/health/ready: a model that failed to load is dropped from the registry, and a server
        with no model left calls itself ready."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/v2/models/{model}/ready", timeout=1
            ) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to its process group (the server, its inference workers, multiprocessing's resource
        tracker), SIGKILL after `timeout`: a server whose port was taken lingers after SIGTERM."""
        if self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()


def start_mlserver(
    models: Sequence[ServedModel],
    bootstrap: str,
    request_topic: str,
    response_topic: str,
    folder: Path,
    log_path: Path | None = None,
    fetch_max_wait_ms: int | None = 10,
    parallel_workers: int = 1,
    timeout: float = 120.0,
) -> LocalMLServer:
    """MLServer in Kafka mode on loopback, its models loaded (`probe` before sending requests).

    fetch_max_wait_ms: its consumer's fetch wait (None: aiokafka's 500 ms, see the module doc).
    parallel_workers: MLServer's inference processes (its default 1; 0 runs the model in the server)."""
    python = mlserver_python()
    http_port, grpc_port = free_port(), free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_endpoint": None,
        "parallel_workers": parallel_workers,
        "kafka_enabled": True,
        "kafka_servers": bootstrap,
        "kafka_topic_input": request_topic,
        "kafka_topic_output": response_topic,
    }
    write_repository(folder, models, settings)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DEVSTACK_FETCH_MAX_WAIT_MS", None)
    if fetch_max_wait_ms is not None:
        env["DEVSTACK_FETCH_MAX_WAIT_MS"] = str(fetch_max_wait_ms)
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    # Its own session: stop() signals the whole group, inference workers included.
    process = subprocess.Popen(
        [python, "-c", _LAUNCH, "start", str(folder)],
        cwd=folder,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LocalMLServer(process, http_port, request_topic, response_topic, folder)
    deadline = time.monotonic() + timeout
    waiting = [model.name for model in models]
    while waiting:
        if process.poll() is not None:
            raise RuntimeError(
                f"MLServer exited with {process.returncode} before its models loaded (log: {log_path})"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise TimeoutError(
                f"MLServer's model(s) {', '.join(waiting)} not ready after {timeout} s: an inference "
                f"worker that dies at start (uvloop 0.23) looks like this (log: {log_path})"
            )
        waiting = [name for name in waiting if not server.ready(name)]
        time.sleep(0.2)
    log.info(
        "MLServer on 127.0.0.1:%d reading %s, writing %s", http_port, request_topic, response_topic
    )
    return server


def probe(
    bootstrap: str,
    server: LocalMLServer,
    model: str,
    request: Mapping[str, object],
    timeout: float = 60.0,
    every: float = 2.0,
) -> list[str]:
    """Send `request` (an OIP body) under fresh ids `probe-<hex>` until one is answered; the ids
    sent, so a test can leave them out. Needed because MLServer's group-less consumer starts at the
    latest offset: what is produced before its first fetch is never read."""
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"probe-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    sent: list[str] = []
    deadline, next_send = time.monotonic() + timeout, 0.0
    # librdkafka looks a missing topic up again only every topic.metadata.refresh.interval.ms (5 min):
    # subscribing before the response topic exists would never see it.
    while server.response_topic not in consumer.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            consumer.close()
            raise TimeoutError(
                f"topic {server.response_topic} does not exist: create it before probing"
            )
        time.sleep(0.2)
    consumer.subscribe([server.response_topic])
    try:
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                ident = f"probe-{uuid.uuid4().hex[:12]}"
                producer.produce(
                    server.request_topic,
                    json.dumps({**request, "id": ident}).encode(),
                    key=ident,
                    headers=[(MODEL_HEADER, model.encode())],
                )
                producer.flush(10)
                sent.append(ident)
                next_send = time.monotonic() + every
            message = consumer.poll(0.2)
            if (
                message is not None
                and not message.error()
                and (message.key() or b"").decode() in sent
            ):
                return sent
        raise TimeoutError(f"MLServer answered none of {len(sent)} probe requests in {timeout} s")
    finally:
        consumer.close()
