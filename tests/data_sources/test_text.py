"""The text source (CSV column or IMDB), TextVectorization adapted on the training split, predict on raw text."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from e2e_support import config_with_data_path, train_in

from dltool.config import config_from_text
from dltool.errors import ConfigError, DataError, InputError

TEXT_CONFIG = """
name: reviews
seed: 1
data: {{source: text, path: {path}, text: review, target: sentiment, test: 0.25, validation: 0.2}}
model:
  input_shape: [1]
  layers:
    - TextVectorization: {{max_tokens: 200, output_sequence_length: 10}}
    - Embedding: {{input_dim: 200, output_dim: 8, mask_zero: true}}
    - Bidirectional: {{layer: {{GRU: {{units: 4}}}}}}
    - Dense: {{units: 1, activation: sigmoid}}
train:
  optimizer: {{name: adam, learning_rate: 0.01}}
  loss: binary_crossentropy
  metrics: [accuracy]
  epochs: 3
  batch_size: 8
  tensorboard: false
"""

GOOD = ["great movie, loved it", "wonderful acting and a fun story", "brilliant, I laughed a lot", "a joy to watch"]
BAD = ["terrible film, boring", "awful plot and bad acting", "I hated it, a waste", 'dull and "painful", avoid']


def write_reviews(path, rows=48):
    """Reviews with commas, quotes and a line break inside fields; each row also has a word of its own."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review", "sentiment"])
        for i in range(rows):
            good = i % 2 == 0
            text = (GOOD if good else BAD)[i // 2 % 4] + f" word{i}" + ("\nsecond line" if i == 5 else "")
            writer.writerow([i, text, "pos" if good else "neg"])
    return path


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    return write_reviews(tmp_path_factory.mktemp("text") / "reviews.csv")


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, reviews):
    return train_in(tmp_path_factory.mktemp("text-runs"), _config(reviews))


def _config(path, overrides=()):
    return config_with_data_path(TEXT_CONFIG, path, overrides, source="reviews.yaml")


# --------------------------------------------------------------------------- loading
def test_csv_texts_become_one_string_per_sample(reviews):
    from dltool.data.text import load

    raw = load(_config(reviews).data)
    assert raw.x.shape == (48, 1) and raw.x.dtype == object
    assert raw.x[1, 0] == "terrible film, boring word1"
    assert raw.x[5, 0].endswith("word5\nsecond line")  # a quoted line break stays inside its text
    assert set(raw.y) == {"pos", "neg"}


@pytest.mark.parametrize(
    "overrides, key, phrase",
    [
        (["data.text=reveiw"], "data.text", "no column 'reveiw'"),
        (["data.target=sentimnt"], "data.target", "did you mean 'sentiment'?"),
    ],
)
def test_a_missing_column_is_named_with_its_key(reviews, overrides, key, phrase):
    from dltool.data.text import load

    with pytest.raises(ConfigError) as info:
        load(_config(reviews, overrides).data)
    assert info.value.path == key and phrase in str(info.value)


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        (["data.dataset=imdb"], "expected exactly one of path (a CSV) or dataset (imdb)"),
        (["data.scale=255"], "texts cannot be scaled or standardized"),
    ],
)
def test_text_config_mistakes(reviews, overrides, phrase):
    with pytest.raises(ConfigError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        _config(reviews, overrides)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_imdb_sequences_are_decoded_back_to_text(monkeypatch):
    import keras

    from dltool.data.text import load

    word_index = {"the": 1, "movie": 2, "was": 3, "great": 4, "bad": 5}
    # keras.datasets.imdb: 1 marks the start, 2 an unknown word, word ids are offset by 3.
    x = np.array([[1, 4, 5, 6, 7], [1, 4, 2, 8]], dtype=object)
    monkeypatch.setattr(keras.datasets.imdb, "load_data", lambda: ((x, np.array([1, 0])), (x[:1], np.array([1]))))
    monkeypatch.setattr(keras.datasets.imdb, "get_word_index", lambda: word_index)
    config = config_from_text(TEXT_CONFIG.format(path="null"), overrides=["data.dataset=imdb"])
    raw = load(config.data)
    assert raw.x.tolist() == [["the movie was great"], ["the bad"]]
    assert raw.class_names == ["negative", "positive"] and raw.x_test.shape == (1, 1)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_imdb_without_internet_says_where_to_put_the_files(monkeypatch):
    import keras

    from dltool.data.text import load

    def offline():
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.datasets.imdb, "load_data", offline)
    config = config_from_text(TEXT_CONFIG.format(path="null"), overrides=["data.dataset=imdb"])
    with pytest.raises(DataError, match=r"copy imdb.npz and imdb_word_index.json into ~/.keras/datasets/"):
        load(config.data)


