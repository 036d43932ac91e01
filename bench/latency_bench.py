"""Latency at a low rate and throughput at saturation, in one run (the two ends of the scorer's batching).

(a) offline: one vectorized predict over N records (`bench/scorer_bench.py`'s denominator);
(b) the scorer through the local broker draining N waiting records; (a) and (b) alternate for
    --rounds rounds and the medians are compared (bar: >= 0.9 x offline);
(c) the simulator at --rate records/s for --seconds s (labels too) through the scorer, read by a
    tail consumer: produce -> prediction acknowledged, p50/p99 (bars at 1,000 records/s: < 50 ms
    and < 250 ms), with where the time goes;
(d) the same stream again (new topics) with a monitor on its predictions and labels, once with
    count windows (the defaults) and once with time windows (--time-window/--time-step; one
    monitor per model, as deployed; --monitors-together runs both on one stream):
    `monitor_prediction_to_gauge_seconds` scraped from each, and (c)'s table for that stream (a
    monitor shares the 2 cores, so (c) runs without it).

How (c) is measured: from the feature's `ts` (the simulator stamps it with the wall clock just
before it calls produce(), so it is the send) to the moment the bench's tail consumer receives
the prediction. A consumer is served a record only once the broker has appended it, which is
when the broker acknowledges it to the scorer (acks=all, one broker), so the receive time bounds
the acknowledgement from above; the tail fetches with fetch.wait.max.ms=5 (Tansu holds every
fetch that long), so the bound is loose by at most ~5 ms. The scorer's own histogram
`scorer_event_to_prediction_seconds` (feature's Kafka timestamp to its flush() returning: the
acknowledgement itself, bucketed) is printed beside it as a check.

(d)'s histogram is per evaluated pane, from its oldest prediction's Kafka timestamp (the
scorer's produce() call) to the gauges that include it: a bound on every prediction of the
pane. Quantiles are read from the buckets as the upper edge of the bucket holding the quantile.
Only panes evaluated after each count-window monitor's first evaluation are counted: before it the
window is filling (count windows evaluate first at 1,000 records), which is start-up, not latency;
for time windows, after its first two windows and once it has caught up with the stream (the
first poll whose newly shown panes all came within a step of their end): a filling window meets a
new size every step, and each new size's categorical thresholds are computed on the loop (0.2-1 s
per column here), so a 1 s step falls behind while the window fills. The start-up is printed on a
line of its own. On a --monitor-seconds stream. With
time windows pane q holds event times [q*step, (q+1)*step), so its oldest record is ~q*step and
a value under 2 x step means the gauges came within a step of the pane's end.

(d) under page load (`--page-load`, in place of (d) above): the count-window monitor (the defaults)
on --page-rounds pairs of streams, alternating without and with a bench thread asking for its page
(`/` on the metrics port) --page-requests times a second from the simulator's start to the last
scrape, so a slow spell of the shared machine weighs on both. Each answer must be 200 text/html;
the bench counts them, the failures and their latency. The table gives, per condition, the medians
over rounds of the panes, the gauge lag's p50 and p99 (bucket edges), the ratio with / without of
p99 and the bar (the loop never waits: p99 with <= 1.10 x p99 without). Around 0.3-0.5 s the
histogram's edges are 25-33% apart, too coarse to resolve 10%, so two finer readings come with it:
p99 interpolated linearly within its bucket (as Prometheus' histogram_quantile does) and the exact
mean lag from `_sum` / `_count`. Beside them, what the page costs and what else weighed: the
monitor's CPU, its evaluations' mean wall-clock duration (`monitor_evaluation_duration_seconds`, on
the loop: a render holding the GIL, or the OS taking the core, lengthens it), (c)'s acknowledged
p99 of the same stream (a path the page does not touch) and the machine's CPU pressure (the share
of the stream's time some task waited for a CPU, /proc/pressure/cpu, whoever's).

Run: `.venv/bin/python bench/latency_bench.py [--records N] [--rounds R] [--rate R] [--seconds S]`
(`--skip-throughput` leaves out (a) and (b), `--skip-monitors` (d); `--page-load [--page-rounds N]
[--page-requests RATE]` runs (d) under page load).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Consumer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scorer_bench import (
    cpu_seconds,
    fill_features,
    offline_rate,
    sample_records,
    scorer_throughput,
    service_env,
)
from contract.artifacts import load_model_schema  # noqa: E402
from devstack.broker import free_port, start_broker  # noqa: E402
from devstack.demo import read_metrics  # noqa: E402
from scorer.model import load  # noqa: E402

TAIL_FETCH_WAIT_MS = 5
GAUGE_LAG = "monitor_prediction_to_gauge_seconds"
SCORER_LAG = "scorer_event_to_prediction_seconds"
PANE_CLOSE = "monitor_pane_close_to_gauge_seconds"
EVALUATION = "monitor_evaluation_duration_seconds"


def series(samples: dict, name: str, **labels: str) -> float:
    """The sum of every sample called `name` whose labels include `labels` (0 when absent)."""
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == x for k, x in labels.items())
    )


def buckets(samples: dict, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts {upper edge: count}, summed over its other labels."""
    edges: dict[float, float] = {}
    for (n, ls), v in samples.items():
        if n == f"{name}_bucket":
            edge = float(dict(ls)["le"])
            edges[edge] = edges.get(edge, 0.0) + v
    return dict(sorted(edges.items()))


