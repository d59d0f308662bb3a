"""Where a sweep's study lives: Optuna imported on demand, and its storage (a journal file or a database URL)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from ..errors import DltoolError, RunNotFoundError
from ..installation import pip_install
from ..runs import RUNNING, effective_status

JOURNAL = "study.journal"
STORAGE_ENV = "DLTOOL_SWEEP_STORAGE"  # --storage's default; how `dltool sweep --workers N` hands the URL to workers


def url_without_password(url: str) -> str:
    """``url`` with its password removed (what is written to disk); unchanged if it has none or is not a URL."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def import_optuna():
    """Optuna, or an exit-2 error naming the pip command."""
    try:
        import optuna
    except ImportError:
        raise DltoolError(
            f"sweeps need Optuna, which is not installed: {pip_install('sweep')} (or: pip install optuna)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # dltool reports every trial itself
    return optuna


def open_storage(folder: Path | None, url: str | None):
    """The study's storage: a database URL (with heartbeats), else the journal file in the sweep folder."""
    optuna = import_optuna()
    if url:
        url = _with_installed_driver(url)
        # Optuna 4.9 renamed the callback that retries a trial whose heartbeat stopped; take whichever it has.
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                callback = (
                    {"heartbeat_stale_trial_callback": retry(max_retry=1)}
                    if retry
                    else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}
                )
                return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120, **callback)
        except Exception as exc:  # noqa: BLE001  (a driver missing, a server down: one line for the user)
            hint = (
                " (for PostgreSQL: pip install psycopg2-binary)"
                if "DB access module" in str(exc) or "psycopg" in str(exc)
                else ""
            )
            raise DltoolError(f"--storage {url}: cannot open the database: {exc}{hint}") from None
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(folder / JOURNAL)))


def _with_installed_driver(url: str) -> str:
    """postgresql://... with the driver that is installed (SQLAlchemy 2.1 defaults to psycopg 3, many have psycopg2)."""
    import importlib.util

    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2")
    ):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def reclaim_dead_trials(study, storage, stale_after_s: float) -> list:
    """Mark FAILED ('stale') each RUNNING trial whose worker is gone: its pid on this host (the trial's 'worker'
    attribute), or no 'heartbeat' for ``stale_after_s``; return those this process marked (not another worker)."""
    optuna = import_optuna()
    reclaimed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker") or {}
        heartbeat = trial.user_attrs.get("heartbeat") or trial.datetime_start.timestamp()
        dead = effective_status({"status": RUNNING, **worker}) != RUNNING if worker else False
        if not (dead or time.time() - heartbeat > stale_after_s):
            continue
        try:
            storage.set_trial_user_attr(
                trial._trial_id, "stale", f"worker {worker.get('pid')} on {worker.get('host')} died"
            )
            if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker reclaimed it first
        reclaimed.append(trial)
    return reclaimed


def resolve_folder(ref: str, root: Path, marker: str, noun: str, start: str) -> Path:
    """A sweep's or cv's folder under ``root`` (one holding ``marker``) by id, unique id prefix or 'latest';
    ``noun`` and ``start`` (the command that starts one) word the error."""
    folders = sorted(p for p in Path(root).iterdir() if (p / marker).is_file()) if Path(root).is_dir() else []
    if ref == "latest" and folders:
        return folders[-1]
    matches = [p for p in folders if p.name == ref] or [p for p in folders if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFoundError(f"no {noun} matches '{ref}' in {root}; start one with `{start}`")
    raise RunNotFoundError(
        f"'{ref}' matches {len(matches)} {noun}s ({', '.join(p.name for p in matches[:5])}); give more of the id"
    )
