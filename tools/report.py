"""Rebuilds reports/ from the committed per-run records (reports/runs.csv) alone.

    python -m tools.report                 # reports/runs.csv -> reports/README.md, summary.json, kd_curve.png
    python -m tools.report --runs FILE --out DIR

At each transfer-set size and for each teacher, T and alpha are chosen on validation only: the cell
with the best mean validation accuracy of the distilled student over the selection seeds (ties: lower
validation cross-entropy). The verdict then compares the distilled and the baseline student on the
test set, paired by student seed (same transfer set, same initial weights), over every seed recorded
for the chosen cell, seeds disjoint from the selection seeds (sweep.verdict_seeds): a seed whose
validation score helped choose the cell would favour the distilled side.
"""

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from common import outputs, params
from tools import records, sweep

REPORTS = Path("reports")
TRANSFER = "params.distill.transfer"
TEACHER_NAMES = {"cnn": "CNN teacher", "mlp": "MLP teacher"}
COLORS = {"cnn": "tab:green", "mlp": "tab:purple", "student": "tab:orange"}
SIGNIFICANCE = 0.05
# Test accuracies are counts over Fashion-MNIST's 10,000 test images: they move in steps of one image.
# A spread of paired gains below one step is rounding, not a measurement of the noise.
ACCURACY_STEP = 1e-4
# The targets: at the two smallest sizes, a gain significant at 5% recovering >= 25% of the gap.
TARGET_FRACTIONS, TARGET_GAP_SHARE = (0.01, 0.03), 0.25


def verdict(runs: pd.DataFrame) -> dict:
    """Paired statistics of distilled against baseline test accuracy over the rows of `runs` (one per seed)."""
    distilled = runs["test.distilled.accuracy"].to_numpy()
    student = runs["test.student.accuracy"].to_numpy()
    teacher = runs["test.teacher.accuracy"].to_numpy()
    gains = distilled - student
    count = len(gains)
    mean_gain = float(gains.mean())
    spread = float(gains.std(ddof=1)) if count > 1 else math.nan
    if count > 1 and spread >= ACCURACY_STEP:
        half_width = float(stats.t.ppf(1 - SIGNIFICANCE / 2, count - 1) * spread / math.sqrt(count))
        p_value = float(stats.ttest_rel(distilled, student).pvalue)
    elif count > 1:
        # Equal gains (zero spread) or gains a step apart: the t-test runs on a spread of one step,
        # the smallest the data can show, rather than on rounding (zero would make any gain certain).
        standard_error = ACCURACY_STEP / math.sqrt(count)
        half_width = float(stats.t.ppf(1 - SIGNIFICANCE / 2, count - 1) * standard_error)
        p_value = float(2 * stats.t.sf(abs(mean_gain) / standard_error, count - 1))
    else:
        half_width, p_value = None, None  # one seed: no spread, so no interval and no test (JSON null)
    return {
        "seeds": sorted(int(seed) for seed in runs[records.SEED]),
        "teacher_accuracy": float(teacher.mean()),
        "student": [float(student.mean()), float(student.std(ddof=1)) if count > 1 else None],
        "distilled": [float(distilled.mean()), float(distilled.std(ddof=1)) if count > 1 else None],
        "gain": [mean_gain, spread if count > 1 else None],
        "gain_ci95": [mean_gain - half_width, mean_gain + half_width] if half_width is not None else None,
        "p_value": p_value,
        "gap_recovered": mean_gain / float((teacher - student).mean()),
    }


