"""`dltool.predict` in-process: CSV, NumPy and image inputs, output formats, hostile inputs, streaming."""

from __future__ import annotations

import csv
import io
import json
import time

import numpy as np
import pytest

from dltool.commands.predict import predict
from dltool.errors import InputError

pytestmark = pytest.mark.slow

IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _prob_sum(row, classes):
    return sum(float(row[f"prob_{name}"]) for name in classes)


# --------------------------------------------------------------------------- a tiny image model
IMAGE_CONFIG = """
name: tiny-images
seed: 0
data: {{source: npz, path: {path}, scale: 255, test: 0.25, validation: null}}
model:
  input_shape: [8, 8]
  layers: [Flatten, {{Dense: {{units: 2, activation: softmax}}}}]
train: {{loss: sparse_categorical_crossentropy, metrics: [accuracy], epochs: 2, batch_size: 8}}
"""


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A COMPLETED 2-epoch classifier of 8x8 grayscale images, classes '0' and '1'."""
    from dltool.commands.train import train
    from dltool.config import config_from_text

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    np.savez(root / "tiny.npz", x=rng.integers(0, 256, size=(40, 8, 8), dtype=np.uint8), y=np.arange(40) % 2)
    config = config_from_text(IMAGE_CONFIG.format(path=json.dumps(str(root / "tiny.npz"))), source="images.yaml")
    return train(config, runs_root=root / "runs")


def _png(path, mode, size, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(path)
    return path


# --------------------------------------------------------------------------- CSV
def test_csv_in_csv_out_for_a_classifier(iris_run, tmp_path):
    source = _write_csv(tmp_path / "flowers.csv", IRIS_FEATURES, IRIS_ROWS)
    result = predict(iris_run, [source], output=tmp_path / "out.csv", fmt="csv")
    assert result.rows == 3 and result.output == str(tmp_path / "out.csv")
    assert result.inputs == [str(source)]
    with open(tmp_path / "out.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == ["input", "row", "label"] + [f"prob_{c}" for c in IRIS_CLASSES]
    rows = _read_csv(tmp_path / "out.csv")
    assert [r["input"] for r in rows] == [str(source)] * 3
    assert [int(r["row"]) for r in rows] == [0, 1, 2]
    for row in rows:
        assert row["label"] in IRIS_CLASSES
        assert _prob_sum(row, IRIS_CLASSES) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(IRIS_CLASSES, key=lambda c: float(row[f"prob_{c}"]))
    assert rows[0]["label"] == "setosa", "a textbook setosa after 5 epochs (test accuracy > 0.6)"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_csv_columns_may_come_in_any_order(iris_run, tmp_path):
    straight = _write_csv(tmp_path / "a.csv", IRIS_FEATURES, IRIS_ROWS)
    shuffled = _write_csv(tmp_path / "b.csv", IRIS_FEATURES[::-1], [r[::-1] for r in IRIS_ROWS])
    one = list(csv.DictReader(io.StringIO(predict(iris_run, [straight]).output)))
    two = list(csv.DictReader(io.StringIO(predict(iris_run, [shuffled]).output)))
    assert [r["label"] for r in one] == [r["label"] for r in two]
    assert [r["prob_setosa"] for r in one] == [r["prob_setosa"] for r in two]


def test_json_format_parses(iris_run, tmp_path):
    source = _write_csv(tmp_path / "flowers.csv", IRIS_FEATURES, IRIS_ROWS)
    predict(iris_run, [source], output=tmp_path / "out.json", fmt="json")
    records = json.loads((tmp_path / "out.json").read_text())
    assert len(records) == 3
    for i, record in enumerate(records):
        assert set(record) == {"input", "row", "label", "probabilities"}
        assert record["input"] == str(source) and record["row"] == i
        assert list(record["probabilities"]) == IRIS_CLASSES
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)


def test_json_for_regression_and_csv_agree(linear_run, tmp_path):
    source = _write_csv(tmp_path / "x.csv", ["x0"], [[0.0], [0.5], [1.0]])
    records = json.loads(predict(linear_run, [source], fmt="json").output)
    rows = list(csv.DictReader(io.StringIO(predict(linear_run, [source]).output)))
    assert [set(r) for r in records] == [{"input", "row", "value"}] * 3
    assert [r["value"] for r in records] == pytest.approx([float(r["value"]) for r in rows], rel=1e-5)


def test_unknown_format_is_refused(iris_run, tmp_path):
    source = _write_csv(tmp_path / "flowers.csv", IRIS_FEATURES, IRIS_ROWS)
    with pytest.raises(InputError, match="expected format csv, json or parquet, received 'xml'"):
        predict(iris_run, [source], output=tmp_path / "out.csv", fmt="xml")
    assert not (tmp_path / "out.csv").exists()


def test_regression_output_column_matches_the_learned_line(linear_run, tmp_path):
    source = _write_csv(tmp_path / "x.csv", ["x0"], [[0.0], [0.5], [1.0], [2.0]])
    predict(linear_run, [source], output=tmp_path / "out.csv")
    with open(tmp_path / "out.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["input", "row", "value"]
    rows = _read_csv(tmp_path / "out.csv")
    weights = json.loads(linear_run.file("metrics.json").read_text())["weights"]["dense"]
    w, b = weights["kernel"][0], weights["bias"][0]
    assert [float(r["value"]) for r in rows] == pytest.approx([b, 0.5 * w + b, w + b, 2 * w + b], rel=1e-4, abs=1e-5)


# --------------------------------------------------------------------------- NumPy
def test_npy_batch(linear_run, tmp_path):
    np.save(tmp_path / "batch.npy", np.linspace(0, 1, 7, dtype=np.float32).reshape(7, 1))
    result = predict(linear_run, [tmp_path / "batch.npy"], output=tmp_path / "out.csv")
    rows = _read_csv(tmp_path / "out.csv")
    assert result.rows == len(rows) == 7
    assert [int(r["row"]) for r in rows] == list(range(7))
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values) or values == sorted(values, reverse=True), "a line is monotonic"


def test_npy_single_sample_without_batch_axis(iris_run, tmp_path):
    np.save(tmp_path / "one.npy", np.array(IRIS_ROWS[0]))
    np.save(tmp_path / "batch.npy", np.array(IRIS_ROWS))
    single = list(csv.DictReader(io.StringIO(predict(iris_run, [tmp_path / "one.npy"]).output)))
    batch = list(csv.DictReader(io.StringIO(predict(iris_run, [tmp_path / "batch.npy"]).output)))
    assert len(single) == 1 and single[0]["row"] == "0"
    assert single[0]["label"] == batch[0]["label"]
    assert float(single[0]["prob_setosa"]) == pytest.approx(float(batch[0]["prob_setosa"]), rel=1e-4)


def test_npz_with_key_x(iris_run, tmp_path):
    np.savez(tmp_path / "rows.npz", x=np.array(IRIS_ROWS), y=np.array([0, 2, 1]))
    rows = list(csv.DictReader(io.StringIO(predict(iris_run, [tmp_path / "rows.npz"]).output)))
    assert len(rows) == 3
    assert all(_prob_sum(r, IRIS_CLASSES) == pytest.approx(1.0, abs=1e-4) for r in rows)


def test_csv_and_npy_give_the_same_predictions_and_rows_say_which_file(iris_run, tmp_path):
    source = _write_csv(tmp_path / "flowers.csv", IRIS_FEATURES, IRIS_ROWS)
    np.save(tmp_path / "flowers.npy", np.array(IRIS_ROWS, dtype=np.float64))
    rows = list(csv.DictReader(io.StringIO(predict(iris_run, [source, tmp_path / "flowers.npy"]).output)))
    assert [(r["input"], int(r["row"])) for r in rows] == (
        [(str(source), i) for i in range(3)] + [(str(tmp_path / "flowers.npy"), i) for i in range(3)]
    )
    for a, b in zip(rows[:3], rows[3:]):
        assert a["label"] == b["label"]
        assert float(a["prob_versicolor"]) == pytest.approx(float(b["prob_versicolor"]), rel=1e-4)


# --------------------------------------------------------------------------- images
def test_images_grayscale_rgb_and_other_sizes(image_run, tmp_path):
    gray = _png(tmp_path / "gray.png", "L", (8, 8), seed=1)
    rgb = _png(tmp_path / "rgb.png", "RGB", (8, 8), seed=2)
    big = _png(tmp_path / "big.png", "L", (32, 20), seed=3)
    result = predict(image_run, [gray, rgb, big], output=tmp_path / "out.csv")
    rows = _read_csv(tmp_path / "out.csv")
    assert result.rows == 3
    assert [r["input"] for r in rows] == [str(gray), str(rgb), str(big)]
    assert [r["row"] for r in rows] == ["0", "0", "0"]
    assert list(rows[0]) == ["input", "row", "label", "prob_0", "prob_1"]
    for row in rows:
        assert row["label"] in ("0", "1")
        assert _prob_sum(row, ["0", "1"]) == pytest.approx(1.0, abs=1e-4)


def test_image_gets_the_same_prediction_as_its_pixels_as_npy(image_run, tmp_path):
    from PIL import Image

    pixels = np.random.default_rng(5).integers(0, 256, size=(8, 8), dtype=np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "img.png")
    np.save(tmp_path / "img.npy", pixels)
    rows = list(csv.DictReader(io.StringIO(predict(image_run, [tmp_path / "img.png", tmp_path / "img.npy"]).output)))
    assert rows[0]["label"] == rows[1]["label"]
    assert float(rows[0]["prob_1"]) == pytest.approx(float(rows[1]["prob_1"]), abs=1e-5)


def test_a_folder_of_images(image_run, tmp_path):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    names = [folder / "a.png", folder / "b.png", folder / "sub" / "c.png"]
    for i, name in enumerate(names):
        _png(name, "RGB" if i % 2 else "L", (8 + i, 8), seed=i)
    (folder / "README.txt").write_text("ignored: not a usable suffix")
    result = predict(image_run, [folder], output=tmp_path / "out.json", fmt="json")
    records = json.loads((tmp_path / "out.json").read_text())
    assert result.rows == 3
    assert [r["input"] for r in records] == [str(n) for n in names]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for r in records)


# --------------------------------------------------------------------------- hostile inputs
def _refused(run, inputs, tmp_path, *fragments, fmt="csv"):
    """Predict must raise InputError whose message holds every fragment, and leave no output behind."""
    out = tmp_path / "out.csv"
    with pytest.raises(InputError) as caught:
        predict(run, [str(i) for i in inputs], output=out, fmt=fmt)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert not out.exists(), "a refused input must leave no output file"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")], "no temp file left"
    return message


def test_wrong_shape_npy(iris_run, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    _refused(iris_run, [tmp_path / "wide.npy"], tmp_path, "wide.npy", "expected samples of shape [4]", "received [5]")


def test_object_dtype_npy_is_not_unpickled(iris_run, tmp_path):
    array = np.empty((2, 4), dtype=object)
    array[:] = 1.0
    np.save(tmp_path / "objects.npy", array, allow_pickle=True)
    _refused(iris_run, [tmp_path / "objects.npy"], tmp_path, "objects.npy", "cannot read as a NumPy file")


def test_object_dtype_npz_is_not_unpickled(iris_run, tmp_path):
    array = np.empty((2, 4), dtype=object)
    array[:] = 1.0
    np.savez(tmp_path / "objects.npz", x=array)
    _refused(
        iris_run,
        [tmp_path / "objects.npz"],
        tmp_path,
        "objects.npz: array 'x' cannot be read without unpickling",
        "expected a numeric array",
    )


def test_string_dtype_npy(iris_run, tmp_path):
    np.save(tmp_path / "words.npy", np.array([["a", "b", "c", "d"]]))
    _refused(iris_run, [tmp_path / "words.npy"], tmp_path, "words.npy", "expected numbers", "dtype <U1")


def test_text_file_named_npy(iris_run, tmp_path):
    (tmp_path / "fake.npy").write_text("hello")
    _refused(iris_run, [tmp_path / "fake.npy"], tmp_path, "fake.npy", "cannot read as a NumPy file")


def test_npz_without_an_x_array(iris_run, tmp_path):
    np.savez(tmp_path / "keys.npz", a=np.zeros((2, 4)), b=np.zeros((2, 4)))
    _refused(iris_run, [tmp_path / "keys.npz"], tmp_path, "keys.npz", "expected an array named x", "received a, b")


def test_nan_in_a_csv_cell(iris_run, tmp_path):
    rows = [IRIS_ROWS[0], [6.7, "nan", 5.2, 2.3]]
    source = _write_csv(tmp_path / "holes.csv", IRIS_FEATURES, rows)
    _refused(iris_run, [source], tmp_path, "holes.csv:3", "sepal width (cm)", "expected a finite number", "'nan'")


def test_empty_csv_cell(iris_run, tmp_path):
    source = _write_csv(tmp_path / "blank.csv", IRIS_FEATURES, [[5.1, "", 1.4, 0.2]])
    _refused(iris_run, [source], tmp_path, "blank.csv:2", "sepal width (cm)", "expected a number", "empty cell")


def test_a_row_of_nothing_but_nan_in_an_npy(iris_run, tmp_path):
    array = np.array(IRIS_ROWS)
    array[1, :] = np.nan
    np.save(tmp_path / "blank-row.npy", array)
    _refused(iris_run, [tmp_path / "blank-row.npy"], tmp_path, "blank-row.npy", "row 1", "NaN")


def test_nan_in_an_npy(iris_run, tmp_path):
    array = np.array(IRIS_ROWS)
    array[2, 1] = np.nan
    np.save(tmp_path / "holes.npy", array)
    _refused(iris_run, [tmp_path / "holes.npy"], tmp_path, "holes.npy", "row 2", "NaN")


def test_nan_after_a_good_file_leaves_no_output(iris_run, tmp_path):
    good = _write_csv(tmp_path / "good.csv", IRIS_FEATURES, IRIS_ROWS)
    bad = np.array(IRIS_ROWS)
    bad[0, 0] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    _refused(iris_run, [good, tmp_path / "bad.npy"], tmp_path, "bad.npy", "row 0", "infinite")


def test_missing_csv_column(iris_run, tmp_path):
    source = _write_csv(tmp_path / "three.csv", IRIS_FEATURES[:3], [r[:3] for r in IRIS_ROWS])
    _refused(iris_run, [source], tmp_path, "three.csv", "missing column 'petal width (cm)'")


def test_extra_unknown_csv_column(iris_run, tmp_path):
    source = _write_csv(tmp_path / "extra.csv", IRIS_FEATURES + ["colour"], [r + ["blue"] for r in IRIS_ROWS])
    _refused(
        iris_run, [source], tmp_path, "extra.csv", "unexpected column(s) colour", "the model takes sepal length (cm)"
    )


def test_misspelled_csv_column(iris_run, tmp_path):
    header = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal widht (cm)"]
    source = _write_csv(tmp_path / "typo.csv", header, IRIS_ROWS)
    _refused(iris_run, [source], tmp_path, "typo.csv", "petal widht (cm)")


def test_empty_csv(iris_run, tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    _refused(iris_run, [tmp_path / "empty.csv"], tmp_path, "empty.csv", "the file is empty", "expected a header row")


def test_header_only_csv(iris_run, tmp_path):
    source = _write_csv(tmp_path / "header.csv", IRIS_FEATURES, [])
    _refused(iris_run, [source], tmp_path, "header.csv", "no data rows")


def test_text_file_named_png(image_run, tmp_path):
    (tmp_path / "fake.png").write_text("this is not an image\n")
    _refused(
        image_run,
        [tmp_path / "fake.png"],
        tmp_path,
        "fake.png",
        "cannot read as an image",
        "expected a PNG, JPEG, BMP, GIF or WebP file",
    )


def test_folder_with_no_usable_files(iris_run, tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    (folder / "data.feather").write_bytes(b"PAR1")
    _refused(iris_run, [folder], tmp_path, "junk", "the folder holds no files this model can read", ".csv", ".npy")


def test_unsupported_suffix(iris_run, tmp_path):
    (tmp_path / "rows.xlsx").write_bytes(b"PK")
    _refused(
        iris_run,
        [tmp_path / "rows.xlsx"],
        tmp_path,
        "rows.xlsx",
        "this model cannot read '.xlsx' files",
        "expected .csv, .npy, .npz, .parq, .parquet, .pq (samples of shape [4])",
    )


def test_missing_file(iris_run, tmp_path):
    _refused(iris_run, [tmp_path / "nowhere.csv"], tmp_path, "nowhere.csv", "file not found")


def test_csv_given_to_the_image_model(image_run, tmp_path):
    source = _write_csv(tmp_path / "rows.csv", [f"p{i}" for i in range(64)], [[0] * 64])
    _refused(image_run, [source], tmp_path, "rows.csv", "[8, 8]")


def test_image_given_to_a_table_model(iris_run, tmp_path):
    _png(tmp_path / "pic.png", "L", (8, 8))
    _refused(
        iris_run,
        [tmp_path / "pic.png"],
        tmp_path,
        "pic.png",
        "cannot read '.png' files",
        "expected .csv, .npy, .npz, .parq, .parquet, .pq (samples of shape [4])",
    )


def test_output_that_is_a_folder(iris_run, tmp_path):
    source = _write_csv(tmp_path / "flowers.csv", IRIS_FEATURES, IRIS_ROWS)
    with pytest.raises(InputError, match="is a folder; give a file name for -o"):
        predict(iris_run, [source], output=tmp_path)


def test_refused_input_keeps_an_existing_output_unchanged(iris_run, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("previous predictions\n")
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    with pytest.raises(InputError):
        predict(iris_run, [tmp_path / "wide.npy"], output=out)
    assert out.read_text() == "previous predictions\n"


# --------------------------------------------------------------------------- streaming
@pytest.mark.slow
def test_streams_a_200000_row_csv(linear_run, tmp_path):
    n = 200_000
    source = tmp_path / "big.csv"
    values = np.random.default_rng(0).random(n)
    source.write_text("x0\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    started = time.perf_counter()
    result = predict(linear_run, [source], output=tmp_path / "out.csv")
    elapsed = time.perf_counter() - started
    assert result.rows == n
    with open(tmp_path / "out.csv", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["input", "row", "value"]
        last = None
        count = 0
        for last in reader:  # noqa: B007  (the last row is checked after the loop)
            count += 1
    assert count == n
    assert int(last[1]) == n - 1, "row numbers continue across chunks"
    assert elapsed < 10, f"predicting {n} rows took {elapsed:.1f}s"
