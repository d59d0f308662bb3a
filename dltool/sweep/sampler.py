"""The sweep's sampler: each draw is seeded by the sweep's seed and the draw's place in the study, and a
parameter set that already ran, runs or waits is never drawn again.

Why not one seeded Optuna sampler per process: a process that starts again (a resumed sweep, a recycled
worker) replays its sampler's draws, so a resumed sweep ran the parameter sets it had already tried. Here
draw *n* of a sweep is the same in whichever process makes it, where *n* counts the trials before it that
ran, run or wait: a trial stopped by Ctrl-C or whose worker died gives its place back, so its values are
drawn again by the next trial and a one-worker sweep gives the same parameter sets, killed and resumed or
not. Grid sweeps draw among the grid points no trial holds, so a point whose trial was stopped runs again.
Workers drawing in the same instant from a finite space take different places in one shuffle of its unused
sets. Should two still pick the same set (a random draw by chance, or three workers interleaved so that they
see different unused sets), :func:`first_duplicate` finds that after the fact and one of them is skipped. A
dead worker's trial retried with its values is checked the same way: a draw that took them meanwhile keeps them.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import secrets

from .report import counted
from .storage import import_optuna

REDRAWS = 20  # draws before a collision-free set is picked among the unused ones of a finite space
ENUMERATE_UP_TO = 100_000  # a finite space up to this many sets is listed to find its unused ones


def encoded_choices(spec) -> dict[str, bool]:
    """Parameters whose choices are not plain scalars go to Optuna as JSON text (Optuna takes scalars only)."""
    scalar = (type(None), bool, int, float, str)
    return {
        k: p.kind == "choice" and not all(isinstance(c, scalar) for c in p.choice) for k, p in spec.parameters.items()
    }


def distributions(spec) -> dict:
    """Each parameter as the Optuna distribution that ``Sweep.sample``'s ``trial.suggest_*`` call makes."""
    dist = import_optuna().distributions
    encoded = encoded_choices(spec)
    space = {}
    for key, p in spec.parameters.items():
        if p.kind == "choice":
            space[key] = dist.CategoricalDistribution([json.dumps(c) if encoded[key] else c for c in p.choice])
        elif p.kind == "int":
            space[key] = dist.IntDistribution(*p.low_high)
        else:
            space[key] = dist.FloatDistribution(*p.low_high, log=p.kind == "loguniform")
    return space


def _finite_values(space: dict) -> list[list] | None:
    """Every value of every parameter, or None when a parameter is continuous."""
    dist = import_optuna().distributions
    values = []
    for d in space.values():
        if isinstance(d, dist.CategoricalDistribution):
            values.append(list(d.choices))
        elif isinstance(d, dist.IntDistribution):
            values.append(list(range(d.low, d.high + 1, d.step)))
        else:
            return None
    return values


def _key(params: dict, names) -> tuple | None:
    """A parameter set as a hashable value, or None when ``params`` lacks one of ``names``."""
    if not all(n in params for n in names):
        return None
    return tuple(json.dumps(params[n], sort_keys=True) for n in names)


def _holds(trial) -> bool:
    """Whether a trial holds its parameter set: it counts toward `trials`, runs or waits (and is no duplicate)."""
    state = trial.state.name
    return (counted(trial) or state in ("RUNNING", "WAITING")) and "duplicate" not in trial.user_attrs


def _params(trial) -> dict:
    """A trial's parameters; a waiting (enqueued) trial's are its fixed ones until it starts."""
    return trial.params or trial.system_attrs.get("fixed_params") or {}


def first_duplicate(study, number: int, params: dict):
    """The trial that keeps the parameter set trial ``number`` drew, should another hold it: an earlier trial,
    or a later one that has already claimed it (see :func:`claim`); else None.

    Of two trials that check at the same instant the later one yields, so a set is never skipped by both."""
    key = _key(params, sorted(params))
    for t in study.get_trials(deepcopy=False):
        if (
            t.number != number
            and _holds(t)
            and (t.number < number or "claimed" in t.user_attrs)
            and _key(_params(t), sorted(params)) == key
        ):
            return t
    return None


def claim(trial) -> None:
    """Mark that ``trial`` checked its parameter set and runs it: an earlier trial that draws the same set now
    yields to it (:func:`first_duplicate`)."""
    trial.set_user_attr("claimed", True)


