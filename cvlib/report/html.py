"""HTML: the stakeholder page (no code), the analyst pages (executed notebooks), the reports index.

Everything shown is escaped by Jinja2's autoescape: customer text never becomes markup. Images are
embedded, so a page opens offline and survives being forwarded by e-mail.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from cvlib.config import STAGES
from cvlib.report.workspace import SECTIONS, number, page_slug

NOTEBOOKS = {stage: f"{i + 1:02d}_{stage}" for i, stage in enumerate(STAGES)}
# What an empty section says before its reason.
NOT_PART = "Not part of this run: "

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1d2733;
background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:1.7em;margin:.2em 0 .1em} h2{font-size:1.25em;margin-top:2em;border-bottom:2px solid #dde3ea;
padding-bottom:.25em} .sub{color:#5b6b7c;margin:0 0 1em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{flex:1 1 180px;border:1px solid #dde3ea;border-radius:8px;padding:10px 14px;background:#fbfcfd}
.card .v{font-size:1.55em;font-weight:600} .card .l{color:#5b6b7c;font-size:.9em}
.card .n{color:#5b6b7c;font-size:.8em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0 .3em} th,td{border:1px solid #dde3ea;
padding:4px 8px;text-align:left;vertical-align:top} th{background:#eef2f6}
td{max-width:480px;overflow-wrap:break-word} td.t{overflow-wrap:anywhere}
td:first-child{white-space:nowrap}
.tw{overflow-x:auto;max-width:100%}
pre{background:#f6f8fa;border:1px solid #dde3ea;padding:8px 12px;overflow-x:auto;font-size:.85em}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eef2f6}
figcaption,.cap{color:#5b6b7c;font-size:.88em}
.warn{background:#fff5e0;border-left:4px solid #e3a008;padding:8px 12px;margin:.5em 0}
.na{background:#f0f4f8;border-left:4px solid #8a9bb0;padding:8px 12px;margin:.5em 0}
nav a{margin-right:1em} footer{color:#5b6b7c;font-size:.85em;margin-top:3em}
@media print{body{background:#fff} main{padding:0} h2{page-break-after:avoid} figure{page-break-inside:avoid}}
"""

