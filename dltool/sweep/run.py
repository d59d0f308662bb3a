"""`dltool sweep`: hyperparameter search on Optuna, every trial an ordinary run folder trained by :func:`train`.

A sweep lives in ``sweeps/<id>/`` beside the runs folder (``<runs-dir>/../sweeps``):
``sweep.yaml`` (resolved), ``experiment.yaml`` (the base config as it was when
the sweep started), ``study.journal`` (Optuna's JournalStorage, safe for
several processes) or ``storage.txt`` (a database URL, its password left out:
that comes from --storage, DLTOOL_SWEEP_STORAGE, PGPASSWORD or ~/.pgpass), and
``summary.json``.
The study itself also holds the sweep file and the base config (study user
attributes), so a worker on another machine needs only the id and the URL.

A trial counts as done when it COMPLETEd, was PRUNED or FAILED on its own
(bad values, NaN loss, an error); a trial stopped by Ctrl-C or whose worker
died does not, so ``--resume`` runs exactly the trials still missing. A
RUNNING trial whose worker is gone (its pid on this host, or no heartbeat for
STALE_AFTER_S) is marked FAILED and retried once with the same parameters.
No parameter set completes twice: see sampler.py for how draws are seeded.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import config_from_text
from ..errors import DltoolError, RunNotFoundError, TrainingError, TrainingInterrupted
from ..fileio import atomic_write_text
from ..runs import Run, process_start, runs_dir
from ..tracking.parent import ParentRun, child_tracking, open_parent
from ..training.observer import Observer
from .report import objective_value, progress, write_summary
from .sampler import claim, encoded_choices, first_duplicate, sets_left, sweep_sampler
from .spec import (
    SweepSpec,
    base_config_yaml,
    fold_override,
    load_sweep,
    overrides_for,
    resolved_sweep_yaml,
    sweep_from_text,
)
from .storage import import_optuna, open_storage, reclaim_dead_trials, resolve_folder, url_without_password
from .workers import TRIALS_PER_WORKER, run_workers  # noqa: F401  (re-exported: the sweep API)

STALE_AFTER_S = 600  # a RUNNING trial on another host with no heartbeat for this long is taken as dead
HEARTBEAT_EVERY_S = 30  # a trial's heartbeat in the study, at most this often (at the end of an epoch)


def sweeps_dir(runs_root: str | Path | None = None) -> Path:
    """Where sweep folders live: ``sweeps/`` beside the runs folder."""
    return runs_dir(runs_root).resolve().parent / "sweeps"


def resolve_sweep(ref: str, root: Path) -> Path:
    """A sweep folder by id, unique id prefix or 'latest'."""
    return resolve_folder(ref, root, "sweep.yaml", "sweep", "dltool sweep SWEEP.yaml")


def _pruner(spec: SweepSpec, epochs: int):
    optuna = import_optuna()
    if spec.pruner.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.pruner.startup_trials, n_warmup_steps=spec.pruner.warmup_epochs
        )
    if spec.pruner.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1))
    return optuna.pruners.NopPruner()


class Sweep:
    """An open sweep: its folder, spec, base config text and Optuna study."""

    def __init__(self, folder: Path, spec: SweepSpec, base_text: str, storage):
        self.folder, self.spec, self.base_text, self.storage = folder, spec, base_text, storage
        self.id = folder.name
        self.mlflow_uri: str | None = None  # `--mlflow URI` given to this process (workers read the study's)
        self.base = config_from_text(base_text, source=str(folder / "experiment.yaml"))
        optuna = import_optuna()
        self.study = optuna.create_study(
            study_name=self.id,
            storage=storage,
            sampler=sweep_sampler(spec),
            pruner=_pruner(spec, self.base.train.epochs),
            direction="maximize" if spec.objective.goal == "max" else "minimize",
            load_if_exists=True,
        )

    def sample_view(self, params: dict) -> dict:
        """A trial's parameters as config values (JSON-encoded choices decoded)."""
        encoded = encoded_choices(self.spec)
        return {k: json.loads(v) if encoded.get(k) and isinstance(v, str) else v for k, v in params.items()}

    def sample(self, trial) -> dict:
        """Ask ``trial`` for a value of every parameter (decoded back to config values).

        Raises DuplicateDraw when another trial holds the same values (two workers drew them at once, a draw
        took the values of a dead worker's trial before its retry ran, or the space is used up); the trial is
        marked and the sweep draws again.
        """
        params = {}
        encoded = encoded_choices(self.spec)
        for key, p in self.spec.parameters.items():
            if p.kind == "choice":
                value = trial.suggest_categorical(key, [json.dumps(c) if encoded[key] else c for c in p.choice])
                params[key] = json.loads(value) if encoded[key] else value
            elif p.kind == "int":
                params[key] = trial.suggest_int(key, *p.low_high)
            else:
                params[key] = trial.suggest_float(key, *p.low_high, log=p.kind == "loguniform")
        # A trial a user queued runs as given; a retry of a dead worker's trial may find a draw took its values.
        if trial.number in self.study.sampler.drawn or "retry_of" in trial.user_attrs:
            other = first_duplicate(self.study, trial.number, trial.params)
            if other is not None:
                trial.set_user_attr("duplicate", f"skipped: the same values as trial {other.number}")
                raise DuplicateDraw(other.number)
            claim(trial)
        return params


