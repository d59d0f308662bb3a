"""Which MLflow store a run is logged to, and whether it can be: no MLflow import here (validation stays fast)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..config import ExperimentConfig
from ..errors import ConfigError
from ..installation import pip_install

TRACKING_EXTRA = "tracking"
URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_URI = "sqlite:///mlflow.db"  # MLflow 3's own default: a file in the current folder
# An unreachable server must cost seconds, not MLflow's defaults of 7 retries with exponential backoff and a
# 120 s timeout per request (minutes per call). Set only where the user has not set them.
FAIL_FAST = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # its bars would break into the training display
}


@dataclass(frozen=True)
class Nesting:
    """Where a run sits inside a sweep or cv in MLflow: the parent MLflow run's id (``run_id``), and the tags and
    parameters the child run gets besides its own (the sweep or cv id, the trial or fold number)."""

    run_id: str
    tags: dict[str, str]
    params: dict[str, str]


@dataclass(frozen=True)
class TrackingSettings:
    """Where a run is logged: the tracking ``uri`` (absolute for a sqlite file) and the ``experiment`` name;
    ``run_id`` is the MLflow run a resumed run continues (None: a new MLflow run); ``register`` the registered model
    the run's model becomes a new version of (None: not registered); ``parent`` the sweep or cv run it is nested in."""

    uri: str
    experiment: str
    run_id: str | None = None
    register: str | None = None

    parent: Nesting | None = None

    @property
    def shown_uri(self) -> str:
        """The URI without a password, as run.json and the messages show it."""
        return password_free(self.uri)


def mlflow_installed() -> bool:
    """Whether the mlflow package can be imported (without importing it: that takes seconds)."""
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (tests) or without a spec
        return False


def require_mlflow(purpose: str, path: str | None = "tracking.mlflow") -> None:
    """Raise ConfigError with the install command when mlflow is not installed."""
    if not mlflow_installed():
        raise ConfigError(
            f"{purpose} needs MLflow, which is not installed: {pip_install(TRACKING_EXTRA)} (or: pip install mlflow)",
            path=path,
        )


def default_uri() -> str:
    """The store a run goes to when nothing names one: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here."""
    return os.environ.get(URI_ENV) or DEFAULT_URI


def check_tracking(config: ExperimentConfig, override_uri: str | None = None) -> None:
    """Refuse a config that asks for MLflow (or ``override_uri``, `--mlflow`) where mlflow is not installed; the
    config's error names its file and line."""
    if override_uri is not None:
        require_mlflow(f"--mlflow {override_uri} (logging the run to MLflow)", path=None)
    elif config.tracking is not None and config.tracking.mlflow is not None:
        try:
            require_mlflow("logging the run to MLflow")
        except ConfigError as exc:
            raise config.locate(exc) from None


def tracking_settings(
    config: ExperimentConfig,
    *,
    override_uri: str | None = None,
    recorded: dict | None = None,
    parent: Nesting | None = None,
) -> TrackingSettings | None:
    """The store and experiment the run is logged to, or None when neither the config nor ``override_uri`` asks.

    A resumed run that was tracked (``recorded``: run.json's ``tracking.mlflow``) is tracked again, in the same
    MLflow run; ``register`` is the config's ``tracking.mlflow.register``. The URI is ``override_uri`` (`--mlflow`), else the config's ``tracking.mlflow.uri``, else the one a resumed
    run recorded (``recorded``, run.json's ``tracking.mlflow``), else $MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db in the current folder. The experiment defaults to the config's name. ``parent`` nests
    the run in a sweep's or cv's MLflow run.
    """
    wanted = config.tracking.mlflow if config.tracking is not None else None
    recorded = recorded or {}
    if wanted is None and override_uri is None and not recorded:
        return None
    recorded_uri = recorded.get("uri") if ":***@" not in (recorded.get("uri") or "") else None  # its password is gone
    uri = override_uri or (wanted.uri if wanted is not None else None) or recorded_uri or default_uri()
    experiment = (wanted.experiment if wanted is not None else None) or recorded.get("experiment") or config.name
    register = (wanted.register if wanted is not None else None) or (recorded.get("registered") or {}).get("name")
    if parent is None and recorded.get("parent_run_id"):  # a trial resumed or synced: still its sweep's child
        parent = Nesting(
            recorded["parent_run_id"],
            dict(recorded.get("parent_tags") or {}),
            dict(recorded.get("parent_params") or {}),
        )
    return TrackingSettings(absolute_sqlite(uri), experiment, recorded.get("run_id"), register, parent)


def absolute_sqlite(uri: str) -> str:
    """A sqlite URI with a relative file made absolute (the store stays the same when the run is resumed or synced
    from another folder); any other URI as it is."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/") or uri == prefix + ":memory:":
        return uri
    return prefix + str(Path(uri[len(prefix) :]).expanduser().resolve())


def password_free(uri: str) -> str:
    """``uri`` with any password in it replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def fail_fast() -> None:
    """Make MLflow's HTTP requests give up in seconds (where the user has not tuned them)."""
    for name, value in FAIL_FAST.items():
        os.environ.setdefault(name, value)
