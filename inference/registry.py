"""Where models are found: the Python entry-point group ``estimator_zoo.models``.

A package adds a model by declaring, in its ``pyproject.toml``::

    [project.entry-points."estimator_zoo.models"]
    my_model = "my_package.my_model:SPEC"

where ``SPEC`` is an :class:`inference.base.ModelSpec`. The zoo's own models are registered the same way. For a
model defined in a script or a notebook, :func:`register` adds it for the running process.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import ModelSpec

__all__ = ["GROUP", "get", "models", "register", "unregister"]

GROUP = "estimator_zoo.models"
_LOCAL: dict[str, ModelSpec] = {}
_LOADED: dict[str, ModelSpec] | None = None


def _installed() -> dict[str, ModelSpec]:
    global _LOADED
    if _LOADED is None:
        found = {}
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            spec = ep.load()
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"entry point {ep.name!r} ({ep.value}) of group {GROUP}: expected a ModelSpec, got "
                                f"{type(spec).__name__}")
            if spec.name != ep.name:
                raise ValueError(f"entry point {ep.name!r} of group {GROUP}: its ModelSpec is named {spec.name!r}")
            found[spec.name] = spec
        _LOADED = found
    return _LOADED


def models() -> dict[str, ModelSpec]:
    """Every registered model by name: the installed entry points, then those registered in this process."""
    return {**_installed(), **_LOCAL}


def register(spec: ModelSpec) -> ModelSpec:
    """Register ``spec`` for this process (it replaces an installed model of the same name)."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec: expected a ModelSpec, got {type(spec).__name__}")
    _LOCAL[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a model registered with :func:`register`."""
    _LOCAL.pop(name, None)


def get(name) -> ModelSpec:
    """The model called ``name``; a ModelSpec, or a module holding one as ``SPEC``, is returned as that spec.
    ValueError naming the known models otherwise."""
    if isinstance(name, ModelSpec):
        return name
    if isinstance(getattr(name, "SPEC", None), ModelSpec):
        return name.SPEC
    known = models()
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(known)}")
    return known[name]
