"""``data.until``: a run sees only the orders and reviews up to that day (monthly runs, #22)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from cvlib import config
from cvlib.data import adapters
from cvlib.data.adapters import DataError


def test_until_is_read_as_a_date_from_yaml_and_from_set(write_params):
  path = write_params({"dataset": "x", "data": {"until": "2011-06-30"}})
  assert config.load_params(path).data.until == dt.date(2011, 6, 30)
  p = config.load_params(write_params({"dataset": "x"}), ["data.until=2011-06-30"])
  assert p.data.until == dt.date(2011, 6, 30)
  assert p.to_dict()["data"]["until"] == "2011-06-30"  # what run.json records
  assert config.load_params(write_params({"dataset": "x"})).data.until is None


@pytest.mark.parametrize("bad", ["2011-13-45", "June", "30/06/2011"])
def test_an_unparseable_until_names_the_key(write_params, bad):
  with pytest.raises(config.ParamsError, match=r"data\.until must be a date YYYY-MM-DD"):
    config.load_params(write_params({"dataset": "x"}), [f"data.until={bad}"])


def test_cut_until_keeps_the_day_itself_and_drops_later_orders_lines_and_reviews(tiny_shop, build):
  tables = build.tables(**tiny_shop, meta={"calibration_end": "2015-02-01"})
  cut = adapters.cut_until(tables, dt.date(2015, 1, 31))
  assert cut.transactions["timestamp"].max() == pd.Timestamp("2015-01-31 23:59")  # o08 kept
  assert set(cut.transactions["order_id"]) == {"o01", "o02", "o03", "o04", "o07", "o08", "o12",
                                               "o13", "o14"}
  assert set(cut.items["order_id"]) == {"o01", "o03"}  # o05's line went with its order
  assert set(cut.reviews["review_id"]) == {"r1", "r2", "r4", "r5"}
  assert cut.meta["until"] == "2015-01-31" and "calibration_end" not in cut.meta
  assert "data.until 2015-01-31: 5 orders and 1 reviews after it left out" in cut.notes
  assert len(tables.transactions) == 14  # the input is not modified


def test_cut_until_after_the_data_changes_nothing_but_the_note(tiny_shop, build):
  tables = build.tables(**tiny_shop, meta={"calibration_end": "2015-02-01"})
  cut = adapters.cut_until(tables, dt.date(2016, 1, 1))
  assert len(cut.transactions) == 14 and len(cut.reviews) == 5
  assert cut.meta["calibration_end"] == "2015-02-01"


def test_cut_until_before_the_data_is_bad_input(tiny_shop, build):
  with pytest.raises(DataError, match=r"data.until 2014-12-01: no order or review on or before "
                     r"it \(the data start on 2015-01-01\)"):
    adapters.cut_until(build.tables(**tiny_shop), dt.date(2014, 12, 1))


def test_load_data_applies_until_before_cleaning(tiny_params):
  import dataclasses
  until = dt.date(2024, 3, 31)
  p = dataclasses.replace(tiny_params, data=dataclasses.replace(tiny_params.data, until=until))
  tables = adapters.load_data(p)
  assert tables.transactions["timestamp"].max() < pd.Timestamp("2024-04-01")
  assert tables.reviews["timestamp"].max() < pd.Timestamp("2024-04-01")
  assert tables.meta["until"] == "2024-03-31"


def test_cvlib_run_with_an_unparseable_until_exits_2_naming_the_key(tmp_path, capsys):
  from cvlib import cli
  tiny = config.REPO / "params" / "tiny.yaml"
  assert cli.main(["run", str(tiny), "--out", str(tmp_path), "--set", "data.until=2011-02-30"]) == 2
  assert "data.until must be a date YYYY-MM-DD, got '2011-02-30'" in capsys.readouterr().err
  assert not (tmp_path / "tiny").exists()


def test_cvlib_validate_with_until_before_the_data_exits_2(capsys):
  from cvlib import cli
  tiny = config.REPO / "params" / "tiny.yaml"
  assert cli.main(["validate", str(tiny), "--set", "data.until=2020-01-01"]) == 2
  assert "data.until 2020-01-01: no order or review on or before it" in capsys.readouterr().err


def test_the_demo_shop_gives_two_runs_a_quarter_apart_with_the_truth_about_who_churned():
  """Cut 91 days before its end, the demo shop's customers keep buying after the cut, and the
  truth's dropout_date says who had churned by then: nobody buys after dropping out."""
  from cvlib.data import synthetic
  d = synthetic.make_demo_data(300, seed=1)
  tx, truth = d["transactions"], d["truth"].set_index("customer_id")
  end = tx["timestamp"].max().normalize()
  cut = end - pd.Timedelta(days=91)
  before = set(tx.loc[tx["timestamp"] < cut, "customer_id"])
  after = tx[tx["timestamp"] >= cut]
  assert len(set(after["customer_id"]) & before) > 30  # the first run's customers keep buying
  churned = truth.index[truth["dropout_date"] < cut]
  assert len(churned) > 50 and not set(after["customer_id"]) & set(churned)
  last = tx.groupby("customer_id")["timestamp"].max()
  dropped = truth["dropout_date"].dropna()
  assert ((last.reindex(dropped.index) - dropped).abs() < pd.Timedelta(seconds=1)).all()
