"""The zoo's models, each declared once in PyMC: import a module and call its ``build``.

>>> from models import normal
>>> model = normal.build(normal.example().data)

Each module's ``SPEC`` (an :class:`inference.ModelSpec`) is registered under the entry-point group
``estimator_zoo.models`` in ``pyproject.toml``, the same way a user's package adds a model: ``zoo list`` and
:func:`inference.registry.models` find them there.
"""
