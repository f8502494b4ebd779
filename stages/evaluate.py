"""Stage evaluate: the only stage that reads the test split.

Writes metrics/evaluate.json (accuracy, NLL, ECE, parameter count; agreement and KL to the
teacher for both students) and, for `dvc plots`, each model's per-class accuracy and per-image
predictions, from which DVC's confusion template counts the matrix.
"""

import io

import numpy as np
import pandas as pd

from common import cli, data, metrics, outputs, params, weights


def score(logits: np.ndarray, labels: np.ndarray, ece_bins: int, parameters: int) -> dict:
    return {
        "accuracy": metrics.accuracy(logits, labels),
        "nll": metrics.nll(logits, labels),
        "ece": metrics.expected_calibration_error(logits, labels, ece_bins),
        "params": parameters,
    }


def csv_text(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format="%.6f", lineterminator="\n")
    return buffer.getvalue()


def main() -> None:
    config = params.load()
    dataset = data.load_dataset()
    test = data.load_split("test", dataset)
    trained = {name: weights.load_trained(name, config, dataset) for name in weights.MODELS}
    logits = {name: weights.predict_logits(model, test) for name, model in trained.items()}

    report = {
        name: score(logits[name], test.labels, config.evaluate.ece_bins, model.count_params())
        for name, model in trained.items()
    }
    for name in weights.STUDENTS:
        report[name]["agreement"] = metrics.agreement(logits[name], logits["teacher"])
        report[name]["kl_to_teacher"] = metrics.kl_divergence(logits["teacher"], logits[name])

    class_names = np.array(dataset.class_names)
    for name, model_logits in logits.items():
        predicted = model_logits.argmax(axis=1)
        per_class = metrics.per_class_accuracy(predicted, test.labels, dataset.num_classes)
        outputs.write_text(
            f"metrics/per_class/{name}.csv",
            csv_text(pd.DataFrame({"class": class_names, "accuracy": per_class})),
        )
        predictions = pd.DataFrame({"actual": class_names[test.labels], "predicted": class_names[predicted]})
        outputs.write_text(f"metrics/predictions/{name}.csv", csv_text(predictions))

    rounded = {name: {key: round(value, 6) for key, value in scores.items()} for name, scores in report.items()}
    outputs.write_json("metrics/evaluate.json", rounded)
    print(pd.DataFrame(rounded).T.to_string())


if __name__ == "__main__":
    cli.run(main, end_process=True)
