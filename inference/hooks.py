"""What a model module tells the generic algorithms about a ``pm.Model`` it built.

A model module (``models/normal.py`` and friends) attaches a :class:`ModelHooks` to every model its ``build`` returns.
The algorithms stay generic: they call the hooks, never a model by name. Copies of a model (``pm.do``,
``remove_value_transforms``) carry no hooks, and a model built by hand has none: the optimisers, VI and NUTS run on it
all the same; only EM needs the hand-derived math.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ModelHooks", "attach", "hooks_for"]

_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class ModelHooks:
    """Model-specific pieces, all optional but the name.

    name : the zoo model's name (``"normal"``, ``"poisson"``, ...).
    options : the options ``build`` was called with (``k``, priors, ...), for reports.
    em_math : ``em_math(prior: bool) -> EMMath``, the hand-derived EM steps reading data and priors from the model.
    init : ``init(rng) -> dict`` of constrained starting values computed from the data (shared by EM and the
        optimisers, so both can start from the same point).
    mle_check : ``mle_check()`` raises when the likelihood has no (unique) maximum, before MLE or EM without priors
        start (for example: separated classes in a logistic regression).
    align : ``align(result, truth) -> result``, relabels mixture components (to ``truth`` when given).
    public : the variable names a comparison shows (default: every free variable and deterministic).
    estimators : the estimators a comparison runs by default on this model (default: all).
    """

    name: str
    options: dict = field(default_factory=dict)
    em_math: Callable | None = None
    init: Callable | None = None
    mle_check: Callable | None = None
    align: Callable | None = None
    public: list | None = None
    estimators: tuple | None = None


def attach(model, hooks: ModelHooks):
    _HOOKS[model] = hooks
    return model


def hooks_for(model) -> ModelHooks | None:
    return _HOOKS.get(model)