def analyse(runs: pd.DataFrame) -> list[dict]:
    """One entry per teacher and transfer-set size whose selection grid is complete."""
    results = []
    for teacher in sweep.TEACHERS:
        for fraction in sweep.FRACTIONS:
            chosen = sweep.chosen_cell(runs, teacher, fraction)
            if chosen is None:
                continue
            at_size = runs[(runs[records.ARCH] == teacher) & (runs[records.FRACTION] == fraction)]
            cell = at_size[(at_size[records.TEMPERATURE] == chosen[0]) & (at_size[records.ALPHA] == chosen[1])]
            cell = cell[cell[records.SEED].isin(list(sweep.verdict_seeds(fraction)))]
            if cell.empty:
                continue  # chosen, but no verdict seed has run yet
            grid = records.cell_means(at_size, sweep.SELECTION_SEEDS)
            selection = at_size[at_size[records.SEED].isin(list(sweep.SELECTION_SEEDS))]
            results.append({
                # Every code version behind this size's selection grid and its verdict.
                "code": sorted(set(code_of(selection)) | set(code_of(cell))),
                "teacher": teacher,
                "fraction": fraction,
                "temperature": chosen[0],
                "alpha": chosen[1],
                "val_accuracy": float(grid[(grid[records.TEMPERATURE] == chosen[0]) & (grid[records.ALPHA] == chosen[1])]["accuracy"].iloc[0]),
                "grid": {f"T={t:g}, alpha={a:g}": round(float(v), 5)
                         for t, a, v in grid[[records.TEMPERATURE, records.ALPHA, "accuracy"]].itertuples(index=False)},
                "seeds_wanted": len(sweep.verdict_seeds(fraction)),
                **verdict(cell),
            })
    return results


def code_of(runs: pd.DataFrame) -> list[str]:
    if records.CODE not in runs.columns:
        return [records.UNKNOWN_CODE]
    return [str(version) for version in runs[records.CODE].fillna(records.UNKNOWN_CODE)]


def versions_line(runs: pd.DataFrame) -> str:
    """Which code versions the records hold, with their runs and commits."""
    parts = []
    for version in sorted(set(code_of(runs))):
        mine = runs[[code == version for code in code_of(runs)]]
        commits = ", ".join(sorted(str(commit)[:7] for commit in mine["commit"].unique()))
        parts.append(f"`{version}` ({len(mine)} runs; commit {commits})")
    return ("Code versions (records.code_version: the pipeline's code at the run's commit): " + "; ".join(parts)
            + ". A size whose selection and verdict ran on more than one says so in the tables' code column.")


def significant(result: dict) -> bool:
    """A positive gain, significant at 5%, and of more than one test image: a smaller mean is rounding."""
    return result["p_value"] is not None and result["p_value"] < SIGNIFICANCE and result["gain"][0] > ACCURACY_STEP


def _p(value) -> str:
    return "–" if value is None else f"{value:.2g}"


# ---------------------------------------------------------------- writing


def _pm(pair, digits: int = 4) -> str:
    mean, spread = pair
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if spread is not None else f"{mean:.{digits}f}"


