"""`dltool validate`, `schema` and `init`: the commands about config files. Parse, one library call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from .common import ConfigFile, Overrides, Verbose, err, out, reported_errors, say

VALIDATE_EPILOG = "Example: dltool validate configs/mnist_mlp.yaml --set data.path=mnist.npz"
SCHEMA_EPILOG = "Example: dltool schema > dltool.schema.json"
INIT_EPILOG = "Example: dltool init csv-classifier my_experiment.yaml   |   dltool init ci   |   dltool init ci --install keras-dltool==0.1.0"


def validate(
    config: ConfigFile,
    overrides: Overrides = None,
    schema_only: Annotated[
        bool, typer.Option("--schema-only", metavar="", help="Check the config alone: no data, no TensorFlow.")
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Check a config without training: print it resolved, then load the data and build the model."""
    from ..config import config_to_yaml, load_config, resolve_paths

    with reported_errors():
        experiment = load_config(config, overrides or [])
        say(config_to_yaml(resolve_paths(experiment)))
        if schema_only:
            say(f"{config}: config is valid")
            return
        from ..backend import import_keras

        import_keras(verbose, backend=experiment.backend, devices=experiment.train.devices)
        from ..commands.train import check

        summary, sizes, shape, warnings, classes = check(experiment)
    say(summary)
    for warning in warnings:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    val = "the test split" if sizes["validation_is_test"] else (sizes["validation"] or "none")
    say(
        f"data: {sizes['train']} train, validation {val}, {sizes['test']} test ({sizes['test_split']}); samples {shape}"
    )
    for line in class_count_lines(classes, sizes["validation_is_test"]):
        say(line)
    say(f"{config}: config, data and model are valid")


def class_count_lines(classes: dict | None, validation_is_test: bool, limit: int = 20) -> list[str]:
    """validate's class counts: a header naming the splits, then one line per class (the first ``limit``)."""
    if not classes:
        return []
    splits = (
        ["train", "test"] if validation_is_test or classes["validation"] is None else ["train", "validation", "test"]
    )
    header = " / ".join(splits) + (" (validation: the test split)" if validation_is_test else "")
    if classes.get("train_before") is not None:  # data.resample: the training split as drawn, then as trained on
        splits.insert(0, "train_before")
        header = "train before resample / " + header.replace("train", "train resampled", 1)
    width = max(len(name) for name in classes["names"][:limit])
    lines = [f"classes: samples per split ({header})"]
    for index, name in enumerate(classes["names"][:limit]):
        lines.append(f"  {name:<{width}}  " + " / ".join(str(classes[split][index]) for split in splits))
    if len(classes["names"]) > limit:
        lines.append(f"  ... and {len(classes['names']) - limit} more classes")
    return lines


def schema() -> None:
    """Print the JSON Schema of config files (for editor completion and inline errors)."""
    from ..config import json_schema

    out.print_json(json.dumps(json_schema()))


def init(
    template: Annotated[
        str,
        typer.Argument(
            metavar="TEMPLATE",
            help="Template: mnist-mlp, csv-classifier, csv-regression, image-classifier, text-classifier, forecaster; or ci (a GitHub Actions workflow); or sweep (a sweep file for --experiment CONFIG)",
        ),
    ] = "mnist-mlp",
    path: Annotated[
        Path | None, typer.Argument(metavar="PATH", help="Where to write (default: <template>.yaml here).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Overwrite an existing file.")] = False,
    experiment: Annotated[
        Path | None,
        typer.Option("--experiment", metavar="CONFIG", help="With sweep: the experiment config the sweep tunes."),
    ] = None,
    install: Annotated[
        str | None,
        typer.Option(
            "--install",
            metavar="PIP SPEC",
            help="With ci: what the workflow pip-installs, e.g. 'keras-dltool @ git+https://github.com/ORG/REPO@COMMIT' (default: this dltool: its git commit, its version, or -e . in a checkout of dltool).",
        ),
    ] = None,
) -> None:
    """Write a commented starter config that validates as written (or, with ci, a GitHub Actions workflow; with sweep, a sweep file)."""
    from ..templates import CI_TEMPLATE, write_ci_workflow, write_sweep_template, write_template

    with reported_errors():
        if install is not None and template != CI_TEMPLATE:
            raise UsageError(f"--install goes with `dltool init ci`, not with the {template} template")
        if template == CI_TEMPLATE:
            if experiment is not None:
                raise UsageError("--experiment goes with `dltool init sweep`, not with the ci template")
            written = write_ci_workflow(path, force=force, install=install)
        elif template == "sweep" and experiment is not None:
            written = write_sweep_template(experiment, path, force=force)
        elif experiment is not None:
            raise UsageError(f"--experiment goes with `dltool init sweep`, not with the {template} template")
        else:
            written = write_template(template, path, force=force)
    if template == "ci":
        say(f"wrote {written}; commit it, and every push runs `dltool smoke` on configs/")
    elif template == "sweep":
        say(f"wrote {written}; run it with: dltool sweep {written}")
    else:
        say(f"wrote {written}; check it with: dltool validate {written}")