def bucket_quantile(cumulative: dict[float, float], q: float) -> float:
    """The upper edge of the bucket holding quantile q (inf when it is past the last finite edge; nan if empty)."""
    total = cumulative.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    return next(edge for edge, count in cumulative.items() if count >= q * total)


def delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {edge: count - before.get(edge, 0.0) for edge, count in after.items()}


def share_within(cumulative: dict[float, float], edge: float) -> float:
    total = cumulative.get(float("inf"), 0.0)
    return cumulative.get(edge, float("nan")) / total if total else float("nan")


def interpolated_quantile(cumulative: dict[float, float], q: float) -> float:
    """Quantile q read as Prometheus' histogram_quantile does: linear between the edges of its
    bucket (an assumption that the bucket's values spread evenly; inf past the last finite edge)."""
    total = cumulative.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    lower, below = 0.0, 0.0
    for edge, count in cumulative.items():
        if count >= q * total:
            if edge == float("inf") or count == below:
                return edge
            return lower + (edge - lower) * (q * total - below) / (count - below)
        lower, below = edge, count
    return float("nan")


def lower_edge(cumulative: dict[float, float], edge: float) -> float:
    """The edge below `edge` (0 for the first bucket): how wide the bucket a quantile fell in is."""
    return max((e for e in cumulative if e < edge), default=0.0)


class Tail:
    """Reads a topic on a thread: (receive time s, Kafka timestamp ms, prediction) per message."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"tail-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": TAIL_FETCH_WAIT_MS,
                "enable.auto.commit": False,
            }
        )
        self.topic, self.received, self.done = topic, [], threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> Tail:
        while self.topic not in self.consumer.list_topics(timeout=10).topics:
            time.sleep(0.1)
        self.consumer.subscribe([self.topic])
        self.thread.start()
        return self

    def _read(self) -> None:
        # consume(n, timeout) waits for all n or the timeout: ask for one at a time with a short
        # timeout, or the receive time would be stamped up to the timeout late.
        while not self.done.is_set():
            for message in self.consumer.consume(1000, 0.001) or self.consumer.consume(1, 0.05):
                if message.error() is None:
                    self.received.append(
                        (time.time(), message.timestamp()[1], orjson.loads(message.value()))
                    )

    def stop(self) -> None:
        self.done.set()
        self.thread.join()
        self.consumer.close()


class PageLoad:
    """Asks for `url` `rate` times a second on a thread, on a fixed schedule (a slow answer delays
    the next request, never adds a burst after it): (status 200 and text/html) or the failure,
    and each answer's latency in ms."""

    def __init__(self, url: str, rate: float) -> None:
        self.url, self.interval = url, 1.0 / rate
        self.requests, self.latencies_ms, self.bytes = 0, [], 0
        self.failures: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._ask, daemon=True)

    def start(self) -> PageLoad:
        self.started = time.monotonic()
        self.thread.start()
        return self

    def _ask(self) -> None:
        next_at = time.monotonic()
        while not self.done.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + self.interval, time.monotonic())
            self.requests += 1
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    body, kind = response.read(), response.headers.get("Content-Type", "")
                    status = response.status
            except (OSError, http.client.HTTPException) as exc:  # refused, 503, timeout, reset
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if status == 200 and kind.split(";")[0].strip() == "text/html":
                self.latencies_ms.append((time.perf_counter() - began) * 1000)
                self.bytes += len(body)
            else:
                self.failures.append(f"{status} {kind}")

    def stop(self) -> dict:
        """{requests, answered, failures (the first 3 reasons), latency_ms (n,), seconds, bytes}."""
        self.done.set()
        self.thread.join()
        return {
            "requests": self.requests,
            "answered": len(self.latencies_ms),
            "failures": len(self.failures),
            "reasons": self.failures[:3],
            "latency_ms": np.array(self.latencies_ms),
            "bytes": self.bytes,
            "seconds": time.monotonic() - self.started,
        }


