"""The one exception tree of dltool.

Every error a user can cause or meet derives from :class:`DltoolError`. Its
message is meant to be printed as it is: it says what went wrong, where, what
was expected and what was received. ``exit_code`` is what the CLI exits with:
2 for bad input (config, data, run reference, predict input), 1 for a run
that failed while training.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DltoolError(Exception):
    """Base of every error dltool raises on purpose."""

    exit_code = 2


class ConfigError(DltoolError, ValueError):
    """The experiment config is malformed or asks for something that does not exist.

    ``source`` is the config file (or ``--set``), ``path`` the dotted key path
    and ``line`` the 1-based YAML line, each ``None`` when unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ):
        self.source = source
        self.path = path
        self.line = line
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.source:
            where = f"{self.source}:{self.line}: " if self.line else f"{self.source}: "
        if self.path:
            where += f"{self.path}: "
        return where + self.detail

    def located(self, source: str | None, line_of) -> ConfigError:
        """Return a copy that names ``source`` and the line ``line_of(path)`` gives."""
        line = self.line if self.line is not None else line_of(self.path)
        return ConfigError(self.detail, source=source or self.source, path=self.path, line=line)


class DataError(DltoolError):
    """A data file or data source cannot be read or does not fit the config."""


class InputError(DltoolError):
    """A file given to ``predict`` or ``evaluate --data`` cannot be used."""


class RunNotFoundError(DltoolError):
    """A RUN argument names no run folder (or more than one)."""


class RunStateError(DltoolError):
    """The run exists but is in a state that forbids the request."""


class UsageError(DltoolError):
    """The command line asks for something contradictory."""


class ExportError(DltoolError):
    """A run's model cannot be exported in the asked format (a converter or runtime limit, a missing runtime)."""


class VerificationError(DltoolError):
    """An exported model answers differently from the run's model.keras; nothing was left at the output path."""

    exit_code = 1


class RequestError(DltoolError):
    """A request to ``dltool serve`` that cannot be answered as sent; ``status`` is its HTTP status (4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class TrainingError(DltoolError):
    """Training started but could not finish (NaN loss, write failure, Keras error)."""

    exit_code = 1


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(DltoolError):
    """Training was stopped by Ctrl-C (exit 130) or SIGTERM (exit 143); the run is INTERRUPTED."""

    def __init__(self, message: str, run, exit_code: int = 130):
        super().__init__(message)
        self.run = run
        self.exit_code = exit_code


def _typo_distance(a: str, b: str) -> int:
    """Edit distance counting a swap of neighbours as one edit (optimal string alignment)."""
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice a typo of ``word`` most likely meant, or None when none is close.

    Case is ignored, a swap of two letters counts as one edit, and where no
    choice is within a few edits a looser similarity match is tried.
    """
    by_lower = {c.lower(): c for c in choices}
    low = word.lower()
    if low in by_lower:
        return by_lower[low]
    scored = sorted((_typo_distance(low, c), c) for c in by_lower)
    if scored and scored[0][0] <= max(1, len(low) // 3):
        return by_lower[scored[0][1]]
    close = difflib.get_close_matches(low, list(by_lower), n=1, cutoff=0.75)
    return by_lower[close[0]] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest choice, or "" when none is close."""
    match = closest(word, choices)
    return f"; did you mean '{match}'?" if match is not None and match != word else ""


class TrackingError(DltoolError):
    """An MLflow store could not take a run's record (`dltool runs sync`); the run folder is unchanged."""

    exit_code = 1
