"""The live training display, rendered to a string console with a fake clock (no TensorFlow)."""

import io

from rich.console import Console

from dltool.cli.display.training import TrainingDisplay

STEPS = 10  # steps per epoch
STEP_SECONDS = 2.0  # each fake step takes this long, so an epoch takes 20 s


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def live_display(clock: FakeClock) -> TrainingDisplay:
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    return TrainingDisplay(console, plain=False, get_time=clock)


def run_steps(display: TrainingDisplay, clock: FakeClock, steps: int, first: int = 1) -> None:
    for step in range(first, first + steps):
        clock.advance(STEP_SECONDS)
        display.on_batch_end(step, {"loss": 0.5})


def run_epoch(display: TrainingDisplay, clock: FakeClock, epoch: int) -> None:
    display.on_epoch_begin(epoch)
    run_steps(display, clock, STEPS)
    display.on_epoch_end({"epoch": epoch, "loss": 0.5, "epoch_seconds": STEPS * STEP_SECONDS})


def bars(display: TrainingDisplay) -> dict[str, str]:
    """The display's current frame as text, one line per bar, keyed by the bar's first word."""
    out = Console(file=io.StringIO(), width=120, color_system=None)
    out.print(display.progress.get_renderable())
    lines = [line.strip() for line in out.file.getvalue().splitlines() if line.strip()]
    return {"epochs" if line.startswith("epochs") else "steps": line for line in lines}


def test_the_step_bar_keeps_time_in_the_second_epoch():
    clock = FakeClock()
    display = live_display(clock)
    display.on_train_begin(3, STEPS)
    run_epoch(display, clock, 1)
    display.on_epoch_begin(2)
    run_steps(display, clock, 5)
    steps = bars(display)["steps"]
    assert steps.startswith("epoch 2")
    assert "5/10" in steps
    assert "0:00:10 eta 0:00:10" in steps  # 10 s into epoch 2, 5 steps of 2 s left
    run_steps(display, clock, 2, first=6)
    assert "0:00:14 eta 0:00:06" in bars(display)["steps"]
    display.on_train_end()


def test_the_epochs_bar_shows_an_eta_after_the_first_epoch():
    clock = FakeClock()
    display = live_display(clock)
    display.on_train_begin(3, STEPS)
    display.on_epoch_begin(1)
    run_steps(display, clock, 5)
    assert "eta -:--:--" in bars(display)["epochs"]  # nothing to estimate from yet
    run_steps(display, clock, 5, first=6)
    display.on_epoch_end({"epoch": 1, "loss": 0.5, "epoch_seconds": 20.0})
    assert "1/3" in bars(display)["epochs"]
    assert "eta 0:00:40" in bars(display)["epochs"]  # two epochs of 20 s left
    display.on_epoch_begin(2)
    run_steps(display, clock, 5)
    assert "eta 0:00:30" in bars(display)["epochs"]  # half of epoch 2 done
    run_steps(display, clock, 5, first=6)
    display.on_epoch_end({"epoch": 2, "loss": 0.5, "epoch_seconds": 20.0})
    run_epoch(display, clock, 3)
    assert "3/3" in bars(display)["epochs"] and "eta 0:00:00" in bars(display)["epochs"]
    display.on_train_end()


def test_a_resumed_run_starts_the_epochs_bar_at_its_epoch():
    clock = FakeClock()
    display = live_display(clock)
    display.on_train_begin(10, STEPS)
    display.on_epoch_begin(6)
    assert "5/10" in bars(display)["epochs"]
    display.on_train_end()


def test_plain_mode_prints_epoch_lines_only():
    clock = FakeClock()
    console = Console(file=io.StringIO(), width=120)
    display = TrainingDisplay(console, plain=True, get_time=clock)
    display.on_train_begin(2, STEPS)
    run_epoch(display, clock, 1)
    display.on_train_end()
    assert console.file.getvalue() == "epoch 1/2  loss=0.5  (20.00s)\n"


def test_runs_show_names_the_backbone_and_the_parameters_each_phase_trains():
    from dltool.cli.display.reports import parameter_lines

    shown = {
        "backbone": {"application": "MobileNetV3Small", "weights": "imagenet", "weights_sha256": "ab" * 32},
        "parameters": {"trainable": 1731, "frozen": 939120},
        "phases": [
            {"phase": 1, "first_epoch": 1, "trainable": 1731, "frozen": 939120},
            {"phase": 2, "first_epoch": 6, "learning_rate": 1e-5, "trainable": 195843, "frozen": 745008},
        ],
    }
    assert parameter_lines(shown) == [
        "backbone: MobileNetV3Small (weights imagenet, sha256 abababababab)",
        "phase 1 (frozen backbone, from epoch 1): 1,731 trainable, 939,120 frozen parameters",
        "phase 2 (fine-tuning, from epoch 6, learning rate 1e-05): 195,843 trainable, 745,008 frozen parameters",
    ]
    run_backbone = {"backbone": {"run": "20261203-1-pretrain", "up_to": "flatten"}, "parameters": shown["parameters"]}
    assert parameter_lines(run_backbone) == [
        "backbone: run 20261203-1-pretrain (up to flatten)",
        "parameters: 1,731 trainable, 939,120 frozen",
    ]
    assert parameter_lines({"parameters": {"trainable": 10, "frozen": 0}}) == []


