"""Measures what the pipeline costs, as ratios taken in one run on one machine.

    python -m bench.run --mode full    # the numbers in docs/performance.md (27 minutes on 2 cores)
    python -m bench.run --mode fast    # a quick check on a subset (about 5 minutes)

It copies the project into a temporary git repo, runs the real `dvc` there, and then times
training epochs on the data and teacher that run produced, the old and new engines alternating in
processes of their own (bench/epochs.py). Results go to
bench/results/<mode>.json and bench/results/<mode>.md; the table is also printed.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from bench import timed
from common import outputs
from common.scratch_repo import Repo

ROOT = Path(__file__).resolve().parents[1]

MODES = {
    # prepare/teacher/student overrides for the pipeline run, epochs per timing process, teacher epochs timed
    "fast": ({"prepare": {"subset": 6000, "val_size": 1000}, "teacher": {"epochs": 2}, "student": {"epochs": 2}}, 4, 3),
    "full": ({}, 8, 3),
}
TARGETS = {
    "student_speedup": (">=", 1.6),
    "student_over_matmul": (">=", 0.75),
    "distill_over_student_epoch": ("<=", 1.05),
    "new_temperature_over_full_repro": ("<=", 0.25),
    "noop_repro_s": ("<=", 2.0),
    "max_stage_peak_rss_mib": ("<=", 1144),  # 1.2 GB
    # What portable numerics (AVX2 kernels, a pool of 2 threads) may cost against native ones.
    "portable_over_native_student": ("<=", 1.15),
    "portable_over_native_distill": ("<=", 1.15),
    "portable_over_native_teacher": ("<=", 1.15),
}
# The engines timed in alternation: bench.epochs' engine and the train.numerics it runs under.
ENGINES = {"old": ("old", "portable"), "new": ("new", "portable"), "native": ("new", "native")}


def stage_resources(dvc_output: str) -> dict[str, dict]:
    """Each stage's own report, printed by common.cli when it ends: seconds and peak memory."""
    report, stage = {}, None
    for line in dvc_output.splitlines():
        if match := re.match(r"Running stage '([^']+)'", line):
            stage = match.group(1)
        elif stage and (match := re.search(
                r"finished in ([\d.]+) s after ([\d.]+) s of imports, peak memory (\d+) MiB", line)):
            report[stage] = {"seconds": float(match.group(1)), "imports_s": float(match.group(2)),
                             "peak_rss_mib": int(match.group(3))}
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


@contextlib.contextmanager
def numerics_mode(repo: Repo, mode: str):
    """params.yaml's train.numerics set to `mode` for the processes started inside, as it was after."""
    original = repo.read("params.yaml")
    repo.update_params(train={"numerics": mode})
    try:
        yield
    finally:
        (repo.path / "params.yaml").write_bytes(original)


def epochs_process(repo: Repo, engine: str, mode: str, epochs: int, *prefix: str) -> dict:
    """One bench.epochs process's report, under `mode` numerics, after `prefix` (taskset, say)."""
    with numerics_mode(repo, mode):
        output = repo.run(*prefix, sys.executable, "-m", "bench.epochs", engine, str(epochs))
    report = json.loads(output.strip().splitlines()[-1])
    assert report["numerics"] == mode, f"bench.epochs ran under {report['numerics']} numerics, not {mode}"
    return report


