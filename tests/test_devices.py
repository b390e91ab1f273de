"""Tests for cvlib.text.devices: data parallel steps on 2 fake CPU devices equal single-device steps."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from cvlib.text import bert, devices

# Runs in a fresh interpreter: the device count is fixed when JAX starts.
_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np, jax, jax.numpy as jnp
    from flax import nnx
    from cvlib import training
    from cvlib.text import bert, devices, mlm, sentiment

    assert jax.device_count() == 2, jax.devices()
    mesh = devices.make_mesh()
    config = bert.BertConfig(vocab_size=60, hidden_size=16, num_layers=1, num_heads=2,
                             intermediate_size=32, max_position_embeddings=16)
    rng = np.random.default_rng(0)
    lengths = np.array([12, 9, 5, 12, 3, 7, 12, 1])
    mask = (np.arange(12)[None] < lengths[:, None]).astype(np.int32)
    batch = {"input_ids": (rng.integers(5, 60, (8, 12)) * mask).astype(np.int32),
             "attention_mask": mask, "label": (np.arange(8) % 3).astype(np.int32),
             "weight": np.linspace(0.5, 2.0, 8).astype(np.float32)}
    out = {}

    def params(model):
      return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]

    # Sentiment step: the same model and optimizer, once per device layout.
    results = {}
    for name in ("single", "sharded"):
      model = bert.BertForSequenceClassification(config, 3, rngs=nnx.Rngs(0))
      tx = training.make_optimizer(learning_rate=1e-2, warmup_steps=0, total_steps=10)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      use = mesh if name == "sharded" else None
      if use is not None:
        devices.replicate(model, optimizer, mesh=use)
      b = devices.put_batch(batch, use)
      if name == "sharded":
        shards = b["input_ids"].addressable_shards
        out["shard_shapes"] = [list(s.data.shape) for s in shards]
        out["shard_devices"] = sorted(str(s.device) for s in shards)
      losses = [float(sentiment.train_step(model, optimizer, b)) for _ in range(3)]
      results[name] = (losses, params(model))
      if name == "sharded":  # still a full copy on both devices after the updates
        kernel = model.classifier.kernel[...]
        out["params_replicated"] = [kernel.sharding.is_fully_replicated,
                                    len(kernel.sharding.device_set)]
    out["sentiment_loss"] = [results["single"][0], results["sharded"][0]]
    out["sentiment_max_diff"] = max(float(np.abs(a - b).max()) for a, b in
                                    zip(results["single"][1], results["sharded"][1]))

    # MLM step with dropout on: masks come from a hash of the global index, so they agree.
    masked = mlm.mask_tokens(batch["input_ids"], batch["attention_mask"],
                             rng=np.random.default_rng(1), mask_id=4, special_ids=[0, 1, 2, 3, 4],
                             vocab_size=60)
    mbatch = {k: masked[k] for k in ("input_ids", "masked_positions", "masked_ids",
                                     "masked_weights")}
    mbatch["attention_mask"] = batch["attention_mask"]
    results = {}
    for name in ("single", "sharded"):
      model = bert.BertForMaskedLM(config, rngs=nnx.Rngs(0))
      tx = training.make_optimizer(learning_rate=1e-2, warmup_steps=0, total_steps=10)
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
      use = mesh if name == "sharded" else None
      if use is not None:
        devices.replicate(model, optimizer, mesh=use)
      losses = [float(mlm.mlm_train_step(model, optimizer, devices.put_batch(mbatch, use))[0])
                for _ in range(2)]
      results[name] = (losses, params(model))
    out["mlm_loss"] = [results["single"][0], results["sharded"][0]]
    out["mlm_max_diff"] = max(float(np.abs(a - b).max()) for a, b in
                              zip(results["single"][1], results["sharded"][1]))
    try:
      devices.shard_batch({"x": np.zeros((3, 2))}, mesh)
    except ValueError as e:
      out["odd_batch_error"] = str(e)

    # The report's fine-tuning on tiny params, finetune.data_parallel off and on: one process,
    # the same split, encoder and seed.
    import dataclasses
    import cvlib
    from cvlib.data.clean import clean_tables
    from cvlib.stages import finetune
    tiny = cvlib.load_params("params/tiny.yaml", ["finetune.max_train_examples=32"])
    reviews = clean_tables(cvlib.load_data(tiny))[0].reviews
    data = finetune.make_sentiment_data(tiny.finetune, reviews, seed=0)
    data = dataclasses.replace(data, val_texts=data.val_texts[:32], val_labels=data.val_labels[:32])
    encoder = finetune.prepare_encoder(tiny.finetune, reviews, data, language="en", seed=0,
                                       mlm_steps=0, progress=False)
    results = {}
    shard_batch = devices.shard_batch
    for parallel in (False, True):
      cfg = dataclasses.replace(tiny.finetune, data_parallel=parallel)
      sharded = []  # the devices each training batch was split over
      devices.shard_batch = lambda b, m: sharded.append(m.devices.size) or shard_batch(b, m)
      model, tokenizer, history = finetune.fine_tune_sentiment(cfg, data, encoder, seed=0)
      devices.shard_batch = shard_batch
      proba = sentiment.predict_proba(model, tokenizer, data.val_texts, buckets=cfg.buckets)
      results[parallel] = (history[["train_loss", "val_loss"]].to_numpy().ravel().tolist(),
                           params(model), proba)
      out[f"stage_sharded_{parallel}"] = sorted(set(sharded))
      out[f"stage_model_devices_{parallel}"] = len(model.classifier.kernel[...].sharding.device_set)
    out["stage_loss"] = [results[False][0], results[True][0]]
    out["stage_max_diff"] = max(float(np.abs(a - b).max()) for a, b in
                                zip(results[False][1], results[True][1]))
    out["stage_proba_diff"] = float(np.abs(results[False][2] - results[True][2]).max())
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def two_device_run():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                        timeout=900, cwd=Path(__file__).resolve().parents[1])
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def test_batches_are_split_over_two_devices(two_device_run):
  assert two_device_run["shard_shapes"] == [[4, 12], [4, 12]]
  assert len(set(two_device_run["shard_devices"])) == 2
  assert two_device_run["params_replicated"] == [True, 2]
  assert "multiple of the 2 devices" in two_device_run["odd_batch_error"]


def test_sharded_sentiment_step_equals_single_device(two_device_run):
  single, sharded = two_device_run["sentiment_loss"]
  np.testing.assert_allclose(sharded, single, rtol=1e-5)
  assert single[2] < single[0]  # the steps do learn
  assert two_device_run["sentiment_max_diff"] < 1e-5


def test_sharded_mlm_step_equals_single_device(two_device_run):
  single, sharded = two_device_run["mlm_loss"]
  np.testing.assert_allclose(sharded, single, rtol=1e-5)
  assert two_device_run["mlm_max_diff"] < 1e-5


def test_report_fine_tuning_data_parallel_equals_single_device(two_device_run):
  """finetune.data_parallel on tiny params: every batch split over both devices, the same
  losses, weights and predictions as on one device (float summation order aside)."""
  assert two_device_run["stage_sharded_False"] == []  # off: no batch split
  assert two_device_run["stage_sharded_True"] == [2]  # on: every batch over both devices
  # afterwards the model is back on one device, for inference and saving as on a CPU
  assert two_device_run["stage_model_devices_True"] == 1
  single, sharded = two_device_run["stage_loss"]
  np.testing.assert_allclose(sharded, single, rtol=1e-5)
  assert two_device_run["stage_max_diff"] < 1e-5
  assert two_device_run["stage_proba_diff"] < 1e-5


def test_mesh_helpers_on_one_device():
  mesh = devices.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.shape["data"] == jax.local_device_count()
  assert devices.default_mesh() is None  # a single CPU device: no mesh
  devices.check_batch_size(32, None)
  devices.check_batch_size(32, mesh)
  with pytest.raises(ValueError, match="at least one device"):
    devices.make_mesh([])
  batch = devices.put_batch({"a": np.arange(4)})
  assert isinstance(batch["a"], jax.Array)
  info = devices.describe(None)
  assert info["backend"] == "cpu" and info["devices"] == 1 and not info["data_parallel"]


def test_compute_dtype_choice():
  assert devices.default_compute_dtype("cpu") == "float32"
  assert devices.default_compute_dtype("gpu") == "bfloat16"
  config = devices.with_compute_dtype(bert.BertConfig.tiny(), "bfloat16")
  assert config.dtype == "bfloat16" and config.compute_dtype == np.dtype("bfloat16")
  assert devices.with_compute_dtype(bert.BertConfig.tiny(), None).dtype == "float32"  # on CPU


def test_accel_cuda_without_a_gpu_stops_with_one_line():
  """`make report ACCEL=cuda` asks this before running: on a CPU machine, exit 2 and one line."""
  assert devices.accelerator_problem("cpu") is None
  assert "unknown accelerator" in devices.accelerator_problem("tpu9")
  proc = subprocess.run([sys.executable, "-m", "cvlib.text.devices", "require", "cuda"],
                        capture_output=True, text=True, timeout=120)
  if any(d.platform == "gpu" for d in jax.devices()):
    assert proc.returncode == 0
    return
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ACCEL=cuda: JAX finds no GPU")


def test_cuda_lock_matches_the_cpu_lock():
  """requirements-cuda.lock's plugin is built for requirements.lock's jaxlib, and adds only what
  the CPU lock lacks (installed on top of it with --no-deps)."""
  repo = Path(__file__).resolve().parents[1]
  read = lambda name: dict(line.split("==") for line in (repo / name).read_text().splitlines()
                           if "==" in line and not line.startswith("#"))
  cpu, cuda = read("requirements.lock"), read("requirements-cuda.lock")
  assert cuda["jax-cuda12-plugin"] == cuda["jax-cuda12-pjrt"] == cpu["jaxlib"] == cpu["jax"]
  assert not {k.lower() for k in cuda} & {k.lower() for k in cpu}


def test_make_refuses_an_unknown_accelerator():
  if shutil.which("make") is None:
    pytest.fail("make is missing: install it (Debian package make)")
  repo = Path(__file__).resolve().parents[1]
  proc = subprocess.run(["make", "-n", "report", "ACCEL=quantum"], cwd=repo, capture_output=True,
                        text=True, timeout=60)
  assert proc.returncode != 0 and "ACCEL=quantum: choose cpu (the default) or cuda" in proc.stderr