def create_sweep(path: str | Path, *, runs_root=None, storage_url: str | None = None) -> Sweep:
    """Validate a sweep file and make its folder and study (nothing trains yet)."""
    spec, base = load_sweep(path)
    name = spec.name or base.name
    folder = Run.create(sweeps_dir(runs_root), name).path  # the same atomic, unique-id mkdir as a run folder
    spec = spec.model_copy(update={"name": name})
    base_text = base_config_yaml(base)
    atomic_write_text(folder / "sweep.yaml", resolved_sweep_yaml(spec))
    atomic_write_text(folder / "experiment.yaml", base_text)
    if storage_url:
        atomic_write_text(folder / "storage.txt", url_without_password(storage_url) + "\n")
    sweep = Sweep(folder, spec, base_text, open_storage(folder, storage_url))
    sweep.study.set_user_attr("sweep_yaml", resolved_sweep_yaml(spec))
    sweep.study.set_user_attr("experiment_yaml", base_text)
    return sweep


def open_sweep(ref: str, *, runs_root=None, storage_url: str | None = None) -> Sweep:
    """An existing sweep: from its folder here, or (with a database URL) from the study, making the folder."""
    root = sweeps_dir(runs_root)
    if storage_url and not (root / ref / "sweep.yaml").is_file():
        optuna = import_optuna()
        storage = open_storage(None, storage_url)
        try:
            attrs = optuna.load_study(study_name=ref, storage=storage).user_attrs
        except KeyError:
            raise RunNotFoundError(f"no sweep '{ref}' in {storage_url}") from None
        folder = root / ref
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "sweep.yaml", attrs["sweep_yaml"])
        atomic_write_text(folder / "experiment.yaml", attrs["experiment_yaml"])
        atomic_write_text(folder / "storage.txt", url_without_password(storage_url) + "\n")
    folder = resolve_sweep(ref, root)
    spec, _ = sweep_from_text((folder / "sweep.yaml").read_text(encoding="utf-8"), str(folder / "sweep.yaml"), folder)
    stored = folder / "storage.txt"
    url = storage_url or (stored.read_text(encoding="utf-8").strip() if stored.is_file() else None)
    return Sweep(folder, spec, (folder / "experiment.yaml").read_text(encoding="utf-8"), open_storage(folder, url))


