"""`dltool.evaluate` in-process: the run's own test split, or a labelled file given with --data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dltool.commands.evaluate import evaluate
from dltool.errors import DataError, DltoolError, InputError

pytestmark = pytest.mark.slow

IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _metrics(run) -> dict:
    return json.loads(run.file("metrics.json").read_text())


def _line(run) -> tuple[float, float]:
    weights = _metrics(run)["weights"]["dense"]
    return float(np.ravel(weights["kernel"])[0]), float(np.ravel(weights["bias"])[0])


# --------------------------------------------------------------------------- the run's own test split
def test_classifier_on_its_test_split_writes_evaluation_json(iris_run):
    report = evaluate(iris_run)
    assert json.loads(iris_run.file("evaluation.json").read_text()) == report
    assert not [p.name for p in iris_run.path.iterdir() if p.name.endswith(".tmp")]
    assert report["run"] == iris_run.id
    assert report["data"] == "test split of the run's config"
    assert report["samples"] == 30
    assert set(report["compiled"]) == {"loss", "accuracy"}
    assert "regression" not in report

    classification = report["classification"]
    assert list(classification["per_class"]) == IRIS_CLASSES
    for scores in classification["per_class"].values():
        assert set(scores) == {"precision", "recall", "f1", "support"}
        assert all(0 <= scores[k] <= 1 for k in ("precision", "recall", "f1"))
    matrix = np.array(classification["confusion_matrix"])
    assert matrix.shape == (3, 3)
    assert matrix.sum() == 30
    assert [s["support"] for s in classification["per_class"].values()] == matrix.sum(axis=1).tolist()
    assert classification["accuracy"] == pytest.approx(np.trace(matrix) / 30)
    assert classification["accuracy"] == pytest.approx(report["compiled"]["accuracy"], abs=1e-6)
    for key in ("macro_precision", "macro_recall", "macro_f1"):
        assert 0 <= classification[key] <= 1


def test_classifier_evaluation_repeats_the_test_metrics_of_training(iris_run):
    report = evaluate(iris_run)
    test = _metrics(iris_run)["test"]
    assert report["compiled"]["accuracy"] == pytest.approx(test["accuracy"], abs=1e-6)
    assert report["compiled"]["loss"] == pytest.approx(test["loss"], rel=1e-4)


def test_regression_on_its_test_split(linear_run):
    report = evaluate(linear_run)
    assert json.loads(linear_run.file("evaluation.json").read_text()) == report
    assert report["samples"] == 16  # 64 samples, test 0.25
    assert set(report["compiled"]) == {"loss", "mae"}
    assert "classification" not in report
    regression = report["regression"]
    assert set(regression) == {"mse", "mae", "r2"}
    assert regression["mse"] == pytest.approx(report["compiled"]["loss"], rel=1e-4)
    assert regression["mae"] == pytest.approx(report["compiled"]["mae"], rel=1e-4)
    assert regression["r2"] <= 1
    assert report["compiled"]["loss"] == pytest.approx(_metrics(linear_run)["test"]["loss"], rel=1e-4)


def test_evaluate_by_id_and_runs_root(iris_run):
    report = evaluate(iris_run.id, runs_root=iris_run.path.parent)
    assert report["run"] == iris_run.id and report["samples"] == 30


# --------------------------------------------------------------------------- --data FILE, regression
def test_npz_with_x_and_y_for_a_regression_run(linear_run, tmp_path):
    x = np.linspace(0, 1, 11).reshape(-1, 1)
    w, b = _line(linear_run)  # the model's learned line (metrics.json keeps the weights of tiny models)
    y = 3 * x[:, 0] + 1  # the true line the synthetic data was drawn from (noise aside)
    np.savez(tmp_path / "line.npz", x=x, y=y)
    report = evaluate(linear_run, data_file=tmp_path / "line.npz")
    assert report["data"] == str((tmp_path / "line.npz").resolve())
    assert report["samples"] == 11
    expected_mse = float(np.mean((w * x[:, 0] + b - y) ** 2))
    assert report["regression"]["mse"] == pytest.approx(expected_mse, rel=1e-3)
    assert report["compiled"]["loss"] == pytest.approx(expected_mse, rel=1e-3)
    assert report["regression"]["mae"] == pytest.approx(float(np.mean(np.abs(w * x[:, 0] + b - y))), rel=1e-3)
    assert json.loads(linear_run.file("evaluation.json").read_text())["samples"] == 11


def test_npz_prefers_its_test_arrays(linear_run, tmp_path):
    np.savez(
        tmp_path / "keras-layout.npz",
        x_train=np.zeros((20, 1)),
        y_train=np.zeros(20),
        x_test=np.ones((5, 1)),
        y_test=np.full(5, 4.0),
    )
    assert evaluate(linear_run, data_file=tmp_path / "keras-layout.npz")["samples"] == 5


def test_text_targets_for_a_regression_run(linear_run, tmp_path):
    np.savez(tmp_path / "words.npz", x=np.zeros((3, 1)), y=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"words.npz: expected numeric targets for a regression loss, received 'a'"):
        evaluate(linear_run, data_file=tmp_path / "words.npz")


def test_wrong_input_shape(linear_run, tmp_path):
    np.savez(tmp_path / "wide.npz", x=np.zeros((4, 3)), y=np.zeros(4))
    with pytest.raises(InputError, match=r"wide.npz: expected samples of shape \[1\], received \[3\]"):
        evaluate(linear_run, data_file=tmp_path / "wide.npz")


def test_nan_inputs(linear_run, tmp_path):
    np.savez(tmp_path / "holes.npz", x=np.array([[0.1], [np.nan]]), y=np.zeros(2))
    with pytest.raises(InputError, match="holes.npz: inputs contain NaN or infinite values"):
        evaluate(linear_run, data_file=tmp_path / "holes.npz")


def test_object_arrays_are_not_unpickled(linear_run, tmp_path):
    x = np.empty((2, 1), dtype=object)
    x[:] = 1.0
    np.savez(tmp_path / "objects.npz", x=x, y=np.zeros(2))
    with pytest.raises(
        DataError,
        match=r"objects.npz: array 'x' cannot be read without unpickling \(Object arrays "
        r"cannot be loaded when allow_pickle=False\); expected a numeric array",
    ):
        evaluate(linear_run, data_file=tmp_path / "objects.npz")


def test_npz_without_x_and_y(linear_run, tmp_path):
    np.savez(tmp_path / "keys.npz", inputs=np.zeros((2, 1)))
    with pytest.raises(DataError, match="keys.npz: expected arrays x_train and y_train .* or x and y, received inputs"):
        evaluate(linear_run, data_file=tmp_path / "keys.npz")


def test_inputs_and_targets_of_different_lengths(linear_run, tmp_path):
    np.savez(tmp_path / "uneven.npz", x=np.zeros((10, 1)), y=np.zeros(8))
    with pytest.raises(DltoolError, match=r"uneven.npz: .*10 inputs, 8 targets"):
        evaluate(linear_run, data_file=tmp_path / "uneven.npz")


def test_targets_of_the_wrong_width(linear_run, tmp_path):
    np.savez(tmp_path / "two.npz", x=np.zeros((3, 1)), y=np.zeros((3, 2)))
    with pytest.raises(
        InputError,
        match=r"two.npz: expected 1 target value\(s\) per sample \(the model's outputs\), "
        r"received 2",
    ):
        evaluate(linear_run, data_file=tmp_path / "two.npz")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nowhere.npz", "nowhere.npz: file not found"),
        ("rows.json", "rows.json: expected an .npz, .csv or .parquet file with inputs and targets, received '.json'"),
    ],
)
def test_unusable_data_files(linear_run, tmp_path, name, expected):
    if name.endswith(".json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(InputError) as caught:
        evaluate(linear_run, data_file=tmp_path / name)
    assert str(caught.value) == f"{tmp_path}/{expected}"


def test_corrupt_npz(linear_run, tmp_path):
    (tmp_path / "broken.npz").write_text("not a zip file")
    with pytest.raises(InputError, match="broken.npz: cannot read as .npz"):
        evaluate(linear_run, data_file=tmp_path / "broken.npz")


# --------------------------------------------------------------------------- --data FILE, classifier
def test_iris_npz_with_class_names_as_labels(iris_run, tmp_path):
    from sklearn.datasets import load_iris

    bunch = load_iris()
    np.savez(tmp_path / "iris.npz", x=bunch.data, y=np.array(IRIS_CLASSES)[bunch.target])
    report = evaluate(iris_run, data_file=tmp_path / "iris.npz")
    assert report["samples"] == 150
    matrix = np.array(report["classification"]["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 150
    assert matrix.sum(axis=1).tolist() == [50, 50, 50]
    assert report["classification"]["accuracy"] > 0.6
    assert report["classification"]["accuracy"] == pytest.approx(report["compiled"]["accuracy"], abs=1e-6)

    np.savez(tmp_path / "iris-indices.npz", x=bunch.data, y=bunch.target)
    by_index = evaluate(iris_run, data_file=tmp_path / "iris-indices.npz")
    assert by_index["classification"] == report["classification"]


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        (["setosa", "daisy", "virginica"], "'daisy'"),
        (["setosa", "3", "virginica"], "'3'"),
        ([0, 7, 1], "'7'"),
    ],
)
def test_a_label_not_among_the_classes(iris_run, tmp_path, labels, named):
    np.savez(tmp_path / "odd.npz", x=np.full((3, 4), 5.0), y=np.array(labels))
    with pytest.raises(DataError) as caught:
        evaluate(iris_run, data_file=tmp_path / "odd.npz")
    message = str(caught.value)
    assert "odd.npz" in message and f"label {named} is not one of the run's classes" in message
    assert "setosa, versicolor, virginica" in message


def test_csv_for_a_run_not_trained_on_a_csv(iris_run, tmp_path):
    # iris comes from scikit-learn: preprocessing.json has the feature names but no target column name
    state = json.loads(iris_run.file("preprocessing.json").read_text())
    assert state["feature_names"] == IRIS_FEATURES and state["target_names"] is None
    with open(tmp_path / "iris.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(IRIS_FEATURES + ["target"])
        writer.writerow([5.1, 3.5, 1.4, 0.2, "setosa"])
    with pytest.raises(InputError) as caught:
        evaluate(iris_run, data_file=tmp_path / "iris.csv")
    assert str(caught.value) == f"{tmp_path / 'iris.csv'}: this run was not trained on a CSV; give an .npz with x and y"


# --------------------------------------------------------------------------- a run trained on a CSV
CSV_CONFIG = """
name: csv-labels
seed: 0
data: {{source: csv, path: {path}, target: kind, standardize: true, test: 0.25, validation: null}}
model: {{input_shape: [2], layers: [{{Dense: {{units: 3, activation: softmax}}}}]}}
train: {{optimizer: {{name: adam, learning_rate: 0.1}}, loss: sparse_categorical_crossentropy,
        metrics: [accuracy], epochs: 2, batch_size: 16}}
