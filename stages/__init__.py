"""DVC stages of the distillation pipeline and the small modules they share.

`python -m stages.<name>` imports this package before the stage, so these defaults are in place
before anything imports Keras or TensorFlow.
"""

import os
import time

# Taken before any other import, so a stage can report how long its imports took (stages.cli).
IMPORTS_STARTED = time.perf_counter()

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's start-up chatter, keep warnings
