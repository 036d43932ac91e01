"""`make demo`: the whole product on this machine, no Docker.

Starts the local broker (Tansu), the scorer, the monitor, Prometheus + Alertmanager with a
local webhook sink standing in for Discord (when they are installed), and a simulator whose
stream drifts after --onset records. Prints predictions, drift and alerts as they happen.
Ctrl-C stops every process it started. Logs go to .demo/.

Examples (`--example`, or `make demo EXAMPLE=affairs`): diamonds (price regression, the default)
and affairs (classification of statsmodels' `fair` data, with class probabilities). Each is
trained into its model folder on first use (`python -m scorer train --example NAME`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devstack.broker import LocalBroker, free_port, start_broker

ROOT = Path(__file__).resolve().parents[1]
WORKDIR = ROOT / ".demo"


def port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def read_metrics(port: int) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from a /metrics page, {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def status_line(scorer: dict, monitor: dict) -> str:
    def first(samples: dict, name: str, default: float = float("nan")) -> float:
        """A series by name whatever its labels (the monitor's carry its model's name)."""
        return next((v for (n, _), v in samples.items() if n == name), default)

    predictions = first(scorer, "scorer_predictions_total", 0)
    invalid = sum(v for (name, _), v in scorer.items() if name == "scorer_invalid_records_total")
    flagged = sorted(
        dict(labels)["feature"]
        for (name, labels), v in monitor.items()
        if name == "drift_feature_detected" and v == 1
    )
    if first(monitor, "prediction_drift_detected") == 1:
        flagged.append("prediction")
    if first(monitor, "estimated_concept_drift_detected") == 1:
        flagged.append("estimated performance")
    classifier = any(n == "rolling_error_rate" for n, _ in monitor)
    error = (
        f"error rate {first(monitor, 'rolling_error_rate'):.3f}"
        if classifier
        else f"rolling MSE {first(monitor, 'rolling_mse'):,.0f}"
    )
    estimate = (
        f"error rate {first(monitor, 'estimated_error_rate'):.3f}"
        if classifier
        else f"MSE {first(monitor, 'estimated_mse'):,.0f}"
    )
    return (
        f"predictions {predictions:,.0f} | DLQ {invalid:,.0f} | data_drift {first(monitor, 'data_drift'):.3f} | "
        f"concept_drift {first(monitor, 'concept_drift'):+.3f} ({error}) | estimated before labels "
        f"{first(monitor, 'estimated_concept_drift'):+.3f} ({estimate}) | flagged: {', '.join(flagged) or 'nothing'}"
    )


# example -> (model folder under MODEL_DIR's parent, default scenario, what that scenario shows).
# Both defaults draw real held-out rows differently (labels true): data drift, no concept drift.
EXAMPLES = {
    "diamonds": ("", "carat-shift", "fewer big stones: data drift on carat, no concept drift"),
    "affairs": (
        "affairs",
        "mix:occupation",
        "occupations equally common: data drift on occupation, no concept drift",
    ),
}


def example_dir(example: str) -> Path:
    base = Path(os.environ.get("MODEL_DIR", ROOT / "artifacts"))
    return base / EXAMPLES[example][0] if EXAMPLES[example][0] else base


def prediction_line(message: dict, schema) -> str:
    """One prediction for the console: its id, the first features, the prediction (and class probability)."""
    nested = schema.messages.features
    features = message.get(nested, {}) if nested else message
    shown = " ".join(f"{name}={features.get(name)}" for name in schema.feature_names[:4])
    prediction = message.get(schema.messages.prediction)
    text = f"{prediction:>10,.0f}" if isinstance(prediction, float) else str(prediction)
    probabilities = (
        message.get(schema.messages.probabilities) if schema.messages.probabilities else None
    )
    if schema.messages.probability_fields:
        probabilities = {
            text: message.get(name) for text, name in schema.messages.probability_fields
        }
    if isinstance(probabilities, dict) and isinstance(probabilities.get(str(prediction)), float):
        text += f" (p={probabilities[str(prediction)]:.2f})"
    return f"  prediction {str(message.get(schema.messages.id)):<12} {shown} -> {text}"


def watch(
    processes: list[subprocess.Popen], names: dict[int, str], stopping: threading.Event
) -> None:
    """Stop the demo, saying why, when a service it started dies (not while the demo stops them)."""
    while not stopping.is_set():
        for process in processes:
            if process.pid in names and process.poll() is not None and not stopping.is_set():
                name = names[process.pid]
                print(
                    f"\n{name} exited with code {process.returncode}; its log: {WORKDIR / (name + '.log')}",
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGINT)
                return
        time.sleep(0.5)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--example",
        choices=list(EXAMPLES),
        default=os.environ.get("EXAMPLE") or "diamonds",
        help="the shipped model to run: diamonds (regression) or affairs (classification) (env EXAMPLE)",
    )
    parser.add_argument(
        "--scenario",
        default=None,
        help="drift after the onset (see `python -m producer simulate --help`); "
        "default carat-shift for diamonds, mix:occupation for affairs (both data drift with true "
        "labels); price-inflation (diamonds) or labels:flip:0.3 (affairs) show concept drift",
    )
    parser.add_argument(
        "--onset", type=int, default=15_000, help="records of normal traffic before the drift"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="records per second")
    parser.add_argument(
        "--kafka-port", type=int, default=9092, help="broker port (a free one if taken)"
    )
    parser.add_argument(
        "--no-alerts", action="store_true", help="do not start Prometheus and Alertmanager"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    signal.signal(
        signal.SIGTERM, signal.default_int_handler
    )  # stop cleanly on SIGTERM as on Ctrl-C
    WORKDIR.mkdir(exist_ok=True)
    model_dir = example_dir(args.example)
    scenario = args.scenario or EXAMPLES[args.example][1]
    shows = f": {EXAMPLES[args.example][2]}" if scenario == EXAMPLES[args.example][1] else ""
    if not (model_dir / "schema.yaml").exists() or not (model_dir / "model.joblib").exists():
        print(f"training the {args.example} example into {model_dir} (first run only)", flush=True)
        trained = subprocess.run(
            [sys.executable, "-m", "scorer", "train", "--example", args.example],
            cwd=ROOT,
            env={**os.environ, "MODEL_DIR": str(model_dir)},
        )
        if trained.returncode:
            return 2  # the trainer printed why (no data, ...)
    from contract.artifacts import load_model_schema
    from contract.schema import SchemaError

    try:
        schema = load_model_schema(model_dir)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Fresh Prometheus and Alertmanager data: series left by an earlier run would raise ghost alerts.
    for folder in ("prometheus", "alertmanager"):
        shutil.rmtree(WORKDIR / folder, ignore_errors=True)
    started: list[subprocess.Popen] = []
    names: dict[int, str] = {}
    stopping = threading.Event()
    stoppers: list = []
    broker: LocalBroker | None = None
    try:
        broker = start_broker(port_or_free(args.kafka_port), log_path=WORKDIR / "tansu.log")
        scorer_port, monitor_port = port_or_free(8001), port_or_free(8000)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "PYTHONUNBUFFERED": "1",
            "MODEL_DIR": str(model_dir),
        }
        print(
            f"broker      {broker.bootstrap}  "
            f"(export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap} to use the CLIs beside the demo)"
        )

        def launch(name: str, *command: str) -> None:
            log = open(WORKDIR / f"{name}.log", "ab")
            process = subprocess.Popen(
                [sys.executable, "-m", *command],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append(process)
            names[process.pid] = name

        launch("scorer", "scorer", "run", "--metrics-port", str(scorer_port))
        print(f"scorer      metrics http://127.0.0.1:{scorer_port}/metrics")
        page = f"http://127.0.0.1:{monitor_port}/"
        launch(
            "monitor", "monitor", "run", "--metrics-port", str(monitor_port), "--public-url", page
        )
        print(
            f"monitor     page {page}  (open it in a browser: the window against the reference, every alert links "
            "to it)"
        )
        print(f"            metrics {page}metrics  (python -m monitor status --url {page}metrics)")

        sink = None
        if args.no_alerts or not (
            shutil.which("prometheus") and shutil.which("prometheus-alertmanager")
        ):
            if not args.no_alerts:
                print(
                    "alerts      off: Prometheus/Alertmanager not installed (bash scripts/install-observability.sh)"
                )
        else:
            from devstack.observability import (
                DRIFT_ALERTS,
                alert_rules,
                alertmanager_config,
                start_alertmanager,
                start_prometheus,
            )
            from devstack.webhook_sink import WebhookSink

            sink = WebhookSink(echo=False)
            server = sink.serve("127.0.0.1", 0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            stoppers.append(server.shutdown)
            sink_url = f"http://127.0.0.1:{server.server_address[1]}/discord"
            alertmanager = start_alertmanager(
                alertmanager_config(sink_url, group_wait="1s", group_interval="10s"),
                WORKDIR / "alertmanager",
            )
            stoppers.append(alertmanager.stop)
            # Drift alerts fire at once in the demo (the committed rules wait a minute); health
            # rules keep their `for`, so an idle start does not page.
            prometheus = start_prometheus(
                {"scorer": [f"127.0.0.1:{scorer_port}"], "monitor": [f"127.0.0.1:{monitor_port}"]},
                WORKDIR / "prometheus",
                rules=alert_rules(for_="0s", only=DRIFT_ALERTS),
                alertmanager=alertmanager.url.removeprefix("http://"),
            )
            stoppers.append(prometheus.stop)
            print(
                f"prometheus  {prometheus.url}   alertmanager {alertmanager.url}   Discord stand-in {sink_url}"
            )

        launch(
            "simulator",
            "producer",
            "simulate",
            "--count",
            "0",
            "--rate",
            str(args.rate),
            "--scenario",
            scenario,
            "--onset",
            str(args.onset),
            "--label-delay",
            "1",
        )
        print(f"model       {schema.name} ({schema.task}) from {model_dir}")
        print(
            f"simulator   {args.rate:g} records/s, {scenario} from record {args.onset:,} "
            f"(~{args.onset / args.rate:.0f} s){shows}; logs in {WORKDIR}/. Ctrl-C stops everything.\n"
        )

        tail = subprocess.Popen(
            [sys.executable, "-m", "scorer", "tail", "--json"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        started.append(tail)
        threading.Thread(target=watch, args=(started, names, stopping), daemon=True).start()
        seen_alerts = 0
        last_status = 0.0
        for count, line in enumerate(tail.stdout):
            if count % max(1, int(args.rate)) == 0:  # one prediction a second
                print(prediction_line(json.loads(line), schema))
            if time.monotonic() - last_status > 5:
                last_status = time.monotonic()
                print(status_line(read_metrics(scorer_port), read_metrics(monitor_port)))
            if sink is not None:
                for delivery in sink.deliveries()[seen_alerts:]:
                    seen_alerts += 1
                    embeds = (
                        delivery.body.get("embeds", [{}])
                        if isinstance(delivery.body, dict)
                        else [{}]
                    )
                    print(
                        f"ALERT (Discord message) {embeds[0].get('title', '')}\n"
                        f"    {embeds[0].get('description', '')[:300]}"
                    )
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        stopping.set()
        for process in reversed(started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for stop in reversed(stoppers):
            stop()
        if broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
