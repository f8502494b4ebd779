"""Stage export: each model as a SavedModel, a float32 LiteRT file and an int8 one, and their fidelity.

Fidelity is measured on the whole test set with the runtime a deployer would use: TensorFlow for the
SavedModel, ai-edge-litert for the .tflite files. A float export whose top-1 differs from Keras on any
image, or whose logits differ by more than 1e-4, stops the stage: it is broken, not a result. The int8
model's accuracy and its agreement with the float model are reported. File sizes are deterministic
and go into metrics/export.json; timings are not, and live in `make bench-inference`.
"""

import numpy as np

from common import cli, data, deploy, metrics, outputs, params, weights

FLOAT_TOLERANCE = 1e-4


def fidelity(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "accuracy": metrics.accuracy(logits, labels),
        "top1_agreement_with_keras": metrics.agreement(logits, reference),
        "max_abs_logit_difference": float(np.abs(logits - reference).max()),
    }


def main() -> None:
    config = params.load()
    dataset = data.load_dataset()
    train, test = data.load_split("train", dataset), data.load_split("test", dataset)
    if config.export.calibration_images > len(train):
        raise cli.UserError(f"params.yaml: export.calibration_images = {config.export.calibration_images} is invalid: "
                            f"allowed 1..{len(train)}, the training split's size")
    rng = np.random.default_rng(config.seed)
    calibration = train.images[data.stratified_indices(train.labels, config.export.calibration_images, rng)]

    report = {}
    with outputs.replacing_dir(deploy.EXPORT_ROOT) as staging:
        for name in weights.MODELS:
            model = weights.load_trained(name, config, dataset)
            reference = weights.predict_logits(model, test)
            folder = staging / name
            saved_model, float32, int8 = (folder / file_format for file_format in deploy.FORMATS)
            deploy.save_saved_model(model, saved_model, dataset)
            float32.write_bytes(deploy.to_tflite(saved_model))
            int8.write_bytes(deploy.to_tflite(saved_model, calibration))

            float32_logits = deploy.run_tflite(deploy.tflite_interpreter(float32), test.images)
            int8_logits = deploy.run_tflite(deploy.tflite_interpreter(int8), test.images)
            scores = {
                "keras": {"accuracy": metrics.accuracy(reference, test.labels)},
                deploy.SAVED_MODEL: fidelity(deploy.run_saved_model(saved_model, test.images), reference, test.labels),
                deploy.FLOAT32: fidelity(float32_logits, reference, test.labels),
                deploy.INT8: {
                    "accuracy": metrics.accuracy(int8_logits, test.labels),
                    "top1_agreement_with_float32": metrics.agreement(int8_logits, float32_logits),
                },
            }
            for file_format in (deploy.SAVED_MODEL, deploy.FLOAT32):
                found = scores[file_format]
                if found["top1_agreement_with_keras"] < 1 or found["max_abs_logit_difference"] > FLOAT_TOLERANCE:
                    raise cli.UserError(
                        f"{deploy.export_path(name, file_format)}: does not reproduce Keras (top-1 agreement "
                        f"{found['top1_agreement_with_keras']}, largest logit difference {found['max_abs_logit_difference']:.2g}; "
                        f"allowed: 1 and {FLOAT_TOLERANCE:g})"
                    )
            scores[deploy.INT8]["accuracy_drop"] = scores["keras"]["accuracy"] - scores[deploy.INT8]["accuracy"]
            for file_format in deploy.FORMATS:
                scores[file_format]["bytes"] = deploy.size_bytes(folder / file_format)
            # What a deployer (and tools.predict) needs beside the model: the class names and image shape.
            data.write_dataset(dataset, folder / data.DATASET_FILE)
            report[name] = {file_format: {key: round(value, 6) for key, value in values.items()}
                            for file_format, values in scores.items()}
            print(f"{name}: {report[name]}")
    outputs.write_json("metrics/export.json", report)


if __name__ == "__main__":
    cli.run(main, end_process=True)
