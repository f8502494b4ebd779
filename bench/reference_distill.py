"""Reference-style distillation for comparison: the teacher runs forward on every training step.

This is how the reference code (and keras.distillation.Distiller) distils. The pipeline computes
the teacher's logits once instead; the benchmark times both with the same student recipe.
"""

import keras

from common import architectures, fashion_mnist, losses
from common.params import Distill, Training


def build(teacher: keras.Model, recipe: Training, distill: Distill) -> keras.Model:
    student = architectures.build(recipe, "reference_distilled", fashion_mnist.DATASET)
    soft = losses.DistillationLoss(distill.temperature, distill.alpha).soft
    return keras.distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=soft,
        student_loss_weight=distill.alpha,
    )
