"""The report command on a saved `dvc exp show --json` from the real sweep (tests/fixtures/)."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools import report

FIXTURES = Path(__file__).parent / "fixtures"
EXP_SHOW = json.loads((FIXTURES / "exp_show.json").read_text())
BASELINE = yaml.safe_load((FIXTURES / "params.yaml").read_text())


def raw_experiments():
    """Every experiment's (params, distilled validation accuracy, evaluate.json), read straight from the JSON."""
    found = []
    for commit in EXP_SHOW:
        for experiment in commit.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                found.append((
                    data["params"]["params.yaml"]["data"],
                    data["metrics"]["metrics/training/distilled.json"]["data"]["val_accuracy"],
                    data["metrics"]["metrics/evaluate.json"]["data"],
                ))
    return found


def test_every_finished_experiment_becomes_a_run():
    runs = report.comparable(report.runs_from_exp_show(EXP_SHOW), BASELINE)
    settings = {(run.temperature, run.alpha, run.seed) for run in runs}
    assert {(t, a, 42) for t in (1, 2, 4, 8, 16) for a in (0.0, 0.1, 0.5, 0.9)} <= settings
    assert len(settings) == len(runs)  # one run per setting, duplicates dropped


def test_selection_is_the_best_validation_cell():
    grid = [(p, val) for p, val, _ in raw_experiments() if p["student"]["seed"] == 42]
    best_params, best_val = max(grid, key=lambda item: item[1])
    runs = report.comparable(report.runs_from_exp_show(EXP_SHOW), BASELINE)
    chosen = report.select([run for run in runs if run.seed == 42])
    assert chosen.val["val_accuracy"] == best_val
    assert (chosen.temperature, chosen.alpha) == (best_params["distill"]["temperature"], best_params["distill"]["alpha"])


def test_seed_spread_and_kd_gain_by_hand(tmp_path):
    result = report.write_report(report.runs_from_exp_show(EXP_SHOW), BASELINE, tmp_path, curves_dir=None)
    chosen = (result["chosen"]["temperature"], result["chosen"]["alpha"])
    seeds = {
        p["student"]["seed"]: test
        for p, _, test in raw_experiments()
        if (p["distill"]["temperature"], p["distill"]["alpha"]) == chosen
    }
    assert result["seeds"] == sorted(seeds)
    assert len(seeds) >= 5
    distilled = [test["distilled"]["accuracy"] for test in seeds.values()]
    student = [test["student"]["accuracy"] for test in seeds.values()]
    teacher = [test["teacher"]["accuracy"] for test in seeds.values()]
    assert result["table"]["distilled"]["accuracy"] == pytest.approx((statistics.mean(distilled), statistics.stdev(distilled)))
    gains = [d - s for d, s in zip(distilled, student)]
    assert result["kd_gain"] == pytest.approx((statistics.mean(gains), statistics.stdev(gains)))
    assert result["gap_recovered"] == pytest.approx(statistics.mean(gains) / statistics.mean([t - s for t, s in zip(teacher, student)]))
    assert result["table"]["teacher"]["accuracy"][1] == pytest.approx(0.0)  # the teacher is fixed across seeds


def test_report_files(tmp_path):
    out = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, "-m", "tools.report", "--exp-show", str(FIXTURES / "exp_show.json"),
         "--params", str(FIXTURES / "params.yaml"), "--curves", str(tmp_path / "no-curves"), "--out", str(out)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )
    assert "learning_curves.png not written" in result.stderr
    assert not (out / "learning_curves.png").exists()
    assert (out / "sweep_val_accuracy.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    summary = json.loads((out / "summary.json").read_text())
    readme = (out / "README.md").read_text()
    assert f"T = {summary['chosen']['temperature']:g}, alpha = {summary['chosen']['alpha']:g}" in readme
    rows = (out / "experiments.md").read_text().splitlines()
    assert len(rows) == 2 + len(report.comparable(report.runs_from_exp_show(EXP_SHOW), BASELINE))


def test_no_experiments_is_a_clear_error(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    result = subprocess.run(
        [sys.executable, "-m", "tools.report", "--exp-show", str(tmp_path / "empty.json"), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no finished experiment found; run the sweep first (see README, Experiments)"
