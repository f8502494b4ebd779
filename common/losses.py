"""The Hinton et al. (2015) distillation objective, on teacher logits computed once per run (on the
labelled images alone, or with every training image as the transfer set: distill.transfer), or by
the teacher inside each step, on the view the student sees (distill.views: consistent).

    loss = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

alpha weighs the hard labels (the reference code's convention): alpha = 1 is plain training on labels,
alpha = 0 is pure distillation. The T^2 factor, which keras.distillation.LogitsDistillation applies
for KL, keeps the soft term's gradients the same size as T changes.
"""

import keras
import tensorflow as tf


def label_loss() -> keras.losses.Loss:
    """Cross-entropy of logits against integer labels: the teacher's and the baseline student's loss."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class DistillationLoss:
    """Both terms of the objective, kept apart so they can be logged separately."""

    def __init__(self, temperature: float, alpha: float):
        self.temperature = temperature
        self.alpha = alpha
        self.hard = label_loss()
        # An instance, not the string "kl_divergence": LogitsDistillation applies the softmax and T^2
        # only when it sees a KLDivergence object; the string resolves to a bare function that it
        # applies to raw logits (Keras 3.15).
        self.soft = keras.distillation.LogitsDistillation(
            temperature=temperature, loss=keras.losses.KLDivergence()
        )

    def terms(self, labels, teacher_logits, student_logits, transfer_logits=None, partner_labels=None, mix=None):
        """(total, hard-label CE, T^2-scaled KL), each averaged over the batch. With `transfer_logits`,
        the student's logits for another batch (the transfer images), the KL term is taken on those
        against `teacher_logits`, and the CE term on `student_logits` against `labels`. With `mix`,
        the images were blends, mix * image + (1 - mix) * partner (common/views.py), and the CE term
        blends alike: mix * CE(labels) + (1 - mix) * CE(partner_labels), per image."""
        if mix is None:
            hard = self.hard(labels, student_logits)
        else:
            hard = (self.hard(labels, student_logits, sample_weight=mix)
                    + self.hard(partner_labels, student_logits, sample_weight=1 - mix))
        soft = self.soft.compute_loss(teacher_logits, student_logits if transfer_logits is None else transfer_logits)
        return self.alpha * hard + (1 - self.alpha) * soft, hard, soft


class TeacherLogitsDistiller(keras.Model):
    """Trains `student` on targets {"label", "teacher_logits"}: the teacher never runs during training.

    keras.distillation.Distiller calls the teacher on every step. With no augmentation its logits
    for an image never change, so they are computed once and passed in as a second target.
    """

    def __init__(self, student: keras.Model, loss: DistillationLoss, **kwargs):
        super().__init__(name=f"{student.name}_distiller", **kwargs)
        self.student = student
        self.objective = loss
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")

    def call(self, images, training=False):
        return self.student(images, training=training)

    def teacher_logits(self, images, targets):
        return targets["teacher_logits"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, hard, soft = self.objective.terms(y["label"], self.teacher_logits(x, y), y_pred,
                                                 partner_labels=y.get("partner_label"), mix=y.get("mix"))
        # Under tf.distribute, Keras losses come back divided by the replica count so that the
        # replicas' gradients add up; the logged terms should read as whole-batch means. Each batch
        # counts by its size, as Keras counts `loss`, so that a short last batch does not weigh as
        # much as a full one and alpha * hard + (1 - alpha) * soft adds up to the logged loss.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch_size = tf.shape(y_pred)[0]
        self.hard_loss_tracker.update_state(hard * replicas, sample_weight=batch_size)
        self.soft_loss_tracker.update_state(soft * replicas, sample_weight=batch_size)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(x, y["label"], y_pred, sample_weight)


class TransferSetDistiller(TeacherLogitsDistiller):
    """distill.transfer: all. Each step trains on two batches of the same size: labelled images with
    their labels, for the hard term, and transfer images, drawn from every training image, with the
    teacher's logits, for the soft term. Inputs {"labelled", "transfer"}; targets {"label",
    "teacher_logits"}, each for its own batch.

        loss = alpha * CE(labels, student(labelled)) + (1 - alpha) * T^2 * KL(teacher || student)(transfer)

    Each term is the mean over its own batch, so alpha weighs the two as it does when both cover the
    labelled images, however few they are; the labelled images are cycled as often as it takes.
    """

    STREAMS = ("labelled", "transfer")

    def call(self, images, training=False):
        return {stream: self.student(images[stream], training=training) for stream in self.STREAMS}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, hard, soft = self.objective.terms(y["label"], y["teacher_logits"], y_pred["labelled"],
                                                 transfer_logits=y_pred["transfer"])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.hard_loss_tracker.update_state(hard * replicas, sample_weight=tf.shape(y_pred["labelled"])[0])
        self.soft_loss_tracker.update_state(soft * replicas, sample_weight=tf.shape(y_pred["transfer"])[0])
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return keras.Model.compute_metrics(self, x, y["label"], y_pred["labelled"], sample_weight)


class ConsistentViewsDistiller(TeacherLogitsDistiller):
    """distill.views: consistent. The teacher, frozen, labels each batch inside the step: the batch is
    a new random view every step (common/views.py), so no logits computed beforehand could match it.
    Targets {"label"} and, for blended views, {"partner_label", "mix"}; validation batches are the
    images as they are, labelled by the teacher the same way.
    """

    def __init__(self, student: keras.Model, loss: DistillationLoss, teacher: keras.Model, **kwargs):
        super().__init__(student, loss, **kwargs)
        teacher.trainable = False
        self.teacher = teacher

    def teacher_logits(self, images, targets):
        return keras.ops.stop_gradient(self.teacher(images, training=False))
