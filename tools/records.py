"""The sweep's per-run records, reports/runs.csv: one row per finished experiment.

Experiment refs do not travel with a clone, so this committed file is what `make report` reads.
Each row holds every param of the run (flattened: `params.student.seed`), the validation metrics the
selection uses and the test metrics the verdict uses. Library code: the entry scripts are
tools/collect.py, tools/sweep.py and tools/report.py.
"""

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pandas as pd

from common import outputs, params

RUNS_FILE = Path("reports/runs.csv")
MODELS = ("teacher", "student", "distilled")
# What a sweep varies; every other param is the recipe, which must match within a comparison.
ARCH, FRACTION, SEED, TEMPERATURE, ALPHA = VARIED = (
    "params.teacher.arch", "params.student.train_fraction", "params.student.seed",
    "params.distill.temperature", "params.distill.alpha",
)
# The code version of a run: a digest of the pipeline's code at the commit it ran from (CODE_PATHS).
CODE = "code"
CODE_PATHS = ("dvc.yaml", "common", "stages")
UNKNOWN_CODE = "unknown"
# When the run finished (ISO 8601, from `dvc exp show`); empty for records collected before it was kept.
FINISHED = "finished"
# The validation metric that selects T and alpha, and its tie-break (lower is better).
SELECT_ON, TIE_BREAK = "val.distilled.accuracy", "val.distilled.hard_loss"
STUDENTS_JSON = {"student": "val_loss", "distilled": "val_hard_loss"}  # cross-entropy on labels, both


def flatten(tree: dict, prefix: str) -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            flat |= flatten(value, name)
        else:
            # Lists and nulls as JSON text, so a CSV cell holds them and pandas compares them as plain
            # values; an empty cell then means only that the run predates the param.
            flat[name] = json.dumps(value) if isinstance(value, list) or value is None else value
    return flat


def record(name: str, commit: str, data: dict) -> dict | None:
    """One row from an experiment's `dvc exp show --json` data; None for a failed, unfinished or older run."""
    try:
        raw = data["params"]["params.yaml"]["data"]
        metrics = {path: entry["data"] for path, entry in data["metrics"].items()}
        training = {model: metrics[f"metrics/training/{model}.json"] for model in STUDENTS_JSON}
        test = metrics["metrics/evaluate.json"]
    except (KeyError, TypeError):
        return None
    row = {"experiment": name, "commit": commit, FINISHED: data.get("timestamp"), **flatten(raw, "params")}
    # A run from before the sweep's params existed is not comparable. Params added later (a new
    # stage's section) may be missing: a comparison checks only the params the records hold.
    if not set(VARIED) <= set(row):
        return None
    for model, loss_key in STUDENTS_JSON.items():
        loss_name = "hard_loss" if model == "distilled" else "loss"
        row |= {
            f"val.{model}.accuracy": training[model]["val_accuracy"],
            f"val.{model}.{loss_name}": training[model][loss_key],
            f"val.{model}.best_epoch": training[model]["best_epoch"],
        }
    for model in MODELS:
        row |= {f"test.{model}.{metric}": value for metric, value in test[model].items()}
    return row


def from_exp_show(exp_show: list) -> list[dict]:
    """Every finished experiment in `dvc exp show --json` output. A commit's own metrics are not a
    record: they are the default pipeline's run (student seed 42), which would enter the curve's
    baseline as one more seed of a sweep that never queued it."""
    rows = []
    for commit in exp_show:
        if commit["rev"] == "workspace":
            continue  # a copy of HEAD or of the last experiment applied
        for experiment in commit.get("experiments") or []:
            if (experiment.get("executor") or {}).get("state") in ("failed", "queued", "running"):
                continue  # a failed run shows its params beside the metrics of the commit it started from
            for revision in experiment.get("revs") or []:
                name = revision.get("name") or experiment.get("name") or revision["rev"][:7]
                rows.append(record(name, commit["rev"], revision.get("data") or {}))
    return [row for row in rows if row]


def param_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column.startswith("params.")]