# --------------------------------------------------------------------------- trials
class _TrialObserver(Observer):
    """Tags the run with the sweep, reports the objective after every epoch, and prunes."""

    def __init__(self, trial, sweep: Sweep):
        self.trial, self.sweep, self.metric = trial, sweep, sweep.spec.objective.metric
        self.pruned = False
        self.last_heartbeat = time.time()
        self.fold: int | None = None  # objective.cv: the fold this trial's current run trains

    def on_run_created(self, run: Run) -> None:
        folds = {"fold": self.fold, "folds": self.sweep.spec.objective.cv} if self.fold is not None else {}
        run.update_info(sweep=self.sweep.id, trial=self.trial.number, **folds)
        self.trial.set_user_attr("run_id", run.id)
        if self.fold is not None:
            self.trial.set_user_attr("runs", [*self.trial.user_attrs.get("runs", []), run.id])

    def on_epoch_end(self, row: dict) -> None:
        from ..training.fitting import StopRequested

        if self.metric not in row:
            columns = ", ".join(k for k in row if k not in ("epoch", "learning_rate", "epoch_seconds"))
            raise TrainingError(f"objective.metric '{self.metric}' is not in the history; its columns are {columns}")
        if self.fold is None:  # a cv objective's folds would report the same steps again (and it never prunes)
            self.trial.report(float(row[self.metric]), step=int(row["epoch"]))  # the epochs shown: the last step
        if time.time() - self.last_heartbeat > HEARTBEAT_EVERY_S:  # every write is a line in the study's journal
            self.last_heartbeat = time.time()
            self.trial.set_user_attr("heartbeat", self.last_heartbeat)
        if self.trial.should_prune():
            self.pruned = True
            raise StopRequested("pruned")