_PAGE = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ css }}</style></head>
<body><main>
<h1>{{ title }}</h1>
<p class="sub">Customer value report · data up to {{ data_end or "?" }} · generated {{ generated }}</p>
<nav>{% for key, name in sections %}<a href="#{{ key }}">{{ name.split(':')[0] }}</a>{% endfor %}
<a href="#how">How to read this</a><a href="#more">Analyst notebooks</a></nav>
{% for w in warnings %}<div class="warn">{{ w }}</div>{% endfor %}
{% if skipped %}<div class="warn" id="skipped"><b>Not in this report</b> (could not be computed on
this shop's data; everything else was):<ul>{% for p in skipped %}<li>{{ p.name }}: {{ p.text }}</li>
{% endfor %}</ul></div>{% endif %}
<div class="cards">{% for h in headlines %}<div class="card"><div class="v">{{ h.value }}</div>
<div class="l">{{ h.label }}</div>{% if h.note %}<div class="n">{{ h.note }}</div>{% endif %}</div>
{% endfor %}</div>
{% for key, name in sections %}<section id="{{ key }}"><h2>{{ name }}</h2>
{% for p in parts[key] %}
{% if p.kind == "text" %}<p>{{ p.text }}</p>
{% elif p.kind == "pre" %}<p class="cap">{{ p.caption }}</p><pre>{{ p.text }}</pre>
{% elif p.kind == "figure" %}<figure><img alt="{{ p.caption }}" src="data:image/png;base64,{{ p.png }}">
<figcaption>{{ p.caption }}</figcaption></figure>
{% elif p.kind == "table" %}<p class="cap">{{ p.caption }}</p><div class="tw"><table><thead><tr>
{% for c in p.columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in p.rows %}<tr>{% for v in row %}<td{% if v is string and v|length > 40 %} class="t"{% endif %}>{% if v is mapping %}<a href="{{ v.href }}">{{ v.text }}</a>{% else %}{{ v }}{% endif %}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>{% if p.truncated %}<p class="cap">First {{ p.rows|length }} of {{ p.total_rows }} rows.</p>{% endif %}
{% endif %}{% else %}<div class="na">{{ missing_reason.get(key, NOT_PART + "this stage did not run.") }}</div>
{% endfor %}</section>{% endfor %}
<section id="how"><h2>How to read this</h2>
<ul>
<li><b>Predicted value</b> is each customer's expected spend over the next {{ horizon }} days. It was
checked by a back-test: models learned from purchases before {{ cutoff }} and were scored on what
customers actually spent in the {{ horizon }} days after it, for customers the models never saw.</li>
<li><b>Gini</b> measures how well a model ranks customers by future value: 1 is a perfect ranking,
0 is no better than random. <b>Decile charts</b> compare predicted and actual average value for each
tenth of customers, from the highest predicted to the lowest.</li>
<li><b>Churn probability</b> is the chance that a customer buys nothing in the next {{ horizon }} days.</li>
<li><b>Sentiment</b> accuracy is measured on reviews the model did not train on, against two simple
baselines. Customer ids are pseudonymised; customer text is shown as written.</li>
</ul></section>
<section id="more"><h2>Analyst notebooks</h2><p>Each stage with its code and full output:</p><ul>
{% for name, href in links %}<li><a href="{{ href }}">{{ name }}</a></li>{% endfor %}
<li><a href="metrics.json">metrics.json</a> · <a href="run.json">run.json</a></li></ul></section>
<footer>cvlib {{ version }} · params {{ params_file }} · commit {{ commit or "unknown" }} ·
run {{ started }} to {{ ended }}</footer>
</main></body></html>""", autoescape=True)

_DETAIL = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ css }}</style></head>
<body><main>
<p class="sub"><a href="../index.html{% if back %}#{{ back }}{% endif %}">&larr; back to the report</a></p>
<h1>{{ title }}</h1>
{% if intro %}<p>{{ intro }}</p>{% endif %}
<p class="cap">{% if truncated %}First {{ rows|length }} of {{ total_rows }} rows.{% else %}{{ total_rows }} rows.{% endif %}
Customer ids are pseudonymised; customer text is shown as written.</p>
<div class="tw"><table><thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr>{% for v in row %}<td{% if v is string and v|length > 40 %} class="t"{% endif %}>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table></div>
<footer>cvlib · {{ dataset }}</footer>
</main></body></html>""", autoescape=True)

