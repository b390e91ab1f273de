"""docs/benchmarks.md: speed, memory and quality benchmarks, one section per results file."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from pagekit import (
    REPO, RESULTS, REPORTS, DASH, f3, signed3, pct, count, ratio, rate, secs, ms, gb, plural,
    missing, link, Page, when, sentence)
from spark_page import SPARK_REL, spark_verdicts


UNBACKED = [
    "the demo `make report` wall time and its per-stage split (no stored run.json of that run)",
    "the features benchmark's number of customer-day groups",
    "the scale run's split of preprocessing (reading, cleaning, features) and of evaluation "
    "(bootstrap intervals) into sub-steps: the results file keeps stage totals only",
    "the GPU profile of three BERT-base training steps (busy time, its split into matrix products "
    "and memory-bound fusions): no trace is stored",
    "sentiment and timings of report runs on women's clothing, Chinese reviews and Olist (encoder "
    "alone, combined with TF-IDF, the baseline, minutes per run): no metrics.json of those runs "
    "is stored",
    "the English-MiniLM Olist sentiment run (macro-F1 against TF-IDF) from before the Portuguese "
    "encoder: no results file",
    "offline checks that left no file: TF-IDF with weaker regularisation (C = 4) on Chinese "
    "sentiment (BG/NBD's predictions as inputs of the value network now have a file: "
    "value_levers.json, shown in results.md)",
    "XLA CPU flags tried on the training step (vector width, oneDNN, XNNPACK, fusions off): "
    "no file",
    "project targets that no results file records (the GPU MFU target, the CPU speed and "
    "bucketing targets, the aspect tagger's precision and recall targets)",
]


def build_benchmarks() -> Page:
  page = Page("Benchmarks")
  cpus = page.load("benchmarks/results/features.json")["machine"]["cpus"]
  page.p("Scripts under `benchmarks/` measure speed, memory and quality against named peers and "
         "write JSON to `benchmarks/results/` (GPU runs to `benchmarks/results/gpu/`). This page is "
         "generated from those files by `docs/generate.py`: every figure on it is read from the "
         f"file named under its table. Unless a section says otherwise, the machine is the {cpus}-core "
         "development VM (AMD EPYC, AVX2, no GPU), whose run-to-run spread is wide: read ratios "
         "within a few percent of 1.0 as level. The results of report runs are in "
         "[results.md](results.md).")
  _features(page)
  _scale(page)
  _score(page)
  _encoder_cpu(page)
  _code_ab(page)
  _encoder_levers(page)
  _host_memory(page)
  _matmul(page)
  _buckets(page)
  _kernel_on_reviews(page)
  _gpu_speed(page)
  _gpu_step(page)
  _sentiment(page)
  _blend(page)
  _aspects(page)
  _aspect_agreement(page)
  _aspect_levers(page)
  _aspect_tagger(page)
  _aspect_tagger_recipe(page)
  _aspect_candidates(page)
  _demo_text(page)
  _dedup(page)
  _truncation(page)
  _gpu_check(page)
  _odd_shops(page)
  _database(page)
  _spark_pointer(page)
  _serve(page)
  _monthly(page)
  page.h2("Figures without a results file")
  page.p("The README used to quote these; no file under `benchmarks/results/` backs them, so they "
         "are left out here:")
  page.raw("\n".join(f"- {u}" for u in UNBACKED))
  files = sorted(p.relative_to(REPO).as_posix() for p in RESULTS.rglob("*")
                 if p.is_file() and p.suffix in (".json", ".log") and REPORTS not in p.parents)
  unused = [f for f in files if f not in page.used]
  if unused:
    page.p("Results files not shown on this page: " + ", ".join(link(f) for f in unused) + ".")
  return page


FEATURE_LABELS = {"cvlib": "cvlib (DuckDB) summary", "cvlib_features": "cvlib, all customer features",
                  "pandas": "pandas groupby", "lifetimes": "lifetimes `calibration_and_holdout_data`"}


def _features(page: Page) -> None:
  rel = "benchmarks/results/features.json"
  d = page.load(rel)
  page.h2("Customer features")
  agree = d["agreement"]
  max_rel = max(v["max_rel"] for a in agree.values() for v in a.values()
                if isinstance(v, dict) and "max_rel" in v)
  identical = all(a.get("identical") and a.get("same_customers") for a in agree.values())
  page.p(f"The per-customer RFM summary with a calibration/holdout split, on "
         f"{count(d['transactions'])} synthetic transactions of {count(d['customers'])} customers "
         f"(`benchmarks/features.py`): each implementation in its own process, median of "
         f"{d['repeats']} runs on {d['machine']['cpus']} cores. "
         + (f"The implementations agree on every customer to a relative difference of "
            f"{max_rel:.0e}." if identical else "The implementations do not agree: see the file."))
  page.table(["implementation", "median", "peak RSS"],
             [[FEATURE_LABELS.get(k, k), secs(r["median_s"]), gb(r["peak_rss_mb"])]
              for k, r in d["runs"].items()])
  sp, t = d["speedup"], d["targets"]
  met = lambda x, target: "meets" if x >= target else "short of"
  page.p(f"cvlib is {sp['cvlib_vs_pandas']}x faster than pandas ({met(sp['cvlib_vs_pandas'], t['cvlib_vs_pandas_min'])} "
         f"the {t['cvlib_vs_pandas_min']}x the project aims for) and {sp['cvlib_vs_lifetimes']}x "
         f"faster than lifetimes ({met(sp['cvlib_vs_lifetimes'], t['cvlib_vs_lifetimes_min'])} "
         f"the {t['cvlib_vs_lifetimes_min']}x aimed for). Almost all of cvlib's time is the "
         "grouping by customer and day.")
  page.source(rel, note=f"written {when(d)}")


def _scale(page: Page) -> None:
  rel = "benchmarks/results/scale.json"
  d = page.load(rel)
  page.h2("A whole run at scale")
  page.p(f"A whole `cvlib run` (`benchmarks/scale.py`) on {count(d['customers'])} synthetic "
         f"customers and {count(d['transactions'])} order-level transactions in a Parquet file, "
         "read through the generic adapter. There are no products or reviews, so the run is "
         "preprocessing, the behaviour value network, the baselines and back-test, and forward "
         "scores, segments and actions for every customer. Evaluation is the longest stage: the "
         "bootstrap intervals of the Gini differences on the test customers, and fitting BG/NBD "
         "and the trees.")
  st = d["seconds_per_stage"]
  rows = [["preprocess (read, validate, clean, features)", secs(st["preprocess"])],
          [f"finetune (here: the value network, {d['value_epochs']} epochs)", secs(st["finetune"])],
          ["evaluate (baselines, back-test)", secs(st["evaluate"])],
          [f"segment (scores for {count(d['scores_rows'])} customers)", secs(st["segment"])],
          ["whole run, wall clock", secs(d["run_wall_s"])],
          ["peak resident memory, largest process", gb(d["peak_rss_mb_largest_process"])],
          ["stakeholder page", f"{d['index_html_mb']:.1f} MB"]]
  page.table(["", "result"], rows)
  page.source(rel, note=f"run {when(d)}, {d['machine']['cpus']} cores, exit status {d['returncode']}")


def _score(page: Page) -> None:
  rel = "benchmarks/results/score.json"
  d = page.load(rel)
  page.h2("Scoring with a finished run")
  b, nd, txt, lat = (d["batch_behaviour"], d["batch_behaviour_no_drivers"],
                     d["batch_text_subsample"], d["latency"])
  t, v = d["targets"], d["verdict"]
  loads = [x for part in (b, nd, txt, lat) for k in ("load_avg_before", "load_avg_after")
           for x in part.get(k, [])]
  page.p(f"`benchmarks/score.py` scores with a run's models ({d['data']['how']}): a batch of "
         f"{count(d['data']['customers'])} customers ({count(d['data']['transactions'])} orders) "
         f"through `cvlib score`'s path in chunks of {count(b['chunk_size'])}, and single customers "
         f"through `Scorer.score` ({lat['scorer_behaviour']['n']} calls). The "
         f"{d['machine']['cpus']}-core machine was shared with other jobs (load average "
         f"{min(loads):.1f} to {max(loads):.1f}).")
  yes = lambda ok: "met" if ok else "not met"
  rows = [
      [f"{count(b['customers'])} customers, behaviour network, with cleaning and per-customer "
       "drivers", secs(v["batch_1m_behaviour_s_with_cleaning"]), f"< {secs(t['batch_1m_behaviour_s'])}",
       yes(v["batch_1m_behaviour_under_5_min"])],
      ["the same without drivers", secs(v["batch_1m_behaviour_no_drivers_s_with_cleaning"]), "", ""],
      ["peak memory of that", gb(b["peak_rss_with_cleaning_mb"]), f"< {gb(t['batch_peak_rss_mb'])}",
       yes(v["batch_peak_rss_under_4_gb"])],
      ["`Scorer.score`, one customer, behaviour network, p50 / p99",
       f"{lat['scorer_behaviour']['p50_ms']} / {lat['scorer_behaviour']['p99_ms']} ms",
       f"p50 < {t['latency_p50_behaviour_ms']} ms", yes(v["latency_p50_behaviour_under_20_ms"])],
      ["`Scorer.score`, one customer with review text, p50 / p99",
       f"{lat['scorer_text']['p50_ms']} / {lat['scorer_text']['p99_ms']} ms",
       f"p50 < {t['latency_p50_text_ms']} ms", yes(v["latency_p50_text_under_100_ms"])],
      ["peer: scikit-learn scaler + trees on the same features, p50",
       f"{lat['peer_sklearn_end_to_end']['p50_ms']} ms", "", ""],
      [f"text-aware network, batch of {count(txt['customers'])} customers",
       f"{rate(txt['customers_per_s'])} customers/s", "", ""],
  ]
  page.table(["", "result", "target", ""], rows, "lrrl")
  page.p("The text-aware network is bound by the encoder: each customer's reviews go through it "
         "before the network runs.")
  page.source(rel, note=f"run {when(d)}" + (
      f"; the per-customer latencies rerun on their own (`--latency-only`) "
      f"{d['latency_when'][:16].replace('T', ' ')}" if d.get("latency_when") else ""))


def _ratio_range(d: dict, op: str) -> str:
  """The range of cvlib / PyTorch over a run's lengths for ``op``; a dash when not measured."""
  r = [x["cvlib_over_pytorch"] for x in d["results"] if x["op"] == op]
  return f"{ratio(min(r))}-{ratio(max(r))}" if r else DASH


def _encoder_cells(d: dict, op: str) -> list[str]:
  cells = []
  for length in d["settings"]["lengths"]:
    r = next((x for x in d["results"] if x["op"] == op and x["length"] == length), None)
    cells.append(DASH if r is None else f"{rate(r['cvlib']['seq_per_s'])} / "
                 f"{rate(r['pytorch']['seq_per_s'])} ({ratio(r['cvlib_over_pytorch'])})")
  return cells


ENCODER_RUNS = [
    ("benchmarks/results/encoder.json", "the first measured version"),
    ("benchmarks/results/encoder_rerun.json", "after the float32 embedding lookup (the GPU fix)"),
    ("benchmarks/results/encoder_attention.json", "attention with a hand-written backward pass"),
    ("benchmarks/results/encoder_cpu_kernel.json", "the compiled CPU attention kernel and "
                                                   "cvlib's malloc settings"),
    ("benchmarks/results/encoder_cpu_kernel_same_malloc.json", "the same, PyTorch also given "
                                                               "cvlib's malloc settings"),
    ("benchmarks/results/encoder_cpu_levers.json", "GELU through erf; PyTorch given cvlib's "
                                                   "malloc settings"),
    ("benchmarks/results/encoder_cpu_before_gelu.json", "the code before GELU through erf, "
                                                        "measured right after the row above"),
    ("benchmarks/results/encoder_cpu_levers_rerun.json", "GELU through erf again, right after "
                                                         "the row above"),
]


