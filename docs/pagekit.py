"""Formatting helpers and the Page builder shared by the generated docs pages (docs/generate.py)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Iterable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
REPORTS = RESULTS / "reports"
DOCS = REPO / "docs"
WIDTH = 100
DASH = "–"  # a cell with no value


# --- formatting ---------------------------------------------------------------------------------

def f2(x: float | None) -> str:
  return DASH if missing(x) else f"{x:.2f}"


def f3(x: float | None) -> str:
  return DASH if missing(x) else f"{x:.3f}"


def signed3(x: float | None) -> str:
  return DASH if missing(x) else f"{x:+.3f}"


def pct(x: float | None, digits: int = 0) -> str:
  return DASH if missing(x) else f"{100 * x:.{digits}f}%"


def count(x: float | None) -> str:
  return DASH if missing(x) else f"{int(round(x)):,}"


def ratio(x: float | None) -> str:
  return DASH if missing(x) else f"{x:.2f}x"


def rate(x: float | None) -> str:
  """Sequences (or customers) per second: whole numbers from 100 up."""
  if missing(x):
    return DASH
  return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def secs(x: float | None) -> str:
  if missing(x):
    return DASH
  if x >= 90:
    m, s = divmod(int(round(x)), 60)
    return f"{m} min" if s == 0 else f"{m} min {s} s"
  return f"{x:.1f} s" if x < 10 else f"{x:.0f} s"


def ms(x_s: float | None) -> str:
  """Seconds shown as milliseconds."""
  return DASH if missing(x_s) else f"{1000 * x_s:.1f} ms"


def gb(mb: float | None) -> str:
  return DASH if missing(mb) else f"{mb / 1024:.1f} GB"


def plural(n: int, word: str) -> str:
  return f"{n:,} {word}" + ("" if n == 1 else "s")


def missing(x: Any) -> bool:
  return x is None or (isinstance(x, float) and math.isnan(x))


def link(rel: str, from_docs: bool = True) -> str:
  """A markdown link to a repository file, relative to docs/."""
  return f"[`{rel}`](../{rel})" if from_docs else f"`{rel}`"


def table(headers: list[str], rows: Iterable[list[Any]], align: str | None = None) -> str:
  """A markdown table; ``align`` holds one of 'l' / 'r' per column (default: first left)."""
  rows = [[str(c) for c in r] for r in rows]
  align = align or "l" + "r" * (len(headers) - 1)
  marks = ["---:" if a == "r" else "---" for a in align]
  out = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
  out += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(out)


def para(text: str) -> str:
  text = " ".join(text.split())
  return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


class Page:
  """A page under construction: blocks of markdown, and the results files it read."""

  def __init__(self, title: str):
    self.blocks = [f"# {title}"]
    self.used: list[str] = []

  def load(self, rel: str) -> Any:
    return json.loads(self.read_text(rel))

  def read_text(self, rel: str) -> str:
    if rel not in self.used:
      self.used.append(rel)
    return (REPO / rel).read_text(encoding="utf-8")

  def h2(self, text: str) -> None:
    self.blocks.append(f"## {text}")

  def h3(self, text: str) -> None:
    self.blocks.append(f"### {text}")

  def p(self, text: str) -> None:
    self.blocks.append(para(text))

  def raw(self, text: str) -> None:
    self.blocks.append(text.strip("\n"))

  def table(self, headers, rows, align=None) -> None:
    self.blocks.append(table(headers, rows, align))

  def source(self, *rels: str, note: str = "") -> None:
    files = ", ".join(link(r) for r in rels)
    self.p(f"Source: {files}{'; ' + note if note else ''}.")

  def render(self, header: str) -> str:
    return header + "\n" + "\n\n".join(self.blocks) + "\n"


def when(d: dict) -> str:
  """The date a results file records, as YYYY-MM-DD HH:MM."""
  for key in ("date", "written", "when"):
    if d.get(key):
      return str(d[key]).replace("T", " ")[:16]
  return "undated"


# --- benchmarks.md --------------------------------------------------------------------------------

# Figures the README quoted that no results file holds; benchmarks.md lists them in its last note.

def sentence(text: str) -> str:
  """``text`` capitalised, ending with one full stop."""
  text = text.strip()
  return text[:1].upper() + text[1:].rstrip(".") + "." if text else ""
