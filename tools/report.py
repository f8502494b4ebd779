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
import itertools
import math
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from common import outputs, params
from tools import records, sweep

REPORTS = Path("reports")
# How a variant's runs depart from params.yaml (records.recipe_changes); empty for the sweep's.
RECIPE = "recipe"
TEACHER_NAMES = {"cnn": "CNN teacher", "mlp": "MLP teacher"}
COLORS = {"cnn": "tab:green", "mlp": "tab:purple", "student": "tab:orange"}
SIGNIFICANCE = 0.05
# Test accuracies are counts over Fashion-MNIST's 10,000 test images: they move in steps of one image.
# A spread of paired gains below one step is rounding, not a measurement of the noise.
ACCURACY_STEP = 1e-4
# The targets: at the two smallest sizes, a gain significant at 5% recovering >= 25% of the gap.
TARGET_FRACTIONS, TARGET_GAP_SHARE = (0.01, 0.03), 0.25


def paired_test(first, second) -> tuple[float | None, float | None]:
    """The 95% half-width and the two-sided paired t-test p-value of the mean of `first - second` (one
    pair per seed); (None, None) for one seed, which has no spread."""
    differences = first - second
    count = len(differences)
    if count < 2:
        return None, None
    spread = float(differences.std(ddof=1))
    if spread >= ACCURACY_STEP:
        half_width = float(stats.t.ppf(1 - SIGNIFICANCE / 2, count - 1) * spread / math.sqrt(count))
        return half_width, float(stats.ttest_rel(first, second).pvalue)
    # Equal differences (zero spread) or differences a step apart: the test runs on a spread of one
    # step, the smallest the data can show, rather than on rounding (zero would make any gain certain).
    standard_error = ACCURACY_STEP / math.sqrt(count)
    half_width = float(stats.t.ppf(1 - SIGNIFICANCE / 2, count - 1) * standard_error)
    return half_width, float(2 * stats.t.sf(abs(float(differences.mean())) / standard_error, count - 1))


def verdict(runs: pd.DataFrame) -> dict:
    """Paired statistics of distilled against baseline test accuracy over the rows of `runs` (one per seed)."""
    distilled = runs["test.distilled.accuracy"].to_numpy()
    student = runs["test.student.accuracy"].to_numpy()
    teacher = runs["test.teacher.accuracy"].to_numpy()
    gains = distilled - student
    count = len(gains)
    mean_gain = float(gains.mean())
    half_width, p_value = paired_test(distilled, student)
    gap = float((teacher - student).mean())
    # A share of the gap only where there is one: wider than a test image on one seed, and over several
    # seeds a lead of the teacher's that the same test finds (else a gain of a few images reads as 172%).
    gap_p_value = paired_test(teacher, student)[1]
    has_gap = gap >= ACCURACY_STEP and (gap_p_value is None or gap_p_value < SIGNIFICANCE)
    return {
        "seeds": sorted(int(seed) for seed in runs[records.SEED]),
        "teacher_accuracy": float(teacher.mean()),
        "student": [float(student.mean()), float(student.std(ddof=1)) if count > 1 else None],
        "distilled": [float(distilled.mean()), float(distilled.std(ddof=1)) if count > 1 else None],
        "gain": [mean_gain, float(gains.std(ddof=1)) if count > 1 else None],
        "gain_ci95": [mean_gain - half_width, mean_gain + half_width] if half_width is not None else None,
        "p_value": p_value,
        "gap_recovered": mean_gain / gap if has_gap else None,
        # Top-1 agreement with the teacher on the test set (Stanton et al. 2021: fidelity and accuracy part ways).
        "agreement": [mean_of(runs, "test.student.agreement"), mean_of(runs, "test.distilled.agreement")],
    }


def mean_of(runs: pd.DataFrame, column: str) -> float | None:
    values = runs[column].dropna() if column in runs.columns else ()
    return float(values.mean()) if len(values) else None