def epoch_timings(repo: Repo, epochs: int, rounds: int = 3) -> dict:
    """Epoch times of the old and new engines, and of the new one under native numerics, each in its
    own process, alternated `rounds` times.

    On a shared VM an epoch takes either its own time or up to 1.7 times that, as neighbours come
    and go; noise only ever adds. So each engine's figure is its fastest epoch over all rounds, the
    matmul reference being a fastest run too; medians are reported beside it.
    """
    runs = {name: [] for name in ENGINES}
    for _ in range(rounds):
        for name, (engine, mode) in ENGINES.items():
            runs[name].append(epochs_process(repo, engine, mode, epochs))

    def epochs_of(engine: str, model: str) -> list[float]:
        return [seconds for run in runs[engine] for seconds in run[model]["epochs_s"]]

    def fastest(engine: str, model: str) -> float:
        return min(epochs_of(engine, model))

    def median(engine: str, model: str) -> float:
        return round(statistics.median(epochs_of(engine, model)), 3)

    first = runs["new"][0]
    # Conventional training FLOPs: 2 per weight forward and 4 backward per training image, 2 per
    # validation image (the input gradient of the first layer, counted here, is never computed).
    epoch_gflop = first["student_weights"] * (6 * first["train_images"] + 2 * first["val_images"]) / 1e9
    old_student, new_student = fastest("old", "student"), fastest("new", "student")
    new_distill = fastest("new", "distill")
    native_student, native_distill = fastest("native", "student"), fastest("native", "distill")
    # The fastest of each reference, as for the epochs.
    matmul = max(run["matmul_gflops"]["per_call"] for run in runs["new"])
    chained = max(run["matmul_gflops"]["chained"] for run in runs["new"])
    return {
        "epochs_timed": rounds * (epochs - 1),
        "rounds": rounds,
        "old_student_epoch_s": old_student,
        "old_distill_epoch_s": fastest("old", "distill"),
        "reference_distill_epoch_s": fastest("old", "reference_distill"),
        "student_epoch_s": new_student,
        "distill_epoch_s": new_distill,
        "native_student_epoch_s": native_student,
        "native_distill_epoch_s": native_distill,
        "portable_over_native_student": round(new_student / native_student, 3),
        "portable_over_native_distill": round(new_distill / native_distill, 3),
        "median_epoch_s": {engine: {model: median(engine, model) for model in ("student", "distill")} for engine in runs},
        "student_first_epoch_s": {engine: min(run["student"]["first_epoch_s"] for run in runs[engine]) for engine in runs},
        "imports_s": min(run["imports_s"] for run in runs["new"]),
        "teacher_logits_once_s": min(run["teacher_logits_s"] for run in runs["new"]),
        "student_speedup": round(old_student / new_student, 3),
        "distill_over_student_epoch": round(new_distill / new_student, 3),
        "views_distill_epoch_s": fastest("new", "views_distill"),
        "views_over_fixed_distill_epoch": round(fastest("new", "views_distill") / new_distill, 3),
        "reference_over_student_epoch": round(fastest("old", "reference_distill") / old_student, 3),
        "student_epoch_gflop": round(epoch_gflop, 2),
        "student_gflops": round(epoch_gflop / new_student, 1),
        "old_student_gflops": round(epoch_gflop / old_student, 1),
        "matmul_gflops": matmul,
        "student_over_matmul": round(epoch_gflop / new_student / matmul, 3),
        "matmul_chained_gflops": chained,
        "student_over_chained_matmul": round(epoch_gflop / new_student / chained, 3),
        "runs": runs,
    }


def teacher_timings(repo: Repo, epochs: int) -> dict:
    """The teacher's epochs under portable and native numerics, one process each."""
    return {mode: epochs_process(repo, "teacher", mode, epochs) for mode in ("portable", "native")}


def one_core_timings(repo: Repo, epochs: int, teacher_epochs: int) -> dict:
    """Portable against native numerics with the processes held to one core (`taskset -c 0`): native
    mode then runs one thread, portable mode still two, taking turns on the core."""
    timings = {}
    for mode in ("portable", "native"):
        student = epochs_process(repo, "new", mode, epochs, "taskset", "-c", "0")
        teacher = epochs_process(repo, "teacher", mode, teacher_epochs, "taskset", "-c", "0")
        timings[mode] = {"student_epoch_s": min(student["student"]["epochs_s"]),
                         "distill_epoch_s": min(student["distill"]["epochs_s"]), "teacher_epoch_s": teacher["epoch_s"]}
    return timings


