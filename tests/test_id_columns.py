"""Row-id columns in CSV data (issue 20): data.exclude, the id-looking-column warning, and one rule for the
columns predict, evaluate --data, export --data and serve's :label accept."""

from __future__ import annotations

import csv
import json

import httpx
import numpy as np
import pytest
from serve_support import FEATURES, FakeModel, running_server

from dltool.config import config_from_text, config_to_yaml
from dltool.data.csv_source import load
from dltool.data.preprocessing import Preprocessing
from dltool.errors import ConfigError, InputError
from dltool.inputs import inputs_for

CONFIG = """
name: ids
seed: 0
data: {{source: csv, path: {path}, target: kind, standardize: true, test: 0.25, validation: null{more}}}
model: {{input_shape: [2], layers: [{{Dense: {{units: 3, activation: softmax}}}}]}}
train: {{optimizer: {{name: adam, learning_rate: 0.1}}, loss: sparse_categorical_crossentropy,
        metrics: [accuracy], epochs: {epochs}, batch_size: 16}}
"""


def _config(path, more: str = "", epochs: int = 2):
    return config_from_text(CONFIG.format(path=json.dumps(str(path)), more=more, epochs=epochs), source="ids.yaml")


def _rows(n: int, seed: int, first_id: int = 1) -> list[list]:
    """Rows id, a, b, kind: three well separated blobs, ids counting up."""
    rng = np.random.default_rng(seed)
    centres = {"ant": (0.0, 0.0), "bee": (5.0, 0.0), "cat": (0.0, 5.0)}
    rows = []
    for i in range(n):
        kind = list(centres)[i % 3]
        cx, cy = centres[kind]
        rows.append([first_id + i, f"{cx + rng.normal():.4f}", f"{cy + rng.normal():.4f}", kind])
    return rows


def _write(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _refusal(call, *args, **kwargs) -> str:
    with pytest.raises((InputError, ConfigError)) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --------------------------------------------------------------------------- config
def test_exclude_is_a_list_recorded_in_the_resolved_config(tmp_path):
    config = _config(tmp_path / "x.csv", more=", exclude: id")
    assert config.data.exclude == ["id"]
    assert "  exclude: [id]\n" in config_to_yaml(config)
    assert _config(tmp_path / "x.csv").data.exclude == []


@pytest.mark.parametrize(
    "more, phrase",
    [
        (", exclude: [kind]", "data.exclude: 'kind' is the target column (data.target); remove it from data.exclude"),
        (
            ", features: [id, a], exclude: [id]",
            "data.exclude: 'id' is also listed in data.features; a column is either a feature or excluded",
        ),
    ],
    ids=["target", "also-a-feature"],
)
def test_exclude_cannot_name_the_target_or_a_listed_feature(tmp_path, more, phrase):
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path / "x.csv", more=more)
    assert phrase in str(caught.value)
    assert caught.value.path == "data.exclude"


def test_an_excluded_column_the_file_lacks_is_named_with_a_did_you_mean(tmp_path):
    path = _write(tmp_path / "ids.csv", ["id", "a", "b", "kind"], _rows(12, seed=0))
    with pytest.raises(ConfigError) as caught:
        load(_config(path, more=", exclude: [a, idd]").data)
    assert caught.value.path == "data.exclude[1]"
    assert f"no column 'idd' in {path}; did you mean 'id'?" in str(caught.value)


def test_excluded_columns_are_no_features_and_the_id_warning(tmp_path):
    path = _write(tmp_path / "ids.csv", ["id", "a", "b", "kind"], _rows(30, seed=0))
    raw = load(_config(path).data)
    assert raw.feature_names == ["id", "a", "b"]
    assert raw.warnings == [
        "data.path: column 'id' looks like a row id (integer, unique per row, increasing); it is used as a "
        "feature. Exclude it with data.exclude: [id]"
    ]
    excluded = load(_config(path, more=", exclude: [id]").data)
    assert excluded.feature_names == ["a", "b"] and excluded.x.shape == (30, 2) and excluded.warnings == []
    # Features listed by hand are the user's choice: no warning.
    assert load(_config(path, more=", features: [id, a, b]").data).warnings == []


def test_what_looks_like_a_row_id():
    from dltool.data.csv_source import id_column_warnings

    rng = np.random.default_rng(0)
    n = 200
    columns = {
        "id": np.arange(1, n + 1),
        "countdown": np.arange(n, 0, -1),
        "shuffled": rng.permutation(n),  # ids of a shuffled file
        "income": rng.permutation(n) * 997 + 20_000,  # integer, unique, but spread far wider than the rows
        "age": rng.integers(18, 90, n),  # integer, repeats
        "measure": rng.normal(size=n),  # not integer
    }
    warnings = id_column_warnings(np.column_stack(list(columns.values())).astype(float), list(columns))
    assert [w.split("'")[1] for w in warnings] == ["id", "countdown", "shuffled"]
    assert "(integer, unique per row, decreasing)" in warnings[1]
    assert "(integer, unique per row, values 0 to 199)" in warnings[2]
    assert id_column_warnings(np.arange(5.0).reshape(-1, 1), ["id"]) == []  # too few rows to tell