def _encoder_cpu(page: Page) -> None:
  rel = "benchmarks/results/encoder_cpu_kernel.json"
  d = page.load(rel)
  s, ver = d["settings"], d["versions"]
  page.h2("The encoder on CPU against PyTorch")
  page.p(f"`benchmarks/encoder.py` runs the same MiniLM weights in cvlib (JAX) and in PyTorch "
         f"{ver['torch']} (transformers {ver['transformers']}, {ver['torch_attention']} attention): "
         f"batch {s['batch']}, {s['threads']} threads, the two sides taking turns for "
         f"{s['rounds']} rounds. Sequences per second, medians, cvlib / PyTorch:")
  page.table(["step"] + [f"length {n}" for n in s["lengths"]],
             [["inference"] + _encoder_cells(d, "inference"),
              ["training step (AdamW)"] + _encoder_cells(d, "train")])
  page.source(rel, note=f"run {when(d)}")
  same = page.load("benchmarks/results/encoder_cpu_kernel_same_malloc.json")
  page.p("A fairness check: PyTorch gains from cvlib's malloc settings too. With them set for both "
         "processes (`GLIBC_TUNABLES`):")
  page.table(["step"] + [f"length {n}" for n in same["settings"]["lengths"]],
             [["inference"] + _encoder_cells(same, "inference"),
              ["training step (AdamW)"] + _encoder_cells(same, "train")])
  page.source("benchmarks/results/encoder_cpu_kernel_same_malloc.json", note=f"run {when(same)}")
  rel = "benchmarks/results/encoder_cpu_levers.json"
  if (REPO / rel).exists():
    now = page.load(rel)
    m = now["machine"]
    page.p("The same fairness check after the GELU change of the next sections (GELU through erf, "
           "as PyTorch computes it), both processes with cvlib's malloc settings, "
           f"{now['settings']['rounds']} rounds:")
    page.table(["step"] + [f"length {n}" for n in now["settings"]["lengths"]],
               [["inference"] + _encoder_cells(now, "inference"),
                ["training step (AdamW)"] + _encoder_cells(now, "train")])
    page.source(rel, note=f"run {when(now)}; load average {m['load_avg_start'][0]:.1f} at the "
                f"start, {m['load_avg_end'][0]:.1f} at the end")
    if max(m["load_avg_start"][0], m["load_avg_end"][0]) > m["cpus"]:
      page.p("Other work loaded the machine during this run (a load average above its "
             f"{m['cpus']} cores). PyTorch's OpenMP threads lose far more than XLA's on a loaded "
             "machine, so these ratios favour cvlib and do not show the target met; it needs a "
             "run on a quiet machine.")
  page.p("The same benchmark over time, as the code changed (cvlib / PyTorch, lowest to highest "
         "over the lengths measured):")
  rows = []
  for r, what in ENCODER_RUNS:
    if not (REPO / r).exists():  # a run still to be made
      continue
    e = page.load(r)
    lengths = ", ".join(str(n) for n in e["settings"]["lengths"])
    rows.append([link(r), when(e), what, lengths, _ratio_range(e, "inference"),
                 _ratio_range(e, "train")])
  page.table(["file", "run", "cvlib", "lengths", "inference", "training"], rows, "llllrr")
  hosts: dict[str, list[str]] = {}
  for r, _ in ENCODER_RUNS:
    if (REPO / r).exists():
      hosts.setdefault(page.load(r)["machine"]["platform"], []).append(f"`{Path(r).stem}`")
  if len(hosts) > 1:
    page.p("The runs were made on " + str(len(hosts)) + " virtual machines whose kernel builds "
           "differ (" + "; ".join(f"{', '.join(runs)}: {platform}"
                                   for platform, runs in hosts.items()) + "): the ratio of two "
           "runs on different machines says little about the code; compare runs of one machine. "
           "GELU through erf was measured against the code before it in consecutive runs on "
           "one machine, and one process (next section).")
  page.p("The embedding change between the first two rows is speed-neutral on CPU when timed in "
         "one process (next section), so the difference between those rows is the machine's "
         "run-to-run spread.")


CODE_AB = [
    ("benchmarks/results/cpu_kernel_ab.json", "compiled CPU attention kernel against XLA attention"),
    ("benchmarks/results/attention_ab.json", "hand-written attention backward against autodiff"),
    ("benchmarks/results/embedding_ab.json", "float32 embedding lookup against `nnx.Embed`"),
    ("benchmarks/results/gelu_ab.json", "GELU through erf against `jax.nn.gelu` (erfc)"),
]

LEVER_NAMES = {
    "current": "the code as it is (GELU through erf)",
    "gelu_erfc": "GELU through erfc (`jax.nn.gelu`, the code before)",
    "ln_one_pass": "LayerNorm statistics in one pass (mean and mean of squares)",
    "ln_sums_by_dot": "LayerNorm row sums as matrix-vector products",
    "flat_params": "step called on the flat parameter list, not the nnx module",
    "precision_highest": "`jax.default_matmul_precision(\"highest\")`",
    "ynn_default": "XLA's default YNNPACK fusions",
    "ynn_individual_dot": "YNNPACK for the dots alone",
    "ynn_dot_and_bias": "YNNPACK for the dots with their bias",
    "fast_min_max": "`xla_cpu_enable_fast_min_max`",
    "flush_denormals": "`xla_cpu_ftz` (denormals flushed to zero)",
    "vector_width_512": "`xla_cpu_prefer_vector_width` 512",
}


def _encoder_levers(page: Page) -> None:
  rel = "benchmarks/results/encoder_levers_ab.json"
  if not (REPO / rel).exists():  # benchmarks/encoder_levers.py not run yet
    return
  d = page.load(rel)
  lengths = [r["length"] for r in d["results"]]
  first = d["results"][0]
  page.h2("Levers for encoder inference on CPU")
  page.p("`benchmarks/encoder_levers.py` compiles MiniLM's inference step (batch "
         f"{first['batch']}, class logits) once per lever and times them in turn in one process, "
         f"{plural(first['rounds'], 'round')} of {plural(first['calls_per_round'], 'call')} each. "
         "Speed against the "
         "code as it is (above 1.00x: the lever is faster), by the process's CPU time (the "
         "steadier measure on a machine shared with other work) and by wall time, medians; "
         "the largest logit difference shows that every lever computes the same model:")
  rows = []
  for lever in d["results"][0]["levers"]:
    cells = [LEVER_NAMES.get(lever, lever)]
    for r in d["results"]:
      x = r["levers"][lever]
      cells.append(f"{ratio(x['cpu_speed_over_current'])} / {ratio(x['wall_speed_over_current'])}")
    diff = max(r["levers"][lever]["max_abs_diff_vs_current"] for r in d["results"])
    rows.append(cells + [f"{diff:.1e}"])
  page.table(["lever"] + [f"length {n}: CPU / wall" for n in lengths] + ["max logit diff"],
             rows, "l" + "r" * (len(lengths) + 1))
  page.source(rel, note=f"run {when(d)}; load average {d['machine']['load_avg_end'][0]:.1f} at "
              "the end")


def _code_ab(page: Page) -> None:
  page.h2("Code changes timed in one process")
  page.p("`benchmarks/code_ab.py` times the old and the new version of one piece of the encoder "
         "in the same process, taking turns, so that machine noise hits both alike (MiniLM, batch "
         "32, sequences per second, medians). The compiled kernel is used on one CPU device in "
         "float32; sharded runs, bfloat16 and GPUs keep the XLA code.")
  rows = []
  done = [(rel, what) for rel, what in CODE_AB if (REPO / rel).exists()]
  for rel, what in done:
    d = page.load(rel)
    for r in d["results"]:
      op = {"inference": "inference", "train": "training step"}.get(r.get("op"), "training step")
      after_over = r.get("after_over_before", r["after"]["seq_per_s"] / r["before"]["seq_per_s"])
      rows.append([what, op, r["length"], rate(r["before"]["seq_per_s"]),
                   rate(r["after"]["seq_per_s"]), ratio(after_over)])
  page.table(["change", "step", "length", "before", "after", "after / before"], rows, "llrrrr")
  page.source(*(r for r, _ in done))


def _dedup(page: Page) -> None:
  rel = "benchmarks/results/sentiment_dedup.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  page.h2("Copies of one review text across the sentiment split")
  page.p("Cleaning removes review rows written twice, and the sentiment split keeps every copy of "
         "a (normalised) text on one side, so no test text is trained on. How much that touches, "
         "and TF-IDF + logistic regression on the test split before (rows split) and after "
         "(texts split), mean over the seeds:")
  rows = []
  for name, x in d["datasets"].items():
    seeds = x.get("tfidf_seeds_0_9") or {}
    before, after = seeds.get("row_split_before", {}), seeds.get("grouped_split_after", {})
    acc = lambda s: f"{s['accuracy']['mean']:.4f}" if s.get("accuracy") else "–"  # noqa: E731
    rows.append([name, count(x["exact_duplicate_review_rows_removed"]), count(x["labelled_reviews"]),
                 count(x["labelled_reviews_sharing_their_normalised_text"]), acc(before),
                 acc(after)])
  page.table(["dataset", "duplicate rows removed", "labelled reviews",
              "sharing a normalised text", "TF-IDF accuracy, rows split",
              "TF-IDF accuracy, texts split"], rows, "lrrrrr")
  page.source(rel, note=f"seeds {d['seeds'][0]}-{d['seeds'][-1]}")


def _truncation(page: Page) -> None:
  rel = "benchmarks/results/truncation_womens.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  st, sp, arms = d["settings"], d["split"], d["arms"]
  diff = d["difference_head_tail_minus_head"]
  cut = st["buckets"][-1]
  sampled = sp["test_scored"] < sp["test"]
  page.h2(f"Long reviews: head against head + tail at {cut} tokens")
  page.p(f"`benchmarks/truncation.py` fine-tunes MiniLM on women's clothing twice through the "
         f"report's own steps, once per `finetune.truncation`: `head` keeps a long review's first "
         f"{cut} tokens, `head_tail` the first quarter and the last three quarters of them. Same "
         f"split, seed and settings, on a budget a shared CPU affords: {count(sp['train'])} "
         f"training reviews, {count(sp['validation'])} validation reviews (early stopping), "
         f"{st['epochs']} epoch(s). Of the {count(sp['test'])} test reviews, "
         f"{count(sp['test_longer_than_max_length'])} ({pct(sp['test_long_share'], 1)}) are longer "
         f"than {cut} tokens and so read differently by the two; the longest has "
         f"{count(sp['test_length_percentiles']['100'])}."
         + (f" Scored: every long test review and a seeded sample of the others "
            f"({count(sp['test_scored'])} in all), the sample weighted by the inverse of its "
            "sampling rate to estimate the whole test split." if sampled else ""))
  rows = []
  for arm in ("head", "head_tail"):
    a = arms[arm]
    rows.append([f"`{arm}`", f3(a["test"]["accuracy"]), f3(a["test"]["macro_f1"]),
                 f3(a["test_long"]["accuracy"]), f3(a["test_long"]["macro_f1"])])
  rows.append(["`head_tail` minus `head`", signed3(diff["test"]["accuracy"]),
               signed3(diff["test"]["macro_f1"]), signed3(diff["test_long"]["accuracy"]),
               signed3(diff["test_long"]["macro_f1"])])
  page.table(["truncation", "test accuracy", "test macro-F1",
              f"accuracy, reviews > {cut} tokens", f"macro-F1, reviews > {cut} tokens"], rows,
             "lrrrr")
  boot = diff["test_bootstrap_95"]
  page.p(f"The difference on the test split, 95% paired bootstrap interval: accuracy "
         f"{signed3(boot['accuracy'][0])} to {signed3(boot['accuracy'][1])}, macro-F1 "
         f"{signed3(boot['macro_f1'][0])} to {signed3(boot['macro_f1'][1])}; the two disagree on "
         f"{count(diff['long_predictions_changed'])} of the long reviews and "
         f"{count(diff['scored_predictions_changed'])} of the {count(sp['test_scored'])} scored. "
         "The interval covers the choice of test reviews only: both arms are one training run "
         "with one seed, and the run-to-run spread of fine-tuning is not in it, so read the "
         "difference as small and not yet established; `finetune.truncation` stays `head` by "
         "default. At this training budget TF-IDF + logistic regression on the same split scores "
         f"higher than either arm: accuracy {f3(d['tfidf_logreg_test']['accuracy'])}, macro-F1 "
         f"{f3(d['tfidf_logreg_test']['macro_f1'])}. At 256 tokens, the GPU profile's largest "
         "bucket, no test review is cut; the 256-token runs are measured only on a GPU "
         "(`benchmarks/gpu_check.py`).")
  page.source(rel, note=f"run {when(d)}, {d['machine']['cpus']} shared CPU cores, "
              f"{secs(d['total_seconds'])}")


def _gpu_check(page: Page) -> None:
  rel = "benchmarks/results/gpu/check_summary.json"
  page.h2("The GPU check")
  page.p("`python benchmarks/gpu_check.py` runs, on one GPU in under 8 minutes, the speed of a "
         "BERT-base-sized training step in bfloat16 and the report's sentiment steps with the GPU "
         "profile (`params/gpu/`) on women's clothing and Chinese reviews, and writes "
         "`benchmarks/results/gpu/check_*.json` ([gpu.md](gpu.md)).")
  if not (REPO / rel).exists() or page.load(rel).get("tiny"):
    page.p("It has not yet been run on a GPU: no results yet. It is tested on the CPU with "
           "`--tiny` (tests/test_gpu_profile.py).")
    return
  d = page.load(rel)
  parts = d["parts"]
  rows = []
  enc = parts.get("encoder", {})
  rows.append(["BERT-base training step, model FLOPs utilisation", pct(enc.get("mfu"), 1),
               f">= {pct(enc.get('target_mfu'))}", {True: "yes", False: "no"}.get(enc.get("met"), DASH),
               enc.get("status", DASH)])
  for name in ("womens_clothing", "chinese_reviews"):
    x = parts.get(name, {})
    t = x.get("targets", {})
    rows.append([f"{name}: accuracy / macro-F1 (TF-IDF)",
                 f"{f3(x.get('accuracy'))} / {f3(x.get('macro_f1'))} "
                 f"({f3((x.get('tfidf') or {}).get('accuracy'))} / "
                 f"{f3((x.get('tfidf') or {}).get('macro_f1'))})",
                 " and ".join(f">= {v}" for k, v in t.items() if k != "above_tfidf")
                 + " and above TF-IDF",
                 "yes" if x.get("met") and all(x["met"].values()) else "no",
                 x.get("status", DASH)])
  page.table(["part", "measured", "target", "met", "status"], rows, "lrllr")
  page.source(rel, note=f"run {when(d)}")


