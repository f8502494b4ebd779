"""Stage distill: a fresh student trained on labels plus the teacher's softened logits.

The distilled student has the student's architecture and recipe, so it differs from the
baseline only in its loss.
"""

from stages import cli, data, losses, models, outputs, params


def main() -> None:
    config = params.load()
    recipe = config.student
    train, val = data.load_split("train"), data.load_split("val")

    models.make_deterministic(config.seed)
    teacher = models.load_model("teacher", config.teacher.hidden_units, models.weights_path("teacher"))
    # Once per run: there is no augmentation, so the teacher's logits for an image never change.
    targets = {
        name: {"label": split.labels, "teacher_logits": models.predict_logits(teacher, split)}
        for name, split in (("train", train), ("val", val))
    }

    student = models.build_mlp(recipe.hidden_units, "distilled")
    objective = losses.DistillationLoss(config.distill.temperature, config.distill.alpha)
    distiller = losses.TeacherLogitsDistiller(student, objective)
    summary = models.fit(distiller, recipe, train.images, targets["train"], val.images, targets["val"])

    models.save_weights(student, models.weights_path("distilled"))
    outputs.write_json("metrics/training/distilled.json", summary)
    print(f"distilled: {summary}")


if __name__ == "__main__":
    cli.run(main)