def verdict_table(results: list[dict]) -> str:
    lines = [
        "| teacher | transfer set | T | alpha | seeds | teacher acc | student acc | distilled acc | KD gain | 95% CI | p (paired t) | gap recovered | code |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        low, high = result["gain_ci95"] or (None, None)
        seeds = len(result["seeds"])
        seeds_text = f"{seeds}" if seeds >= result["seeds_wanted"] else f"{seeds} of {result['seeds_wanted']}"
        lines.append(
            f"| {result['teacher']} | {result['fraction']:.0%} | {result['temperature']:g} | {result['alpha']:g} | "
            f"{seeds_text} | {result['teacher_accuracy']:.4f} | {_pm(result['student'])} | {_pm(result['distilled'])} | "
            f"{result['gain'][0]:+.4f} | {'–' if low is None else f'[{low:+.4f}, {high:+.4f}]'} | {_p(result['p_value'])} | "
            f"{result['gap_recovered']:+.0%} | {code_cell(result['code'])} |"
        )
    return "\n".join(lines) + "\n"


def code_cell(versions: list[str]) -> str:
    return versions[0] if len(versions) == 1 else " + ".join(versions) + " (mixed)"


def grid_table(results: list[dict]) -> str:
    cells = [f"T={t:g}, alpha={a:g}" for t in sweep.TEMPERATURES for a in sweep.ALPHAS]
    lines = ["| teacher | transfer set | " + " | ".join(cells) + " |", "|---|---:|" + "---:|" * len(cells)]
    for result in results:
        values = [result["grid"].get(cell) for cell in cells]
        shown = [("**{:.4f}**" if cell == f"T={result['temperature']:g}, alpha={result['alpha']:g}" else "{:.4f}").format(value)
                 if value is not None else "–" for cell, value in zip(cells, values)]
        lines.append(f"| {result['teacher']} | {result['fraction']:.0%} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def findings(results: list[dict]) -> list[str]:
    """Plain sentences: the targets, and where the gain stops being significant, per teacher."""
    lines = []
    mixed = [result for result in results if len(result["code"]) > 1]
    if mixed:
        lines.append(f"- {len(mixed)} of {len(results)} sizes mix code versions between selection and verdict "
                     f"(table below): rerun them on one version before trusting the verdict.")
    for teacher, name in TEACHER_NAMES.items():
        mine = [result for result in results if result["teacher"] == teacher]
        if not mine:
            continue
        for result in mine:
            if result["fraction"] in TARGET_FRACTIONS:
                met = significant(result) and result["gap_recovered"] >= TARGET_GAP_SHARE
                lines.append(
                    f"- {name}, {result['fraction']:.0%} of the training images: gain {result['gain'][0]:+.4f} "
                    f"(p = {_p(result['p_value'])}), {result['gap_recovered']:.0%} of the gap: target "
                    f"{'met' if met else 'missed'}."
                )
        first_not = next((result for result in mine if not significant(result)), None)
        if first_not is None:
            lines.append(f"- {name}: the gain is significant at every size measured.")
        else:
            lines.append(
                f"- {name}: the gain stops being significant at {first_not['fraction']:.0%} of the training images "
                f"(gain {first_not['gain'][0]:+.4f}, p = {_p(first_not['p_value'])})."
            )
    return lines


def _pyplot():
    """matplotlib's pyplot drawing to files only; imported late so the tables need no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve(results: list[dict], runs: pd.DataFrame, path: Path) -> None:
    """Test accuracy against transfer-set size (log scale), and the KD gain with its 95% band underneath."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), dpi=120, sharex=True, height_ratios=(3, 2))
    fractions = list(sweep.FRACTIONS)
    # The baseline does not depend on the teacher: every recorded seed at each size counts.
    baseline = runs.drop_duplicates([records.FRACTION, records.SEED]).groupby(records.FRACTION)["test.student.accuracy"]
    means, spreads = baseline.mean(), baseline.std()
    shown = [fraction for fraction in fractions if fraction in means.index]
    top.errorbar(shown, means[shown], yerr=spreads[shown], color=COLORS["student"], marker="o", capsize=3,
                 label="student (labels only)")
    offset = {"cnn": 1.04, "mlp": 0.96}  # side by side, so the error bars do not hide each other
    for teacher, name in TEACHER_NAMES.items():
        mine = [result for result in results if result["teacher"] == teacher]
        if not mine:
            continue
        x = [result["fraction"] * offset[teacher] for result in mine]
        top.errorbar(x, [r["distilled"][0] for r in mine], yerr=[r["distilled"][1] or 0 for r in mine],
                     color=COLORS[teacher], marker="s", capsize=3, label=f"distilled from the {name}")
        top.axhline(mine[0]["teacher_accuracy"], color=COLORS[teacher], linestyle=":", label=f"{name} (all images)")
        bottom.plot(x, [r["gain"][0] * 100 for r in mine], color=COLORS[teacher], marker="s", label=name)
        bands = [r["gain_ci95"] or (math.nan, math.nan) for r in mine]
        bottom.fill_between(x, [low * 100 for low, _ in bands], [high * 100 for _, high in bands],
                            color=COLORS[teacher], alpha=0.2)
    bottom.axhline(0, color="black", linewidth=0.8)
    top.set(xscale="log", ylabel="test accuracy", title="Distillation by transfer-set size (mean ± sd over seeds)")
    bottom.set(xlabel="transfer set: share of the 55,000 training images (log scale)",
               ylabel="KD gain, points\n(95% CI band)")
    bottom.set_xticks(fractions, [f"{fraction:.0%}" for fraction in fractions])
    top.legend(fontsize=8, loc="lower right")
    if results:  # before any size has its verdict, the gain panel is empty
        bottom.legend(fontsize=8)
    figure.tight_layout()
    with outputs.replacing(path) as partial:
        figure.savefig(partial, format="png", metadata={"Software": None})
    plt.close(figure)


def fixed_recipes(runs: pd.DataFrame) -> list[dict]:
    """A verdict per teacher, size, T, alpha and code version for runs outside the sweep's selection
    (every training image as transfer set): their T and alpha were fixed before they ran, so every
    seed counts, none was used to choose."""
    results = []
    keys = [records.ARCH, records.FRACTION, records.TEMPERATURE, records.ALPHA, records.CODE]
    for (teacher, fraction, temperature, alpha, code), cell in runs.groupby(keys, sort=True):
        results.append({"teacher": teacher, "fraction": float(fraction), "temperature": float(temperature),
                        "alpha": float(alpha), "code": [str(code)], "seeds_wanted": len(cell), **verdict(cell)})
    return results


def write_report(runs: pd.DataFrame, out: Path, transfer_all: pd.DataFrame | None = None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    results = analyse(runs)
    curve(results, runs, out / "kd_curve.png")
    extra = fixed_recipes(transfer_all) if transfer_all is not None and not transfer_all.empty else []
    outputs.write_json(out / "summary.json", {"runs": len(runs), "results": results,
                                              **({"transfer_all": extra} if extra else {})})
    outputs.write_text(
        out / "README.md",
        "# When does distillation help? The data-efficiency sweep\n\n"
        f"Written by `make report` from [runs.csv](runs.csv) alone ({len(runs)} runs). Each point: the 784-128-10 MLP "
        "student trained on a stratified share of the training split, with and without the teacher's soft targets. "
        "Teachers always train on every training image; validation and test never change.\n\n"
        "![test accuracy and KD gain against transfer-set size](kd_curve.png)\n\n"
        + "\n".join(findings(results)) + "\n\n"
        + versions_line(runs) + "\n\n"
        "## Verdict: distilled against baseline, paired by student seed, on the test set\n\n"
        "T and alpha chosen on validation at each size (below). KD gain: mean of the paired test-accuracy "
        "differences; its 95% confidence interval and the paired t-test's two-sided p-value; gap recovered: mean gain "
        "/ mean (teacher − student).\n\n"
        + verdict_table(results)
        + "\n## Selection: the distilled student's mean validation accuracy, seeds "
        + ", ".join(map(str, sweep.SELECTION_SEEDS)) + " (bold: chosen)\n\n"
        + grid_table(results)
        + (("\n## Every training image as transfer set (distill.transfer: all)\n\n"
            "The soft term covers all training images, the hard term the labelled share. T and alpha fixed before "
            "the runs, so no seed was used to choose; paired by student seed as above.\n\n" + verdict_table(extra))
           if extra else ""),
    )
    return results
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=records.RUNS_FILE)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the recipe every run must share")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args()
    runs = records.load_comparable(args.params, args.runs)
    if runs.empty:
        sys.exit(f"error: {args.runs}: no run with this params.yaml's recipe; run the sweep (README: Experiments)")
    recipe = params.parse_yaml(args.params.read_text())
    recipe["distill"]["transfer"] = "all"
    # Runs from before the param have no such column, and they all used the labelled images.
    variant = records.comparable(records.load(args.runs), recipe)
    variant = variant[variant.get(TRANSFER, pd.Series(index=variant.index, dtype=object)) == "all"]
    write_report(runs, args.out, variant)


if __name__ == "__main__":
    main()