def test_a_streamed_csv_warns_from_its_first_chunk(tmp_path):
    from dltool.data.streaming import prepare_streamed

    path = _write(tmp_path / "ids.csv", ["id", "a", "b", "kind"], _rows(40, seed=0))
    config = config_from_text(
        CONFIG.format(path=json.dumps(str(path)), more=", stream: true", epochs=1).replace("[2]", "[3]"),
        source="ids.yaml",
    )
    data = prepare_streamed(config)
    assert [w.split(" looks")[0] for w in data.warnings] == ["data.path: column 'id'"]
    excluded = prepare_streamed(_config(path, more=", stream: true, exclude: [id]"))
    assert excluded.warnings == [] and excluded.preprocessing.feature_names == ["a", "b"]
    assert excluded.preprocessing.extra == {"exclude": ["id"]}


# --------------------------------------------------------------------------- one rule for the columns read
TABLE = Preprocessing(
    input_shape=[2], task="classification", class_names=["ant", "bee", "cat"], feature_names=["a", "b"],
    target_names=["kind"], extra={"exclude": ["id"]},
)  # fmt: skip


def test_excluded_columns_are_ignored_and_others_get_a_hint_for_each_command(tmp_path):
    ids = _write(tmp_path / "ids.csv", ["id", "a", "b"], [[1, 0.5, 1.5], [2, 3.0, 0.1]])
    extra = _write(tmp_path / "extra.csv", ["id", "a", "b", "kind", "note"], [[1, 0.5, 1.5, "ant", "x"]])
    reader = inputs_for(TABLE)
    reader.check(ids)  # the run's excluded column: ignored
    assert [x.tolist() for _, x in reader.read(ids)] == [[[0.5, 1.5], [3.0, 0.1]]]
    assert _refusal(reader.check, extra) == (
        f"{extra}: unexpected column(s) note (the model takes a, b; the file has id, a, b, kind, note): "
        "give --keep note to copy it into each output row, or remove it from the file"
    )
    reader.keep = ("note",)
    reader.check(extra)
    exporting = inputs_for(TABLE)
    exporting.use = "export"
    assert _refusal(exporting.check, extra).endswith(": give --keep note to ignore it, or remove it from the file")
    serving = inputs_for(TABLE)
    serving.use = "serve"
    assert _refusal(serving.check, extra).endswith(": note is not a feature of this model; leave it out")
    # evaluate --data reads the features and the target; the id, and any other column, is ignored
    assert len(list(inputs_for(TABLE).labelled(extra).chunks())) == 1
    spaced = _write(tmp_path / "spaced.csv", ["a", "b", "row id", "x"], [[0.5, 1.5, 1, 2]])
    assert _refusal(inputs_for(TABLE).check, spaced).endswith(
        ": give --keep 'row id' --keep x to copy them into each output row, or remove them from the file"
    )


def test_serve_label_ignores_the_excluded_column_and_names_the_features_otherwise():
    from types import SimpleNamespace

    from dltool.serving.servable import ServedModel

    state = Preprocessing(
        input_shape=[4],
        task="classification",
        class_names=["a", "b", "c"],
        feature_names=list(FEATURES),
        target_names=["y"],
        extra={"exclude": ["id"]},
    )
    saved = SimpleNamespace(
        preprocessing=state, config=SimpleNamespace(name="fake"), run=SimpleNamespace(id="20260101-000000-fake-0000")
    )
    served = ServedModel(saved, FakeModel())
    rows = [{"id": i, **dict(zip(FEATURES, [1.0, 2.0, 3.0, float(i)]))} for i in range(3)]
    with running_server(served) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post("/v1/models/fake:label", json={"rows": rows})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 3
        text = "id," + ",".join(FEATURES) + "\n" + "".join(f"{i},1,2,3,{i}\n" for i in range(3))
        upload = client.post("/v1/models/fake:label", files={"file": ("new.csv", text.encode(), "text/csv")})
        assert upload.status_code == 200, upload.text
        assert [p["label"] for p in upload.json()["predictions"]] == [p["label"] for p in answer.json()["predictions"]]
        refused = client.post("/v1/models/fake:label", json={"rows": [{**rows[0], "colour": "red"}]})
        assert refused.status_code == 400
        assert refused.json()["error"] == (
            "rows[0]: unexpected column(s) colour (the model takes f1, f2, f3, f4; the row has id, f1, f2, f3, f4, "
            "colour): colour is not a feature of this model; leave it out"
        )


