"""`evaluate`: a run's model on its own test split (or a given file), with per-class or regression metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .runs import Run
from .saved_run import SavedRun


def _read_labelled_file(saved: SavedRun, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and raw targets from an .npz (x_test/y_test or x/y) or a CSV with the training columns."""
    from .data.csv_source import column_indices, open_csv, read_rows, to_float_matrix
    from .data.numpy_files import arrays_from_npz

    state = saved.preprocessing
    if path.is_dir() and state.kind == "image":
        return _read_image_folder(saved, path)
    if not path.is_file():
        raise InputError(f"{path}: file not found" + ("; for an image model give a folder with one subfolder per "
                                                     "class, or an .npz" if state.kind == "image" else ""))  # fmt: skip
    if path.suffix.lower() == ".csv" and state.kind == "text":
        from .data.text import read_text_column

        texts, labels, _ = read_text_column(path, state.feature_names[0], error=InputError, label=state.target_names[0])
        if not len(texts):
            raise InputError(f"{path}: no data rows after the header")
        return texts.reshape(-1, 1), labels
    if path.suffix.lower() == ".csv" and state.kind == "timeseries":
        return _read_series_file(saved, path)
    if path.suffix.lower() == ".npz":
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001  (any unreadable file gets one message)
            raise InputError(f"{path}: cannot read as .npz ({exc})") from None
        with archive:
            raw = arrays_from_npz(archive, path)
        return (raw.x_test, raw.y_test) if raw.x_test is not None else (raw.x, raw.y)
    if path.suffix.lower() == ".csv":
        if not state.feature_names or not state.target_names:
            raise InputError(f"{path}: this run was not trained on a CSV; give an .npz with x and y")
        handle, reader, header = open_csv(path, error=InputError)
        with handle:
            rows, lines = read_rows(reader, path, InputError)
        if not rows:
            raise InputError(f"{path}: no data rows after the header")
        features = state.feature_names
        x = to_float_matrix(rows, column_indices(header, features, path, InputError), features, path, lines, InputError)
        target = column_indices(header, state.target_names, path, InputError, key="target column")[0]
        return x, np.array([row[target].strip() for row in rows], dtype=object)
    raise InputError(f"{path}: expected an .npz or .csv file with inputs and targets, received '{path.suffix}'")


