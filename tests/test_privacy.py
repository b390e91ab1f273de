"""Tests for cvlib.data.privacy: keyed, deterministic pseudonyms and where the key comes from."""

import hashlib
import hmac

import pandas as pd
import pytest

from cvlib.data import privacy


@pytest.fixture(autouse=True)
def _no_env_salt(monkeypatch):
  monkeypatch.delenv("CVLIB_SALT", raising=False)


IDS = pd.Series(["17850", "C00001", "17850", None, "ü-ß"], dtype="string")


def test_deterministic_and_consistent():
  a = privacy.pseudonymise(IDS, "s3cret")
  b = privacy.pseudonymise(IDS.copy(), "s3cret")
  pd.testing.assert_series_equal(a, b)
  assert str(a.dtype) == "string"
  assert a[0] == a[2] and a[0] != a[1]  # the same id, the same key
  assert pd.isna(a[3])  # a missing id stays missing
  assert a.dropna().str.fullmatch(r"c-[0-9a-f]{12}").all()
  assert a.index.equals(IDS.index)


def test_is_hmac_sha256():
  want = "c-" + hmac.new(b"s3cret", "17850".encode(), hashlib.sha256).hexdigest()[:12]
  assert privacy.pseudonymise(IDS, "s3cret")[0] == want
  assert "17850" not in want


def test_salt_dependent():
  a = privacy.pseudonymise(IDS, "one").dropna()
  b = privacy.pseudonymise(IDS, "two").dropna()
  assert not (a == b).any()


def test_no_collisions_on_many_ids():
  ids = pd.Series([f"C{i:06d}" for i in range(20000)], dtype="string")
  assert privacy.pseudonymise(ids, "k").is_unique


def test_resolve_salt_params():
  assert privacy.resolve_salt("from-params") == ("from-params", False)


def test_env_salt_wins(monkeypatch):
  monkeypatch.setenv("CVLIB_SALT", "from-env")
  assert privacy.resolve_salt("from-params") == ("from-env", False)
  assert privacy.resolve_salt(None) == ("from-env", False)


def test_default_salt_flagged(monkeypatch):
  assert privacy.resolve_salt(None) == (privacy.DEFAULT_SALT, True)
  assert privacy.resolve_salt("") == (privacy.DEFAULT_SALT, True)
  monkeypatch.setenv("CVLIB_SALT", "")  # set but empty counts as unset
  assert privacy.resolve_salt(None) == (privacy.DEFAULT_SALT, True)
  assert privacy.resolve_salt("p") == ("p", False)
