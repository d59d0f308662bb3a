"""The MLflow (pyfunc) model of a dltool run, as MLflow's "models from code" file: MLflow copies this file into the
logged model and runs it when the model is loaded, so a deployer needs keras, numpy, pandas and mlflow, not dltool.

It imports nothing from dltool for that reason. Its two artifacts: ``model`` (the run's inference model, a .keras
file taking raw inputs: the run's preprocessing folded in front) and ``outputs`` (a JSON file: the feature columns
read from a DataFrame, the task, and the output columns). ``predict`` returns what `dltool predict` writes less its
input and row columns: ``label`` and ``prob_<class>`` for a classifier, the targets' values for a regression.
"""

import json

import mlflow
import numpy as np
import pandas as pd


class DltoolModel(mlflow.pyfunc.PythonModel):
    """A run's inference model with dltool predict's output columns."""

    def load_context(self, context) -> None:
        """Load the .keras inference model (safe mode: no code runs) and the output description."""
        import keras

        self.model = keras.saving.load_model(context.artifacts["model"], compile=False)
        with open(context.artifacts["outputs"], encoding="utf-8") as handle:
            self.outputs = json.load(handle)

    # The hint is one MLflow infers no schema from (a table run's rows; an array run's come as an ndarray): the
    # logged signature is what validates inputs, and without a hint MLflow warns on every load.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Raw rows (a DataFrame with the feature columns by name, or an array of raw samples) to a DataFrame of
        labels and class probabilities, or of predicted values."""
        return predictions(self.model, self.outputs, model_input)


def model_inputs(outputs: dict, model_input) -> np.ndarray:
    """The model's input array from ``model_input``: a DataFrame's feature columns in the run's order (all of its
    columns when the run names none), or an array as it is."""
    dtype = object if outputs.get("kind") == "text" else np.float32
    if isinstance(model_input, pd.DataFrame):
        features = outputs.get("features")
        frame = model_input[features] if features else model_input
        return frame.to_numpy(dtype=dtype)
    return np.asarray(model_input, dtype=dtype)


def labelled(outputs: dict, values: np.ndarray) -> pd.DataFrame:
    """Model outputs as dltool predict names them: ``label`` (argmax, or P >= 0.5 for one sigmoid output) and each
    class's probability, or the regression values by name."""
    values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    columns = outputs["columns"]
    if outputs["task"] != "classification":
        return pd.DataFrame(values, columns=columns)
    if values.shape[1] == 1:
        picked = (values[:, 0] >= 0.5).astype(np.int32)
        values = np.hstack([1 - values, values])
    else:
        picked = values.argmax(axis=1)
    frame = pd.DataFrame(values, columns=columns[1:])
    frame.insert(0, columns[0], np.asarray(outputs["class_names"], dtype=object)[picked])
    return frame


def predictions(model, outputs: dict, model_input) -> pd.DataFrame:
    """``model`` (the inference model) on ``model_input``, labelled."""
    x = model_inputs(outputs, model_input)
    return labelled(outputs, model.predict_on_batch(x) if len(x) else np.zeros((0, outputs["width"])))


mlflow.models.set_model(DltoolModel())
