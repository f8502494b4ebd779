"""Turns the experiments DVC recorded into reports/: tables, the T x alpha heatmap, the seed spread.

    python -m tools.report                      # reads `dvc exp show --json` from this repository
    python -m tools.report --exp-show FILE      # reads a saved copy of that output instead

Selection uses validation metrics only: the T x alpha cell with the best validation accuracy of the
distilled student (ties: lower validation cross-entropy). Test metrics are reported for that cell,
as mean and standard deviation over the student seeds found for it.
"""

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages import outputs
from stages.params import parse_yaml

REPORTS = Path("reports")
MODELS = ("teacher", "student", "distilled")
TEST_METRICS = ("accuracy", "nll", "ece", "agreement")
# Params that may differ between the experiments compared; everything else must match the baseline.
VARIED = {("distill", "temperature"), ("distill", "alpha"), ("student", "seed")}


@dataclass(frozen=True)
class Run:
    name: str
    params: dict
    val: dict  # metrics/training/distilled.json: the distilled student's validation metrics
    test: dict  # metrics/evaluate.json

    @property
    def temperature(self) -> float:
        return float(self.params["distill"]["temperature"])

    @property
    def alpha(self) -> float:
        return float(self.params["distill"]["alpha"])

    @property
    def seed(self) -> int:
        return self.params["student"]["seed"]


def _run(name: str, data: dict) -> Run | None:
    try:
        params = data["params"]["params.yaml"]["data"]
        val = data["metrics"]["metrics/training/distilled.json"]["data"]
        test = data["metrics"]["metrics/evaluate.json"]["data"]
    except (KeyError, TypeError):
        return None  # a failed or unfinished experiment
    return Run(name, params, val, test)


def runs_from_exp_show(exp_show: list) -> list[Run]:
    """Every commit and experiment in `dvc exp show --json` output that has params and both metrics files.

    Experiments come before commits: where both ran the same setting, the experiment's name, which
    no later commit changes, is the one a report keeps.
    """
    experiments, commits = [], []
    for commit in exp_show:
        if commit["rev"] == "workspace":
            continue  # a copy of HEAD or of the last experiment applied
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                name = revision.get("name") or experiment.get("name") or revision["rev"][:7]
                experiments.append((name, revision.get("data") or {}))
        commits.append((commit.get("name") or commit["rev"][:7], commit.get("data") or {}))
    return [run for run in (_run(name, data) for name, data in experiments + commits) if run]


def _fixed_params(params: dict) -> dict:
    return {
        section: {key: value for key, value in values.items() if (section, key) not in VARIED}
        if isinstance(values, dict) else values
        for section, values in params.items()
    }


def comparable(runs: list[Run], baseline: dict) -> list[Run]:
    """Runs whose params differ from `baseline` only in T, alpha and the student seed, one per setting."""
    kept, seen = [], set()
    for run in runs:
        if _fixed_params(run.params) != _fixed_params(baseline):
            continue  # another recipe, or a commit from before a param existed
        key = (run.temperature, run.alpha, run.seed)
        if key not in seen:
            seen.add(key)
            kept.append(run)
    return kept