def _odd_shops(page: Page) -> None:
  rel = "benchmarks/results/odd_shops.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  s = d["summary"]
  page.h2("Every shop gets a report: odd shops")
  page.p("`benchmarks/odd_shops.py` runs `cvlib run` (tiny training settings) on shops generated "
         "in odd shapes (`cvlib.data.odd_shops`): tiny, one-day, shorter than the horizon, "
         "zero and negative amounts, no or text-less reviews, one product, thousands of products, "
         "two languages, time zones. The target is no failed run and no traceback: "
         f"{s['shops']} shops, {s['exit_0']} reports, {s['exit_2']} refused as bad input, "
         f"{s['failed']} failed, {s['tracebacks']} tracebacks"
         + (f" ({s['failed_before_fix']} failed before the fix they led to, rerun after it)"
            if s.get("failed_before_fix") else "") + ". What the reports left out, and how often:")
  skipped: dict[str, int] = {}
  for r in d["shops"]:
    for section in r["skipped"]:
      skipped[section] = skipped.get(section, 0) + 1
  page.table(["part of the report", "shops without it"],
             [[k, count(v)] for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])], "lr")
  page.source(rel, note=d.get("note", ""))


DRIVER_LABELS = {"adbc": "ADBC (`adbc-driver-postgresql`), binary COPY",
                 "connectorx": "connectorx, `arrow_stream`",
                 "psycopg": "psycopg 3, server-side cursor to Arrow"}


def _database(page: Page) -> None:
  rel = "benchmarks/results/database.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  page.h2("Reading orders from PostgreSQL: the driver")
  page.p(f"`benchmarks/database.py` loads {count(d['rows'])} synthetic order lines "
         f"({d['arrow_mb']:.0f} MB as Arrow) into a throwaway PostgreSQL {d['postgresql']} server "
         f"and reads them back with each driver, streaming batches of about "
         f"{count(d['batch_rows'])} rows that are counted and dropped; each read runs in its own "
         f"process (median of {d['repeats']}). Peak memory is the process's high-water mark; "
         "'added' is that minus the memory after the driver's import. "
         f"Fastest: {d['fastest']}; cvlib reads with {d['chosen']} (`cvlib.data.database`).")
  rows = []
  for name, r in d["runs"].items():
    if "median_s" not in r:
      rows.append([DRIVER_LABELS.get(name, name), r.get("version") or DASH] + [DASH] * 4)
      continue
    rows.append([DRIVER_LABELS.get(name, name), r["version"], secs(r["median_s"]),
                 rate(r["rows_per_s"]), f"{r['peak_mb']:.0f} MB", f"{r['added_mb']:.0f} MB"])
  page.table(["driver", "version", "read", "rows/s", "peak memory", "added"], rows, "llrrrr")
  frames = d.get("to_dataframe", {})
  if all("median_s" in frames.get(k, {}) for k in ("cvlib", "adbc_whole")):
    c, w = frames["cvlib"], frames["adbc_whole"]
    page.p("Into a pandas DataFrame, as the adapters use the rows: cvlib streams the batches into "
           "a parquet file in a temporary folder and reads that "
           f"({secs(c['median_s'])}, peak {c['peak_mb']:.0f} MB, {c['added_mb']:.0f} MB added); "
           "ADBC's whole result at once, then converted, takes "
           f"{secs(w['median_s'])}, peak {w['peak_mb']:.0f} MB ({w['added_mb']:.0f} MB added). "
           "The stream holds one batch while the server sends; the DataFrame at the end holds "
           "the whole table either way, and the detour through the file costs time and memory "
           "there (reading the file in row groups is the next step if tables outgrow memory).")
  page.source(rel, note=f"run {when(d)}, {d['machine']['cpus']} CPUs")



def _spark_pointer(page: Page) -> None:
  if not (REPO / SPARK_REL).exists():
    return
  d = page.load(SPARK_REL)
  page.h2("Features and scoring on Spark")
  sizes = " and ".join(count(int(n)) for n in sorted(d["sizes"], key=int))
  page.p(f"`benchmarks/spark.py` runs the customer features and scoring on DuckDB and on Spark "
         f"`local[1]` and `local[2]` for {sizes} customers: the tables and what they mean are on "
         "[spark.md](spark.md). " + sentence("; ".join(spark_verdicts(d))))
  page.source(SPARK_REL, note=f"run {when(d)}")


def _serve(page: Page) -> None:
  rel = "benchmarks/results/serve.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  page.h2("Scoring over HTTP")
  loads = [x for m in d["models"].values() for r in m["http"]
           for x in r["load_before"] + r["load_after"]]
  page.p(f"`benchmarks/serve.py` starts `cvlib serve` on a {d['run']['dataset']} run and sends "
         f"one customer per request ({d['run']['request']}) from 1, 8 and 32 concurrent "
         f"clients on keep-alive connections, {d['seconds_per_phase']:.0f} s each, on loopback; "
         "the clients share the machine's cores with the server. Beside it, `cvlib.Scorer.score` "
         "in-process on the same requests, one after the other (the floor). The load average "
         f"around the phases was {min(loads):.1f} to {max(loads):.1f} "
         f"on {d['machine']['cpus']} cores.")
  page.p("The service keeps the encoder outputs of the reviews it has seen, and a request carries "
         "the customer's whole history, so a repeat customer's reviews skip the encoder: the "
         "text-aware network is measured on customers never sent before (every review encoded; "
         "no phase reuses another's customers) and then on repeat customers.")
  rows = []
  for model, m in d["models"].items():
    phases = [("new customers", r) for r in m.get("http_new_customers", [])]
    phases += [("repeat customers" if phases else "", r) for r in m["http"]]
    for who, r in phases:
      last = r is m["http"][-1]  # the server's high-water mark, read after its last phase
      clients = f"{r['clients']} client{'s' if r['clients'] > 1 else ''}"
      rows.append([f"`{model}`", f"{clients}, {who}" if who else clients,
                   f"{r['p50_ms']} / {r['p99_ms']} ms", rate(r["requests_per_s"]),
                   count(r["errors"]), f"{m['server_peak_rss_mb']:.0f} MB" if last else ""])
    f = m["in_process"]
    rows.append([f"`{model}`", "`Scorer.score` in-process", f"{f['p50_ms']} / {f['p99_ms']} ms",
                 "", "", ""])
  page.table(["network", "clients", "p50 / p99", "requests/s", "errors", "server peak memory"],
             rows, "llrrrr")
  r = d["reload"]
  page.p(f"Publishing a new run into the served folder while {r['clients']} clients kept sending: "
         f"{count(r['requests'])} requests, {count(r['errors'])} failed; the new run served after "
         f"{r['switched_after_s']} s.")
  labels = {"ziln_p50_ms_8_clients": "behaviour network, p50 with 8 clients (ms)",
            "ziln_p99_ms_8_clients": "behaviour network, p99 with 8 clients (ms)",
            "ziln_requests_per_s_32_clients": "behaviour network, requests/s with 32 clients",
            "ziln_text_p50_ms_8_clients": "text-aware network, p50 with 8 clients, repeat "
                                          "customers (ms)",
            "ziln_text_new_customers_p50_ms_8_clients": "text-aware network, p50 with 8 "
                                                        "clients, new customers (ms)",
            "failed_requests_during_reload": "failed requests during a model reload"}
  page.table(["target", "measured", "target value", ""],
             [[labels[k], t["measured"], t["target"], "met" if t["met"] else "not met"]
              for k, t in d["targets"].items()], "lrrl")
  page.source(rel, note=f"run {when(d)}")


def _monthly(page: Page) -> None:
  rel = "benchmarks/results/monthly_online_retail.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  first, since = d["first"], d["since_last"]
  f = since["forecast"]
  page.h2("Monthly runs: the last report against what customers then did")
  page.p("`benchmarks/monthly.py` runs Online Retail with `data.until` "
         f"{first['split']['data_end']} (`{' '.join(first['overrides'][1:])}`: back-test cutoff "
         f"{first['split']['cutoff']}, back-test Gini {f3(first['backtest_gini'])} for "
         f"`{first['best']}`), then on the full file. The second report's \"since the last "
         f"report\" section scores the first run's forward predictions for {count(f['customers'])} "
         f"customers on the orders from {f['window_start']} to {f['window_end']} "
         f"({f['elapsed_days']} of {f['horizon_days']} days"
         + (", nothing prorated" if f["whole_horizon"] else
            f", prorated to {pct(f['proration']['share'])}") + "). `tests/test_monthly_real.py` "
         "recomputes Gini and decile MAPE independently from the first run's scores.parquet.")
  page.table(["measure", "value"], [
      ["realised spend", count(f["spend"]["realised"])],
      ["predicted spend", count(f["spend"]["predicted"])],
      ["realised / predicted", pct(f["spend"]["ratio"])],
      ["purchases: realised / BG/NBD predicted",
       f"{count(f['purchases']['realised'])} / {count(f['purchases']['predicted'])}"],
      ["Gini", f3(f["gini"])], ["decile MAPE", pct(f["decile_mape"])],
      ["churn AUC (no purchase in the window)", f3(f["churn_auc"])],
      ["interval coverage", pct(f["interval_coverage"])],
      ["customers who bought again", pct(f["returned_share"])],
      ["customers in the same segment", pct(d["migration"]["stayed_in_segment"])],
      ["newly high value + high risk", count(d["migration"]["new_high_value_high_risk"])],
      ["features flagged by PSI", ", ".join(d["drift_flagged"]) or "none"]], "lr")
  page.source(rel)


def _host_memory(page: Page) -> None:
  rel = "benchmarks/results/host_memory.json"
  d = page.load(rel)
  page.h2("Keeping freed host memory")
  page.p("XLA:CPU allocates a step's temporary buffers per call, and with glibc's defaults they "
         "are mapped afresh, and page-faulted in, every time. `benchmarks/host_memory.py` runs the "
         "step under glibc's defaults and under cvlib's settings (one malloc arena, no mmap, no "
         "trimming), in separate processes taking turns:")
  rows = []
  for r in d["results"]:
    a, b = r["default"], r["cvlib"]
    rows.append([{"train": "training step"}.get(r["op"], r["op"]), f"{r['batch']} x {r['length']}",
                 rate(a["seq_per_s"]), rate(b["seq_per_s"]), ratio(r["cvlib_over_default"]),
                 f"{count(a['minor_faults_per_call'])} -> {count(b['minor_faults_per_call'])}",
                 f"{a['system_s_per_call']:.2f} -> {b['system_s_per_call']:.2f} s"])
  page.table(["step", "batch x length", "glibc defaults", "cvlib", "ratio",
              "page faults per call", "kernel time per call"], rows, "llrrrrr")
  page.source(rel, note=f"run {when(d)}")


def _matmul(page: Page) -> None:
  rel = "benchmarks/results/matmul_cpu.json"
  d = page.load(rel)
  sh = d["shape"]
  page.h2("The training step's matrix products alone")
  page.p(f"`benchmarks/matmul_cpu.py` times one dense layer's products, [{sh['rows']:,} x "
         f"{sh['in']}] by [{sh['in']} x {sh['out']}], in JAX and in PyTorch ({d['threads']} "
         f"threads, {d['repeats']} repeats): where a gap in the training step could come from.")
  names = {"forward": "forward", "grad_x": "input gradient", "grad_w": "weight gradient"}
  page.table(["product", "JAX", "PyTorch", "JAX speed / PyTorch's"],
             [[names.get(k, k), f"{r['jax_ms']:.1f} ms", f"{r['torch_ms']:.1f} ms",
               ratio(r["jax_over_torch_speed"])] for k, r in d["results"].items()])
  page.source(rel, note=f"run {when(d)}")


