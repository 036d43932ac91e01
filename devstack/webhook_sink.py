"""A stand-in for a Discord webhook: prints every JSON body POSTed to it, one line each.

Alertmanager's `discord_configs` and Grafana's Discord contact point both POST
`{"content": ..., "embeds": [{"title": ..., "description": ...}]}`; the compose stack sends
alerts here when DISCORD_WEBHOOK_URL is unset, and the tests read what arrived from
`WebhookSink.received`. Answers 204 like Discord does, and 200 to GET (a health check).

    python -m devstack.webhook_sink --port 9095
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One POST: the path it was sent to, its decoded JSON body, and when it arrived (monotonic)."""

    path: str
    body: object
    received_at: float


@dataclass
class WebhookSink:
    """Collects deliveries; `serve` runs it as an HTTP server."""

    echo: bool = True
    received: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, path: str, raw: bytes) -> Delivery:
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        delivery = Delivery(path, body, time.monotonic())
        with self._lock:
            self.received.append(delivery)
        if self.echo:
            print(json.dumps({"path": path, "body": body}, ensure_ascii=False), flush=True)
        return delivery

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self.received)

    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        """An HTTP server bound to host:port (port 0 picks a free one); call serve_forever on it."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                sink.record(self.path, self.rfile.read(length))
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                payload = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:  # quiet: bodies are printed
                log.debug(format, *args)

        return ThreadingHTTPServer((host, port), Handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.webhook_sink",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="0.0.0.0", help="bind address")
    parser.add_argument("--port", type=int, default=9095, help="port")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = WebhookSink().serve(args.host, args.port)
    # As a container's PID 1 a SIGTERM would otherwise be ignored until the kill timeout.
    signal.signal(signal.SIGTERM, _interrupt)
    log.info("webhook sink listening on %s:%d", args.host, server.server_address[1])
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
