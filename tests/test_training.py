"""cvlib.training: the one loop (early stopping, best-weight restore, history) and the optimiser."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cvlib import training


class _Scalar(nnx.Module):
  def __init__(self):
    self.w = nnx.Param(jnp.zeros(()))


def _run(scores, *, mode="min", patience=None, epochs=None, stop_if_not_finite=False,
         progress=False, keep_best=True):
  """Each epoch sets w to the epoch number and reports scores[epoch - 1] as its metric."""
  model = _Scalar()

  def train_epoch(epoch):
    model.w[...] = jnp.asarray(float(epoch))
    return {"train_loss": 1.0 / epoch, "stop": epoch == len(scores)}

  history = training.fit(
      model, train_epoch, epochs=epochs, evaluate=lambda e: {"val": scores[e - 1]},
      stopping=training.EarlyStopping("val", mode=mode, patience=patience,
                                      stop_if_not_finite=stop_if_not_finite),
      keep_best=keep_best, progress=progress)
  return model, history


def test_keeps_the_best_epochs_weights_and_stops_after_patience():
  model, history = _run([3.0, 1.0, 2.0, 2.5, 0.5], patience=2)
  assert history["epoch"].tolist() == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2
  assert history["best"].tolist() == [True, True, False, False]
  assert float(model.w[...]) == 2.0  # restored from the host copy of epoch 2
  assert list(history.columns) == ["epoch", "train_loss", "val", "seconds", "best"]


def test_max_mode_ties_keep_the_earlier_epoch():
  model, history = _run([0.5, 0.7, 0.7, 0.6], mode="max")
  assert history["best"].tolist() == [True, True, False, False]
  assert float(model.w[...]) == 2.0 and len(history) == 4  # stop flag on the last epoch


def test_without_keep_best_the_last_weights_stay():
  model, _ = _run([1.0, 2.0, 3.0], keep_best=False)
  assert float(model.w[...]) == 3.0


def test_a_non_finite_metric_stops_at_once():
  model, history = _run([2.0, math.nan, 1.0], stop_if_not_finite=True)
  assert len(history) == 2 and float(model.w[...]) == 1.0


def test_epochs_caps_the_run_and_progress_is_plain_lines(capsys):
  _, history = _run([5.0, 4.0, 3.0, 2.0], epochs=2, patience=1, progress=True)
  assert len(history) == 2
  out = capsys.readouterr().out
  assert "epoch 1/2: val 5.0000" in out and "(best)" in out and "\r" not in out


def test_no_stopping_rule_runs_until_the_epoch_says_stop():
  model = _Scalar()
  history = training.fit(model, lambda e: {"stop": e == 3}, epochs=None)
  assert history["epoch"].tolist() == [1, 2, 3] and not history["best"].any()


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
    training.EarlyStopping("val", mode="up")
  with pytest.raises(ValueError, match="patience must be an int >= 1"):
    training.EarlyStopping("val", patience=0)
  with pytest.raises(ValueError, match="epochs must be an int >= 1"):
    training.fit(_Scalar(), lambda e: {}, epochs=0)


def test_schedule_warms_up_then_decays_to_zero():
  schedule = training.make_schedule(learning_rate=1e-3, warmup_steps=10, total_steps=100)
  assert float(schedule(0)) == pytest.approx(1e-4)  # the first step already moves the weights
  assert float(schedule(9)) == pytest.approx(1e-3)
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-12)
  values = np.array([float(schedule(s)) for s in range(10, 101)])
  assert np.all(np.diff(values) <= 1e-12)


def test_no_weight_decay_on_biases_and_layernorm():
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},
            "LayerNorm": {"scale": jnp.ones(2), "bias": jnp.ones(2)}}
  mask = training.decay_mask(params)
  assert mask["dense"]["kernel"] and not mask["dense"]["bias"]
  assert not mask["LayerNorm"]["scale"] and not mask["LayerNorm"]["bias"]
