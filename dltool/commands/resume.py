"""`dltool train --resume`: continue a stopped run from its last checkpoint, with its own config."""

from __future__ import annotations

from pathlib import Path

from ..backend import device_count
from ..distributed import ProcessGroup, current_group
from ..errors import RunStateError
from ..runs import COMPLETED, RUNNING, Run, log_time, now_iso, runs_dir
from ..tracking import check_tracking, tracking_observer
from ..training.checkpoints import read_state
from ..training.observer import Observer
from ..training.recorder import history_csv
from ..training.session import fresh_session, on_running_backend, training_devices
from .run_lifecycle import open_or_join, train_or_follow


def resume(
    ref: str | Run, *, runs_root: str | Path | None = None, observer=None, group: ProcessGroup | None = None
) -> Run:
    """Continue an INTERRUPTED, FAILED or died run from its last checkpoint, with its own saved config.

    Weights, optimizer state (learning rate included), the epoch counter and
    the callbacks' progress are restored; history.csv continues where the
    checkpoint was taken. ``group``: the processes that resume it together
    (default: the one this process joined, else this process alone).
    """
    from ..config import config_from_text
    from ..data import prepare_data
    from ..data.class_weights import ClassWeights
    from ..keras_io import load_model_safely

    if observer is None:
        observer = Observer()
    group = current_group() if group is None else group
    run = open_or_join(
        group,
        open_run=lambda: _resumable_run(ref, runs_root, group),
        join_run=lambda run_id: Run.resolve(run_id, runs_dir(runs_root)),
    )
    status = run.status
    info = run.info
    state = read_state(run, status)
    config = config_from_text(run.file("config.yaml").read_text(encoding="utf-8"), source=str(run.file("config.yaml")))
    trained_on = config.backend or "tensorflow"
    config = config.model_copy(update={"backend": None})
    config = on_running_backend(config)  # a run may resume on another backend than it started on
    config = _read_as_before(config, info)
    recorded = (info.get("tracking") or {}).get("mlflow")  # a tracked run continues its MLflow run
    check_tracking(config, recorded.get("uri") if recorded else None)
    observer = tracking_observer(observer, config, group, recorded=recorded)
    # A new but reproducible shuffle order.
    fresh_session(config.seed + state["epoch"], config.train.deterministic, config.train.precision)
    data = prepare_data(config)
    data.class_weight = ClassWeights.from_record(info.get("class_weight"))  # as recorded, not counted again
    if data.fingerprint != info.get("data_fingerprint"):
        raise RunStateError(
            f"the data of run {run.id} has changed since it started (fingerprint "
            f"{info.get('data_fingerprint')}, now {data.fingerprint}); resuming would mix two datasets"
        )
    with training_devices(config, group):
        model = load_model_safely(run.file(state["model"]), _trainable_as_trained(config, state))
    devices = device_count(config.train.devices)
    if devices > 1 and group.size == 1:  # as at the start; several processes: share_out
        data.even_out(devices)

    def restart() -> None:
        """Process 0: history.csv back to the checkpoint's epoch, and the run RUNNING again."""
        run.write_text("history.csv", history_csv(state["history"]))
        resumes = info.get("resumes", []) + [{"at": now_iso(), "from_epoch": state["epoch"], "previous_status": status}]
        run.restart(resumes=resumes, epochs_done=state["epoch"])
        moved = f"; on backend {config.backend}, trained on {trained_on}" if config.backend != trained_on else ""
        run.append_log(f"{log_time()} resumed from epoch {state['epoch']} (was {status}){moved}")
        observer.on_run_created(run)

    return train_or_follow(
        run,
        config,
        data,
        model,
        observer=observer,
        group=group,
        before_fit=restart,
        history=state["history"],
        initial_epoch=state["epoch"],
        restore=state.get("callbacks", {}),
        fine_tune_from=state.get("fine_tune_from"),
    )


def _trainable_as_trained(config, state: dict):
    """A run with a backbone: the backbone as it trained, which a keras-hub backbone's file cannot say (it is
    rebuilt from its constructor's arguments): unfrozen as train.fine_tune says in the second phase, and in inference
    mode (BatchNormalization frozen, Dropout off) in either; None without a backbone."""
    from ..config import backbone_of

    spec = backbone_of(config)
    if spec is None:
        return None
    from ..training.backbones import BACKBONE_LAYER, CORE_LAYER, is_pretrained, keep_in_inference_mode, unfreeze

    def as_trained(model) -> None:
        if state.get("fine_tune_from") is not None:
            unfreeze(model, config.train.fine_tune.unfreeze, is_pretrained(spec))
        elif is_pretrained(spec):
            keep_in_inference_mode(model.get_layer(BACKBONE_LAYER).get_layer(CORE_LAYER))

    return as_trained


def _read_as_before(config, info: dict):
    """``config`` reading its data as the run did: ``data.stream: auto`` decides by this machine's memory, and a
    streamed and an in-memory dataset have different fingerprints (file listing, pixels)."""
    if getattr(config.data, "stream", None) != "auto" or "data" not in info:
        return config
    streamed = bool(info["data"].get("streamed", False))
    return config.model_copy(update={"data": config.data.model_copy(update={"stream": streamed})})


def _resumable_run(ref: str | Run, runs_root: str | Path | None, group: ProcessGroup) -> Run:
    """Process 0: the run ``ref`` names, if this process (or ``group``'s processes) can resume it; else a
    RunStateError."""
    run = ref if isinstance(ref, Run) else Run.resolve(str(ref), runs_dir(runs_root))
    info = run.info
    status = run.status
    if status == COMPLETED:
        raise RunStateError(
            f"run {run.id} is COMPLETED: there is nothing to resume; "
            f"start a new run with `dltool train {run.path / 'config.yaml'}`"
        )
    if status == RUNNING:
        raise RunStateError(
            f"run {run.id} is still RUNNING (pid {info.get('pid')} on {info.get('host')}); "
            "stop it first (Ctrl-C or kill) or wait for it"
        )
    trained_in = info.get("processes", 1)
    if trained_in != group.size:
        how = (
            f"`dltool launch -n {trained_in} --resume {run.id}`"
            if trained_in > 1
            else f"`dltool train --resume {run.id}`"
        )
        raise RunStateError(
            f"run {run.id} trained in {trained_in} process(es) and is resumed in {group.size}; "
            f"resume it with the same number (each process keeps its share of the data): {how}"
        )
    read_state(run, status)  # a run without a checkpoint is refused here, before the others go on
    return run