def cpu_pressure_us() -> float:
    """Microseconds some runnable task of this machine waited for a CPU, since boot (Linux PSI;
    nan without it): over a stream, how contended the shared cores were, whoever ran on them."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return float("nan")
    return float(some.rsplit("total=", 1)[1])


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(module: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def percentiles(values: np.ndarray) -> str:
    return f"p50 {np.percentile(values, 50):,.0f}, p99 {np.percentile(values, 99):,.0f}, max {values.max():,.0f}"


def low_rate_run(
    bootstrap: str,
    broker_pid: int,
    model_dir: Path,
    rate: float,
    seconds: float,
    logs: Path,
    monitors: dict[str, tuple[str, ...]],
    warm_evaluations: dict[str, int] | None = None,
    caught_up_within: dict[str, float] | None = None,
    page_rate: float = 0.0,
) -> dict:
    """The simulator at `rate` through a scorer and the `monitors` ({name: monitor run flags});
    every number of the run. A monitor's histograms count from its `warm_evaluations`-th
    evaluation on and, for those in `caught_up_within` ({name: seconds}), from the first poll
    (every 0.25 s) whose newly shown panes all came within that many seconds of their end.
    With `page_rate`, a thread asks each monitor for its page (`/`) that many times a second from
    the simulator's start to the last scrape (`PageLoad`; its counts under "<name>_page")."""
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "FEATURES_TOPIC": f"lat-f-{suffix}",
        "PREDICTIONS_TOPIC": f"lat-p-{suffix}",
        "DLQ_TOPIC": f"lat-d-{suffix}",
        "LABELS_TOPIC": f"lat-l-{suffix}",
        "MONITOR_DLQ_TOPIC": f"lat-md-{suffix}",
        "MONITOR_STATE_TOPIC": f"lat-ms-{suffix}",
    }
    env = service_env(bootstrap, topics, model_dir)
    ports = {"scorer": free_port(), **{name: free_port() for name in monitors}}
    processes = [
        start(
            "scorer",
            "run",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(ports["scorer"]),
            "--group",
            f"lat-s-{suffix}",
            env=env,
            log=logs / f"scorer-{suffix}.log",
        )
    ]
    processes += [
        start(
            "monitor",
            "run",
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(ports[name]),
            "--group",
            f"lat-m{name}-{suffix}",
            *flags,
            env=env,
            log=logs / f"monitor-{name}-{suffix}.log",
        )
        for name, flags in monitors.items()
    ]
    tail, loads = None, {}
    try:
        # Warm-up: every consumer joins its group before the timed stream starts.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "producer",
                "simulate",
                "--count",
                "10",
                "--rate",
                "0",
                "--id-prefix",
                "warm",
                "--label-delay",
                "0",
            ],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        tail = Tail(bootstrap, topics["PREDICTIONS_TOPIC"]).start()
        for name in monitors:
            wait_for(
                lambda n=name: (
                    series(
                        read_metrics(ports[n]),
                        "monitor_records_consumed_total",
                        topic=topics["PREDICTIONS_TOPIC"],
                    )
                    >= 10
                ),
                120,
                f"the {name}-window monitor",
            )
        wait_for(lambda: len(tail.received) >= 10, 60, "the warm-up predictions")
        scorer_before = read_metrics(ports["scorer"])
        count = int(rate * seconds)
        if page_rate > 0:
            loads = {
                name: PageLoad(f"http://127.0.0.1:{ports[name]}/", page_rate).start()
                for name in monitors
            }
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "producer",
                "simulate",
                "--count",
                str(count),
                "--rate",
                str(rate),
                "--label-delay",
                "1",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # CPU of each process over the stream: on 2 shared cores it is what the latency waits for.
        scorer = processes[0].pid
        pids = {
            "scorer": scorer,
            "predict process": int(
                Path(f"/proc/{scorer}/task/{scorer}/children").read_text().split()[0]
            ),
            "broker": broker_pid,
            "simulator": simulator.pid,
            **{f"monitor ({name})": process.pid for name, process in zip(monitors, processes[1:])},
        }
        cpu_before, stream_started = (
            {name: cpu_seconds(pid) for name, pid in pids.items()},
            time.monotonic(),
        )
        pressure_before = cpu_pressure_us()
        # A monitor's histogram is taken from its first evaluation of the timed stream on (the
        # window filling up before it is start-up); the warm-up's 10 records are in that fill.
        baseline: dict[str, dict] = {}
        previous: dict[str, dict] = {}
        caught_up_at: dict[str, float] = {}
        # CPU and pressure read while the simulator still runs (its process is gone once it ends):
        # the last reading taken in either loop below is the stream's end.
        cpu_end, pressure_end = (
            {name: cpu_seconds(pid) for name, pid in pids.items()},
            cpu_pressure_us(),
        )
        while len(baseline) < len(monitors) and simulator.poll() is None:
            cpu_end, pressure_end = (
                {name: cpu_seconds(pid) for name, pid in pids.items()},
                cpu_pressure_us(),
            )
            for name in monitors:
                samples = read_metrics(ports[name])
                if name in baseline or series(samples, "monitor_evaluations_total") < (
                    warm_evaluations or {}
                ).get(name, 1):
                    continue
                within = (caught_up_within or {}).get(name)
                if within is None:
                    baseline[name] = samples
                    continue
                shown = delta(
                    buckets(samples, PANE_CLOSE), buckets(previous.get(name, {}), PANE_CLOSE)
                )
                previous[name] = samples
                if shown.get(float("inf"), 0) > 0 and shown.get(within, 0) == shown[float("inf")]:
                    baseline[name], caught_up_at[name] = samples, time.monotonic() - stream_started
            time.sleep(0.25 if caught_up_within else 0.05)
        while simulator.poll() is None:
            cpu_end, pressure_end = (
                {name: cpu_seconds(pid) for name, pid in pids.items()},
                cpu_pressure_us(),
            )
            time.sleep(0.2)
        streamed_s = time.monotonic() - stream_started
        cpu_share = {name: (cpu_end[name] - cpu_before[name]) / streamed_s for name in pids}
        pressure = (pressure_end - pressure_before) / 1e6 / streamed_s
        wait_for(
            lambda: sum(str(p["id"]).startswith("sim-") for _, _, p in tail.received) >= count,
            60,
            "every prediction",
        )
        # The gauges of the last panes: the count window's last pane closes with the stream, the
        # time window's once a record beyond it arrives; wait until the evaluations stop growing.
        time.sleep(2.0)
        after = {name: read_metrics(port) for name, port in ports.items()}
    finally:
        pages = {name: load.stop() for name, load in loads.items()}
        if tail is not None:
            tail.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    layout = load_model_schema(model_dir).messages
    streamed = [
        (at, created, p) for at, created, p in tail.received if str(p[layout.id]).startswith("sim-")
    ]
    # The simulator's first second is its own start: a new idempotent producer's first message is
    # acknowledged ~0.5 s after it is sent on Tansu (InitProducerId), and those of the first second
    # queue behind it (records 0-99 reached a bare consumer ~1 s after their send, records from
    # 1,000 on in 8 ms). Reported apart; a service's producer pays it once, at its start.
    first_second = [int(str(p[layout.id]).rsplit("-", 1)[1]) < rate for _, _, p in streamed]
    timed = [row for row, first in zip(streamed, first_second) if not first]
    start_up = np.array(
        [
            at * 1000 - p[layout.timestamp]
            for (at, _, p), first in zip(streamed, first_second)
            if first
        ]
    )
    sent = np.array([p[layout.timestamp] for _, _, p in timed], dtype=float)
    result = {
        "records": len(timed),
        "start_up": start_up,
        "received": np.array([at * 1000 for at, _, _ in timed]) - sent,
        "scored": np.array([p["scored_at"] for _, _, p in timed], dtype=float) - sent,
        "produced": np.array([created for _, created, _ in timed], dtype=float) - sent,
        "scorer_lag": delta(
            buckets(after["scorer"], SCORER_LAG), buckets(scorer_before, SCORER_LAG)
        ),
        "cpu": cpu_share,
        "cpu_pressure": pressure,  # share of the stream's time some task waited for a CPU
        "batches": series(after["scorer"], "scorer_batch_duration_seconds_count")
        - series(scorer_before, "scorer_batch_duration_seconds_count"),
        "scored_records": series(after["scorer"], "scorer_records_consumed_total")
        - series(scorer_before, "scorer_records_consumed_total"),
    }
    for name in monitors:
        whole = buckets(after[name], GAUGE_LAG)
        result[f"{name}_gauge"] = (
            delta(whole, buckets(baseline.get(name, {}), GAUGE_LAG)) if whole else {}
        )
        # the exact total of the same panes' lags: with the count, their mean (no bucket edges)
        result[f"{name}_gauge_sum"] = series(after[name], f"{GAUGE_LAG}_sum") - series(
            baseline.get(name, {}), f"{GAUGE_LAG}_sum"
        )
        result[f"{name}_page"] = pages.get(name)
        # the loop's own evaluations over the same panes (wall clock): longer if it waited for the GIL
        result[f"{name}_evaluation"] = tuple(
            series(after[name], f"{EVALUATION}{part}")
            - series(baseline.get(name, {}), f"{EVALUATION}{part}")
            for part in ("_sum", "_count")
        )
        result[f"{name}_evaluations"] = series(after[name], "monitor_evaluations_total")
        result[f"{name}_pane_close"] = delta(
            buckets(after[name], PANE_CLOSE), buckets(baseline.get(name, {}), PANE_CLOSE)
        )
        result[f"{name}_start_up"] = buckets(
            baseline.get(name, {}), PANE_CLOSE
        )  # what the baseline left out
        result[f"{name}_caught_up_s"] = caught_up_at.get(name)
    return result


