"""`cvlib serve`: the real server on a free loopback port, called over HTTP.

One server serves the tiny run for the agreement, authentication, bad-request and log tests; a
second one serves a copy of it, into which new runs are published while requests flow (hot
reload), and is then stopped with SIGTERM while requests are in flight.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvlib import cli, runner
from cvlib.serve import scorer as scoring
from cvlib.serve import service
from cvlib.serve.batcher import Batcher, Request, score_together

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_ID = "SECRET-CUSTOMER-4711"  # must never reach the service's log


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Server:
  """``cvlib serve`` in a child process, its output in a log file."""

  def __init__(self, run_dir: Path, log_path: Path, *extra: str, reload_interval: float = 0.2):
    self.port = _free_port()
    self.log_path = log_path
    env = {**os.environ, "CVLIB_SERVE_TOKEN": TOKEN}
    self._log = open(log_path, "wb")
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "cvlib.cli", "serve", str(run_dir), "--port", str(self.port),
         "--reload-interval", str(reload_interval), *extra],
        stdout=self._log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        raise AssertionError(f"cvlib serve exited with {self.proc.returncode}:\n{self.log()}")
      try:
        if self.call("GET", "/health")[0] == 200:
          return
      except OSError:
        pass
      time.sleep(0.3)
    self.stop()
    raise AssertionError(f"cvlib serve did not answer /health:\n{self.log()}")

  def call(self, method: str, path: str, body: object = None, *, headers: dict | None = None,
           raw: bytes | None = None, timeout: float = 60) -> tuple[int, object, str]:
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
    try:
      data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
      h = {"Content-Type": "application/json", **(headers or {})}
      conn.request(method, path, body=data, headers=h)
      resp = conn.getresponse()
      text = resp.read().decode()
      try:
        payload = json.loads(text)
      except ValueError:
        payload = None
      return resp.status, payload, text
    finally:
      conn.close()

  def score(self, body: object, **kw) -> tuple[int, object, str]:
    return self.call("POST", "/score", body, headers=AUTH, **kw)

  def log(self) -> str:
    self._log.flush()
    return self.log_path.read_text(errors="replace")

  def stop(self) -> int:
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self._log.close()
    return self.proc.returncode


def _events(cleaned, customers: list[str]) -> dict:
  """The request body with these customers' cleaned events (canonical columns, JSON types)."""
  tx = cleaned.transactions[cleaned.transactions["customer_id"].isin(customers)]
  rv = cleaned.reviews[cleaned.reviews["customer_id"].isin(customers)]
  items = cleaned.items[cleaned.items["order_id"].isin(set(tx["order_id"]))]

  def rows(df: pd.DataFrame, cols: list[str]) -> list[dict]:
    out = []
    for rec in df[cols].to_dict("records"):
      out.append({k: (v.isoformat() if isinstance(v, pd.Timestamp) else
                      None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                      else v) for k, v in rec.items()})
    return out

  rv_cols = [c for c in ("review_id", "customer_id", "timestamp", "rating", "text", "product_id")
             if c in rv.columns]
  return {"transactions": rows(tx, ["customer_id", "order_id", "timestamp", "amount"]),
          "reviews": rows(rv, rv_cols),
          "items": rows(items, ["order_id", "product_id", "quantity", "unit_price", "amount"])}


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
  s = Server(tiny_run, tmp_path_factory.mktemp("serve") / "serve.log", "--max-events", "400",
             "--max-body-bytes", "200000")
  yield s
  s.stop()


@pytest.fixture(scope="module")
def scorer(tiny_run):
  return scoring.Scorer(tiny_run)


# --- the same numbers as `cvlib score` ----------------------------------------------------------

