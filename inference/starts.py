"""Starting points shared by the optimisers."""

from __future__ import annotations

import numpy as np

from .base import hooks_for
from .functions import functions_for

__all__ = ["as_generator", "starting_points"]


def as_generator(seed) -> np.random.Generator:
    """An explicit ``np.random.Generator`` from an int seed, a Generator, or None (seed 0: same numbers each run)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(0)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer or numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def starting_points(model, *, start=None, n_init: int = 1, seed=None) -> list[np.ndarray]:
    """Unconstrained start vectors: the given constrained ``start`` dict(s), else ``n_init`` draws of the model's
    own initialiser (zoo models), else the model's initial point (jittered after the first)."""
    if not isinstance(n_init, (int, np.integer)) or isinstance(n_init, bool) or n_init < 1:
        raise ValueError(f"n_init: expected a positive integer, got {n_init!r}")
    fns = functions_for(model)
    if start is not None:
        starts = [start] if isinstance(start, dict) else list(start)
        if not starts or not all(isinstance(s, dict) for s in starts):
            raise ValueError("start: expected a dict of constrained values keyed by variable name, or a list of them")
        out = []
        for s in starts:
            theta = fns.to_unconstrained(s)
            if not np.all(np.isfinite(theta)):
                raise ValueError("start: values outside the support of the model's variables")
            out.append(theta)
        return out
    rng = as_generator(seed)
    hooks = hooks_for(model)
    if hooks is not None and hooks.init is not None:
        return [fns.to_unconstrained(hooks.init(rng)) for _ in range(n_init)]
    base = fns.initial_theta
    return [base if i == 0 else base + rng.uniform(-1, 1, size=base.shape) for i in range(n_init)]
