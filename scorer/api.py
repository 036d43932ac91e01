"""`python -m scorer serve`: the tutorial's Flask API, kept for request/response use.

POST /predict takes one feature record or a list, as the schema describes them (the features at
top level); the id and timestamp fields are optional here. Each answer is
`{id, prediction, model_version, unseen_categories, [probabilities]}` from the same model and
codec as the stream, so it equals offline `model.predict` (and `predict_proba`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from contract.decoders import check_record, parse_json, verdict
from contract.rules import InvalidRecord, Rejection
from contract.schema import Schema
from scorer.model import LoadedModel
from scorer.scoring import BatchCodec, predictor_of

MAX_BODY_BYTES = 1 << 20
MAX_BATCH_RECORDS = 10_000


def _with_identity(obj: Any, index: int, now_ms: int, schema: Schema) -> Any:
    if isinstance(obj, dict):
        m = schema.messages
        return {m.id: str(index), m.timestamp: schema.timestamp_value(now_ms), **obj}
    return obj


def create_app(
    model: LoadedModel,
    codec: BatchCodec,
    registry: CollectorRegistry | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_batch: int = MAX_BATCH_RECORDS,
) -> Flask:
    registry = registry or CollectorRegistry()
    requests_total = Counter(
        "api_requests_total", "POST /predict requests by status", ["status"], registry=registry
    )
    predictions_total = Counter(
        "api_predictions_total", "Records predicted over HTTP", registry=registry
    )
    seconds = Histogram(
        "api_request_duration_seconds", "POST /predict handling time", registry=registry
    )
    schema, predict = codec.schema, predictor_of(model.pipeline, codec)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = (
        False  # answers in the documented order, probabilities in the schema's class order
    )

    def reject(status: int, errors: list[dict[str, Any]]) -> tuple[Response, int]:
        requests_total.labels(str(status)).inc()
        return jsonify({"errors": errors}), status

    @app.post("/predict")
    def predict_records() -> tuple[Response, int]:
        started = time.perf_counter()
        raw = request.get_data(cache=False)
        try:
            body = parse_json(raw, limit=max_body_bytes)
        except InvalidRecord as invalid:
            return reject(
                400, [{"reason": invalid.rejection.reason, "detail": invalid.rejection.detail}]
            )
        many = isinstance(body, list)
        items = body if many else [body]
        if many and not 1 <= len(items) <= max_batch:
            return reject(
                400, [{"reason": "batch_size", "detail": f"send 1-{max_batch} records per request"}]
            )
        now_ms = int(time.time() * 1000)
        records: list[Any] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            checked = verdict(
                check_record,
                codec.decoders,
                _with_identity(item, index, now_ms, schema),
                parsed=True,
            )
            if isinstance(checked, Rejection):
                errors.append({"index": index, "reason": checked.reason, "detail": checked.detail})
            else:
                records.append(checked)
        if errors:
            return reject(400, errors)
        frame, _ = codec.frame(records)
        outputs = codec.outputs(predict(frame))
        unseen = {name: (~frame[name].isin(known)).tolist() for name, known in codec.known.items()}
        answers = []
        for i, record in enumerate(records):
            answer = {
                "id": codec.id_of(record),
                "prediction": outputs.predictions[i],
                "model_version": model.version,
                "unseen_categories": [name for name, flags in unseen.items() if flags[i]],
            }
            if codec.probabilities:
                answer["probabilities"] = dict(
                    zip(schema.class_texts, outputs.probabilities[i].tolist())
                )
            answers.append(answer)
        predictions_total.inc(len(answers))
        requests_total.labels("200").inc()
        seconds.observe(time.perf_counter() - started)
        return jsonify({"predictions": answers} if many else answers[0]), 200

    @app.errorhandler(413)
    def too_large(_error: Exception) -> tuple[Response, int]:
        return reject(413, [{"reason": "oversize", "detail": f"body over {max_body_bytes} bytes"}])

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify({"status": "ok", "model": schema.name, "model_version": model.version}), 200

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    return app


def serve(app: Flask, host: str, port: int) -> int:
    """Run the API until SIGTERM or Ctrl-C; both end it cleanly with exit code 0.

    Werkzeug's server stops its loop on KeyboardInterrupt, so SIGTERM (what `docker stop` and
    systemd send) is turned into one instead of killing the process mid-response.
    """
    import signal

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        app.run(host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0