def _buckets(page: Page) -> None:
  rel = "benchmarks/results/encoder.json"
  d = page.load(rel)
  page.h2("Length buckets")
  page.p("Reviews are mostly far shorter than 128 tokens. Padding each batch only to the next of a "
         "few lengths, instead of to 128, saves the work on padding; `benchmarks/encoder.py` "
         "measures it on real reviews:")
  rows = []
  for b in d["bucketing"]:
    tok = b["tokens_per_review"]
    for op in ("inference", "train"):
      r = b[op]
      rows.append([DATASET_NAMES.get(b["dataset"], b["dataset"]), {"train": "training"}.get(op, op), count(r["reviews"]),
                   f"{tok['median']:.0f} / {tok['p90']:.0f}", pct(tok["cut_at_128"], 1),
                   ratio(r["buckets_32_64_128"]["speedup_vs_fixed_128"]),
                   ratio(r["buckets_16_32_48_64_96_128"]["speedup_vs_fixed_128"])])
  page.table(["reviews", "step", "n", "tokens median / p90", "cut at 128",
              "buckets 32, 64, 128", "six buckets 16-128"], rows, "llrrrrr")
  page.p("Speed-ups are against padding every batch to 128 tokens. Long reviews leave little "
         "padding to remove; short ones gain most.")
  page.source(rel, note=f"run {when(d)}")


def _kernel_on_reviews(page: Page) -> None:
  a_rel = "benchmarks/results/sentiment_womens_1000_cpu_kernel.json"
  b_rel = "benchmarks/results/sentiment_womens_1000_xla_attention.json"
  a, b = page.load(a_rel), page.load(b_rel)
  ra, rb = a["runs"][0], b["runs"][0]
  page.h2("The CPU attention kernel on real reviews")
  page.p(f"Does the model learn the same with the compiled kernel? `benchmarks/sentiment.py` "
         f"fine-tunes MiniLM on {count(a['split']['train'])} women's clothing reviews for "
         f"{plural(ra['settings']['epochs'], 'epoch')} with length buckets and scores "
         f"{count(a['split']['test'])} test reviews, once with the kernel and once with "
         "`CVLIB_CPU_ATTENTION=0`:")
  page.table(["attention", "accuracy", "macro-F1", "fine-tuning (with validation)",
              "test predictions"],
             [["compiled kernel", f3(ra["accuracy"]), f3(ra["macro_f1"]),
               secs(ra["finetune_seconds"]), secs(ra["predict_seconds"])],
              ["XLA", f3(rb["accuracy"]), f3(rb["macro_f1"]), secs(rb["finetune_seconds"]),
               secs(rb["predict_seconds"])]])
  page.source(a_rel, b_rel)


GPU_MODELS = [("benchmarks/results/gpu/encoder_gpu_bert_base.json", "BERT-base size (12x768)"),
              ("benchmarks/results/gpu/encoder_gpu_minilm.json", "MiniLM-L6 (6x384)")]


def _gpu_speed(page: Page) -> None:
  page.h2("GPU speed")
  loaded = [(page.load(rel), name) for rel, name in GPU_MODELS]
  first = loaded[0][0]
  s = first["settings"]
  peaks = [r["cvlib"]["tflops"] / r["cvlib"]["mfu"] for d, _ in loaded for r in d["results"]
           if r["cvlib"].get("mfu")]
  page.p(f"One {first['machine']['device_kind']} (`benchmarks/gpu.sh`), {s['dtype']} compute with "
         f"float32 parameters, {s['attention']} fused attention, batch {s['batch']}: sequences per "
         f"second and, in brackets, model FLOPs utilisation against the {statistics.median(peaks):.0f} "
         "TFLOP/s dense peak the benchmark divides by. The training columns were measured before "
         "the embedding fix of the next section.")
  cols = [(op, n) for op in ("inference", "train") for n in s["lengths"]]
  rows = []
  for d, name in loaded:
    cells = []
    for op, n in cols:
      r = next(x for x in d["results"] if x["op"] == op and x["length"] == n)
      mfu = r["cvlib"]["mfu"]
      cells.append(f"{rate(r['cvlib']['seq_per_s'])} ({pct(mfu, 1 if mfu < 0.1 else 0)})")
    rows.append([name] + cells)
  page.table(["model"] + [f"{'training step' if op == 'train' else op} {n}" for op, n in cols], rows)
  page.source(*(rel for rel, _ in GPU_MODELS), note=f"run {when(first)}")


def _probe(page: Page, rel: str) -> dict:
  d = page.load(rel)
  return {r["variant"]: r for r in d["results"]} | {"_": d}


def _gpu_step(page: Page) -> None:
  page.h2("The GPU training step before and after the embedding fix")
  bb = _probe(page, "benchmarks/results/gpu/train_step_probe_bert_base_before.json")
  ba = _probe(page, "benchmarks/results/gpu/train_step_probe_bert_base.json")
  mb = _probe(page, "benchmarks/results/gpu/train_step_probe_minilm_before.json")
  ma = _probe(page, "benchmarks/results/gpu/train_step_probe_minilm.json")
  b512 = _probe(page, "benchmarks/results/gpu/train_step_probe_bert_base_512_before.json")
  s = bb["_"]["settings"]
  page.p(f"`benchmarks/train_step_probe.py` times the same step written several ways: cvlib's "
         f"`nnx.jit` step, a pure `jax.jit` of the split state, without dropout, gradients only "
         f"(forward and backward), forward only. For BERT-base (batch {s['batch']}, "
         f"{s['length']} tokens, pipelined steps) forward took {ms(bb['forward']['pipelined_s'])} "
         f"and forward + backward {ms(bb['grad_only']['pipelined_s'])}: the backward pass was "
         "the problem, not the optimizer or dispatch.")
  page.table(["variant (BERT-base, before the fix)", "pipelined step"],
             [[k, ms(r["pipelined_s"])] for k, r in bb.items() if k != "_"])
  page.p("`nnx.Embed` casts its table to bfloat16 before the lookup, which makes each embedding "
         "gradient a bfloat16 scatter-add; every token of the batch adds into the one token-type "
         "row and every row into position 0, and XLA's GPU scatter serialises on that. The "
         "embeddings now look up in the float32 tables, take the positions as a slice and the "
         "token types as a select (the same values in float32; the CPU parity test passes "
         "unchanged). Same settings, cvlib's step:")

  def cell(r):
    return (f"{ms(r['pipelined_s'])}, {rate(r['seq_per_s_pipelined'])} seq/s "
            f"({pct(r['mfu_pipelined'], 1)})")

  page.table(["model", "before", "after"],
             [["BERT-base size (12x768)", cell(bb["nnx"]), cell(ba["nnx"])],
              ["MiniLM-L6 (6x384)", cell(mb["nnx"]), cell(ma["nnx"])]], "lrr")
  page.p(f"MiniLM's step is now close to the host's dispatch time: "
         f"{ms(ma['nnx']['dispatch_median_s'])} to return from the `nnx.jit` call, against "
         f"{ms(mb['functional']['dispatch_median_s'])} for a plain `jax.jit` of the split state "
         "(measured before the fix), so small models would gain from a functional step or several "
         f"steps per call. Before the fix a batch of {b512['_']['settings']['batch']} did not help "
         f"BERT-base either ({ms(b512['functional']['pipelined_s'])} a step, "
         f"{pct(b512['functional']['mfu_pipelined'], 1)}).")
  page.source("benchmarks/results/gpu/train_step_probe_bert_base_before.json",
              "benchmarks/results/gpu/train_step_probe_bert_base.json",
              "benchmarks/results/gpu/train_step_probe_minilm_before.json",
              "benchmarks/results/gpu/train_step_probe_minilm.json",
              "benchmarks/results/gpu/train_step_probe_bert_base_512_before.json")


# sentiment benchmark runs: (file, device, file with the TF-IDF baseline on the same split or None)
SENTIMENT_RUNS = [
    ("benchmarks/results/gpu/sentiment_womens_clothing.json", "GPU", None),
    ("benchmarks/results/sentiment_womens.json", "CPU", None),
    ("benchmarks/results/gpu/sentiment_chinese_reviews.json", "GPU",
     "benchmarks/results/sentiment_chinese_reviews_baselines.json"),
    ("benchmarks/results/sentiment_chinese_reviews_transfer.json", "CPU", None),
    ("benchmarks/results/gpu/sentiment_olist.json", "GPU",
     "benchmarks/results/sentiment_olist_baselines.json"),
    ("benchmarks/results/sentiment_olist_transfer.json", "CPU", None),
    ("benchmarks/results/sentiment_olist_transfer_2000.json", "CPU", None),
]
DATASET_NAMES = {"womens_clothing": "Women's clothing", "chinese_reviews": "Chinese reviews",
                 "olist": "Olist (Portuguese)", "demo": "demo (synthetic)",
                 "online_retail": "Online Retail", "cdnow": "CDNOW"}
ENCODER_KINDS = {"minilm": "MiniLM", "checkpoint": "MiniLM (a saved copy of its weights)",
                 "scratch": "small BERT from scratch", "transfer": "MiniLM's layers, new vocabulary (`transfer`)"}


def _same_split(a: dict, b: dict) -> bool:
  keys = ("seed", "test_share", "labelled", "test", "stratified")
  return all(a["split"].get(k) == b["split"].get(k) for k in keys)


def sentiment_run(page: Page, rel: str, baseline_rel: str | None = None) -> dict:
  """One sentiment benchmark file as a flat row (the old single-model layout too)."""
  d = page.load(rel)
  base = d.get("baselines") or {}
  if baseline_rel and not base.get("tfidf_logreg") and not base.get("tfidf_logreg_full_train"):
    other = page.load(baseline_rel)
    if _same_split(d, other):
      base = other["baselines"]
  tfidf = base.get("tfidf_logreg") or base.get("tfidf_logreg_full_train") or {}
  vader = base.get("vader") or {}
  if "runs" in d:
    r = d["runs"][0]
    enc = r.get("encoder_details", {})
    settings, history = r["settings"], r.get("history") or []
    train = d["split"]["train"]
    kind = r["kind"]
    seconds = d.get("total_seconds")
  else:  # the first layout: one "model"
    r = d["model"]
    enc, settings, history = {}, r["settings"], r.get("history") or []
    train = d["split"]["train_used"]
    kind = "minilm"
    seconds = d.get("total_seconds")
  return {"file": rel, "dataset": d["dataset"], "kind": kind, "encoder": r.get("encoder", r.get("name")),
          "train": train, "train_full": d["split"].get("train_full"), "test": d["split"]["test"],
          "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
          "tfidf": tfidf, "vader": vader, "epochs": settings.get("epochs"),
          "epochs_run": len(history) or None,
          "val_f1": [h["val_macro_f1"] for h in history],
          "val_acc": [h["val_accuracy"] for h in history],
          "mlm_steps": enc.get("mlm_steps", r.get("mlm_steps", 0)),
          "mlm_batch": enc.get("mlm_batch_size"), "vocab": enc.get("vocab_size"),
          "shared": (enc.get("embeddings_from_minilm") or {}).get("copied"),
          "loss": (enc.get("mlm_loss_first"), enc.get("mlm_loss_last")),
          "mlm_texts": enc.get("mlm_texts"), "seconds": seconds, "raw": d, "run": r}


def _vs(x: float, y: float | None) -> str:
  if missing(y):
    return ""
  return "above" if x > y else "level with" if x == y else "below"


