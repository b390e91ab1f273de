"""Benchmark: ``cvlib serve`` over HTTP on loopback, against ``cvlib.Scorer`` in-process.

For each value network (the behaviour-only ``ziln`` and the text-aware ``ziln_text``) a fresh
``cvlib serve`` process serves the run, and 1, 8 and 32 concurrent clients (threads of this
process, keep-alive connections) each send one customer per request for ``--seconds`` seconds:
p50 / p99 latency, requests per second, errors, and the server's peak memory (VmHWM). Beside it
the floor: :meth:`cvlib.Scorer.score` on the same one-customer requests, in-process, one after
the other. The service keeps the encoder outputs of reviews it has seen (a request carries the
customer's whole history, so a repeat customer's reviews come back), so the text-aware network
is measured twice: first on customers never sent before (``http_new_customers``: every review
through the encoder), then on the repeat customers (``http``). A last phase publishes a new run into the served folder while 8 clients keep sending
(the runner's own publish step) and counts failed requests.

The requests are the demo shop's customers (synthetic, seed 3), each with their whole history
and reviews. The clients run on the same 2 cores as the server, so the figures include their
cost; the JSON records the load average around each phase. Everything is bounded: fixed phases,
a timeout per request, and the server is stopped at the end (also on error).

Usage::

  python benchmarks/serve.py --run-dir /path/to/reports/demo      # writes benchmarks/results/serve.json
  python benchmarks/serve.py --run-dir RUN --seconds 5 --out /tmp/serve.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32)
MODELS = ("ziln", "ziln_text")
# The text-aware target is checked twice: repeat customers (their reviews' encoder outputs
# cached by the service) and customers the service has never seen (every review encoded).
TARGETS = {"ziln_p50_ms_8_clients": 25, "ziln_p99_ms_8_clients": 80,
           "ziln_requests_per_s_32_clients": 150, "ziln_text_p50_ms_8_clients": 120,
           "ziln_text_new_customers_p50_ms_8_clients": 120, "failed_requests_during_reload": 0}


def _load() -> list[float]:
  return [round(x, 2) for x in os.getloadavg()]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def request_bodies(n: int, seed: int = 3) -> list[bytes]:
  """One JSON body per customer of the synthetic shop: their orders, lines and reviews."""
  import pandas as pd

  from cvlib.data import synthetic
  from cvlib.data.adapters import Tables
  from cvlib.data.clean import clean_tables
  frames = synthetic.make_demo_data(n_customers=max(n, 50), seed=seed)
  cleaned, _ = clean_tables(Tables(customers=pd.DataFrame(), transactions=frames["transactions"],
                                   items=frames["items"], products=frames["products"],
                                   reviews=frames["reviews"]))
  tx, rv, items = cleaned.transactions, cleaned.reviews, cleaned.items
  out = []
  for cid in tx["customer_id"].drop_duplicates().iloc[:n]:
    t = tx[tx["customer_id"] == cid]
    r = rv[rv["customer_id"] == cid]
    i = items[items["order_id"].isin(set(t["order_id"]))]
    body = {"transactions": [{"customer_id": str(cid), "order_id": str(o),
                              "timestamp": ts.isoformat(), "amount": float(a)}
                             for o, ts, a in zip(t["order_id"], t["timestamp"], t["amount"])],
            "reviews": [{"review_id": str(k), "customer_id": str(cid),
                         "timestamp": None if pd.isna(ts) else ts.isoformat(),
                         "rating": None if pd.isna(x) else float(x),
                         "text": None if pd.isna(txt) else str(txt)}
                        for k, ts, x, txt in zip(r["review_id"], r["timestamp"], r["rating"],
                                                 r["text"])],
            "items": [{"order_id": str(o), "product_id": str(p), "quantity": float(q),
                       "unit_price": float(u)}
                      for o, p, q, u in zip(i["order_id"], i["product_id"], i["quantity"],
                                            i["unit_price"])]}
    out.append(json.dumps(body).encode())
  return out


class Service:
  """``cvlib serve`` in a child process."""

  def __init__(self, run_dir: Path, model: str, token: str, log: Path, workers: int = 1):
    self.port = _free_port()
    self.log = open(log, "ab")
    env = {**os.environ, "CVLIB_SERVE_TOKEN": token}
    self.proc = subprocess.Popen([sys.executable, "-m", "cvlib.cli", "serve", str(run_dir),
                                  "--port", str(self.port), "--model", model,
                                  "--reload-interval", "0.5", "--workers", str(workers)],
                                 stdout=self.log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
      if self.proc.poll() is not None:
        raise RuntimeError(f"cvlib serve exited with {self.proc.returncode}; see {log}")
      try:
        if self.health() is not None:
          return
      except OSError:
        pass
      time.sleep(0.5)
    self.stop()
    raise RuntimeError("cvlib serve did not start within 300 s")

  def health(self) -> dict | None:
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
    try:
      conn.request("GET", "/health")
      resp = conn.getresponse()
      body = resp.read()
      return json.loads(body) if resp.status == 200 else None
    finally:
      conn.close()

  def peak_rss_mb(self) -> float:
    with open(f"/proc/{self.proc.pid}/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return round(int(line.split()[1]) / 1024, 1)
    return float("nan")

  def stop(self) -> None:
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(timeout=60)
      except subprocess.TimeoutExpired:
        self.proc.kill()
    self.log.close()


def drive(port: int, token: str, bodies: list[bytes], clients: int, seconds: float,
          repeat: bool = True) -> dict:
  """``clients`` threads, each on one keep-alive connection, for ``seconds``; with
  ``repeat=False`` each body is sent once at most (the phase ends early when they run out)."""
  headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
  stop = threading.Event()
  latencies: list[list[float]] = [[] for _ in range(clients)]
  errors = [0] * clients

  def client(k: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    j = k
    while not stop.is_set() and (repeat or j < len(bodies)):
      body = bodies[j % len(bodies)]
      j += clients
      t0 = time.perf_counter()
      try:
        conn.request("POST", "/score", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        ok = resp.status == 200
      except (OSError, http.client.HTTPException):
        ok = False
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
      if ok:
        latencies[k].append(time.perf_counter() - t0)
      else:
        errors[k] += 1
    conn.close()

  threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
  load_before = _load()
  t0 = time.perf_counter()
  for t in threads:
    t.start()
  deadline = t0 + seconds
  while time.perf_counter() < deadline and any(t.is_alive() for t in threads):
    time.sleep(0.05)
  stop.set()
  for t in threads:
    t.join(timeout=60)
  elapsed = time.perf_counter() - t0
  lat = np.array([x for per in latencies for x in per])
  sent = int(len(lat)) + int(sum(errors))
  return {"clients": clients, "seconds": round(elapsed, 1), "requests": int(len(lat)),
          "distinct_bodies": min(sent, len(bodies)),
          "errors": int(sum(errors)), "requests_per_s": round(len(lat) / elapsed, 1),
          "p50_ms": round(1000 * float(np.percentile(lat, 50)), 1) if len(lat) else None,
          "p99_ms": round(1000 * float(np.percentile(lat, 99)), 1) if len(lat) else None,
          "load_before": load_before, "load_after": _load()}


def in_process_floor(run_dir: Path, model: str, bodies: list[bytes], n: int) -> dict:
  """Scorer.score on the same one-customer requests, one after the other, in this process."""
  import pandas as pd

  from cvlib.serve.scorer import Scorer
  scorer = Scorer(run_dir, model=model)
  frames = []
  for body in bodies[:n]:
    b = json.loads(body)
    items = pd.DataFrame(b["items"], columns=["order_id", "product_id", "quantity", "unit_price"])
    frames.append((pd.DataFrame(b["transactions"]), pd.DataFrame(b["reviews"]),
                   items.assign(amount=items["quantity"] * items["unit_price"])))
  for tx, rv, items in frames[:5]:
    scorer.score(tx, rv if len(rv) else None, items=items if len(items) else None)
  times = []
  for tx, rv, items in frames:
    t0 = time.perf_counter()
    scorer.score(tx, rv if len(rv) else None, items=items if len(items) else None)
    times.append(time.perf_counter() - t0)
  return {"calls": len(times), "p50_ms": round(1000 * float(np.median(times)), 1),
          "p99_ms": round(1000 * float(np.percentile(times, 99)), 1)}


def reload_phase(run_dir: Path, model: str, token: str, bodies: list[bytes], seconds: float,
                 log: Path) -> dict:
  """8 clients send requests while a new run is published into the served folder."""
  from cvlib import runner
  with tempfile.TemporaryDirectory() as tmp:
    reports = Path(tmp)
    served = reports / run_dir.name
    shutil.copytree(run_dir, served)
    service = Service(served, model, token, log)
    try:
      before = service.health()["run"]["manifest_sha256"]
      result: dict = {}
      driver = threading.Thread(target=lambda: result.update(
          drive(service.port, token, bodies, 8, seconds)))
      driver.start()
      time.sleep(seconds / 4)
      staged = reports / f".{run_dir.name}.tmp-bench"
      shutil.copytree(run_dir, staged)
      manifest = json.loads((staged / "models" / "manifest.json").read_text())
      manifest["created"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
      (staged / "models" / "manifest.json").write_text(json.dumps(manifest, indent=2))
      published = time.perf_counter()
      runner.publish(staged, served, keep_history=1)
      switched = None
      while switched is None and time.perf_counter() - published < seconds:
        if service.health()["run"]["manifest_sha256"] != before:
          switched = round(time.perf_counter() - published, 2)
        time.sleep(0.1)
      driver.join()
      return {**result, "switched_after_s": switched}
    finally:
      service.stop()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--run-dir", type=Path, required=True,
                      help="a finished run with both networks (e.g. reports/demo)")
  parser.add_argument("--seconds", type=float, default=30.0, help="per phase (default 30)")
  parser.add_argument("--customers", type=int, default=400,
                      help="distinct request bodies sent again and again")
  parser.add_argument("--cold-customers", type=int, default=3000,
                      help="more customers, each sent once: the text-aware network's phases "
                           "with reviews the service has not seen")
  parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve.json")
  parser.add_argument("--workers", type=int, default=1,
                      help="cvlib serve --workers (default 1; the peak memory is then the "
                           "supervisor's only)")
  args = parser.parse_args()
  token = secrets.token_urlsafe(24)
  bodies = request_bodies(args.customers)
  log = Path(tempfile.gettempdir()) / "cvlib-serve-bench.log"
  log.write_text("")
  results: dict = {"benchmark": "serve", "when": dt.datetime.now(dt.timezone.utc).isoformat(
      timespec="seconds"), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version(),
                                       "note": "clients and server share the same cores"},
                   "run": {"dataset": json.loads((args.run_dir / "run.json").read_text())["dataset"],
                           "request": "one customer: whole history, order lines and reviews"},
                   "seconds_per_phase": args.seconds, "workers": args.workers, "models": {}}
  cold = request_bodies(args.customers + args.cold_customers)[args.customers:]
  for model in MODELS:
    service = Service(args.run_dir, model, token, log, workers=args.workers)
    try:
      entry = {}
      if model == "ziln_text":
        # customers never sent before: every review goes through the encoder (no phase reuses
        # another's customers), then the repeat customers whose reviews the service has seen
        share = len(cold) // len(CLIENTS)
        entry["http_new_customers"] = [
            drive(service.port, token, cold[k * share:(k + 1) * share], c, args.seconds,
                  repeat=False) for k, c in enumerate(CLIENTS)]
        drive(service.port, token, bodies, 8, 600, repeat=False)  # each repeat body seen once
      entry["http"] = [drive(service.port, token, bodies, c, args.seconds) for c in CLIENTS]
      entry["server_peak_rss_mb"] = service.peak_rss_mb()
      entry["model_version"] = service.health()["run"]["model_version"]
    finally:
      service.stop()
    entry["in_process"] = in_process_floor(args.run_dir, model, bodies, 200)
    results["models"][model] = entry
    print(json.dumps({model: entry}, indent=1), flush=True)
  results["reload"] = reload_phase(args.run_dir, "ziln", token, bodies, max(args.seconds, 10), log)
  by = {m: {r["clients"]: r for r in results["models"][m]["http"]} for m in MODELS}
  measured = {"ziln_p50_ms_8_clients": by["ziln"][8]["p50_ms"],
              "ziln_p99_ms_8_clients": by["ziln"][8]["p99_ms"],
              "ziln_requests_per_s_32_clients": by["ziln"][32]["requests_per_s"],
              "ziln_text_p50_ms_8_clients": by["ziln_text"][8]["p50_ms"],
              "ziln_text_new_customers_p50_ms_8_clients": {
                  r["clients"]: r for r in results["models"]["ziln_text"]["http_new_customers"]
              }[8]["p50_ms"],
              "failed_requests_during_reload": results["reload"]["errors"]}
  results["targets"] = {k: {"target": TARGETS[k], "measured": v,
                            "met": (v >= TARGETS[k]) if "per_s" in k else (v <= TARGETS[k])}
                        for k, v in measured.items()}
  results["errors_32_clients"] = {m: by[m][32]["errors"] for m in MODELS}
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(results, indent=2) + "\n")
  print(json.dumps(results["targets"], indent=1))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
