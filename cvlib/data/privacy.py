"""Pseudonymous customer keys: a keyed hash, so reports never show raw ids."""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd

# Used when neither $CVLIB_SALT nor params report.salt is set; reports then carry a warning, since
# anyone who knows this default can test guesses of raw ids against the keys.
DEFAULT_SALT = "cvlib-default-salt"


def resolve_salt(params_salt: str | None) -> tuple[str, bool]:
  """The key to use and whether it is the public default."""
  salt = os.environ.get("CVLIB_SALT") or params_salt
  return (salt, False) if salt else (DEFAULT_SALT, True)


def pseudonymise(ids: pd.Series, salt: str) -> pd.Series:
  """HMAC-SHA256 of each id under ``salt``, as 12 hex digits prefixed with ``c-``."""
  key = salt.encode("utf-8")
  uniq = pd.unique(ids.dropna())
  table = {v: "c-" + hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest()[:12]
           for v in uniq}
  # a list and one Series: Series.map costs most of a one-customer service call's hashing
  values = ids.to_numpy(dtype=object, na_value=None)
  return pd.Series([None if v is None else table[v] for v in values], index=ids.index,
                   name=ids.name, dtype="string")