_INDEX = jinja2.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cvlib reports</title><style>{{ css }}</style></head>
<body><main><h1>cvlib reports</h1><p class="sub">One report per dataset; newest run of each.</p>
<table><thead><tr><th>dataset</th><th>customers</th><th>transactions</th><th>reviews</th>
<th>scoring value model (test Gini)</th><th>sentiment macro-F1</th><th>last run</th>
<th>over its runs (data end, oldest first)</th></tr></thead><tbody>
{% for r in rows %}<tr><td><a href="{{ r.href }}">{{ r.dataset }}</a></td><td>{{ r.customers }}</td>
<td>{{ r.transactions }}</td><td>{{ r.reviews }}</td><td>{{ r.best }}</td><td>{{ r.f1 }}</td>
<td>{{ r.ended }}</td><td>{% for t in r.trends %}<div class="cap">{{ t.label }}: {{ t.last }}</div>
{{ t.svg }}{% endfor %}</td></tr>{% endfor %}</tbody></table>
<p class="cap">Trends: each dataset's published run and the runs kept under history/ (report.keep_history),
by the end of their data; hover a point for its value.</p></main></body></html>""", autoescape=True)


def load_parts(run_dir: Path) -> dict[str, list[dict]]:
  parts: dict[str, list[dict]] = {"headline": [], "warning": []}
  for stage in STAGES:
    p = run_dir / "report" / f"{stage}.json"
    if p.exists():
      for part in json.loads(p.read_text())["parts"]:
        key = part.get("section", part["kind"])
        parts.setdefault(key, []).append(part)
  return parts


def render_index(run_dir: Path, metrics: dict[str, Any], run_info: dict[str, Any]) -> Path:
  """Writes the stakeholder page ``index.html`` of one run folder."""
  parts = load_parts(run_dir)
  params = run_info.get("params", {})
  split = metrics.get("split") or {}
  missing = {}
  notes = metrics.get("notes") or {}
  if metrics.get("sentiment") is None:
    missing["sentiment"] = NOT_PART + (notes.get("sentiment")
                                       or "this dataset has no labelled review text.")
  failed = (metrics.get("skipped") or {}).get("since the last report")
  # a first report's note is said as it is: nothing is missing from it
  missing["since_last"] = (NOT_PART + failed if failed else notes.get("since_last")
                           or NOT_PART + "no earlier run of this dataset to compare with.")
  sections = dict(SECTIONS)
  previous = ((metrics.get("since_last") or {}).get("previous") or {}).get("data_end")
  if previous:
    sections["since_last"] = f"{SECTIONS['since_last']} ({previous})"
  html = _PAGE.render(
      css=_CSS, title=(params.get("report") or {}).get("title") or
      f"{metrics.get('dataset', run_dir.name)}: customer value report",
      data_end=split.get("data_end"), generated=run_info.get("ended", ""),
      sections=list(sections.items()), parts=parts, headlines=parts["headline"],
      warnings=[p["text"] for p in parts["warning"]], skipped=parts.get("skipped", []),
      missing_reason=missing, NOT_PART=NOT_PART,
      horizon=split.get("horizon_days", "?"), cutoff=split.get("cutoff", "?"),
      links=[(f"{i + 1}. {stage}", f"{NOTEBOOKS[stage]}.html")
             for i, stage in enumerate(STAGES) if (run_dir / f"{NOTEBOOKS[stage]}.html").exists()],
      version=run_info.get("cvlib_version", "?"), params_file=run_info.get("params_file", "?"),
      commit=run_info.get("git_commit"), started=run_info.get("started", ""),
      ended=run_info.get("ended", ""))
  render_pages(run_dir, parts.get("page", []), dataset=metrics.get("dataset", run_dir.name))
  out = run_dir / "index.html"
  out.write_text(html, encoding="utf-8")
  return out


def render_pages(run_dir: Path, pages: list[dict], *, dataset: str) -> list[Path]:
  """Writes the detail pages (``details/*.html``), replacing those of earlier renders."""
  folder = run_dir / "details"
  if folder.is_dir():
    for old in folder.glob("*.html"):
      old.unlink()
  written = []
  for page in pages:
    folder.mkdir(exist_ok=True)
    path = folder / f"{page_slug(page['name'])}.html"
    path.write_text(_DETAIL.render(css=_CSS, dataset=dataset, **{k: page[k] for k in (
        "title", "intro", "back", "columns", "rows", "truncated", "total_rows")}),
                    encoding="utf-8")
    written.append(path)
  return written


def _headline_numbers(m: dict[str, Any]) -> dict[str, float | None]:
  """The numbers the reports index follows over a dataset's runs."""
  clv = m.get("clv") or {}
  best = clv.get("scoring_model") or clv.get("best")  # the scorer; "best" before issue 19
  gini = ((clv.get("models") or {}).get(best) or {}).get("gini") if best else None
  forecast = (m.get("since_last") or {}).get("forecast") or {}
  return {"customers": (m.get("counts") or {}).get("customers"), "back-test Gini": gini,
          "realised / predicted spend since the last report":
          (forecast.get("spend") or {}).get("ratio")}


def dataset_history(out_dir: Path, dataset_dir: Path) -> list[dict[str, Any]]:
  """Each kept run of a dataset (history/ and the published one), oldest data end first:
  {"data_end", **headline numbers}. Runs whose metrics.json cannot be read are left out."""
  runs = []
  history = out_dir / "history" / dataset_dir.name
  folders = sorted(p for p in history.iterdir() if p.is_dir()) if history.is_dir() else []
  for folder in [*folders, dataset_dir]:
    try:
      m = json.loads((folder / "metrics.json").read_text())
      end = (m.get("split") or {}).get("data_end")
    except (OSError, ValueError, AttributeError):
      continue
    if isinstance(m, dict) and end:
      runs.append({"data_end": str(end), **_headline_numbers(m)})
  return sorted(runs, key=lambda r: r["data_end"])


def trend_svg(points: list[tuple[str, float | None]], *, width: int = 160, height: int = 36) -> Markup:
  """A small line chart of (label, value) points as inline SVG; None values are gaps. Only
  numbers and escaped labels go into the markup."""
  known = [(i, float(v)) for i, (_, v) in enumerate(points)
           if v is not None and math.isfinite(float(v))]
  if not known:
    return Markup("")
  lo, hi = min(v for _, v in known), max(v for _, v in known)
  span = hi - lo or 1.0
  step = (width - 8) / max(len(points) - 1, 1)
  xy = [(4 + i * step, height - 4 - (v - lo) / span * (height - 8)) for i, v in known]
  line = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
  dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#2f6db5"><title>'
                 f'{escape(points[i][0])}: {number(v)}</title></circle>'
                 for (i, v), (x, y) in zip(known, xy))
  return Markup(f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                f'role="img"><polyline points="{line}" fill="none" stroke="#2f6db5" '
                f'stroke-width="1.5"/>{dots}</svg>')


def render_reports_index(out_dir: Path) -> Path:
  """Writes ``out_dir/index.html`` listing every dataset report with its headline numbers."""
  rows = []
  for metrics_path in sorted(out_dir.glob("*/metrics.json")):
    d = metrics_path.parent
    m = json.loads(metrics_path.read_text())
    run = json.loads((d / "run.json").read_text()) if (d / "run.json").exists() else {}
    counts = m.get("counts") or {}
    clv = m.get("clv") or {}
    best = clv.get("scoring_model") or clv.get("best")  # the scorer; "best" before issue 19
    gini = ((clv.get("models") or {}).get(best) or {}).get("gini") if best else None
    sent = m.get("sentiment") or {}
    rows.append({"dataset": m.get("dataset", d.name), "href": f"{d.name}/index.html",
                 "customers": f"{counts.get('customers', 0):,}",
                 "transactions": f"{counts.get('transactions', 0):,}",
                 "reviews": f"{counts.get('reviews', 0):,}",
                 "best": f"{best} ({gini:.3f})" if best and gini is not None else "n/a",
                 "f1": f"{sent['macro_f1']:.3f}" if sent.get("macro_f1") is not None else "n/a",
                 "ended": run.get("ended", ""), "trends": _trends(out_dir, d)})
  out = out_dir / "index.html"
  out.write_text(_INDEX.render(css=_CSS, rows=rows), encoding="utf-8")
  return out


def _trends(out_dir: Path, dataset_dir: Path) -> list[dict[str, Any]]:
  runs = dataset_history(out_dir, dataset_dir)
  out = []
  for key in ("back-test Gini", "customers", "realised / predicted spend since the last report"):
    points = [(r["data_end"], r[key]) for r in runs]
    if len(runs) < 2 or all(v is None for _, v in points):
      continue
    last = next((v for _, v in reversed(points) if v is not None), None)
    out.append({"label": key, "last": number(last), "svg": trend_svg(points)})
  return out


def render_notebook_html(ipynb: Path, html: Path) -> Path:
  """The analyst page: the executed notebook with code, images embedded."""
  import nbconvert
  import nbformat
  nb = nbformat.read(ipynb, as_version=4)
  # sanitize_html cleans HTML outputs of cells; dropping every <script> then guarantees the page
  # runs no code at all (the lab template's MathJax, require.js and mermaid loaders would also
  # fetch from a CDN, which fails offline and in e-mail).
  exporter = nbconvert.HTMLExporter(embed_images=True, sanitize_html=True, mathjax_url="",
                                    require_js_url="")
  body, _ = exporter.from_notebook_node(nb)
  body = _SCRIPT.sub("", body)
  html.write_text(body, encoding="utf-8")
  return html


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.S | re.I)
