"""Starter configs for `dltool init`, shipped as commented YAML files in dltool/resources/templates/."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError, did_you_mean
from .fileio import atomic_write_text, check_output_file

# The files dltool ships besides code (pyproject.toml's package-data lists them for the wheel).
RESOURCES = Path(__file__).with_name("resources")
TEMPLATE_DIR = RESOURCES / "templates"
DEFAULT_TEMPLATE = "mnist-mlp"
SCHEMA_PATH = RESOURCES / "schema.json"  # regenerate with: dltool schema > dltool/resources/schema.json
CI_TEMPLATE = "ci"  # `dltool init ci`: a GitHub Actions workflow, not a config
CI_WORKFLOW = TEMPLATE_DIR / "github-ci.yml"
CI_DEFAULT_PATH = Path(".github/workflows/dltool-smoke.yml")
SWEEP_TEMPLATE = "sweep"  # `dltool init sweep --experiment CONFIG`: a sweep file, not a config
SWEEP_FILE = TEMPLATE_DIR / "sweep.yml"
SWEEP_SCHEMA_PATH = RESOURCES / "sweep.schema.json"
WIDTH_ARGUMENTS = {"Dense": "units", "LSTM": "units", "GRU": "units", "SimpleRNN": "units", "Conv1D": "filters"}
WIDTH_ARGUMENTS.update({"Conv2D": "filters", "Conv3D": "filters"})


def template_names() -> list[str]:
    """The available templates, e.g. ['csv-classifier', 'csv-regression', 'mnist-mlp']."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def template_text(name: str) -> str:
    """The text of one template; an unknown name gets a did-you-mean."""
    if name not in template_names():
        known = template_names() + [CI_TEMPLATE, SWEEP_TEMPLATE]
        raise UsageError(f"unknown template '{name}'; expected one of {', '.join(known)}" + did_you_mean(name, known))
    return (TEMPLATE_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(name: str, path: str | Path | None = None, *, force: bool = False) -> Path:
    """Write template ``name`` to ``path`` (default ./<name>.yaml); refuse to overwrite unless ``force``.

    A ``name`` that looks like a file path (``my.yaml``, ``sub/x.yml``) with no ``path`` writes the default
    template there: `dltool init my.yaml` means what it says.
    """
    if name == CI_TEMPLATE:
        return write_ci_workflow(path, force=force)
    if name == SWEEP_TEMPLATE:
        raise UsageError("`dltool init sweep` needs the config to tune: dltool init sweep --experiment CONFIG")
    if path is None and name not in template_names() and _looks_like_path(name):
        name, path = DEFAULT_TEMPLATE, name
    text = template_text(name).replace("{schema}", SCHEMA_PATH.resolve().as_uri())
    default_name = f"{name.replace('-', '_')}.yaml"
    target = Path(path) if path is not None else Path(default_name)
    check_output_file(target, "config", "the config (PATH)")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; choose another path or add --force")
    # The comments say how to validate and train the file: name the file that was written.
    text = text.replace(f" {default_name}", f" {target}")
    atomic_write_text(target, text)
    return target


def _looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text


def ci_workflow_text(install: str | None = None, workflow: str | Path = CI_DEFAULT_PATH) -> str:
    """The GitHub Actions workflow `dltool init ci` writes to ``workflow`` (its pip cache is keyed on that file).

    ``install`` is the requirement its install step passes to pip (default: ci_requirement()); one that starts
    with a dash is pip's options and arguments as written (``-e .``).
    """
    from .installation import shell_word

    if install is None:
        install = ci_requirement()
    elif not install.startswith("-"):
        install = shell_word(install)
    command = "pip install " + install
    return (
        CI_WORKFLOW.read_text(encoding="utf-8")
        .replace("{install}", _yaml_scalar(command))
        .replace("{workflow}", _yaml_scalar(_repository_path(Path(workflow))))
    )


def ci_requirement() -> str:
    """What the CI workflow installs: exactly the dltool running now, where a CI runner can reach it.

    In a checkout of dltool itself the repository under test is dltool: ``-e .``. Else a git install is that
    URL at that commit, an index install that version. An editable install of a checkout elsewhere, or one
    from a local file or folder, cannot be known to the runner: a UsageError asks for --install.
    """
    from .installation import DISTRIBUTION, current, names_this_project

    if names_this_project(Path.cwd()):
        return "-e ."
    installed = current()
    if installed.reachable_elsewhere:
        return installed.requirement()
    raise UsageError(
        f"dltool init ci: the workflow must install this dltool, but it is {installed.describe()}, which a CI "
        f"runner cannot reach; say what the runner installs: dltool init ci --install "
        f'"{DISTRIBUTION} @ git+https://github.com/OWNER/REPO@COMMIT" (or a released version: '
        f"--install {DISTRIBUTION}=={installed.version})"
    )


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML value: plain where YAML reads it back unchanged, else double-quoted."""
    import json

    import yaml

    try:
        if yaml.safe_load(f"key: {text}") == {"key": text}:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _repository_path(workflow: Path) -> str:
    """The workflow's path as the repository sees it (GitHub reads workflows from .github/workflows/)."""
    if not workflow.is_absolute():
        return workflow.as_posix()
    try:
        return workflow.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return (CI_DEFAULT_PATH.parent / workflow.name).as_posix()


def write_ci_workflow(path: str | Path | None = None, *, force: bool = False, install: str | None = None) -> Path:
    """Write the CI workflow to ``path`` (default .github/workflows/dltool-smoke.yml, its folders created).

    ``install``: the requirement the workflow installs (default: this dltool, see ci_requirement).
    """
    target = Path(path) if path is not None else CI_DEFAULT_PATH
    if target.exists() and not force and not target.is_dir():
        raise UsageError(f"{target} already exists; choose another path or add --force")
    text = ci_workflow_text(install, target)  # before any folder is made: a refusal leaves nothing behind
    if path is None:
        target.parent.mkdir(parents=True, exist_ok=True)
    check_output_file(target, "workflow", "the workflow (PATH)")
    atomic_write_text(target, text)
    return target


def sweep_template_text(experiment: str | Path, path: str | Path) -> str:
    """A commented sweep file for the experiment config ``experiment``, to be written at ``path``.

    It tunes the learning rate and batch size, and the width of the first hidden layer that has one;
    the objective is the validation accuracy of a classifier with an accuracy metric, else the validation loss.
    """
    import os

    from .config import load_config

    config = load_config(experiment)  # a config that does not validate is refused here, with its own message
    relative = Path(os.path.relpath(Path(experiment).resolve(), Path(path).resolve().parent)).as_posix()
    if relative.startswith("../.."):  # far away: the absolute path says more
        relative = Path(experiment).resolve().as_posix()
    extra = []
    for index, layer in enumerate(config.model.layers[:-1]):  # the last layer's width is the output's
        (kind, arguments), *_ = layer.items() if isinstance(layer, dict) else [(layer, {})]
        argument = WIDTH_ARGUMENTS.get(kind)
        if argument and isinstance((arguments or {}).get(argument), int):
            width = arguments[argument]
            choices = sorted({max(1, width // 2), width, width * 2})
            extra.append(f"  model.layers[{index}].{kind}.{argument}: {{choice: {choices}}}   # the first hidden layer")
            break
    if config.train.fine_tune is not None:
        extra.append("  train.fine_tune.learning_rate: {loguniform: [1.0e-6, 1.0e-4]}   # the fine-tuning phase's rate")
    if config.data.validation == "test":
        extra.append(
            "  data.validation: {choice: [0.1]}   # the base config validates on its test split: hold out 10 %"
        )
    elif not config.data.validation:
        extra.append("  data.validation: {choice: [0.2]}   # the base config holds out no validation split: 20 %")
    objective = (
        "{metric: val_accuracy, goal: max}"
        if config.is_classifier and "accuracy" in config.train.metrics
        else "{metric: val_loss, goal: min}"
    )
    from .installation import pip_install

    return (
        SWEEP_FILE.read_text(encoding="utf-8")
        .replace("{install_sweep}", pip_install("sweep"))
        .replace("{schema}", SWEEP_SCHEMA_PATH.resolve().as_uri())
        .replace("{experiment_name}", Path(experiment).name)
        .replace("{experiment}", relative)
        .replace("{objective}", objective)
        .replace("{path}", Path(path).as_posix())
        .replace("{extra_parameters}\n", "".join(line + "\n" for line in extra))
    )


def write_sweep_template(experiment: str | Path, path: str | Path | None = None, *, force: bool = False) -> Path:
    """Write a sweep file for ``experiment`` to ``path`` (default ./sweep.yaml); refuse to overwrite unless ``force``."""
    target = Path(path) if path is not None else Path("sweep.yaml")
    check_output_file(target, "sweep file", "the sweep file (PATH)")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; choose another path or add --force")
    atomic_write_text(target, sweep_template_text(experiment, target))
    return target