def _sentiment(page: Page) -> None:
  page.h2("Sentiment on real reviews")
  rows = [(sentiment_run(page, rel, base), device) for rel, device, base in SENTIMENT_RUNS]
  first = rows[0][0]["raw"]
  page.p(f"`benchmarks/sentiment.py` on each dataset's labelled reviews: rating >= 4 positive, "
         f"<= 2 negative, 3 left out; a stratified {pct(first['split']['test_share'])} test split "
         f"with seed {first['split']['seed']}, and validation reviews taken from the training "
         "part for early stopping. The GPU rows ran on one H200 through `benchmarks/gpu.sh`. "
         "Accuracy / macro-F1 on the test reviews; the baselines learn from the same training "
         "reviews (TF-IDF on characters for Chinese, on words otherwise; VADER reads English "
         "only).")
  table_rows = []
  for r, device in rows:
    tf, va = r["tfidf"], r["vader"]
    table_rows.append([
        DATASET_NAMES.get(r["dataset"], r["dataset"]), device, ENCODER_KINDS.get(r["kind"], r["kind"]),
        count(r["train"]) + ("" if r["train"] == r["train_full"] else f" of {count(r['train_full'])}"),
        count(r["test"]), f"{f3(r['accuracy'])} / {f3(r['macro_f1'])}",
        f"{f3(tf.get('accuracy'))} / {f3(tf.get('macro_f1'))}" if tf else DASH,
        f"{f3(va.get('accuracy'))} / {f3(va.get('macro_f1'))}" if va else DASH])
  page.table(["reviews", "device", "encoder", "training reviews", "test reviews",
              "accuracy / macro-F1", "TF-IDF + LR", "VADER"], table_rows, "llllrrrr")
  page.p("How each encoder was prepared (masked-LM on the non-test reviews before fine-tuning):")
  enc_rows = []
  for r, device in rows:
    lo, hi = r["loss"]
    enc_rows.append([
        DATASET_NAMES.get(r["dataset"], r["dataset"]), device, ENCODER_KINDS.get(r["kind"], r["kind"]),
        DASH if not r["vocab"] else (f"{count(r['vocab'])} pieces"
                                     + (f", {count(r['shared'])} of them MiniLM's" if r["shared"] else "")),
        DASH if not r["mlm_steps"] else f"{count(r['mlm_steps'])} x {r['mlm_batch']}",
        DASH if lo is None else f"{lo:.1f} -> {hi:.1f}",
        f"{r['epochs_run'] or DASH} of {r['epochs']}", secs(r["seconds"])])
  page.table(["reviews", "device", "encoder", "vocabulary", "masked-LM steps x batch",
              "masked-LM loss", "epochs run", "whole run"], enc_rows, "llllrrrr")
  page.source(*[r["file"] for r, _ in rows], *[b for _, _, b in SENTIMENT_RUNS if b])
  # what the table says, in words
  cpu_w, gpu_w = rows[1][0], rows[0][0]
  targets = {m.group(1): float(m.group(2)) for k in cpu_w["raw"].get("targets", {})
             if (m := re.fullmatch(r"(accuracy|macro_f1)>=([\d.]+)", k))}
  if targets:
    meets = all(gpu_w[k] >= v for k, v in targets.items())
    page.p(f"Women's clothing against its target (accuracy >= {targets['accuracy']}, macro-F1 >= "
           f"{targets['macro_f1']}, above TF-IDF): the GPU run with every training review "
           f"{'meets' if meets else 'misses'} it; the CPU run on "
           f"{count(cpu_w['train'])} of them {'meets' if all(cpu_w[k] >= v for k, v in targets.items()) else 'misses'} "
           f"the thresholds and is {_vs(cpu_w['macro_f1'], cpu_w['tfidf'].get('macro_f1'))} "
           "TF-IDF on macro-F1.")
  scratch = [r for r, _ in rows if r["kind"] == "scratch"]
  transfer = [r for r, _ in rows if r["kind"] == "transfer"]
  words = [f"{DATASET_NAMES[r['dataset']]} {_vs(r['macro_f1'], r['tfidf'].get('macro_f1'))} TF-IDF "
           f"({signed3(r['macro_f1'] - r['tfidf']['macro_f1'])} macro-F1)" for r in scratch if r["tfidf"]]
  if words:
    page.p("A small BERT pretrained from scratch on the shop's reviews: " + "; ".join(words) +
           ". A few thousand steps of masked-LM on a few thousand to fifty thousand reviews is far "
           "from a pretrained model.")
  if scratch and transfer:
    budget = lambda r: r["mlm_steps"] * r["mlm_batch"]
    page.p("Keeping MiniLM's layers and relearning only what they read (`encoder: transfer`: a "
           "WordPiece vocabulary learnt from the reviews, each new piece's embedding started from "
           "MiniLM's vectors of the same text, then masked-LM on embeddings and layers together) "
           f"needs less pretraining: the transfer runs saw {min(budget(r) for r in transfer):,} to "
           f"{max(budget(r) for r in transfer):,} masked sequences against "
           f"{max(budget(r) for r in scratch):,} from scratch. "
           + "; ".join(f"{DATASET_NAMES[r['dataset']]}, {count(r['mlm_steps'])} steps and "
                       f"{r['epochs']} epochs: {f3(r['accuracy'])} / {f3(r['macro_f1'])}, "
                       f"{_vs(r['macro_f1'], r['tfidf'].get('macro_f1'))} TF-IDF by "
                       f"{abs(r['macro_f1'] - r['tfidf']['macro_f1']):.3f} macro-F1"
                       for r in transfer if r["tfidf"]) + ".")
    zh = next((r for r in transfer if r["dataset"] == "chinese_reviews"), None)
    if zh and len(zh["val_acc"]) > 1 and zh["val_acc"][-1] > zh["val_acc"][0]:
      page.p(f"On Chinese, validation accuracy was still rising after the last epoch "
             f"({f3(zh['val_acc'][0])} after the first, {f3(zh['val_acc'][-1])} after the last), so "
             "more epochs and masked-LM (GPU work: `benchmarks/gpu.sh` runs `transfer` for both "
             "languages) may move it further.")
  _domain_mlm(page, gpu_w)


def _domain_mlm(page: Page, without: dict) -> None:
  rel = "benchmarks/results/gpu/sentiment_womens_clothing_mlm800.log"
  if not (REPO / rel).exists():
    return
  text = page.read_text(rel)
  mlm = re.search(r"mlm done: ([\d,]+) steps.*?loss ([\d.]+) -> ([\d.]+)", text)
  best = re.search(r"val macro-F1 ([\d.]+) \(best\)", text)
  if not (mlm and best and without["val_f1"]):
    return
  page.p(f"Domain masked-LM before fine-tuning MiniLM did not help on women's clothing (GPU, "
         f"{mlm.group(1)} steps, loss {float(mlm.group(2)):.1f} to {float(mlm.group(3)):.1f}): best "
         f"validation macro-F1 {best.group(1)} with it against {max(without['val_f1']):.3f} without "
         f"(the run stopped before scoring the test split; {link(rel)}).")


def _blend(page: Page) -> None:
  rel = "benchmarks/results/sentiment_chinese_reviews_transfer_blend.json"
  r = sentiment_run(page, rel)
  earlier = sentiment_run(page, "benchmarks/results/sentiment_chinese_reviews_transfer.json")
  b = r["run"]["blend_with_tfidf"]
  page.h2("Sentiment: the encoder combined with TF-IDF")
  page.p("`finetune.blend.tfidf` combines the fine-tuned encoder with TF-IDF + logistic "
         "regression: class probabilities `w * encoder + (1 - w) * TF-IDF`, the encoder's weight "
         "`w` chosen on the validation reviews. In this benchmark run the combination's TF-IDF "
         "learnt from the training reviews only, while the baseline's learns from training and "
         "validation reviews; the shipped code refits the combination's TF-IDF on both once the "
         "weight is chosen.")
  by_w = b.get("val_accuracy_by_weight", {})
  page.table(["", "accuracy", "macro-F1"],
             [["encoder alone", f3(r["accuracy"]), f3(r["macro_f1"])],
              ["TF-IDF + LR, training reviews only", f3(b["tfidf_same_training"]["accuracy"]),
               f3(b["tfidf_same_training"]["macro_f1"])],
              ["TF-IDF + LR baseline (training + validation)", f3(r["tfidf"]["accuracy"]),
               f3(r["tfidf"]["macro_f1"])],
              [f"combined, encoder weight {b['weight']}", f3(b["accuracy"]), f3(b["macro_f1"])]])
  page.p(f"{DATASET_NAMES[r['dataset']]}, `transfer` with {count(r['mlm_steps'])} masked-LM steps, "
         f"{count(r['train'])} training and {count(r['test'])} test reviews. Validation accuracy "
         f"was {f3(by_w.get('1.0'))} for the encoder alone and {f3(b['val_accuracy'])} at the "
         f"chosen weight. The small weight says the encoder adds little to the bag of character "
         f"n-grams here. Its encoder scored {f3(r['accuracy'])} where the same settings scored "
         f"{f3(earlier['accuracy'])} before the CPU attention kernel: runs are deterministic for a "
         "seed within one version of the code and one machine, not across changes to the "
         "summation order or CPUs.")
  page.source(rel, "benchmarks/results/sentiment_chinese_reviews_transfer.json")


