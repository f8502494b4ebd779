"""Runs a sweep on many machines that share a git remote and a DVC remote (README: Scaling out).

    python -m tools.fanout prepare GRID                       # once: the shared stages, run and pushed
    python -m tools.fanout work GRID --slice K --of N [-j J]  # on worker K of N, at the same time as the others
    python -m tools.fanout collect                            # after them: every pushed run into reports/

GRID is a text file with one run per line, each a list of `key=value` params overrides: what
`python -m tools.sweep select --dry-run` prints. Every job starts in its own clone of the same commit,
with a default DVC remote that all of them share (`dvc remote add --local -d ...`).

- prepare reproduces the committed pipeline and then, once each, the shared stages (train@teacher,
  train@student) for every setting of their params that the grid holds, and pushes their outputs and
  run cache. The teacher is trained here and nowhere else.
- work queues its slice of the grid (every N-th run from the K-th) with `dvc exp run --queue --pull`,
  so each run restores the shared stages from the remote's run cache instead of rerunning them; runs
  `dvc queue start -j J`, and pushes every run that succeeded with `dvc exp push --run-cache`. Runs are
  named by a hash of their overrides, so a worker that is started again skips what it already pushed.
- collect pulls every experiment from the git remote, adds them to reports/runs.csv and rebuilds
  reports/; committing that is the caller's step.
"""

import argparse
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import yaml

# The stages every run of a sweep shares with others: prepare runs each distinct setting once.
SHARED_STAGES = ("train@teacher", "train@student")
# Its marker never changes (dvc.yaml), so the whole-file params it lists do not reach the stages after it.
PARAMS_CHECK = "check_params"


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_grid(path: Path) -> list[list[str]]:
    """The runs of a grid file: one per line, `key=value` overrides separated by spaces; # starts a comment."""
    if not path.is_file():
        fail(f"{path}: no such grid file (make one with `python -m tools.sweep select --dry-run > {path}`)")
    runs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        overrides = line.split("#", 1)[0].split()
        for override in overrides:
            if not re.fullmatch(r"[A-Za-z_][\w.]*=\S+", override):
                fail(f"{path}:{number}: {override!r} is not a key=value params override")
        if overrides:
            runs.append(overrides)
    if not runs:
        fail(f"{path}: no runs in the grid")
    return runs


def run_name(overrides: list[str]) -> str:
    """A name that is the same wherever the run is queued, and a valid git ref."""
    return "run-" + hashlib.sha256(" ".join(overrides).encode()).hexdigest()[:12]


def dvc(*args: str, capture: bool = False) -> str:
    """Runs `dvc` (its output streamed into the job's log unless captured); a failure ends the job."""
    result = subprocess.run(["dvc", *args], text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        fail(f"`dvc {' '.join(args)}` failed with exit status {result.returncode}")
    return result.stdout or ""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, text=True, stdout=subprocess.PIPE).stdout


def stage_params(lock: dict, stage: str) -> set[str]:
    """The params keys that `stage` and the stages upstream of it read, as dvc.lock records them."""
    stages = lock["stages"]
    producers = {out["path"]: name for name, entry in stages.items() for out in entry.get("outs", [])}
    keys, pending, seen = set(), [stage], set()
    while pending:
        name = pending.pop()
        if name in seen or name == PARAMS_CHECK:
            continue
        seen.add(name)
        keys |= set(stages[name].get("params", {}).get("params.yaml", {}))
        pending += [producers[dep["path"]] for dep in stages[name].get("deps", []) if dep["path"] in producers]
    return keys


def reads(keys: set[str], override: str) -> bool:
    """Whether an override sets a param among `keys` (a key may be a whole section, like `teacher`)."""
    name = override.split("=", 1)[0]
    return any(name == key or name.startswith(key + ".") for key in keys)


def shared_runs(grid: list[list[str]], lock: dict) -> list[tuple[list[str], list[str]]]:
    """(stages, overrides) of each run prepare makes, in grid order: for each line of the grid that
    holds a setting of a shared stage's params not seen on an earlier line, one run of those stages
    with those settings. One run serves both stages where a line brings new settings for both: a
    `dvc exp run` costs a few seconds of DVC's own besides the training. (DVC skips a stage whose
    setting is the committed one.)"""
    keys = {stage: stage_params(lock, stage) for stage in SHARED_STAGES}
    seen = {stage: [] for stage in SHARED_STAGES}
    runs = []
    for overrides in grid:
        stages, settings = [], []
        for stage in SHARED_STAGES:
            setting = [override for override in overrides if reads(keys[stage], override)]
            if setting and setting not in seen[stage]:
                seen[stage].append(setting)
                stages.append(stage)
                settings += [override for override in setting if override not in settings]
        if stages:
            runs.append((stages, settings))
    return runs


def push_run_cache_outputs() -> None:
    """Pushes every output that the run cache's entries name, which `--run-cache` leaves behind: it pushes
    the entries only, and `dvc push` only the workspace's outputs. Without the rest (the other settings'
    models, and the `cache: false` training metrics, which DVC keeps in the local cache for the run
    cache's sake), a worker's `--pull` would find an entry, lack a file and run the stage again."""
    from dvc.repo import Repo  # DVC's Python API, for the run cache's entries: only here

    with Repo() as repo:
        runs = Path(repo.stage_cache.cache_dir)
        entries = [(key.name, value.name) for key in runs.glob("*/*") for value in key.iterdir()]
        used = set().union(*repo.stage_cache.get_used_objs(entries).values())
        result = repo.cloud.push(used)
    if result.failed:
        fail(f"{len(result.failed)} outputs of the run cache could not be pushed to the DVC remote")
    print(f"{len(result.transferred)} outputs of the run cache pushed", file=sys.stderr)


