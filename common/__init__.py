"""The code the pipeline's stages share (data, architectures, training, losses, metrics, params, outputs
and errors), and the throwaway project copy that tests and benchmarks run it in (scratch_repo).

Library code only: the entry scripts are in stages/ (DVC's commands), tools/ and bench/. Importing
this package first puts these defaults in place before anything imports Keras or TensorFlow.
"""

import os
import time

# Taken before the heavy imports, so a stage can report how long its imports took (common.cli).
IMPORTS_STARTED = time.perf_counter()

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter, keep warnings
# On a GPU, take memory as it is needed rather than all of it at start: the processes of
# `dvc queue start -j N` then share one GPU. No effect on CPU.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from common import numerics  # noqa: E402  (after the defaults above, as TensorFlow must come after it)

# The kernels and thread pool that params.yaml's train.numerics asks for, before TensorFlow loads.
numerics.configure(numerics.mode_in_params())
