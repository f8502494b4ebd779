"""Size and speed of every exported model, in one run: `make bench-inference` (after `make repro`).

    python -m bench.inference                 # all models and formats -> bench/results/inference.{json,md,png}
    python -m bench.inference --threads 1     # one worker: what the main run starts once per thread count

For each model (teacher, student, distilled) and format (SavedModel, float32 and int8 LiteRT):
file size, batch-1 latency (p50 and p99 over single-image calls) and batch-256 throughput, on one
thread and on all cores. Each thread count runs in a process of its own, because TensorFlow fixes its
thread pools at start-up. Test accuracy comes from metrics/export.json, which the export stage wrote
for the same files. Timings stay out of DVC's metrics: they change from run to run, and `dvc repro -f`
must leave dvc.lock byte-identical.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import data, deploy, outputs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = ("teacher", "student", "distilled")
LATENCY_CALLS, THROUGHPUT_CALLS, BATCH = 300, 20, 256


def percentiles(call, images: np.ndarray, calls: int) -> list[float]:
    """Seconds per call of `call` on one image at a time, after a warm-up."""
    for image in images[:20]:
        call(image[None])
    seconds = []
    for index in range(calls):
        start = time.perf_counter()
        call(images[index % len(images)][None])
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(call, images: np.ndarray) -> dict:
    single = percentiles(call, images, LATENCY_CALLS)
    batch = images[:BATCH]
    call(batch)
    start = time.perf_counter()
    for _ in range(THROUGHPUT_CALLS):
        call(batch)
    return {
        "latency_p50_ms": round(float(np.percentile(single, 50)) * 1e3, 4),
        "latency_p99_ms": round(float(np.percentile(single, 99)) * 1e3, 4),
        "throughput_images_s": round(THROUGHPUT_CALLS * BATCH / (time.perf_counter() - start), 1),
    }


def worker(threads: int) -> dict:
    """Every model and format at `threads` threads, in this process."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    images = data.load_split("test", data.load_dataset()).images[:1000]  # whatever data the pipeline prepared
    results = {}
    for model in MODELS:
        serve = tf.saved_model.load(str(deploy.export_path(model, deploy.SAVED_MODEL))).signatures[deploy.SIGNATURE]
        results[f"{model}/{deploy.SAVED_MODEL}"] = measure(lambda batch: serve(image=tf.constant(batch)), images)
        for file_format in (deploy.FLOAT32, deploy.INT8):
            interpreter = deploy.tflite_interpreter(deploy.export_path(model, file_format), threads)
            results[f"{model}/{file_format}"] = measure(lambda batch: deploy.run_tflite(interpreter, batch), images)
    return results


def run_worker(threads: int) -> dict:
    command = [sys.executable, "-m", "bench.inference", "--threads", str(threads)]
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| model | format | size (KB) | test accuracy | batch-1 p50 / p99 (ms), 1 thread | batch-1 p50 / p99 (ms), all cores | "
        "batch-256 images/s, 1 thread | batch-256 images/s, all cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        one, every = row["one_thread"], row["all_cores"]
        lines.append(
            f"| {row['model']} | {row['format']} | {row['bytes'] / 1000:,.0f} | {row['accuracy']:.4f} | "
            f"{one['latency_p50_ms']:.3f} / {one['latency_p99_ms']:.3f} | {every['latency_p50_ms']:.3f} / "
            f"{every['latency_p99_ms']:.3f} | {one['throughput_images_s']:,.0f} | {every['throughput_images_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def picture(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = {("teacher", deploy.FLOAT32): "teacher", ("student", deploy.FLOAT32): "student",
             ("distilled", deploy.FLOAT32): "distilled", ("distilled", deploy.INT8): "distilled int8"}
    figure, (by_latency, by_size) = plt.subplots(1, 2, figsize=(10, 4), dpi=120, sharey=True)
    for row in rows:
        label = shown.get((row["model"], row["format"]))
        if label is None:
            continue
        for axes, x in ((by_latency, row["one_thread"]["latency_p50_ms"]), (by_size, row["bytes"] / 1000)):
            axes.scatter(x, row["accuracy"], s=40)
            # int8 labels below their point, so they clear the float model's label beside them
            offset = (5, -10) if row["format"] == deploy.INT8 else (5, 4)
            axes.annotate(label, (x, row["accuracy"]), textcoords="offset points", xytext=offset, fontsize=8)
    by_latency.set(xscale="log", xlabel="batch-1 latency, p50 (ms, one thread, LiteRT)", ylabel="test accuracy")
    by_size.set(xscale="log", xlabel="file size (KB)")
    for axes in (by_latency, by_size):
        # Plain numbers on the log axes; matplotlib's minor labels (2x10^-2, ...) run into each other.
        axes.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    figure.suptitle("Accuracy against latency and size of the deployed files")
    figure.tight_layout()
    with outputs.replacing(path) as partial:
        figure.savefig(partial, format="png", metadata={"Software": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="run as a worker at this many threads and print JSON")
    args = parser.parse_args()
    if args.threads:
        print(json.dumps(worker(args.threads)))
        return

    accuracy = json.loads((ROOT / "metrics/export.json").read_text())
    cores = os.cpu_count() or 1
    timings = {"one_thread": run_worker(1), "all_cores": run_worker(cores)}
    rows = [
        {"model": model, "format": file_format,
         "bytes": accuracy[model][file_format]["bytes"], "accuracy": accuracy[model][file_format]["accuracy"],
         **{setting: timings[setting][f"{model}/{file_format}"] for setting in timings}}
        for model in MODELS for file_format in deploy.FORMATS
    ]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": cores, "python": platform.python_version()}
    outputs.write_json(RESULTS / "inference.json", {"machine": machine, "rows": rows})
    outputs.write_text(RESULTS / "inference.md", table(rows))
    picture(rows, RESULTS / "inference.png")
    print(table(rows))


if __name__ == "__main__":
    main()
