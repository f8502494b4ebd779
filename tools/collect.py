"""Adds every finished experiment that DVC knows of to the committed records, reports/runs.csv.

    python -m tools.collect                    # from `dvc exp show --json --all-commits`
    python -m tools.collect --exp-show FILE    # from a saved copy of that output

Rows already recorded stay as they are, so collecting twice changes nothing.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tools import records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp-show", type=Path, help="a saved `dvc exp show --json` output")
    parser.add_argument("--runs", type=Path, default=records.RUNS_FILE)
    args = parser.parse_args()
    if args.exp_show:
        exp_show = json.loads(args.exp_show.read_text())
    else:
        command = ["dvc", "exp", "show", "--json", "--all-commits"]
        exp_show = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    existing = records.load(args.runs)
    merged = records.merge(existing, records.from_exp_show(exp_show))
    records.save(merged, args.runs)
    print(f"{args.runs}: {len(merged)} runs ({len(merged) - len(existing)} new)", file=sys.stderr)


if __name__ == "__main__":
    main()
