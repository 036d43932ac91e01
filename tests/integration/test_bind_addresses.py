"""Metrics and the HTTP API listen only where they are told to (any 127.x.y.z is loopback on Linux)."""

from __future__ import annotations

import socket

import pytest

from devstack.broker import free_port
from tests.support import stop_process, wait_until

pytestmark = pytest.mark.broker

TOLD, OTHER = "127.0.0.2", "127.0.0.1"


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "module, args",
    [
        ("scorer", ["serve", "--host", TOLD]),
        ("scorer", ["run", "--metrics-host", TOLD]),
        ("monitor", ["run", "--metrics-host", TOLD]),  # groups get the test's suffix below
        ("producer", ["simulate", "--count", "0", "--rate", "10", "--metrics-host", TOLD]),
    ],
)
def test_listens_on_the_configured_address_only(kafka, tmp_path, module, args):
    port = free_port()
    port_flag = "--port" if args[0] == "serve" else "--metrics-port"
    # Per-test groups: Tansu keeps a member that left during its first join, and that group
    # never settles again (see docs/operations.md, "The local broker").
    group = ["--group", f"g-{kafka.suffix}"] if args[0] == "run" else []
    process = kafka.start(
        module,
        *args,
        *group,
        port_flag,
        str(port),
        log=tmp_path / "service.log",
        MONITOR_STATE_TOPIC=f"state-{kafka.suffix}",
    )
    try:
        wait_until(
            lambda: answers(TOLD, port),
            60,
            message=f"{module} {args[0]} listening on {TOLD}:{port}",
        )
        assert not answers(OTHER, port), f"{module} {args[0]} also answers on {OTHER}"
    finally:
        assert stop_process(process) == 0
