"""Which files `dltool smoke` tests: configs given or found in folders (sweep specs and other YAML skipped),
and the Keras backend each trains on. No Keras here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..errors import ConfigError, DltoolError, UsageError
from ..runs import RUNS_DIR_ENV

CONFIG_SUFFIXES = (".yaml", ".yml")
SWEEP_KEYS = {"experiment", "objective", "parameters", "sweep", "search_space"}  # `dltool sweep` specs


def _skip_reason(path: Path) -> str | None:
    """Why a YAML file found in a folder is not an experiment config (a sweep spec, other YAML), or None."""
    from ..config.yamlio import load_yaml, read_config_text

    try:  # the guarded reader: a folder may hold hostile YAML (alias bombs, Python tags)
        data, _ = load_yaml(read_config_text(path), str(path))
    except ConfigError:
        return None  # meant as a config or not, validation says what is wrong with it
    if not isinstance(data, dict):
        return "not an experiment config (not a mapping)"
    keys = set(map(str, data))
    if keys & {"data", "model", "train"}:
        return None
    if keys & SWEEP_KEYS:
        return "a sweep spec, not an experiment config"
    return "not an experiment config (no data, model or train key)"


def find_configs(paths: list[str | Path]) -> list[tuple[Path, str | None]]:
    """(file, reason to skip it or None) for each config given or found in a given folder (*.yaml, *.yml)."""
    found: list[tuple[Path, str | None]] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES)
            if not files:
                raise UsageError(f"{path}: no *.yaml files in this folder; give config files or a folder of them")
        elif path.is_file():
            files = [path]
        else:
            raise UsageError(f"{path}: no such file or folder")
        for file in files:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append((file, _skip_reason(file)))
    if not found:
        raise UsageError("give at least one config file or folder of configs, e.g. dltool smoke configs/")
    return found


def config_backends(paths: list[str | Path]) -> dict[str, str]:
    """{config file: the backend it trains on (its ``backend``, else $KERAS_BACKEND, else tensorflow)} for the
    configs in ``paths`` that validate."""
    from ..config import load_config

    named = {}
    for path, skip in find_configs(paths):
        if skip is None:
            try:
                named[str(path)] = load_config(path).backend_name
            except DltoolError:
                continue  # smoke itself reports it
    return named


def configs_for_other_backends(configs: list[tuple[Path, str | None]]) -> dict[str, str]:
    """{config file: its backend} for the configs that name another backend than the one Keras runs on here."""
    import keras

    running = keras.backend.backend()
    named = config_backends([path for path, skip in configs if skip is None])
    return {path: backend for path, backend in named.items() if backend != running}


def smoke_elsewhere(
    configs: list[Path], backend: str, settings: dict, runs_root: Path | None, earlier_runs: Path | None = None
) -> list[dict]:
    """Smoke-test ``configs`` in a `dltool smoke --backend B --json` process (Keras runs one backend per process);
    their results as SmokeResult fields. If that process cannot report, each config fails with its reason.
    ``runs_root`` (None: a scratch folder) keeps the runs; ``earlier_runs`` is where a backbone's ``run:`` is."""
    command = [sys.executable, "-m", "dltool", "smoke", *map(str, configs), "--backend", backend, "--json"]
    command += ["--epochs", str(settings["epochs"]), "--samples", str(settings["samples"])]
    command += ["--fake-data"] if settings["fake_data"] else []
    command += ["--expect-from-configs"] if settings["expect_from_configs"] else []
    command += ["--keep-runs", "--runs-dir", str(runs_root)] if runs_root is not None else []
    env = {**os.environ, "NO_COLOR": "1", "GITHUB_ACTIONS": ""}  # this process writes the CI outputs, once
    env.pop("GITHUB_STEP_SUMMARY", None)
    if runs_root is None and earlier_runs is not None:  # the child's runs go to its scratch folder, not there
        env[RUNS_DIR_ENV] = str(earlier_runs)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    try:
        return json.loads(done.stdout)["configs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return [
            {"config": str(path), "status": "failed", "stage": "validate", "message": f"smoke on {backend}: {reason}"}
            for path in configs
        ]
