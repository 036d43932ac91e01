"""Shared fixtures: the data folder, one trained model, and the local broker for a session."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.support import ROOT, KafkaEnv

SHARED_SEABORN = ROOT.parent / "shared" / "data" / "seaborn"
if "SEABORN_DATA" not in os.environ and (SHARED_SEABORN / "diamonds.csv").exists():
    os.environ["SEABORN_DATA"] = str(SHARED_SEABORN)


def trained(path: Path, example: str) -> Path:
    """A model dir of the shipped example, trained here unless `path` holds one this scikit-learn can load."""
    import subprocess
    import sys

    import sklearn

    metadata = path / "metadata.json"
    if (
        not metadata.exists()
        or not (path / "schema.yaml").exists()
        or json.loads(metadata.read_text())["libraries"]["scikit-learn"] != sklearn.__version__
    ):
        subprocess.run(
            [sys.executable, "-m", "scorer", "train", "--example", example],
            cwd=ROOT,
            check=True,
            env={**os.environ, "MODEL_DIR": str(path)},
        )
    return path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The diamonds model: MODEL_DIR's if it loads here, else trained once into it (~40 s)."""
    return trained(Path(os.environ.get("MODEL_DIR", ROOT / "artifacts")).resolve(), "diamonds")


@pytest.fixture(scope="session")
def affairs_dir(model_dir) -> Path:
    """The shipped classification example, in a folder of the diamonds model's (git-ignored)."""
    return trained(model_dir / "affairs", "affairs")


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from devstack.broker import start_broker

    local = start_broker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    yield local
    local.stop()


@pytest.fixture
def kafka(broker, model_dir) -> KafkaEnv:
    """Per-test topic names on the session's broker."""
    return KafkaEnv(broker.bootstrap, uuid.uuid4().hex[:10], model_dir)
