"""Tests for the end-to-end value model: bert.BertForZILN and history_text.train_e2e_ziln."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx

from cvlib.text import bert, mlm, wordpiece

from cvlib.value import history_text, ziln

WORDS = "order review stars items dress socks shoes great small returned bag".split()
# Few, short steps: one bucket, so the train step compiles once per test session.
TRAIN = {"epochs": 20, "batch_size": 32, "learning_rate": 3e-3, "head_learning_rate": 1e-2,
         "patience": 3, "buckets": (16,), "seed": 0, "progress": False}


def _task(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
  """Texts where one word carries the value: "loyal" ~ lognormal(3, 0.5), "gone" 0.

  The two numeric features are noise.
  """
  rng = np.random.default_rng(seed)
  loyal = rng.random(n) < 0.5
  texts = []
  for is_loyal in loyal:
    words = list(rng.choice(WORDS, 6))
    words.insert(int(rng.integers(0, 7)), "loyal" if is_loyal else "gone")
    texts.append(" ".join(words))
  y = np.where(loyal, rng.lognormal(3.0, 0.5, n), 0.0)
  return texts, rng.normal(size=(n, 2)), y


@pytest.fixture(name="setup", scope="module")
def fixture_setup():
  train, val = _task(256, 0), _task(128, 1)
  tokenizer = wordpiece.train_wordpiece(train[0], language="en", vocab_size=60, min_frequency=1,
                                        max_length=32)
  config = bert.BertConfig.tiny(vocab_size=tokenizer.get_vocab_size())
  encoder = bert.BertModel(config, rngs=nnx.Rngs(0), add_pooler=False)
  numeric = pd.DataFrame(train[1], columns=["noise_a", "noise_b"])
  predictor, history = history_text.train_e2e_ziln(
      train[0], numeric, train[2], val[0], val[1], val[2], encoder_model=encoder,
      tokenizer=tokenizer, **TRAIN)
  return {"train": train, "val": val, "tokenizer": tokenizer, "encoder": encoder,
          "predictor": predictor, "history": history}


@jax.jit
def _apply(model, ids, mask, numeric):
  return model(ids, mask, numeric)


def test_bert_for_ziln_shapes_and_dtype():
  config = bert.BertConfig.tiny(vocab_size=30)
  ids = jnp.asarray(np.random.default_rng(0).integers(5, 30, (4, 9)), jnp.int32)
  mask = jnp.ones((4, 9), jnp.int32).at[0, 5:].set(0)
  with_numeric = bert.BertForZILN(config, 3, hidden=8, rngs=nnx.Rngs(0))
  out = _apply(with_numeric, ids, mask, jnp.ones((4, 3)))
  assert out.shape == (4, 3) and out.dtype == jnp.float32
  text_only = bert.BertForZILN(dataclasses.replace(config, dtype="bfloat16"), 0, rngs=nnx.Rngs(0))
  out = _apply(text_only, ids, mask, None)
  assert out.shape == (4, 3) and out.dtype == jnp.float32  # float32 head on a bfloat16 encoder
  # The output bias sets the starting point: the N(0, 0.02) output layer barely moves it.
  bias = ziln.make_output_bias(np.array([0.0, 0.0, 5.0, 20.0, 7.0]))
  with_numeric.set_output_bias(bias)
  np.testing.assert_allclose(_apply(with_numeric, ids, mask, jnp.zeros((4, 3))),
                             np.tile(bias, (4, 1)), atol=0.2)
  # Padding does not leak: changing padded ids leaves row 0 unchanged.
  np.testing.assert_allclose(_apply(with_numeric, ids.at[0, 6:].set(7), mask, jnp.zeros((4, 3))),
                             _apply(with_numeric, ids, mask, jnp.zeros((4, 3))), atol=1e-6)
  with pytest.raises(ValueError, match="numeric must have shape"):
    with_numeric(ids, mask)
  with pytest.raises(ValueError, match="n_numeric must be"):
    bert.BertForZILN(config, -1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="output bias"):
    with_numeric.set_output_bias([1.0, 2.0])


def test_optimizer_gives_the_head_its_own_rate():
  params = {"bert": {"dense": {"kernel": jnp.ones((3, 3))}},
            "output": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)}}
  tx = history_text.make_e2e_optimizer(learning_rate=1e-5, head_learning_rate=1e-2,
                                       warmup_steps=0, total_steps=10, max_grad_norm=1.0)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Adam's first step moves each weight by its learning rate (plus weight decay on kernels).
  np.testing.assert_allclose(updates["bert"]["dense"]["kernel"], -1e-5 * (1 + 0.01), rtol=1e-3)
  np.testing.assert_allclose(updates["output"]["kernel"], -1e-2 * (1 + 0.01), rtol=1e-3)
  np.testing.assert_allclose(updates["output"]["bias"], -1e-2, rtol=1e-3)  # no decay on biases
  with pytest.raises(ValueError, match="head_learning_rate must be > 0"):
    history_text.make_e2e_optimizer(learning_rate=1e-5, head_learning_rate=0.0, warmup_steps=0,
                                    total_steps=10)


def test_training_changes_every_parameter(setup):
  # The model training started from: the same seed builds the same head.
  start = bert.BertForZILN(setup["encoder"].config, 2, rngs=nnx.Rngs(TRAIN["seed"]))
  mlm.transfer_encoder(setup["encoder"], start)
  start.set_output_bias(ziln.make_output_bias(setup["train"][2]))
  before = {".".join(map(str, k)): np.asarray(v[...])
            for k, v in nnx.to_flat_state(nnx.state(start, nnx.Param))}
  after = {".".join(map(str, k)): np.asarray(v[...])
           for k, v in nnx.to_flat_state(nnx.state(setup["predictor"].model, nnx.Param))}
  assert before.keys() == after.keys()
  unchanged = [k for k in before if np.array_equal(before[k], after[k])]
  # (Decoupled weight decay moves even the embeddings of ids that never occur.)
  assert unchanged == [], unchanged


def test_learns_from_text_and_beats_the_constant_baseline(setup):
  history, predictor = setup["history"], setup["predictor"]
  assert list(history.columns) == ["epoch", "train_loss", "val_loss", "constant_val_loss",
                                   "learning_rate", "seconds", "best"]
  assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] - 0.3
  texts, x, y = setup["val"]
  logits = predictor.logits(texts, x)
  val_loss = float(ziln.ziln_loss(jnp.asarray(logits), jnp.asarray(y)))
  # The best epoch's weights were restored.
  assert val_loss == pytest.approx(history["val_loss"].min(), rel=1e-5)
  assert history["best"].sum() == 1
  assert history.loc[history["best"], "val_loss"].item() == history["val_loss"].min()
  constant = history["constant_val_loss"].iloc[0]
  # Independently: the constant (marginal) prediction's ZILN loss on the validation set.
  marginal = np.tile(ziln.make_output_bias(setup["train"][2]), (len(y), 1))
  assert constant == pytest.approx(float(ziln.ziln_loss(jnp.asarray(marginal), jnp.asarray(y))))
  assert val_loss < constant - 0.15
  # Loyal customers rank above the ones who are gone.
  pred = predictor.predict(texts, pd.DataFrame(x, columns=["noise_a", "noise_b"]))
  assert list(pred.columns) == ["p_return", "predicted_value", "q10", "q90"]
  loyal = np.asarray(["loyal" in t for t in texts])
  value, p = pred["predicted_value"].to_numpy(), pred["p_return"].to_numpy()
  auc = (value[loyal][:, None] > value[~loyal][None, :]).mean()
  assert auc > 0.8
  assert p[loyal].mean() > p[~loyal].mean() + 0.4
  assert (pred["q10"] <= pred["q90"]).all() and (pred["predicted_value"] >= 0).all()


def test_predictions_match_ziln_predict_with_the_sigma_cap(setup):
  predictor = setup["predictor"]
  texts, x, _ = setup["val"]
  texts, x = texts[:32], x[:32]  # the batch shape already compiled
  pred = predictor.predict(texts, x, qs=(0.25, 0.75))
  ref = ziln.ziln_predict(jnp.asarray(predictor.logits(texts, x)), (0.25, 0.75),
                          sigma_max=predictor.config["sigma_max"])
  np.testing.assert_allclose(pred["predicted_value"], np.asarray(ref["mean"]), rtol=1e-6)
  np.testing.assert_allclose(pred[["q10", "q90"]], np.asarray(ref["quantiles"]), rtol=1e-6)
  assert predictor.config["sigma_max"] == ziln.sigma_cap(setup["train"][2])
  # Rows come back in input order, whatever order (and batch-mates) they are given in.
  np.testing.assert_allclose(predictor.logits(texts[::-1], x[::-1]),
                             predictor.logits(texts, x)[::-1], atol=1e-5)


def test_training_is_deterministic_and_leaves_the_encoder_alone(setup):
  train, val = setup["train"], setup["val"]
  encoder_before = jax.device_get(nnx.state(setup["encoder"], nnx.Param))
  numeric = pd.DataFrame(train[1], columns=["noise_a", "noise_b"])
  again, history = history_text.train_e2e_ziln(
      train[0], numeric, train[2], val[0], val[1], val[2], encoder_model=setup["encoder"],
      tokenizer=setup["tokenizer"], **TRAIN)
  pd.testing.assert_series_equal(history["val_loss"], setup["history"]["val_loss"])
  np.testing.assert_array_equal(again.logits(val[0], val[1]),
                                setup["predictor"].logits(val[0], val[1]))
  # The encoder handed in was copied, not trained (nor donated away).
  after = jax.device_get(nnx.state(setup["encoder"], nnx.Param))
  for a, b in zip(jax.tree.leaves(encoder_before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(setup, tmp_path):
  predictor = setup["predictor"]
  texts, x, _ = setup["val"]
  predictor.save(tmp_path / "model")
  loaded = history_text.E2EPredictor.load(tmp_path / "model")
  assert loaded.config == predictor.config
  frame = pd.DataFrame(x, columns=["noise_a", "noise_b"], index=[f"c{i}" for i in range(len(x))])
  pd.testing.assert_frame_equal(loaded.predict(texts, frame), predictor.predict(texts, frame))
  assert list(loaded.predict(texts, frame).index) == list(frame.index)
  with pytest.raises(ValueError, match="differ from the training columns"):
    loaded.predict(texts, frame.rename(columns={"noise_a": "other"}))
  (tmp_path / "model" / "tokenizer.json").unlink()
  with pytest.raises(FileNotFoundError, match="tokenizer.json missing"):
    history_text.E2EPredictor.load(tmp_path / "model")


def test_text_only_model_and_bad_inputs(setup):
  train, val = setup["train"], setup["val"]
  # One layer and one epoch: this compiles its own steps, so keep it small.
  one_layer = bert.BertModel(dataclasses.replace(setup["encoder"].config, num_layers=1),
                             rngs=nnx.Rngs(0), add_pooler=False)
  kwargs = {"encoder_model": one_layer, "tokenizer": setup["tokenizer"], **{**TRAIN, "epochs": 1}}
  predictor, history = history_text.train_e2e_ziln(train[0], None, train[2], val[0], None,
                                                   val[2], **kwargs)
  assert predictor.config["n_numeric"] == 0 and len(history) == 1
  pred = predictor.predict(val[0])
  assert pred.shape == (len(val[0]), 4) and np.isfinite(pred.to_numpy()).all()
  with pytest.raises(ValueError, match="numeric is None but the model takes 2"):
    setup["predictor"].predict(val[0][:3])
  with pytest.raises(ValueError, match="both or neither"):
    history_text.train_e2e_ziln(train[0], train[1], train[2], val[0], None, val[2], **kwargs)
  with pytest.raises(ValueError, match="y must be finite and >= 0"):
    history_text.train_e2e_ziln(train[0], train[1], -train[2], val[0], val[1], val[2], **kwargs)
  with pytest.raises(ValueError, match="one row per text"):
    history_text.train_e2e_ziln(train[0], train[1][:5], train[2], val[0], val[1], val[2],
                                **kwargs)
  with pytest.raises(ValueError, match="largest bucket"):
    history_text.train_e2e_ziln(train[0], train[1], train[2], val[0], val[1], val[2],
                                **{**kwargs, "buckets": (16, 256)})
  big_vocab = wordpiece.train_wordpiece(train[0] + ["completely different words appear here"],
                                        language="en", vocab_size=200, min_frequency=1)
  with pytest.raises(ValueError, match="not its tokenizer"):
    history_text.train_e2e_ziln(train[0], train[1], train[2], val[0], val[1], val[2],
                                **{**kwargs, "tokenizer": big_vocab})
