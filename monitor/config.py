"""The monitor's configuration: one frozen dataclass for `run`, `worker` and `evaluate`, the flags
that fill it (each default written once, in the dataclass; the environment overrides it) and the
checks every start makes, each failing with one line naming the flag to change (exit 2).

>>> config = MonitorConfig(window="5m", step="10s")
>>> config.time_based, config.window_size, config.step_size, config.window_state
(True, 300000, 10000, {'kind': 'time', 'window': 300000, 'step': 10000})
>>> MonitorConfig(window="1000", step="300")
Traceback (most recent call last):
...
ValueError: --window (1000) must be a multiple of --step (300): windows are built from whole steps
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contract.settings import DEFAULT_PARTITIONS, Groups, Topics
from monitor.calibration import MODES

GAUGE_REFRESH_SECONDS = (
    0.5  # gauges follow a batch at most this often unless a pane closed (see monitor.run)
)

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")


def parse_span(text: str, name: str = "--window") -> tuple[int, str]:
    """'1000' -> (1000, 'records'); '30s' / '5m' / '1h' / '500ms' -> (milliseconds, 'ms')."""
    match = _SPAN.match(str(text))
    if not match or int(match.group(1)) <= 0:
        raise ValueError(
            f"{name} must be a positive record count (1000) or a duration (30s, 5m, 1h), got {text!r}"
        )
    value, unit = int(match.group(1)), match.group(2)
    return (value, "records") if unit is None else (value * _UNITS_MS[unit], "ms")


def parse_duration_ms(text: str, name: str) -> int:
    value, unit = parse_span(text, name)
    if unit != "ms":
        raise ValueError(f"{name} must be a duration with a unit (30s, 5m, 1h), got {text!r}")
    return value


@dataclass(frozen=True)
class MonitorConfig:
    """Every setting of the monitor's processes; the defaults here are the flags' defaults."""

    group: str = Groups.monitor  # consumer group, also the key of the state snapshots
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8000
    window: str = "1000"  # records, or a duration: event-time window
    step: str = "250"  # same kind as window
    ert: float = 10_000_000  # expected records between false alarms
    thresholds: str = "calibrated"
    label_ttl: str = (
        "1h"  # see monitor.join: how much later than other labels (event time) a label may come
    )
    state_interval: float = 5.0  # seconds between state snapshots (and offset commits)
    batch_size: int = 5000
    batch_timeout: float = (
        0.05  # a batch is at most this late (consume() waits for a full batch or this)
    )
    partitions: int = DEFAULT_PARTITIONS  # for the topics the monitor creates (inputs, DLQ)
    estimate: bool = True  # estimate the performance without labels (monitor.estimate)
    error_test: bool = True  # test the joined records' errors' distribution too (monitor.errortest)
    public_url: str | None = None  # where people open the page (alerts link to it); None: no link
    grace: str = "5s"  # evaluate: how long (wall clock) a window waits for a slow partition
    window_size: int = field(init=False)
    step_size: int = field(init=False)
    time_based: bool = field(init=False)
    label_ttl_ms: int = field(init=False)
    grace_s: float = field(init=False)

    def __post_init__(self) -> None:
        window, kind = parse_span(self.window, "--window")
        step, step_kind = parse_span(self.step, "--step")
        if kind != step_kind:
            raise ValueError(
                f"--window {self.window} and --step {self.step} must both be record counts or both durations"
            )
        if step > window:
            raise ValueError(
                f"--step ({self.step}) is longer than --window ({self.window}): records between "
                "evaluations would never be tested; lower --step or raise --window"
            )
        if window % step:
            raise ValueError(
                f"--window ({self.window}) must be a multiple of --step ({self.step}): windows are "
                "built from whole steps"
            )
        object.__setattr__(self, "window_size", window)
        object.__setattr__(self, "step_size", step)
        object.__setattr__(self, "time_based", kind == "ms")
        object.__setattr__(self, "label_ttl_ms", parse_duration_ms(self.label_ttl, "--label-ttl"))
        object.__setattr__(self, "grace_s", parse_duration_ms(self.grace, "--grace") / 1000)
        if not self.ert > 0:
            raise ValueError("--ert (expected records between false alarms) must be > 0")
        if self.thresholds not in MODES:
            raise ValueError(f"--thresholds must be one of {', '.join(MODES)}")
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError("--metrics-port must be 0-65535 (0 disables the metrics server)")
        if self.batch_size < 1 or self.batch_timeout <= 0:
            raise ValueError("--batch-size must be >= 1 and --batch-timeout > 0")
        if self.state_interval < 0:
            raise ValueError("--state-interval must be >= 0 seconds")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.fragment
                or parts.query
            ):
                raise ValueError(
                    f"--public-url {self.public_url!r}: give the page's address as people open it, "
                    "http(s)://host[:port]/path, without ?query or #fragment"
                )
            if not self.public_url.endswith("/") and not parts.path:
                object.__setattr__(self, "public_url", self.public_url + "/")
        if self.partitions < 1:
            raise ValueError("--partitions must be at least 1")
        if not self.group:
            raise ValueError("--group (MONITOR_GROUP) must not be empty")

    @property
    def window_state(self) -> dict[str, Any]:
        """What a snapshot must match to be loaded: pane ids only mean something for one window shape."""
        return {
            "kind": "time" if self.time_based else "count",
            "window": self.window_size,
            "step": self.step_size,
        }

    def require_time_windows(self, command: str) -> None:
        """ValueError unless the window is in event time: what `worker` and `evaluate` can share."""
        if not self.time_based:
            raise ValueError(
                f"monitor {command} needs an event-time window (e.g. --window 5m --step 30s): a count "
                "window depends on the order records arrive across partitions, so it runs in one "
                "process: use `monitor run`"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> MonitorConfig:
        """The configuration the flags of `add_arguments` give (ValueError naming the flag to change)."""
        given = {
            f.name: getattr(args, f.name) for f in fields(cls) if f.init and hasattr(args, f.name)
        }
        for switch in ("estimate", "error_test"):  # on|off flags
            if switch in given:
                given[switch] = given[switch] == "on"
        return cls(**given)


class NotCoPartitioned(ValueError):
    """The predictions and labels topics cannot be split between workers."""


def check_co_partitioned(topics: Topics, counts: Mapping[str, int]) -> int:
    """The predictions topic's partition count (`counts`: {topic: partitions}); NotCoPartitioned when
    the labels topic's differs."""
    predictions, labels = counts.get(topics.predictions, 0), counts.get(topics.labels, 0)
    if predictions != labels:
        raise NotCoPartitioned(
            f"the predictions topic {topics.predictions} has {predictions} partitions and the labels topic "
            f"{topics.labels} {labels}: workers join a prediction and its label only when both topics have the same "
            "partition count and are keyed by record id; recreate one of them, or run `monitor run` (one instance)"
        )
    return predictions


