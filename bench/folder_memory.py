"""Peak memory of a large folder dataset: Fashion-MNIST written as PNGs, at several sizes.

    python -m bench.folder_memory [--counts 25000 50000 100000] [--side 64]

For each count, the first `count` Fashion-MNIST training images (cycled when more are asked for),
upscaled to side x side and tinted to RGB, are written as PNGs into class folders; then prepare and
one epoch of train@student (the MLP) run on them in a scratch copy of the project, each in its own
process, whose peak resident memory (the stage's own report, from getrusage) is recorded. Results go
to bench/results/folder_memory.{json,md}.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from common import fashion_mnist, outputs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PEAK = re.compile(r"peak memory (\d+) MiB")


def write_images(folder: Path, count: int, side: int) -> None:
    _, _, train, _ = fashion_mnist.load_raw()
    for name in fashion_mnist.CLASS_NAMES:
        (folder / name.replace("/", "-")).mkdir(parents=True)
    for index in range(count):
        row = index % len(train)
        gray = np.asarray(Image.fromarray(train.images[row]).resize((side, side), Image.Resampling.BILINEAR))
        tinted = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
        name = fashion_mnist.CLASS_NAMES[train.labels[row]].replace("/", "-")
        Image.fromarray(tinted).save(folder / name / f"{index:06d}.png", compress_level=1)


def scratch_project(where: Path, images: Path, count: int) -> Path:
    project = where / "project"
    for part in ("common", "stages"):
        shutil.copytree(ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values["data"].update({"source": "folder", "path": str(images), "channels": 3})
    values["prepare"].update({"val_size": max(10, count // 20), "subset": None})
    values["student"].update({"epochs": 1, "patience": 1, "min_steps": 0})
    (project / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return project


def run_stage(project: Path, *arguments: str) -> dict:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *arguments], cwd=project, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    found = PEAK.findall(result.stdout + result.stderr)
    return {"peak_mib": int(found[-1]), "seconds": round(time.perf_counter() - started, 1)}


def measure(count: int, side: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        started = time.perf_counter()
        write_images(where / "images", count, side)
        written = time.perf_counter() - started
        disk = sum(file.stat().st_size for file in (where / "images").rglob("*.png"))
        project = scratch_project(where, where / "images", count)
        prepare = run_stage(project, "stages.prepare")
        prepared = sum(file.stat().st_size for file in (project / "data/prepared").glob("*.npy"))
        student = run_stage(project, "stages.train", "student")
    return {"images": count, "side": side, "png_mib": round(disk / 2**20), "write_s": round(written, 1),
            "arrays_mib": round(prepared / 2**20), "prepare": prepare, "train_student_epoch": student}


def markdown(results: dict) -> str:
    lines = [
        f"Folder dataset memory on {results['machine']}: Fashion-MNIST as {results['rows'][0]['side']}x"
        f"{results['rows'][0]['side']} RGB PNGs in 10 class folders; prepare, then one epoch of the MLP student "
        f"(train@student), each a process of its own. Peak: the process's maximum resident memory.",
        "",
        "| images | PNGs (MiB) | prepared arrays (MiB) | prepare peak (MiB) | prepare (s) | student epoch peak (MiB) | student (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        lines.append(f"| {row['images']:,} | {row['png_mib']:,} | {row['arrays_mib']:,} | {row['prepare']['peak_mib']:,} | "
                     f"{row['prepare']['seconds']} | {row['train_student_epoch']['peak_mib']:,} | "
                     f"{row['train_student_epoch']['seconds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    results = {"machine": f"{cpu}, {len(os.sched_getaffinity(0))} cores", "rows": []}
    for count in args.counts:
        row = measure(count, args.side)
        print(json.dumps(row), flush=True)
        results["rows"].append(row)
    outputs.write_json(RESULTS / "folder_memory.json", results)
    outputs.write_text(RESULTS / "folder_memory.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
