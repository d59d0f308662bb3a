"""dltool.data.class_weights: class counts per split (in memory, streamed tables, image folders), balanced weights as
scikit-learn computes them, given weights checked against the run's classes, the imbalance warning (issue 25)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e_support import write_photos
from sklearn.utils.class_weight import compute_class_weight

from dltool.config import config_from_text
from dltool.data import prepare_data
from dltool.data.class_weights import ClassWeights, balanced_weights, imbalance_warning, resolve_class_weights
from dltool.data.streaming import TEST, TRAIN, VALIDATION, split_codes
from dltool.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write_skewed_csv(path: Path, rows: int = 600, minority: float = 0.08, seed: int = 0) -> Path:
    """One feature, labels 'majority' and (a fraction ``minority`` of the rows) 'minority', shifted by 1.5."""
    rng = np.random.default_rng(seed)
    is_minority = rng.random(rows) < minority
    x = rng.normal(size=rows) + 1.5 * is_minority
    with path.open("w") as handle:
        handle.write("x,label\n")
        handle.writelines(f"{v:.5f},{'minority' if m else 'majority'}\n" for v, m in zip(x, is_minority))
    return path


def skewed_config(path: Path, class_weight: str = "balanced", stream: str = "false", validation: str = "0.2"):
    return config_from_text(f"""
