"""The zoo's models, each declared once in PyMC: import a module and call its ``build``.

>>> from models import normal
>>> model = normal.build(normal.example().data)
"""

from __future__ import annotations

from . import gaussian_mixture, logistic, missing_data, normal, poisson

MODELS = {m.NAME: m for m in (normal, poisson, logistic, gaussian_mixture, missing_data)}
EM_MODELS = tuple(MODELS)

__all__ = ["EM_MODELS", "MODELS", "gaussian_mixture", "get", "logistic", "normal", "poisson"]


def get(name: str):
    """The model module called ``name``; a ValueError naming the known models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(MODELS)}") from None
