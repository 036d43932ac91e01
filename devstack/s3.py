"""A local S3 server (moto, from PyPI) holding the broker's data, so a broker can die and come back.

Tansu's only durable storage engine is `s3://` (see ../shared/BROKER.md); moto implements the
conditional writes (If-Match / If-None-Match) Tansu relies on. moto keeps objects in its own
memory: the data lives as long as the moto process, which is what a broker-restart test needs.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.broker import free_port, terminate, wait_for_port


@dataclass
class LocalS3:
    port: int
    bucket: str
    process: subprocess.Popen

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> str:
        """Tansu's --storage-engine value for this bucket."""
        return f"s3://{self.bucket}/"

    def tansu_env(self) -> dict[str, str]:
        """What Tansu's S3 client reads (object_store's AmazonS3Builder::from_env)."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self) -> None:
        terminate(self.process)


def start_s3(bucket: str = "tansu", log_path: Path | None = None, timeout: float = 30.0) -> LocalS3:
    """Start moto's S3 server on a free loopback port and create `bucket`."""
    port = free_port()
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    local = LocalS3(port, bucket, process)
    try:
        wait_for_port(port, timeout)
        with urllib.request.urlopen(
            urllib.request.Request(f"{local.endpoint}/{bucket}", method="PUT"), timeout=10
        ):
            pass
    except Exception:
        local.stop()
        raise
    return local
