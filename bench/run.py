"""Measures what the pipeline costs, as ratios taken in one run on one machine.

    python -m bench.run --mode full    # the numbers in the README (about 8 minutes on 2 cores)
    python -m bench.run --mode fast    # a quick check on a subset (about 1 minute)

It copies the project into a temporary git repo, runs the real `dvc` there, and then times
training epochs in-process on the data and teacher that run produced. Results go to
bench/results/<mode>.json and bench/results/<mode>.md; the table is also printed.
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from stages import outputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dvc_repo import Repo  # noqa: E402  (the same throwaway-repo helper the end-to-end tests use)

MODES = {
    # prepare/teacher/student overrides for the pipeline run, and epochs timed per model in-process
    "fast": ({"prepare": {"subset": 6000, "val_size": 1000}, "teacher": {"epochs": 2}, "student": {"epochs": 2}}, 4),
    "full": ({}, 6),
}
TARGETS = {
    "distill_over_student_epoch": ("<=", 1.10),
    "new_temperature_over_full_repro": ("<=", 0.30),
    "noop_repro_s": ("<=", 2.0),
    "max_stage_peak_rss_mib": ("<=", 1144),  # 1.2 GB
}


def timed(action):
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def stage_resources(dvc_output: str) -> dict[str, dict]:
    """Each stage's own report, printed by stages.cli when it ends: seconds and peak memory."""
    report, stage = {}, None
    for line in dvc_output.splitlines():
        if match := re.match(r"Running stage '([^']+)'", line):
            stage = match.group(1)
        elif stage and (match := re.search(r"finished in ([\d.]+) s, peak memory (\d+) MiB", line)):
            report[stage] = {"seconds": float(match.group(1)), "peak_rss_mib": int(match.group(2))}
    return report


def pipeline_timings(repo: Repo, new_temperature: float) -> dict:
    full_s, output = timed(lambda: repo.dvc("repro", "--force"))
    repo.commit("pipeline run")
    noop_s, _ = timed(lambda: repo.dvc("repro"))
    new_t_s, _ = timed(lambda: repo.dvc("exp", "run", "-S", f"distill.temperature={new_temperature}"))
    return {
        "full_repro_s": round(full_s, 2),
        "new_temperature_s": round(new_t_s, 2),
        "new_temperature_over_full_repro": round(new_t_s / full_s, 3),
        "noop_repro_s": round(noop_s, 2),
        "stages": stage_resources(output),
    }


def epoch_timings(repo: Repo, epochs: int) -> dict:
    """Median epoch seconds (first epoch, which traces the graph, left out) for student, distill and reference."""
    os.chdir(repo.path)  # the stages read params.yaml and data/ from the working directory
    import keras

    from bench import reference_distill
    from stages import data, losses, models, params

    config = params.load()
    recipe = config.student.model_copy(update={"epochs": epochs, "patience": epochs})
    train, val = data.load_split("train"), data.load_split("val")
    teacher = models.load_model("teacher", config.teacher.hidden_units, models.weights_path("teacher"))
    label_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    def median_epoch(model, x, y, x_val, y_val, loss=None):
        """Median epoch seconds of the pipeline's own training loop; the first epoch, which traces, left out."""
        clock = EpochClock()
        models.make_deterministic(config.student.seed)  # as the stages run: op determinism on
        models.fit(model, recipe, x, y, x_val, y_val, stage="bench", recipe_name="student", loss=loss,
                   callbacks=[clock])
        return statistics.median(clock.seconds[1:])

    def distill_targets(split):
        return {"label": split.labels, "teacher_logits": models.predict_logits(teacher, split)}

    student_s = median_epoch(models.build_mlp(recipe.hidden_units, "student"),
                             train.images, train.labels, val.images, val.labels, label_loss)
    logits_s, targets = timed(lambda: (distill_targets(train), distill_targets(val)))
    distiller = losses.TeacherLogitsDistiller(
        models.build_mlp(recipe.hidden_units, "distilled"),
        losses.DistillationLoss(config.distill.temperature, config.distill.alpha),
    )
    distill_s = median_epoch(distiller, train.images, targets[0], val.images, targets[1])
    reference = reference_distill.build(teacher, recipe, config.distill)
    reference_s = median_epoch(reference, train.images, train.labels, val.images, val.labels, label_loss)
    return {
        "epochs_timed": epochs - 1,
        "student_epoch_s": round(student_s, 3),
        "distill_epoch_s": round(distill_s, 3),
        "reference_distill_epoch_s": round(reference_s, 3),
        "teacher_logits_once_s": round(logits_s, 3),
        "distill_over_student_epoch": round(distill_s / student_s, 3),
        "reference_over_student_epoch": round(reference_s / student_s, 3),
    }


