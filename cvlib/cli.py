"""The ``cvlib`` command line (CONTRACT.md).

Exit status: 0 success; 2 bad params or bad input data (one line per problem on stderr, no
traceback); 1 any other failure (with the path of the executed notebook that failed).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cvlib.config import ParamsError


def _split_stages(text: str) -> list[str]:
  return [s.strip() for s in text.split(",") if s.strip()]


def make_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="cvlib", description="Customer value reports from orders "
                                   "and reviews.")
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("run", help="run the report for one params file")
  p.add_argument("params", help="params YAML, e.g. params/demo.yaml")
  p.add_argument("--out", default="reports", help="reports folder (default: reports)")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="override a params key by dotted path, e.g. finetune.epochs=1")
  p.add_argument("--stages", type=_split_stages, default=None,
                 help="comma-separated subset: preprocess,finetune,evaluate,segment")
  p = sub.add_parser("validate", help="check params and input data; run nothing else")
  p.add_argument("params")
  p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
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
  from cvlib.adapters import DataError
  from cvlib.runner import RunFailed
  try:
    if args.command == "run":
      from cvlib.runner import run
      index = run(args.params, out=args.out, overrides=args.overrides, stages=args.stages)
      print(f"Report: {index}")
    elif args.command == "validate":
      _validate(args.params, args.overrides)
    elif args.command == "demo-data":
      if args.customers <= 0:
        raise ParamsError([f"--customers must be > 0, got {args.customers}"])
      if args.seed < 0:
        raise ParamsError([f"--seed must be >= 0, got {args.seed}"])
      from cvlib import synthetic
      paths = synthetic.write_demo_data(Path(args.out_dir), n_customers=args.customers,
                                        seed=args.seed)
      print(f"Wrote {len(paths)} files to {args.out_dir}")
  except (ParamsError, DataError) as e:
    for line in e.problems:
      print(f"error: {line}", file=sys.stderr)
    return 2
  except RunFailed as e:
    print(f"error: {e}", file=sys.stderr)
    print(f"The executed notebook with the error: {e.notebook}", file=sys.stderr)
    print(f"and its HTML: {e.notebook.with_suffix('.html')}", file=sys.stderr)
    return 1
  return 0


def _validate(params_file: str, overrides: list[str]) -> None:
  from cvlib.config import load_params
  from cvlib.runner import validate_inputs
  params = load_params(params_file, overrides)
  cleaned, log = validate_inputs(params)
  counts = cleaned.counts()
  print(f"{params_file}: OK: " + ", ".join(f"{v:,} {k}" for k, v in counts.items()))
  for row in log.rows:
    if row["affected"]:
      print(f"  {row['table']}: {row['step']}: {row['affected']:,} rows {row['action']}")


if __name__ == "__main__":
  sys.exit(main())
