"""Starter configs for `dltool init`, shipped as commented YAML files in dltool/templates/."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError, did_you_mean
from .fileio import atomic_write_text, check_output_file

TEMPLATE_DIR = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = "mnist-mlp"
SCHEMA_PATH = Path(__file__).with_name("schema.json")  # regenerate with: dltool schema > dltool/schema.json
CI_TEMPLATE = "ci"  # `dltool init ci`: a GitHub Actions workflow, not a config
CI_WORKFLOW = TEMPLATE_DIR / "github-ci.yml"
CI_DEFAULT_PATH = Path(".github/workflows/dltool-smoke.yml")


def template_names() -> list[str]:
    """The available templates, e.g. ['csv-classifier', 'csv-regression', 'mnist-mlp']."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def template_text(name: str) -> str:
    """The text of one template; an unknown name gets a did-you-mean."""
    if name not in template_names():
        known = template_names() + [CI_TEMPLATE]
        raise UsageError(f"unknown template '{name}'; expected one of {', '.join(known)}" + did_you_mean(name, known))
    return (TEMPLATE_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(name: str, path: str | Path | None = None, *, force: bool = False) -> Path:
    """Write template ``name`` to ``path`` (default ./<name>.yaml); refuse to overwrite unless ``force``.

    A ``name`` that looks like a file path (``my.yaml``, ``sub/x.yml``) with no ``path`` writes the default
    template there: `dltool init my.yaml` means what it says.
    """
    if name == CI_TEMPLATE:
        return write_ci_workflow(path, force=force)
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


def ci_workflow_text(install: str | None = None) -> str:
    """The GitHub Actions workflow `dltool init ci` writes; ``install`` is its pip command (default: see below)."""
    return CI_WORKFLOW.read_text(encoding="utf-8").replace("{install}", install or _install_command())


def _install_command() -> str:
    # In a checkout of dltool itself the package is the checkout; anywhere else it is installed by name.
    pyproject = Path("pyproject.toml")
    if pyproject.is_file() and 'name = "dltool"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return "pip install -e ."
    return "pip install dltool"


def write_ci_workflow(path: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the CI workflow to ``path`` (default .github/workflows/dltool-smoke.yml, its folders created)."""
    target = Path(path) if path is not None else CI_DEFAULT_PATH
    if path is None:
        target.parent.mkdir(parents=True, exist_ok=True)
    check_output_file(target, "workflow", "the workflow (PATH)")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; choose another path or add --force")
    atomic_write_text(target, ci_workflow_text())
    return target
