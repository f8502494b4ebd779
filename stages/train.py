"""Stage train@teacher / train@student: one script, the model named on the command line.

Usage: python -m stages.train {teacher,student}

With teacher.source: file, train@teacher trains nothing: it checks the teacher file against the data
(common/teachers.py), scores it on the validation split and writes its weights where a trained
teacher's go, so every later stage takes either teacher the same way.
"""

import argparse

from common import architectures, cli, data, losses, outputs, params, teachers, training, weights

MODELS = ("teacher", "student")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODELS)
    model_name = parser.parse_args().model

    config = params.load()
    recipe = getattr(config, model_name)
    dataset = data.load_dataset()
    train, val = data.load_split("train", dataset), data.load_split("val", dataset)
    if model_name == "teacher" and recipe.source == "file":
        take_teacher_file(config, dataset, val)
        return
    if model_name == "student":
        train = data.transfer_set(train, recipe.train_fraction, recipe.seed)

    training.make_deterministic(recipe, config.train)
    with training.distribution_strategy(config.train.strategy).scope():
        model = architectures.build(recipe, model_name, dataset)
        summary = training.fit(
            model, recipe, config.train, train.images, train.labels, val.images, val.labels,
            stage=f"train@{model_name}", recipe_name=model_name,
            loss=losses.label_loss(),
            curves_dir=weights.curves_path(model_name),
        )
    weights.save_weights(model, weights.weights_path(model_name))
    outputs.write_json(f"metrics/training/{model_name}.json", summary)
    print(f"{model_name}: {summary}")


def take_teacher_file(config: params.Params, dataset: data.Dataset, val: data.Split) -> None:
    teacher = teachers.from_file(config.teacher, dataset)
    logits = teacher.predict(val.images, batch_size=256, verbose=0)
    teachers.check_outputs(config.teacher, logits)
    summary = teachers.validation_summary(config.teacher, teacher, logits, val)
    print(f"teacher from {config.teacher.path}: validation accuracy {summary['val_accuracy']:.4f} "
          f"on {len(val)} images ({summary['params']:,} parameters)")
    if warning := teachers.chance_warning(summary["val_accuracy"], dataset):
        print(warning)
    # Nothing was trained, so no curves: the folder DVC expects holds a line that says why.
    with outputs.replacing_dir(weights.curves_path("teacher")) as staging:
        (staging / "no_curves.txt").write_text(f"The teacher is {config.teacher.path}, taken as it is: nothing was trained here.\n")
    weights.save_weights(teacher, weights.weights_path("teacher"))
    outputs.write_json("metrics/training/teacher.json", summary)


if __name__ == "__main__":
    cli.run(main, end_process=True)