def select(grid: list[Run]) -> Run:
    """Best validation accuracy of the distilled student; ties go to the lower validation cross-entropy."""
    return max(grid, key=lambda run: (run.val["val_accuracy"], -run.val["val_hard_loss"]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def seed_summary(seeds: list[Run]) -> dict:
    table = {
        model: {
            metric: mean_std([run.test[model][metric] for run in seeds])
            for metric in TEST_METRICS
            if metric in seeds[0].test[model]
        }
        for model in MODELS
    }
    gains = [run.test["distilled"]["accuracy"] - run.test["student"]["accuracy"] for run in seeds]
    gaps = [run.test["teacher"]["accuracy"] - run.test["student"]["accuracy"] for run in seeds]
    return {
        "seeds": sorted(run.seed for run in seeds),
        "table": table,
        "kd_gain": mean_std(gains),
        "gap_recovered": statistics.fmean(gains) / statistics.fmean(gaps),
    }


# ---------------------------------------------------------------- writing


def _pm(pair: tuple[float, float], digits: int = 4) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def experiments_table(runs: list[Run]) -> str:
    lines = [
        "| experiment | T | alpha | student seed | val acc (distilled) | test acc teacher | test acc student | test acc distilled | distilled NLL | distilled ECE | distilled agreement |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in sorted(runs, key=lambda r: (r.seed, r.temperature, r.alpha)):
        test = run.test
        lines.append(
            f"| {run.name} | {run.temperature:g} | {run.alpha:g} | {run.seed} | {run.val['val_accuracy']:.4f} | "
            f"{test['teacher']['accuracy']:.4f} | {test['student']['accuracy']:.4f} | {test['distilled']['accuracy']:.4f} | "
            f"{test['distilled']['nll']:.4f} | {test['distilled']['ece']:.4f} | {test['distilled']['agreement']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def seeds_table(summary: dict) -> str:
    lines = [
        "| model | test accuracy | NLL | ECE | top-1 agreement with teacher |",
        "|---|---:|---:|---:|---:|",
    ]
    for model in MODELS:
        row = summary["table"][model]
        agreement = _pm(row["agreement"]) if "agreement" in row else "–"
        lines.append(f"| {model} | {_pm(row['accuracy'])} | {_pm(row['nll'])} | {_pm(row['ece'])} | {agreement} |")
    gain, count = summary["kd_gain"], len(summary["seeds"])
    standard_error = gain[1] / count**0.5
    lines += [
        "",
        f"KD gain (distilled − student test accuracy, paired by seed): {gain[0]:+.4f} ± {gain[1]:.4f} over seeds "
        f"{summary['seeds']} (standard error {standard_error:.4f}, t = {gain[0] / standard_error if standard_error else float('nan'):.2f} "
        f"with {count - 1} degrees of freedom); share of the teacher−student gap recovered: {summary['gap_recovered']:+.1%}.",
    ]
    return "\n".join(lines) + "\n"


def _pyplot():
    """matplotlib's pyplot drawing to files only; imported late so the tables need no plotting library."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(grid: list[Run], chosen: Run, path: Path) -> None:
    plt = _pyplot()
    temperatures = sorted({run.temperature for run in grid})
    alphas = sorted({run.alpha for run in grid})
    values = np.full((len(alphas), len(temperatures)), np.nan)
    for run in grid:
        values[alphas.index(run.alpha), temperatures.index(run.temperature)] = run.val["val_accuracy"]

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    image = axes.imshow(values, cmap="viridis", origin="lower", aspect="auto")
    for row, column in np.ndindex(values.shape):
        if not np.isnan(values[row, column]):
            axes.text(column, row, f"{values[row, column]:.4f}", ha="center", va="center", fontsize=8, color="white")
    chosen_cell = (temperatures.index(chosen.temperature), alphas.index(chosen.alpha))
    axes.add_patch(plt.Rectangle((chosen_cell[0] - 0.5, chosen_cell[1] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    axes.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    axes.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    axes.set_xlabel("temperature T")
    axes.set_ylabel("alpha (weight on hard labels)")
    axes.set_title("Distilled student: validation accuracy (red: chosen)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    with outputs.replacing(path) as partial:
        figure.savefig(partial, format="png", metadata={"Software": None})
    plt.close(figure)


def learning_curves(curves_dir: Path, path: Path) -> None:
    plt = _pyplot()
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for model, color in zip(MODELS, ("tab:blue", "tab:orange", "tab:green")):
        for split, style in (("train", "--"), ("eval", "-")):
            for metric, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
                if model == "distilled" and metric == "loss":
                    metric = "hard_loss"  # cross-entropy on labels, comparable with the others' loss
                table = np.loadtxt(curves_dir / model / "plots" / "metrics" / split / f"{metric}.tsv", skiprows=1, ndmin=2)
                label = f"{model} {'validation' if split == 'eval' else 'train'}"
                axes.plot(table[:, 0] + 1, table[:, 1], style, color=color, label=label)
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy on labels", title="Loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    accuracy_axes.legend(fontsize=8)
    figure.tight_layout()
    with outputs.replacing(path) as partial:
        figure.savefig(partial, format="png", metadata={"Software": None})
    plt.close(figure)


def write_report(runs: list[Run], baseline: dict, out: Path, curves_dir: Path | None) -> dict:
    """`baseline`: the params every compared run must share, apart from T, alpha and the student seed."""
    out.mkdir(parents=True, exist_ok=True)
    runs = comparable(runs, baseline)
    grid = [run for run in runs if run.seed == baseline["student"]["seed"]]
    chosen = select(grid)
    seeds = [run for run in runs if (run.temperature, run.alpha) == (chosen.temperature, chosen.alpha)]
    summary = seed_summary(seeds)

    heatmap(grid, chosen, out / "sweep_val_accuracy.png")
    if curves_dir is not None:
        learning_curves(curves_dir, out / "learning_curves.png")
    outputs.write_text(out / "experiments.md", experiments_table(runs))
    result = {
        "chosen": {"temperature": chosen.temperature, "alpha": chosen.alpha, "val_accuracy": chosen.val["val_accuracy"]},
        "grid_size": len(grid),
        **summary,
    }
    outputs.write_json(out / "summary.json", result)
    outputs.write_text(
        out / "README.md",
        "# Experiment report\n\n"
        "Written by `make report` from `dvc exp show --json`. Selection used validation accuracy only; "
        "the test numbers below are for the chosen configuration.\n\n"
        f"Chosen on validation: **T = {chosen.temperature:g}, alpha = {chosen.alpha:g}** "
        f"(distilled validation accuracy {chosen.val['val_accuracy']:.4f}, from {len(grid)} T x alpha cells).\n\n"
        "![validation accuracy over T and alpha](sweep_val_accuracy.png)\n\n"
        f"## Test metrics at the chosen T and alpha: mean ± standard deviation over {len(seeds)} student seeds\n\n"
        "The teacher is the same in every run; each seed retrains the baseline and the distilled student.\n\n"
        + seeds_table(summary)
        + ("\n![learning curves](learning_curves.png)\n" if curves_dir is not None else "")
        + "\nEvery experiment: [experiments.md](experiments.md).\n"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp-show", type=Path, help="a saved `dvc exp show --json` output")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the baseline params")
    parser.add_argument("--curves", type=Path, default=Path("metrics/curves"), help="dvclive folders of the default run")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args()
    if args.exp_show:
        exp_show = json.loads(args.exp_show.read_text())
    else:
        command = [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"]
        exp_show = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    runs = runs_from_exp_show(exp_show)
    if not runs:
        sys.exit("error: no finished experiment found; run the sweep first (see README, Experiments)")
    curves = args.curves if (args.curves / "teacher" / "plots").is_dir() else None
    if curves is None:
        print(f"note: no learning curves in {args.curves} (run `dvc pull` or `dvc repro`); "
              "learning_curves.png not written", file=sys.stderr)
    baseline = parse_yaml(args.params.read_text())
    result = write_report(runs, baseline, args.out, curves)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