def analyse(runs: pd.DataFrame) -> list[dict]:
    """Per teacher and transfer-set size, one entry for each code version whose own runs hold the
    whole selection grid and a verdict seed of the chosen cell. Where no single version does, one
    entry over the runs of several versions, whose code column names them all (mixed). A version
    that answers some size on its own is a rerun still going at the others, and stays out of their
    mixed entries."""
    sizes = list(itertools.product(sweep.TEACHERS, sweep.FRACTIONS))
    at_size = {(teacher, fraction): runs[(runs[records.ARCH] == teacher) & (runs[records.FRACTION] == fraction)]
               for teacher, fraction in sizes}
    single = {}
    for (teacher, fraction), mine in at_size.items():
        versions = pd.Series(code_of(mine), index=mine.index, dtype=object)
        answers = [size_result(group, teacher, fraction) for _, group in mine.groupby(versions, sort=True)]
        single[teacher, fraction] = [result for result in answers if result]
    rerunning = {result["code"][0] for answers in single.values() for result in answers}
    results = []
    for teacher, fraction in sizes:
        mine = at_size[teacher, fraction]
        pooled = size_result(mine[[code not in rerunning for code in code_of(mine)]], teacher, fraction)
        results += single[teacher, fraction] or ([pooled] if pooled else [])
    return results


def size_result(at_size: pd.DataFrame, teacher: str, fraction: float) -> dict | None:
    """The selection and verdict at one size from `at_size`'s runs; None before its grid is complete
    on the selection seeds or before a verdict seed of the chosen cell has run."""
    chosen = sweep.chosen_cell(at_size, teacher, fraction)
    if chosen is None:
        return None
    cell = at_size[(at_size[records.TEMPERATURE] == chosen[0]) & (at_size[records.ALPHA] == chosen[1])]
    cell = cell[cell[records.SEED].isin(list(sweep.verdict_seeds(fraction)))]
    if cell.empty:
        return None
    grid = records.cell_means(at_size, sweep.SELECTION_SEEDS)
    selection = at_size[at_size[records.SEED].isin(list(sweep.SELECTION_SEEDS))]
    return {
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
    }


def headline_version(results: list[dict], runs: pd.DataFrame) -> str | None:
    """The code version that answers at the most sizes on its own (ties: the one whose last run
    finished latest): the version the picture and the findings speak for."""
    counts = {}
    for result in results:
        if len(result["code"]) == 1:
            counts[result["code"][0]] = counts.get(result["code"][0], 0) + 1
    if not counts:
        return None
    finished = runs[records.FINISHED].fillna("") if records.FINISHED in runs.columns else pd.Series("", index=runs.index)
    latest = finished.groupby(pd.Series(code_of(runs), index=runs.index)).max().to_dict()
    return max(counts, key=lambda version: (counts[version], latest.get(version, ""), version))


def made_by(runs: pd.DataFrame, results: list[dict]) -> pd.DataFrame:
    """The rows of `runs` made by the code versions behind `results`, or all of them where no result
    speaks: the picture's baseline and teacher accuracy come from the code its distilled points come from."""
    versions = {version for result in results for version in result["code"]}
    mine = runs[[code in versions for code in code_of(runs)]]
    return mine if len(mine) else runs


def headline(results: list[dict], runs: pd.DataFrame) -> list[dict]:
    """One result per teacher and size: the headline version's where it has one, else the first
    single-version one, else the mixed one."""
    version = headline_version(results, runs)
    chosen = {}
    for result in results:
        key = (result["teacher"], result["fraction"])
        rank = 0 if result["code"] == [version] else 1 if len(result["code"]) == 1 else 2
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, result)
    return [result for _, result in chosen.values()]


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


def _shown(value: float, digits: int) -> float:
    """`value` rounded to the decimals it is shown with, where a negative that rounds to zero becomes
    +0: a mean gain of a third of a test image reads +0.00 points, not -0.00. Interval bounds keep
    their sign, which tells whether the interval holds zero."""
    return round(value, digits) + 0.0


# ---------------------------------------------------------------- writing


def _gap_phrase(result: dict) -> str:
    share = result["gap_recovered"]
    return "no teacher-student gap to recover" if share is None else f"{_shown(share, 2):.0%} of the gap"