def duration_seconds(text: str) -> float:
    """'500ms', '1s', '2m' in seconds (the monitor's --step forms this bench uses)."""
    for unit, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def print_latency(title: str, low: dict, args: argparse.Namespace) -> None:
    received = low["received"]
    p50, p99 = np.percentile(received, 50), np.percentile(received, 99)
    print(
        f"{title} {args.rate:,.0f} records/s for {(low['records'] + args.rate) / args.rate:.0f} s: "
        f"{low['records']:,} predictions after the "
        f"simulator's first second, scored in {low['batches']:,.0f} batches "
        f"({low['scored_records'] / max(low['batches'], 1):.1f} records a batch over the whole stream)"
    )
    print("| produce -> prediction (ms) | p50 | p99 | max | bar |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| **acknowledged** (tail consumer received it) | **{p50:.0f}** | **{p99:.0f}** | {received.max():.0f} | "
        f"p50 < 50: {'met' if p50 < 50 else 'NOT met'}; p99 < 250: {'met' if p99 < 250 else 'NOT met'} |"
    )
    for label, key in (
        ("prediction message built (`scored_at`)", "scored"),
        ("prediction produced (its Kafka timestamp)", "produced"),
    ):
        values = low[key]
        print(
            f"| {label} | {np.percentile(values, 50):.0f} | {np.percentile(values, 99):.0f} | {values.max():.0f} | |"
        )
    start_up = low["start_up"]
    print(
        f"the simulator's first second ({len(start_up):,} records, its producer starting): p50 "
        f"{np.percentile(start_up, 50):.0f} ms, max {start_up.max():.0f} ms"
    )
    print(
        "CPU over the stream, % of one core: "
        + ", ".join(f"{name} {share:.0%}" for name, share in low["cpu"].items())
    )
    lag = low["scorer_lag"]
    print(
        f"scorer's own `{SCORER_LAG}` (to flush() returning): {share_within(lag, 0.05):.1%} within 50 ms, "
        f"{share_within(lag, 0.25):.1%} within 250 ms ({lag.get(float('inf'), 0):,.0f} sampled)"
    )