"""


def _blob_rows(n: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = {"ant": (0.0, 0.0), "bee": (5.0, 0.0), "cat": (0.0, 5.0)}
    names = list(centres)
    rows = []
    for i in range(n):
        kind = names[i % 3]
        cx, cy = centres[kind]
        rows.append([f"{cx + rng.normal():.4f}", f"{cy + rng.normal():.4f}", kind])
    return rows


def _write(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A COMPLETED 2-epoch classifier trained on a CSV with string labels ant/bee/cat in column 'kind'."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    root = tmp_path_factory.mktemp("csv-run")
    data = _write(root / "blobs.csv", ["a", "b", "kind"], _blob_rows(60, seed=0))
    return train(
        config_from_text(CSV_CONFIG.format(path=json.dumps(str(data))), source="csv.yaml"), runs_root=root / "runs"
    )


def test_csv_with_the_training_columns_and_string_labels(csv_run, tmp_path):
    state = json.loads(csv_run.file("preprocessing.json").read_text())
    assert state["class_names"] == ["ant", "bee", "cat"] and state["target_names"] == ["kind"]
    # columns in another order, labels padded with spaces: matched by name and stripped
    rows = [[r[1], f" {r[2]} ", r[0]] for r in _blob_rows(12, seed=1)]
    data = _write(tmp_path / "new.csv", ["b", "kind", "a"], rows)
    report = evaluate(csv_run, data_file=data)
    assert report["samples"] == 12
    assert list(report["classification"]["per_class"]) == ["ant", "bee", "cat"]
    assert [c["support"] for c in report["classification"]["per_class"].values()] == [4, 4, 4]
    assert np.array(report["classification"]["confusion_matrix"]).sum() == 12


def test_csv_with_a_label_not_among_the_classes(csv_run, tmp_path):
    rows = _blob_rows(3, seed=2)
    rows[1][2] = "dog"
    data = _write(tmp_path / "dog.csv", ["a", "b", "kind"], rows)
    with pytest.raises(DataError) as caught:
        evaluate(csv_run, data_file=data)
    assert "dog.csv" in str(caught.value)
    assert "label 'dog' is not one of the run's classes (ant, bee, cat)" in str(caught.value)


def test_csv_without_the_target_column(csv_run, tmp_path):
    data = _write(tmp_path / "unlabelled.csv", ["a", "b"], [["0", "0"]])
    with pytest.raises(InputError, match="unlabelled.csv: missing column 'kind' .*expected target column kind"):
        evaluate(csv_run, data_file=data)


def test_csv_with_a_bad_cell_and_with_no_rows(csv_run, tmp_path):
    bad = _write(tmp_path / "bad.csv", ["a", "b", "kind"], [["1", "2", "ant"], ["x", "2", "bee"]])
    with pytest.raises(InputError, match=r"bad.csv:3: column 'a': expected a number, received 'x'"):
        evaluate(csv_run, data_file=bad)
    empty = _write(tmp_path / "header.csv", ["a", "b", "kind"], [])
    with pytest.raises(InputError, match="header.csv: no data rows after the header"):
        evaluate(csv_run, data_file=empty)


def test_predict_ignores_the_target_column_of_a_csv_run(csv_run, tmp_path):
    from dltool.commands.predict import predict

    rows = _blob_rows(6, seed=3)
    with_target = _write(tmp_path / "with.csv", ["a", "b", "kind"], rows)
    without = _write(tmp_path / "without.csv", ["a", "b"], [r[:2] for r in rows])
    one = predict(csv_run, [with_target]).output.splitlines()
    two = predict(csv_run, [without]).output.splitlines()
    assert one[0] == "input,row,label,prob_ant,prob_bee,prob_cat"
    assert [line.split(",", 1)[1] for line in one] == [line.split(",", 1)[1] for line in two]


def test_predict_keeps_an_id_column_in_csv_and_json(csv_run, tmp_path):
    from dltool.commands.predict import predict

    rows = [[f"id-{i}", *row[:2]] for i, row in enumerate(_blob_rows(5, seed=4))]
    rows[2][0] = "with, comma"
    data = _write(tmp_path / "ids.csv", ["id", "a", "b"], rows)
    lines = predict(csv_run, [data], keep=["id"]).output.splitlines()
    assert lines[0] == "input,row,id,label,prob_ant,prob_bee,prob_cat"
    assert [line.split(",")[2] for line in lines[1:3]] == ["id-0", "id-1"]
    assert f'{data},2,"with, comma",' in lines[3]
    records = json.loads(predict(csv_run, [data], keep=["id"], fmt="json").output)
    assert [r["id"] for r in records] == ["id-0", "id-1", "with, comma", "id-3", "id-4"]
    # Without --keep the id column is refused as before; a kept column that is not there is named.
    with pytest.raises(InputError, match="unexpected column"):
        predict(csv_run, [data])
    with pytest.raises(InputError, match=r"ids.csv: no column 'ix' to keep; did you mean 'id'\?"):
        predict(csv_run, [data], keep=["ix"])


def test_a_csv_without_a_header_row_is_told_so(csv_run, tmp_path):
    from dltool.commands.predict import predict

    data = _write(tmp_path / "bare.csv", ["12.77", "2.39"], [["1.0", "2.0"]])
    with pytest.raises(
        InputError,
        match=r"bare.csv: the first line holds numbers \(12.77, 2.39\), not column names: "
        r"the CSV needs a header row naming its columns, as in a,b",
    ):
        predict(csv_run, [data])


def test_each_evaluated_data_set_keeps_its_own_file(csv_run, tmp_path):
    own = evaluate(csv_run)
    other = evaluate(csv_run, data_file=_write(tmp_path / "holdout.csv", ["a", "b", "kind"], _blob_rows(9, seed=5)))
    assert (own["name"], other["name"]) == ("test", "holdout")
    folder = csv_run.file("evaluations")
    assert json.loads((folder / "test.json").read_text()) == own  # not overwritten by the holdout evaluation
    assert json.loads((folder / "holdout.json").read_text())["samples"] == 9
    from dltool.commands.runs_report import show_run

    assert set(show_run(csv_run)["evaluations"]) >= {"test", "holdout"}


def test_checkpoint_best_needs_a_best_checkpoint(csv_run):
    from dltool.errors import RunStateError

    with pytest.raises(
        RunStateError, match="has no checkpoints/best.keras: only runs trained with train.callbacks.checkpoint"
    ):
        evaluate(csv_run, checkpoint="best")


# --------------------------------------------------------------------------- ranking, calibration and their plots
BINARY_CONFIG = """
name: binary-test
seed: 0
data: {source: sklearn, name: breast_cancer, standardize: true, test: 0.25, validation: null}
model: {input_shape: [30], layers: [{Dense: {units: 1, activation: sigmoid}}]}
train: {optimizer: {name: adam, learning_rate: 0.05}, loss: binary_crossentropy, metrics: [accuracy], epochs: 2,
        batch_size: 32, plots: false}