def _rss_mb() -> float | None:
    """This process's resident memory in MB (Linux), else None."""
    try:
        kb = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS:"))
        return round(int(kb.split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


class DuplicateDraw(Exception):
    """A trial drew a parameter set another trial holds; it is skipped (not counted) and the sweep draws again."""


class _TrialFailed(Exception):
    """A trial that failed on its own (its reason is in the trial's 'error' attribute); the sweep goes on."""


def _objective(sweep: Sweep, runs_root):
    from ..commands.train import train

    optuna = import_optuna()

    def objective(trial) -> float:
        trial.set_user_attr(
            "worker", {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}
        )
        trial.set_user_attr("heartbeat", time.time())
        params = sweep.sample(trial)
        observer = _TrialObserver(trial, sweep)
        try:
            folds = sweep.spec.objective.cv
            values = []
            for fold in range(1, (folds or 1) + 1):  # objective.cv: a run per fold, scored by their mean
                observer.fold = fold if folds else None
                config = config_from_text(
                    sweep.base_text,
                    source=str(sweep.folder / "experiment.yaml"),
                    overrides=overrides_for(params, sweep.spec) + ([fold_override(fold, folds)] if folds else []),
                )
                uri, nesting = child_tracking(
                    sweep,
                    "sweep",
                    {"dltool.trial": str(trial.number), **({"dltool.fold": str(fold)} if folds else {})},
                    {"dltool.trial": str(trial.number)},
                    sweep.mlflow_uri,
                )
                run = train(config, runs_root=runs_root, observer=observer, tracking_uri=uri, tracking_parent=nesting)
                values.append(objective_value(run, sweep.spec.objective.metric))
            trial.set_user_attr("rss_mb", _rss_mb())  # a worker's memory across trials (benchmarks/measure_sweep.py)
            if folds:
                trial.set_user_attr("fold_values", values)
            value = sum(values) / len(values)
        except TrainingInterrupted as exc:
            if observer.pruned:
                raise optuna.TrialPruned("pruned") from None
            trial.set_user_attr("interrupted", str(exc))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", "interrupted before training started")
            raise
        except Exception as exc:  # noqa: BLE001  (bad values, NaN, any error: this trial fails, the sweep goes on)
            trial.set_user_attr("error", str(exc) if isinstance(exc, DltoolError) else f"{type(exc).__name__}: {exc}")
            raise _TrialFailed() from exc
        return value

    return objective


def _reclaim_dead_trials(sweep: Sweep) -> None:
    """Mark RUNNING trials whose worker is gone FAILED ('stale') and enqueue each once more (never a retry twice)."""
    for trial in reclaim_dead_trials(sweep.study, sweep.storage, STALE_AFTER_S):
        if "retry_of" not in trial.user_attrs and "failed_trial" not in trial.system_attrs:
            sweep.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def space_used_up(sweep: Sweep) -> str | None:
    """Why a sweep ended short of its `trials`: every parameter set of its finite space ran once; else None."""
    done, _ = progress(sweep)
    if done >= sweep.spec.trials or sets_left(sweep.study, sweep.spec, running=False) != 0:
        return None
    return (
        f"every parameter set of the search space ran once (a set never runs twice), so sweep {sweep.id} "
        f"ends with {done} of {sweep.spec.trials} trials"
    )


def work(
    sweep: Sweep, *, runs_root=None, on_trial_end: Callable[[dict], None] | None = None, max_trials: int | None = None
) -> int:
    """Run trials in this process until the sweep has its `trials` done, or every parameter set of a finite
    space is held (or this process ran ``max_trials``); return how many this process ran.

    Raises TrainingInterrupted on Ctrl-C or SIGTERM (the trial's run is INTERRUPTED; the sweep resumable).
    """
    from .report import trial_row

    objective = _objective(sweep, runs_root)
    ran = 0
    while max_trials is None or ran < max_trials:
        _reclaim_dead_trials(sweep)
        done, running = progress(sweep)
        if done + running >= sweep.spec.trials or sets_left(sweep.study, sweep.spec) == 0:
            return ran
        try:
            finished: list = []  # this process's trial (with several workers, study.trials[-1] may be another's)
            sweep.study.optimize(
                objective,
                n_trials=1,
                catch=(_TrialFailed,),
                callbacks=[lambda study, trial, finished=finished: finished.append(trial)],
            )
        except (TrainingInterrupted, KeyboardInterrupt) as exc:
            write_summary(sweep)
            code = getattr(exc, "exit_code", 130)
            raise TrainingInterrupted(
                f"sweep {sweep.id} interrupted; finish it with: dltool sweep --resume {sweep.id}",
                getattr(exc, "run", None),
                exit_code=code,
            ) from None
        except DuplicateDraw:
            continue  # the next trial draws again; the duplicate is FAILED with its reason and not counted
        ran += 1
        write_summary(sweep)
        if on_trial_end is not None and finished:
            on_trial_end(trial_row(finished[-1], sweep))
    return ran


# --------------------------------------------------------------------------- MLflow
@contextmanager
def tracked(sweep: Sweep, *, mlflow_uri: str | None = None, runs_root=None) -> Iterator[ParentRun | None]:
    """The sweep as one MLflow parent run while the block runs its trials (each trial a child run), when its base
    config has ``tracking.mlflow``, ``mlflow_uri`` (`--mlflow`) is given or the sweep was tracked before; else
    None. At the end the best trial is tagged on the parent and its objective logged; the parent ends FINISHED,
    KILLED (Ctrl-C) or FAILED. A store that is away sets the parent's ``warning`` (shown once by the caller)."""
    sweep.mlflow_uri = mlflow_uri
    parent = open_parent(sweep, "sweep", sweep_params(sweep), mlflow_uri)
    status = "failed"
    try:
        yield parent
        status = "completed"
    except (TrainingInterrupted, KeyboardInterrupt):
        status = "interrupted"
        raise
    finally:
        if parent is not None:
            _end_parent(sweep, parent, status, runs_root)


def sweep_params(sweep: Sweep) -> dict:
    """The sweep's settings as the parent run's parameters: method, trials, objective, pruner, search space."""
    return sweep.spec.model_dump(mode="json", exclude={"name"})


def _end_parent(sweep: Sweep, parent: ParentRun, status: str, runs_root) -> None:
    summary = write_summary(sweep)
    best = summary["best"]
    tags, metrics = {}, {}
    if best is not None:
        tags = {"dltool.best_trial": str(best["trial"]), "dltool.best_run_id": str(best["run"])}
        try:
            record = (Run.resolve(best["run"], runs_dir(runs_root)).info.get("tracking") or {}).get("mlflow") or {}
        except DltoolError:  # the best run's folder deleted since
            record = {}
        if record.get("run_id"):
            tags["dltool.best_mlflow_run_id"] = record["run_id"]
        metrics = {f"best_{sweep.spec.objective.metric}": best["objective"]}
    parent.end(status, tags=tags, metrics=metrics, artifacts=[sweep.folder / "summary.json"])