def gauge_lag(run: dict) -> dict:
    """The count-window monitor's gauge lag in one run: panes, p50 and p99 (bucket edges), p99
    interpolated, the exact mean (s); the monitor's CPU (share of a core) and the acknowledged p99 (ms)."""
    histogram, total = run["count_gauge"], run["count_gauge_sum"]
    panes = histogram.get(float("inf"), 0.0) if histogram else 0.0
    nan = float("nan")
    return {
        "panes": panes,
        "p50": bucket_quantile(histogram, 0.5) if panes else nan,
        "p99": bucket_quantile(histogram, 0.99) if panes else nan,
        "p99i": interpolated_quantile(histogram, 0.99) if panes else nan,
        "mean": total / panes if panes else nan,
        "cpu": run["cpu"]["monitor (count)"],
        "ack99": float(np.percentile(run["received"], 99)),
        "pressure": run["cpu_pressure"],
        "evaluation_ms": 1000 * run["count_evaluation"][0] / max(run["count_evaluation"][1], 1),
    }


def page_line(run: dict) -> str:
    lag, page = gauge_lag(run), run["count_page"]
    line = (
        f"{lag['panes']:,.0f} panes, p50 <= {lag['p50']:g} s, p99 <= {lag['p99']:g} s "
        f"(interpolated {lag['p99i']:.3f}), mean {lag['mean']:.3f} s, monitor CPU {lag['cpu']:.0%}"
    )
    if page is not None:
        line += (
            f"; page {page['answered']:,}/{page['requests']:,} answered, {page['failures']} failed"
        )
    return line