def machine() -> dict:
    import tensorflow as tf

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": " avx512f " in flags,
        "avx2": " avx2 " in flags,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def verdicts(results: dict) -> dict:
    values = {
        "student_speedup": results["epochs"]["student_speedup"],
        "student_over_matmul": results["epochs"]["student_over_matmul"],
        "distill_over_student_epoch": results["epochs"]["distill_over_student_epoch"],
        "new_temperature_over_full_repro": results["pipeline"]["new_temperature_over_full_repro"],
        "noop_repro_s": results["pipeline"]["noop_repro_s"],
        "max_stage_peak_rss_mib": max(stage["peak_rss_mib"] for stage in results["pipeline"]["stages"].values()),
        "portable_over_native_student": results["epochs"]["portable_over_native_student"],
        "portable_over_native_distill": results["epochs"]["portable_over_native_distill"],
        "portable_over_native_teacher": round(
            results["teacher"]["portable"]["epoch_s"] / results["teacher"]["native"]["epoch_s"], 3),
    }
    verdict = {}
    for name, value in values.items():
        sense, target = TARGETS[name]
        verdict[name] = {"value": value, "target": f"{sense} {target}",
                         "holds": value >= target if sense == ">=" else value <= target}
    return verdict


def markdown(results: dict) -> str:
    epochs, pipeline, targets = results["epochs"], results["pipeline"], results["targets"]
    teacher, native_teacher, one_core = results["teacher"]["portable"], results["teacher"]["native"], results["one_core"]

    def mark(name: str) -> str:
        return f"{targets[name]['target']} ({'holds' if targets[name]['holds'] else 'missed'})"

    lines = [
        f"Benchmark ({results['mode']} mode) on {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{'AVX-512' if results['machine']['avx512'] else 'AVX2 at most'}, "
        f"TensorFlow {results['machine']['tensorflow']}. Old and new engines under portable numerics, "
        f"native: the new engine under native numerics. Old engine: no XLA, 1 step per call, op determinism, "
        f"Keras's feeding of arrays; new: params.yaml's train section, whole-pass batches (feeding.epoch_batches). "
        f"Epoch figures: the fastest of {epochs['epochs_timed']} epochs "
        f"({epochs['rounds']} alternating rounds, first epochs left out); medians, noise included, in their own rows.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| student epoch, old engine / new | {epochs['student_speedup']:.2f}x "
        f"({epochs['old_student_epoch_s']:.3f} s / {epochs['student_epoch_s']:.3f} s) | {mark('student_speedup')} |",
        f"| student training rate / student-shaped matmul rate, one product per call | {epochs['student_over_matmul']:.2f} "
        f"({epochs['student_gflops']:.0f} / {epochs['matmul_gflops']:.0f} GFLOP/s; old engine "
        f"{epochs['old_student_gflops']:.0f}) | {mark('student_over_matmul')} |",
        f"| student training rate / the same matmul, 400 products in one XLA call (no per-call cost) | "
        f"{epochs['student_over_chained_matmul']:.2f} ({epochs['student_gflops']:.0f} / "
        f"{epochs['matmul_chained_gflops']:.0f} GFLOP/s) | reported |",
        f"| distill epoch / student epoch (new engine) | {epochs['distill_over_student_epoch']:.3f} "
        f"({epochs['distill_epoch_s']:.3f} s / {epochs['student_epoch_s']:.3f} s) | {mark('distill_over_student_epoch')} |",
        f"| distill epoch, old engine | {epochs['old_distill_epoch_s']:.3f} s | for comparison |",
        f"| consistent-views distill epoch (teacher in every step) / fixed-logits distill epoch | "
        f"{epochs['views_over_fixed_distill_epoch']:.3f} ({epochs['views_distill_epoch_s']:.3f} s / "
        f"{epochs['distill_epoch_s']:.3f} s) | for comparison |",
        f"| reference-style distill epoch (teacher every step) / student epoch, old engine | "
        f"{epochs['reference_over_student_epoch']:.3f} ({epochs['reference_distill_epoch_s']:.2f} s) | for comparison |",
        f"| first student epoch (tracing, XLA compilation), old / new | "
        f"{epochs['student_first_epoch_s']['old']:.2f} s / {epochs['student_first_epoch_s']['new']:.2f} s | |",
        f"| median epochs, old engine: student / distill | {epochs['median_epoch_s']['old']['student']:.3f} s / "
        f"{epochs['median_epoch_s']['old']['distill']:.3f} s | noise included |",
        f"| median epochs, new engine: student / distill | {epochs['median_epoch_s']['new']['student']:.3f} s / "
        f"{epochs['median_epoch_s']['new']['distill']:.3f} s | noise included |",
        f"| {teacher['arch'].upper()} teacher epoch ({'XLA' if teacher['xla'] else 'no XLA'}), fastest of "
        f"{len(teacher['epochs_s'])}; first epoch | {teacher['epoch_s']:.2f} s; {teacher['first_epoch_s']:.2f} s | |",
        f"| {teacher['arch'].upper()} teacher training rate / its convolution's rate ({teacher['conv_reference']}) | "
        f"{teacher['gflops'] / teacher['conv_gflops']:.2f} ({teacher['gflops']:.0f} / {teacher['conv_gflops']:.0f} GFLOP/s) "
        f"| reported |",
        f"| portable / native numerics, student epoch | {targets['portable_over_native_student']['value']:.3f} "
        f"({epochs['student_epoch_s']:.3f} s / {epochs['native_student_epoch_s']:.3f} s) | "
        f"{mark('portable_over_native_student')} |",
        f"| portable / native numerics, distill epoch | {targets['portable_over_native_distill']['value']:.3f} "
        f"({epochs['distill_epoch_s']:.3f} s / {epochs['native_distill_epoch_s']:.3f} s) | "
        f"{mark('portable_over_native_distill')} |",
        f"| portable / native numerics, {teacher['arch'].upper()} teacher epoch | "
        f"{targets['portable_over_native_teacher']['value']:.3f} ({teacher['epoch_s']:.2f} s / "
        f"{native_teacher['epoch_s']:.2f} s; its convolution {teacher['conv_gflops']:.0f} / "
        f"{native_teacher['conv_gflops']:.0f} GFLOP/s) | {mark('portable_over_native_teacher')} |",
        *(f"| one core (`taskset -c 0`), portable / native numerics, {label} epoch | "
          f"{one_core['portable'][key] / one_core['native'][key]:.3f} ({one_core['portable'][key]:.3f} s / "
          f"{one_core['native'][key]:.3f} s) | reported |"
          for label, key in (("student", "student_epoch_s"), ("distill", "distill_epoch_s"),
                             (f"{teacher['arch'].upper()} teacher", "teacher_epoch_s"))),
        f"| imports of a training process | {epochs['imports_s']:.2f} s | |",
        f"| teacher logits for train + val, once per run | {epochs['teacher_logits_once_s']:.2f} s | |",
        f"| `dvc exp run -S distill.temperature=...` / `dvc repro -f` | {pipeline['new_temperature_over_full_repro']:.3f} "
        f"({pipeline['new_temperature_s']:.1f} s / {pipeline['full_repro_s']:.1f} s) | {mark('new_temperature_over_full_repro')} |",
        f"| no-op `dvc repro` | {pipeline['noop_repro_s']:.2f} s | {mark('noop_repro_s')} |",
    ]
    sense, limit = TARGETS["max_stage_peak_rss_mib"]
    for stage, usage in pipeline["stages"].items():
        within = "holds" if usage["peak_rss_mib"] <= limit else "missed"
        lines.append(f"| {stage}: time (of which imports), peak RSS | {usage['seconds']:.1f} s "
                     f"({usage['imports_s']:.1f} s), {usage['peak_rss_mib']} MiB | peak {sense} {limit} ({within}) |")
    failed = [name for name, verdict in targets.items() if not verdict["holds"]]
    lines += ["", f"Targets missed: {', '.join(failed)}" if failed else "All targets hold."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="fast")
    mode = parser.parse_args().mode
    overrides, epochs, teacher_epochs = MODES[mode]

    with tempfile.TemporaryDirectory(prefix="kd-bench-") as workdir:
        repo = Repo.copy_of_project(Path(workdir), **overrides)
        default_temperature = yaml.safe_load(repo.read("params.yaml"))["distill"]["temperature"]
        results = {"mode": mode, "machine": machine()}
        results["pipeline"] = pipeline_timings(repo, new_temperature=default_temperature * 2)
        results["epochs"] = epoch_timings(repo, epochs)
        results["teacher"] = teacher_timings(repo, teacher_epochs)
        results["one_core"] = one_core_timings(repo, epochs, teacher_epochs)
    results["targets"] = verdicts(results)

    out = ROOT / "bench" / "results"
    outputs.write_json(out / f"{mode}.json", results)
    table = markdown(results)
    outputs.write_text(out / f"{mode}.md", table)
    print(table)


if __name__ == "__main__":
    main()
