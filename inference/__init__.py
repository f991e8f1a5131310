"""Generic estimators over one ``pm.Model``: MLE, MAP with Laplace errors, EM, variational EM, ADVI, full-rank
ADVI, NUTS.

Nothing here knows a model by name: models describe themselves through :mod:`inference.base` and are found through
:mod:`inference.registry`.
"""

from .base import EMMath, Example, ModelHooks, ModelSpec, Option, VEMMath, attach, hooks_for
from .compare import ESTIMATORS, Comparison, compare, default_estimators, run_estimator, unavailable
from .em import ConvergenceMonitor, EMDecreaseError, em, run_em
from .mcmc import nuts
from .optimize import map_estimate, mle
from .result import ConvergenceWarning, Result
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
    "attach",
    "compare",
    "default_estimators",
    "em",
    "fullrank_advi",
    "hooks_for",
    "map_estimate",
    "mle",
    "nuts",
    "run_em",
    "run_estimator",
    "study",
    "unavailable",
    "vem",
]
