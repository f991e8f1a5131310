"""Starting points shared by the estimators.

The model's default start (``functions_for(model).initial_theta``, found here by :func:`initial_start`) is PyMC's
initial point whenever that point is finite in the unconstrained space and the log density there is finite. It is
not always: an ``ordered`` vector declared without an ``initval`` starts with all entries at the distribution's
moment, equal, and the ordered transform maps equal entries to ``-inf``. Then a finite start is looked for, in this
order, and a ``UserWarning`` (one per model) names the variables and what was used instead:

1. PyMC's point with the offending variables replaced by a draw from the prior (their entries sorted where their
   transform is an ordered one),
2. a whole draw from the prior (sorted likewise),
3. PyMC's point jittered by uniform(-1, 1) in the unconstrained space (entries that are not finite set to 0 first).

Each tries ``ATTEMPTS`` points, drawn with fixed seeds, so a model gets the same start in every run. When none is
finite, a warning names the terms of the log density that are not finite, and :func:`starting_points` (MLE, MAP,
Laplace, ADVI's Laplace start) and NUTS refuse to start there with the same line.

A start the user gives (constrained values by name) is checked instead: a value that is not finite, or outside the
support of its variable, is refused with a ValueError naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import hooks_for
from .functions import functions_for
from .result import warn

__all__ = ["ATTEMPTS", "InitialStart", "as_generator", "checked_start", "initial_start", "starting_points"]

# points tried by each way of finding a finite start (prior draws with the offending variables replaced, whole
# prior draws, jittered points)
ATTEMPTS = 10


def as_generator(seed) -> np.random.Generator:
    """An explicit ``np.random.Generator`` from an int seed, a Generator, or None (seed 0: same numbers each run)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(0)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer or numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


@dataclass(frozen=True)
class InitialStart:
    """A model's default start.

    Attributes
    ----------
    theta : numpy.ndarray
        The unconstrained start vector (PyMC's initial point when ``problem`` is set: nothing finite was found).
    replaced : dict
        Constrained values, by free variable name, of the variables moved away from PyMC's initial point (empty
        when that point was used as it is): the ``initvals`` NUTS is started with.
    problem : str or None
        Why no finite start was found, in one line; None when ``theta`` is finite with a finite log density.
    """

    theta: np.ndarray
    replaced: dict = field(default_factory=dict)
    problem: str | None = None


def initial_start(fns) -> InitialStart:
    """The default start of the model behind ``fns`` (a :class:`~inference.functions.ModelFunctions`).

    Parameters
    ----------
    fns : inference.functions.ModelFunctions
        The model's functions; ``fns.default_theta`` is PyMC's initial point, packed.

    Returns
    -------
    InitialStart
        PyMC's initial point where it and the log density there are finite (nothing else is evaluated beyond
        checking that); otherwise the first finite point of the search described in the module docstring, with a
        ``UserWarning`` naming the variables whose default value was not finite and the values used instead. When
        the search finds nothing, ``problem`` says so (and a warning with the same text is issued).
    """
    theta0 = np.asarray(fns.default_theta, dtype=float)
    with np.errstate(all="ignore"):
        bad, other = _not_finite(fns, theta0)
        if not bad and not other:
            return InitialStart(theta0)
        if bad and not np.all(np.isfinite(theta0)):
            values = ", ".join(f"{s.name} = {_fmt(theta0[s.start:s.stop].reshape(s.shape))}" for s in fns.slots
                               if not np.all(np.isfinite(theta0[s.start:s.stop])))
            what = (f"PyMC's default initial value of {', '.join(bad)} is not finite in the unconstrained space "
                    f"({values})")
        else:
            what = ("the log density is not finite at PyMC's default initial point "
                    f"(the terms of {', '.join(bad + other)})")
        for theta, how in _candidates(fns, theta0, bad):
            if _not_finite(fns, theta) == ([], []):
                moved = [rv for rv, s in zip(_free_rvs(fns), fns.slots)
                         if not np.array_equal(theta[s.start:s.stop], theta0[s.start:s.stop])]
                values = fns.constrained(theta)
                replaced = {name: np.asarray(values[name], dtype=float) for name in moved}
                shown = ", ".join(f"{name} = {_fmt(value)}" for name, value in replaced.items())
                warn(f"{what}; starting instead from {how}: {shown}", UserWarning)
                return InitialStart(np.asarray(theta, dtype=float), replaced)
    problem = (f"model: no finite starting point found: {what}, and at the draws from the prior and the jittered "
               f"points tried ({ATTEMPTS} of each); pass start= with values in the support of every variable")
    warn(problem, UserWarning)
    return InitialStart(theta0, {}, problem)


