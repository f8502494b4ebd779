"""Callbacks every training run carries: stop on a non-finite loss, stop after Ctrl-C."""

import math

import keras

from common.cli import UserError, stop_if_interrupted


class StopOnDivergence(keras.callbacks.Callback):
    """Ends training with one line as soon as a logged loss or metric stops being a finite number.

    A loss that has become NaN or infinite never recovers, and neither JSON nor `dvc metrics` can
    hold it; a large but finite loss is a legitimate (bad) result and trains on.
    """

    def __init__(self, stage: str, recipe_name: str, learning_rate: float):
        super().__init__()
        self.stage, self.recipe_name, self.learning_rate = stage, recipe_name, learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With several steps per call, `batch` is the call's last step, which a short last call overstates.
        step = min(batch + 1, self.params.get("steps") or batch + 1)
        self._check(logs, f"epoch {self.epoch + 1}, step {step}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch + 1}")

    def _check(self, logs, where: str) -> None:
        for name, value in (logs or {}).items():
            value = float(value)
            if not math.isfinite(value):
                raise UserError(
                    f"{self.stage} diverged: {name} became {value} at {where}; "
                    f"lower {self.recipe_name}.learning_rate (now {self.learning_rate:g})"
                )


class StopOnInterrupt(keras.callbacks.Callback):
    """Ends training at the next call's end after a Ctrl-C whose KeyboardInterrupt Python dropped
    (common.cli), rather than training on to an end whose outputs would be refused."""

    def on_train_batch_end(self, batch, logs=None):
        stop_if_interrupted()
