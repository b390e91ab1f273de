"""A minimal W3C WebDriver client for headless Chromium (Debian's chromium + chromium-driver).

Only what the report tests need: open a page, read its text, check for JavaScript dialogs and
console errors, take a screenshot. Speaks HTTP to chromedriver with the standard library, so the
tests need no selenium.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2000"]


def find_browser() -> tuple[str, str] | None:
  """(chromium, chromedriver) paths, or None when either is missing."""
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  driver = shutil.which("chromedriver")
  return (chromium, driver) if chromium and driver else None


class Browser:
  """One headless Chromium session; use as a context manager."""

  def __init__(self, chromium: str, driver: str):
    self._profile = tempfile.mkdtemp(prefix="cvlib-chromium-")
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      self._port = s.getsockname()[1]
    self._proc = subprocess.Popen([driver, f"--port={self._port}"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    self._base = f"http://127.0.0.1:{self._port}"
    for _ in range(100):
      try:
        self._call("GET", "/status")
        break
      except (urllib.error.URLError, ConnectionError):
        time.sleep(0.1)
    caps = {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium,
                                   "args": CHROMIUM_ARGS + [f"--user-data-dir={self._profile}"]},
            "goog:loggingPrefs": {"browser": "ALL"},
            "unhandledPromptBehavior": "ignore"}
    self.session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})[
        "sessionId"]

  def _call(self, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(self._base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())["value"]
    except urllib.error.HTTPError as e:
      payload = json.loads(e.read() or b"{}").get("value", {})
      raise WebDriverError(payload.get("error", str(e.code)), payload.get("message", "")) from None

  def _session(self, method: str, path: str, body: dict | None = None):
    return self._call(method, f"/session/{self.session}{path}", body)

  def open(self, path: Path) -> None:
    self._session("POST", "/url", {"url": path.resolve().as_uri()})

  def text(self) -> str:
    return self._session("POST", "/execute/sync", {"script": "return document.body.innerText;",
                                                   "args": []})

  def script(self, source: str):
    return self._session("POST", "/execute/sync", {"script": source, "args": []})

  def alert_text(self) -> str | None:
    """The text of an open JavaScript dialog, or None when none is open."""
    try:
      return self._session("GET", "/alert/text")
    except WebDriverError as e:
      if e.error == "no such alert":
        return None
      raise

  def console(self) -> list[dict]:
    """Browser console entries since the last call (level, message)."""
    return self._session("POST", "/se/log", {"type": "browser"})

  def screenshot(self, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(self._session("GET", "/screenshot")))
    return out

  def close(self) -> None:
    try:
      self._call("DELETE", f"/session/{self.session}")
    except Exception:  # the driver may already be gone
      pass
    self._proc.terminate()
    self._proc.wait(timeout=10)
    shutil.rmtree(self._profile, ignore_errors=True)

  def __enter__(self) -> Browser:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class WebDriverError(RuntimeError):
  def __init__(self, error: str, message: str):
    self.error = error
    super().__init__(f"{error}: {message}")