def _wilson(share: float, n: int, z: float = 1.96) -> str:
  """The 95% Wilson score interval of a share of n, as "lo-hi" (two decimals)."""
  centre = (share + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return f"{max(centre - half, 0):.2f}-{min(centre + half, 1):.2f}"


def _aspect_cells(m: dict) -> list[str]:
  """Tag precision, recall, then polarity and negatives with their cell count and 95% interval."""
  t, p, n = m["tags"]["micro"], m["polarity"], m["negatives"]
  share = lambda v, k: (f"{f3(v)} ({count(k)}; {_wilson(v, k)})" if k else  # noqa: E731
                        f"{f3(v)} ({count(k)})")
  return [f3(t["precision"]), f3(t["recall"]),
          share(p["accuracy_pos_neg"], p["n_pos_neg"]) if p else DASH,
          share(n["recognised"], n["n"]) if n else DASH]


def _aspect_rows(parts: list[tuple[str, dict]]) -> list[list[str]]:
  """Model and lexicon rows of named result parts."""
  return [[name if method == "model" else "", label, count(part["n_reviews"]),
           *_aspect_cells(part[method])]
          for name, part in parts
          for method, label in (("model", "aspect model"), ("lexicon_vader", "lexicon + VADER"))]


def _untouched_checks(page: Page, d: dict, draw: int) -> None:
  """Each draw's one scoring by the model frozen before it (aspects_untouched_checks.json), and
  the current (check) draw's: how the model of each time did on rows nobody had read."""
  rel = "benchmarks/results/aspects_untouched_checks.json"
  h = page.load(rel)
  now = {"draw": draw, "model_frozen_at": "the shipped model",
         "english": d["pooled"]["english_outside_calibration"],
         "olist": d["domains"]["olist"]["outside_calibration"]}
  parts = [(f"draw {c['draw']} ({c['model_frozen_at']}), {name}", c[shop])
           for c in [*h["checks"], now]
           for shop, name in (("english", "English, pooled"), ("olist", "Olist (pt)"))]
  page.p("Every untouched check so far: each draw scored once by the model frozen before it "
         "(the commit named), before anyone had read the model's output on those rows. The "
         "draws differ (new domains in the fifth and sixth, fresh rows of known shops in the "
         "later ones), so a row compares the model with the lexicon baseline on the "
         "same reviews, not one draw with another:")
  page.table(["draw (model), reviews", "method", "n", "tag precision", "tag recall",
              "polarity right", "negatives"], _aspect_rows(parts))
  page.source(rel)


def _aspects(page: Page) -> None:
  rel = "benchmarks/results/aspects_labelled.json"
  d = page.load(rel)
  page.h2("Aspect opinions against hand labels")
  total = sum(dom["all"]["n_reviews"] for dom in d["domains"].values())
  draw = max(int(k[len("round"):-len("_heldout_reviews")]) for k in d["settings"]
             if k.startswith("round") and k.endswith("_heldout_reviews"))
  nth, before = _ORDINALS[draw], _CARDINALS[draw - 1]  # the check draw; the draws before it
  last = d["settings"][f"round{draw}_heldout_reviews"]
  calibrated = [dom for dom in d["domains"].values() if "calibration" in dom]
  lodo = d["leave_domain_out"]
  page.p("`benchmarks/aspects_labelled.py` scores `cvlib.aspect_opinions` (the function the "
         "report's \"opinions by aspect\" uses) and the lexicon tagger with VADER it replaced "
         f"against {count(total)} reviews labelled by reading them before any tagger ran "
         f"({len(d['domains'])} shops, English and Portuguese, in {_CARDINALS[draw]} draws by "
         "several readers; "
         "labels, guide and origins in "
         "[cvlib/insight/aspects_labelled.md](../cvlib/insight/aspects_labelled.md)). The shipped "
         f"tag thresholds and polarity mixes are calibrated on every review of the first {before} "
         f"draws ({count(total - last)} reviews, {len(calibrated)} shops), so two kinds of "
         f"figures are outside the calibration: the {nth} draw ({count(last)} fresh reviews "
         f"of every shop, labelled by the {nth} draw's readers while the model was being changed on the "
         f"first {before} draws, and scored once after those changes were frozen: the only "
         "figures no threshold, weight, keyword or cue was chosen on), and each English shop of "
         f"the first {before} draws scored with thresholds and mixes calibrated on the other "
         "shops alone "
         "(leave one domain out: what a shop cvlib was not calibrated on gets; the keywords and "
         "complaint cues were chosen reading those shops' misses, so these figures flatter "
         "them). The "
         "earlier untouched checks, each scored once by the model of its time before its draw "
         f"was read, follow the {nth} draw's table. Tags are micro-averaged "
         "over the six aspects; polarity is the accuracy on the cells both the labels and the "
         "method tag with a clear pos/neg label (count and 95% Wilson interval in brackets); "
         "\"negatives\" is the share of the cells labelled negative that come out tagged and "
         "negative (an untagged one counts as missed). With a few dozen cells per domain the "
         "intervals are wide. English rows use the shipped defaults (no run folder: the "
         "polarity head learnt from the clothing shop's rated reviews); Olist rows use the "
         "aspect model a run on the Olist shop writes (its head learnt from Olist's own rated "
         "reviews); both with each review's stars, as the report passes them.")
  outside = [(dom["name"], dom["outside_calibration"]) for dom in d["domains"].values()
             if "outside_calibration" in dom and dom["language"] == "en"]
  outside.append(("English rows, pooled", d["pooled"]["english_outside_calibration"]))
  outside += [(dom["name"], dom["outside_calibration"]) for dom in d["domains"].values()
              if "outside_calibration" in dom and dom["language"] != "en"]
  page.p(f"The {nth} draw, with the lexicon baseline beside it (a few to a few dozen reviews "
         "per shop: read the pooled English row first):")
  page.table([f"{nth}-draw reviews", "method", "n", "tag precision", "tag recall",
              "polarity right", "negatives"], _aspect_rows(outside))
  _untouched_checks(page, d, draw)
  left = [(d["domains"][s]["name"], part) for s, part in lodo["domains"].items()]
  left.append(("all of them, pooled", lodo["pooled"]))
  page.p(f"Leave one domain out: each English shop of the first {before} draws, the thresholds and "
         "mixes calibrated on the other shops' reviews (the same head, each review's stars):")
  page.table(["shop left out", "method", "n", "tag precision", "tag recall", "polarity right",
              "negatives"], _aspect_rows(left))
  stars = [(name, part) for name, part in (
      (f"English, {nth} draw", d["pooled"]["english_outside_calibration"]),
      (d["domains"]["olist"]["name"] + f", {nth} draw",
       d["domains"]["olist"].get("outside_calibration")))
      if part and "model_without_stars" in part]
  page.p("Every labelled real review has its star rating, and the report passes it: each "
         "aspect's polarity then also weighs its review's stars (a mix with the rating as a "
         "third input). `cvlib.aspect_opinions` without `ratings` reads the text alone; the "
         "tags are the same either way. Polarity and negatives with and without the stars:")
  page.table(["reviews", "stars", "n", "polarity right", "negatives"],
             _with_and_without(stars, "model_without_stars"))
  cued = [(name, part) for name, part in (
      (f"English, {nth} draw", d["pooled"]["english_outside_calibration"]),
      (d["domains"]["womens"]["name"] + f", {nth} draw",
       d["domains"]["womens"].get("outside_calibration")))
      if part and "model_without_cues" in part]
  if cued:
    page.p("Complaint cues (`cvlib.insight.complaints`, English): a tagging clause that says "
           "too much of a quality (\"too short\"), hedges a deviation (\"a bit pricey\", "
           "\"a little see-through\"), says the item runs or fits off (\"runs small\") or "
           "advises another size, or finds it worse than expected or wanted (\"smaller than I "
           "expected\", \"I wish these cost a little less\", \"on the small side\") makes the "
           "aspect negative whatever the stars: the head learns from stars, and such remarks in "
           "5-star reviews are labelled praise by them. The cues were chosen on the draws before "
           "the last (the first four kinds on the first eight draws, the shortfalls, wishes and "
           f"\"on the ... side\" on the first nine) and frozen before the {nth} draw was scored; "
           "tags are the same either way. Polarity and negatives with and without them:")
    page.table(["reviews", "cues", "n", "polarity right", "negatives"],
               _with_and_without(cued, "model_without_cues"))
    e = d["complaint_cues_effect"]
    page.p(f"Paired over the same {count(e['n_reviews'])} reviews ({e['part']}; "
           f"{e['bootstrap']}), the cues change polarity by "
           f"{e['polarity_pos_neg']['difference']:+.3f} (90% interval "
           f"{e['polarity_pos_neg']['low_90']:+.3f} to {e['polarity_pos_neg']['high_90']:+.3f}) "
           f"and negatives recognised by {e['negatives_recognised']['difference']:+.3f} "
           f"({e['negatives_recognised']['low_90']:+.3f} to "
           f"{e['negatives_recognised']['high_90']:+.3f}).")
  page.p("The shipped model on the reviews it was calibrated on (so flattering):")
  page.table(["calibration reviews", "n", "tag precision", "tag recall", "polarity right",
              "negatives"],
             [[dom["name"], count(dom["calibration"]["n_reviews"]),
               *_aspect_cells(dom["calibration"]["model"])] for dom in calibrated])
  amazon = [dom["outside_calibration"]["n_reviews"] for s, dom in d["domains"].items()
            if s.startswith("amazon") and "outside_calibration" in dom]
  lodo_only = [d["domains"][s]["name"] for s, t in d["targets"].items()
               if t["part"] != f"{nth} draw"]
  page.p("Issue 20's targets (tag precision 0.85, recall 0.80 or 0.75 in Portuguese, polarity "
         f"0.85, negatives 0.80) on each shop's figures outside the calibration (its {nth}-draw "
         f"reviews: {min(amazon)} to {max(amazon)} per Amazon shop, so a single review moves a "
         "figure by a tenth or more; "
         + (f"{_listing(lodo_only)}, with no review in that draw, on their leave-one-domain-out "
            "figures; " if lodo_only else "")
         + "the pooled "
         "English row above is the steadier reading), met per shop: " + "; ".join(
             f"{d['domains'][s]['name']}: "
             + (", ".join(k.split(">=")[0].replace("_", " ") for k, ok in checks.items()
                          if k.count(">=") and ok) or "none")
             for s, checks in d["targets"].items()) + ".")
  wins = []
  # each shop's part outside the calibration, as the benchmark chose it for the targets
  honest = {s: (d["domains"][s]["outside_calibration"] if t["part"] == f"{nth} draw"
               else lodo["domains"][s])
            for s, t in d["targets"].items()}
  for source, part in honest.items():
    m, b = part["model"], part["lexicon_vader"]
    for what, get in (("tag precision", lambda x: x["tags"]["micro"]["precision"]),
                      ("tag recall", lambda x: x["tags"]["micro"]["recall"]),
                      ("polarity", lambda x: (x["polarity"] or {}).get("accuracy_pos_neg")),
                      ("negatives", lambda x: (x["negatives"] or {}).get("recognised"))):
      if get(b) is not None and get(m) is not None and get(b) > get(m):
        wins.append(f"{what} on {d['domains'][source]['name']} ({f3(get(b))} against "
                    f"{f3(get(m))})")
  page.p("Outside the calibration, the lexicon baseline wins in: " + "; ".join(wins) + "."
         if wins else "Outside the calibration, the lexicon baseline wins nowhere.")
  head = d["settings"]["polarity_head_en"]
  page.p(f"The English polarity head is a logistic regression on pretrained MiniLM clause "
         f"embeddings, trained on {count(head['n_negative'] + head['n_positive'])} rated "
         f"opinion texts ({count(head['n_negative'])} negative) of the clothing shop: "
         f"{head['data']}. Stars label a review, not its clauses: a complaint inside a 5-star "
         "review (\"love it, but the fabric is thin\") learnt as praise is a likely reason the "
         "first head, trained on short texts only, called many complaints positive; the clause "
         "after a contrast word is now a negative example. Stars are still a weak label for a "
         "fit remark (\"Runs small\" is a common 4-star title), so each clause's head logit is "
         "mixed with its similarity to the aspect's positive and negative example opinions, "
         "with two weights, a bias and an offset to the bias per aspect (how often remarks on "
         "it are complaints: sizing remarks far more often than price remarks; aspects with "
         "few calibration cells, and a shop's own aspects, keep the shared bias) fitted on the "
         "calibration cells (classes balanced). Where the review's star rating is known, a "
         "second mix adds the rating (centred on 3 stars) as a third input, fitted on the cells "
         "of rated reviews: the stars settle clauses the head reads weakly, while a clearly "
         "worded complaint in a 5-star review stays negative. A clause read as a confident "
         "complaint makes the aspect negative whatever the review's other clauses say of it; "
         "mixed needs a confident complaint and confident praise; in English a complaint cue "
         "does the same (above). The head reads the clause "
         "embeddings made for tagging (each clause is embedded once). Thresholds are "
         "calibrated with each shop weighing the same. The lexicon baseline has no Portuguese "
         "polarity (VADER reads English only).")
  page.source(rel)


def _listing(names: list[str]) -> str:
  """"a", "a and b", "a; b and c" (names may hold commas)."""
  return "; ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def _with_and_without(parts: list, without: str) -> list[list[str]]:
  """Rows of polarity and negatives per part, the model's and its variant ``without``'s."""
  return [[name if method == "model" else "", label, count(part["n_reviews"]),
           *_aspect_cells(part[method])[2:]]
          for name, part in parts
          for method, label in (("model", "used"), (without, "not used"))]


_ORDINALS = {5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 9: "ninth", 10: "tenth",
             11: "eleventh", 12: "twelfth", 13: "thirteenth"}
_CARDINALS = {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten",
              11: "eleven", 12: "twelve", 13: "thirteen"}


# Issue 20's targets for the aspect model, in aspect_agreement.json's terms.
_ASPECT_TARGETS = {"tag precision": 0.85, "tag recall": 0.80, "polarity right": 0.85,
                   "negatives": 0.80}


def _aspect_agreement(page: Page) -> None:
  rel = "benchmarks/results/aspect_agreement.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  s = d["settings"]
  lodo = page.load("benchmarks/results/aspects_labelled.json")["leave_domain_out"]["pooled"]
  n = sum(s["sizes"].values())
  page.h3("Two readers: the human ceiling of the aspect targets")
  page.p(f"`benchmarks/aspect_agreement.py` draws {count(n)} English reviews of the first four "
         "draws of the labelled set (" + ", ".join(f"{count(k)} {src.replace('amazon_', '')}"
                                                   for src, k in s["sizes"].items())
         + f"; {s['sample'].split(',')[0]}) and compares the stored labels (reader A) with "
         f"those of {s['reader_b']}. Reader B is scored exactly as the aspect model is, with A "
         "as the truth (and A with B as the truth), so the rows read as \"a second human scored "
         "like the model\"; the model's row is its leave-one-domain-out figure over the "
         "English shops of the calibration draws (all their labelled reviews, thresholds and "
         "mixes calibrated without the shop).")
  b = d["b_vs_a"]
  page.table(["scored", "truth", "n", "tag precision", "tag recall", "polarity right",
              "negatives"],
             [["reader B", "reader A", count(n), *_aspect_cells(b)],
              ["reader A", "reader B", count(n), *_aspect_cells(d["a_vs_b"])],
              ["aspect model", "reader A", count(lodo["n_reviews"]),
               *_aspect_cells(lodo["model"])],
              ["issue 20's target", "", "", *(f3(v) for v in _ASPECT_TARGETS.values())]])
  ci = d["b_vs_a_interval95"]
  human = {"tag precision": b["tags"]["micro"]["precision"],
           "tag recall": b["tags"]["micro"]["recall"],
           "polarity right": b["polarity"]["accuracy_pos_neg"],
           "negatives": b["negatives"]["recognised"]}
  above = [k for k, v in human.items() if v >= _ASPECT_TARGETS[k]]
  below = [k for k in human if k not in above]
  kappas = [v for v in b["kappa"].values() if v is not None]
  per_aspect = ", ".join(f"{a.replace('_', ' ')} {f3(v)}" for a, v in b["kappa"].items()
                         if v is not None)
  by_aspect = statistics.multimode(x.split(" ")[0].rsplit(":", 1)[1] for x in d["disagreements"])
  most = (by_aspect[0], sum(x.split(" ")[0].endswith(":" + by_aspect[0])
                            for x in d["disagreements"]))
  page.p(f"Cohen's kappa per aspect ranges from {f3(min(kappas))} to {f3(max(kappas))} "
         f"({per_aspect}); "
         f"the 95% bootstrap interval over reviews of reader B's tag precision is "
         f"{f3(ci['precision'][0])}-{f3(ci['precision'][1])}, of its recall "
         f"{f3(ci['recall'][0])}-{f3(ci['recall'][1])}. "
         + (f"A second reader clears every target ({', '.join(above)}): the targets are "
            "below what the guide lets two careful readers agree on, so a model that misses "
            "them is short of human agreement, not held back by noise in the labels; the gap "
            "between the model's row and the readers' rows is the room left."
            if not below else
            f"A second reader clears {', '.join(above) or 'none of the targets'} but not "
            f"{', '.join(below)}: where the readers themselves fall short, that target is at "
            "or above the human ceiling with this guide, and the model cannot be expected to "
            "meet it on these labels.")
         + f" The readers label {count(len(d['disagreements']))} of {count(n * len(b['kappa']))} "
         f"cells differently ({most[0].replace('_', ' ')}: {count(most[1])} of them; the "
         "results file lists each, and the figures per source). The agreement is likely on the "
         "high side: the guide's borderline calls were written while the earlier readers "
         "labelled these same draws, and reader B followed them.")
  page.source(rel, "benchmarks/results/aspects_labelled.json")


# Method keys of aspect_tagger.json -> row names of its table.
_TAGGER_METHODS = {"rule": "rule (shipped aspect model)", "small": "fine-tuned, small",
                   "small_or_rule": "small OR rule", "small_mean_rule": "mean of small and rule",
                   "full": "fine-tuned, all weights", "full_or_rule": "all weights OR rule",
                   "full_mean_rule": "mean of all weights and rule"}


def _aspect_tagger(page: Page) -> None:
  rel = "benchmarks/results/aspect_tagger.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  s, ch, tr = d["settings"], d["chosen"], d["truncation"]
  folds = list(d["folds"])
  first = d["folds"][folds[0]]
  val_share = round(first["val_rows"] / (first["val_rows"] + first["train_rows"]), 1)
  page.h3("A fine-tuned multi-label tagger against the rule")
  # the first fold's taggers are the selection runs (every epoch scored): timed apart
  ft = {v: [f[v]["fine_tune"] for f in list(d["folds"].values())[1:]] for v in ("small", "full")}
  page.p("`benchmarks/aspect_tagger.py` fine-tunes MiniLM as a tagger of the six aspects at once "
         "(six sigmoid outputs on the mean-pooled review, binary cross-entropy with a positive "
         "weight per aspect) and scores it as the rule's leave-one-domain-out figures are "
         f"scored: each of the {count(len(folds))} English shops of the first four draws "
         f"({count(d['n_reviews_scored'])} reviews) by a tagger trained on the other English "
         f"rows (synthetic shop included), {pct(1 - val_share)} of each training source to "
         "train and "
         "the rest to choose each aspect's decision threshold; the fifth draw is not read. "
         "Its rule is the rule of its time: the results predate the keywords added with the "
         "sixth and eighth draws, the complaint cues, the keyword matching across negations "
         "and the calibration on every row of more draws each time from the seventh on (the "
         "leave-one-domain-out table above is the rule as shipped now). "
         f"Reviews are cut at {s['max_length']} tokens ({pct(tr['share'], 1)} of them are "
         f"longer; median {count(tr['median_tokens'])} tokens). The small variant trains "
         f"{count(ft['small'][0]['trained_parameters'])} weights (every bias and LayerNorm, the "
         "last layer's attention query and value, the head: "
         f"{ft['small'][0]['trained_mb_fp16']:.2f} MB in fp16), the full one all "
         f"{count(ft['full'][0]['trained_parameters'])}. Learning rate and epochs were chosen on "
         "the first fold's training shops only (micro-F1 on its inner validation part) and kept "
         f"for every fold: small {ch['small']['learning_rate']:g} for {ch['small']['epochs']} "
         f"epochs, full {ch['full']['learning_rate']:g} for {ch['full']['epochs']} epochs "
         f"(batch {s['batch_size']}, schedule over {s['max_epochs']} epochs"
         + ("; each is the highest rate tried, so a higher one is not ruled out"
            if all(ch[v]["learning_rate"] == max(s["rates_tried"][v]) for v in ch) else "")
         + "). One fine-tune "
         f"took {secs(min(f['seconds'] for f in ft['small']))}-"
         f"{secs(max(f['seconds'] for f in ft['small']))} (small) and "
         f"{secs(min(f['seconds'] for f in ft['full']))}-"
         f"{secs(max(f['seconds'] for f in ft['full']))} (full) on this machine's "
         f"{s['cpu_count']} shared cores, other work running (the whole comparison "
         f"{secs(d['seconds_total'])}). \"OR rule\" tags what either tags; \"mean\" "
         "thresholds the mean of the rule's 0/1 tag and the tagger's probability per aspect, the "
         "level chosen on the inner validation part (where the rule was calibrated on those "
         "rows). The differences are against the rule, pooled, with a paired bootstrap over "
         f"reviews ({count(s['bootstrap']['resamples'])} resamples, 90% interval).")
  rows = []
  for key, name in _TAGGER_METHODS.items():
    m, v = d["pooled"][key], d["versus_rule"].get(key)
    diff = (lambda k: DASH if v is None else
            f"{signed3(v[k]['diff'])} ({signed3(v[k]['low'])} to {signed3(v[k]['high'])})")
    rows.append([name, f3(m["precision"]), f3(m["recall"]), f3(m["f1"]), diff("f1"),
                 diff("precision"), diff("recall")])
  page.table(["tagger", "precision", "recall", "F1", "F1 - rule (90%)", "precision - rule",
              "recall - rule"], rows, align="lrrrrrr")
  page.table(["tagger"] + [f.replace("amazon_", "") for f in folds],
             [[name] + [f"{f3(d['folds'][f][key + '_tags']['precision'])} / "
                        f"{f3(d['folds'][f][key + '_tags']['recall'])}" for f in folds]
              for key, name in _TAGGER_METHODS.items()], align="l" + "r" * len(folds))
  wins = [name for key, name in _TAGGER_METHODS.items() if key != "rule"
          and d["versus_rule"][key]["f1"]["low"] > 0
          and d["pooled"][key]["precision"] >= d["pooled"]["rule"]["precision"]]
  rule = d["pooled"]["rule"]
  best = max(("small", "full"), key=lambda k: d["pooled"][k]["f1"])
  def errors(m: dict) -> float:  # false positives + false negatives of one aspect
    tp = m["recall"] * m["support"]
    return m["predicted"] + m["support"] - 2 * tp

  worst = max(rule["per_aspect"], key=lambda a: errors(d["pooled"][best]["per_aspect"][a])
              - errors(rule["per_aspect"][a]))
  wa, ra = d["pooled"][best]["per_aspect"][worst], rule["per_aspect"][worst]
  page.p("The second table reads precision / recall per left-out shop. "
         f"The better tagger alone ({_TAGGER_METHODS[best]}) loses most on "
         f"{worst.replace('_', ' ')}, the aspect where it adds the most wrong cells (precision "
         f"{f3(wa['precision'])} against the rule's "
         f"{f3(ra['precision'])}, recall {f3(wa['recall'])} against {f3(ra['recall'])}; it tags "
         f"{count(wa['predicted'])} cells where the labels have {count(wa['support'])}): with "
         f"{count(first['train_rows'])}-{count(max(f['train_rows'] for f in d['folds'].values()))}"
         " training reviews per fold, a likely reason (not tested here) is that it learns the "
         "training shops' way of talking about an aspect, where the rule's descriptions and "
         "keywords carry over to a new shop. "
         + (f"{', '.join(wins)} beat{'s' if len(wins) == 1 else ''} the rule pooled: the F1 "
            "interval lies above 0 and the precision is not lower."
            if wins else
            "No fine-tuned tagger, alone or combined with the rule, beats the rule pooled with "
            "an F1 interval above 0 and a precision not lower: the rule stays. The same recipe "
            "on the later, several times larger labelled set is measured below.")
         + f" The rule's pooled figures (precision {f3(rule['precision'])}, recall "
         f"{f3(rule['recall'])}) are "
         + ("those of the leave-one-domain-out section above." if d.get("rule_as_stored", {})
            .get("same") else "not those stored in aspects_labelled.json: see the file."))
  page.source(rel)


def _aspect_tagger_recipe(page: Page) -> None:
  rel = "benchmarks/results/aspect_tagger_recipe.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  shops = page.load("benchmarks/results/aspects_labelled.json")["domains"]
  s, v = d["settings"], d["versus_rule"]["tagger"]
  page.p(f"A review tagger on the larger labelled set, leave one domain out "
         f"(`benchmarks/aspect_tagger.py --recipe`, {s['rows']}): each English shop tagged by "
         f"{s['tagger']} (`cvlib.insight.aspect_tagger`: MiniLM's last three layers and a "
         "six-output head fine-tuned on the other shops' reviews), beside the rule calibrated "
         "without it. The recipe was chosen on the tenth and eleventh draws (taggers trained on "
         "the draws before each, scratch runs outside the results: ahead of the rule on both) "
         "and was frozen with the rule and scored once on the thirteenth draw (the untouched "
         "checks above, where its row and the shipped model's compare the two on the same "
         "reviews); on a shop it was not trained on it is what a shop trying cvlib would get, "
         "and the rule's figures here are flattered (its keywords were read on these shops):")
  parts = [(shops[src]["name"], f) for src, f in d["folds"].items()]
  parts.append(("all of them, pooled", d["pooled"] | {"n_reviews": d["n_reviews_scored"]}))
  rows = [[name if k == 0 else "", label, count(part["n_reviews"]),
           *(f3(part[key][m]) for m in ("precision", "recall", "f1"))]
          for name, part in parts
          for k, (key, label) in enumerate((("tagger", "review tagger"), ("rule", "rule")))]
  page.table(["shop left out", "tags", "n", "precision", "recall", "F1"], rows)
  page.p(f"Pooled, the tagger changes F1 by {v['f1']['diff']:+.3f} (90% paired interval "
         f"{v['f1']['low']:+.3f} to {v['f1']['high']:+.3f}), precision by "
         f"{v['precision']['diff']:+.3f} and recall by {v['recall']['diff']:+.3f} "
         f"({secs(d['seconds_total'])} on {s['cpu_count']} CPU cores)"
         + (": it does not carry over to new shops as well as the rule, so the rule tags."
            if v["f1"]["diff"] < 0 else "."))
  page.source(rel)


# Domain keys of aspect_levers.json -> short names in its tables.
_LEVER_DOMAINS = {"womens": "clothing", "amazon_beauty": "beauty",
                  "amazon_electronics": "electronics", "amazon_home": "home and garden",
                  "synthetic": "synthetic shop",
                  "olist": "Olist (pt)"}


def _lever_cell(tune: dict | None, held: dict, metric: str) -> str:
  if metric not in held:
    return DASH
  if tune is None:  # a source with held-out rows only
    return f"{DASH} / {f3(held[metric])}"
  t = tune[metric]
  return f"{f3(t['mean'])} ± {f3(t['sd'])} / {f3(held[metric])}"


def _aspect_levers(page: Page) -> None:
  rel = "benchmarks/results/aspect_levers.json"
  if not (REPO / rel).exists():
    return
  d = page.load(rel)
  page.h3("Levers measured for the unmet targets")
  page.p("`benchmarks/aspect_levers.py` measures changes to the aspect model the way they would "
         "be adopted: whatever a lever fits on labelled cells (the polarity mix, tag thresholds) "
         f"is fitted on 4/5 of the tuning part's reviews and scored on the rest "
         f"({d['settings']['folds']} folds by review, repeated {d['settings']['repeats']} times "
         "for polarity and 3 times for tags; mean ± standard deviation), then fitted on the whole tuning "
         "part and scored on the held-out part"
         + (f" of the first {count(d['settings']['rows'])} labelled reviews (the two first "
            "draws; the third draw's reviews are kept fresh for the shipped model's check above, "
            "never compared across levers)" if d["settings"].get("rows") else
            " of the first two draws (the results predate the third, which is kept fresh for "
            "the shipped model's check above), with the English head fitted before the shipped "
            "one was refitted to leave the third draw's clothing rows out")
         + ". These results predate the star rating in the polarity mix, the durable-goods "
         "keywords, the per-aspect offsets in the mix, the calibration on every row of the "
         "first four draws and, since, of more draws each time, the keywords of other goods, "
         "the complaint cues and the keyword matching across negations (the head they "
         "call shipped is the one before those, its training "
         "texts chosen with the earlier keyword list, and the script fits the mix of its time, "
         "without offsets, on the tuning part); none of these changes was decided with it. "
         "A lever is adopted only if it helps in the "
         "cross-validation and does not lower the held-out numbers. Each cell reads tune "
         "(cross-validated) / held-out. Polarity levers (tags as shipped): head_logistic is the "
         "shipped method; mix_vader adds VADER's clause score (English) as a mix input; "
         "mix_negation adds the head logit of clauses with a negation word; "
         "head_contrast_filter keeps a contrast clause of a 4-5 star review as a negative "
         "training example only when a first head does not call it positive; head_mlp_seed* "
         "is a one-hidden-layer network instead of the logistic head; head_sample1 and "
         "head_sample2 are the shipped head trained on other seeded samples of the same training "
         "texts (how far the sample alone moves the figures); head_20000 is trained on up to "
         "20,000 of them instead of 6,000; complaint_t moves the "
         "complaint threshold of the cell rule (shipped 1.5). Stronger clause polarity models, "
         "each trained on the same star-labelled texts as the shipped head "
         "(`polarity_training_set`: the clothing shop's for English, Olist's for Portuguese, "
         "labelled rows left out): head_pooled_features is a logistic head on richer frozen "
         "MiniLM features (the last layer's token states mean- and max-pooled, an earlier "
         "layer's mean and the [CLS] state); finetuned_full is MiniLM fine-tuned as a clause "
         "polarity classifier (every weight), its logit in place of the head's; "
         "finetuned_full_and_head gives the mix both logits; finetuned_small trains only the "
         "biases and LayerNorms, the last layer's attention query and value weights and the "
         "classifier (a delta small enough to ship on top of the packaged MiniLM), its learning "
         "rate chosen on the star-labelled validation texts; finetuned_small_and_head gives the "
         "mix its logit and the head's; run_sentiment_encoder (English) is "
         "the review sentiment classifier a default `cvlib run` fine-tunes on the clothing shop's "
         "reviews, applied to clauses as it is.")
  for language, res in d["languages"].items():
    domains = [k for k in _LEVER_DOMAINS if k in res["polarity"]["head_logistic"]["heldout"]]
    rows = []
    for name, lever in res["polarity"].items():
      rows.append([name] + [_lever_cell(lever["tune_cv"].get(s), lever["heldout"][s], m)
                            for s in domains for m in ("polarity", "negatives")])
    page.table(["lever"] + [f"{_LEVER_DOMAINS[s]} {m}" for s in domains
                            for m in ("polarity", "negatives")], rows)
  if "polarity_models" in d:
    pm = d["polarity_models"]
    ft = pm["finetune"]
    page.p(f"How the clause polarity models were trained (one seeded run each, "
           f"{ft['epochs']} epochs, batch {ft['batch_size']}, clauses cut at "
           f"{ft['buckets'][-1]} tokens, {round(100 * ft['val_share'])}% of the texts as "
           "validation; wall time on this machine's 2 shared CPU cores, other work running):")
    rows = []
    for language, how in pm["languages"].items():
      for name, r in how.items():
        if name == "head_pooled_features":
          rows.append([language, name, count(r["train_texts"]), DASH, DASH, DASH,
                       f"{r['seconds']:.0f}"])
        else:
          rows.append([language, name, count(r["train_texts"]), count(r["trained_parameters"]),
                       f"{r['learning_rate']:g}", f3(r["val_macro_f1"]), f"{r['seconds']:.0f}"])
    page.table(["language", "lever", "training texts", "trained weights", "learning rate",
                "validation macro-F1 (star labels)", "seconds"], rows, align="llrrrrr")
    page.p("The adoption rule applied to them (and to the shipped head retrained on other "
           "samples of its own training texts, head_sample1 and head_sample2, and on more of "
           "them, head_20000), against the shipped head (head_logistic): the "
           "domains whose cross-validated polarity or negatives a lever does not raise without "
           "lowering the other, and the held-out figures it lowers.")
    rows = []
    for name in ("head_sample1", "head_sample2", "head_20000", "head_pooled_features",
                 "finetuned_full", "finetuned_full_and_head", "finetuned_small",
                 "finetuned_small_and_head", "run_sentiment_encoder"):
      not_helped, lowered = [], []
      for language, res in d["languages"].items():
        if name not in res["polarity"]:
          not_helped += [f"{_LEVER_DOMAINS[s]} (not measured)"
                         for s in res["polarity"]["head_logistic"]["heldout"]]
          continue
        base, lever = res["polarity"]["head_logistic"], res["polarity"][name]
        for s in base["heldout"]:
          t0 = [base["tune_cv"][s][m]["mean"] for m in ("polarity", "negatives")]
          t1 = [lever["tune_cv"][s][m]["mean"] for m in ("polarity", "negatives")]
          if min(b - a for a, b in zip(t0, t1)) < 0 or t1 == t0:
            not_helped.append(_LEVER_DOMAINS[s])
          lowered += [f"{_LEVER_DOMAINS[s]} {m}" for m in ("polarity", "negatives")
                      if lever["heldout"][s][m] < base["heldout"][s][m]]
      rows.append([name, ", ".join(not_helped) or "none", ", ".join(lowered) or "none",
                   "yes" if not not_helped and not lowered else "no"])
    page.table(["lever", "tune: not helped in", "held-out: lowered", "adopted"], rows,
               align="llll")
    verdict = {r[0]: r for r in rows}
    small, run = verdict.get("finetuned_small"), verdict.get("run_sentiment_encoder")
    if small:
      page.p("The parameter-efficient fine-tuned classifier (finetuned_small) is not adopted: "
             f"in the cross-validation it does not help {small[1]}; held out it lowers "
             f"{small[2]}. On the tuning part, the synthetic shop's cells where a first training of "
             "it and the head disagreed were praise it read as a complaint (\"Nothing flimsy about it\", "
             "\"delivery was spot on\"): it leans on words where the head reads the sentence. "
             "Retrained with the third draw's rows left out of its training texts, it moved as "
             "much as the head does between samples: one training of a fine-tuned model is one "
             "draw of it.")
    if run:
      page.p("The review sentiment classifier of a default run, applied to clauses as it is "
             f"(run_sentiment_encoder), lowers held out: {run[2]}.")
    samples = [verdict[k] for k in ("head_sample1", "head_sample2") if k in verdict]
    cells = [v["n_cells"] for lang in d["languages"].values()
             for v in lang["polarity"]["head_logistic"]["heldout"].values()]
    lo, hi = min(cells), max(cells)
    if samples:
      page.p("The shipped method itself, trained on other seeded samples of its own training "
             "texts (head_sample1, head_sample2), fails the rule too: held out it lowers "
             + "; ".join(r[2] for r in samples) + f". With {lo} to {hi} cells per domain a "
             "held-out figure moves by a cell or two with the training sample alone, so this "
             "rule rejects noise as readily as a worse model. A rule that allows for that "
             "(cells pooled over domains with an interval, fixed before looking) would judge "
             "levers better, with the third draw as the one check of what it adopts.")
  page.p("Tagging levers (polarity as shipped): tags_f1 is the shipped calibration; "
         "tags_fbeta_b maximises F-beta instead of F1 (precision weighs more); tags_margin_m "
         "also asks a keyword tag's clause to be nearer the aspect than every other aspect by m. "
         "Micro precision / recall, tune (cross-validated) / held-out:")
  for language, res in d["languages"].items():
    domains = [k for k in _LEVER_DOMAINS if k in res["tags"]["tags_f1"]["heldout"]]
    rows = [[name] + [_lever_cell(lever["tune_cv"].get(s), lever["heldout"][s], m)
                      for s in domains for m in ("precision", "recall")]
            for name, lever in res["tags"].items()]
    page.table(["lever"] + [f"{_LEVER_DOMAINS[s]} {m}" for s in domains
                            for m in ("precision", "recall")], rows)
  st = {lang: res["structure"] for lang, res in d["languages"].items()}
  page.p("Room for aspect-conditioned sub-spans: of the tagged clauses of the tuning part, "
         + "; ".join(f"{count(s['clauses_tagging_two_or_more'])} of {count(s['tagged_clauses'])} "
                     f"({lang}) tag two aspects or more" for lang, s in st.items())
         + ". The tuning part's negative cells: "
         + "; ".join(f"{lang}: {count(s['negative_cells_tune']['called_negative'])} called "
                     f"negative, {count(s['negative_cells_tune']['called_positive_or_mixed'])} "
                     f"positive or mixed, {count(s['negative_cells_tune']['untagged'])} untagged"
                     for lang, s in st.items()) + ". "
         "In Portuguese the margin gate drops keyword tags the English MiniLM cannot confirm, and "
         "the calibration falls back on similarity-only tags (hence its low precision). None of "
         "these levers is adopted: each either does not help in the cross-validation in every "
         "domain or lowers a held-out figure (the synthetic shop's included). The one setting "
         "that does neither, complaint_1.0, was found after complaint thresholds below it had "
         "been seen to lower held-out figures, so adopting it would choose on the held-out part; "
         "it waits for labels the thresholds have not seen.")
  page.source(rel)


def _aspect_candidates(page: Page) -> None:
  rel = "benchmarks/results/aspect_candidates.json"
  d = page.load(rel)
  page.h2("Candidate aspects proposed from a shop's reviews")
  page.p("The report proposes aspects for a new shop from its own reviews "
         "(`cvlib.insight.aspect_candidates`): the words and word pairs its clauses use most, "
         "without stop words and opinion words, grouped by meaning (MiniLM embedding of the term "
         "and of its clauses, average-linkage clustering) and named by their most used word. "
         "`benchmarks/aspect_candidates.py` runs it on a seeded sample of each domain's reviews "
         f"(at most {count(d['corpus_reviews'])}; the proposal sees no label) and asks whether the "
         "candidates recover the hand-labelled aspects: on the labelled reviews of the domain, a "
         "candidate mentions a review when the review uses one of its terms, each labelled aspect "
         f"with at least {d['min_support']} labelled reviews in the part is matched to a "
         "candidate (one to one, the pair of highest F1 first), and counts as recovered at F1 >= "
         f"{d['recovered_f1']}. The settings were chosen on the tuning part only. (A first "
         "version let one broad candidate count for several aspects; one-to-one matching only "
         "lowers the counts.) Portuguese terms are embedded by the English MiniLM, so Olist's "
         "groups are coarse: its reviews are short and mostly about delivery, and few words pass "
         "the frequency bar.")
  rows = []
  for dom in d["domains"].values():
    h = dom["recovery"]["heldout"]
    matched = "; ".join(f"{a} → {r['candidate'] or DASH} ({f3(r['f1'])})"
                        for a, r in h["aspects"].items())
    rows.append([dom["name"], count(dom["reviews"]), count(h["n_reviews"]),
                 f"{h['recovered']} of {h['aspects_scored']}", f3(h["mean_best_f1"]), matched])
  page.table(["domain", "reviews read", "held-out labelled", "recovered", "mean F1 of the matches",
              "labelled aspect → matched candidate (F1)"], rows)
  rows = []
  for dom in d["domains"].values():
    new = [c for c in dom["candidates"] if c["covered_by"] == "none"]
    old = [c for c in dom["candidates"] if c["covered_by"] != "none"]
    rows.append([dom["name"],
                 "; ".join(f"{c['candidate']} ({c['words']}; {pct(c['share'])})" for c in new)
                 or DASH,
                 "; ".join(f"{c['candidate']} → {c['covered_by']}" for c in old) or DASH])
  page.p("What it proposes per domain: candidates no default aspect covers (their words and the "
         "share of reviews using them), and candidates a default aspect already covers (half of "
         "their clauses tagged with it). Product types (dress, jeans) and colours come out as "
         "groups too: they are what reviews talk about, and the analyst decides what to track.")
  page.table(["domain", "new candidates", "covered by a default aspect"], rows)
  grid, s = d.get("grid") or {}, d["settings"]
  chosen = (f"distance={s['distance']},context={s['context']},"
            f"opinion_band={s['opinion_band'][0]}-{s['opinion_band'][1]}")
  if chosen in grid:
    best = max(grid, key=lambda k: grid[k]["mean_best_f1"])
    text = (f"Settings were scored on the tuning part only ({len(grid)} combinations of cut "
            "distance, clause-context weight and opinion band, `grid` in the results file; mean "
            f"F1 of the matches over the domains): the defaults ({chosen.replace(',', ', ')}) score "
            f"{f3(grid[chosen]['mean_best_f1'])}, the best ({best.replace(',', ', ')}) "
            f"{f3(grid[best]['mean_best_f1'])}.")
    if best != chosen:
      def dropped(key: str, field: str) -> set[str]:
        return {w for dom in d["domains"] for w in grid[key][dom][field]}
      extra = dropped(best, "opinion_terms") - dropped(chosen, "opinion_terms")
      known = sorted(dropped(best, "opinion_terms_default_keywords")
                     - dropped(chosen, "opinion_terms_default_keywords"))
      text += (" The score sees only how the six default aspects are recovered; the best "
               f"setting's opinion band also drops {len(extra)} frequent words that the defaults "
               f"keep, {len(known)} of them keywords of the default aspects themselves ("
               + ", ".join(known) + "), and targets of new aspects with them. The defaults keep "
               "the narrower band: a judgement on what the analyst should see, made on the "
               "tuning part.")
    page.p(text)
  times = [f"{dom['name']} {dom['proposal_s']:.1f} s" for dom in d["domains"].values()]
  page.p("The proposal's own time on top of the clause embeddings the tagging computes anyway "
         "(one run, 2 shared cores): " + "; ".join(times) + ". The number of labelled reviews "
         "per domain is small: read the F1s as indications.")
  page.source(rel)


def _demo_text(page: Page) -> None:
  rel = "benchmarks/results/demo_text_signal.json"
  d = page.load(rel)
  page.h2("What the demo's review text can tell about value")
  page.p(f"The synthetic reviews carry something the stars do not: a share of them states whether "
         f"the customer will order again, and that is their actual decision "
         f"({pct(d['latest_review_states_intent_share'])} of latest reviews state it). "
         f"`benchmarks/demo_text_signal.py` asks how much of that a value network could use: the "
         f"text return score separates returning test reviewers with AUC "
         f"{f3(d['text_return_score_auc_test_reviewers'])} ({count(d['test_reviewers'])} "
         "reviewers), and each ceiling below gives the ratings network the truth as an extra input.")
  g, cf = d["gini_test"], d["gini_crossfit_all_customers"]
  rows = [[f"test split: {k}", f3(v)] for k, v in g.items()]
  rows += [[f"cross-fitted, every customer: {k}", f3(v)] for k, v in cf.items()]
  rows += [["the true expected spend (known to the simulator)", f3(d["gini_true_expected_value_all"])],
           [f"whether the customer is still active at the cutoff, alone ({pct(d['alive_share'])} are)",
            f3(d["gini_true_alive_flag_all"])]]
  page.table(["value ranking", "Gini"], rows)
  best_ceiling = max(v for k, v in cf.items() if k.startswith("ratings +"))
  page.p(f"Even the truth about what reviews could reveal adds {signed3(best_ceiling - cf['history'])} "
         f"Gini over purchase history alone ({pct(d['reviewers_share'])} of customers reviewed). What "
         "ranks this shop is whether a customer is still active at the cutoff, which a review "
         "tells only when it is about the customer's last order and states an intent. The "
         "ranking is driven by how much customers spend, which the reviews do not tell.")
  page.source(rel)


# --- spark.md ---------------------------------------------------------------------------------------

