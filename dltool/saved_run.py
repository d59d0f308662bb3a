"""Open a run folder for evaluate / predict: its config, preprocessing state and model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import ExperimentConfig, config_from_text
from .data.preprocessing import Preprocessing
from .errors import ConfigError, RunStateError
from .keras_io import load_model_safely
from .runs import Run, runs_dir


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

    def load_model(self):
        """Load model.keras with ``safe_mode=True``: a model carrying code (a Lambda layer) is refused."""
        path = self.run.file("model.keras")
        if not path.is_file():
            status = self.run.status
            raise RunStateError(
                f"run {self.run.id} has no model.keras (status {status}); "
                + ("wait for it to finish" if status == "RUNNING" else f"resume it with `dltool train --resume {self.run.id}`")
            )
        return load_model_safely(path)

    @property
    def is_classifier(self) -> bool:
        return self.preprocessing.task == "classification"
