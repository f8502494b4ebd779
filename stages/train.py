"""Stage train@teacher / train@student: one script, the model named on the command line.

Usage: python -m stages.train {teacher,student}
"""

import argparse

from common import cli, data, losses, models, outputs, params

MODELS = ("teacher", "student")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=MODELS)
    model_name = parser.parse_args().model

    config = params.load()
    recipe = getattr(config, model_name)
    train, val = data.load_split("train"), data.load_split("val")
    if model_name == "student":
        train = data.transfer_set(train, recipe.train_fraction, recipe.seed)

    models.make_deterministic(recipe, config.train)
    with models.distribution_strategy(config.train.strategy).scope():
        model = models.build(recipe, model_name)
        summary = models.fit(
            model, recipe, config.train, train.images, train.labels, val.images, val.labels,
            stage=f"train@{model_name}", recipe_name=model_name,
            loss=losses.label_loss(),
            curves_dir=models.curves_path(model_name),
        )
    models.save_weights(model, models.weights_path(model_name))
    outputs.write_json(f"metrics/training/{model_name}.json", summary)
    print(f"{model_name}: {summary}")


if __name__ == "__main__":
    cli.run(main, end_process=True)