# --------------------------------------------------------------------------- a trained run with its id excluded
@pytest.fixture(scope="module")
def id_run(tmp_path_factory):
    """A COMPLETED 2-epoch classifier trained on a CSV whose 'id' column is excluded."""
    from dltool.commands.train import train

    root = tmp_path_factory.mktemp("id-run")
    path = _write(root / "train.csv", ["id", "a", "b", "kind"], _rows(60, seed=0))
    return train(_config(path, more=", exclude: [id]"), runs_root=root / "runs")


@pytest.mark.slow
def test_a_run_with_its_id_excluded_reads_files_with_the_id(id_run, tmp_path):
    from dltool.commands.evaluate import evaluate
    from dltool.commands.export import export
    from dltool.commands.predict import predict

    assert "  exclude: [id]\n" in id_run.file("config.yaml").read_text()
    assert json.loads(id_run.file("preprocessing.json").read_text())["extra"] == {"exclude": ["id"]}
    assert "warnings" not in json.loads(id_run.file("run.json").read_text())
    new = _write(tmp_path / "new.csv", ["id", "a", "b", "kind"], _rows(9, seed=1, first_id=1001))
    plain = predict(id_run, [new]).output.splitlines()
    assert plain[0] == "input,row,label,prob_ant,prob_bee,prob_cat" and len(plain) == 10
    kept = predict(id_run, [new], keep=["id"]).output.splitlines()
    assert kept[0] == "input,row,id,label,prob_ant,prob_bee,prob_cat"
    assert [line.split(",")[2] for line in kept[1:4]] == ["1001", "1002", "1003"]
    assert [line.split(",", 3)[3] for line in kept[1:]] == [line.split(",", 2)[2] for line in plain[1:]]
    assert evaluate(id_run, data_file=new)["samples"] == 9
    noted = _write(tmp_path / "noted.csv", ["id", "a", "b", "note"], [[r[0], r[1], r[2], "x"] for r in _rows(3, 2)])
    assert _refusal(predict, id_run, [noted]).endswith(
        "give --keep note to copy it into each output row, or remove it from the file"
    )
    record = export(id_run, "onnx", output=tmp_path / "ids.onnx", data_file=new)
    assert record["samples"] == 9 and record["tolerance_used"] <= 1.0
    assert _refusal(export, id_run, "onnx", output=tmp_path / "noted.onnx", data_file=noted).endswith(
        "give --keep note to ignore it, or remove it from the file"
    )


@pytest.mark.slow
def test_export_data_takes_keep_on_the_command_line(id_run, tmp_path):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    noted = _write(tmp_path / "noted.csv", ["id", "a", "b", "note"], [[r[0], r[1], r[2], "x"] for r in _rows(3, 2)])
    target = tmp_path / "noted.onnx"
    args = ["export", str(id_run.path), "-f", "onnx", "--data", str(noted), "-o", str(target)]
    result = CliRunner().invoke(app, [*args, "--keep", "note"])
    assert result.exit_code == 0, result.output
    assert f"on 3 samples of the file {noted.resolve()}" in result.output
    alone = CliRunner().invoke(app, ["export", str(id_run.path), "-f", "onnx", "--keep", "note"])
    assert alone.exit_code == 2
    assert "--keep names columns of the --data file to ignore; give --data FILE too" in alone.output


@pytest.mark.slow
def test_validate_and_train_warn_of_an_id_column_and_the_run_records_it(tmp_path):
    from typer.testing import CliRunner

    from dltool.cli.app import app

    path = _write(tmp_path / "ids.csv", ["id", "a", "b", "kind"], _rows(40, seed=0))
    config = tmp_path / "ids.yaml"
    config.write_text(CONFIG.format(path=json.dumps(str(path)), more="", epochs=1).replace("[2]", "[3]"))
    warning = (
        "warning: data.path: column 'id' looks like a row id (integer, unique per row, increasing); it is used "
        "as a feature. Exclude it with data.exclude: [id]"
    )
    validated = CliRunner().invoke(app, ["validate", str(config)])
    assert validated.exit_code == 0, validated.output
    assert warning in validated.output and "samples [3]" in validated.output
    trained = CliRunner().invoke(app, ["train", str(config), "-q", "--runs-dir", str(tmp_path / "runs")])
    assert trained.exit_code == 0, trained.output
    assert warning in trained.output
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "run.json").read_text())["warnings"] == [warning.removeprefix("warning: ")]
    assert warning in (run / "train.log").read_text()


def test_an_input_shape_one_column_short_names_the_id_column(tmp_path):
    """The usual reason a CSV has one column more than the user counted: the row id. The error says so."""
    from dltool.data import prepare_data

    path = _write(tmp_path / "ids.csv", ["id", "a", "b", "kind"], _rows(30, seed=0))
    with pytest.raises(ConfigError) as caught:
        prepare_data(_config(path))
    assert "set model.input_shape: [3]; note: column 'id' looks like a row id" in str(caught.value)
    assert "Exclude it with data.exclude: [id]" in str(caught.value)