def starting_points(model, *, start=None, n_init: int = 1, seed=None) -> list[np.ndarray]:
    """Unconstrained start vectors.

    Parameters
    ----------
    model : pymc.Model
        The model.
    start : dict or list of dict, optional
        Constrained values keyed by free variable name (or a list of such dicts); each is checked: a value that is
        not finite or is outside its variable's support is refused with a ValueError naming the variable.
    n_init : int
        Without ``start``: the number of starts, ``n_init`` draws of the model's own initialiser (zoo models), else
        the model's default start (:func:`initial_start`) jittered by uniform(-1, 1) after the first.
    seed : int, numpy.random.Generator or None
        The jitter's (or the initialiser's) random numbers.

    Returns
    -------
    list of numpy.ndarray
        The unconstrained start vectors.
    """
    if not isinstance(n_init, (int, np.integer)) or isinstance(n_init, bool) or n_init < 1:
        raise ValueError(f"n_init: expected a positive integer, got {n_init!r}")
    fns = functions_for(model)
    if start is not None:
        starts = [start] if isinstance(start, dict) else list(start)
        if not starts or not all(isinstance(s, dict) for s in starts):
            raise ValueError("start: expected a dict of constrained values keyed by variable name, or a list of them")
        return [checked_start(fns, s) for s in starts]
    rng = as_generator(seed)
    hooks = hooks_for(model)
    if hooks is not None and hooks.init is not None:
        return [fns.to_unconstrained(hooks.init(rng)) for _ in range(n_init)]
    initial = fns.initial_start
    if initial.problem is not None:
        raise ValueError(initial.problem)
    base = initial.theta
    return [base if i == 0 else base + rng.uniform(-1, 1, size=base.shape) for i in range(n_init)]


def checked_start(fns, start: dict) -> np.ndarray:
    """The unconstrained vector of a user's ``start`` (constrained values by name), refusing one that cannot be
    started from.

    Parameters
    ----------
    fns : inference.functions.ModelFunctions
        The model's functions.
    start : dict
        Constrained values keyed by free variable name (other keys are ignored).

    Returns
    -------
    numpy.ndarray
        The unconstrained start vector.

    Raises
    ------
    ValueError
        Naming the first variable whose value is not finite, is mapped to a value that is not finite by its
        transform (outside its support: a negative scale, unsorted entries of an ordered vector), or has a log
        density that is not finite there (outside the support of a variable without a transform).
    """
    outside = "start: values outside the support of the model's variables"
    for name in fns.free_names():
        if name in start:
            value = np.asarray(start[name], dtype=float)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"start: {name} = {_fmt(value)} is not finite")
    with np.errstate(all="ignore"):
        theta = fns.to_unconstrained(start)
        for rv, s in zip(_free_rvs(fns), fns.slots):
            if not np.all(np.isfinite(theta[s.start:s.stop])):
                raise ValueError(f"{outside}: {rv} = {_fmt(start[rv])} is outside the support of its distribution "
                                 f"(its transformed value {s.name} = {_fmt(theta[s.start:s.stop].reshape(s.shape))} "
                                 "is not finite)")
        terms = fns.log_density_terms()(theta)
    for name in fns.free_names():
        if not np.isfinite(terms[name]):
            raise ValueError(f"{outside}: {name} = {_fmt(start[name])} is outside the support of its distribution "
                             f"(its log density there is not finite)")
    return theta


