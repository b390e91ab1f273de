"""value.train_sample: the value models train on a seeded stratified sample of customers; every
customer outside it is reported on, and metrics.json and the report say which."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from cvlib import config
from cvlib.stages import finetune
from cvlib.value import sampling


def _customers(n: int = 5000, seed: int = 0) -> pd.DataFrame:
  """Features shaped like a shop's: 30% with no past spend, a heavy spend tail, 25% returning."""
  rng = np.random.default_rng(seed)
  spend = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(3.0, 1.5, n))
  return pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "total_spend": spend,
                       "T_days": rng.integers(1, 720, n).astype(float),
                       "returned": rng.random(n) < 0.25})


def test_every_stratum_keeps_its_share_and_the_draw_is_seeded():
  strata = np.repeat([0, 1, 2, 3], [500, 300, 150, 50])
  picked = sampling.stratified_sample(strata, 100, seed=0)
  assert len(picked) == 100 and len(np.unique(picked)) == 100
  assert np.bincount(strata[picked]).tolist() == [50, 30, 15, 5]
  # shares that do not divide: each stratum within one of its quota, the total exact
  odd = np.repeat([0, 1, 2], [333, 333, 334])
  counts = np.bincount(odd[sampling.stratified_sample(odd, 101, seed=0)])
  assert counts.sum() == 101 and np.abs(counts - 101 / 3).max() < 1
  np.testing.assert_array_equal(picked, sampling.stratified_sample(strata, 100, seed=0))
  assert not np.array_equal(picked, sampling.stratified_sample(strata, 100, seed=1))
  for n in (1000, 5000):  # n >= m: every row
    np.testing.assert_array_equal(sampling.stratified_sample(strata, n, seed=0), np.arange(1000))


def test_strata_keep_zero_spend_the_tail_and_returners_in_their_shares():
  f = _customers()
  strata = sampling.customer_strata(f)
  zero, returned = f["total_spend"].eq(0).to_numpy(), f["returned"].to_numpy()
  # zero spend and return each decide a stratum alone: no stratum mixes them
  for s in np.unique(strata):
    assert len(np.unique(zero[strata == s])) == 1 and len(np.unique(returned[strata == s])) == 1
  keep = sampling.training_sample(f, np.ones(len(f), bool), 500, seed=0)
  assert keep.sum() == 500
  top = f["total_spend"].to_numpy() > np.quantile(f["total_spend"][~zero], 0.99)
  for name, group in (("no spend", zero), ("returned", returned), ("top 1% spend", top)):
    # a union of k strata, each within one customer of its quota: within k of the group's quota
    k = len(np.unique(strata[group]))
    assert abs(group[keep].sum() - 500 * group.mean()) < k, name
  assert top[keep].sum() >= 3  # the tail (0.7% of customers) is in the sample


def test_training_sample_draws_from_the_pool_only():
  f = _customers(1000)
  pool = np.arange(1000) % 10 < 7
  keep = sampling.training_sample(f, pool, 200, seed=3)
  assert keep.sum() == 200 and not (keep & ~pool).any()
  for n in (0, 700, 5000):  # 0 or at least the pool: all of it
    np.testing.assert_array_equal(sampling.training_sample(f, pool, n, seed=3), pool)


def test_split_with_a_sample_reports_on_everyone_outside_it():
  f = _customers(1000)
  cfg = config.ValueConfig()
  all_test = finetune.split_customers(cfg, f, seed=0)
  assert all_test.sum() == 300
  desc = finetune.describe_training(cfg, f, all_test)
  assert desc["sample"] == "all customers" and desc["strata"] is None
  assert desc["text"].startswith("trained on 700 of 1,000 customers (all customers")

  sampled = dataclasses.replace(cfg, train_sample=200)
  is_test = finetune.split_customers(sampled, f, seed=0)
  assert (~is_test).sum() == 200 and (is_test | ~all_test).all()  # the test share stays test
  np.testing.assert_array_equal(is_test, finetune.split_customers(sampled, f, seed=0))
  desc = finetune.describe_training(sampled, f, is_test)
  assert desc == {**desc, "customers": 1000, "trained_on": 200, "test_customers": 800,
                  "train_sample": 200, "sample": "stratified sample"}
  assert desc["text"].startswith("trained on 200 of 1,000 customers (stratified sample")
  assert finetune.describe_training(sampled, f.iloc[:0], np.zeros(0, bool)) is None  # no customers
  big = dataclasses.replace(cfg, train_sample=5000)  # above the training customers: all of them
  np.testing.assert_array_equal(finetune.split_customers(big, f, seed=0), all_test)
  assert finetune.describe_training(big, f, all_test)["sample"] == "all customers"


def test_the_report_says_the_models_trained_on_a_sample(tmp_path):
  import matplotlib.pyplot as plt

  from cvlib.report import html as report
  from cvlib.report.workspace import Workspace
  f = _customers(1000)
  cfg = dataclasses.replace(config.ValueConfig(), train_sample=200)
  desc = finetune.describe_training(cfg, f, finetune.split_customers(cfg, f, seed=0))
  finetune.report_finetune(Workspace(tmp_path, "finetune"), None, [None, plt.figure(), None],
                           {"ziln": None}, training=desc)
  text = " ".join(p.get("text", "") for p in report.load_parts(tmp_path)["value"])
  assert ("The value models were trained on 200 of 1,000 customers (stratified sample of the 700 "
          "training customers; the other 800 are test customers)." in text)
  assert sampling.STRATA in text and "Every customer is still scored" in text


def test_the_run_says_what_it_trained_on(tiny_run, tiny_params):
  training = json.loads((tiny_run / "metrics.json").read_text())["value_training"]
  n = training["customers"]
  assert training["sample"] == "all customers" and tiny_params.value.train_sample == 0
  assert training["trained_on"] == n - round(tiny_params.value.test_size * n)
  assert training["text"] in (tiny_run / "index.html").read_text()