def _read_image_folder(saved: SavedRun, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images of a folder with one subfolder per class, read as the run read its training images."""
    from .data.images import ImageSettings, list_class_images, read_images, subfolders

    state = saved.preprocessing
    found = subfolders(root)
    unknown = [name for name in found if name not in state.class_names]
    if unknown:
        raise InputError(f"{root}: subfolder '{unknown[0]}' is not one of the run's classes ({', '.join(state.class_names)})")
    if not found:
        raise InputError(f"{root}: expected one subfolder per class ({', '.join(state.class_names)}), found none")
    files, labels = list_class_images(root, found, error=InputError)
    return read_images(files, ImageSettings.from_dict(state.extra["image"]), error=InputError), np.array(labels, dtype=object)


def _read_series_file(saved: SavedRun, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every window of a CSV series with its target, as the run's data source builds them."""
    from .data.csv_source import open_csv
    from .data.timeseries import series_windows

    state = saved.preprocessing
    settings = state.extra["timeseries"]
    columns = list(dict.fromkeys(state.feature_names + state.target_names))
    handle, _, header = open_csv(path, error=InputError)
    handle.close()
    missing = [name for name in columns if name not in header]
    if missing:
        raise InputError(f"{path}: missing column '{missing[0]}'; the run reads {', '.join(columns)}")
    window, horizon = settings["window"], settings["horizon"]
    x, y, steps = series_windows(path, state.feature_names, state.target_names, window, horizon, error=InputError)
    if len(x) < 1:
        raise InputError(f"{path}: {steps} rows give no window of {window} steps with a target {horizon} "
                         f"step(s) ahead; expected at least {window + horizon} rows")  # fmt: skip
    return x, y


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro averages and the confusion matrix."""
    return report_from_confusion(confusion_counts(y_true, y_pred, len(class_names)), class_names)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """The confusion matrix (true class by row, predicted by column) as int64 counts."""
    flat = np.asarray(y_true, dtype=np.int64) * classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(flat, minlength=classes * classes).reshape(classes, classes)


def report_from_confusion(matrix: np.ndarray, class_names: list[str]) -> dict:
    """Per-class precision, recall and F1 (0 where undefined, as scikit-learn's zero_division=0) from counts."""
    true_positive = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(np.mean(precision)), "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for name, p, r, f, n in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.tolist(),
    }  # fmt: skip


class RegressionTotals:
    """Running sums for MSE, MAE and R² over chunks (R² averaged over outputs, as scikit-learn does)."""

    def __init__(self):
        self.count = 0
        self.sums: dict[str, np.ndarray | float] = {}

    def add(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
        y_pred = np.asarray(y_pred, dtype=np.float64).reshape(y_true.shape)
        error = y_true - y_pred
        parts = {"sse": np.square(error).sum(axis=0), "sae": np.abs(error).sum(axis=0),
                 "sy": y_true.sum(axis=0), "syy": np.square(y_true).sum(axis=0)}  # fmt: skip
        for key, value in parts.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += len(y_true)

    def report(self) -> dict:
        n, s = self.count, self.sums
        mse = float(np.mean(s["sse"]) / n)
        mae = float(np.mean(s["sae"]) / n)
        total = s["syy"] - np.square(s["sy"]) / n
        r2 = float(np.mean(1 - s["sse"] / total)) if n > 1 and np.all(total > 0) else None
        return {"mse": mse, "mae": mae, "r2": r2}


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MSE, MAE and R² (averaged over outputs)."""
    totals = RegressionTotals()
    totals.add(y_true, y_pred)
    return totals.report()


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """Class indices from model outputs: argmax, or a 0.5 threshold for a single sigmoid output."""
    if probabilities.ndim == 2 and probabilities.shape[1] > 1:
        return probabilities.argmax(axis=1).astype(np.int32)
    return (probabilities.reshape(-1) >= 0.5).astype(np.int32)


def evaluate(ref: str | Run, *, data_file: str | Path | None = None, runs_root: str | Path | None = None) -> dict:
    """Evaluate a run's saved model; write and return evaluation.json's contents.

    Without ``data_file`` the run's test split is rebuilt deterministically
    from its saved config; with it, inputs and targets come from that file
    (.npz or .csv) and get the run's saved preprocessing.
    """
    from .data import load_test_split
    from .data.streaming import should_stream
    from .data.labels import labels_to_indices, regression_targets
    from .keras_io import as_model_input
    from .fitting import evaluate_arrays

    saved = SavedRun.open(ref, runs_root)
    state = saved.preprocessing
    if data_file is None and should_stream(saved.config.data):
        return _evaluate_streamed(saved)
    if data_file is None:
        x, y = load_test_split(saved.config, state)
        source = "test split of the run's config"
    else:
        path = Path(data_file)
        x_raw, y_raw = _read_labelled_file(saved, path)
        state.check_shape(np.asarray(x_raw), str(path))
        x = state.transform(x_raw)
        if state.kind != "text" and not np.isfinite(x).all():
            raise InputError(f"{path}: inputs contain NaN or infinite values")
        if len(x_raw) != len(y_raw):
            raise InputError(f"{path}: inputs and targets differ in length: {len(x_raw)} inputs, {len(y_raw)} targets")
        y = labels_to_indices(y_raw, state.class_names, str(path)) if saved.is_classifier else regression_targets(y_raw, str(path))
        source = str(path.resolve())
    model = saved.load_model()
    if not saved.is_classifier and y.shape[1] != int(model.output_shape[-1] or 1):
        raise InputError(f"{source}: expected {int(model.output_shape[-1] or 1)} target value(s) per sample "
                         f"(the model's outputs), received {y.shape[1]}")  # fmt: skip
    result: dict = {"run": saved.run.id, "data": source, "samples": int(len(x))}
    result["compiled"] = evaluate_arrays(model, saved.config, x, y)
    outputs = model.predict(as_model_input(x), batch_size=max(saved.config.train.batch_size, 256), verbose=0)
    if saved.is_classifier:
        result["classification"] = classification_report(y, predicted_classes(outputs), state.class_names)
    else:
        result["regression"] = regression_report(y, outputs)
    saved.run.write_json("evaluation.json", result)
    return result


def _evaluate_streamed(saved: SavedRun) -> dict:
    """Evaluate on a streamed CSV's test split chunk by chunk, so memory stays bounded."""
    from .data.streaming import prepare_streamed
    from .fitting import evaluate_data

    data = prepare_streamed(saved.config)
    data.preprocessing = saved.preprocessing  # what the model was trained with, not a refit
    model = saved.load_model()
    result: dict = {"run": saved.run.id, "data": "test split of the run's config (streamed)",
                    "samples": data.sizes()["test"], "compiled": evaluate_data(model, saved.config, data)}  # fmt: skip
    classes = len(saved.preprocessing.class_names or [])
    matrix = np.zeros((classes, classes), dtype=np.int64)
    totals = RegressionTotals()
    for x, y in data.test_chunks():
        outputs = model.predict(x, batch_size=max(saved.config.train.batch_size, 256), verbose=0)
        if saved.is_classifier:
            matrix += confusion_counts(y, predicted_classes(outputs), classes)
        else:
            totals.add(y, outputs)
    if saved.is_classifier:
        result["classification"] = report_from_confusion(matrix, saved.preprocessing.class_names)
    else:
        result["regression"] = totals.report()
    saved.run.write_json("evaluation.json", result)
    return result