# ------------------------------------------------------------------------------------------------------ helpers
def _free_rvs(fns) -> list[str]:
    """The free variable's name of each slot of theta (slots are named by value variable)."""
    return [fns.model.values_to_rvs[vv].name for vv in fns.value_vars]


def _not_finite(fns, theta) -> tuple[list[str], list[str]]:
    """(free variables whose unconstrained value or log density term is not finite at ``theta``, the other terms
    not finite there: potentials, observed variables); two empty lists for a start that can be used."""
    bad = [rv for rv, s in zip(_free_rvs(fns), fns.slots) if not np.all(np.isfinite(theta[s.start:s.stop]))]
    if bad:
        return bad, []
    free = set(fns.free_names())
    terms = fns.log_density_terms()(theta)
    return ([name for name, value in terms.items() if name in free and not np.isfinite(value)],
            [name for name, value in terms.items() if name not in free and not np.isfinite(value)])


def _candidates(fns, theta0, bad):
    """Yield (theta, how it was made) in the order of the module docstring."""
    draws = _prior_draws(fns)
    ordered = _ordered_names(fns)
    sort_note = "" if not ordered else f" (sorted for the ordered transform of {', '.join(ordered)})"
    rvs = _free_rvs(fns)
    if draws is not None and bad and set(bad) != set(rvs):
        slots = [s for rv, s in zip(rvs, fns.slots) if rv in bad]
        noted = [n for n in ordered if n in bad]
        note = "" if not noted else f" (sorted for the ordered transform of {', '.join(noted)})"
        for row in draws:
            theta = theta0.copy()
            for s in slots:
                theta[s.start:s.stop] = row[s.start:s.stop]
            yield theta, f"a draw from the prior of {', '.join(bad)}{note}"
    if draws is not None:
        for row in draws:
            yield row, f"a draw from the prior{sort_note}"
    base = np.where(np.isfinite(theta0), theta0, 0.0)
    rng = np.random.default_rng(0)
    for _ in range(ATTEMPTS):
        yield (base + rng.uniform(-1.0, 1.0, size=base.shape),
               "PyMC's default initial point jittered by uniform(-1, 1) in the unconstrained space")


def _prior_draws(fns):
    """``ATTEMPTS`` draws of the free variables from the prior (seed 0), entries of ordered variables sorted, as
    rows of theta; None where the model cannot be drawn from (a variable with no random generator)."""
    import pymc as pm

    from .modes import PY_MODE

    model = fns.model
    try:
        values = pm.draw(list(model.free_RVs), draws=ATTEMPTS, random_seed=0, mode=PY_MODE)
    except Exception:  # whatever PyMC raises for a variable it cannot draw: jitter instead
        return None
    draws = {rv.name: np.asarray(v, dtype=float) for rv, v in zip(model.free_RVs, values)}
    for name, ascending in _ordered_names(fns).items():
        x = np.sort(draws[name], axis=-1)
        draws[name] = x if ascending else x[..., ::-1]
    return fns.to_unconstrained_many(draws)


def _ordered_names(fns) -> dict[str, bool]:
    """{free variable name: ascending} of the variables whose transform is ordered (or a chain holding one)."""
    from pymc.distributions.transforms import ChainedTransform, Ordered

    out = {}
    for rv in fns.model.free_RVs:
        tr = fns.model.rvs_to_transforms.get(rv)
        parts = tr.transform_list if isinstance(tr, ChainedTransform) else [tr]
        for part in parts:
            if isinstance(part, Ordered):
                out[rv.name] = bool(part.ascending)
    return out


def _fmt(value) -> str:
    """A short one-line form of a value: 4 significant digits, at most 6 entries shown."""
    a = np.asarray(value, dtype=float)
    if a.ndim == 0:
        return f"{float(a):.4g}"
    flat = a.ravel()
    items = [f"{x:.4g}" for x in (flat if flat.size <= 6 else np.r_[flat[:3], flat[-2:]])]
    if flat.size > 6:
        items.insert(3, "...")
    return "[" + ", ".join(items) + "]" + ("" if a.ndim == 1 else f" (shape {a.shape})")
