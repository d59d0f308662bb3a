"""Open a run folder for evaluate / predict: its config, preprocessing state and model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ExperimentConfig, config_from_text
from .data.preprocessing import Preprocessing
from .decision import check_override, run_threshold
from .errors import ConfigError, RunStateError, UsageError
from .keras_io import load_model_safely
from .runs import Run, runs_dir

CHECKPOINTS = {"final": "model.keras", "best": "checkpoints/best.keras"}  # --checkpoint choices


@dataclass
class SavedRun:
    """A run with its resolved config, preprocessing state and (lazily) its model."""

    run: Run
    config: ExperimentConfig
    preprocessing: Preprocessing

    @classmethod
    def open(cls, ref: str | Run, runs_root: str | Path | None = None) -> SavedRun:
        """Resolve ``ref`` (id, prefix, 'latest' or path) and read its config and preprocessing."""
        run = ref if isinstance(ref, Run) else Run.resolve(str(ref), runs_dir(runs_root))
        config_path = run.file("config.yaml")
        try:
            text = config_path.read_text(encoding="utf-8")
        except OSError:
            raise RunStateError(f"{run.path}: config.yaml is missing; this run folder is incomplete") from None
        try:
            config = config_from_text(text, source=str(config_path))
        except ConfigError as exc:
            raise RunStateError(f"{run.path}: its config.yaml no longer validates: {exc}") from None
        preprocessing = Preprocessing.from_dict(run.read_json("preprocessing.json"))
        return cls(run=run, config=config, preprocessing=preprocessing)

    def load_model(self, checkpoint: str = "final"):
        """Load model.keras (``final``) or checkpoints/best.keras (``best``) with ``safe_mode=True``.

        A model carrying code (a Lambda layer) is refused.
        """
        if checkpoint not in CHECKPOINTS:
            raise UsageError(f"--checkpoint: expected {' or '.join(CHECKPOINTS)}, received '{checkpoint}'")
        path = self.run.file(CHECKPOINTS[checkpoint])
        if checkpoint == "best" and not path.is_file():
            raise RunStateError(
                f"run {self.run.id} has no {CHECKPOINTS['best']}: only runs trained with "
                "train.callbacks.checkpoint keep their best epoch; use the final model "
                "(leave out --checkpoint)"
            )
        if not path.is_file():
            status = self.run.status
            raise RunStateError(
                f"run {self.run.id} has no model.keras (status {status}); "
                + (
                    "wait for it to finish"
                    if status == "RUNNING"
                    else f"resume it with `dltool train --resume {self.run.id}`"
                )
            )
        return load_model_safely(path)

    @property
    def is_classifier(self) -> bool:
        return self.preprocessing.task == "classification"

    def decision_threshold(self, override: float | None = None) -> float | None:
        """The threshold a binary run's labels use: ``override`` (``--threshold``, refused outside (0, 1) or on
        a run that is not a binary classifier), else the run's own (run.json), else None (argmax, or 0.5)."""
        check_override(override, self.preprocessing.class_names if self.is_classifier else None)
        return run_threshold(self.run.info, override)
