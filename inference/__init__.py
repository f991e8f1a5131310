"""Generic estimators over one ``pm.Model``: MLE, MAP with Laplace errors, EM, variational EM, ADVI, full-rank
ADVI, NUTS, the Laplace approximation and Pathfinder; simulation studies; diagnostics of approximations and of
prior sensitivity.

Nothing here knows a model by name: models describe themselves through :mod:`inference.base` and are found through
:mod:`inference.registry`.
"""

from .base import EMMath, Example, ModelHooks, ModelSpec, Option, VEMMath, attach, hooks_for
from .compare import ESTIMATORS, Comparison, compare, default_estimators, run_estimator, unavailable
from .em import ConvergenceMonitor, EMDecreaseError, em, run_em
from .laplace import laplace
from .mcmc import nuts
from .optimize import map_estimate, mle
from .pathfinder import pathfinder
from .quality import approximation_quality, khat_threshold, psis, self_diagnosis, verdicts
from .result import ConvergenceWarning, Result, UnreliableWarning
from .sensitivity import default_sweep, posterior_tree, power_scaling, prior_sweep
from .study import Study, study
from .vem import vem
from .vi import advi, fullrank_advi

__all__ = [
    "ESTIMATORS",
    "Comparison",
    "ConvergenceMonitor",
    "ConvergenceWarning",
    "EMDecreaseError",
    "EMMath",
    "Example",
    "ModelHooks",
    "ModelSpec",
    "Option",
    "Result",
    "Study",
    "VEMMath",
    "advi",
    "approximation_quality",
    "attach",
    "compare",
    "default_estimators",
    "default_sweep",
    "em",
    "fullrank_advi",
    "hooks_for",
    "khat_threshold",
    "laplace",
    "map_estimate",
    "mle",
    "nuts",
    "pathfinder",
    "posterior_tree",
    "power_scaling",
    "prior_sweep",
    "psis",
    "run_em",
    "run_estimator",
    "self_diagnosis",
    "study",
    "UnreliableWarning",
    "unavailable",
    "vem",
    "verdicts",
]