name: skewed
seed: 0
data: {{source: csv, path: {json.dumps(str(path))}, target: label, test: 0.25, validation: {validation}, stream: {stream}}}
model: {{input_shape: [1], layers: [{{Dense: {{units: 2, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, class_weight: {class_weight}}}
""")


def test_balanced_weights_are_scikit_learns_on_a_skewed_training_split(tmp_path):
    config = skewed_config(write_skewed_csv(tmp_path / "skewed.csv"))
    data = prepare_data(config)
    names = data.preprocessing.class_names
    weights = resolve_class_weights(config, names, data.class_counts())
    expected = compute_class_weight("balanced", classes=np.unique(data.y_train), y=data.y_train)
    assert names == ["majority", "minority"]
    assert weights.mode == "balanced"
    assert list(weights.weights.values()) == expected.tolist()  # exactly, not approximately
    assert weights.weights["minority"] > 5 > 1 > weights.weights["majority"]
    assert weights.by_index() == {0: expected[0], 1: expected[1]}
    # The training split only: the validation and test splits count apart.
    counts = data.class_counts()
    assert counts["train"] == np.bincount(data.y_train).tolist()
    assert counts["validation"] == np.bincount(data.y_val, minlength=2).tolist()
    assert counts["test"] == np.bincount(data.y_test, minlength=2).tolist()
    assert sum(map(sum, counts.values())) == 600


@pytest.mark.parametrize("seed", range(5))
def test_balanced_weights_from_counts_equal_scikit_learn_from_labels(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice(4, size=500, p=[0.7, 0.2, 0.09, 0.01])
    expected = compute_class_weight("balanced", classes=np.unique(labels), y=labels)
    assert balanced_weights(np.bincount(labels, minlength=4).tolist()) == expected.tolist()


def test_a_class_without_training_samples_weighs_one():
    labels = np.array([0, 0, 0, 2])
    weights = balanced_weights([3, 0, 1])
    assert weights[1] == 1.0
    assert [weights[0], weights[2]] == compute_class_weight("balanced", classes=np.array([0, 2]), y=labels).tolist()


def test_given_weights_cover_every_class_and_unknown_labels_get_did_you_mean(tmp_path):
    path = write_skewed_csv(tmp_path / "skewed.csv")
    config = skewed_config(path, "{minority: 4}")
    data = prepare_data(config)
    weights = resolve_class_weights(config, data.preprocessing.class_names, None)  # given: nothing to count
    assert weights == ClassWeights("given", {"majority": 1.0, "minority": 4.0})
    assert weights.by_index() == {0: 1.0, 1: 4.0}  # every class: Keras builds a table of max(key) + 1 entries
    assert ClassWeights.from_record(json.loads(json.dumps(weights.record()))) == weights
    with pytest.raises(ConfigError) as caught:
        resolve_class_weights(skewed_config(path, "{minorty: 4}"), data.preprocessing.class_names, None)
    assert str(caught.value) == (
        "train.class_weight.minorty: unknown class 'minorty' (the run's classes: majority, minority); "
        "did you mean 'minority'?"
    )


def test_streamed_csv_counts_its_label_column_in_the_scan(tmp_path):
    path = write_skewed_csv(tmp_path / "skewed.csv", rows=900)
    config = skewed_config(path, stream="true", validation="null")
    data = prepare_data(config)
    assert data.streamed
    labels = np.array([line.rsplit(",", 1)[1] for line in path.read_text().splitlines()[1:]])
    train_labels = labels[split_codes(np.arange(len(labels)), 0, 0.25, None) == TRAIN]
    counts = data.class_counts()
    assert counts["validation"] is None
    assert counts["train"] == [int((train_labels == "majority").sum()), int((train_labels == "minority").sum())]
    assert sum(counts["train"]) + sum(counts["test"]) == 900
    weights = resolve_class_weights(config, data.preprocessing.class_names, counts)
    expected = compute_class_weight("balanced", classes=np.array(["majority", "minority"]), y=train_labels)
    assert list(weights.weights.values()) == expected.tolist()


def test_a_streamed_image_folder_counts_its_classes_from_the_paths(tmp_path):
    photos = write_photos(tmp_path / "photos", per_class=8)
    for index in range(6):  # red keeps 2 of its 8 photos
        (photos / "red" / f"red{index}.png").unlink()
    config = config_from_text(f"""
name: photos
seed: 0
data: {{source: images, path: {json.dumps(str(photos))}, image_size: [8, 8], stream: true, test: 0.25, validation: null}}
model: {{input_shape: [8, 8, 3], layers: [Flatten, {{Dense: {{units: 3, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy}}
""")
    data = prepare_data(config)
    counts = data.class_counts()
    assert data.preprocessing.class_names == ["blue", "green", "red"]
    assert [train + test for train, test in zip(counts["train"], counts["test"])] == [8, 8, 2]


def test_the_imbalance_warning_names_both_classes_and_suggests_balanced():
    assert imbalance_warning([400, 19], ["majority", "minority"]) == (
        "the training split is imbalanced: class 'minority' has 19 sample(s), 4.8 % of the 400 of class 'majority'; "
        "a model can score well by rarely predicting it. Consider train.class_weight: balanced"
    )
    assert imbalance_warning([400, 20], ["majority", "minority"]) is None  # 5 % exactly is not below 5 %
    assert imbalance_warning([10], ["alone"]) is None


@pytest.mark.subprocess
@pytest.mark.slow
def test_counting_and_weighing_need_no_tensorflow(tmp_path):
    path = write_skewed_csv(tmp_path / "skewed.csv")
    code = (
        "import sys\n"
        "from dltool.config import config_from_text\n"
        "from dltool.data import prepare_data\n"
        "from dltool.data.class_weights import resolve_class_weights\n"
        f"for stream in ('false', 'true'):\n"
        f"    config = config_from_text('''name: t\n"
        f"data: {{source: csv, path: {json.dumps(str(path))}, target: label, stream: ''' + stream + '''}}\n"
        "model: {input_shape: [1], layers: [{Dense: {units: 2}}]}\n"
        "train: {loss: sparse_categorical_crossentropy, class_weight: balanced}''')\n"
        "    data = prepare_data(config)\n"
        "    assert resolve_class_weights(config, data.preprocessing.class_names, data.class_counts())\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("labels", ["text", "numbers"])
def test_streamed_parquet_counts_its_label_column_in_the_scan(tmp_path, labels):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(1)
    codes = (rng.random(700) < 0.1).astype(np.int64) + (rng.random(700) < 0.05)  # 0, 1 or 2; 2 is rare
    target = np.array(["low", "mid", "top"])[codes] if labels == "text" else codes * 10
    path = tmp_path / "skewed.parquet"
    pq.write_table(pa.table({"x": rng.normal(size=700), "label": target}), path, row_group_size=128)
    config = config_from_text(f"""
name: skewed
seed: 0
data: {{source: parquet, path: {json.dumps(str(path))}, target: label, stream: true, test: 0.2, validation: 0.1}}
model: {{input_shape: [1], layers: [{{Dense: {{units: 3, activation: softmax}}}}]}}
train: {{loss: sparse_categorical_crossentropy, class_weight: balanced}}
""")
    data = prepare_data(config)
    assert data.streamed
    assert data.preprocessing.class_names == (["low", "mid", "top"] if labels == "text" else ["0", "10", "20"])
    counts = data.class_counts()
    # Each split's rows as training reads them (a hash of file name and row puts each row in its split).
    read = {
        name: np.concatenate([y for _, y in data.iter_split(code, 256, False)])
        for name, code in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST))
    }
    for name, y in read.items():
        assert counts[name] == np.bincount(y, minlength=3).tolist(), name
    assert np.sum([counts[name] for name in read], axis=0).tolist() == np.bincount(codes).tolist()
    weights = resolve_class_weights(config, data.preprocessing.class_names, counts)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=read["train"])
    assert list(weights.weights.values()) == expected.tolist()
