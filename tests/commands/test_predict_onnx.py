"""`dltool predict` through a run's verified ONNX export, without TensorFlow (issue 11's stretch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from e2e_support import IRIS_CONFIG, REPO, train_in

from dltool.config import config_from_text
from dltool.errors import UsageError

pytest.importorskip("onnxruntime", reason="ONNX export needs the export extra: pip install -e '.[export]'")

ROWS = (
    "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
    "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5\n"
)
NO_TENSORFLOW = """
import sys
from dltool.cli.app import main
try:
    main()
except SystemExit as exit:
    code = exit.code
print("TENSORFLOW" if "tensorflow" in sys.modules else "NO-TENSORFLOW", code, file=sys.stderr)
"""


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """A standardized iris classifier with a verified ONNX export."""
    from dltool.commands.export import export

    root = tmp_path_factory.mktemp("onnx-predict")
    run = train_in(root, config_from_text(IRIS_CONFIG.replace("epochs: 5", "epochs: 3")))
    export(run, "onnx")
    (root / "rows.csv").write_text(ROWS)
    return run, root / "rows.csv"


def _probabilities(run, rows, runtime: str) -> list[list[float]]:
    from dltool.commands.predict import predict

    output = predict(str(run.path), [str(rows)], fmt="json", runtime=runtime).output
    return [list(record["probabilities"].values()) for record in json.loads(output)]


@pytest.mark.slow
def test_onnx_predictions_equal_the_keras_models(exported_run):
    from dltool.commands.predict_onnx import choose_runtime

    run, rows = exported_run
    assert choose_runtime(str(run.path), None) == "onnx"
    on_onnx, on_keras = _probabilities(run, rows, "onnx"), _probabilities(run, rows, "keras")
    assert len(on_onnx) == 3
    assert max(abs(a - b) for x, y in zip(on_onnx, on_keras) for a, b in zip(x, y)) <= 1e-5


@pytest.mark.slow
def test_a_changed_model_or_a_missing_export_falls_back_to_keras(exported_run, tmp_path):
    from dltool.commands.predict_onnx import choose_runtime

    run, _ = exported_run
    exports = run.file("exports.json")
    saved = exports.read_text()
    try:
        records = json.loads(saved)
        records[-1]["model_sha256"] = "0" * 64  # as if model.keras had been replaced since the export
        exports.write_text(json.dumps(records))
        assert choose_runtime(str(run.path), None) == "keras"
        with pytest.raises(UsageError, match="has no verified ONNX export of its current final model; make one with"):
            choose_runtime(str(run.path), None, "onnx")
    finally:
        exports.write_text(saved)
    assert choose_runtime(str(run.path), None, "keras") == "keras"


@pytest.mark.subprocess
@pytest.mark.slow
def test_the_cli_predicts_through_onnx_without_importing_tensorflow(exported_run, tmp_path):
    run, rows = exported_run
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", NO_TENSORFLOW, "predict", str(run.path), str(rows), "-o", str(tmp_path / "p.csv")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert "NO-TENSORFLOW 0" in result.stderr, result.stderr
    assert "wrote 3 prediction(s)" in result.stderr and "(onnxruntime)" in result.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[
        0
    ] == "input,row,label,prob_setosa,prob_versicolor,prob_virginica"
