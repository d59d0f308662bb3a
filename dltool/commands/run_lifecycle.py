"""The lifecycle that `train` and `resume` share: open the run (or join it), train it (or follow), record it.

Process 0 of a :class:`~dltool.distributed.ProcessGroup` owns the run folder: it creates or takes the run, tells
the other processes which run it is, fits and records. The others join that run and train their share alongside
(:func:`dltool.training.followers.follow`). One process alone is process 0 of :data:`~dltool.distributed.LOCAL`.
What differs between a new run and a resumed one (which run, which model, which epoch) stays in
:mod:`~dltool.commands.train` and :mod:`~dltool.commands.resume`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import ExperimentConfig
from ..distributed import LOCAL, ProcessGroup
from ..distributed.group import weights_digest
from ..errors import TrainingError, TrainingInterrupted
from ..runs import COMPLETED, FAILED, INTERRUPTED, Run, log_time
from ..system_info import PhaseClock
from ..training.backbones import parameter_counts
from ..training.checkpoints import Checkpointer, checkpointed_epoch, drop_resume_checkpoints
from ..training.followers import follow, lost_workers, resume_command, share_out, tell_the_others, watch_workers
from ..training.interrupts import InterruptGuard
from ..training.observer import Observer
from ..training.recorder import RunRecorder
from ..training.threshold import decide_threshold, threshold_metrics

MAX_REPORTED_WEIGHTS = 20  # metrics.json lists the weights of models this small (linear regressions)


def small_model_weights(model) -> dict:
    """{layer: {kernel: [...], bias: [...]}} for models small enough to read (a linear fit's weight and bias)."""
    import keras

    return {
        layer.name: {w.path.rsplit("/", 1)[-1]: keras.ops.convert_to_numpy(w).ravel().tolist() for w in layer.weights}
        for layer in model.layers
        if layer.weights
    }


def open_or_join(
    group: ProcessGroup,
    *,
    open_run: Callable[[], Run],
    join_run: Callable[[str], Run],
    start_run: Callable[[Run], None] | None = None,
) -> Run:
    """The run every process of ``group`` trains: process 0 opens it, the others join it.

    Process 0 calls ``open_run()`` (create a run folder, or take a stopped run), then ``start_run(run)``
    if given (write its first files; a failure there marks the run FAILED and raises TrainingError), and
    tells the others the run's id. A failure in either step reaches the other processes before it is
    raised here, so none of them waits for a run that will not come. The others get the id from process 0
    and return ``join_run(run_id)``.
    """
    if not group.is_leader:
        return join_run(group.share_run())
    try:
        run = open_run()
    except Exception as exc:
        group.share_run(failure=str(exc))
        raise
    if start_run is not None:
        try:
            start_run(run)
        except Exception as exc:  # noqa: BLE001  (the folder exists: it must not be left looking RUNNING)
            reason = f"{type(exc).__name__}: {exc}"
            if run.file("run.json").is_file():
                run.finish(FAILED, error=reason)
            group.share_run(failure=reason)
            raise TrainingError(f"run {run.id} could not be started: {reason}") from exc
    if group.size > 1:
        tell_the_others(run, group)
    return run


def train_or_follow(
    run: Run,
    config: ExperimentConfig,
    data,
    model,
    *,
    observer: Observer,
    group: ProcessGroup,
    before_fit: Callable[[], None] | None = None,
    history: list[dict] | None = None,
    initial_epoch: int = 0,
    restore: dict | None = None,
    fine_tune_from: int | None = None,
    clock: PhaseClock | None = None,
) -> Run:
    """Train ``run`` in this process: process 0 fits and records it, the others train their share alongside.

    Each process first keeps its share of the data (alone: all of it). On process 0, ``before_fit()`` (if
    given) then runs just before fitting (a resumed run is marked RUNNING again there). ``history``,
    ``initial_epoch``, ``restore`` and ``fine_tune_from`` continue a resumed run, as in :func:`fit_and_record`;
    ``clock`` holds the seconds of the phases before (run.json's ``phase_seconds``).
    """
    if not group.is_leader:
        share_out(None, config, data, group)
        return follow(
            run,
            config,
            data,
            model,
            observer,
            group=group,
            initial_epoch=initial_epoch,
            restore=restore,
            fine_tune_from=fine_tune_from,
        )
    if group.size > 1:
        share_out(run, config, data, group)
    if before_fit is not None:
        before_fit()
    return fit_and_record(
        run,
        config,
        data,
        model,
        observer=observer,
        history=history,
        initial_epoch=initial_epoch,
        restore=restore,
        fine_tune_from=fine_tune_from,
        group=group,
        clock=clock,
    )


def fit_and_record(
    run: Run,
    config: ExperimentConfig,
    data,
    model,
    *,
    observer: Observer,
    history: list[dict] | None = None,
    initial_epoch: int = 0,
    restore: dict | None = None,
    fine_tune_from: int | None = None,
    group: ProcessGroup = LOCAL,
    clock: PhaseClock | None = None,
) -> Run:
    """Fit, checkpoint, evaluate and save into an open RUNNING run (process 0 of ``group``); set its final status.

    ``history`` (the rows of history.csv so far), ``initial_epoch`` and ``restore`` (the callbacks' saved
    progress) continue a resumed run; by default None, 0 and None: a run from its first epoch.
    ``fine_tune_from`` (a run resumed in its fine-tuning phase: the epochs of its first phase) skips the first
    phase. ``clock`` (default a new one) gets the fit's and the phases' after it. Returns the COMPLETED run; raises TrainingInterrupted (the run INTERRUPTED) or TrainingError (the run
    FAILED).
    """
    from ..training.fitting import StopRequested, fit_phases, release_data_iterators

    recorder = RunRecorder(run, config.train.total_epochs, history)
    checkpoints = Checkpointer(run, model, config.train.checkpoint_every, config.train.total_epochs)
    checkpoints.fine_tune_from = fine_tune_from
    log_data_notes(recorder, data)

    def on_fine_tune(first_phase_epochs: int, unfrozen: list[str]) -> None:
        """The second phase starts: log it, record its parameter counts, checkpoint the unfrozen model."""
        recorder.flush()
        counts = parameter_counts(model)
        fine_tune = config.train.fine_tune
        phases = [entry for entry in run.info.get("phases", []) if entry.get("phase") != 2]
        phases.append(
            {
                "phase": 2,
                "first_epoch": first_phase_epochs + 1,
                "learning_rate": fine_tune.learning_rate,
                "unfrozen_layers": len(unfrozen),
                **counts,
            }
        )
        run.update_info(phases=phases)
        recorder.log(
            f"{log_time()} fine-tuning from epoch {first_phase_epochs + 1}: {len(unfrozen)} layer(s) of the backbone "
            f"unfrozen (BatchNormalization stays frozen), learning rate {fine_tune.learning_rate:g}; "
            f"{counts['trainable']:,} trainable and {counts['frozen']:,} frozen parameters"
        )
        checkpoints.fine_tune_from = first_phase_epochs
        checkpoints.write_now(first_phase_epochs, recorder.rows)

    def on_epoch_end(row: dict) -> None:
        recorder.on_epoch_end(row)
        log_data_notes(recorder, data)

    interrupts = InterruptGuard()
    stopped_by = ""  # why an observer stopped the run (a sweep prunes with "pruned"); empty for a signal
    try:
        with interrupts:
            stop_watching = watch_workers(run, group)
            try:
                result = fit_phases(
                    model,
                    config,
                    data,
                    fine_tune_from=fine_tune_from,
                    on_fine_tune=on_fine_tune if config.train.fine_tune else None,
                    on_epoch_end=on_epoch_end,
                    on_checkpoint=lambda epoch, states: checkpoints.on_epoch_end(epoch, states, recorder.rows),
                    observer=observer,
                    best_checkpoint=run.file("checkpoints/best.keras"),
                    initial_epoch=initial_epoch,
                    restore=restore,
                    should_stop=interrupts.requested,
                    tensorboard_dir=run.file("tensorboard"),
                    group=group,
                )
            except StopRequested as stop:
                stopped_by = str(stop)
                raise KeyboardInterrupt from None
            finally:
                stop_watching()
        recorder.flush()
        _finish_completed(run, config, data, model, recorder, result, group, clock or PhaseClock(), observer)
        drop_resume_checkpoints(run)
        observer.on_run_completed(run, model, data)
        return run
    except KeyboardInterrupt:
        group.make_local(model)
        recorder.flush()
        checkpoints.write_pending()
        signal_name = interrupts.signal_name or "SIGINT"
        done = checkpointed_epoch(run)
        where = (
            f"resume from epoch {done} with: {resume_command(run, group)}"
            if done
            else "no epoch was checkpointed, so it cannot be resumed"
        )
        epochs = f"{recorder.epochs_done} completed epoch(s)"
        cause = stopped_by or f"interrupted by {signal_name}"
        run.finish(INTERRUPTED, error=f"{cause} after {epochs}")
        run.append_log(
            f"INTERRUPTED ({stopped_by}); {where}" if stopped_by else f"INTERRUPTED by {signal_name}; {where}"
        )
        observer.on_run_interrupted(run, f"{cause} after {epochs}")
        raise TrainingInterrupted(
            f"run {run.id} {cause} after {epochs}; {where}", run, exit_code=143 if signal_name == "SIGTERM" else 130
        ) from None
    except TrainingError as exc:
        group.make_local(model)
        recorder.flush()
        checkpoints.write_pending()
        run.finish(FAILED, error=str(exc))
        run.append_log(f"FAILED: {exc}")
        observer.on_run_failed(run, str(exc))
        done = checkpointed_epoch(run)
        hint = f"; the last good checkpoint is epoch {done}" if done else ""
        raise TrainingError(f"run {run.id} failed: {exc}{hint}") from None
    except Exception as exc:  # noqa: BLE001  (any Keras/OS error ends the run FAILED with its reason)
        release_data_iterators(exc)  # a failed test evaluation's, too (fit released its own)
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if data.failure is not None:  # a streamed file that cannot be read: its own message, not TensorFlow's
            reason = str(data.failure)
        if group.looks_like_lost_peer(exc):
            reason = lost_workers(reason, group)
        try:
            group.make_local(model)
            checkpoints.write_pending()  # the last finished epoch's state, kept in memory: resumable from there
        except Exception:  # noqa: BLE001  (the run is failing already: its reason is the first error)
            pass
        try:
            run.finish(FAILED, error=reason)
            run.append_log(f"FAILED: {reason}")
        except OSError:
            pass
        observer.on_run_failed(run, reason)
        done = checkpointed_epoch(run)
        hint = f"; resume from epoch {done} with: {resume_command(run, group)}" if done else ""
        raise TrainingError(f"run {run.id} failed: {reason}{hint}") from exc


def _finish_completed(
    run: Run,
    config: ExperimentConfig,
    data,
    model,
    recorder: RunRecorder,
    result,
    group: ProcessGroup,
    clock: PhaseClock,
    observer: Observer,
) -> None:
    """Test the trained model, save it, write metrics.json (the observer hears of it: a display shows the figures
    without waiting for the plots), draw the plots, and mark the run COMPLETED with the seconds of each phase."""
    from ..config.expectations import check_expectations, describe_expectation
    from ..keras_io import save_model_atomic
    from ..plots import MAX_PLOTTED_TEST_SAMPLES, write_run_plots
    from ..training.calibration import calibrate_run
    from ..training.fitting import evaluate_data, evaluate_with_outputs

    if group.size > 1:  # process 0 tests the model on the whole test split by itself
        group.make_local(model)
        run.append_log(f"{log_time()} final weights {weights_digest(model)} (each worker logs its own)")
    plots_from_one_pass = config.train.plots and data.streamed
    # A streamed test split is read once for its metrics and the plots' predictions (a second read of a photo
    # folder's test split decodes every file again).
    clock.add("fit", result.seconds)
    calibration = calibrate_run(run, config, data, model, recorder, clock)
    decide_threshold(run, config, data, model, recorder, clock)
    with clock.phase("test"):
        scored = evaluate_with_outputs(model, config, data, MAX_PLOTTED_TEST_SAMPLES) if plots_from_one_pass else None
        test = scored[0] if scored else evaluate_data(model, config, data)
    log_data_notes(recorder, data)  # reading the test split may have finished a cache
    with clock.phase("save"):
        save_model_atomic(model, run.file("model.keras"))
    # After restore_best_weights the saved model is the best epoch's: report that epoch's figures, not the last's.
    train_metrics, val_metrics = recorder.final_metrics(result.restored_epoch)
    metrics = {
        "train": train_metrics,
        "validation": val_metrics or None,
        "test": test,
        **threshold_metrics(run),
        "epochs": recorder.epochs_done,
        "stopped_early": result.stopped_early,
        **({"restored_epoch": result.restored_epoch} if result.restored_epoch is not None else {}),
        "best_epoch": recorder.best_epoch(),
        "fit_seconds": round(result.seconds, 3),
        **({"calibration": calibration} if calibration else {}),
        **({"weights": small_model_weights(model)} if model.count_params() <= MAX_REPORTED_WEIGHTS else {}),
    }
    run.write_json("metrics.json", metrics)
    run.append_log("test  " + "  ".join(f"{k}={v:.4g}" for k, v in test.items()))
    expectations = check_expectations(config.expect, metrics)
    if expectations:
        run.append_log("\n".join("expect  " + describe_expectation(checked) for checked in expectations))
    observer.on_tested(run, metrics, expectations)
    if config.train.plots:
        with clock.phase("plots"):
            write_run_plots(run, config, recorder.rows, model, data, scored[1:] if scored else None)
    met = (
        {"expectations": expectations, "expectations_met": all(e["met"] for e in expectations)} if expectations else {}
    )
    first_step = (
        {} if result.first_step_seconds is None else {"first_step_seconds": round(result.first_step_seconds, 3)}
    )
    # The data's record again: a streamed folder knows by now whether its cache was built and what it left out.
    run.finish(
        COMPLETED,
        fit_seconds=round(result.seconds, 3),
        data=data.sizes(),
        phase_seconds=clock.seconds,
        **first_step,
        **met,
    )


def log_data_notes(recorder: RunRecorder, data) -> None:
    """Add what the data has to say since it last did (a cache built, unreadable files left out) to train.log."""
    for note in data.take_notes():
        recorder.log(f"{log_time()} {note}")
