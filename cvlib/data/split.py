"""The calibration/holdout split of a shop's customers and the customer tables built from it.

Stage 1 makes a :class:`Prepared` (``cvlib.stages.preprocess.prepare_customers``); every later stage
and the value models read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pandas as pd

from cvlib.data.adapters import Tables



@dataclasses.dataclass
class Prepared:
  """The calibration/holdout split and the customer tables built from it."""
  cutoff: dt.date | None  # first day of the holdout period (None: no transactions)
  as_of: dt.date | None  # the day after the last event: forward-looking scores are as of this day
  horizon_days: int
  features: pd.DataFrame  # per customer, features before cutoff + holdout targets (back-test)
  features_now: pd.DataFrame  # per customer, features before as_of (for forward scores)
  cal_items: pd.DataFrame  # customer-product purchases before cutoff
  hold_items: pd.DataFrame  # customer-product purchases in the holdout period
  # the customers as they stood at earlier cutoffs, one horizon apart (``features`` columns and
  # ``window``: 1 for one horizon before the cutoff, ...): more rows for the value networks to
  # train on (``value.train_windows``); no rows when there is no earlier window
  windows: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

  @property
  def has_customers(self) -> bool:
    """Whether customer value applies: some customer bought in the calibration period."""
    return len(self.features) > 0

  def split_info(self, tables: Tables) -> dict[str, Any]:
    tx = tables.transactions
    iso = lambda d: d.isoformat() if d else None
    return {"cutoff": iso(self.cutoff), "as_of": iso(self.as_of),
            "horizon_days": self.horizon_days,
            "data_start": tx["timestamp"].min().date().isoformat() if len(tx) else None,
            "data_end": tx["timestamp"].max().date().isoformat() if len(tx) else None,
            "calibration_customers": len(self.features),
            "returned_share": float(self.features["returned"].mean()) if len(self.features) else None}
