"""The reports in a real browser: headless Chromium opens them offline, runs no customer text, logs
no console errors, and shows hostile text literally. `.ci/run` installs Debian's chromium and
chromium-driver; without them these tests skip. The hostile report is the session's run from
PostgreSQL (conftest.db_run), which needs Debian's postgresql."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import HOSTILE, HOSTILE_PRODUCT, REPO
from webdriver import Browser, find_browser

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium and chromedriver not installed "
                                "(apt-get install chromium chromium-driver; .ci/run does this)")
ARTIFACTS = Path(os.environ.get("CVLIB_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))


@pytest.fixture(scope="module")
def browser():
  with Browser(*BROWSER) as b:
    yield b


def _pages(run_dir: Path) -> list[Path]:
  return [run_dir / "index.html", run_dir.parent / "index.html",
          *sorted(run_dir.glob("0*_*.html")), *sorted(run_dir.glob("details/*.html"))]


def _assert_clean(browser: Browser, page: Path) -> None:
  browser.open(page)
  assert browser.alert_text() is None, f"{page.name} opened a JavaScript dialog"
  errors = [e for e in browser.console() if e.get("level") == "SEVERE"]
  assert not errors, f"{page.name}: console errors {errors}"
  # self-contained: nothing is fetched from elsewhere (images are data: URIs)
  external = browser.script(
      "return Array.from(document.querySelectorAll('[src],link[href]'))"
      ".map(e => e.src || e.href).filter(u => !u.startsWith('data:'));")
  assert not external, f"{page.name} loads {external}"


def test_tiny_report_opens_cleanly_and_is_screenshotted(browser, tiny_run):
  for page in _pages(tiny_run):
    _assert_clean(browser, page)
  browser.open(tiny_run / "index.html")
  text = browser.text()
  assert "customer value report" in text and "How to read this" in text
  shot = browser.screenshot(ARTIFACTS / "tiny-report.png")
  assert shot.stat().st_size > 20_000


@pytest.fixture(scope="module")
def hostile_run(db_run) -> Path:
  """The whole report on a shop whose reviews and product names are attacks: the session's
  database run (conftest.hostile_shop), one run for both."""
  return db_run["run"]


def test_hostile_text_is_shown_literally_and_never_runs(browser, hostile_run):
  for page in _pages(hostile_run):
    _assert_clean(browser, page)
  browser.open(hostile_run / "index.html")
  text = browser.text()
  shown = [h for h in HOSTILE if h[:40] in text]
  assert len(shown) == len(HOSTILE), "the most negative reviews should be shown as written"
  assert HOSTILE_PRODUCT in text, "product names should be shown as written"
  # no element came from the hostile markup
  assert browser.script("return document.querySelectorAll('img:not([src^=\"data:\"]), svg, "
                        "a[href^=\"javascript\"], script').length;") == 0
  browser.screenshot(ARTIFACTS / "hostile-report.png")
  # the detail page of the reviews that mention service lists the hostile ones as written
  page = hostile_run / "details" / "segment-aspect-service.html"
  browser.open(page)
  text = browser.text()
  assert sum(h[:40] in text for h in HOSTILE) >= 1, "hostile reviews should be listed as written"
  assert browser.script("return document.querySelectorAll('img, svg, script, "
                        "a[href^=\"javascript\"]').length;") == 0


def test_the_readme_picture_script_draws_a_run_and_notes_which(tiny_run, tmp_path):
  spec = importlib.util.spec_from_file_location("screenshot", REPO / "docs" / "screenshot.py")
  shot = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(shot)
  note = shot.take(tiny_run, tmp_path / "pic.png", tmp_path / "pic.json")
  assert (tmp_path / "pic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert json.loads((tmp_path / "pic.json").read_text()) == note
  assert note["dataset"] == "tiny"
  assert note["metrics_sha256"] == hashlib.sha256(
      (tiny_run / "metrics.json").read_bytes()).hexdigest()
  with pytest.raises(FileNotFoundError, match="not a finished report run"):
    shot.take(tmp_path, tmp_path / "x.png", tmp_path / "x.json")
