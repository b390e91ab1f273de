"""The ``cvlib`` command line (docs/contract.md).

Exit status: 0 success; 2 bad params or bad input data (one line per problem on stderr, no
traceback); 1 any other failure (with the path of the executed notebook that failed).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cvlib.config import ENGINES, ParamsError, load_params
from cvlib.data import privacy, synthetic
from cvlib.data.adapters import DataError, load_data
from cvlib.data.clean import clean_tables
from cvlib.data.spark import SparkError
from cvlib.runner import RunFailed, run, run_all, validate_inputs
from cvlib.stages import preprocess
from cvlib.serve.model_folder import ModelFolderError


def _split_stages(text: str) -> list[str]:
  return [s.strip() for s in text.split(",") if s.strip()]


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="cvlib", description="Customer value reports from orders "
                                   "and reviews.")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("run", help="run the report for one params file (or every one of a folder)")
  p.add_argument("params", nargs="?", help="params YAML, e.g. params/demo.yaml")
  p.add_argument("--all", dest="all_dir", metavar="FOLDER",
                 help="run every params file (*.yaml) in FOLDER, one after the other; the exit "
                      "status is non-zero if any failed")
  p.add_argument("--out", default="reports", help="reports folder (default: reports)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a params key by dotted path, e.g. finetune.training.epochs=1")
  p.add_argument("--stages", type=_split_stages, default=None,
                 help="comma-separated subset: preprocess,finetune,evaluate,segment")
  p = sub.add_parser("validate", help="check params and input data; run nothing else")
  p.add_argument("params")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p = sub.add_parser("score", help="score customers with a finished run's models")
  p.add_argument("run_dir", help="the run folder, e.g. reports/demo")
  p.add_argument("params", help="params YAML whose data block names the data to score")
  p.add_argument("--out", default=None, metavar="FILE",
                 help="output .parquet or .csv (default: RUN_DIR/scores_<as-of>.parquet)")
  p.add_argument("--as-of", dest="as_of", default=None, metavar="DATE",
                 help="score as of this day, YYYY-MM-DD (default: the day after the last order)")
  p.add_argument("--model", default=None,
                 help="value network to score with (default: the run's scoring network)")
  p.add_argument("--chunk-size", dest="chunk_size", type=int, default=50_000,
                 help="customers scored at a time (bounds memory; default 50000)")
  p.add_argument("--no-drivers", dest="drivers", action="store_false",
                 help="leave out top_drivers (the per-customer explanations): faster")
  p.add_argument("--engine", choices=ENGINES, default=None,
                 help="duckdb (one process) or spark (features and scores as Spark jobs on the "
                      "params' spark.master; writes a parquet folder); default: the params' engine")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
  p = sub.add_parser("serve", help="serve a finished run's models over HTTP (POST /score)")
  p.add_argument("run_dir", help="the run folder, e.g. reports/demo; a new run published there "
                 "is loaded without a restart")
  p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
  p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
  p.add_argument("--model", default=None,
                 help="value network to score with (default: the run's scoring network)")
  p.add_argument("--workers", type=int, default=1,
                 help="worker processes, each with its own copy of the models (default: 1)")
  p.add_argument("--no-auth", dest="no_auth", action="store_true",
                 help="serve without $CVLIB_SERVE_TOKEN (loopback addresses only)")
  p.add_argument("--reload-interval", dest="reload_interval", type=float, default=2.0,
                 metavar="SECONDS", help="how often to look for a newly published run")
  p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, default=1_000_000,
                 help="largest request body accepted (default 1000000)")
  p.add_argument("--max-events", dest="max_events", type=int, default=10_000,
                 help="most transactions + reviews + items per request (default 10000)")
  p = sub.add_parser("demo-data", help="write the synthetic dataset as canonical files")
  p.add_argument("out_dir")
  p.add_argument("--customers", type=int, default=3000)
  p.add_argument("--seed", type=int, default=0)
  return parser


def _on_sigterm(signum, frame):
  raise SystemExit(128 + signum)  # unwinds through the runner's clean-up


def main(argv: list[str] | None = None) -> int:
  args = make_parser().parse_args(argv)
  signal.signal(signal.SIGTERM, _on_sigterm)
  try:
    if args.command == "run" and args.all_dir is not None:
      if args.params is not None:
        raise ParamsError([f"give either a params file or --all FOLDER, not both "
                           f"({args.params} and --all {args.all_dir})"])
      return _run_all(args.all_dir, args.out, args.overrides, args.stages)
    if args.command == "run":
      if args.params is None:
        raise ParamsError(["cvlib run: give a params file (e.g. params/demo.yaml) or --all FOLDER"])
      index = run(args.params, out=args.out, overrides=args.overrides, stages=args.stages)
      print(f"Report: {index}")
    elif args.command == "score":
      _score(args.run_dir, args.params, out=args.out, as_of=args.as_of, model=args.model,
             chunk_size=args.chunk_size, overrides=args.overrides, drivers=args.drivers,
             engine=args.engine)
    elif args.command == "serve":
      _serve(args)
    elif args.command == "validate":
      _validate(args.params, args.overrides)
    elif args.command == "demo-data":
      if args.customers <= 0:
        raise ParamsError([f"--customers must be > 0, got {args.customers}"])
      if args.seed < 0:
        raise ParamsError([f"--seed must be >= 0, got {args.seed}"])
      paths = synthetic.write_demo_data(Path(args.out_dir), n_customers=args.customers,
                                        seed=args.seed)
      print(f"Wrote {len(paths)} files to {args.out_dir}")
  except (ParamsError, DataError, ModelFolderError) as e:
    for line in e.problems:
      print(f"error: {line}", file=sys.stderr)
    return 2
  except SparkError as e:  # no Java or pyspark, the session did not start, a job failed
    print(f"error: {e}", file=sys.stderr)
    return 1
  except RunFailed as e:
    print(f"error: {e}", file=sys.stderr)
    print(f"The executed notebook with the error: {e.notebook}", file=sys.stderr)
    print(f"and its HTML: {e.notebook.with_suffix('.html')}", file=sys.stderr)
    return 1
  return 0


def _run_all(folder: str, out: str, overrides: list[str], stages: list[str] | None) -> int:
  """``cvlib run --all``: 0 if every dataset succeeded; 2 if the failures were all bad params or
  data; 1 otherwise. Each failure gets its lines on stderr."""
  results = run_all(folder, out=out, overrides=overrides, stages=stages)
  failed = {path: e for path, e in results.items() if e is not None}
  for path, e in failed.items():
    if isinstance(e, (ParamsError, DataError)):
      for line in e.problems:
        print(f"error: {path}: {line}", file=sys.stderr)
    elif isinstance(e, RunFailed):
      print(f"error: {path}: {e}; the executed notebook with the error: {e.notebook}",
            file=sys.stderr)
    else:
      print(f"error: {path}: {type(e).__name__}: {e}", file=sys.stderr)
  ok = len(results) - len(failed)
  print(f"{ok} of {len(results)} reports written; index: {Path(out).resolve() / 'index.html'}")
  if not failed:
    return 0
  return 2 if all(isinstance(e, (ParamsError, DataError)) for e in failed.values()) else 1


def _score(run_dir: str, params_file: str, *, out: str | None, as_of: str | None,
           model: str | None, chunk_size: int, overrides: list[str],
           drivers: bool = True, engine: str | None = None) -> None:
  """``cvlib score``: every customer of the params' data, scored with the run's models."""
  import datetime as dt

  import pandas as pd

  # Loaded by the one command that scores, so that `cvlib --help` and `validate` start quickly.
  from cvlib.serve import scorer as scoring
  problems = []
  day = None
  if as_of is not None:
    try:
      day = dt.date.fromisoformat(as_of)
    except ValueError:
      problems.append(f"--as-of: {as_of!r} is not a date (YYYY-MM-DD)")
  if out is not None and Path(out).suffix.lower() not in (".parquet", ".csv"):
    problems.append(f"--out: {out!r} must end in .parquet or .csv")
  if chunk_size < 1:
    problems.append(f"--chunk-size must be > 0, got {chunk_size}")
  if problems:
    raise ParamsError(problems)
  params = load_params(params_file, list(overrides) + ([f"engine={engine}"] if engine else []))
  if params.engine == "spark" and out is not None and Path(out).suffix.lower() == ".csv":
    raise ParamsError([f"--out: {out!r}: Spark writes a parquet folder; name it *.parquet"])
  if params.engine == "spark":
    _score_spark(run_dir, params, out=out, day=day, model=model, drivers=drivers)
    return
  # checks the manifest before any data is read; batches need no per-customer warm-up
  scorer = scoring.Scorer(run_dir, model=model, warm_up=False, drivers=drivers)
  cleaned, _ = clean_tables(load_data(params))
  tx = cleaned.transactions
  if not len(tx):
    raise DataError([f"{params_file}: no orders left after cleaning: customer value needs "
                     "transactions"])
  day = day or tx["timestamp"].max().date() + dt.timedelta(days=1)
  if tx["timestamp"].min() >= pd.Timestamp(day):
    raise DataError([f"{params_file}: no order before --as-of {day} (orders from "
                     f"{tx['timestamp'].min().date()} to {tx['timestamp'].max().date()})"])
  path = Path(out) if out is not None else Path(run_dir) / f"scores_{day.isoformat()}.parquet"
  salt, _ = privacy.resolve_salt(params.report.salt)
  n = scorer.score_tables(cleaned, as_of=day, out=path, chunk_size=chunk_size,
                          raw_ids=params.report.raw_ids_in_scores, salt=salt)
  print(f"Scored {n:,} customers as of {day} with {scorer.name} ({scorer.version}; value over "
        f"the next {scorer.horizon_days} days): {path}")


def _score_spark(run_dir: str, params, *, out: str | None, day, model: str | None,
                 drivers: bool) -> None:
  """``cvlib score --engine spark``: features and scores as Spark jobs, a parquet folder out."""
  from cvlib.data import spark as spark_engine  # pyspark loads for engine spark only
  from cvlib.serve import scorer as scoring
  from cvlib.serve import spark_scoring
  spark_engine.check_available()
  # checks the manifest before any data is read
  scorer = scoring.Scorer(run_dir, model=model, warm_up=False, drivers=drivers)
  session = spark_engine.session_from_params(params.spark)
  try:
    tables = spark_engine.load_tables(session, params)
  except ValueError as e:
    raise DataError([f"{params.source}: {e}"]) from None
  except Exception as e:
    raise _spark_failure(e, params.source) from None
  if tables is None:  # files of another kind: read and cleaned by cvlib, then handed to Spark
    cleaned, _ = clean_tables(load_data(params))
    tables = {name: getattr(cleaned, name)
              for name in ("transactions", "items", "products", "reviews")}
  salt, _ = privacy.resolve_salt(params.report.salt)
  if tables["transactions"] is None:
    raise DataError([f"{params.source}: no transactions: customer value needs orders"])
  try:
    tx = spark_engine.read_table(session, tables["transactions"], "transactions")
    day = day or spark_scoring.default_as_of(tx)
    scores = spark_scoring.score_spark(session, run_dir, tx, tables["items"], tables["products"],
                                       tables["reviews"], as_of=day, salt=salt,
                                       raw_ids=params.report.raw_ids_in_scores, scorer=scorer)
  except ValueError as e:
    raise DataError([f"{params.source}: {e}"]) from None
  except Exception as e:
    raise _spark_failure(e, params.source) from None
  path = Path(out) if out is not None else Path(run_dir) / f"scores_{day.isoformat()}.parquet"
  n = spark_scoring.write_scores(scores, path)
  print(f"Scored {n:,} customers as of {day} with {scorer.name} ({scorer.version}; value over "
        f"the next {scorer.horizon_days} days) on Spark {session.sparkContext.master}: {path}")


def _spark_failure(e: BaseException, source: str) -> BaseException:
  """A Spark exception as cvlib's: a query that names a missing table or column is bad input
  (DataError, exit 2), any other Spark or JVM failure a one-line SparkError (exit 1). Anything
  else comes back as it is."""
  from cvlib.data import spark as spark_engine
  if not spark_engine.is_spark_exception(e):
    return e
  if spark_engine.is_analysis_error(e):
    return DataError([f"{source}: Spark: {spark_engine.first_line(e)}"])
  return SparkError(f"Spark failed: {spark_engine.failure_line(e)}")


def _serve(args: argparse.Namespace) -> None:
  """``cvlib serve``: serves until SIGTERM (bad settings or run folder: exit 2 before that)."""
  from cvlib.serve import service  # FastAPI and uvicorn load for this command only
  limits = service.Limits(max_body_bytes=args.max_body_bytes, max_events=args.max_events)
  service.serve(args.run_dir, host=args.host, port=args.port, workers=args.workers,
                no_auth=args.no_auth, limits=limits, reload_interval=args.reload_interval,
                model=args.model)


def _validate(params_file: str, overrides: list[str]) -> None:
  params = load_params(params_file, overrides)
  inputs = validate_inputs(params)
  cleaned, log = inputs.cleaned, inputs.log
  counts = cleaned.counts()
  print(f"{params_file}: OK: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
  for row in log.rows:
    if row["affected"]:
      print(f"  {row['table']}: {row['step']}: {row['affected']:,} rows {row['action']}")
  _, why = preprocess.choose_split(params, cleaned) if len(cleaned.transactions) else (None, None)
  if why:
    print(f"  note: {why}: the report will leave out customer value, churn, segments and "
          "recommendations")


if __name__ == "__main__":
  sys.exit(main())