def print_page_load(paged: list[tuple[bool, dict]], args: argparse.Namespace) -> None:
    """(d) under page load: per round, then the medians per condition, the ratio and the bar."""
    print(
        f"(d) under page load: the count-window monitor (defaults) at {args.rate:,.0f} records/s for "
        f"{args.monitor_seconds:g} s a stream, alternating without and with {args.page_requests:g} page "
        f"requests/s; `{GAUGE_LAG}` per evaluated pane after its first evaluation"
    )
    print(
        "| round | page requests | panes | p50 s | p99 s | p99 s, interpolated | mean s | "
        "monitor CPU | evaluation ms, mean | acknowledged p99 ms | CPU pressure |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lags = [(requested, gauge_lag(run)) for requested, run in paged]
    for number, (requested, lag) in enumerate(lags):
        print(
            f"| {number // 2 + 1} | {'with' if requested else 'without'} | {lag['panes']:,.0f} | "
            f"<= {lag['p50']:g} | <= {lag['p99']:g} | {lag['p99i']:.3f} | {lag['mean']:.3f} | "
            f"{lag['cpu']:.0%} | {lag['evaluation_ms']:.2f} | {lag['ack99']:.0f} | {lag['pressure']:.0%} |"
        )
    median = {
        requested: {
            key: float(np.median([lag[key] for r, lag in lags if r == requested]))
            for key in lags[0][1]
        }
        for requested in (False, True)
    }
    rounds = len(lags) // 2
    print()
    print(
        "| page requests | rounds | panes | p50 s | p99 s | p99 s, interpolated | mean s | monitor CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for requested in (False, True):
        m = median[requested]
        label = f"with, {args.page_requests:g}/s" if requested else "without"
        print(
            f"| {label} | {rounds} | {m['panes']:,.0f} | <= {m['p50']:g} | <= {m['p99']:g} | "
            f"{m['p99i']:.3f} | {m['mean']:.3f} | {m['cpu']:.0%} |"
        )
    without, with_ = median[False], median[True]
    ratios = {key: with_[key] / without[key] for key in ("p99", "p99i", "mean")}
    print(
        f"ratio with / without (medians): p99 (bucket edges) **{ratios['p99']:.2f}**, p99 interpolated "
        f"{ratios['p99i']:.2f}, mean {ratios['mean']:.2f}"
    )
    verdict = {key: "met" if ratio <= 1.10 else "NOT met" for key, ratio in ratios.items()}
    print(
        f"bar, p99 with <= 1.10 x p99 without: {verdict['p99']} on bucket edges, {verdict['p99i']} "
        f"interpolated (the mean: {verdict['mean']})"
    )
    histogram = next(run["count_gauge"] for _, run in paged if run["count_gauge"])
    low, high = lower_edge(histogram, without["p99"]), without["p99"]
    if low > 0 and high / low > 1.10:
        print(
            f"resolution: p99 without falls in the bucket ({low:g}, {high:g}] s, {high / low - 1:.0%} wide "
            "relative to its lower edge: the bucket edges cannot resolve 10%; the interpolated p99 "
            "assumes an even spread inside the bucket, the mean is exact"
        )
    made = [run["count_page"] for requested, run in paged if requested]
    latency = np.concatenate([page["latency_ms"] for page in made])
    requests, answered = sum(p["requests"] for p in made), sum(p["answered"] for p in made)
    seconds = sum(p["seconds"] for p in made)
    print(
        f"page requests (all rounds with): {requests:,} made over {seconds:.0f} s "
        f"({requests / seconds:.1f}/s), {answered:,} answered 200 text/html, "
        f"{sum(p['failures'] for p in made):,} failed"
        + (
            f" ({'; '.join(r for p in made for r in p['reasons'][:1])})"
            if requests > answered
            else ""
        )
        + (
            f"; latency p50 {np.percentile(latency, 50):.1f} ms, p99 {np.percentile(latency, 99):.1f} ms, "
            f"max {latency.max():.1f} ms; {sum(p['bytes'] for p in made) / max(answered, 1):,.0f} bytes a page"
            if len(latency)
            else ""
        )
    )
    extra = (with_["cpu"] - without["cpu"]) * 1000 / args.page_requests
    print(
        f"the monitor's CPU with requests - without: {with_['cpu'] - without['cpu']:+.1%} of a core, "
        f"{extra:.1f} ms of CPU per page request (medians); its loop's evaluation "
        f"{without['evaluation_ms']:.2f} ms without, {with_['evaluation_ms']:.2f} ms with (mean, wall clock: "
        "a render holding the GIL would lengthen it)"
    )
    print(
        "CPU pressure: the share of each stream's time some task of the machine waited for a CPU "
        "(/proc/pressure/cpu), whoever's: the shared cores' contention in that round"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=400_000, help="records for the saturated rounds"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="offline/scorer pairs; the table shows the medians"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s of the low-rate run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the low-rate run")
    parser.add_argument(
        "--monitor-seconds",
        type=float,
        default=60.0,
        help="length of the run with the monitors (the time window's first two windows are start-up)",
    )
    parser.add_argument("--time-window", default="10s", help="the time-window monitor's --window")
    parser.add_argument("--time-step", default="1s", help="the time-window monitor's --step")
    parser.add_argument("--skip-throughput", action="store_true", help="leave out (a) and (b)")
    parser.add_argument("--skip-monitors", action="store_true", help="leave out (d)")
    parser.add_argument(
        "--monitors-together",
        action="store_true",
        help="(d) with both monitors on one stream (default: a stream per monitor)",
    )
    parser.add_argument(
        "--page-load",
        action="store_true",
        help="(d) with the count-window monitor, alternating streams without and with "
        "its page requested (in place of (d)'s two monitors)",
    )
    parser.add_argument(
        "--page-requests",
        type=float,
        default=10.0,
        help="page requests a second during --page-load's streams with requests",
    )
    parser.add_argument(
        "--page-rounds",
        type=int,
        default=2,
        help="--page-load's (without, with) pairs; the table shows the medians",
    )
    args = parser.parse_args(argv)
    if args.records < 1000 or args.rounds < 1 or args.rate <= 0 or args.seconds <= 0:
        print(
            "error: --records must be >= 1000, --rounds >= 1, --rate and --seconds > 0",
            file=sys.stderr,
        )
        return 2
    if args.page_load and (args.page_requests <= 0 or args.page_rounds < 1 or args.skip_monitors):
        print(
            "error: --page-load needs --page-requests > 0 and --page-rounds >= 1, and runs (d): "
            "drop --skip-monitors",
            file=sys.stderr,
        )
        return 2
    model_dir = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts")).resolve()
    model, schema = load(model_dir), load_model_schema(model_dir)
    probabilities = bool(schema.classification and schema.messages.probabilities)
    logs = Path(
        tempfile.mkdtemp(prefix="latency-bench-")
    )  # the services' logs, for a run that fails
    print(f"logs in {logs}", file=sys.stderr)
    broker = start_broker(log_path=logs / "broker.log")
    offline, alone, cpus = [], [], []
    try:
        if not args.skip_throughput:
            frame = sample_records(model_dir, args.records)
            features_topic = fill_features(broker.bootstrap, model_dir, frame)
            # Rounds alternate the two measures, so a slow spell of this shared machine weighs on both.
            for round_number in range(1, args.rounds + 1):
                offline.append(offline_rate(model, frame, probabilities))
                rate, cpu = scorer_throughput(
                    broker.bootstrap,
                    features_topic,
                    len(frame),
                    model_dir,
                    False,
                    broker.process.pid,
                )
                alone.append(rate)
                cpus.append(cpu)
                print(
                    f"round {round_number}: offline {offline[-1]:,.0f} records/s, scorer {rate:,.0f} "
                    f"({rate / offline[-1]:.2f})",
                    file=sys.stderr,
                    flush=True,
                )
        # (c) with the scorer alone on the stream, then (d): the same stream again with two monitors
        # on it (their CPU would otherwise weigh on (c) on a 2-core machine).
        low = low_rate_run(
            broker.bootstrap, broker.process.pid, model_dir, args.rate, args.seconds, logs, {}
        )
        # A time window computes each new window size's categorical thresholds on its loop (docs/benchmarks.md,
        # Known limits): its first two windows are start-up, left out as the count window's first is.
        panes = round(duration_seconds(args.time_window) / duration_seconds(args.time_step))
        flags = {"count": (), "time": ("--window", args.time_window, "--step", args.time_step)}
        warm, within = {"count": 1, "time": 2 * panes}, {"time": duration_seconds(args.time_step)}
        paged: list[tuple[bool, dict]] = []
        if args.skip_monitors:
            runs = []
        elif args.page_load:  # (without, with) pairs, so a slow spell of the machine weighs on both
            runs = []
            for round_number in range(1, args.page_rounds + 1):
                for requested in (False, True):
                    run = low_rate_run(
                        broker.bootstrap,
                        broker.process.pid,
                        model_dir,
                        args.rate,
                        args.monitor_seconds,
                        logs,
                        {"count": flags["count"]},
                        {"count": warm["count"]},
                        page_rate=args.page_requests if requested else 0.0,
                    )
                    paged.append((requested, run))
                    print(
                        f"page round {round_number} {'with' if requested else 'without'} requests: "
                        f"{page_line(run)}",
                        file=sys.stderr,
                        flush=True,
                    )
        elif args.monitors_together:
            runs = [
                (
                    "(d), the same with both monitors on the stream:",
                    low_rate_run(
                        broker.bootstrap,
                        broker.process.pid,
                        model_dir,
                        args.rate,
                        args.monitor_seconds,
                        logs,
                        flags,
                        warm,
                        within,
                    ),
                )
            ]
        else:  # one monitor per model, as deployed: each on a stream of its own
            runs = [
                (
                    f"(d) the same with the {name}-window monitor on the stream:",
                    low_rate_run(
                        broker.bootstrap,
                        broker.process.pid,
                        model_dir,
                        args.rate,
                        args.monitor_seconds,
                        logs,
                        {name: flags[name]},
                        {name: warm[name]},
                        {k: v for k, v in within.items() if k == name},
                    ),
                )
                for name in flags
            ]
        watched = {
            key: value
            for _, run in runs
            for key, value in run.items()
            if key.startswith(("count_", "time_"))
        }
    finally:
        broker.stop()

    if offline:
        base, scorer = float(np.median(offline)), float(np.median(alone))
        print(
            f"| saturated ({args.records:,} records; medians of {args.rounds} alternating rounds) "
            "| records/s | ratio | bar |"
        )
        print("|---|---:|---:|---|")
        print(f"| (a) offline `model.predict`, one call | {base:,.0f} | 1.00 | |")
        print(
            f"| (b) scorer through the local broker | {scorer:,.0f} | **{scorer / base:.2f}** | >= 0.90: "
            f"{'met' if scorer / base >= 0.9 else 'NOT met'} |"
        )
        print(
            "rounds (scorer / offline): "
            + ", ".join(f"{a / o:.2f}" for o, a in zip(offline, alone))
        )
        # What the 2 cores allow: every process's CPU per record, added up, against the cores there are.
        per_record = {name: float(np.median([c[name] for c in cpus])) for name in cpus[0]}
        total = sum(per_record.values())
        cores = os.cpu_count() or 1
        print(
            "CPU per record in (b), µs (medians): "
            + ", ".join(f"{n} {v:.1f}" for n, v in per_record.items())
            + f"; offline {1e6 / base:.1f} in one process. At {total:.1f} µs a record {cores} cores allow "
            f"{cores * 1e6 / total:,.0f} records/s = {cores * 1e6 / total / base:.2f} x offline"
        )
        print()
    print_latency("(c)", low, args)
    if paged:
        print()
        print_page_load(paged, args)
    if not watched:
        return 0
    for title, run in runs:
        print()
        print_latency(title, run, args)
    print()
    print(
        f"(d) `{GAUGE_LAG}` per evaluated pane, after the count window's first evaluation and the time "
        "window's first two windows, once it has caught up with the stream "
        "(quantiles: the upper edge of the bucket holding them)"
    )
    print("| monitor | panes | p50 s | p99 s | bar |")
    print("|---|---:|---:|---:|---|")
    step_seconds = duration_seconds(args.time_step)
    for name, label, bar in (
        ("count", "count windows (1000 / 250, defaults)", 1.0),
        ("time", f"time windows ({args.time_window} / {args.time_step})", 2 * step_seconds),
    ):
        histogram = watched[f"{name}_gauge"]
        if not histogram:
            print(f"| {label} | - | - | - | the monitor exports no `{GAUGE_LAG}` |")
            continue
        q50, q99 = bucket_quantile(histogram, 0.5), bucket_quantile(histogram, 0.99)
        print(
            f"| {label} | {histogram.get(float('inf'), 0):,.0f} | <= {q50:g} | <= {q99:g} | p99 < {bar:g} s: "
            f"{'met' if q99 <= bar else 'NOT met'} |"
        )
    start_up, caught_up = watched["time_start_up"], watched["time_caught_up_s"]
    if caught_up is None:
        print("time windows: the monitor never caught up with the stream (every pane is start-up)")
    else:
        print(
            f"time windows, start-up (left out): {start_up.get(float('inf'), 0):,.0f} panes until the "
            "monitor had caught "
            f"up with the stream {caught_up:.0f} s in, pane end -> gauges p99 <= {bucket_quantile(start_up, 0.99):g} s "
            "(a filling window meets a new size every step, and each new size's categorical thresholds "
            "are computed on the loop)"
        )
    closes = watched["time_pane_close"]
    if closes:
        q50, q99 = bucket_quantile(closes, 0.5), bucket_quantile(closes, 0.99)
        print(
            f"time windows, `{PANE_CLOSE}` (the pane's end to its gauges): {closes.get(float('inf'), 0):,.0f} panes, "
            f"p50 <= {q50:g} s, p99 <= {q99:g} s (within a step: < {step_seconds:g} s: "
            f"{'met' if q99 <= step_seconds else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
