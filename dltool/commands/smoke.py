"""`smoke`: every config of a repository built, trained briefly, evaluated, saved, reloaded and predicted with.

One process, so TensorFlow starts once. Per config: validate; load the data
(or, with ``fake_data``, random stand-in files of the shapes it declares) and
keep a random ``samples`` of the training split; build and train ``epochs``
epochs; evaluate the run as `dltool evaluate` does; reload model.keras and
check its outputs equal the trained model's; predict on a few raw samples as
`dltool predict` does and check those outputs equal the trained model's too.
Runs go to a temporary folder unless ``keep_runs``. Nothing here prints: each
result goes to ``on_result`` as it is known, and the report comes back.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, DltoolError, TrainingInterrupted, UsageError
from ..reports import JUnitCase, flat_metrics
from ..training.observer import Observer
from .smoke_configs import config_backends, configs_for_other_backends, find_configs, smoke_elsewhere

__all__ = [
    "SmokeReport",
    "SmokeResult",
    "config_backends",
    "find_configs",
    "smoke",
    "smoke_overrides",
    "untrained_backbone",
]

PASSED, FAILED, SKIPPED, UNMET = "passed", "failed", "skipped", "unmet"
PREDICT_SAMPLES = 4  # raw samples given to predict
RELOAD_SAMPLES = 8  # test samples the reloaded model must predict as the trained one did
RTOL, ATOL = 1e-4, 1e-5  # predict prints float32 outputs; a reloaded model may run other kernels


@dataclass
class SmokeResult:
    """One config's smoke run: passed, failed (at which stage, why), skipped (why) or unmet (expectations)."""

    config: str
    status: str
    seconds: float = 0.0
    stage: str | None = None  # validate, data, train, evaluate, reload, predict, expect
    message: str = ""
    name: str | None = None
    metrics: dict = field(default_factory=dict)  # {"test.accuracy": 0.9, ...}
    run: str | None = None  # the run folder, with keep_runs
    file: str | None = None  # where a config error is (for CI annotations)
    line: int | None = None
    stages: dict = field(default_factory=dict)  # seconds per stage: {"train": 1.2, "evaluate": 0.3, ...}
    notes: list[str] = field(default_factory=list)  # what the smoke run changed beyond epochs and samples

    @contextmanager
    def stage_of(self, stage: str):
        """Mark ``stage`` as the one under way (where a failure is reported) and time it."""
        self.stage, start = stage, time.perf_counter()
        yield
        self.stages[stage] = round(time.perf_counter() - start, 3)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SmokeReport:
    """Every result, the settings they ran with and the total time."""

    results: list[SmokeResult]
    seconds: float
    settings: dict

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def exit_code(self) -> int:
        """1 if any config failed, else 3 if any missed its expectations, else 0 (skipped configs do not fail)."""
        return 1 if self.count(FAILED) else 3 if self.count(UNMET) else 0

    def junit_cases(self) -> list[JUnitCase]:
        """One testcase per config: failed or unmet with the stage and message, skipped with the reason."""
        cases = []
        for r in self.results:
            case = JUnitCase(
                name=r.config,
                classname="dltool.smoke",
                seconds=r.seconds,
                properties={**({"name": r.name} if r.name else {}), **r.metrics},
            )
            if r.status in (FAILED, UNMET):
                case.failure, case.failure_type = f"{r.stage}: {r.message}", r.stage or "failure"
            elif r.status == SKIPPED:
                case.skipped = r.message
            cases.append(case)
        return cases

    def to_dict(self) -> dict:
        return {
            "configs": [r.to_dict() for r in self.results],
            "seconds": round(self.seconds, 2),
            **{status: self.count(status) for status in (PASSED, FAILED, SKIPPED, UNMET)},
            "settings": self.settings,
        }


class _Keeper(Observer):
    """A training observer that shows nothing, writes ``notes`` into the new run's train.log, and keeps the trained
    model and its data for the checks after."""

    model = data = None

    def __init__(self, notes: list[str] | None = None):
        self.notes = list(notes or [])

    def on_run_created(self, run) -> None:
        from ..runs import log_time

        for note in self.notes:
            run.append_log(f"{log_time()} smoke: {note}")

    def on_run_completed(self, run, model, data) -> None:
        self.model, self.data = model, data


