"""What every service's shell shares: stopping on signals, telling records from consumer events, a settled heap."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from socketserver import ThreadingMixIn

from confluent_kafka import KafkaError, KafkaException, Message

from contract.delivery import is_transient

log = logging.getLogger(__name__)


def stop_on_signals(what: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT; the service finishes `what` and stops."""
    stop = threading.Event()

    def set_stop(signum: int) -> None:
        log.info("%s: %s, then stopping", signal.Signals(signum).name, what)
        stop.set()

    def request_stop(signum: int, _frame: object) -> None:
        # The handler runs in the main thread, maybe inside stop.wait() while it holds the
        # event's (non-reentrant) lock: setting the event here could deadlock, so another
        # thread sets it once the main thread has let go of the lock.
        threading.Thread(target=set_stop, args=(signum,), daemon=True).start()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def freeze_startup_heap() -> None:
    """Exempt everything alive now (libraries, model, reference, restored state) from garbage collection.

    A consumer creates a tracked object per message, hundreds of thousands a second, which keeps
    triggering full collections; each one walks every object in the process, and pandas and
    scikit-learn alone bring over 100,000. `bench/consumer_bench.py`: a bare consumer in a process
    that imported them read 330k-475k records/s, 510k-650k with the start-up heap frozen. Objects
    created later are collected as usual.

    What start-up freed (the scorer's copy of the forest, handed to its predict process) goes back
    to the system: glibc keeps freed memory below the top of its heap mapped otherwise."""
    gc.collect()
    gc.freeze()
    if _libc is not None:
        _libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (musl, macOS): nothing to trim with
        return None


_libc = _glibc()


_last_warning: dict[int, float] = {}  # error code -> when it was last logged
WARNING_EVERY_SECONDS = 10.0


def is_record(message: Message) -> bool:
    """True for a record; False for a benign or transient event; raises on an error the service cannot survive.

    Transient errors (broker away or replaced, topic gone for a while) are logged at most every
    10 s per kind; librdkafka keeps reconnecting, and the consumer rejoins its group by itself.
    """
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal() or not is_transient(error):
        raise KafkaException(error)
    now = time.monotonic()
    if now - _last_warning.get(error.code(), -WARNING_EVERY_SECONDS) >= WARNING_EVERY_SECONDS:
        _last_warning[error.code()] = now
        log.warning("consumer: %s (retrying)", error)
    return False


def collect_batch(consumer, size: int, wait: float) -> list[Message]:
    """Up to `size` messages of what librdkafka already holds; waiting up to `wait` s for the first.

    consume(n, timeout) returns early only when it has all n, so it is asked for one record
    with the timeout and then for the rest with none: a batch never waits to fill (at 1,000
    records/s, consume(5000, 0.2) would hold every record for the whole 0.2 s)."""
    batch = consumer.consume(num_messages=1, timeout=wait) if wait > 0 else []
    if wait > 0 and not batch:
        return batch
    if len(batch) < size:
        batch.extend(consumer.consume(num_messages=size - len(batch), timeout=0))
    return batch


def log_failed_commit(error: KafkaError | None, _partitions: list) -> None:
    """Consumer `on_commit` callback: commits are asynchronous, so a failure shows up here.

    A failed commit loses nothing: the records since the last commit are read again after a
    restart (at-least-once; the monitor resumes from its state snapshot anyway)."""
    if error is not None and error.code() != KafkaError._NO_OFFSET:
        log.warning(
            "offset commit failed (records since the last commit are read again after a restart): %s",
            error,
        )


class PortInUse(RuntimeError):
    """A port the service must listen on is taken; the message names the port and the flag."""


def check_port(host: str, port: int, flag: str) -> None:
    """PortInUse, naming `flag`, when nothing can listen on host:port (0 means any free port)."""
    import errno
    import socket

    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP servers bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(
                    f"port {port} on {host} is already in use: choose another with {flag} "
                    "(or stop what holds it)"
                ) from None
            raise PortInUse(
                f"cannot listen on {host}:{port} ({exc.strerror}): change {flag}"
            ) from None


Page = Callable[
    [], "tuple[str, bytes, Mapping[str, str]] | None"
]  # () -> (content type, body, headers), None: not yet


