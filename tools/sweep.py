"""Queues the data-efficiency sweep with `dvc exp run --queue`; `dvc queue start -j 2` runs it.

    python -m tools.sweep select [--dry-run]    # every T x alpha cell, 2 seeds, each size, both teachers
    python -m tools.sweep verdict [--dry-run]   # more seeds for each size's chosen cell (after `make collect`)
    python -m tools.sweep fixed [--dry-run]     # recipes fixed in advance (views, transfer set): verdict seeds only

--dry-run prints the runs instead, one line of params overrides each: the grid file that
tools/fanout.py spreads over many machines.

The selection phase runs the grid at each transfer-set size for each teacher. The verdict phase reads
reports/runs.csv, takes the cell chosen on validation at each size, and queues the seeds it still
lacks: 5 in all, 10 on the full training set, seeds 2 onwards, never the selection seeds. Both
phases skip runs already recorded with the code being queued.

The fixed phase runs recipes fixed before any of them ran (FIXED_RUNS: T = 1, alpha = 0, as the
calibration runs had them), so no seed chooses anything; they run on the verdict seeds all the same.
"""

import argparse
import itertools
import subprocess
import sys

import pandas as pd

from common import params
from tools import records

# The MLP teacher is the reference code's network, at its batch size and epoch count; the CNN teacher is
# params.yaml's default.
TEACHERS = {
    "cnn": ("teacher.arch=cnn",),
    "mlp": ("teacher.arch=mlp", "teacher.batch_size=256", "teacher.epochs=50"),
}
FRACTIONS = (0.01, 0.03, 0.1, 0.3, 1.0)
TEMPERATURES = (1, 2, 4, 8)
ALPHAS = (0, 0.5)
SELECTION_SEEDS = (0, 1)


def verdict_seeds(fraction: float) -> range:
    """5 seeds (10 at full data) after the selection seeds: the seeds whose validation scores chose
    T and alpha never count in the verdict, where they would favour the distilled side."""
    first = max(SELECTION_SEEDS) + 1
    return range(first, first + (10 if fraction == 1 else 5))


# Recipes fixed in advance, so that no seed's scores choose anything, in the order they answer the
# issue's questions: the targets' cells first (views and every image as transfer set at 1%, views at
# full data for each student), then patience at 1% and 10%, then the curve's other cells. The 30-epoch
# set at 10% names student.min_steps because the 10,000-step set there changes it (see `holds`).
VIEWS_SETTINGS = ("distill.views=consistent", "distill.temperature=1", "distill.alpha=0")
VIEWS = ("teacher.arch=cnn", *VIEWS_SETTINGS)
TRANSFER_ALL_SETTINGS = ("distill.views=fixed", "distill.transfer=all", "distill.temperature=1", "distill.alpha=0")
TRANSFER_ALL = ("teacher.arch=cnn", *TRANSFER_ALL_SETTINGS)
FIXED_RUNS = (
    (("student.train_fraction=0.01", "student.arch=mlp", "student.min_steps=10000", *VIEWS), range(2, 7)),
    (("student.train_fraction=1.0", "student.arch=mlp", *VIEWS), range(2, 7)),
    (("student.train_fraction=1.0", "student.arch=cnn", *VIEWS), range(2, 7)),
    (("student.train_fraction=0.01", "student.arch=mlp", "student.min_steps=1000", *VIEWS), range(2, 3)),
    (("student.train_fraction=0.1", "student.arch=mlp", "student.epochs=30", "student.min_steps=1000", *VIEWS),
     range(2, 3)),
    (("student.train_fraction=0.1", "student.arch=mlp", "student.epochs=300", *VIEWS), range(2, 7)),
    (("student.train_fraction=0.01", "student.arch=mlp", "student.min_steps=1000", *TRANSFER_ALL), range(2, 7)),
    *(((f"student.train_fraction={fraction:g}", "student.arch=mlp", "student.min_steps=1000", *TEACHERS[teacher],
        *TRANSFER_ALL_SETTINGS), range(2, 5))
      for teacher in TEACHERS for fraction in FRACTIONS if (teacher, fraction) != ("cnn", 0.01)),
    *(((f"student.train_fraction={fraction:g}", "student.arch=mlp", f"student.min_steps={steps}", *TEACHERS[teacher],
        *VIEWS_SETTINGS), range(2, 7))
      for teacher, fraction, steps in (("cnn", 0.03, 10000), ("cnn", 0.3, 10000), ("mlp", 0.01, 10000),
                                       ("mlp", 0.03, 10000), ("mlp", 0.3, 10000), ("mlp", 1.0, 1000),
                                       ("cnn", 0.1, 10000), ("mlp", 0.1, 10000))),
    *(((f"student.train_fraction={fraction:g}", "student.arch=cnn", "student.min_steps=10000", *VIEWS), seeds)
      for fraction, seeds in ((0.01, range(2, 5)), (0.03, range(2, 3)), (0.1, range(2, 3)), (0.3, range(2, 3)))),
)


# What a param's absence from a record means: the behaviour before the param existed.
DEFAULTS_BEFORE = {"distill.views": "fixed", "distill.transfer": "labelled"}


