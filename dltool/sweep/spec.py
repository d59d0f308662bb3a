"""The sweep file: a base experiment, an objective, a search method and the parameters to vary. No Optuna, no Keras.

Validated like an experiment config (pydantic, unknown keys refused, errors
with file:line, key path and did-you-mean). Every parameter is a ``--set``
path of the base config; each of its values (every choice, both ends of a
range) is applied to the base config and validated before any trial runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ..config import ExperimentConfig, config_to_yaml, load_config, resolve_paths
from ..config.messages import first_error
from ..config.yamlio import LineMap, dump_yaml, load_yaml, read_config_text
from ..errors import ConfigError

METHODS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
KINDS = {"choice": "choice", "uniform": "uniform", "loguniform": "loguniform", "int": "int_range"}  # file word: field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Objective(_Strict):
    """What a trial is scored by: a history/metrics.json column of the training or validation split."""

    metric: str = "val_loss"
    goal: Literal["max", "min"] = "min"
    cv: int | None = Field(
        None,
        ge=2,
        description="Score each trial by k-fold cross-validation: K runs, one per fold (data.fold), and the "
        "objective is the mean of their metric; null: one run.",
    )

    @model_validator(mode="after")
    def _not_test(self) -> Objective:
        if self.metric.startswith("test"):
            raise PydanticCustomError(
                "dltool",
                f"objective.metric '{self.metric}' would tune on the test split; use a validation "
                "metric such as val_accuracy or val_loss",
            )
        return self


class Parameter(_Strict):
    """One searched value: exactly one of choice, uniform, loguniform, int."""

    choice: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = Field(None, alias="int")  # `int` in the file

    @model_validator(mode="after")
    def _exactly_one(self) -> Parameter:
        given = [k for k in KINDS if getattr(self, KINDS[k]) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "dltool",
                "expected exactly one of choice: [a, b, ...], uniform: [low, high], "
                f"loguniform: [low, high], int: [low, high]; received {given or 'none'}",
            )
        low_high = getattr(self, KINDS[given[0]]) if given[0] != "choice" else None
        if low_high is not None and not low_high[0] < low_high[1]:
            raise PydanticCustomError(
                "dltool", f"{given[0]}: expected [low, high] with low < high, received {list(low_high)}"
            )
        if given[0] == "loguniform" and low_high[0] <= 0:
            raise PydanticCustomError("dltool", f"loguniform: expected low > 0 (a log scale), received {low_high[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, KINDS[k]) is not None)

    @property
    def low_high(self) -> tuple:
        """[low, high] of a range."""
        return getattr(self, KINDS[self.kind])

    def edge_values(self) -> list:
        """The values that must all validate for the range to be usable: every choice, or both ends."""
        return list(self.choice) if self.choice is not None else list(self.low_high)


class Pruner(_Strict):
    """How unpromising trials stop early, from the objective reported after every epoch."""

    name: Literal["none", "median", "hyperband"] = "none"
    startup_trials: int = Field(5, ge=0)  # median: finished trials before any pruning
    warmup_epochs: int = Field(1, ge=0)  # median: epochs of a trial before it may be pruned


class SweepSpec(_Strict):
    """A sweep file (see configs/sweeps/)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    experiment: str
    objective: Objective = Objective()
    method: Literal["grid", "random", "tpe"] = "tpe"
    trials: int | None = Field(None, ge=1)
    seed: int | None = 0
    pruner: Literal["none", "median", "hyperband"] | Pruner = "none"
    trial_plots: bool = (
        False  # curves.png etc. in every trial's run: about 1 s a trial (`dltool plot RUN` draws them later)
    )
    parameters: dict[str, Parameter] = Field(min_length=1)

    @model_validator(mode="after")
    def _trials_for_method(self) -> SweepSpec:
        if self.method == "grid":
            not_choices = [k for k, p in self.parameters.items() if p.kind != "choice"]
            if not_choices:
                raise PydanticCustomError(
                    "dltool",
                    f"grid needs choice: [...] for every parameter; {not_choices[0]} has {self.parameters[not_choices[0]].kind}",
                )
            if self.trials is None:
                self.trials = math.prod(len(p.choice) for p in self.parameters.values())
        elif self.trials is None:
            raise PydanticCustomError("dltool", f"method {self.method} needs trials: N (only grid counts its own)")
        if isinstance(self.pruner, str):
            self.pruner = Pruner(name=self.pruner)
        if self.objective.cv is not None and self.pruner.name != "none":
            raise PydanticCustomError(
                "dltool",
                f"pruner {self.pruner.name} stops a trial by its epochs, and a cv objective (objective.cv: "
                f"{self.objective.cv}) trains a run per fold: use pruner: none",
            )
        return self


def format_value(value: Any) -> str:
    """A sampled value as the YAML text of a ``--set`` (JSON is YAML)."""
    return json.dumps(value)


