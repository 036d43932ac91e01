"""Headless Chromium for tests: load a page, screenshot it, read its DOM, errors and requests.

Debian's `chromium` (scripts/install-chromium.sh), driven over the DevTools protocol (CDP) on a
pipe (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, the browser reading fd 3 and
writing fd 4), as Playwright and Puppeteer drive it by default. Nothing to install beyond the
browser: no websocket client, no debugging port to find or to collide with another test's, no
driver process. Measured against Playwright in bench/PAGE_RESULTS.md.

    with Browser() as browser:
        visit = browser.visit("http://127.0.0.1:8000/")
        visit.requests       # every URL the page asked for, itself included
        visit.errors         # console errors, uncaught exceptions, failed loads, CSP violations
        browser.everything() # the same over every visit so far, and whatever came after loads
        browser.evaluate("document.title")
        browser.screenshot(Path("page.png"))   # the whole page, PNG

Root needs --no-sandbox (Chromium refuses its sandbox as root); the other flags keep the browser
from calling out (updates, sync, field trials, QUIC), so the only traffic is the test's.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
)


class BrowserError(RuntimeError):
    pass


@dataclass
class Visit:
    """What loading a page did: the URLs it requested and the errors it reported."""

    url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium with a fresh profile and one page (a CDP session on a new target)."""

    def __init__(
        self,
        executable: str = CHROMIUM,
        width: int = 1280,
        height: int = 900,
        timeout: float = 30.0,
    ) -> None:
        if not os.access(executable, os.X_OK):
            raise BrowserError(f"{executable} not found: run scripts/install-chromium.sh (as root)")
        self.width, self.height, self.timeout = width, height, timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        # The browser's ends of two pipes, moved to fds >= 10 so that bash (dash takes single
        # digits only) can make them 3 and 4 without overwriting one with the other, then `exec`
        # the browser: no Python runs in the child (preexec_fn is unsafe with threads).
        commands, replies = os.pipe(), os.pipe()
        theirs = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands[0], replies[1])]
        for fd in (commands[0], replies[1]):
            os.close(fd)
        r, w = theirs
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open while the browser runs
        self.process = subprocess.Popen(
            [
                "/bin/bash",
                "-c",
                f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-',
                "bash",
                executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            pass_fds=theirs,
        )
        for fd in theirs:
            os.close(fd)
        self._out = os.fdopen(commands[1], "wb", buffering=0)
        self._in = os.fdopen(replies[0], "rb", buffering=0)
        self._lock = threading.Condition()
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._next = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            attached = self.call("Target.attachToTarget", targetId=target, flatten=True)
            self.session = attached["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=True)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                session=True,
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    # -- protocol ----------------------------------------------------------------------------
    def _read(self) -> None:
        buffer = b""
        while chunk := self._in.read(1 << 16):
            *messages, buffer = (buffer + chunk).split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                self._lock.notify_all()
        with self._lock:  # the browser closed its end: it is gone
            self._closed = True
            self._lock.notify_all()

    def call(self, method: str, session: bool = False, **params: Any) -> dict:
        """Send one command (to the page's session when `session`) and wait for its reply."""
        with self._lock:
            self._next += 1
            ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda: self._replies.pop(ident, None), f"the reply to {method}")
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait(self, found: Any, what: str) -> Any:
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while (value := found()) is None:
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    raise BrowserError(f"no {what} within {self.timeout} s" + self._log())
                self._lock.wait(remaining)
        return value

    def _event(self, method: str, start: int) -> dict:
        return self._wait(
            lambda: next(
                (
                    e
                    for e in self._events[start:]
                    if e["method"] == method and e.get("sessionId") == self.session
                ),
                None,
            ),
            method,
        )

    def _log(self) -> str:
        self.stderr.seek(0)
        # without a D-Bus (containers) Chromium logs errors about it at start: noise here
        lines = self.stderr.read().decode(errors="replace").splitlines()
        tail = "\n".join(line for line in lines if "dbus" not in line)[-2000:]
        return f"; chromium said: {tail}" if tail else ""

    # -- pages -------------------------------------------------------------------------------
    def visit(self, url: str) -> Visit:
        """Load `url` and wait for its load event; the requests and errors it caused."""
        with self._lock:
            start = len(self._events)
        reply = self.call("Page.navigate", session=True, url=url)
        if reply.get("errorText"):
            raise BrowserError(f"{url}: {reply['errorText']}")
        # no loaderId: a navigation within the document (to a #fragment), which loads nothing
        loaded = "Page.loadEventFired" if "loaderId" in reply else "Page.navigatedWithinDocument"
        self._event(loaded, start)
        return self._report(Visit(url), start)

    def everything(self) -> Visit:
        """Every request and error of the page so far, across visits, including what came after a
        visit's load event (a late request, a console error from a timer): what a test asserts
        last, so that nothing the page did escapes it."""
        return self._report(Visit("*"), 0)

    def _report(self, visit: Visit, start: int) -> Visit:
        with self._lock:
            events = [e for e in self._events[start:] if e.get("sessionId") == self.session]
        for event in events:
            method, params = event["method"], event["params"]
            if method == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                visit.errors.append(
                    f"load failed: {params.get('errorText')} {params.get('blockedReason', '')}"
                )
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                shown = (str(a.get("value", a.get("description", ""))) for a in params["args"])
                visit.errors.append("console: " + " ".join(shown))
            elif method == "Runtime.exceptionThrown":
                visit.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                visit.errors.append(f"log: {entry['text']} ({entry.get('url', '')})")
        return visit

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (run by the test, not by the page)."""
        reply = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r}: {reply['exceptionDetails'].get('text')}")
        return reply["result"].get("value")

    def screenshot(self, path: Path | None = None, full_page: bool = True) -> bytes:
        """PNG of the page (the whole page, or the viewport), written to `path` when given."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": self.width, "height": size["height"], "scale": 1},
            )
        png = base64.b64decode(self.call("Page.captureScreenshot", session=True, **params)["data"])
        if path is not None:
            path.write_bytes(png)
        return png

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._out.write(json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)  # the browser is gone: its end of the pipe is closed
        for stream in (self._out, self._in, self.stderr):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
