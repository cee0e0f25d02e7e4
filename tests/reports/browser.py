"""Open an HTML file in a real headless Chromium and report what it rendered, over the DevTools protocol.

Collects uncaught exceptions, console errors/warnings, log errors, failed loads and any request that is not
a local file, evaluates a script in the page, and writes a full-page screenshot. Without Chromium the test
fails under CI=true and is skipped otherwise (with the reason).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_or_skip() -> str:
    """The chromium executable; fail under CI=true, skip otherwise when it is missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (apt-get install -y chromium); the HTML report is not opened in a browser"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Rendered:
    """What the browser saw."""

    problems: list[str] = field(default_factory=list)  # exceptions, console errors, failed or remote loads
    facts: Any = None  # the value of the evaluated script
    dom: str = ""
    screenshot: Path | None = None


class _Cdp:
    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=20)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        msg_id = self.next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1))))

    def close(self) -> None:
        self.ws.close()


def _problems(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            out.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
            out.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent" and not p["request"]["url"].startswith(("file:", "data:")):
            out.append(f"network request: {p['request']['url']}")
    return out


def render(html_file: Path, script: str, screenshot: Path | None = None, width: int = 1400,
           height: int = 3000) -> Rendered:
    """Load ``html_file`` in headless Chromium, evaluate ``script`` (an expression returning JSON-able data)
    after the load event, and take a full-page screenshot to ``screenshot``."""
    exe = chromium_or_skip()
    # Chromium's helper processes (zygote, renderers) may still write to the profile after the browser process
    # exits: it runs in its own session and the whole group is stopped before the profile is removed.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        log = Path(profile) / "stderr.log"
        # Chromium leaves org.chromium.Chromium.* folders in its TMPDIR: keep them inside the profile.
        (Path(profile) / "tmp").mkdir()
        with log.open("wb") as err:
            proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}/data",
                                     f"--window-size={width},{height}", "about:blank"],
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                    env={**os.environ, "TMPDIR": f"{profile}/tmp"})
        try:
            port = _devtools_port(log, proc)
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t["type"] == "page")
            cdp = _Cdp(page["webSocketDebuggerUrl"])
            try:
                for domain in ("Page", "Runtime", "Log", "Network"):
                    cdp.call(f"{domain}.enable")
                cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                         mobile=False)
                cdp.events.clear()
                cdp.call("Page.navigate", url=html_file.resolve().as_uri())
                cdp.wait_for("Page.loadEventFired")
                facts = cdp.call("Runtime.evaluate", expression=f"JSON.stringify({script})",
                                 returnByValue=True)["result"]["value"]
                dom = cdp.call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                               returnByValue=True)["result"]["value"]
                shot = None
                if screenshot is not None:
                    data = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
                    screenshot.write_bytes(base64.b64decode(data))
                    shot = screenshot
                time.sleep(0.2)  # let late console messages arrive
                cdp.call("Runtime.evaluate", expression="1")
                return Rendered(_problems(cdp.events), json.loads(facts), dom, shot)
            finally:
                cdp.close()
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the browser's process group (started with ``start_new_session``), SIGKILL it after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 5  # helpers of the group outlive the browser process by a moment
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _devtools_port(log: Path, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "DevTools listening on ws://" in line:
                return int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError("chromium did not open its DevTools port within 30 s")