# -- the flags -------------------------------------------------------------------------------------
_DEFAULTS = MonitorConfig()


def add_arguments(sub: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """The model, window, budget and consumer flags shared by run, worker and evaluate; each default
    is MonitorConfig's unless its environment variable is set."""
    d = _DEFAULTS
    # "%(default).0s" prints nothing: it only keeps the formatter from adding "(default: None)".
    sub.add_argument(
        "--schema",
        type=Path,
        help="the model's schema file (default: MODEL_DIR/schema.yaml)%(default).0s",
    )
    sub.add_argument(
        "--reference",
        type=Path,
        help="the model's reference file, CSV or Parquet "
        "(default: MODEL_DIR/reference.csv)%(default).0s",
    )
    sub.add_argument(
        "--model-dir",
        type=Path,
        default=Path(env.get("MODEL_DIR", "artifacts")),
        help="folder with schema.yaml and reference.csv (env MODEL_DIR)",
    )
    sub.add_argument(
        "--group",
        default=Groups.from_env(env).monitor,
        help="consumer group, also the state key (env MONITOR_GROUP)",
    )
    sub.add_argument(
        "--metrics-host",
        default=env.get("METRICS_HOST", d.metrics_host),
        help="metrics bind address (env METRICS_HOST)",
    )
    sub.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("MONITOR_METRICS_PORT", d.metrics_port)),
        help="Prometheus /metrics port, 0 = off (env MONITOR_METRICS_PORT)",
    )
    sub.add_argument(
        "--window",
        default=env.get("MONITOR_WINDOW", d.window),
        help="records per window (1000) or an event-time span (30s, 5m, 1h) (env MONITOR_WINDOW)",
    )
    sub.add_argument(
        "--step",
        default=env.get("MONITOR_STEP", d.step),
        help="evaluate every this many records or this long; same kind as --window, divides it "
        "(env MONITOR_STEP)",
    )
    sub.add_argument(
        "--ert",
        type=float,
        default=float(env.get("MONITOR_ERT", d.ert)),
        help="calibrated mode: expected records between false alarms (env MONITOR_ERT)",
    )
    sub.add_argument(
        "--thresholds",
        choices=MODES,
        default=env.get("MONITOR_THRESHOLDS", d.thresholds),
        help="calibrated: thresholds from --ert and the window size; fixed: the tutorial's 0.1 rules "
        "(env MONITOR_THRESHOLDS)",
    )
    sub.add_argument(
        "--label-ttl",
        default=env.get("MONITOR_LABEL_TTL", d.label_ttl),
        help="how much later in event time than other records' labels a label may come: a prediction "
        "waits for its label until labels this much newer than it have come on every label partition "
        "(a label waits likewise for its prediction), so a label sent soon after its prediction always "
        "joins whatever the event-time spacing of the stream; at most 200,000 wait per side "
        "(env MONITOR_LABEL_TTL)",
    )
    sub.add_argument(
        "--state-interval",
        type=float,
        default=float(env.get("MONITOR_STATE_INTERVAL", d.state_interval)),
        help="seconds between state snapshots and offset commits (env MONITOR_STATE_INTERVAL)",
    )
    sub.add_argument("--batch-size", type=int, default=d.batch_size, help="most messages per batch")
    sub.add_argument(
        "--batch-timeout",
        type=float,
        default=d.batch_timeout,
        help="longest wait for a batch to fill: a batch is --batch-size messages or what came in this time",
    )
    sub.add_argument(
        "--estimate",
        choices=("on", "off"),
        default=env.get("MONITOR_ESTIMATE", "on" if d.estimate else "off"),
        help="estimate the model's performance without labels (the MSE from a nanny model of the "
        "reference's errors, a classifier's error rate from its calibrated probabilities): gauges "
        "estimated_*, alert EstimatedPerformanceDrop (env MONITOR_ESTIMATE)",
    )
    sub.add_argument(
        "--error-test",
        choices=("on", "off"),
        default=env.get("MONITOR_ERROR_TEST", "on" if d.error_test else "off"),
        help="besides the MSE or error-rate ratio, test the distribution of the labelled records' errors "
        "against the reference's (a regressor's residuals by KS, a classifier's errors weighted by its "
        "confidence) over the window, its newest half and its newest pane, calibrated with the other "
        "tests: gauges concept_error_*, alert ConceptErrorDrift (env MONITOR_ERROR_TEST)",
    )
    sub.add_argument(
        "--public-url",
        default=env.get("MONITOR_PUBLIC_URL") or None,
        metavar="URL",
        help="the address people open this monitor's page at (it is served at / on the metrics port), "
        "e.g. http://monitor.example:8000/: alerts link to it, with the column as anchor "
        "(<url>#feature-carat); none: no link (env MONITOR_PUBLIC_URL)",
    )
    sub.add_argument(
        "--partitions",
        type=int,
        default=int(env.get("TOPIC_PARTITIONS", d.partitions)),
        help="partitions for the input and DLQ topics if this command creates them (env TOPIC_PARTITIONS)",
    )
    sub.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the broker at start",
    )


def add_grace(sub: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """`evaluate`'s own flag."""
    sub.add_argument(
        "--grace",
        default=env.get("MONITOR_GRACE", _DEFAULTS.grace),
        help="evaluate a window once every partition is past it, or this long (wall clock) after the "
        "first one was (env MONITOR_GRACE)",
    )