def serve_metrics(
    registry,
    host: str,
    port: int,
    flag: str = "--metrics-port",
    pages: Mapping[str, Page] | None = None,
) -> None:
    """Prometheus /metrics on host:port (0: off), and any `pages` ({path: page}; a page that answers
    None is not there yet: 503) beside it; PortInUse naming `flag` when the port is taken.

    A threaded WSGI server, as prometheus_client's own: a slow page request never holds up a
    scrape, and the service's loop, which only publishes what a page shows, never waits for either."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    if not port:
        return
    metrics_app, routes = make_wsgi_app(registry), dict(pages or {})

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path not in routes:
            return metrics_app(
                environ, start_response
            )  # /metrics (prometheus_client answers any other path too)
        answer = routes[path]()
        if answer is None:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "1")],
            )
            return [b"no evaluation yet: the window is filling\n"]
        content_type, body, headers = answer
        start_response(
            "200 OK",
            [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers.items()],
        )
        return [body]

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            pass

    try:
        server = make_server(host, port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        check_port(host, port, flag)  # names the usual cause; anything else is reported as is
        raise PortInUse(f"cannot serve metrics on {host}:{port} ({exc}): change {flag}") from None
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info(
        "metrics on http://%s:%d/metrics%s",
        host,
        port,
        "".join(f", {path} on http://{host}:{port}{path}" for path in routes),
    )


CLOSE_UNREACHABLE_SECONDS = 5.0


def close_consumer(
    consumer, broker_away: bool = False, within: float = CLOSE_UNREACHABLE_SECONDS
) -> None:
    """Close the consumer (it leaves its group, so partitions move on at once).

    With the broker known to be away (a delivery or snapshot just timed out), leaving the group
    cannot succeed, and librdkafka's close() can wait a whole socket.timeout.ms (60 s) for the
    LeaveGroup queued to a coordinator that is gone (seen in CI: a SIGTERM'd scorer took > 60 s).
    Then close() runs in a daemon thread for at most `within` seconds and the service exits
    regardless: the group expires the member after its session timeout, and nothing was
    committed that a restart would miss (offsets are committed only after delivery)."""
    if not broker_away:
        consumer.close()
        return
    closing = threading.Thread(target=consumer.close, name="consumer-close", daemon=True)
    closing.start()
    closing.join(within)
    if closing.is_alive():
        log.warning(
            "the broker did not answer the consumer's close within %.0f s: exiting without leaving the group "
            "(it expires this member after its session timeout)",
            within,
        )


class Totals:
    """Prometheus counters read at scrape time from totals the code keeps anyway (a custom collector
    of client_python's `CounterMetricFamily`), so no loop advances a counter by their growth.

    `read()` returns {key: total}; `families`: (metric name without _total, help, {label value: key}
    or a single key), every family labelled `labels` (and `label` when it maps several keys).
    `count_from_here()` takes the current totals as the base (totals restored from a saved state were
    counted by an earlier process: this one's counters start at 0, like any Prometheus counter).

    >>> from prometheus_client import CollectorRegistry
    >>> totals = {"sent": 5, "lost": 0}
    >>> registry = CollectorRegistry()
    >>> Totals(registry, lambda: totals, [("demo_sent", "Sent", "sent")], {"model": "m"}).count_from_here()
    >>> totals["sent"] = 8
    >>> registry.get_sample_value("demo_sent_total", {"model": "m"})
    3.0
    """

    def __init__(
        self, registry, read, families, labels: dict[str, str], label: str | None = None
    ) -> None:
        self.read, self.families, self.labels, self.label = (
            read,
            list(families),
            dict(labels),
            label,
        )
        self.base: dict[str, int] = {}
        registry.register(self)

    def count_from_here(self) -> None:
        self.base = dict(self.read())

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        now = self.read()
        names = list(self.labels)
        for name, documentation, keys in self.families:
            keyed = keys if isinstance(keys, dict) else {None: keys}
            family = CounterMetricFamily(
                name, documentation, labels=names + ([self.label] if None not in keyed else [])
            )
            for value, key in keyed.items():
                family.add_metric(
                    list(self.labels.values()) + ([value] if value is not None else []),
                    float(now[key] - self.base.get(key, 0)),
                )
            yield family

    def describe(self):
        return []  # registered without a first collect: the totals may not be readable yet