@pytest.mark.slow  # imports Keras and TensorFlow (seconds)
def test_an_embedding_smaller_than_the_vocabulary_is_refused_before_training(reviews, tmp_path):
    from dltool.commands.train import train

    config = _config(reviews, ["model.layers[1].Embedding.input_dim=5"])
    with pytest.raises(ConfigError) as info:
        train(config, runs_root=tmp_path / "runs")
    assert info.value.path == "model.layers[1].Embedding.input_dim"
    assert "smaller than the vocabulary" in str(info.value) and info.value.line == 9
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- a trained run
def test_vocabulary_is_learned_from_the_training_split_only(text_run, reviews):
    from dltool.data import prepare_data
    from dltool.saved_run import SavedRun

    saved = SavedRun.open(text_run)
    vocabulary = set(saved.load_model().layers[0].get_vocabulary())
    data = prepare_data(saved.config)

    def words(texts):  # as TextVectorization's default standardize: lower case, no punctuation, split on spaces
        return {w for text in texts for w in re.sub(r"[^\w\s]", "", text.lower()).split()}

    train_words = words(data.x_train[:, 0])
    held_out = words(np.concatenate([data.x_val[:, 0], data.x_test[:, 0]]))
    assert vocabulary - {"", "[UNK]"} <= train_words
    unique_to_held_out = {w for w in held_out - train_words if w.startswith("word")}
    assert unique_to_held_out and not unique_to_held_out & vocabulary
    assert "TextVectorization" in text_run.file("train.log").read_text()


def test_predict_takes_raw_text_lines_and_csv_columns(text_run, tmp_path):
    from dltool.commands.predict import predict

    (tmp_path / "new.txt").write_text("what a wonderful fun movie\n\n   \nawful, boring, a waste\n", encoding="utf-8")
    write_reviews(tmp_path / "more.csv", rows=3)
    (tmp_path / "plain.csv").write_text("anything\nloved it\n", encoding="utf-8")
    result = predict(
        text_run, [tmp_path / "new.txt", tmp_path / "more.csv", tmp_path / "plain.csv"], output=tmp_path / "out.csv"
    )
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert result.rows == 2 + 3 + 1
    assert [(r["input"].rsplit("/", 1)[-1], r["row"]) for r in rows] == [
        ("new.txt", "0"),
        ("new.txt", "3"),
        ("more.csv", "0"),
        ("more.csv", "1"),
        ("more.csv", "2"),
        ("plain.csv", "0"),
    ]
    assert list(rows[0]) == ["input", "row", "label", "prob_neg", "prob_pos"]
    for row in rows:
        assert float(row["prob_neg"]) + float(row["prob_pos"]) == pytest.approx(1, abs=1e-5)
        assert row["label"] in ("neg", "pos")


def test_predict_refuses_what_a_text_model_cannot_read(text_run, tmp_path):
    from dltool.commands.predict import predict

    (tmp_path / "two.csv").write_text("title,body\na,b\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no column 'review'"):
        predict(text_run, [tmp_path / "two.csv"])
    np.save(tmp_path / "x.npy", np.zeros((2, 1)))
    with pytest.raises(InputError, match=r"cannot read '.npy' files; expected .csv, .txt \(texts"):
        predict(text_run, [tmp_path / "x.npy"])
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="holds no texts"):
        predict(text_run, [tmp_path / "blank.txt"])


def test_evaluate_on_its_test_split_and_on_a_labelled_csv(text_run, tmp_path):
    from dltool.commands.evaluate import evaluate

    own = evaluate(text_run)
    assert own["samples"] == 12 and set(own["classification"]["per_class"]) == {"neg", "pos"}
    result = evaluate(text_run, data_file=write_reviews(tmp_path / "labelled.csv", rows=6))
    assert result["samples"] == 6


def test_a_text_model_must_start_with_a_layer_that_takes_strings(reviews):
    with pytest.raises(ConfigError) as info:
        _config(reviews, ["model.layers[0]=Flatten"])
    assert info.value.path == "model.layers[0]"
    assert "Flatten cannot take strings; start model.layers with TextVectorization" in str(info.value)


def test_a_csv_saved_by_a_spreadsheet_with_a_byte_order_mark_reads_its_header(tmp_path):
    from dltool.data.text import load

    (tmp_path / "bom.csv").write_bytes("\ufeffreview,sentiment\ngood,pos\nbad,neg\n".encode("utf-8"))
    raw = load(_config(tmp_path / "bom.csv").data)
    assert raw.x[:, 0].tolist() == ["good", "bad"]
