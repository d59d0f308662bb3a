"""A run's model as an MLflow model (pyfunc), logged to its MLflow run, and registered when the config asks.

The logged model is export's inference model (:func:`dltool.exporting.inference.inference_model`: raw inputs in,
the run's preprocessing folded in front), saved as .keras, behind :mod:`.pyfunc_model`, a "models from code" file
that returns `dltool predict`'s columns (``label``, ``prob_<class>``; or the targets' values). So
``mlflow.pyfunc.load_model(uri).predict(raw rows)`` equals `dltool predict` on the same rows, and loading it needs
keras, numpy, pandas and mlflow, not dltool. The signature and input example come from the run's raw test inputs.
Both the tracker (a live run, at its end) and `dltool runs sync` log it from the run folder: model.keras and
preprocessing.json, what `dltool predict` reads.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..runs import Run
from .record import TAG_RUN_ID

MODEL_NAME = "model"  # the logged model's name: runs:/<mlflow run id>/model
EXAMPLE_ROWS = 3  # rows of the run's test inputs saved as the input example
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")


def output_description(state, width: int) -> dict:
    """pyfunc_model's ``outputs`` artifact: the feature columns, input kind, task, class names and output columns
    (the names `dltool predict` gives them) of a run with preprocessing ``state`` and ``width`` model outputs."""
    from ..predictions import value_columns

    return {
        "features": state.feature_names,
        "kind": state.kind,
        "task": state.task,
        "class_names": state.class_names,
        "columns": value_columns(state, width),
        "width": width,
    }


def input_example(saved, rows: int = EXAMPLE_ROWS):
    """A few raw test inputs of the run: a DataFrame with the feature columns by name for a run that names its
    features, else an array of raw samples (as a data file holds them)."""
    import pandas as pd

    from ..data.splits import raw_test_inputs
    from ..exporting.inference import raw_input_shape

    state = saved.preprocessing
    raw = np.asarray(raw_test_inputs(saved.config, rows))[:rows]
    if state.add_channel_axis and raw.ndim == len(state.input_shape) + 1:
        raw = raw[..., 0]  # samples with the channel axis: the inference model adds it itself
    if state.feature_names and raw.ndim == 2 and raw.shape[1] == len(state.feature_names):
        return pd.DataFrame(raw, columns=state.feature_names)
    return raw.reshape((len(raw), *raw_input_shape(state)))


def requirements() -> list[str]:
    """What loading the model needs, pinned to the versions that logged it (MLflow's own inference of them loads
    the model in a subprocess: seconds of TensorFlow import for nothing)."""
    from importlib.metadata import PackageNotFoundError, version

    import keras

    backend = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(keras.backend.backend())
    pinned = []
    for name in ("mlflow", "keras", backend, "numpy", "pandas"):
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def save_pyfunc(run: Run, path: Path, mlflow_model=None) -> None:
    """Write the run's MLflow model into the new folder ``path``: the inference model, its outputs' description,
    the signature and the input example."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ..exporting.inference import inference_model
    from ..saved_run import SavedRun
    from .pyfunc_model import predictions  # the same labelling the logged model does, for the signature

    saved = SavedRun.open(run)
    state = saved.preprocessing
    inference = inference_model(saved.load_model(), state)
    width = int(inference.output_shape[-1] or 1)
    outputs = output_description(state, width)
    example = input_example(saved)
    predicted = predictions(inference, outputs, example)
    with tempfile.TemporaryDirectory(prefix="dltool-mlflow-") as staging:
        keras_file = Path(staging) / "inference.keras"
        inference.save(keras_file)
        described = Path(staging) / "outputs.json"
        described.write_text(json.dumps(outputs, indent=2), encoding="utf-8")
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(PYFUNC_FILE),
            artifacts={"model": str(keras_file), "outputs": str(described)},
            signature=infer_signature(example, pd.DataFrame(predicted)),
            input_example=example,
            pip_requirements=requirements(),
            mlflow_model=mlflow_model,
        )


def log_run_model(store, mlflow_run_id: str, run: Run, register: str | None = None) -> dict:
    """Log ``run``'s model to MLflow run ``mlflow_run_id`` of ``store`` (once: a model logged already is kept),
    and register it as a new version of ``register`` (default None: not registered) tagged with the run id.

    Returns {"model_uri": "models:/<id>"}, with "registered": {"name", "version"} when registered, or
    "register_error" when the store refused (the model is logged all the same).
    """
    logged = store.logged_model(mlflow_run_id, MODEL_NAME)
    if logged is None:
        logged = store.create_logged_model(mlflow_run_id, MODEL_NAME, {TAG_RUN_ID: run.id})
        from mlflow.models import Model

        described = Model(
            artifact_path=logged.artifact_location,
            model_uuid=logged.model_id,
            run_id=mlflow_run_id,
            model_id=logged.model_id,
        )
        with tempfile.TemporaryDirectory(prefix="dltool-mlflow-") as folder:
            local = Path(folder) / MODEL_NAME
            save_pyfunc(run, local, described)
            store.upload_logged_model(logged.model_id, mlflow_run_id, local)
    done: dict = {"model_uri": f"models:/{logged.model_id}"}
    if register:
        try:
            version = store.register(register, logged, mlflow_run_id, {TAG_RUN_ID: run.id})
            done["registered"] = {"name": register, "version": version}
        except Exception as exc:  # noqa: BLE001  (a store without a registry: the model stays logged, unregistered)
            from .store import describe_failure

            done["register_error"] = describe_failure(exc)
    return done