def code_version(commit: str, repository: Path = Path(".")) -> str:
    """What made a run's results, by content: the first 10 hex digits of SHA-256 over the git blob ids
    of dvc.yaml and every Python file under common/ and stages/ at `commit`. A commit that changes
    only docs, tests or tools keeps the version; one that changes a stage's code moves it. UNKNOWN_CODE
    where git does not have the commit (a shallow clone)."""
    listed = subprocess.run(["git", "ls-tree", "-r", commit, "--", *CODE_PATHS], cwd=repository,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return UNKNOWN_CODE
    blobs = sorted(f"{line.split()[2]} {line.split(maxsplit=3)[3]}" for line in listed.stdout.splitlines()
                   if line.endswith((".py", "dvc.yaml")))
    return hashlib.sha256("\n".join(blobs).encode()).hexdigest()[:10]


def with_code(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its CODE column filled in, from each row's commit, where it is missing."""
    if frame.empty:
        return frame
    frame = frame.copy()
    if CODE not in frame.columns:
        frame[CODE] = None
    missing = frame[CODE].isna()
    versions = {commit: code_version(commit) for commit in frame.loc[missing, "commit"].unique()}
    frame.loc[missing, CODE] = frame.loc[missing, "commit"].map(versions)
    return frame


def merge(existing: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """The records plus `rows`, each with its code version; a run with the same params and code
    version as a recorded one keeps the recorded row, and one of other code is a new row."""
    frame = with_code(pd.concat([existing, pd.DataFrame(rows)], ignore_index=True))
    frame = frame.drop_duplicates(subset=[*param_columns(frame), CODE], keep="first")
    return frame.sort_values([ARCH, FRACTION, SEED, TEMPERATURE, ALPHA], kind="stable").reset_index(drop=True)


def load(path: Path = RUNS_FILE) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame()
    # Only an empty cell is missing: pandas would otherwise read the JSON text "null" as NaN too.
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def save(frame: pd.DataFrame, path: Path = RUNS_FILE) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    outputs.write_text(path, buffer.getvalue())


def recipe_columns(frame: pd.DataFrame) -> list[str]:
    """The params a comparison holds fixed: all but the varied ones and the teacher's recipe (set by arch)."""
    return [column for column in param_columns(frame)
            if column not in VARIED and not column.startswith("params.teacher.")]


def comparable(frame: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """The runs whose recipe (all params but the varied ones and the teacher's) is `baseline`'s.

    A param that a run does not have (it was added later, with a stage the run did not have) does
    not count against it.
    """
    if frame.empty:
        return frame
    expected = flatten(baseline, "params")
    keep = pd.Series(True, index=frame.index)
    for column in recipe_columns(frame):
        keep &= frame[column].isna() | equals(frame[column], expected.get(column))
    return frame[keep]


def recipe_changes(frame: pd.DataFrame, baseline: dict) -> pd.Series:
    """Per run, the recipe params (recipe_columns) where it departs from `baseline`, as text:
    "distill.views=consistent, student.min_steps=10000", in key order; empty for a run comparable to it. A param the
    run does not have counts as the baseline's, as in `comparable`."""
    expected = flatten(baseline, "params")
    changes = pd.Series([[] for _ in range(len(frame))], index=frame.index, dtype=object)
    for column in recipe_columns(frame):
        differs = frame[column].notna() & ~equals(frame[column], expected.get(column))
        for index in frame.index[differs]:
            changes[index] = [*changes[index], f"{column.removeprefix('params.')}={plain(frame.at[index, column])}"]
    return changes.map(lambda names: ", ".join(sorted(names)))


def plain(value) -> str:
    """A param as a -S override writes it: 10000, not 10000.0."""
    return f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)


def equals(column: pd.Series, value) -> pd.Series:
    """Which cells hold `value`. A column that also holds text ("null", "auto") is read as text, so a
    number in it is compared as a number: "2000" and 2000, "1000.0" and 1000 are the same param."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return pd.to_numeric(column, errors="coerce") == value
    return column.astype(str) == str(value)


def load_comparable(params_path: Path = Path("params.yaml"), path: Path = RUNS_FILE) -> pd.DataFrame:
    return comparable(load(path), params.parse_yaml(params_path.read_text()))


def cell_means(runs: pd.DataFrame, seeds) -> pd.DataFrame:
    """Per T x alpha cell, the mean validation metrics over `seeds`, for cells that have all of them."""
    grid = runs[runs[SEED].isin(list(seeds))]
    means = grid.groupby([TEMPERATURE, ALPHA]).agg(
        seeds=(SEED, "nunique"), accuracy=(SELECT_ON, "mean"), hard_loss=(TIE_BREAK, "mean")
    ).reset_index()
    return means[means["seeds"] == len(seeds)]


def choose(runs: pd.DataFrame, seeds) -> tuple[float, float] | None:
    """The (T, alpha) with the best mean validation accuracy of the distilled student over `seeds`
    (ties: lower mean validation cross-entropy), among cells run on every one of them."""
    means = cell_means(runs, seeds)
    if means.empty:
        return None
    best = means.sort_values(["accuracy", "hard_loss"], ascending=[False, True], kind="stable").iloc[0]
    return float(best[TEMPERATURE]), float(best[ALPHA])
