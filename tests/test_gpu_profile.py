"""The GPU profile (params/gpu/), long-review truncation and the GPU check script, on CPU.

The data-parallel fine-tuning of the report on two fake CPU devices is in test_devices.py (it
shares that file's subprocess).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cvlib import config
from cvlib.config import ParamsError
from cvlib.text import tokens

REPO = Path(__file__).resolve().parents[1]
GPU_PARAMS = sorted((REPO / "params" / "gpu").glob("*.yaml"))


# --- truncation ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
  return tokens.load_tokenizer(max_length=16)


LONG = " ".join(f"w{i}" for i in range(40))  # "w0 w1 ... w39": more pieces than 16


def _pieces(tokenizer, ids):
  return [tokenizer.id_to_token(int(i)) for i in ids]


def test_head_keeps_the_start_as_before(tokenizer):
  """"head" is what the tokenizer's own truncation gives (the CPU profile's inputs unchanged)."""
  head = tokens.tokenize_texts(tokenizer, [LONG, "short"], max_length=16)
  assert [len(x) for x in head] == [16, 3]
  assert head[0].tolist() == tokenizer.encode(LONG).ids[:16]
  assert tokens.tokenize_texts(tokenizer, [LONG])[0].tolist() == head[0].tolist()  # default


def test_head_tail_keeps_a_quarter_from_the_start_and_the_rest_from_the_end(tokenizer):
  full = tokens.load_tokenizer(max_length=512).encode(LONG).ids  # [CLS] ... [SEP]
  got = tokens.tokenize_texts(tokenizer, [LONG, "short"], max_length=16,
                              truncation="head_tail")
  assert [len(x) for x in got] == [16, 3]
  budget = 16 - 2  # between [CLS] and [SEP]: 3 from the start, 11 from the end
  assert got[0].tolist() == full[:1 + budget // 4] + full[-1 - (budget - budget // 4):]
  assert _pieces(tokenizer, got[0][:1]) == ["[CLS]"] and _pieces(tokenizer, got[0][-1:]) == ["[SEP]"]
  assert tokenizer.truncation["max_length"] == 16  # the shared tokenizer is left as it was
  # a text that fits is the same either way
  assert got[1].tolist() == tokens.tokenize_texts(tokenizer, ["short"], max_length=16)[0].tolist()


def test_head_tail_batches_and_bad_values(tokenizer):
  batches = tokens.make_batches(tokenizer, [LONG], batch_size=2, buckets=(8, 16),
                                truncation="head_tail")
  assert batches[0]["input_ids"].shape == (2, 16)
  with pytest.raises(ValueError, match="truncation must be one of head, head_tail, got 'tail'"):
    tokens.tokenize_texts(tokenizer, [LONG], max_length=16, truncation="tail")
  with pytest.raises(ValueError, match="needs max_length"):
    tokens.tokenize_texts(tokenizer, [LONG], truncation="head_tail")
  assert config.TRUNCATIONS == tokens.TRUNCATIONS


# --- params -------------------------------------------------------------------------------------

def test_truncation_and_data_parallel_params(write_params):
  p = config.load_params(REPO / "params" / "womens_clothing.yaml")
  assert p.finetune.truncation == "head" and p.finetune.data_parallel is False  # the CPU default
  path = write_params("dataset: a\nfinetune: {truncation: middle}\n")
  with pytest.raises(ParamsError, match=r"finetune.truncation must be one of head, head_tail, "
                                        r"got 'middle'"):
    config.load_params(path)
  path = write_params("dataset: a\nfinetune: {data_parallel: sometimes}\n")
  with pytest.raises(ParamsError, match=r"finetune.data_parallel"):
    config.load_params(path)


def test_gpu_profiles_match_their_cpu_profiles(monkeypatch):
  """params/gpu/<dataset>.yaml: the same data and encoder as the CPU file; full training sets,
  bfloat16, data parallel, larger batches, more masked-LM, 256-token inputs."""
  assert [p.name for p in GPU_PARAMS] == ["chinese_reviews.yaml", "womens_clothing.yaml"]
  for path in GPU_PARAMS:
    gpu = config.load_params(path)
    cpu = config.load_params(REPO / "params" / path.name)
    assert (gpu.dataset, gpu.language, gpu.data, gpu.seed) == (cpu.dataset, cpu.language,
                                                                 cpu.data, cpu.seed)
    g, c = gpu.finetune, cpu.finetune
    assert (g.encoder, g.label_scheme, g.test_size) == (c.encoder, c.label_scheme, c.test_size)
    assert g.max_train_examples == 0 and c.max_train_examples > 0
    assert (g.dtype, c.dtype) == ("bfloat16", "float32")
    assert g.data_parallel and not c.data_parallel
    assert g.training.batch_size > c.training.batch_size
    assert g.mlm.steps * g.mlm.batch_size > c.mlm.steps * c.mlm.batch_size
    assert g.buckets[-1] == 256 and c.buckets[-1] == 128


# --- the GPU check ------------------------------------------------------------------------------

def test_gpu_check_refuses_without_a_gpu():
  """Asked for the GPU run on a CPU machine: one line, exit 2, nothing written."""
  import jax
  if any(d.platform == "gpu" for d in jax.devices()):
    pytest.skip("this machine has a GPU")
  proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", "/nonexistent/x"],
                        cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: gpu_check: ACCEL=cuda: JAX finds no GPU")
  assert not Path("/nonexistent/x").exists()


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu-check")
  proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--out", str(out)],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, PYTHONPATH=str(REPO)))
  logs = "\n".join(f"== {p.name}\n{p.read_text()[-2000:]}" for p in (out / "logs").glob("*.log"))
  assert proc.returncode == 0, proc.stdout + proc.stderr + logs
  return out, proc.stdout


def test_gpu_check_tiny_runs_every_part(tiny_check):
  out, stdout = tiny_check
  summary = json.loads((out / "check_summary.json").read_text())
  assert summary["tiny"] and summary["all_ran"]
  assert set(summary["parts"]) == {"encoder", "womens_clothing", "chinese_reviews"}
  enc = json.loads((out / "check_encoder_bert_base.json").read_text())
  assert enc["settings"]["dtype"] == "bfloat16"
  assert enc["results"][0]["op"] == "train" and enc["results"][0]["cvlib"]["seq_per_s"] > 0
  assert summary["parts"]["encoder"]["mfu"] is None  # no FLOPs peak for a CPU
  for name in ("womens_clothing", "chinese_reviews"):
    run = json.loads((out / f"check_sentiment_{name}.json").read_text())
    m = run["metrics"]
    # the GPU profile's settings, on two fake CPU devices
    assert run["finetune"]["dtype"] == "bfloat16" and run["finetune"]["data_parallel"]
    assert m["device"] == {**m["device"], "devices": 2, "data_parallel": True,
                           "compute_dtype": "bfloat16"}
    assert 0 <= m["accuracy"] <= 1 and m["combined"] is not None
    part = summary["parts"][name]
    assert part["status"] == "ok" and set(part["met"]) >= {"accuracy", "above_tfidf"}
    assert part["accuracy"] == m["combined"]["accuracy"]
  assert m["encoder"]["kind"] == "transfer"  # chinese_reviews keeps its encoder path
  assert "gpu_check: wrote" in stdout


def test_scoring_cuts_reviews_as_the_run_did():
  """`cvlib score` / `serve` read finetune.truncation from the run: with head_tail they see the
  end of a long review, as the report's scores did (a tiny random classifier on MiniLM's pieces)."""
  import pandas as pd
  from flax import nnx

  from cvlib.serve import scorer
  from cvlib.text import bert, sentiment
  tok = tokens.load_tokenizer(max_length=16)
  model = bert.BertForSequenceClassification(bert.BertConfig.tiny(vocab_size=30522), 2,
                                             rngs=nnx.Rngs(0))
  texts = [LONG + " but it arrived torn and i sent it back", LONG + " and i love it", "short"]
  reviews = pd.DataFrame({"review_id": ["r1", "r2", "r3"], "customer_id": ["c1", "c1", "c2"],
                          "timestamp": pd.Timestamp("2024-01-01"), "rating": [1.0, 5.0, 4.0],
                          "text": texts})
  out = {}
  for cut in tokens.TRUNCATIONS:
    frame, emb = scorer.encode_reviews(model, tok, reviews, buckets=(8, 16), batch_size=4,
                                       truncation=cut)
    proba, want = sentiment.predict_proba_and_embed(model, tok, texts, buckets=(8, 16),
                                                    truncation=cut)
    np.testing.assert_allclose(emb, want, atol=1e-6)
    np.testing.assert_allclose(frame["sentiment"], proba[:, 1] - proba[:, 0], atol=1e-6)
    out[cut] = emb
  # the two long reviews share their first 16 pieces: head cannot tell them apart, head_tail can
  np.testing.assert_allclose(out["head"][0], out["head"][1], atol=1e-6)
  assert np.abs(out["head_tail"][0] - out["head_tail"][1]).max() > 1e-4
  np.testing.assert_allclose(out["head"][2], out["head_tail"][2], atol=1e-6)  # short: the same
