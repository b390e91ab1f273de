"""The GPU check: one command, under 8 minutes on one H200, for issue 21's GPU targets.

Three parts, each in its own process with its own time limit (one failing part costs only itself),
each writing its JSON under ``--out`` (default ``benchmarks/results/gpu/``):

1. ``check_encoder_bert_base.json``: the speed of a BERT-base-sized training step (12 x 768,
   batch 256, 128 tokens) in bfloat16 with ``benchmarks/encoder.py``, and its model FLOPs
   utilisation against the H200's dense bfloat16 peak (target: >= 35%). Alone on the GPU.
2. ``check_sentiment_womens_clothing.json`` and ``check_sentiment_chinese_reviews.json``: the
   report's sentiment steps (the calls of notebook 02: ``make_sentiment_data``,
   ``prepare_encoder``, ``fine_tune_sentiment``, ``combine_with_tfidf``, ``sentiment_metrics``)
   with the GPU profile, ``params/gpu/<dataset>.yaml`` (full training sets, bfloat16, larger
   batches, the full masked-LM budget, data parallel over every local GPU). The two run side by
   side, each allocating GPU memory as it needs it. Targets, on the test split: women's clothing
   >= 0.96 accuracy, >= 0.91 macro-F1 and above TF-IDF; Chinese >= 0.95 accuracy and above TF-IDF.
3. ``check_summary.json``: every part's status, seconds, headline numbers and targets.

Without a GPU it stops at once: one ``error:`` line, exit status 2. ``--tiny`` runs the same
three parts on the CPU in seconds (the GPU params files with tiny overrides on the synthetic
shop, two fake CPU devices for the data-parallel path, a small encoder for the speed part); the
tests run it. Not yet run on a GPU.

Usage::

  CVLIB_DATA_DIR=/path/to/datasets python benchmarks/gpu_check.py      # on the GPU machine
  python benchmarks/gpu_check.py --tiny --out /tmp/gpu-check            # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATASETS = ("womens_clothing", "chinese_reviews")
# The targets, on the test split, for the report's sentiment model (the encoder combined
# with TF-IDF where the blend is on), and for the BERT-base training step.
TARGETS = {"womens_clothing": {"accuracy": 0.96, "macro_f1": 0.91, "above_tfidf": True},
           "chinese_reviews": {"accuracy": 0.95, "above_tfidf": True},
           "encoder_mfu": 0.35}
TIME_LIMIT_S = 470  # the whole check, under 8 minutes
ENCODER_LIMIT_S = 150
TINY_TIME_LIMIT_S = 1800
# --tiny: the GPU profile's keys stay; the data and sizes shrink to tests.
TINY_OVERRIDES = [
    "data.adapter=synthetic", "data.path=null", "data.customers=300", "data.seed=1", "language=en",
    "finetune.num_layers=1", "finetune.max_train_examples=64", "finetune.buckets=[32]",
    "finetune.training.epochs=1", "finetune.training.batch_size=16", "finetune.mlm.steps=2",
    "finetune.mlm.batch_size=16", "finetune.mlm.max_texts=300",
    "finetune.small_bert.vocab_size=400"]
# MiniLM's masked-LM compiles slowly on a CPU; the Chinese profile's learnt vocabulary runs it.
TINY_ONLY = {"womens_clothing": ["finetune.mlm.steps=0"], "chinese_reviews": []}
TINY_DEVICES = 2


def _env(tiny: bool) -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
             PYTHONUNBUFFERED="1")
  if tiny:  # the data-parallel path over fake CPU devices
    env.update(JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={TINY_DEVICES}")
  else:  # the two sentiment runs share the GPU: each takes memory as it needs it
    env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false")
  return env


def gpu_problem() -> str | None:
  """Why this machine cannot run the GPU check (one line), or None. Asked in a child process so
  that this one never initialises (and reserves memory on) the GPU."""
  proc = subprocess.run([sys.executable, "-m", "cvlib.text.devices", "require", "cuda"],
                        env=_env(False), capture_output=True, text=True, cwd=REPO)
  if proc.returncode == 0:
    return None
  lines = [x for x in proc.stderr.splitlines() if x.strip()]
  why = lines[-1].removeprefix("error: ").split(";")[0] if lines else f"exit {proc.returncode}"
  return f"{why}; --tiny runs the check on the CPU"


def data_problem() -> str | None:
  """A missing dataset file, named (the GPU run reads the real reviews)."""
  sys.path.insert(0, str(REPO))
  import cvlib  # pylint: disable=import-outside-toplevel
  for name in DATASETS:
    params = cvlib.load_params(REPO / "params" / "gpu" / f"{name}.yaml")
    path = params.resolve_path(params.data.path)
    if not path.exists():
      return f"{name}: {path} not found (set CVLIB_DATA_DIR to the datasets folder)"
  return None


# --- one sentiment run (a child process) ----------------------------------------------------------

def run_sentiment(params_file: str, overrides: list[str], out: Path) -> dict[str, Any]:
  """The report's sentiment steps with one params file; writes and returns the result JSON."""
  import cvlib  # pylint: disable=import-outside-toplevel
  from cvlib.data.clean import clean_tables  # pylint: disable=import-outside-toplevel
  from cvlib.stages import finetune  # pylint: disable=import-outside-toplevel

  seconds: dict[str, float] = {}
  clock = time.perf_counter()

  def lap(name: str) -> None:
    nonlocal clock
    now = time.perf_counter()
    seconds[name] = now - clock
    clock = now

  params = cvlib.load_params(params_file, overrides)
  cfg, seed, language = params.finetune, params.seed, params.language
  tables, _ = clean_tables(cvlib.load_data(params))
  data = finetune.make_sentiment_data(cfg, tables.reviews, seed=seed)
  lap("data")
  encoder = finetune.prepare_encoder(cfg, tables.reviews, data, language=language, seed=seed)
  lap("encoder")
  model, tokenizer, history = finetune.fine_tune_sentiment(cfg, data, encoder, seed=seed)
  lap("fine_tune")
  blend = finetune.combine_with_tfidf(cfg, model, tokenizer, data, language=language, seed=seed)
  lap("blend")
  metrics = finetune.sentiment_metrics(cfg, model, tokenizer, data, seed=seed, language=language,
                                       encoder=encoder, blend=blend)
  lap("test")
  result = {"part": "sentiment", "dataset": params.dataset, "params_file": params_file,
            "overrides": overrides, "finetune": params.to_dict()["finetune"],
            "split": data.summary().to_dict(orient="records"), "metrics": metrics,
            "history": history.to_dict(orient="records"), "seconds": seconds}
  out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
  return result


