"""The reports in a real browser: headless Chromium opens them offline, runs no customer text, logs
no console errors, and shows hostile text literally. `.ci/run` installs Debian's chromium and
chromium-driver; without them these tests skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cvlib
from conftest import REPO, SMALL_MODELS, synthetic_frames
from webdriver import Browser, find_browser

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium and chromedriver not installed "
                                "(apt-get install chromium chromium-driver; .ci/run does this)")
ARTIFACTS = Path(os.environ.get("CVLIB_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))

HOSTILE = [
    "<script>alert(1)</script> terrible, broken, awful, worst purchase ever",
    "<img src=x onerror=alert(1)> horrible quality, never again, broken",
    # a clause of a keyword and a verdict ("awful service") is tagged; so is the longer one
    '<a href="javascript:alert(1)">click me</a> the customer service was awful, terrible, useless',
    "</td></tr></table><b>unbalanced <i>tags awful terrible broken",
]
HOSTILE_PRODUCT = '<svg onload=alert(1)>Deluxe "mug" & <b>saucer</b>'


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
def hostile_run(tmp_path_factory) -> Path:
  """A shop whose reviews and product names are attacks; the whole report runs on it."""
  tmp = tmp_path_factory.mktemp("hostile")
  f = synthetic_frames()
  reviews = f["reviews"].dropna(subset=["text", "customer_id"]).copy()
  reviews["rating"] = reviews["rating"].clip(lower=2)  # only the hostile reviews have one star
  worst = reviews.index[:len(HOSTILE)]
  reviews.loc[worst, "text"] = HOSTILE
  reviews.loc[worst, "rating"] = 1.0
  products = f["products"].copy()
  # every product name is an attack (with its number, so that products stay distinguishable):
  # the report's table of the most recommended products shows some of them, whichever they are
  products["description"] = HOSTILE_PRODUCT + " " + products["product_id"].astype(str)
  lines = f["items"].merge(f["transactions"].drop_duplicates("order_id"), on="order_id",
                           suffixes=("", "_order")).merge(products, on="product_id")
  lines[["customer_id", "order_id", "timestamp", "product_id", "description", "quantity",
         "unit_price"]].to_csv(tmp / "lines.csv", index=False)
  reviews[["customer_id", "timestamp", "rating", "text"]].to_json(tmp / "reviews.jsonl",
                                                                  orient="records", lines=True,
                                                                  date_format="iso")
  params = tmp / "hostile.yaml"
  params.write_text(
      "dataset: hostile\ndata:\n  adapter: generic\n  transactions: {path: lines.csv}\n"
      "  reviews: {path: reviews.jsonl}\nsplit: {calibration_end: 2024-01-01}\n" + SMALL_MODELS)
  cvlib.run(params, out=tmp / "out", log=lambda s: None)
  return tmp / "out" / "hostile"


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