def sets_left(study, spec, *, running: bool = True) -> int | None:
    """How many parameter sets of a finite space no trial holds (None: a continuous space, or trials waiting).

    ``running=False`` leaves running trials out: the sets left once they end, should they be stopped.
    """
    values = _finite_values(distributions(spec))
    trials = study.get_trials(deepcopy=False)
    if values is None or any(t.state.name == "WAITING" for t in trials):
        return None
    names = list(spec.parameters)
    allowed = [set(json.dumps(v, sort_keys=True) for v in vs) for vs in values]
    held = {
        _key(_params(t), names)
        for t in trials
        if _holds(t) and (running or t.state.name != "RUNNING") and _key(_params(t), names) is not None
    }
    inside = sum(all(v in allowed[i] for i, v in enumerate(key)) for key in held)
    return math.prod(len(vs) for vs in values) - inside


def _seed(*parts) -> int:
    """A 32-bit seed from the sweep's seed and a draw's place (stable across processes, unlike hash())."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


def sweep_sampler(spec):
    """An Optuna sampler (grid, random or TPE) whose draw *n* depends on the sweep's seed and *n* alone."""
    return _sampler_class()(spec)


@functools.cache
def _sampler_class() -> type:
    # Made on first use so that importing this module does not import Optuna.
    return type("SweepSampler", (_Draws, import_optuna().samplers.BaseSampler), {})


class _Draws:
    """The methods of SweepSampler (an optuna.samplers.BaseSampler)."""

    def __init__(self, spec):
        self.spec, self.method = spec, spec.method
        self.seed = spec.seed if spec.seed is not None else secrets.randbits(32)
        self.space = distributions(spec)
        self.names = list(self.space)
        self.drawn: set[int] = set()  # trial numbers this sampler drew values for (enqueued trials are given theirs)

    def infer_relative_search_space(self, study, trial) -> dict:
        return dict(self.space)

    def sample_relative(self, study, trial, search_space) -> dict:
        if not search_space:
            return {}
        optuna = import_optuna()
        trials = study.get_trials(deepcopy=False)
        before = [t for t in trials if t.number < trial.number and _holds(t)]
        draw = len(before)
        # Trials before this one that hold a place but show no values yet: workers that drew in the same instant.
        pending = sum(_key(_params(t), self.names) is None for t in before)
        held = {_key(_params(t), self.names) for t in trials if t.number != trial.number and _holds(t)}
        self.drawn.add(trial.number)
        params: dict = {}
        for attempt in range(REDRAWS if self.method != "grid" else 0):
            seed = _seed(self.seed, draw, attempt)
            if self.method == "tpe" and attempt == 0:
                sampler = optuna.samplers.TPESampler(seed=seed)
            else:  # a TPE draw that repeats a held set (it exploits) is drawn again at random
                sampler = optuna.samplers.RandomSampler(seed=seed)
            params = {n: sampler.sample_independent(study, trial, n, d) for n, d in self.space.items()}
            if _key(params, self.names) not in held:
                return params
        unused = self._unused(held)
        if unused:
            import numpy as np

            # Workers that drew at once see the same unused sets and the same draw - pending: each takes its own
            # place in one shuffle of them, so they do not pick the same set (one worker alone: pending is 0).
            order = np.random.RandomState(_seed(self.seed, draw - pending)).permutation(len(unused))
            return dict(zip(self.names, unused[order[pending % len(unused)]]))
        # The space is used up: a duplicate, which Sweep.sample skips, and the sweep stops.
        return params or dict(zip(self.names, next(itertools.product(*_finite_values(self.space)))))

    def _unused(self, held: set) -> list[tuple]:
        """The sets of a finite space (up to ENUMERATE_UP_TO of them) that no trial holds, in grid order."""
        values = _finite_values(self.space)
        if values is None or math.prod(len(vs) for vs in values) > ENUMERATE_UP_TO:
            return []
        return [s for s in itertools.product(*values) if _key(dict(zip(self.names, s)), self.names) not in held]

    def sample_independent(self, study, trial, param_name, param_distribution):
        # Only a parameter the sweep file does not name gets here (all of its own are drawn together above).
        optuna = import_optuna()
        sampler = optuna.samplers.RandomSampler(seed=_seed(self.seed, "independent", trial.number, param_name))
        return sampler.sample_independent(study, trial, param_name, param_distribution)
