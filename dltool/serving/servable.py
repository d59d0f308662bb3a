"""The served model: a run's model.keras with its saved preprocessing, its TF Serving signature and status.

Everything the HTTP layer needs from the run, and nothing about HTTP: raw
samples in, preprocessed as ``dltool predict`` does (:func:`dltool.inputs.base.preprocess`),
model outputs back, as TF Serving tensors or as labelled answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RequestError
from ..inputs import inputs_for
from ..inputs.base import preprocess
from ..keras_io import INPUT_NAME, as_model_input
from ..predictions import labelled_values, prediction_record, value_columns
from ..runs import Run
from ..saved_run import SavedRun
from .protocol import SIGNATURE, VERSION, Signature

OUTPUT_NAME = "output_0"  # the name Keras' SavedModel export gives a model's single output


class ServedModel:
    """A run's model ready to answer requests: preprocessing, one model call, labelled answers."""

    def __init__(self, saved: SavedRun, model, checkpoint: str = "final", threshold: float | None = None):
        self.saved, self.model, self.checkpoint = saved, model, checkpoint
        # The decision threshold :label uses (a binary run's; None: argmax, or 0.5): open() resolves it.
        self.threshold = threshold
        self.state = saved.preprocessing
        self.name = saved.config.name
        self.reader = inputs_for(self.state)
        self.reader.use = "serve"  # an unexpected CSV column's message fits a request, not a command line
        self.outputs = int(model.output_shape[-1] or 1)
        self.columns = value_columns(self.state, self.outputs)
        shape = tuple(int(s) for s in self.state.input_shape)
        shapes = (shape, shape[:-1]) if self.state.add_channel_axis else (shape,)
        self.signature = Signature(
            # Not the model's own input name: runs trained before dltool named it INPUT_NAME call it input_layer,
            # and the exported SavedModel of every run takes INPUT_NAME.
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            dtype="string" if self.state.kind == "text" else "float",
            shapes=shapes,
            output_shape=tuple(int(s or 1) for s in model.output_shape[1:]),
            feature_names=tuple(self.state.feature_names or ()),
        )

    @classmethod
    def open(
        cls,
        ref: str | Run,
        runs_root: str | Path | None = None,
        checkpoint: str = "final",
        threshold: float | None = None,
    ) -> ServedModel:
        """Open the run ``ref`` and load its model (``final`` or ``best``); ``threshold`` overrides the run's
        decision threshold (a binary classifier's; refused on any other run before the model loads)."""
        saved = SavedRun.open(ref, runs_root)
        decision = saved.decision_threshold(threshold)  # the run's own, or the override, checked before loading
        return cls(saved, saved.load_model(checkpoint), checkpoint, decision)

    @property
    def run_id(self) -> str:
        return self.saved.run.id

    def answers_to(self, name: str, version: str | None) -> None:
        """Refuse (404, as TF Serving words it) a model name or version this server does not hold."""
        if name not in (self.name, self.run_id):
            spec = f"Specific({name}, {version})" if version else f"Latest({name})"
            raise RequestError(
                f"Servable not found for request: {spec}; this server holds model '{self.name}' (run {self.run_id})",
                404,
            )
        if version is not None and version != VERSION:
            raise RequestError(
                f"Servable not found for request: Specific({name}, {version}); the only version is {VERSION}", 404
            )

    # ------------------------------------------------------------------ model calls
    def prepare(self, raw: np.ndarray, where: str) -> np.ndarray:
        """Raw samples as model inputs: the run's scale and standardization; NaN or infinity refused."""
        return preprocess(self.state, raw, lambda i: (where, i))

    def run_model(self, x: np.ndarray) -> np.ndarray:
        """The model's outputs for a batch of model inputs (called on the batcher's worker thread)."""
        return np.asarray(self.model.predict_on_batch(as_model_input(x)))

    def warm_up(self) -> None:
        """Trace the model's predict function before the first request (it settles after a few batch sizes)."""
        sample = np.zeros((1, *self.signature.shape), dtype=np.float32)
        if self.signature.dtype == "string":
            sample = np.full((1, *self.signature.shape), "", dtype=object)
        for size in (1, 2, 3, 5):
            self.run_model(np.repeat(sample, size, axis=0))

    def labelled(self, outputs: np.ndarray, rows: list[dict]) -> list[dict]:
        """Each output as ``rows[i]`` plus its label and probabilities, or its values."""
        return [
            {**where, **prediction_record(self.state, self.columns, values)}
            for where, values in zip(rows, labelled_values(self.state, outputs, self.threshold))
        ]

    # ------------------------------------------------------------------ TF Serving documents
    def status(self) -> dict:
        """``GET /v1/models/NAME``: one version, AVAILABLE."""
        return {
            "model_version_status": [
                {"version": VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        }

    def metadata(self) -> dict:
        """``GET /v1/models/NAME/metadata``: the signature, plus what dltool knows about the run's inputs."""
        state = self.state
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: self.signature.signature_def()}}},
            "dltool": {
                "run": self.run_id,
                "checkpoint": self.checkpoint,
                "task": state.task,
                "kind": state.kind,
                "raw_inputs": True,  # the server applies the run's scale and standardization itself
                "feature_names": state.feature_names,
                "class_names": state.class_names,
                "outputs": self.columns,
                # The label's rule for a binary classifier: positive when its probability >= this; null: argmax.
                "decision_threshold": self.threshold,
            },
        }