def machine() -> dict:
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": " avx512f " in flags,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def verdicts(results: dict) -> dict:
    values = {
        "distill_over_student_epoch": results["epochs"]["distill_over_student_epoch"],
        "new_temperature_over_full_repro": results["pipeline"]["new_temperature_over_full_repro"],
        "noop_repro_s": results["pipeline"]["noop_repro_s"],
        "max_stage_peak_rss_mib": max(stage["peak_rss_mib"] for stage in results["pipeline"]["stages"].values()),
    }
    return {name: {"value": value, "target": f"{TARGETS[name][0]} {TARGETS[name][1]}", "holds": value <= TARGETS[name][1]}
            for name, value in values.items()}


def markdown(results: dict) -> str:
    epochs, pipeline = results["epochs"], results["pipeline"]
    lines = [
        f"Benchmark ({results['mode']} mode) on {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"TensorFlow {results['machine']['tensorflow']}",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| distill epoch / student epoch | {epochs['distill_over_student_epoch']:.3f} "
        f"({epochs['distill_epoch_s']:.2f} s / {epochs['student_epoch_s']:.2f} s) | <= 1.10 |",
        f"| reference-style distill epoch (teacher every step) / student epoch | "
        f"{epochs['reference_over_student_epoch']:.3f} ({epochs['reference_distill_epoch_s']:.2f} s) | for comparison |",
        f"| teacher logits for train + val, once per run | {epochs['teacher_logits_once_s']:.2f} s | |",
        f"| `dvc exp run -S distill.temperature=...` / `dvc repro -f` | {pipeline['new_temperature_over_full_repro']:.3f} "
        f"({pipeline['new_temperature_s']:.1f} s / {pipeline['full_repro_s']:.1f} s) | <= 0.30 |",
        f"| no-op `dvc repro` | {pipeline['noop_repro_s']:.2f} s | <= 2 s |",
    ]
    for stage, usage in pipeline["stages"].items():
        lines.append(f"| peak RSS, {stage} | {usage['peak_rss_mib']} MiB ({usage['seconds']:.1f} s) | <= 1144 MiB (1.2 GB) |")
    failed = [name for name, verdict in results["targets"].items() if not verdict["holds"]]
    lines += ["", f"Targets missed: {', '.join(failed)}" if failed else "All targets hold."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="fast")
    mode = parser.parse_args().mode
    overrides, epochs = MODES[mode]

    with tempfile.TemporaryDirectory(prefix="kd-bench-") as workdir:
        repo = Repo.copy_of_project(Path(workdir), **overrides)
        default_temperature = yaml.safe_load(repo.read("params.yaml"))["distill"]["temperature"]
        results = {"mode": mode, "machine": machine()}
        results["pipeline"] = pipeline_timings(repo, new_temperature=default_temperature * 2)
        results["epochs"] = epoch_timings(repo, epochs)
        os.chdir(ROOT)
    results["targets"] = verdicts(results)

    out = ROOT / "bench" / "results"
    outputs.write_json(out / f"{mode}.json", results)
    table = markdown(results)
    outputs.write_text(out / f"{mode}.md", table)
    print(table)


if __name__ == "__main__":
    main()
