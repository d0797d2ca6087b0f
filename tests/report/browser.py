"""Headless Chromium driven over the DevTools protocol on a pipe (no Python dependency).

``--remote-debugging-pipe`` makes Chromium read commands from fd 3 and write replies
and events to fd 4, as JSON messages each ended by a NUL byte. The page is loaded
unmodified; console errors, uncaught exceptions, failed or blocked loads and any
dialog (``alert``) are collected from the protocol's events.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any network name fails to resolve
]


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One browser process with one page; use as a context manager."""

    def __init__(self, binary: str, user_data_dir: Path, window: tuple[int, int] = (1280, 2000),
                 timeout: float = 120.0) -> None:
        self.timeout = timeout  # per reply: bounds a failure (a loaded machine starts it slowly)
        self.window = window
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child, before exec: fd 3 reads, fd 4 writes
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.stderr_path = Path(user_data_dir).with_suffix(".stderr.log")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
             f"--window-size={window[0]},{window[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            preexec_fn=wire_fds, pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.session: str | None = None

    def __enter__(self) -> Chromium:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        # the viewport is the window size exactly (the window's frame would take some)
        self.call("Emulation.setDeviceMetricsOverride", {
            "width": self.window[0], "height": self.window[1], "deviceScaleFactor": 1,
            "mobile": False})
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol ---------------------------------------------------------------------------

    def call(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self._next_id += 1
        my_id = self._next_id  # a dialog handled meanwhile sends a command of its own
        message = {"id": my_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == my_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event["method"] == method:
                return event
        while True:
            event = self._receive()
            if event.get("method") == method:
                return event

    def _receive(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"no reply from Chromium in {self.timeout} s; "
                                   f"stderr: {self.stderr_path}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe; stderr: {self.stderr_path}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Page.javascriptDialogOpening":  # never block on alert()
                self.call("Page.handleJavaScriptDialog", {"accept": True})
        return message

    # -- what a test needs ----------------------------------------------------------------

    def load(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads and dialogs, as text."""
        out = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(f"exception: {details.get('exception', {}).get('description') or details}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                out.append(f"console.{params['type']}: "
                           + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog {params['type']}: {params['message']}")
        return out

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("Browser.close", session=False)
            except BrowserError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self._stderr.close()