def _pm(pair, digits: int = 4) -> str:
    mean, spread = pair
    return f"{mean:.{digits}f} ± {spread:.{digits}f}" if spread is not None else f"{mean:.{digits}f}"


def verdict_table(results: list[dict]) -> str:
    lines = [
        "| teacher | transfer set | T | alpha | seeds | teacher acc | student acc | distilled acc | KD gain | 95% CI | p (paired t) | gap recovered | code |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        seeds = len(result["seeds"])
        seeds_text = f"{seeds}" if seeds >= result["seeds_wanted"] else f"{seeds} of {result['seeds_wanted']}"
        lines.append(
            f"| {result['teacher']} | {result['fraction']:.0%} | {result['temperature']:g} | {result['alpha']:g} | "
            f"{seeds_text} | {verdict_cells(result)} | {code_cell(result['code'])} |"
        )
    return "\n".join(lines) + "\n"


def verdict_cells(result: dict) -> str:
    """The cells every verdict table shares: teacher, student and distilled accuracy, the gain, its
    interval and p-value, and the gap recovered."""
    low, high = result["gain_ci95"] or (None, None)
    return (f"{result['teacher_accuracy']:.4f} | {_pm(result['student'])} | {_pm(result['distilled'])} | "
            f"{_shown(result['gain'][0], 4):+.4f} | "
            f"{'–' if low is None else f'[{low:+.4f}, {high:+.4f}]'} | {_p(result['p_value'])} | "
            f"{'–' if result['gap_recovered'] is None else format(_shown(result['gap_recovered'], 2), '+.0%')}")


def code_cell(versions: list[str]) -> str:
    return versions[0] if len(versions) == 1 else " + ".join(versions) + " (mixed)"


def grid_table(results: list[dict]) -> str:
    cells = [f"T={t:g}, alpha={a:g}" for t in sweep.TEMPERATURES for a in sweep.ALPHAS]
    lines = ["| teacher | transfer set | " + " | ".join(cells) + " | code |", "|---|---:|" + "---:|" * len(cells) + "---|"]
    for result in results:
        values = [result["grid"].get(cell) for cell in cells]
        shown = [("**{:.4f}**" if cell == f"T={result['temperature']:g}, alpha={result['alpha']:g}" else "{:.4f}").format(value)
                 if value is not None else "–" for cell, value in zip(cells, values)]
        lines.append(f"| {result['teacher']} | {result['fraction']:.0%} | " + " | ".join(shown) + f" | {code_cell(result['code'])} |")
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
                met = significant(result) and (result["gap_recovered"] or 0) >= TARGET_GAP_SHARE
                lines.append(
                    f"- {name}, {result['fraction']:.0%} of the training images: gain {_shown(result['gain'][0], 4):+.4f} "
                    f"(p = {_p(result['p_value'])}), {_gap_phrase(result)}: target "
                    f"{TARGET_GAP_SHARE:.0%} {'met' if met else 'missed'}."
                )
        first_not = next((result for result in mine if not significant(result)), None)
        if first_not is None:
            lines.append(f"- {name}: the gain is significant at every size measured.")
        else:
            lines.append(
                f"- {name}: the gain stops being significant at {first_not['fraction']:.0%} of the training images "
                f"(gain {_shown(first_not['gain'][0], 4):+.4f}, p = {_p(first_not['p_value'])})."
            )
    return lines


def _pyplot():
    """matplotlib's pyplot drawing to files only; imported late so the tables need no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series(results: list[dict], runs: pd.DataFrame, extra: list[dict]) -> list[dict]:
    """The picture's lines: the baseline, KD on the labelled images per teacher (the sweep's verdicts),
    and each variant on the sweep's code versions, with the sizes it has."""
    baseline = [(fraction, made_by(group, [r for r in results if r["fraction"] == fraction]).drop_duplicates(records.SEED))
                for fraction, group in runs.groupby(records.FRACTION)]
    lines = [{"label": "student (labels only)", "points": [
        {"fraction": fraction, "accuracy": float(group["test.student.accuracy"].mean()),
         "spread": float(group["test.student.accuracy"].std()) if len(group) > 1 else 0.0,
         "agreement": mean_of(group, "test.student.agreement"), "gain": None, "seeds": len(group)}
        for fraction, group in baseline if fraction in sweep.FRACTIONS]}]
    groups = [(f"KD, labelled images, {TEACHER_NAMES[teacher]}", [r for r in results if r["teacher"] == teacher])
              for teacher in TEACHER_NAMES]
    # Variants on the code of the sweep's points only: older versions' rows stay in the tables, where
    # their version is named, rather than crowding the picture with lines a rerun has replaced.
    versions = {code for result in results for code in result["code"]}
    names = {}
    for result in (result for result in extra if result["code"][0] in versions):
        key = (result["recipe"], result["teacher"], result["temperature"], result["alpha"], result["code"][0])
        names.setdefault(key, []).append(result)
    labels = [f"{recipe}, {TEACHER_NAMES[teacher]}, T={temperature:g}, alpha={alpha:g}"
              for recipe, teacher, temperature, alpha, _ in names]
    # The same recipe under two code versions: two lines, told apart by their version.
    groups += [(label + (f" [{key[-1]}]" if labels.count(label) > 1 else ""), mine)
               for label, (key, mine) in zip(labels, names.items())]
    for label, mine in groups:
        if mine:
            lines.append({"label": label, "points": [
                {"fraction": r["fraction"], "accuracy": r["distilled"][0], "spread": r["distilled"][1] or 0.0,
                 "agreement": r["agreement"][1], "gain": (r["gain"][0], r["gain_ci95"]), "seeds": len(r["seeds"])}
                for r in mine]})
    return lines


