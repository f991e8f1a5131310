"""Reference posteriors with answers known to many digits, for judging approximate inference.

Each :class:`Entry` of :data:`CATALOGUE` is a posterior chosen to stress an approximation (scales from 1e-4 to 1e5,
correlations near -1, funnels, skewness, an ordered transform), declared as a plain ``pm.Model``, transcribed as a
NumPy/SciPy log density, and solved without sampling (closed form or deterministic quadrature) with an estimate of
the numerical error. ``tests/test_reference_posteriors.py`` checks the declarations against the transcriptions and
the references against independent routes; ``benchmarks/trust_suite.py`` scores the estimators against them.
"""

from .catalogue import CATALOGUE, entries, get
from .core import Entry, Free, Reference

__all__ = ["CATALOGUE", "Entry", "Free", "Reference", "entries", "get"]