# --- the check ------------------------------------------------------------------------------------

def _run(cmd: list[str], *, env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
  """Runs a part; its output goes to log. Returns status and seconds."""
  start = time.perf_counter()
  with open(log, "w", encoding="utf-8") as f:
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    try:
      rc = proc.wait(timeout=max(timeout, 1))
      status = "ok" if rc == 0 else f"failed (exit status {rc})"
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
      status = f"timed out after {timeout:.0f} s"
  return {"status": status, "seconds": time.perf_counter() - start, "log": str(log)}


def encoder_command(out: Path, tiny: bool) -> list[str]:
  common = ["--ops", "train", "--no-torch", "--bucket-reviews", "0", "--dtype", "bfloat16",
            "--out", str(out)]
  if tiny:
    return [sys.executable, str(HERE / "encoder.py"), "--device", "cpu", "--config", "tiny",
            "--batch", "8", "--lengths", "32", "--rounds", "1", "--repeats", "1", *common]
  return [sys.executable, str(HERE / "encoder.py"), "--device", "gpu", "--config", "bert_base",
          "--attention", "cudnn", "--batch", "256", "--lengths", "128", "--rounds", "3",
          "--repeats", "5", *common]


def summarise(out: Path, parts: dict[str, dict[str, Any]], tiny: bool) -> dict[str, Any]:
  """Headline numbers of each part that wrote its JSON, with the targets met or not."""
  enc_file = out / "check_encoder_bert_base.json"
  if enc_file.exists():
    row = json.loads(enc_file.read_text())["results"][0]["cvlib"]
    mfu = row.get("mfu")
    parts["encoder"].update(seq_per_s=row["seq_per_s"], tflops=row["tflops"], mfu=mfu,
                            target_mfu=TARGETS["encoder_mfu"],
                            met=None if mfu is None else mfu >= TARGETS["encoder_mfu"])
  for name in DATASETS:
    file = out / f"check_sentiment_{name}.json"
    if not file.exists():
      continue
    m = json.loads(file.read_text())["metrics"]
    model = m.get("combined") or m
    tfidf = m["baselines"]["tfidf_logreg"]
    target = TARGETS[name]
    met = {k: model[k] >= v for k, v in target.items() if k != "above_tfidf"}
    met["above_tfidf"] = (model["accuracy"] > tfidf["accuracy"]
                          and model["macro_f1"] > tfidf["macro_f1"])
    parts[name].update(model=model.get("model"), accuracy=model["accuracy"],
                       macro_f1=model["macro_f1"], encoder_alone={
                           "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]},
                       tfidf=tfidf, device=m.get("device"), targets=target, met=met)
  return {"check": "gpu", "tiny": tiny, "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
          "parts": parts, "all_ran": all(p["status"] == "ok" for p in parts.values())}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tiny", action="store_true",
                 help="the same parts on the CPU with tiny configs (seconds; what the tests run)")
  p.add_argument("--out", type=Path, default=None,
                 help="folder for the JSON (default: benchmarks/results/gpu; a new temporary "
                      "folder with --tiny)")
  p.add_argument("--time-limit", type=float, default=None,
                 help=f"seconds for the whole check (default {TIME_LIMIT_S}; with --tiny "
                      f"{TINY_TIME_LIMIT_S}, a safety bound for a busy CPU)")
  p.add_argument("--sentiment", nargs=2, metavar=("PARAMS", "OUT"), help=argparse.SUPPRESS)
  p.add_argument("--set", dest="overrides", action="append", default=[], help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.sentiment:  # a child: one sentiment run
    run_sentiment(args.sentiment[0], args.overrides, Path(args.sentiment[1]))
    return 0

  start = time.perf_counter()
  if args.time_limit is None:
    args.time_limit = TINY_TIME_LIMIT_S if args.tiny else TIME_LIMIT_S
  if not args.tiny:
    problem = gpu_problem() or data_problem()
    if problem:
      print(f"error: gpu_check: {problem}", file=sys.stderr)
      return 2
  out = args.out or (Path(tempfile.mkdtemp(prefix="gpu-check-")) if args.tiny
                     else HERE / "results" / "gpu")
  logs = out / "logs"
  logs.mkdir(parents=True, exist_ok=True)
  for old in out.glob("check_*.json"):  # a part that fails must not leave an earlier result
    old.unlink()
  env = _env(args.tiny)
  left = lambda: args.time_limit - (time.perf_counter() - start) - 5

  parts: dict[str, dict[str, Any]] = {}
  print("gpu_check: encoder speed (BERT-base-sized training step, bfloat16)", flush=True)
  parts["encoder"] = _run(encoder_command(out / "check_encoder_bert_base.json", args.tiny),
                          env=env, log=logs / "encoder.log",
                          timeout=left() if args.tiny else min(ENCODER_LIMIT_S, left()))
  print(f"gpu_check: sentiment, {' and '.join(DATASETS)} side by side", flush=True)
  procs = {}
  for name in DATASETS:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--sentiment",
           str(REPO / "params" / "gpu" / f"{name}.yaml"),
           str(out / f"check_sentiment_{name}.json")]
    if args.tiny:  # chinese_reviews keeps its encoder: the learnt vocabulary's path
      cmd += [f"--set={o}" for o in TINY_OVERRIDES + TINY_ONLY[name]]
    procs[name] = cmd
  # side by side: one thread per run waiting on its process
  import concurrent.futures  # pylint: disable=import-outside-toplevel
  with concurrent.futures.ThreadPoolExecutor(len(procs)) as pool:
    budget = left()
    futures = {name: pool.submit(_run, cmd, env=env, log=logs / f"sentiment_{name}.log",
                                 timeout=budget) for name, cmd in procs.items()}
    for name, future in futures.items():
      parts[name] = future.result()
  summary = summarise(out, parts, args.tiny)
  summary["seconds"] = time.perf_counter() - start
  (out / "check_summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
  for name, part in parts.items():
    numbers = {k: part[k] for k in ("accuracy", "macro_f1", "mfu", "met") if k in part}
    print(f"gpu_check: {name}: {part['status']}, {part['seconds']:.0f} s {numbers}", flush=True)
  print(f"gpu_check: wrote {out}", flush=True)
  return 0 if summary["all_ran"] else 1


if __name__ == "__main__":
  sys.exit(main())
