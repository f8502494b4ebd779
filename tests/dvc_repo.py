"""The end-to-end tests' throwaway repository (common/scratch_repo.py) and the settings they share."""

from common.scratch_repo import ALL_STAGES, OUTPUTS, ROOT, TRAINING_STAGES, Repo, project_files, stages_run  # noqa: F401

# Small enough for CI on 2 cores: 2000 stratified training images (500 of them validation), 1 epoch,
# 100 images to calibrate int8 (a second less per export than 1000).
# Without XLA: compiling costs each of these 6-step training processes about 2 s, more than it saves.
# XLA's own determinism is tested in test_models.py, within and across processes.
SMALL = {
    "prepare": {"subset": 2000, "val_size": 500}, "teacher": {"epochs": 1}, "student": {"epochs": 1, "min_steps": 20},
    "train": {"jit_compile": False}, "export": {"calibration_images": 100},
}