def smoke(
    paths: list[str | Path],
    *,
    epochs: int = 1,
    samples: int = 256,
    fake_data: bool = False,
    keep_runs: bool = False,
    runs_root: str | Path | None = None,
    expect_from_configs: bool = False,
    backend: str | None = None,
    on_result=None,
) -> SmokeReport:
    """Smoke-test every config in ``paths`` (files, or folders searched for *.yaml); see the module docstring.

    ``epochs`` (default 1) and ``samples`` (default 256) bound the training;
    ``fake_data`` (default False) trains on random stand-ins, else a config
    whose data needs a download or a missing file is skipped. ``keep_runs``
    (default False) keeps the run folders in ``runs_root`` (default ./runs).
    ``expect_from_configs`` checks each config's ``expect:`` (unmet: status
    'unmet'). ``backend`` (default None: each config's own) trains every config on that Keras backend; a
    config the backend cannot run (TextVectorization outside TensorFlow) is skipped with the reason.
    Without it, configs naming another backend than this process's run in a `dltool smoke` process of theirs.
    ``on_result(result)`` is called as each config finishes.
    """
    from ..runs import runs_dir

    if epochs < 1 or samples < 2:
        raise UsageError(f"expected --epochs >= 1 and --samples >= 2, received {epochs} and {samples}")
    configs = find_configs(paths)
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="dltool-smoke-"))
    root = runs_dir(runs_root) if keep_runs else scratch / "runs"
    # A backbone's `run:` names an earlier run of the user's runs folder, wherever the smoke runs go.
    earlier_runs = runs_dir(runs_root).resolve()
    settings = {
        "epochs": epochs,
        "samples": samples,
        "fake_data": fake_data,
        "keep_runs": keep_runs,
        "expect_from_configs": expect_from_configs,
    }
    elsewhere = {} if backend else configs_for_other_backends(configs)
    results = []
    try:
        for index, (path, skip) in enumerate(configs):
            if str(path) in elsewhere:
                continue  # below, in a process of their backend
            if skip is not None:
                result = SmokeResult(str(path), SKIPPED, stage="validate", message=skip)
            else:
                stand_ins = (root / ".smoke-data" if keep_runs else scratch / "data") / f"{index:03d}-{path.stem}"
                result = _smoke_one(
                    path,
                    epochs=epochs,
                    samples=samples,
                    fake_data=fake_data,
                    runs_root=root,
                    stand_ins=stand_ins,
                    scratch=scratch,
                    expect=expect_from_configs,
                    backend=backend,
                    earlier_runs=earlier_runs,
                )
            if not keep_runs:
                result.run = None  # its folder goes with the scratch folder
            results.append(result)
            if on_result is not None:
                on_result(result)
        for other in sorted(set(elsewhere.values())):
            group = [Path(p) for p, b in elsewhere.items() if b == other]
            for found in smoke_elsewhere(group, other, settings, root if keep_runs else None, earlier_runs):
                results.append(SmokeResult(**found))
                if on_result is not None:
                    on_result(results[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    order = {str(path): index for index, (path, _) in enumerate(configs)}
    results.sort(key=lambda r: order.get(r.config, len(order)))
    return SmokeReport(results, time.perf_counter() - start, settings)


def smoke_overrides(epochs: int, expect: bool, config=None) -> list[str]:
    """What a smoke run changes in every config: few epochs, no TensorBoard, plots, resumable checkpoints or MLflow
    tracking (a throwaway run is not the team's record). Given
    ``config`` (default None), also what its backbone needs: as few epochs of fine-tuning (a second phase of
    ``train.fine_tune.epochs`` would otherwise run in full) and imagenet weights swapped for none
    (:func:`untrained_backbone`)."""
    changes = [f"train.epochs={epochs}", "train.tensorboard=false", "train.plots=false", "train.checkpoint_every=0"]
    changes += ["tracking=null"]
    if config is not None:
        # Only where fine_tune is set: setting its epochs on a config without one would create the phase.
        changes += [f"train.fine_tune.epochs={epochs}"] if config.train.fine_tune is not None else []
        changes += untrained_backbone(config)
    return changes + ([] if expect else ["expect={}"])


STAND_IN_CLASS_WEIGHTS = (
    "train.class_weight's labels name the real data's classes, which the stand-in data does not have: weighed "
    "balanced instead"
)
STAND_IN_RESAMPLE = (
    "data.resample's labels name the real data's classes, which the stand-in data does not have: resampled "
    "{whole} instead"
)
UNTRAINED_BACKBONE = (
    "{application}'s imagenet weights swapped for weights: none (the same architecture, untrained), so the smoke "
    "run needs no weights file and no download"
)


def untrained_backbone(config) -> list[str]:
    """The override that builds ``config``'s backbone untrained when it asks for imagenet weights (which may be
    neither in Keras's cache nor downloadable where smoke runs, and whose accuracy a smoke run does not measure);
    none for any other config. A weights file (weights: PATH) is kept: it belongs to the repository like data."""
    from ..config import backbone_index, backbone_of

    spec = backbone_of(config)
    if spec is None or spec.kind != "application" or spec.weights != "imagenet":
        return []
    return [f"model.layers[{backbone_index(config)}].Backbone.weights=none"]


def backbone_run_folder(config, earlier_runs: Path) -> list[str]:
    """The override that names ``config``'s backbone run (an id, a name or 'latest' of ``earlier_runs``) by its
    folder, so a smoke run that goes to a scratch folder finds it; none for any other config. Raises ConfigError
    (path ``model.layers[N].Backbone.run``) when the run is not there."""
    import json

    from ..config import backbone_index, backbone_of
    from ..training.backbones import pin_backbone

    spec = backbone_of(config)
    if spec is None or spec.kind != "run":
        return []
    pinned = backbone_of(pin_backbone(config, earlier_runs)).run
    # A JSON string is a YAML string: any path.
    return [f"model.layers[{backbone_index(config)}].Backbone.run={json.dumps(pinned)}"]


def _smoke_one(
    path: Path,
    *,
    epochs,
    samples,
    fake_data,
    runs_root,
    stand_ins,
    scratch,
    expect,
    backend=None,
    earlier_runs: Path | None = None,
) -> SmokeResult:
    from ..config import backbone_of, load_config
    from ..data import should_stream
    from ..data.standins import missing_data, write_stand_in

    start = time.perf_counter()
    result = SmokeResult(str(path), FAILED, stage="validate")
    forced = [f"backend={backend}"] if backend else []
    try:
        try:
            config = load_config(path, forced)
        except ConfigError as exc:
            if not (forced and exc.path == "backend"):
                raise
            result.status, result.message = SKIPPED, str(exc)  # the backend cannot run it, by design
            return result
        result.name = config.name
        try:
            pinned = backbone_run_folder(config, earlier_runs or Path("runs").resolve())
        except ConfigError as exc:  # like data that is not in the checkout, and no stand-in can replace a run
            result.status = SKIPPED
            result.message = f"{exc}; the backbone is that run's layers: train it first, or name its folder"
            return result
        result.stage = "data"
        if fake_data:
            overrides = list(write_stand_in(config, stand_ins, samples, seed=config.seed))
            if isinstance(config.train.class_weight, dict):  # its labels name the real data's classes
                overrides.append("train.class_weight=balanced")
                result.notes.append(STAND_IN_CLASS_WEIGHTS)
            resample = getattr(config.data, "resample", None)
            if resample is not None and isinstance(resample.oversample or resample.undersample, dict):
                whole = "{oversample: minority}" if resample.oversample is not None else "{undersample: majority}"
                overrides.append(f"data.resample={whole}")
                result.notes.append(STAND_IN_RESAMPLE.format(whole=whole))
        else:
            reason = missing_data(config) or (
                f"data.stream reads all of {config.data.path} every epoch; use --fake-data"
                if should_stream(config.data)
                else None
            )
            if reason is not None:
                result.status, result.message = SKIPPED, reason
                return result
            overrides = []
        if untrained_backbone(config):
            result.notes.append(UNTRAINED_BACKBONE.format(application=backbone_of(config).application))
        config = load_config(path, forced + smoke_overrides(epochs, expect, config) + pinned + overrides)
        _check_run(config, result, runs_root, samples, scratch)
    except TrainingInterrupted:
        raise
    except ConfigError as exc:
        result.message, result.file, result.line = str(exc), exc.source, exc.line
    except DataError as exc:  # training loads the data first: a data file it cannot read is the data's stage
        result.stage, result.message = "data", str(exc)
    except DltoolError as exc:
        result.message = str(exc)
    except Exception as exc:  # noqa: BLE001  (whatever Keras raises for one config, the others still run)
        text = str(exc).strip()
        result.message = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    finally:
        result.seconds = round(time.perf_counter() - start, 2)
    return result


def _check_run(config, result: SmokeResult, runs_root: Path, samples: int, scratch: Path) -> None:
    """Train, then check evaluate, reload and predict; set ``result`` (stage is where it stands if anything raises)."""
    from .evaluate import evaluate
    from .train import train

    keeper = _Keeper(result.notes)
    with result.stage_of("train"):
        run = train(config, runs_root=runs_root, observer=keeper, samples=samples)
    result.metrics = flat_metrics(run.read_json("metrics.json"))
    result.run = str(run.path)
    with result.stage_of("evaluate"):
        evaluation = evaluate(run, plots=False)  # no plots, as in training (train.plots=false)
        if not evaluation.get("samples") or not np.isfinite(list(evaluation["compiled"].values())).all():
            raise DltoolError(
                f"evaluate gave {evaluation['samples']} samples, compiled metrics {evaluation['compiled']}"
            )
    with result.stage_of("reload"):
        _check_reload(run, keeper)
    with result.stage_of("predict"):
        _check_predict(run, config, keeper, scratch / f"predict-{run.id}")
    unmet = [e for e in run.info.get("expectations") or [] if not e["met"]]
    if unmet:
        from ..config.expectations import describe_expectation

        result.status, result.stage = UNMET, "expect"
        result.message = "; ".join(describe_expectation(e) for e in unmet)
    else:
        result.status, result.stage = PASSED, None


def _outputs(model, x) -> np.ndarray:
    from ..keras_io import as_model_input

    # A traced call, not an eager one: an eager LSTM steps through time in Python (2 s for IMDB's, 0.5 s traced).
    outputs = np.asarray(model.predict_on_batch(as_model_input(x)))
    return outputs.reshape(len(outputs), -1)


def _differs(got: np.ndarray, expected: np.ndarray) -> str | None:
    if got.shape != expected.shape:
        return f"outputs of shape {list(got.shape)}, expected {list(expected.shape)}"
    if not np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=False):
        return f"outputs differ by up to {float(np.nanmax(np.abs(got - expected))):.3g}"
    return None


def _check_reload(run, keeper: _Keeper) -> None:
    """model.keras, loaded as evaluate and predict load it, gives the trained model's outputs."""
    from ..keras_io import load_model_safely

    x, _ = next(iter(keeper.data.test_chunks(RELOAD_SAMPLES)))
    problem = _differs(_outputs(load_model_safely(run.file("model.keras")), x), _outputs(keeper.model, x))
    if problem:
        raise DltoolError(f"the reloaded model.keras does not predict as the trained model: {problem}")


def _check_predict(run, config, keeper: _Keeper, folder: Path) -> None:
    """`dltool predict` on a few raw samples of the config's data gives the trained model's outputs for them."""
    from .predict import predict

    folder.mkdir(parents=True, exist_ok=True)
    state = keeper.data.preprocessing
    files, raw = _predict_inputs(config, state, folder)
    records = json.loads(predict(run, files, fmt="json").output)
    expected_rows = len(files) if raw is None else len(raw)
    if len(records) != expected_rows:
        raise DltoolError(f"predict gave {len(records)} rows for {expected_rows} samples")
    if state.task == "classification":
        got = np.array([list(r["probabilities"].values()) for r in records], dtype=np.float64)
    else:
        got = np.array([[v for k, v in r.items() if k not in ("input", "row")] for r in records], dtype=np.float64)
    if raw is None:
        if not np.isfinite(got).all():
            raise DltoolError("predict gave non-finite outputs")
        return
    expected = _outputs(keeper.model, state.transform(raw))
    if state.task == "classification" and expected.shape[1] == 1:
        expected = np.hstack([1 - expected, expected])  # predict shows both classes of a sigmoid
    problem = _differs(got, expected)
    if problem:
        raise DltoolError(f"predict does not give the trained model's outputs for the same raw samples: {problem}")


def _predict_inputs(config, state, folder: Path) -> tuple[list[Path], np.ndarray | None]:
    """Files for predict holding the first raw samples of the config's data, and those samples (None: image files)."""
    from ..data import load_source
    from ..data.images import is_image_file

    if state.kind == "image":  # the data folder's own files, read as training read them
        files = sorted(p for p in Path(config.data.path).rglob("*") if is_image_file(p))[:PREDICT_SAMPLES]
        return files, None
    raw = load_source(config.data, seed=config.seed, classification=config.is_classifier).x[:PREDICT_SAMPLES]
    if state.kind == "text":
        path = folder / "texts.txt"
        path.write_text("".join(" ".join(str(text).split()) + "\n" for text in raw[:, 0]), encoding="utf-8")
        return [path], np.array([[" ".join(str(text).split())] for text in raw[:, 0]], dtype=object)
    if state.kind == "timeseries":  # consecutive rows: with stride 1, window i ends at row window - 1 + i
        if state.extra["timeseries"]["stride"] > 1:
            raw = raw[:1]
        rows = np.vstack([raw[0], raw[1:, -1]])
        return [_write_rows(folder / "recent.csv", state.feature_names, rows)], raw
    if config.data.source == "csv":
        return [_write_rows(folder / "rows.csv", state.feature_names, raw)], raw
    np.save(folder / "samples.npy", raw)
    return [folder / "samples.npy"], raw


def _write_rows(path: Path, columns: list[str], rows: np.ndarray) -> Path:
    lines = [",".join(columns)] + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