def overrides_for(params: dict[str, Any], spec: SweepSpec | None = None) -> list[str]:
    """``--set`` strings for sampled parameter values (and train.plots=false unless the sweep keeps trial plots)."""
    plots = [] if spec is None or spec.trial_plots or "train.plots" in params else ["train.plots=false"]
    return plots + [f"{path}={format_value(value)}" for path, value in params.items()]


def fold_override(number: int, folds: int) -> str:
    """The ``--set`` that makes a trial's run fold ``number`` of ``folds`` (objective.cv)."""
    return f"data.fold={json.dumps({'number': number, 'of': folds})}"


def load_sweep(path: str | Path) -> tuple[SweepSpec, ExperimentConfig]:
    """Read and validate a sweep file and its base experiment; check every parameter's values against it.

    Raises ConfigError naming the sweep file, line and key path.
    """
    path = Path(path)
    text = read_config_text(path)
    return sweep_from_text(text, source=str(path), base_dir=path.parent)


def sweep_from_text(text: str, source: str, base_dir: Path) -> tuple[SweepSpec, ExperimentConfig]:
    """Validate sweep YAML text; ``experiment`` is relative to ``base_dir``."""
    data, line_map = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping with keys experiment, objective, method, trials, parameters", source=source, line=1
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise _locate(first_error(exc, root=SweepSpec), source, line_map, data) from None
    experiment = base_dir / spec.experiment
    try:
        base = load_config(experiment)
    except ConfigError as exc:
        raise ConfigError(
            f"the base experiment does not validate: {exc}",
            source=source,
            path="experiment",
            line=line_map.line_of(("experiment",)),
        ) from None
    if (
        base.data.validation == "test"
        and spec.objective.metric.startswith("val_")
        and "data.validation" not in spec.parameters
    ):
        raise ConfigError(
            f"the base experiment validates on its test split (data.validation: test), so objective.metric "
            f"'{spec.objective.metric}' would tune on the test split; hold out part of the training data "
            "instead: add `data.validation: {choice: [0.1]}` to parameters (or set it in the base config)",
            source=source,
            path="objective.metric",
            line=line_map.line_of(("objective",)) or line_map.line_of(("experiment",)),
        )
    if spec.objective.cv is not None:
        try:
            load_config(experiment, [fold_override(1, spec.objective.cv)])
        except ConfigError as exc:
            raise ConfigError(
                f"the base experiment cannot be cross-validated: {exc.detail}",
                source=source,
                path="objective.cv",
                line=line_map.line_of(("objective",)),
            ) from None
    for key, parameter in spec.parameters.items():
        for value in parameter.edge_values():
            try:
                load_config(experiment, [f"{key}={format_value(value)}"])
            except ConfigError as exc:
                where = f"{exc.path}: " if exc.path and exc.path != key else ""
                raise ConfigError(
                    f"{where}{exc.detail} (with {key}={format_value(value)}); a parameter is a "
                    "--set path of the base experiment and each of its values must validate",
                    source=source,
                    path=f"parameters.{key}",
                    line=line_map.line_of(("parameters", key)),
                ) from None
    return spec, base


def _locate(error: ConfigError, source: str, line_map: LineMap, data: dict) -> ConfigError:
    """Name the line of the key at fault; a parameter's own key is one YAML key with dots in it."""
    path = error.path or ""
    line = None
    for key in (data.get("parameters") or {}) if isinstance(data.get("parameters"), dict) else {}:
        if path == f"parameters.{key}" or path.startswith(f"parameters.{key}."):
            rest = path[len(f"parameters.{key}.") :].split(".") if path != f"parameters.{key}" else []
            line = line_map.lines.get(("parameters", key, *rest[:1])) or line_map.lines.get(("parameters", key))
    line = line or (line_map.line_of(path) if path else None)
    return ConfigError(error.detail, source=source, path=error.path, line=line)


def resolved_sweep_yaml(spec: SweepSpec, experiment_file: str = "experiment.yaml") -> str:
    """The sweep file as it runs (every default filled in), pointing at the base config copied beside it."""
    data = spec.model_dump(mode="json", by_alias=True)
    data["parameters"] = {k: {kind: v for kind, v in p.items() if v is not None} for k, p in data["parameters"].items()}
    data["experiment"] = experiment_file
    return dump_yaml(data)


def base_config_yaml(base: ExperimentConfig) -> str:
    """The base experiment resolved (absolute data paths), as the sweep folder keeps it."""
    return config_to_yaml(resolve_paths(base))


def sweep_json_schema() -> dict:
    """The JSON Schema of sweep files, for editors (dltool/resources/sweep.schema.json; `dltool sweep --schema`)."""
    schema = SweepSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "dltool sweep"
    return schema
