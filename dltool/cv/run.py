"""`dltool cv`: k-fold cross-validation, every fold an ordinary run trained by :func:`train` with ``data.fold`` set.

A cv lives in ``cvs/<id>/`` beside the runs folder (``<runs-dir>/../cvs``): ``experiment.yaml`` (the base
config resolved), ``settings.json`` (folds, repeats, seed, group), ``study.journal`` (an Optuna study on the
sweep's journal storage) and ``cv.json`` (the result, see :mod:`dltool.cv.report`).

The study's trials are the K x R folds, enqueued in order (fold 1..K of repeat 1, then repeat 2, ...); a
process runs a fold by taking the next waiting trial. A fold counts as done when its run COMPLETEd or FAILED on
its own; a fold stopped by Ctrl-C or whose process died (kill -9: its pid is gone) gives its place back, and
the process that starts or resumes the cv enqueues every fold that no trial holds, so ``--resume`` runs
exactly the folds still missing. Worker processes come from the sweep's: see :mod:`dltool.distributed.supervisor`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import config_from_text, load_config
from ..errors import DltoolError, TrainingError, TrainingInterrupted, UsageError
from ..fileio import atomic_write_json, atomic_write_text
from ..runs import Run, process_start, runs_dir
from ..sweep.run import HEARTBEAT_EVERY_S, STALE_AFTER_S
from ..sweep.spec import base_config_yaml
from ..sweep.storage import import_optuna, open_storage, reclaim_dead_trials, resolve_folder
from ..tracking.parent import ParentRun, child_tracking, open_parent
from ..tracking.settings import URI_ENV
from ..training.observer import Observer
from .report import RESULT, counted, fold_of, fold_row, write_result

SETTINGS = "settings.json"


def cvs_dir(runs_root: str | Path | None = None) -> Path:
    """Where cv folders live: ``cvs/`` beside the runs folder (as ``sweeps/`` is)."""
    return runs_dir(runs_root).resolve().parent / "cvs"


def resolve_cv(ref: str, root: Path) -> Path:
    """A cv folder by id, unique id prefix or 'latest'."""
    return resolve_folder(ref, root, SETTINGS, "cv", "dltool cv CONFIG --folds 5")


class CrossValidation:
    """An open cv: its folder, settings, base config text and Optuna study."""

    def __init__(self, folder: Path, settings: dict, base_text: str):
        self.folder, self.settings, self.base_text = folder, settings, base_text
        self.id = folder.name
        self.mlflow_uri: str | None = None  # `--mlflow URI` given to this process (workers read the study's)
        self.storage = open_storage(folder, None)
        self.base = config_from_text(base_text, source=str(folder / "experiment.yaml"))
        self.study = import_optuna().create_study(study_name=self.id, storage=self.storage, load_if_exists=True)

    @property
    def folds(self) -> list[tuple[int, int]]:
        """Every (fold, repeat), in the order they run."""
        return [(f, r) for r in range(1, self.settings["repeats"] + 1) for f in range(1, self.settings["folds"] + 1)]

    def fold_override(self, number: int, repeat: int) -> str:
        """The ``--set`` that makes the base config fold ``number`` of repeat ``repeat``."""
        fold = {"number": number, "of": self.settings["folds"], "repeat": repeat, "seed": self.settings["seed"]}
        if self.settings.get("group"):
            fold["group"] = self.settings["group"]
        return f"data.fold={json.dumps(fold)}"

    def waiting(self) -> int:
        """How many folds wait for a process to take them."""
        return sum(t.state.name == "WAITING" for t in self.study.get_trials(deepcopy=False))

    def enqueue_missing(self) -> int:
        """Mark the trials of dead processes FAILED, then enqueue every fold no trial holds; return how many.

        Only the process that starts, resumes or supervises the cv calls this (workers only take folds), so a
        fold is never enqueued twice.
        """
        # A dead pid, or (a process killed before it named itself) no heartbeat for STALE_AFTER_S, as in a sweep.
        reclaim_dead_trials(self.study, self.storage, STALE_AFTER_S)
        held = {
            fold_of(t)
            for t in self.study.get_trials(deepcopy=False)
            if counted(t) or t.state.name in ("RUNNING", "WAITING")
        }
        missing = [f for f in self.folds if f not in held]
        for number, repeat in missing:
            self.study.enqueue_trial({"fold": number, "repeat": repeat})
        return len(missing)


def create_cv(
    config: str | Path,
    folds: int,
    *,
    repeats: int = 1,
    group: str | None = None,
    overrides: list[str] | None = None,
    runs_root=None,
) -> CrossValidation:
    """Validate the experiment (with ``--set`` ``overrides``) and its folds (the data is loaded once, to cut
    them) and make the cv's folder and study, every fold enqueued; nothing trains yet. Raises UsageError,
    ConfigError or DataError."""
    from ..data.splits import check_folds

    if folds < 2:
        raise UsageError(f"--folds: expected a number >= 2, received {folds}")
    if repeats < 1:
        raise UsageError(f"--repeats: expected a number >= 1, received {repeats}")
    overrides = list(overrides or [])
    base = load_config(config, overrides)
    if base.data.fold is not None:
        raise UsageError(f"{config}: data.fold is set; `dltool cv` cuts the folds itself: remove data.fold")
    seed = base.data.split_seed if base.data.split_seed is not None else base.seed
    settings = {
        "folds": folds,
        "repeats": repeats,
        "seed": seed,
        "group": group,
        "experiment": base.name,
        "runs_dir": str(runs_dir(runs_root).resolve()),  # where the folds' runs are, for cv.json
    }
    fold = {"number": 1, "of": folds, "repeat": 1, "seed": seed, **({"group": group} if group else {})}
    first = load_config(config, [*overrides, f"data.fold={json.dumps(fold)}"])
    warnings = check_folds(first)
    folder = Run.create(cvs_dir(runs_root), base.name).path  # the same atomic, unique-id mkdir as a run folder
    atomic_write_text(folder / "experiment.yaml", base_config_yaml(base))
    atomic_write_json(folder / SETTINGS, {**settings, "warnings": warnings})
    cv = CrossValidation(folder, settings, (folder / "experiment.yaml").read_text(encoding="utf-8"))
    cv.enqueue_missing()
    return cv


def open_cv(ref: str, *, runs_root=None) -> CrossValidation:
    """An existing cv by id, unique prefix or 'latest'."""
    folder = resolve_cv(ref, cvs_dir(runs_root))
    settings = json.loads((folder / SETTINGS).read_text(encoding="utf-8"))
    return CrossValidation(folder, settings, (folder / "experiment.yaml").read_text(encoding="utf-8"))


class _FoldObserver(Observer):
    """Tags the fold's run with the cv id, fold and repeat, and keeps the fold's heartbeat in the study."""

    def __init__(self, trial, cv: CrossValidation, number: int, repeat: int):
        self.trial, self.cv, self.number, self.repeat = trial, cv, number, repeat
        self.last_heartbeat = time.time()

    def on_epoch_end(self, row: dict) -> None:
        if time.time() - self.last_heartbeat > HEARTBEAT_EVERY_S:  # every write is a line in the journal
            self.last_heartbeat = time.time()
            self.trial.set_user_attr("heartbeat", self.last_heartbeat)

    def on_run_created(self, run: Run) -> None:
        run.update_info(cv=self.cv.id, fold=self.number, repeat=self.repeat, folds=self.cv.settings["folds"])
        self.trial.set_user_attr("run_id", run.id)


def _test_loss(run: Run) -> float:
    value = (run.read_json("metrics.json").get("test") or {}).get("loss")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def work(
    cv: CrossValidation,
    *,
    runs_root=None,
    on_fold_end: Callable[[dict], None] | None = None,
    max_folds: int | None = None,
) -> int:
    """Run waiting folds in this process until none waits (or ``max_folds`` ran); return how many ran.

    Raises TrainingInterrupted on Ctrl-C or SIGTERM (the fold's run INTERRUPTED; the cv resumable).
    """
    from ..commands.train import train

    optuna = import_optuna()
    failed_state = optuna.trial.TrialState.FAIL
    ran = 0
    while (max_folds is None or ran < max_folds) and cv.waiting():
        trial = cv.study.ask()
        if (
            "fixed_params" not in cv.storage.get_trial(trial._trial_id).system_attrs
        ):  # another process took the last fold meanwhile
            trial.set_user_attr("surplus", "no fold was waiting")
            cv.study.tell(trial, state=failed_state)
            break
        number = trial.suggest_int("fold", 1, cv.settings["folds"])
        repeat = trial.suggest_int("repeat", 1, cv.settings["repeats"])
        trial.set_user_attr(
            "worker", {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}
        )
        trial.set_user_attr("heartbeat", time.time())
        try:
            config = config_from_text(
                cv.base_text,
                source=str(cv.folder / "experiment.yaml"),
                overrides=["train.plots=false", cv.fold_override(number, repeat)],
            )
            uri, nesting = child_tracking(
                cv,
                "cv",
                {"dltool.fold": str(number), "dltool.repeat": str(repeat)},
                {"dltool.fold": str(number), "dltool.repeat": str(repeat)},
                cv.mlflow_uri,
            )
            run = train(
                config,
                runs_root=runs_root,
                observer=_FoldObserver(trial, cv, number, repeat),
                tracking_uri=uri,
                tracking_parent=nesting,
            )
        except (TrainingInterrupted, KeyboardInterrupt) as exc:
            trial.set_user_attr("interrupted", str(exc) or "interrupted")
            cv.study.tell(trial, state=failed_state)
            write_result(cv)
            raise TrainingInterrupted(
                f"cv {cv.id} interrupted; finish it with: dltool cv --resume {cv.id}",
                getattr(exc, "run", None),
                exit_code=getattr(exc, "exit_code", 130),
            ) from None
        except Exception as exc:  # noqa: BLE001  (bad data, NaN, any error: this fold fails, the cv goes on)
            trial.set_user_attr("error", str(exc) if isinstance(exc, DltoolError) else f"{type(exc).__name__}: {exc}")
            cv.study.tell(trial, state=failed_state)
        else:
            cv.study.tell(trial, _test_loss(run))
        ran += 1
        write_result(cv)
        if on_fold_end is not None:
            on_fold_end(fold_row(cv.study.trials[trial.number], Path(cv.settings["runs_dir"])))
    return ran


def run_workers(
    cv: CrossValidation,
    workers: int,
    *,
    runs_root=None,
    quiet: bool = False,
    on_worker_died: Callable[[int, int], None] | None = None,
) -> None:
    """Keep ``workers`` processes (``dltool cv --join ID``) taking folds until none waits; a worker killed by a
    signal is replaced and its fold enqueued again (see :func:`dltool.distributed.supervisor.keep_workers`)."""
    from ..distributed import supervisor

    if workers < 1:
        raise UsageError(f"--workers: expected a number >= 1, received {workers}")
    command = [sys.executable, "-m", "dltool", "cv", "--join", cv.id, "--runs-dir", str(runs_dir(runs_root).resolve())]
    command += ["--quiet"] if quiet else []

    # --mlflow's URI goes to the workers in their environment: the study records it without its password.
    environment = {**os.environ, URI_ENV: cv.mlflow_uri} if cv.mlflow_uri else None

    def start() -> subprocess.Popen:
        return supervisor.start_worker(command, env=environment)

    def unfinished(died: bool, live: int) -> bool:  # live: a waiting fold goes to one worker only, whichever asks
        if died:
            cv.enqueue_missing()  # the dead worker's fold, waiting again
        return cv.waiting() > 0

    try:
        failed = supervisor.keep_workers(
            start, min(workers, max(cv.waiting(), 1)), unfinished=unfinished, on_worker_died=on_worker_died
        )
    except KeyboardInterrupt:
        write_result(cv)
        raise TrainingInterrupted(f"cv {cv.id} interrupted; finish it with: dltool cv --resume {cv.id}", None) from None
    write_result(cv)
    if failed:
        raise TrainingError(
            f"{len(failed)} cv worker(s) exited with an error (exit codes {failed}); "
            f"see their messages above; resume with: dltool cv --resume {cv.id}"
        )


@contextmanager
def tracked(cv: CrossValidation, *, mlflow_uri: str | None = None) -> Iterator[ParentRun | None]:
    """The cv as one MLflow parent run while the block runs its folds (each fold a child run), when its base
    config has ``tracking.mlflow``, ``mlflow_uri`` (`--mlflow`) is given or the cv was tracked before; else None.
    At the end the parent gets, per test metric of cv.json, ``<metric>_mean``, ``<metric>_std``,
    ``<metric>_ci95_low`` and ``<metric>_ci95_high``, and cv.json as an artifact; it ends FINISHED, KILLED
    (Ctrl-C) or FAILED. A store that is away sets the parent's ``warning`` (shown once by the caller)."""
    cv.mlflow_uri = mlflow_uri
    params = {k: v for k, v in cv.settings.items() if k not in ("runs_dir", "warnings")}
    parent = open_parent(cv, "cv", params, mlflow_uri)
    status = "failed"
    try:
        yield parent
        status = "completed"
    except (TrainingInterrupted, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        if parent is not None:
            result = write_result(cv)
            parent.end(status, metrics=summary_metrics(result), artifacts=[cv.folder / RESULT])


def summary_metrics(result: dict) -> dict[str, float]:
    """cv.json's summary of every test metric as parent-run metrics: mean, std and the 95 % interval's bounds."""
    metrics = {}
    for name, summary in result["metrics"].items():
        metrics[f"{name}_mean"] = summary["mean"]
        if summary["std"] is not None:
            metrics[f"{name}_std"] = summary["std"]
        if summary["ci95"] is not None:
            metrics[f"{name}_ci95_low"], metrics[f"{name}_ci95_high"] = summary["ci95"]
    return metrics
