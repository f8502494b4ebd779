"""End to end, as README "Distil your own model" tells it: a folder of images of one's own, a teacher
trained outside the pipeline and saved as .keras, and a CNN student, set in params.yaml alone and run
with the real `dvc` in a temporary repository.

The images are three Fashion-MNIST classes written as 40x40 RGB PNGs, in folders named by hand; the
teacher is a small Keras CNN trained here on the same folder, the way a user would have trained theirs.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from dvc_repo import Repo, stages_run
from PIL import Image

from common import fashion_mnist

pytestmark = pytest.mark.e2e

# Fashion-MNIST label -> folder name; the pipeline orders classes by name, as Keras does.
CLASSES = {7: "sneaker", 1: "trouser", 8: "bag"}
FOLDER_ORDER = sorted(CLASSES.values())
PER_CLASS = 100
SIDE = 40
TEACHER_SCRIPT = """
import sys
from pathlib import Path

import keras
import numpy as np
from PIL import Image

folder, target = Path(sys.argv[1]), Path(sys.argv[2])
classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
files = [(path, label) for label, name in enumerate(classes) for path in sorted((folder / name).glob("*.png"))]
images = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in files])
labels = np.array([label for _, label in files])
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((40, 40, 3)),
    keras.layers.Rescaling(1 / 255),
    keras.layers.Conv2D(8, 3, activation="relu"),
    keras.layers.MaxPooling2D(),
    keras.layers.Flatten(),
    keras.layers.Dense(len(classes), activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(images, labels, epochs=5, batch_size=32, verbose=0)
model.save(target)
"""


def write_folder(root) -> None:
    """PER_CLASS images of each class, upscaled to 40x40 and tinted, so that they are RGB for real."""
    _, _, train, _ = fashion_mnist.load_raw()
    for label, name in CLASSES.items():
        (root / name).mkdir(parents=True)
        for index, row in enumerate(np.flatnonzero(train.labels == label)[:PER_CLASS]):
            gray = np.asarray(Image.fromarray(train.images[row]).resize((SIDE, SIDE), Image.Resampling.BILINEAR))
            tinted = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
            Image.fromarray(tinted).save(root / name / f"{index:03d}.png")


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The project with a folder dataset (dvc add), a .keras teacher of the user's and a CNN student."""
    repo = Repo.copy_of_project(tmp_path_factory.mktemp("own"))
    write_folder(repo.path / "shoes")
    repo.dvc("add", "shoes")
    teacher = repo.path / "models" / "teachers" / "shoes.keras"
    repo.run(sys.executable, "-c", TEACHER_SCRIPT, str(repo.path / "shoes"), str(teacher))
    repo.update_params(
        data={"source": "folder", "path": "shoes", "test_fraction": 0.2, "channels": 3},
        prepare={"val_size": 30},
        teacher={"source": "file", "path": "models/teachers/shoes.keras", "outputs": "probabilities"},
        student={"arch": "cnn", "conv_filters": [4, 8], "conv_dense_units": 16, "epochs": 2, "min_steps": 20},
        train={"jit_compile": False},
        export={"calibration_images": 50},
    )
    repo.commit("my images, my teacher, a CNN student")
    log = repo.dvc("repro")
    repo.commit("reproduced")
    return repo, log


def test_the_pipeline_runs_on_a_folder_with_a_teacher_file(own):
    repo, log = own
    assert stages_run(log) == {"check_params", "prepare", "train@teacher", "train@student", "distill", "evaluate", "export"}
    assert "shoes: 300 images (bag 100, sneaker 100, trouser 100)" in log
    assert "shoes: 3 classes, 40x40, RGB" in log
    teacher = json.loads(repo.read("metrics/training/teacher.json"))
    assert teacher["source"] == "file" and teacher["path"] == "models/teachers/shoes.keras"
    # Three easy classes: a wrong convention (unit for pixels, say) would sit near 1/3.
    assert teacher["val_accuracy"] > 0.8 and teacher["val_examples"] == 30
    assert f"teacher from models/teachers/shoes.keras: validation accuracy {teacher['val_accuracy']:.4f}" in log
    report = json.loads(repo.read("metrics/evaluate.json"))
    # The CNN student on 40x40x3: conv 3*3*3*4 + norm 4*4, conv 3*3*4*8 + 4*8, dense 10*10*8*16+16, logits 16*3+3.
    assert report["student"]["params"] == report["distilled"]["params"] == 108 + 16 + 288 + 32 + 12_816 + 51
    assert report["teacher"]["accuracy"] > 0.8


def test_class_names_reach_every_output(own):
    repo, _ = own
    prepared = json.loads(repo.read("data/prepared/dataset.json"))
    assert prepared == {"source": "folder", "class_names": FOLDER_ORDER, "image_shape": [SIDE, SIDE, 3]}
    for model in ("teacher", "student", "distilled"):
        per_class = repo.read(f"metrics/per_class/{model}.csv").decode().splitlines()
        assert [line.split(",")[0] for line in per_class[1:]] == FOLDER_ORDER
        predictions = repo.read(f"metrics/predictions/{model}.csv").decode().splitlines()
        assert len(predictions) == 1 + 60 and {line.split(",")[0] for line in predictions[1:]} == set(FOLDER_ORDER)
        assert json.loads(repo.read(f"models/export/{model}/dataset.json")) == prepared
    exported = json.loads(repo.read("metrics/export.json"))
    assert exported["distilled"]["float32.tflite"]["top1_agreement_with_keras"] == 1


def test_predict_names_the_folder_classes(own):
    repo, _ = own
    bag = repo.path / "shoes" / "bag" / "000.png"
    result = repo.attempt(sys.executable, "-m", "tools.predict", str(bag), "--top", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"{bag}:"
    name, probability = result.stdout.splitlines()[1].split()
    assert name in FOLDER_ORDER and 1 / 3 < float(probability) <= 1


def test_a_new_teacher_file_reruns_only_what_reads_the_teacher(own):
    repo, _ = own
    (repo.path / "models/teachers/shoes.keras").rename(repo.path / "models/teachers/shoes_v2.keras")
    repo.run("git", "add", "-A")
    repo.commit("the teacher under another name")
    log = repo.dvc("exp", "run", "-S", "teacher.path=models/teachers/shoes_v2.keras")
    assert stages_run(log) == {"check_params", "train@teacher", "distill", "evaluate", "export"}
    # The same model under another name: the same teacher weights, the same results.
    assert "Stage 'prepare' didn't change" in log and "Stage 'train@student' didn't change" in log


def test_a_teacher_for_other_data_is_one_line_before_anything_trains(own, tmp_path):
    repo, _ = own
    other = tmp_path / "ten_classes.keras"
    script = ("import sys, keras; keras.Sequential([keras.Input((40, 40, 3)), keras.layers.Flatten(), "
              "keras.layers.Dense(10)]).save(sys.argv[1])")
    repo.run(sys.executable, "-c", script, str(other))
    params = yaml.safe_load(repo.read("params.yaml"))
    params["teacher"]["path"] = str(other)
    (repo.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = repo.attempt(sys.executable, "-m", "dvc", "repro")
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {other}: outputs shape (10); the data have 3 classes (bag, sneaker, trouser)"]
    assert stages_run(result.stdout) == {"check_params", "train@teacher"}
    subprocess.run(["git", "checkout", "params.yaml"], cwd=repo.path, check=True)