def holds(runs, setting: str):
    """Which records have the param `key=value` of a -S override. Each set in FIXED_RUNS names
    every param it changes or that another set changes, so that no set matches another's runs; a
    record from before a param existed has its default (distill.views: fixed)."""
    key, value = setting.split("=", 1)
    column = f"params.{key}"
    parsed = params.parse_yaml(value)
    if column not in runs.columns:
        return pd.Series(parsed == DEFAULTS_BEFORE.get(key), index=runs.index)
    return records.equals(runs[column], parsed) | (runs[column].isna() & (parsed == DEFAULTS_BEFORE.get(key)))


def fixed_runs(runs) -> list[list[str]]:
    """The -S sets of FIXED_RUNS not yet recorded with this code, one per seed."""
    wanted = []
    for settings, seeds in FIXED_RUNS:
        for seed in seeds:
            run = [*settings, f"student.seed={seed}"]
            match = pd.Series(True, index=runs.index)
            for setting in run:
                match &= holds(runs, setting)
            if not match.any():
                wanted.append(run)
    return wanted


def recorded(runs, teacher: str, fraction: float, seed: int, temperature: float, alpha: float) -> bool:
    if runs.empty:
        return False
    match = (
        (runs[records.ARCH] == teacher) & (runs[records.FRACTION] == fraction) & (runs[records.SEED] == seed)
        & (runs[records.TEMPERATURE] == temperature) & (runs[records.ALPHA] == alpha)
    )
    return bool(match.any())


def selection_runs(runs) -> list[tuple]:
    return [
        (teacher, fraction, seed, temperature, alpha)
        for teacher, fraction, seed, temperature, alpha
        in itertools.product(TEACHERS, FRACTIONS, SELECTION_SEEDS, TEMPERATURES, ALPHAS)
        if not recorded(runs, teacher, fraction, seed, temperature, alpha)
    ]


def chosen_cell(runs, teacher: str, fraction: float) -> tuple[float, float] | None:
    """The (T, alpha) chosen on validation for this teacher and size, once every cell of the grid has
    run on every selection seed; None before that, since a cell still missing might be the best."""
    if runs.empty:
        return None
    at_size = runs[(runs[records.ARCH] == teacher) & (runs[records.FRACTION] == fraction)]
    if len(records.cell_means(at_size, SELECTION_SEEDS)) < len(TEMPERATURES) * len(ALPHAS):
        return None
    return records.choose(at_size, SELECTION_SEEDS)


def verdict_runs(runs) -> list[tuple]:
    wanted = []
    for teacher, fraction in itertools.product(TEACHERS, FRACTIONS):
        chosen = chosen_cell(runs, teacher, fraction)
        if chosen is None:
            print(f"note: {teacher} teacher at {fraction:g}: selection grid not recorded yet", file=sys.stderr)
            continue
        wanted += [(teacher, fraction, seed, *chosen) for seed in verdict_seeds(fraction)
                   if not recorded(runs, teacher, fraction, seed, *chosen)]
    return wanted


def overrides(teacher: str, fraction: float, seed, temperature: float, alpha: float) -> list[str]:
    """The params overrides of one run; `seed` may be a Hydra choice list, "2,3,4"."""
    return [*TEACHERS[teacher], f"student.train_fraction={fraction}", f"student.seed={seed}",
            f"distill.temperature={temperature:g}", f"distill.alpha={alpha:g}"]


def batches(wanted: list[tuple]) -> list[list[str]]:
    """The -S sets that queue `wanted`, one `dvc exp run --queue` per teacher, size and cell, with the seeds
    as one Hydra choice list (`student.seed=2,3,4`), which queues one experiment per seed."""
    seeds = {}
    for teacher, fraction, seed, temperature, alpha in wanted:
        seeds.setdefault((teacher, fraction, temperature, alpha), []).append(seed)
    return [overrides(teacher, fraction, ",".join(map(str, cell_seeds)), temperature, alpha)
            for (teacher, fraction, temperature, alpha), cell_seeds in seeds.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=("select", "verdict", "fixed"))
    parser.add_argument("--dry-run", action="store_true", help="print the runs, one per line, instead of queueing them")
    args = parser.parse_args()

    # The fixed recipes differ from params.yaml's on purpose: every record is a candidate.
    runs = records.load() if args.phase == "fixed" else records.load_comparable()
    # Only runs of the code being queued count as done: a cell never mixes code versions.
    current = records.code_version("HEAD")
    runs = runs[runs[records.CODE] == current] if records.CODE in runs.columns else runs.iloc[0:0]
    if args.phase == "fixed":
        lines = fixed_runs(runs)
        queued = lines
    else:
        wanted = selection_runs(runs) if args.phase == "select" else verdict_runs(runs)
        lines, queued = [overrides(*run) for run in wanted], batches(wanted)
    if args.dry_run:
        for run in lines:
            print(" ".join(run))
        print(f"{len(lines)} runs to queue, or to spread over machines with tools.fanout", file=sys.stderr)
        return
    for sets in queued:
        command = ["dvc", "exp", "run", "--queue", *itertools.chain.from_iterable(("-S", item) for item in sets)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"{len(lines)} experiments queued; run them with `dvc queue start -j 2`", file=sys.stderr)


if __name__ == "__main__":
    main()