def prepare(grid: list[list[str]]) -> None:
    if git("status", "--porcelain", "--untracked-files=no"):
        fail("the git workspace has changes; prepare runs from a clean checkout of the commit the workers use")
    dvc("repro", "--pull")
    if changed := git("status", "--porcelain", "--untracked-files=no"):
        print("note: `dvc repro` changed what the commit holds; its results did not reproduce here, or were not "
              "committed after a change (the workers restore the shared stages from the run cache either way):\n"
              + changed, file=sys.stderr)
    else:
        print("prepare: the commit's dvc.lock and metrics reproduced as committed", file=sys.stderr, flush=True)
    lock = yaml.safe_load(Path("dvc.lock").read_text())
    for stages, settings in shared_runs(grid, lock):
        # Each run from the commit's params, not on top of the one before (the workspace was clean).
        git("reset", "--quiet", "--hard", "HEAD")
        print(f"prepare: {' and '.join(stages)} with {' '.join(settings)}", file=sys.stderr, flush=True)
        dvc("exp", "run", "--pull", *sets(settings), *stages)
    git("reset", "--quiet", "--hard", "HEAD")
    dvc("checkout", "--force")
    # Once, at the end: the run cache names every setting's outputs, not only the workspace's.
    dvc("push", "--run-cache")
    push_run_cache_outputs()


def sets(overrides: list[str]) -> list[str]:
    return [argument for override in overrides for argument in ("-S", override)]


def queue_states(status: str) -> dict[str, str]:
    """{experiment name: state} from `dvc queue status`."""
    return dict(re.findall(r"^\S+\s+(\S+)\s+.*?\b(Queued|Running|Success|Failed)\b", status, re.MULTILINE))


def run_queue(jobs: int) -> dict[str, str]:
    """Starts the queued experiments on `jobs` workers and waits for them: {name: Success or Failed}."""
    dvc("queue", "start", "--jobs", str(jobs), capture=True)
    while True:
        states = queue_states(dvc("queue", "status", capture=True))
        if not {"Queued", "Running"} & set(states.values()):
            return states
        time.sleep(2)


def failure_reason(name: str) -> str:
    """The run's own one-line error, or the last line it logged."""
    lines = [line for line in dvc("queue", "logs", name, capture=True).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors or lines or ["no log"])[-1]


def work(grid: list[list[str]], index: int, count: int, jobs: int, git_remote: str) -> None:
    if not 0 <= index < count:
        fail(f"--slice {index} is out of range for --of {count}: 0 to {count - 1} allowed")
    if jobs < 1:
        fail(f"--jobs {jobs}: at least 1 experiment at a time")
    mine = {run_name(overrides): overrides for overrides in grid[index::count]}
    pushed = set(dvc("exp", "list", git_remote, "--name-only", capture=True).split())
    todo = {name: overrides for name, overrides in mine.items() if name not in pushed}
    print(f"worker {index} of {count}: {len(mine)} runs, {len(mine) - len(todo)} already pushed", file=sys.stderr)
    for name, overrides in todo.items():
        dvc("exp", "run", "--queue", "--pull", "--name", name, *sets(overrides), capture=True)
    states = run_queue(jobs) if todo else {}
    succeeded = [name for name in todo if states.get(name) == "Success"]
    if succeeded:
        dvc("exp", "push", git_remote, *succeeded, "--run-cache")
        push_run_cache_outputs()
    failed = [name for name in todo if name not in succeeded]
    for name in failed:
        print(f"error: run {name} ({' '.join(todo[name])}) failed: {failure_reason(name)}", file=sys.stderr)
    print(f"worker {index} of {count}: {len(succeeded)} runs pushed, {len(failed)} failed", file=sys.stderr)
    if failed:
        sys.exit(1)


def collect(git_remote: str) -> None:
    dvc("exp", "pull", git_remote, "--all-commits", "--no-cache")
    for tool in ("tools.collect", "tools.report"):
        if returncode := subprocess.run([sys.executable, "-m", tool]).returncode:
            sys.exit(returncode)  # the tool has said why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-remote", default="origin", help="where workers push experiments (default origin)")
    jobs = parser.add_subparsers(dest="job", required=True)
    jobs.add_parser("prepare", help="the shared stages, once").add_argument("grid", type=Path)
    worker = jobs.add_parser("work", help="one slice of the grid")
    worker.add_argument("grid", type=Path)
    worker.add_argument("--slice", type=int, required=True, help="this worker's number, from 0")
    worker.add_argument("--of", type=int, required=True, help="how many workers share the grid")
    worker.add_argument("-j", "--jobs", type=int, default=1, help="experiments at a time on this worker")
    jobs.add_parser("collect", help="every pushed run into reports/")
    args = parser.parse_args()
    if args.job == "prepare":
        prepare(read_grid(args.grid))
    elif args.job == "work":
        work(read_grid(args.grid), args.slice, args.of, args.jobs, args.git_remote)
    else:
        collect(args.git_remote)


if __name__ == "__main__":
    main()
