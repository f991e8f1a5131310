"""One declarative argument check for every public function: ``check(value, "name", "positive integer")``.

Each kind says what is expected; a value that is not of that kind is a ValueError naming the argument, in one line,
before any work.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["KINDS", "check", "check_model"]


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_)) \
        and bool(np.isfinite(v))


KINDS = {
    "positive integer": lambda v: _is_int(v) and v >= 1,
    "non-negative integer": lambda v: _is_int(v) and v >= 0,
    "integer >= 2": lambda v: _is_int(v) and v >= 2,
    "positive number": lambda v: _is_real(v) and v > 0,
    "non-negative number": lambda v: _is_real(v) and v >= 0,
    "finite number": _is_real,
    "probability in (0, 1)": lambda v: _is_real(v) and 0 < v < 1,
    "boolean": lambda v: isinstance(v, (bool, np.bool_)),
}


def check(value, name: str, kind: str):
    """``value`` when it is of ``kind`` (a key of ``KINDS``); ValueError naming ``name`` otherwise."""
    try:
        ok = KINDS[kind](value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name}: expected a {kind}, got {value!r}")
    return value


def check_model(model, name: str = "model"):
    """``model`` when it is a ``pm.Model``; TypeError naming ``name`` otherwise (a model's name, a module, None)."""
    import pymc as pm

    if not isinstance(model, pm.Model):
        hint = " (build one first, for example models.normal.build(data))" if isinstance(model, str) else ""
        raise TypeError(f"{name}: expected a pm.Model, got {type(model).__name__}{hint}")
    return model
