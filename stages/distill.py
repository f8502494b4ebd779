"""Stage distill: a fresh student trained on labels plus the teacher's softened logits.

The distilled student has the student's architecture and recipe, so it differs from the
baseline only in its loss.
"""

import functools

from common import architectures, cli, data, losses, outputs, params, training, views, weights


def main() -> None:
    config = params.load()
    recipe = config.student
    dataset = data.load_dataset()
    # The baseline student's labelled images: the two students differ only in their loss.
    everything = data.load_split("train", dataset)
    train = data.transfer_set(everything, recipe.train_fraction, recipe.seed)
    val = data.load_split("val", dataset)
    unlabelled_transfer = config.distill.transfer == "all"
    consistent_views = config.distill.views == "consistent"
    in_step = config.teacher if consistent_views else None

    strategy = training.distribution_strategy(config.train.strategy)
    # Seeded and built first, as in train.py, so it starts from the baseline student's initial weights.
    training.make_deterministic(recipe, config.train, in_step)
    with strategy.scope():
        student = architectures.build(recipe, "distilled", dataset)
        # In the strategy's scope: with consistent views each replica runs it.
        teacher = weights.load_teacher(config.teacher, dataset)

    augment = None
    if consistent_views:
        # The teacher labels every step's view itself (losses.ConsistentViewsDistiller).
        targets = {"train": {"label": train.labels}, "val": {"label": val.labels}}
        # Its own seed, apart from the batch order's (recipe.seed) and the transfer stream's (+ 1).
        augment = functools.partial(views.consistent_views, settings=config.distill, seed=recipe.seed + 2)
    else:
        # Once per run: the images never change, so neither do the teacher's logits for them.
        soft_split = everything if unlabelled_transfer else train
        targets = {
            name: {"label": split.labels, "teacher_logits": weights.predict_logits(teacher, soft)}
            for name, split, soft in (("train", train, soft_split), ("val", val, val))
        }
    images = {"train": train.images, "val": val.images}
    if unlabelled_transfer:
        # Validation keeps one set of images: both streams see it, so val_hard_loss is the baseline's.
        images = {"train": {"labelled": train.images, "transfer": everything.images},
                  "val": {"labelled": val.images, "transfer": val.images}}

    with strategy.scope():
        objective = losses.DistillationLoss(config.distill.temperature, config.distill.alpha)
        if consistent_views:
            distiller = losses.ConsistentViewsDistiller(student, objective, teacher)
        else:
            distiller = (losses.TransferSetDistiller if unlabelled_transfer else losses.TeacherLogitsDistiller)(student, objective)
        summary = training.fit(
            distiller, recipe, config.train, images["train"], targets["train"], images["val"], targets["val"],
            stage="distill", recipe_name="student", curves_dir=weights.curves_path("distilled"),
            # The baseline's rule: cross-entropy against the labels on validation. The KD objective's
            # scale changes with T and alpha, so selecting on it would make the two students incomparable.
            monitor="val_hard_loss", augment=augment, in_step=in_step,
        )

    weights.save_weights(student, weights.weights_path("distilled"))
    outputs.write_json("metrics/training/distilled.json", summary)
    print(f"distilled: {summary}")


if __name__ == "__main__":
    cli.run(main, end_process=True)