def test_scores_over_http_equal_cvlib_score(server, tiny_run, tiny_clean, tmp_path):
  cleaned, _ = tiny_clean
  out = tmp_path / "scores.parquet"
  assert cli.main(["score", str(tiny_run), "params/tiny.yaml", "--out", str(out),
                   "--no-drivers"]) == 0
  want = pd.read_parquet(out).set_index("customer_key")
  as_of = (cleaned.transactions["timestamp"].max().date() + dt.timedelta(days=1)).isoformat()
  customers = cleaned.transactions["customer_id"].drop_duplicates().sort_values().tolist()[:6]
  # together in one request, and one request per customer sent at once (scored in a batch)
  status, together, _ = server.score({**_events(cleaned, customers), "as_of": as_of})
  assert status == 200, together
  singles: dict[str, dict] = {}

  def one(c):
    singles[c] = server.score({**_events(cleaned, [c]), "as_of": as_of})[1]

  threads = [threading.Thread(target=one, args=(c,)) for c in customers]
  [t.start() for t in threads]
  [t.join() for t in threads]
  rows = together["scores"] + [s for c in customers for s in singles[c]["scores"]]
  assert len(rows) == 2 * len(customers)
  for row in rows:
    ref = want.loc[row["customer_key"]]
    for col in ("predicted_value", "value_lo", "value_hi", "churn_probability"):
      assert row[col] == pytest.approx(float(ref[col]), rel=1e-5, abs=1e-6), col
    assert row["segment"] == ref["rfm_segment"] and row["action"] == ref["action"]
    assert row["value_tier"] == ref["value_tier"] and row["risk_band"] == ref["risk_band"]
  assert together["as_of"] == as_of and together["not_scored"] == []
  # the body is written without the response model: it must still be one, field for field
  assert list(service.SCORE_FIELDS) == list(service.CustomerScore.model_fields)
  for body in [together, *singles.values()]:
    assert service.ScoreResponse.model_validate(body).model_dump(mode="json") == body
  assert together["run"]["dataset"] == "tiny" and together["run"]["model"] == want["model"].iloc[0]