def curve(results: list[dict], runs: pd.DataFrame, path: Path, extra: list[dict] = ()) -> None:
    """Test accuracy, KD gain (95% band) and top-1 agreement with the teacher against the labelled
    share (log scale): the baseline, KD on the labelled images and every variant recorded on their code."""
    plt = _pyplot()
    lines = series(results, runs, list(extra))
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 11), dpi=110, sharex=True, height_ratios=(3, 2, 2))
    fractions = list(sweep.FRACTIONS)
    # tab20's dark shades, then its light ones, the baseline's orange left out: 18 lines of their own colours.
    shades = plt.get_cmap("tab20").colors
    palette = [shade for index, shade in enumerate(shades[0::2] + shades[1::2]) if index not in (1, 11)]
    for index, line in enumerate(lines):
        color = COLORS["student"] if index == 0 else palette[(index - 1) % len(palette)]
        # Side by side, so that error bars do not hide each other.
        step = 1 + 0.025 * (index - len(lines) / 2)
        points = line["points"]
        x = [point["fraction"] * step for point in points]
        top.errorbar(x, [point["accuracy"] for point in points], yerr=[point["spread"] for point in points],
                     color=color, capsize=3, linestyle="-" if len(points) > 1 else "none", label=line["label"])
        gains = [(xi, point["gain"]) for xi, point in zip(x, points) if point["gain"]]
        if gains:
            middle.plot([xi for xi, _ in gains], [gain * 100 for _, (gain, _) in gains], color=color)
            for xi, (_, band) in gains:
                if band:
                    middle.vlines(xi, band[0] * 100, band[1] * 100, color=color, alpha=0.5, linewidth=3)
        agreeing = [(xi, point["agreement"]) for xi, point in zip(x, points) if point["agreement"] is not None]
        bottom.plot([xi for xi, _ in agreeing], [value for _, value in agreeing], color=color)
        # Filled markers: several seeds; hollow: one seed, no spread and no test.
        for xi, point in zip(x, points):
            face = color if point["seeds"] > 1 else "white"
            marker = {"marker": "o" if index == 0 else "s", "color": color, "markerfacecolor": face, "zorder": 3}
            top.plot([xi], [point["accuracy"]], **marker)
            if point["gain"]:
                middle.plot([xi], [point["gain"][0] * 100], **marker)
            if point["agreement"] is not None:
                bottom.plot([xi], [point["agreement"]], **marker)
    for teacher, name in TEACHER_NAMES.items():
        mine = made_by(runs[runs[records.ARCH] == teacher], [result for result in results if result["teacher"] == teacher])
        accuracies = mine["test.teacher.accuracy"]
        if len(accuracies):
            top.axhline(float(accuracies.mean()), color=COLORS[teacher], linestyle=":", label=f"{name} (all images)")
    middle.axhline(0, color="black", linewidth=0.8)
    top.set(xscale="log", ylabel="test accuracy", title="Distillation by labelled share (mean ± sd over seeds)")
    middle.set(ylabel="KD gain, points\n(paired, 95% CI)")
    bottom.set(xlabel="labelled images: share of the 55,000 training images (log scale)",
               ylabel="top-1 agreement\nwith the teacher")
    bottom.set_xticks(fractions, [f"{fraction:.0%}" for fraction in fractions])
    handles, names = top.get_legend_handles_labels()
    figure.tight_layout()
    figure.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(0.08, 0), frameon=False,
                  title="hollow marker: one seed, no spread and no test", title_fontsize=7, alignment="left")
    with outputs.replacing(path) as partial:
        figure.savefig(partial, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(figure)


def variants(runs: pd.DataFrame) -> list[dict]:
    """A verdict per recipe change, teacher, size, T, alpha and code version, for the runs outside the
    sweep (records.recipe_changes names how each departs from params.yaml): their T and alpha were
    fixed before they ran, so none was used to choose. They count on the sweep's verdict seeds alone
    all the same, so that every verdict in the report stands on seeds disjoint from its selection seeds."""
    results = []
    keys = [RECIPE, records.ARCH, records.FRACTION, records.TEMPERATURE, records.ALPHA, records.CODE]
    runs = runs[~runs[records.SEED].isin(list(sweep.SELECTION_SEEDS))]
    for (recipe, teacher, fraction, temperature, alpha, code), cell in runs.groupby(keys, sort=True):
        results.append({"recipe": recipe, "teacher": teacher, "fraction": float(fraction), "temperature": float(temperature),
                        "alpha": float(alpha), "code": [str(code)], "seeds_wanted": len(cell), **verdict(cell)})
    return results


def variant_table(results: list[dict]) -> str:
    lines = [
        "| recipe (besides params.yaml) | teacher | labelled | T | alpha | seeds | teacher acc | student acc | distilled acc "
        "| KD gain | 95% CI | p (paired t) | gap recovered | agreement: student / distilled | code |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        student_agreement, distilled_agreement = result["agreement"]
        agreement = "–" if distilled_agreement is None else f"{student_agreement:.3f} / {distilled_agreement:.3f}"
        lines.append(
            f"| {result['recipe']} | {result['teacher']} | {result['fraction']:.0%} | {result['temperature']:g} | "
            f"{result['alpha']:g} | {seeds_cell(result['seeds'])} | {verdict_cells(result)} | {agreement} | "
            f"{result['code'][0]} |"
        )
    return "\n".join(lines) + "\n"


def seeds_cell(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{len(seeds)} ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


# The targets for the variants at 1% of the labels, with the CNN teacher: the share of the
# gap a significant gain must recover, by the recipe change that names the variant.
VARIANT_TARGETS = {"distill.transfer=all": 0.60, "distill.views=consistent": 0.40}
TARGET_SEEDS = 5  # a target is judged over at least this many verdict seeds


def variant_findings(results: list[dict]) -> list[str]:
    """A sentence per variant verdict over more than one seed, with its target where it has one."""
    lines = []
    for result in results:
        if len(result["seeds"]) < 2:
            continue
        changes = result["recipe"].split(", ")
        target = next((share for change, share in VARIANT_TARGETS.items() if change in changes), None)
        verdict_text = ""
        if target is not None and result["teacher"] == "cnn" and result["fraction"] == 0.01:
            if len(result["seeds"]) < TARGET_SEEDS:
                verdict_text = f"; target {target:.0%}: not judged on {len(result['seeds'])} of {TARGET_SEEDS} seeds"
            else:
                met = significant(result) and (result["gap_recovered"] or 0) >= target
                verdict_text = f"; target {target:.0%}: {'met' if met else 'missed'}"
        direction = "helps" if significant(result) else (
            "hurts" if result["p_value"] is not None and result["p_value"] < SIGNIFICANCE else "no significant change")
        lines.append(
            f"- {result['recipe']} (T = {result['temperature']:g}, alpha = {result['alpha']:g}), "
            f"{TEACHER_NAMES[result['teacher']]}, {result['fraction']:.0%} labelled, "
            f"{len(result['seeds'])} seeds: {direction}, gain {_shown(result['gain'][0] * 100, 2):+.2f} points "
            f"(p = {_p(result['p_value'])}), {_gap_phrase(result)}{verdict_text}."
        )
    return lines


def write_report(runs: pd.DataFrame, out: Path, others: pd.DataFrame | None = None) -> list[dict]:
    """reports/ from the sweep's records (`runs`, params.yaml's recipe) and the variants' (`others`,
    with their RECIPE column)."""
    out.mkdir(parents=True, exist_ok=True)
    results = analyse(runs)
    extra = variants(others) if others is not None and not others.empty else []
    shown = headline(results, runs)
    curve(shown, runs, out / "kd_curve.png", extra)
    outputs.write_json(out / "summary.json", {"runs": len(runs), "results": results,
                                              **({"variants": extra} if extra else {})})
    outputs.write_text(
        out / "README.md",
        "# When does distillation help? Labels, unlabelled transfer images and consistent views\n\n"
        f"Written by `make report` from [runs.csv](runs.csv) alone ({len(runs) + len(others if others is not None else ())} "
        "runs). Each point: a "
        "student trained on a stratified share of the training split with its labels, and distilled with the teacher. "
        "Teachers always train on every training image; validation and test never change. The sweep (KD on the labelled "
        "images, T and alpha chosen on validation) uses the 784-128-10 MLP student; each variant names what it changes.\n\n"
        "![test accuracy, KD gain and agreement with the teacher against the labelled share](kd_curve.png)\n\n"
        + "\n".join(findings(shown) + variant_findings(extra)) + "\n\n"
        + versions_line(runs if others is None else pd.concat([runs, others])) + "\n\n"
        "## Verdict: distilled against baseline, paired by student seed, on the test set\n\n"
        "T and alpha chosen on validation at each size (below). KD gain: mean of the paired test-accuracy "
        "differences; its 95% confidence interval and the paired t-test's two-sided p-value; gap recovered: mean gain "
        "/ mean (teacher − student), where the same paired test finds that gap (–: none to recover).\n\n"
        + verdict_table(results)
        + "\n## Selection: the distilled student's mean validation accuracy, seeds "
        + ", ".join(map(str, sweep.SELECTION_SEEDS)) + " (bold: chosen)\n\n"
        + grid_table(results)
        + (("\n## Variants: every training image as transfer set, consistent views, other students and schedules\n\n"
            "Each row departs from params.yaml as its first column says (and by teacher, size, T and alpha). T and "
            "alpha were fixed before the runs, so no seed was used to choose; even so only the verdict seeds count ("
            + ", ".join(map(str, sweep.SELECTION_SEEDS)) + " left out). Paired by student seed as above, against "
            "a baseline trained with the same student recipe. Agreement: top-1 agreement with the teacher on the test "
            "set.\n\n" + variant_table(extra))
           if extra else ""),
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=records.RUNS_FILE)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the recipe the sweep's runs share")
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args()
    everything = records.load(args.runs)
    if everything.empty:
        sys.exit(f"error: {args.runs}: no runs recorded; run the sweep (README: Experiments)")
    everything[RECIPE] = records.recipe_changes(everything, params.parse_yaml(args.params.read_text()))
    runs = everything[everything[RECIPE] == ""].drop(columns=RECIPE)
    if runs.empty:
        sys.exit(f"error: {args.runs}: no run with this params.yaml's recipe; run the sweep (README: Experiments)")
    write_report(runs, args.out, everything[everything[RECIPE] != ""])


if __name__ == "__main__":
    main()
