"""The run folder as the notebooks see it: artifacts between stages, metrics, and report parts.

Each notebook opens ``Workspace(run_dir, stage)``, reads what earlier stages left, and adds what the
stakeholder page shows (headline numbers, figures, tables, notes) to ``report/<stage>.json``. The
runner assembles ``index.html`` and ``metrics.json`` from those parts, so re-running one stage
replaces only that stage's parts.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cvlib.config import REPO, STAGES, Params

# Where each part goes on the stakeholder page, in page order.
# The layout of a run folder, relative to its root: the one place it is spelled out.
ARTIFACTS_DIR = "artifacts"  # what the stages pass on to each other
MODELS_DIR = "models"  # what scoring needs; models/<network>/ holds each value network
ENCODER_DIR = "encoder"  # under models/: the fine-tuned encoder, its tokenizer and blend
TEXT_FEATURIZER_FILE = "text_featurizer.npz"  # under models/

SECTIONS = {
    "since_last": "Since the last report",  # monthly runs: the page adds the last report's date
    "data": "Data and cleaning",
    "sentiment": "What customers say: review sentiment",
    "value": "Customer value: how well we predict it",
    "segments": "Segments and actions",
    "opinions": "Opinions by aspect",
    "recommendations": "Product recommendations",
}


class StageMissingError(RuntimeError):
  """An artifact an earlier stage writes is not in the run folder."""


class Workspace:
  """Files of one run, for one stage.

  Args:
    run_dir: the run folder (created if missing).
    stage: one of :data:`cvlib.config.STAGES`.
  """

  def __init__(self, run_dir: str | Path, stage: str):
    if stage not in STAGES:
      raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    self.root = Path(run_dir)
    self.stage = stage
    for sub in (ARTIFACTS_DIR, "metrics", "report", MODELS_DIR):
      (self.root / sub).mkdir(parents=True, exist_ok=True)
    self._parts: list[dict] = []
    self._metrics: dict[str, Any] = {}
    self._write_parts()  # a re-run stage starts with an empty part list ...
    self.save_metrics({})  # ... and no metrics

  @property
  def encoder_dir(self) -> Path:
    """Where stage 2 saves the fine-tuned encoder (with its tokenizer and TF-IDF blend)."""
    return self.root / MODELS_DIR / ENCODER_DIR

  # --- artifacts --------------------------------------------------------------------------------
  def path(self, *parts: str) -> Path:
    p = self.root.joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p

  def save_frame(self, name: str, df: pd.DataFrame) -> Path:
    p = self.path(ARTIFACTS_DIR, f"{name}.parquet")
    df.to_parquet(p, index=False)
    return p

  def load_frame(self, name: str) -> pd.DataFrame:
    p = self.root / ARTIFACTS_DIR / f"{name}.parquet"
    if not p.exists():
      raise StageMissingError(f"{p} not found: run the stage that writes {name!r} first")
    return pd.read_parquet(p)

  def has(self, name: str) -> bool:
    return (self.root / ARTIFACTS_DIR / f"{name}.parquet").exists()

  def has_json(self, name: str) -> bool:
    return (self.root / ARTIFACTS_DIR / f"{name}.json").exists()

  def save_array(self, name: str, arr: np.ndarray) -> Path:
    p = self.path(ARTIFACTS_DIR, f"{name}.npy")
    np.save(p, arr, allow_pickle=False)
    return p

  def load_array(self, name: str) -> np.ndarray:
    p = self.root / ARTIFACTS_DIR / f"{name}.npy"
    if not p.exists():
      raise StageMissingError(f"{p} not found: run the stage that writes {name!r} first")
    return np.load(p, allow_pickle=False)

  def save_json(self, name: str, obj: Any) -> Path:
    p = self.path(ARTIFACTS_DIR, f"{name}.json")
    p.write_text(json.dumps(to_jsonable(obj), indent=2))
    return p

  def load_json(self, name: str) -> Any:
    p = self.root / ARTIFACTS_DIR / f"{name}.json"
    if not p.exists():
      raise StageMissingError(f"{p} not found: run the stage that writes {name!r} first")
    return json.loads(p.read_text())

  # --- metrics ----------------------------------------------------------------------------------
  def save_metrics(self, metrics: dict[str, Any]) -> Path:
    """Adds top-level metrics.json keys for this stage (the runner merges the stages).

    Later calls in the same stage add to earlier ones; "notes" dicts are merged key by key.
    """
    notes = {**self._metrics.get("notes", {}), **(metrics.get("notes") or {})}
    self._metrics.update(metrics)
    if notes:
      self._metrics["notes"] = notes
    p = self.path("metrics", f"{self.stage}.json")
    p.write_text(json.dumps(to_jsonable(self._metrics), indent=2, allow_nan=False))
    return p

  # --- report parts -----------------------------------------------------------------------------
  def add_headline(self, label: str, value: str, note: str = "") -> None:
    self._add({"kind": "headline", "label": label, "value": value, "note": note})

  def add_text(self, section: str, text: str) -> None:
    """A paragraph of plain text (escaped when rendered)."""
    self._add({"kind": "text", "section": section, "text": text})

  def add_preformatted(self, section: str, text: str, caption: str) -> None:
    """A block of text shown as written, in a fixed-width font (escaped when rendered), e.g. a
    params snippet to copy."""
    self._add({"kind": "pre", "section": section, "caption": caption, "text": text})

  def add_warning(self, text: str) -> None:
    self._add({"kind": "warning", "text": text})

  def add_skipped(self, skipped: Mapping[str, str]) -> None:
    """Parts of the report that could not be computed on this shop, with the reason for each:
    listed on the report's first screen and under ``skipped`` in metrics.json."""
    if not skipped:
      return
    for section, reason in skipped.items():
      self._add({"kind": "skipped", "name": section, "text": reason})
    self.save_metrics({"skipped": {**self._metrics.get("skipped", {}), **skipped}})

  def add_figure(self, section: str, fig, caption: str) -> None:
    """Embeds a matplotlib figure as PNG and closes it."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})  # no version stamp: keeps output reproducible
    plt.close(fig)
    self._add({"kind": "figure", "section": section, "caption": caption,
               "png": base64.b64encode(buf.getvalue()).decode("ascii")})

  def add_table(self, section: str, df: pd.DataFrame, caption: str, max_rows: int = 20,
                floatfmt: str = "{:,.3g}",
                links: Mapping[str, Sequence[str | None]] | None = None) -> None:
    """A table, stored as display strings (escaped when rendered).

    Args:
      links: column name -> one href per row of ``df`` (None for no link), e.g. the detail pages
        from :meth:`add_page`; those cells become links.
    """
    shown = df.head(max_rows)
    cells: list[list[Any]] = [[_fmt(v, floatfmt) for v in row]
                              for row in shown.itertuples(index=False)]
    for column, hrefs in (links or {}).items():
      if column not in df.columns:
        raise ValueError(f"links: {column!r} is not a column of the table ({list(df.columns)})")
      if len(hrefs) != len(df):
        raise ValueError(f"links[{column!r}]: need one href per row ({len(df)}), got {len(hrefs)}")
      j = list(shown.columns).index(column)
      for i, href in enumerate(list(hrefs)[:len(shown)]):
        if href is not None:
          cells[i][j] = {"text": cells[i][j], "href": check_href(href)}
    self._add({"kind": "table", "section": section, "caption": caption,
               "columns": [str(c) for c in shown.columns], "rows": cells,
               "truncated": len(df) > max_rows, "total_rows": len(df)})

  def add_page(self, name: str, title: str, df: pd.DataFrame, *, intro: str = "",
               section: str | None = None, max_rows: int = 500,
               floatfmt: str = "{:,.3g}") -> str:
    """A detail page, ``details/<name>.html``: the customers or reviews behind a number.

    Args:
      name: the page's name, made into a file name (letters, digits and dashes); a name given
        twice in one stage gets a numbered suffix.
      title: the page heading.
      df: the rows to list; the first ``max_rows`` are shown, with the total.
      intro: a sentence above the table (how rows are ordered, where the rest is).
      section: the stakeholder-page section the page links back to.

    Returns:
      The page's href relative to the run folder, for :meth:`add_table`'s ``links``.
    """
    if section is not None and section not in SECTIONS:
      raise ValueError(f"section must be one of {', '.join(SECTIONS)}, got {section!r}")
    slug = page_slug(f"{self.stage}-{name}")
    taken = {p["name"] for p in self._parts if p["kind"] == "page"}
    base, n = slug, 2
    while slug in taken:
      slug, n = f"{base}-{n}", n + 1
    shown = df.head(max_rows)
    self._add({"kind": "page", "name": slug, "title": title, "intro": intro, "back": section,
               "columns": [str(c) for c in shown.columns],
               "rows": [[_fmt(v, floatfmt) for v in row] for row in shown.itertuples(index=False)],
               "truncated": len(df) > max_rows, "total_rows": len(df)})
    return f"details/{slug}.html"

  def _add(self, part: dict) -> None:
    if "section" in part and part["section"] not in SECTIONS:
      raise ValueError(f"section must be one of {', '.join(SECTIONS)}, got {part['section']!r}")
    self._parts.append(part)
    self._write_parts()

  def _write_parts(self) -> None:
    p = self.path("report", f"{self.stage}.json")
    p.write_text(json.dumps({"stage": self.stage, "parts": self._parts}))


_HREF = re.compile(r"^(details/[a-z0-9-]+\.html|[A-Za-z0-9_-]+\.html|#[a-z0-9-]+)$")


def page_slug(name: str) -> str:
  """A file-name-safe form of a page name: lower-case letters, digits and single dashes."""
  slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
  return slug[:80].rstrip("-") or "page"


def check_href(href: str) -> str:
  """Only links inside the run folder (a detail page, a sibling page, an anchor) are allowed."""
  if not isinstance(href, str) or not _HREF.match(href):
    raise ValueError(f"href {href!r} is not a page of the run folder (details/<name>.html, "
                     "<name>.html or #anchor)")
  return href


def number(x: float, fmt: str = "{:,.3g}") -> str:
  """``x`` in ``fmt``, except that a number the format would write with an exponent (a "g"
  format's "1.67e+04") is written in whole units with thousands separators ("16,712"): readers
  of money and counts do not read exponents."""
  out = fmt.format(x)
  return f"{x:,.0f}" if "e+" in out else out


def percent(x: float) -> str:
  """A share as a whole percentage, with one decimal below 1% (0.2%, not 0%) and above 99% (99.8%,
  not 100%) so that a small or an almost complete share never reads as none or all."""
  if 0 < x < 0.01 or 0.99 < x < 1:
    return f"{x:.1%}"
  return f"{x:.0%}"


def _fmt(v: Any, floatfmt: str) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
    return ""
  if isinstance(v, (float, np.floating)):
    return number(float(v), floatfmt)
  if isinstance(v, (pd.Timestamp,)):
    return v.strftime("%Y-%m-%d")
  return str(v)


def to_jsonable(obj: Any) -> Any:
  """Plain JSON types; NaN and infinity become null."""
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    f = float(obj)
    return f if math.isfinite(f) else None
  if isinstance(obj, np.bool_):
    return bool(obj)
  if isinstance(obj, np.ndarray):
    return to_jsonable(obj.tolist())
  if hasattr(obj, "isoformat"):
    return obj.isoformat()
  return obj


def open_workspace(params: Params, run_dir: str | None, stage: str) -> Workspace:
  """The run folder; interactive sessions (no run_dir) get ``reports/.interactive/<dataset>``."""
  if run_dir is None:
    run_dir = str(REPO / "reports" / ".interactive" / params.dataset)
  return Workspace(run_dir, stage)