def test_health_names_the_run_without_a_token(server, tiny_run):
  status, body, _ = server.call("GET", "/health")
  assert status == 200 and body["status"] == "ok"
  manifest = (tiny_run / "models" / "manifest.json").read_bytes()
  assert body["run"]["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
  assert body["run"]["dataset"] == "tiny" and body["run"]["cvlib_version"]
  assert body["run"]["run_ended"] == json.loads((tiny_run / "run.json").read_text())["ended"]
  status, schema, _ = server.call("GET", "/openapi.json")
  assert status == 200 and "/score" in schema["paths"]
  assert {"ScoreRequest", "ScoreResponse", "CustomerScore"} <= set(schema["components"]["schemas"])


# --- authentication and bad requests ------------------------------------------------------------

ONE = {"transactions": [{"customer_id": SECRET_ID, "order_id": "o1",
                         "timestamp": "2024-01-05T10:00:00", "amount": 20.0}]}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": TOKEN}])
def test_score_needs_the_bearer_token(server, headers):
  status, body, text = server.call("POST", "/score", ONE, headers=headers)
  assert status == 401 and "bearer token" in body["detail"]


def _tx(**change) -> dict:
  return {"transactions": [{**ONE["transactions"][0], **change}]}


BAD = [
    ("not JSON", b'{"transactions": [{"customer_id": ', "body", "not valid JSON"),
    ("not an object", b"[1, 2]", "body", "JSON object"),
    ("wrong type", _tx(amount="twelve"), "transactions[0].amount", "number"),
    ("infinite amount", b'{"transactions": [{"customer_id": "a", "order_id": "o", '
     b'"timestamp": "2024-01-01", "amount": Infinity}]}', "transactions[0].amount", "finite"),
    ("unknown column", _tx(colour="red"), "transactions[0].colour", "unknown column"),
    ("bad timestamp", _tx(timestamp="last tuesday"), "transactions[0].timestamp", "datetime"),
    ("no transactions", {"transactions": []}, "transactions", "at least 1"),
    ("missing column", {"transactions": [{"customer_id": "a", "order_id": "o", "amount": 1}]},
     "transactions[0].timestamp", "required"),
    ("customer without events", {**ONE, "reviews": [{"review_id": "r1", "customer_id": "nobody",
                                                     "text": "hi"}]},
     "reviews[0].customer_id", "no transactions"),
    ("rating out of range", {**ONE, "reviews": [{"review_id": "r1", "customer_id": SECRET_ID,
                                                 "rating": 9}]}, "reviews[0].rating", "5"),
    ("bad as_of", {**ONE, "as_of": "2024-13-01"}, "as_of", "date"),
    ("too many events", {"transactions": ONE["transactions"] * 401}, "transactions", "limit"),
]


@pytest.mark.parametrize("case,body,field,words", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_422_naming_the_field(server, case, body, field, words):
  raw = body if isinstance(body, bytes) else json.dumps(body).encode()
  status, payload, text = server.call("POST", "/score", raw=raw, headers=AUTH)
  assert status == 422, text
  assert "Traceback" not in text
  fields = {p["field"]: p["message"] for p in payload["detail"]}
  assert field in fields, fields
  assert words.lower() in fields[field].lower(), fields


def test_a_body_over_the_limit_gets_413(server):
  big = json.dumps({**ONE, "padding": "x" * 250_000}).encode()
  status, payload, _ = server.call("POST", "/score", raw=big, headers=AUTH)
  assert status == 413 and payload["detail"][0]["field"] == "body"


def test_customers_cleaning_removes_are_listed_not_failed(server):
  status, body, _ = server.score(_tx(amount=-20.0))
  assert status == 200 and body["scores"] == []
  assert body["not_scored"][0]["customer_id"] == SECRET_ID
  assert "cleaning removed" in body["not_scored"][0]["reason"]


def test_the_log_names_no_customer(server):
  status, body, _ = server.score(ONE)
  assert status == 200 and body["scores"][0]["customer_id"] == SECRET_ID
  log = server.log()
  assert "scored 1 customer(s) [" + body["scores"][0]["customer_key"] in log
  assert SECRET_ID not in log  # nor in the 422 lines of the tests above


# --- starting safely ----------------------------------------------------------------------------

@pytest.mark.parametrize("env,args,words", [
    ({}, [], "CVLIB_SERVE_TOKEN is not set"),
    ({"CVLIB_SERVE_TOKEN": "short"}, [], "shorter than"),
    ({}, ["--no-auth", "--host", "0.0.0.0"], "loopback"),
    ({"CVLIB_SERVE_TOKEN": TOKEN}, ["--workers", "0"], "--workers"),
])
def test_refuses_to_start_unsafely(tiny_run, monkeypatch, capsys, env, args, words):
  monkeypatch.delenv("CVLIB_SERVE_TOKEN", raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert cli.main(["serve", str(tiny_run), "--port", "1", *args]) == 2
  assert words in capsys.readouterr().err


def test_refuses_a_folder_that_is_not_a_run(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("CVLIB_SERVE_TOKEN", TOKEN)
  assert cli.main(["serve", str(tmp_path), "--port", "1"]) == 2
  assert "manifest.json" in capsys.readouterr().err


# --- batching: a batch gives each request its own rows --------------------------------------------

def _request(cleaned, customers, *, rename=None, numbered=False, as_of=None) -> Request:
  tx = cleaned.transactions[cleaned.transactions["customer_id"].isin(customers)].copy()
  rv = cleaned.reviews[cleaned.reviews["customer_id"].isin(customers)].copy()
  items = cleaned.items[cleaned.items["order_id"].isin(set(tx["order_id"]))].copy()
  if rename:  # the same ids as another request's customers and orders
    tx["customer_id"] = tx["customer_id"].map(rename)
    rv["customer_id"] = rv["customer_id"].map(rename)
    codes = {o: f"o{k}" for k, o in enumerate(tx["order_id"])}
    tx["order_id"] = tx["order_id"].map(codes)
    items["order_id"] = items["order_id"].map(codes)
  if numbered:
    rv["review_id"] = [str(k + 1) for k in range(len(rv))]
  return Request.from_frames(tx, rv, items, as_of)


def test_a_batch_gives_every_request_its_own_rows(scorer, tiny_clean):
  cleaned, _ = tiny_clean
  ids = cleaned.transactions["customer_id"].drop_duplicates().tolist()
  with_reviews = cleaned.reviews["customer_id"].dropna().drop_duplicates().tolist()
  requests = [
      _request(cleaned, ids[:2]),
      _request(cleaned, ids[2:3], rename={ids[2]: ids[0]}),  # customer and order ids collide
      _request(cleaned, with_reviews[:2], numbered=True),
      _request(cleaned, ids[5:8], as_of=dt.date(2023, 6, 1)),
      Request.from_frames(  # every order a return: nothing to score
          cleaned.transactions[cleaned.transactions["customer_id"] == ids[8]].assign(amount=-1.0)),
  ]
  results = score_together(scorer, requests)
  for request, result in zip(requests, results):
    frames = [pd.DataFrame(request.transactions), pd.DataFrame(request.reviews),
              pd.DataFrame(request.items)]
    alone = scorer.score(*frames[:2], items=frames[2], as_of=request.as_of)
    # bit for bit, but for a text-aware network's shared encoder calls (float32 rounding)
    pd.testing.assert_frame_equal(result.scores, alone, check_exact=not scorer.needs_text,
                                  rtol=1e-5)
  assert results[3].as_of == dt.date(2023, 6, 1)
  assert results[4].scores.empty and "cleaning removed" in results[4].not_scored[ids[8]]
  # through the batching thread, from many threads at once: the same rows
  batches = []
  batcher = Batcher(on_batch=lambda n, seconds: batches.append(n))
  futures = [batcher.submit(scorer, r) for r in requests * 3]
  got = [f.result(timeout=120) for f in futures]
  batcher.close()
  for result, want in zip(got, results * 3):
    pd.testing.assert_frame_equal(result.scores, want.scores, check_exact=not scorer.needs_text,
                                  rtol=1e-5)
  assert sum(batches) == len(futures) and len(batches) < len(futures)  # some were batched


@pytest.mark.parametrize("ids", [["1", "2", "3"], ["7"], ["0", "1"], ["1", "3"], ["2", "1"],
                                 ["01", "02"], ["1", "r2"], ["１", "２"], ["1234567890123456"],
                                 [], ["a"], ["9", "10", "11"]])
def test_numbered_ids_of_a_list_follow_the_tables_rule(ids):
  from cvlib.data.clean import numbered_ids
  assert numbered_ids(list(ids)) == numbered_ids(pd.Series(ids, dtype="string"))


# --- hot reload and SIGTERM ---------------------------------------------------------------------

def _publish_copy(run: Path, reports: Path, *, created: str, damage: bool = False) -> str:
  """Publishes a copy of ``run`` into reports/tiny as the runner does; returns its manifest sha."""
  tmp = reports / f".tiny.tmp-{created}"
  shutil.copytree(run, tmp)
  manifest = json.loads((tmp / "models" / "manifest.json").read_text())
  manifest["created"] = created  # a different run of the same dataset
  (tmp / "models" / "manifest.json").write_text(json.dumps(manifest, indent=2))
  if damage:
    victim = next(p for p in sorted((tmp / "models").rglob("*"))
                  if p.is_file() and p.name != "manifest.json")
    victim.write_bytes(victim.read_bytes() + b"damage")
  sha = hashlib.sha256((tmp / "models" / "manifest.json").read_bytes()).hexdigest()
  runner.publish(tmp, reports / "tiny", keep_history=1)
  return sha


def test_new_runs_load_without_a_failed_request_and_sigterm_is_graceful(tiny_run, tiny_clean,
                                                                         tmp_path):
  cleaned, _ = tiny_clean
  reports = tmp_path / "reports"
  reports.mkdir()
  shutil.copytree(tiny_run, reports / "tiny")
  server = Server(reports / "tiny", tmp_path / "serve.log")
  try:
    first = server.call("GET", "/health")[1]["run"]["manifest_sha256"]
    body = _events(cleaned, cleaned.transactions["customer_id"].drop_duplicates().tolist()[:3])
    statuses, stop = [], threading.Event()

    def flow():
      while not stop.is_set():
        statuses.append(server.score(body)[0])

    clients = [threading.Thread(target=flow) for _ in range(3)]
    [c.start() for c in clients]
    # a damaged run is refused, the old models keep serving
    _publish_copy(tiny_run, reports, created="damaged", damage=True)
    deadline = time.monotonic() + 60
    while "refused the new run" not in server.log() and time.monotonic() < deadline:
      time.sleep(0.2)
    assert "refused the new run" in server.log()
    assert server.call("GET", "/health")[1]["run"]["manifest_sha256"] == first
    # a good one takes over
    new = _publish_copy(tiny_run, reports, created="2099-01-01T00:00:00+00:00")
    while (server.call("GET", "/health")[1]["run"]["manifest_sha256"] != new
           and time.monotonic() < deadline + 60):
      time.sleep(0.2)
    time.sleep(0.5)  # a few requests on the new models
    stop.set()
    [c.join() for c in clients]
    assert server.call("GET", "/health")[1]["run"]["manifest_sha256"] == new
    assert len(statuses) > 10 and set(statuses) == {200}, statuses

    # SIGTERM while requests are in flight: they complete, then the server exits cleanly
    big = _events(cleaned, cleaned.transactions["customer_id"].drop_duplicates().tolist()[:60])
    results: list[int] = []
    sent = threading.Barrier(9)

    def slow():
      conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
      conn.request("POST", "/score", body=json.dumps(big).encode(),
                   headers={"Content-Type": "application/json", **AUTH})
      sent.wait()
      results.append(conn.getresponse().status)
      conn.close()

    threads = [threading.Thread(target=slow) for _ in range(8)]
    [t.start() for t in threads]
    sent.wait()
    time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    [t.join(timeout=120) for t in threads]
    assert results == [200] * 8
    assert server.proc.wait(timeout=60) == 0
  finally:
    server.stop()