"""

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """A COMPLETED 2-epoch logistic regression (one sigmoid output) on breast_cancer."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    config = config_from_text(BINARY_CONFIG, source="binary.yaml")
    return train(config, runs_root=tmp_path_factory.mktemp("binary") / "runs")


def _valid_pngs(run, files: list[str]) -> None:
    from PIL import Image

    for name in files:
        path = run.file(name)
        assert path.read_bytes().startswith(PNG), name
        with Image.open(path) as image:
            image.verify()


def test_binary_run_ranking_calibration_and_plots(binary_run):
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    from dltool.data import open_test_split
    from dltool.saved_run import SavedRun

    report = evaluate(binary_run)
    classification = report["classification"]
    ranking, calibration = classification["ranking"], classification["calibration"]
    assert ranking["average"] == "binary" and ranking["positive_class"] == "benign"
    assert set(calibration) == {"brier", "brier_kind", "ece", "ece_bins", "reliability"}
    assert report["plots"] == [
        "evaluations/test-roc.png",
        "evaluations/test-pr.png",
        "evaluations/test-reliability.png",
    ]
    _valid_pngs(binary_run, report["plots"])
    assert json.loads(binary_run.file("evaluations/test.json").read_text())["plots"] == report["plots"]

    # the same figures from scikit-learn on the model's outputs for the rebuilt test split
    saved = SavedRun.open(binary_run)
    x, y = next(open_test_split(saved.config, saved.preprocessing).test_chunks())
    p = saved.load_model("final").predict(x, verbose=0)[:, 0]
    assert ranking["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert ranking["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-6)
    assert calibration["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-6)
    assert 0 <= calibration["ece"] <= 1
    assert sum(b["count"] for b in calibration["reliability"]) == report["samples"]

    quiet = evaluate(binary_run, plots=False)
    assert "plots" not in quiet and quiet["classification"]["ranking"] == ranking
    assert not list(binary_run.file("evaluations").glob("test-*.png"))  # stale plots of the same name go


def test_multi_class_run_ranking_calibration_plots_and_display(iris_run):
    import io

    from rich.console import Console

    from dltool.cli.display.reports import print_evaluation

    report = evaluate(iris_run)
    ranking = report["classification"]["ranking"]
    assert ranking["average"] == "macro over one-vs-rest classes"
    assert list(ranking["per_class"]) == IRIS_CLASSES and ranking["classes_left_out"] == []
    assert ranking["roc_auc"] == pytest.approx(np.mean([s["roc_auc"] for s in ranking["per_class"].values()]))
    assert report["classification"]["calibration"]["brier_kind"].startswith("multi-class")
    _valid_pngs(iris_run, report["plots"])
    assert len(report["plots"]) == 3

    console = Console(file=io.StringIO(), width=160, no_color=True)
    print_evaluation(console, report)
    text = console.file.getvalue()
    for line in ("ROC AUC (macro, one-vs-rest)", "PR AUC (macro, one-vs-rest)", "Brier score"):
        assert line in text
    assert "ECE (15 bins)" in text and "ROC AUC" in text.split("per class")[1]


def test_a_class_absent_from_the_data_file_gets_no_auc(iris_run, tmp_path):
    from sklearn.datasets import load_iris

    bunch = load_iris()
    keep = bunch.target < 2  # no virginica
    np.savez(tmp_path / "two-kinds.npz", x=bunch.data[keep], y=bunch.target[keep])
    report = evaluate(iris_run, data_file=tmp_path / "two-kinds.npz")
    ranking = report["classification"]["ranking"]
    assert ranking["per_class"]["virginica"]["roc_auc"] is None
    assert ranking["per_class"]["virginica"]["reason"] == "no sample of this class in the evaluated data"
    assert ranking["classes_left_out"] == ["virginica"] and ranking["classes_averaged"] == 2
    assert report["plots"] == [f"evaluations/two-kinds-{kind}.png" for kind in ("roc", "pr", "reliability")]
    _valid_pngs(iris_run, report["plots"])
