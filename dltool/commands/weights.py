"""`dltool weights`: fill Keras's cache with the pretrained weights configs need, on a machine with internet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


@dataclass
class FetchedWeights:
    """One weights file in Keras's cache: which application it serves, where it is, its SHA-256 and size."""

    application: str
    path: Path
    sha256: str
    size: int


def fetch_weights(targets: list[str]) -> list[FetchedWeights]:
    """Download (or find in Keras's cache) the imagenet weights of each target: an application name
    (MobileNetV3Small: at its default 224x224 input) or a config file (what its Backbone needs, at its input shape
    and with its arguments). Raises ConfigError for an unknown name, a config without an imagenet backbone, or a
    download that fails."""
    from ..config import backbone_of, load_config
    from ..training.backbones import fetch_application_weights, file_sha256

    fetched = []
    for target in targets:
        if target.endswith((".yaml", ".yml")) or Path(target).is_file():
            config = load_config(target)
            spec = backbone_of(config)
            if spec is None or spec.application is None or spec.weights != "imagenet":
                found = (
                    "model.layers has no Backbone"
                    if spec is None
                    else f"its Backbone is a {spec.kind}"
                    if spec.application is None
                    else f"its Backbone has weights: {spec.weights}"
                )
                raise ConfigError(f"{target} has no application Backbone with weights: imagenet to fetch ({found})")
            name, shape, args = spec.application, tuple(config.model.input_shape), spec.application_args
        else:
            name, shape, args = target, (224, 224, 3), {}
        path = fetch_application_weights(name, shape, **args)
        fetched.append(FetchedWeights(name, path, file_sha256(path), path.stat().st_size))
    return fetched


def cached_weights() -> tuple[Path, list[tuple[str, int]]]:
    """Keras's cache folder for model weights and the files in it (name, bytes), by name."""
    from ..training.backbones import keras_cache_dir

    folder = keras_cache_dir("models")
    files = sorted((p.name, p.stat().st_size) for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
    return folder, files
