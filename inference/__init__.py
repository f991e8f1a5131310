"""Generic estimators over one ``pm.Model``: MLE, MAP with Laplace errors, EM, ADVI, full-rank ADVI, NUTS."""

from .compare import ESTIMATORS, Comparison, compare, run_estimator
from .em import EMDecreaseError, EMMath, em
from .mcmc import nuts
from .optimize import map_estimate, mle
from .result import ConvergenceWarning, Result
from .vi import advi, fullrank_advi

__all__ = [
           "ESTIMATORS",
           "Comparison",
           "ConvergenceWarning",
           "EMDecreaseError",
           "EMMath",
           "Result",
           "advi",
           "compare",
           "em",
           "fullrank_advi",
           "map_estimate",
           "mle",
           "nuts",
           "run_estimator",
]
