"""Starter configs for `dltool init`, shipped as commented YAML files in dltool/templates/."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError, did_you_mean
from .fileio import atomic_write_text

TEMPLATE_DIR = Path(__file__).with_name("templates")
SCHEMA_PATH = Path(__file__).with_name("schema.json")  # regenerate with: dltool schema > dltool/schema.json


def template_names() -> list[str]:
    """The available templates, e.g. ['csv-classifier', 'csv-regression', 'mnist-mlp']."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yaml"))


def template_text(name: str) -> str:
    """The text of one template; an unknown name gets a did-you-mean."""
    if name not in template_names():
        raise UsageError(f"unknown template '{name}'; expected one of {', '.join(template_names())}"
                         + did_you_mean(name, template_names()))  # fmt: skip
    return (TEMPLATE_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def write_template(name: str, path: str | Path | None = None, *, force: bool = False) -> Path:
    """Write template ``name`` to ``path`` (default ./<name>.yaml); refuse to overwrite unless ``force``."""
    text = template_text(name).replace("{schema}", SCHEMA_PATH.resolve().as_uri())
    target = Path(path) if path is not None else Path(f"{name.replace('-', '_')}.yaml")
    if target.is_dir():
        target = target / f"{name.replace('-', '_')}.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; choose another path or add --force")
    atomic_write_text(target, text)
    return target