def test_the_figures_show_once_the_run_is_tested_and_the_result_line_does_not_repeat_them(tmp_path):
    """The metrics table comes as soon as the model is tested and saved, before the plots are drawn; the lines
    after training then say only where the run is."""
    from dltool.cli.display.training import print_training_result
    from dltool.runs import Run

    run = Run.create(tmp_path, "iris")
    run.start(name="iris", epochs_planned=2)
    metrics = {"train": {"loss": 0.5}, "validation": None, "test": {"loss": 0.25}, "epochs": 2}
    run.write_json("metrics.json", metrics)
    console = Console(file=io.StringIO(), width=120, color_system=None)
    display = TrainingDisplay(console, plain=True, get_time=FakeClock())
    display.on_tested(run, metrics, [])
    shown = console.file.getvalue()
    assert "iris: 2 epochs" in shown and "0.25" in shown and "COMPLETED" not in shown
    print_training_result(console, run, figures_shown=display.figures_shown)
    after = console.file.getvalue()[len(shown) :]
    assert after.startswith(f"run {run.id} COMPLETED") and "iris: 2 epochs" not in after
    print_training_result(console, run)  # a display that showed nothing: the table comes here
    assert console.file.getvalue().count("iris: 2 epochs") == 2


def test_the_first_lines_of_a_run_name_its_class_weights():
    from types import SimpleNamespace

    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    info = {
        "data": {"train": 900, "validation": None, "test": 300},
        "params": 2,
        "device": "CPU (2 cores)",
        "class_weight": {"mode": "balanced", "weights": {f"c{i}": 1 + i / 3 for i in range(12)}},
    }
    TrainingDisplay(console, plain=True).on_run_created(SimpleNamespace(id="RUN", info=info))
    assert console.file.getvalue() == (
        "run RUN: 900 train, validation none, 300 test; 2 parameters; CPU (2 cores)\n"
        "class weights (balanced): c0 1, c1 1.333, c2 1.667, c3 2, c4 2.333, c5 2.667, c6 3, c7 3.333, c8 3.667, "
        "c9 4, ... (2 more)\n"
    )


def test_the_train_display_says_how_the_training_split_was_resampled():
    from types import SimpleNamespace

    console = Console(file=io.StringIO(), force_terminal=False, width=200)
    info = {
        "data": {"train": 400, "validation": None, "test": 100},
        "params": 2,
        "device": "CPU (2 cores)",
        "resample": {
            "mode": "oversample",
            "setting": "minority",
            "seed": 42,
            "before": {"common": 200, "rare": 35},
            "after": {"common": 200, "rare": 200},
        },
    }
    TrainingDisplay(console, plain=True).on_run_created(SimpleNamespace(id="RUN", info=info))
    assert console.file.getvalue() == (
        "run RUN: 400 train, validation none, 100 test; 2 parameters; CPU (2 cores)\n"
        "resample: oversample minority: 235 -> 400 training samples (common 200 -> 200, rare 35 -> 200)\n"
    )


def test_runs_show_lists_an_evaluations_ranking_calibration_and_threshold():
    from dltool.cli.display.reports import evaluation_figures

    evaluation = {
        "compiled": {"loss": 0.31, "accuracy": 0.9},
        "classification": {
            "ranking": {"average": "binary", "roc_auc": 0.95, "pr_auc": 0.93},
            "calibration": {"brier": 0.08, "ece": 0.04, "reliability": []},
        },
        "decision": {"threshold": 0.27, "source": "train.threshold"},
    }
    assert evaluation_figures(evaluation) == {
        "loss": 0.31,
        "accuracy": 0.9,
        "roc_auc": 0.95,
        "pr_auc": 0.93,
        "brier": 0.08,
        "ece": 0.04,
        "threshold": 0.27,
    }
    # A regression's evaluation has its compiled metrics only; a class missing from the data leaves AUC out.
    assert evaluation_figures({"compiled": {"loss": 1.0}, "regression": {}}) == {"loss": 1.0}
    assert evaluation_figures({"compiled": {}, "classification": {"ranking": {"roc_auc": None}}}) == {}
