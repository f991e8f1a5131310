"""Compiled functions of one ``pm.Model``, built once and shared by every estimator.

The optimisers work on one flat vector ``theta`` of the model's *unconstrained* value variables. This module maps
that vector to and from the named, constrained parameters, and compiles, on first use only:

* ``loglik``: the observed-data log-likelihood ``model.logp(vars=model.observed_RVs, jacobian=False)``,
* ``logpost``: the full log density without the Jacobian of the value transforms (its maximiser is the
  constrained-space mode),

each with its gradient and Hessian with respect to ``theta``, plus the constrained parameters (free variables and
deterministics) and their Jacobian with respect to ``theta`` for the delta method.

The functions of a model are cached on a weak reference to it, so MLE, MAP, the Laplace standard errors and the
log-likelihood column of a comparison all reuse one compilation. The data are read from the model's data containers
(shared variables) at every call, so a model whose data were swapped in (``pm.set_data``) keeps its functions.

Two backends (``functions_for(model, backend=...)``): ``"python"`` runs PyTensor's rewritten graph with NumPy and
compiles nothing (a first call within a fraction of a second, then a few hundred microseconds per call for a small
model); ``"compiled"`` is PyTensor's Numba backend (:data:`inference.modes.COMPILED_MODE`, whose matrix
products compile in a second instead of 10 to 15): seconds to compile each graph on an empty cache and
under a second from PyTensor's cache, then a few microseconds per call. One fit on one data set gains nothing from
compiling, a simulation study running the same functions on thousands of data sets gains 10 to 50 times per call.
Both run the same rewritten graph; their results agree to round-off.

The compiled log density of the unconstrained values (``"logp"``, the density NUTS and VI see) is PyMC's own
``model.logp_dlogp_function``, compiled once per model (:meth:`ModelFunctions.shared_density`) and shared by every
estimator that needs it compiled: ADVI's thousands of steps, Pathfinder's and the importance ratios' scoring of
draws where an uncompiled call is slow, and NUTS, whose ``pm.sample`` calls get copies of it
(:func:`share_compiled_density`, which compiles it in the same mode). On the missing-data model that is one Numba
compilation of its gradient instead of three.
"""

from __future__ import annotations

import copy
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import grad, jacobian
from pytensor.graph.replace import graph_replace

from .modes import COMPILED_MODE, PY_MODE, untraced

__all__ = ["BACKENDS", "ModelFunctions", "functions_for", "initial_point_of", "share_compiled_density"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INITIAL_POINT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def initial_point_of(model, seed=None) -> dict:
    """``model.initial_point(seed)``, from one compiled function per model.

    PyMC compiles the initial-point graph anew on every call: 24 ms on the mixture, 65 to 190 ms on the
    missing-data model, several times per comparison. The function takes the seed as an argument and reads the
    model's data at every call, so swapped-in data are seen; it is rebuilt when the model's free variables or initial
    values change."""
    from pymc.initial_point import make_initial_point_fn
    from pymc.model.core import Point

    # what the compiled graph depends on besides the data, held (not by id: a freed initial value's id can be reused)
    key = [*model.free_RVs, None, *(x for pair in model.rvs_to_initial_values.items() for x in pair)]
    kept = _INITIAL_POINT.get(model)
    if kept is None or len(kept[0]) != len(key) or any(a is not b for a, b in zip(kept[0], key)):
        with untraced():
            kept = _INITIAL_POINT[model] = (key, make_initial_point_fn(model=model, return_transformed=True))
    return Point(kept[1](seed), model=model)


# For models with few parameters: PyTensor's graph rewrites (numerical stabilisation included), run by NumPy's
# vectorised implementations, with nothing to compile. The optimisers call these functions tens to hundreds of
# times per fit (4 gradients per parameter for a Hessian), where a Numba compilation (5 to 20 seconds per new graph
# on a cold cache) would dominate. With many parameters (a model that imputes hundreds of missing values) the
# Hessian needs thousands of calls and the compiled backend pays for itself, as it does for ADVI's thousands of
# steps when one uncompiled call is slow (``value_and_grad(..., many_calls=True)``). NUTS uses PyMC's own, which is
# the one compiled log density those callers share (``ModelFunctions.shared_density``). The functions a fit calls a
# few times (``value``, ``constrained``, ``to_unconstrained``, ``constrained_jacobian``) run uncompiled on either
# backend. Both modes: inference.modes.
PY_MODE_MAX_PARAMETERS = 40
BACKENDS = ("auto", "python", "compiled")


def functions_for(model, backend: str | None = None) -> ModelFunctions:
    """The (cached) compiled functions of ``model``.

    ``backend``: ``"python"`` or ``"compiled"`` (see the module docstring) for the functions built from now on,
    ``"auto"`` for ``"python"`` up to ``PY_MODE_MAX_PARAMETERS`` unconstrained parameters and ``"compiled"`` beyond
    (the choice of a new model), None to keep the model's current choice. Switching drops the functions built with
    the other backend.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))} or None, got {backend!r}")
    fns = _CACHE.get(model)
    if fns is None:
        fns = ModelFunctions(model)
        _CACHE[model] = fns
    if backend == "auto":
        backend = "python" if fns.size <= PY_MODE_MAX_PARAMETERS else "compiled"
    if backend is not None and backend != fns.backend:
        fns.mode = PY_MODE if backend == "python" else COMPILED_MODE
        fns._compiled.clear()
    return fns


def share_compiled_density(model) -> None:
    """Let ``model.logp_dlogp_function`` compile once per set of arguments, not on every call.

    PyMC compiles ``model.logp_dlogp_function`` anew for each ``pm.sample`` of a mutable model (its graph could have
    changed); for the zoo's models only the data change between calls (a simulation study swaps each replicate's data
    in with ``pm.set_data``), and the compiled function reads them at every call. The first compilation is kept and
    each call gets a copy with its own runtime state (``ValueGradFunction.copy``, what PyMC's frozen models do, or
    where the compiled function has no such state a shallow copy calling it: :func:`_own_copy`), so the draws are
    those a fresh compilation gives. :meth:`ModelFunctions.shared_density` asks for the same
    function as ``pm.sample``'s NUTS initialisation, so ADVI, Pathfinder and NUTS share one compilation. Unless the
    caller names a ``mode``, it is compiled in :data:`~inference.modes.COMPILED_MODE`.
    """
    if "logp_dlogp_function" in vars(model):  # already done
        return
    compile_once = model.logp_dlogp_function
    kept: dict = {}

    def logp_dlogp_function(grad_vars=None, tempered=False, initial_point=None, ravel_inputs=None, **kwargs):
        if initial_point is None:
            initial_point = initial_point_of(model, 0)
        kwargs.setdefault("mode", COMPILED_MODE)
        key = (None if grad_vars is None else tuple(grad_vars), tempered, ravel_inputs, repr(sorted(kwargs.items())))
        fn = kept.get(key)
        if fn is None:
            with untraced():
                fn = kept[key] = compile_once(grad_vars=grad_vars, tempered=tempered, initial_point=initial_point,
                                              ravel_inputs=ravel_inputs, **kwargs)
        fn = _own_copy(fn)
        fn.set_extra_values(initial_point)
        return fn

    model.logp_dlogp_function = logp_dlogp_function


def _own_copy(fn):
    """A ``ValueGradFunction`` for one more caller of ``fn``: ``fn.copy()`` when the compiled function has runtime
    state (the cost weights or the extra values among its inputs, which each caller sets), otherwise a shallow copy
    calling the same compiled function. ``Function.copy`` links the compiled graph again (20-55 ms on the zoo's
    models, twice per ``pm.sample``); the zoo's callers of one model run one after the other, never at once."""
    inputs = {i.variable for i in fn._pytensor_function.maker.inputs}
    if fn._weights in inputs or any(v in inputs for v in fn._extra_vars_shared.values()):
        return fn.copy()
    new = copy.copy(fn)
    new._extra_are_set = False
    return new


@dataclass
class _Slot:
    name: str
    shape: tuple
    start: int
    stop: int


@dataclass
class ModelFunctions:
    model: object
    compile_seconds: float = 0.0
    _compiled: dict = field(default_factory=dict)
    # set while a run that includes PyMC's NUTS is under way: the compiled density will be built for the sampler
    density_planned: bool = False

    def __post_init__(self):
        model = self.model
        if not model.free_RVs:
            raise ValueError("model: expected at least one free random variable, found none")
        if model.discrete_value_vars:
            names = ", ".join(v.name for v in model.discrete_value_vars)
            raise ValueError(f"model: expected only continuous free variables, found discrete ones ({names})")
        point = initial_point_of(model)
        # Map the flat vector by *name*: model.value_vars order is not declaration order.
        self.value_vars = list(model.value_vars)
        self.slots: list[_Slot] = []
        pos = 0
        for vv in self.value_vars:
            shape = tuple(np.shape(point[vv.name]))
            size = int(np.prod(shape, dtype=int))
            self.slots.append(_Slot(vv.name, shape, pos, pos + size))
            pos += size
        self.size = pos
        self.theta = pt.vector("theta", dtype="float64")
        self._replace = {
            vv: self.theta[s.start:s.stop].reshape(s.shape).astype(vv.dtype)
            for vv, s in zip(self.value_vars, self.slots)
        }
        # Named constrained outputs: the free variables, then the deterministics.
        self.param_names = [rv.name for rv in model.free_RVs] + [d.name for d in model.deterministics]
        outs = model.replace_rvs_by_values(list(model.free_RVs) + list(model.deterministics))
        self._param_graphs = [graph_replace(o, self._replace, strict=False) for o in outs]
        # PyMC's default initial point, packed; the start the estimators use is found from it on the first read of
        # ``initial_theta`` (see there)
        self.default_theta = self.pack_unconstrained(point)
        self._initial = None
        self.mode = PY_MODE if self.size <= PY_MODE_MAX_PARAMETERS else COMPILED_MODE

    @property
    def initial_start(self):
        """The model's default start (:class:`inference.starts.InitialStart`), found on first use by
        :func:`inference.starts.initial_start`: PyMC's initial point where it and the log density there are finite,
        else a finite one found from the prior or by jitter (with a warning saying which variables moved)."""
        if self._initial is None:
            from .starts import initial_start

            self._initial = initial_start(self)
        return self._initial

    @property
    def initial_theta(self) -> np.ndarray:
        """The unconstrained vector every estimator starts from by default: ``initial_start.theta``, which is
        PyMC's initial point itself whenever that point and the log density there are finite."""
        return self.initial_start.theta

    @property
    def _probe_theta(self) -> np.ndarray:
        """Where a new function is first called (warmed up): the default start once it is known, else PyMC's
        initial point as it is (finding the start builds and calls functions, which must not wait for it)."""
        return self.default_theta if self._initial is None else self._initial.theta

    def log_density_terms(self):
        """f(theta) -> {name: value}: the log density's term (Jacobian included, summed over its elements) of each
        free variable, potential and observed variable, all NaN where the density cannot be evaluated (a parameter
        outside its domain): which terms make the density at a start not finite. One function of its own, uncompiled
        on either backend (called a few times per model)."""

        def build():
            from pymc.logprob.utils import ParameterValueError

            model = self.model
            terms = list(model.free_RVs) + list(model.potentials) + list(model.observed_RVs)
            exprs = model.logp(vars=terms, jacobian=True, sum=False)
            outs = [graph_replace(pt.sum(e), self._replace, strict=False).astype("float64") for e in exprs]
            fn = pytensor.function([self.theta], outs, on_unused_input="ignore", mode=PY_MODE)
            names = [v.name for v in terms]

            def call(theta):
                try:
                    values = fn(np.asarray(theta, dtype=float))
                except ParameterValueError:
                    return dict.fromkeys(names, np.nan)
                return dict(zip(names, (float(v) for v in values)))

            return call

        return self._get(("terms",), build, warm=False)

    @property
    def backend(self) -> str:
        """``"python"`` or ``"compiled"``: how the functions built from now on run (see :func:`functions_for`)."""
        return "python" if self.mode is PY_MODE else "compiled"

    # ----------------------------------------------------------------- packing
    def pack_unconstrained(self, point: dict) -> np.ndarray:
        theta = np.empty(self.size)
        for s in self.slots:
            theta[s.start:s.stop] = np.asarray(point[s.name], dtype=float).ravel()
        return theta

    def unpack_unconstrained(self, theta) -> dict:
        return {s.name: np.asarray(theta[s.start:s.stop]).reshape(s.shape) for s in self.slots}

    # --------------------------------------------------------------- compiling
    _MODEL_MODE = object()

    def _theta_function(self, outputs, mode=_MODEL_MODE):
        """f(theta) -> outputs, compiled with this model's backend (or ``mode``) and called without PyTensor's
        per-call input checks (a study calls it hundreds of thousands of times): theta is checked and made a
        contiguous float64 vector here, which is all the input filtering would do."""
        return self._unchecked_call(pytensor.function([self.theta], outputs, on_unused_input="ignore",
                                                      mode=self.mode if mode is self._MODEL_MODE else mode))

    def _unchecked_call(self, fn):
        """f(theta) calling the compiled ``fn`` of one flat input with PyTensor's input checks off."""
        fn.trust_input = True
        shape = (self.size,)

        def call(theta):
            theta = np.ascontiguousarray(theta, dtype=np.float64)
            if theta.shape != shape:
                raise ValueError(f"theta: expected a vector of {self.size} values, got shape {theta.shape}")
            return fn(theta)

        return call

    def _get(self, key, build, warm: bool = True):
        fn = self._compiled.get(key)
        if fn is None:
            t0 = time.perf_counter()
            with untraced():
                fn = build()
                if warm:  # the first call may JIT-compile (Numba linker): count it as compile time
                    fn(self._probe_theta)
            self.compile_seconds += time.perf_counter() - t0
            self._compiled[key] = fn
        return fn

    def _objective_graph(self, kind: str):
        model = self.model
        if kind not in self.KINDS + self.PRIOR_PARTS:
            raise ValueError(f"kind: expected 'loglik', 'logpost' or 'logp', got {kind!r}")
        if kind == "loglik":
            expr = model.logp(vars=model.observed_RVs, jacobian=False)
        elif kind == "logpost":
            expr = model.logp(jacobian=False)
        elif kind == "logp":  # the density of the unconstrained values, as NUTS and VI see it
            expr = model.logp(jacobian=True)
        else:  # the rest of logpost ("prior") or logp ("prior_jac"): the free variables' terms and the potentials
            expr = model.logp(vars=list(model.free_RVs) + list(model.potentials), jacobian=kind == "prior_jac")
        return graph_replace(expr, self._replace, strict=False).astype("float64")

    def _value_and_grad_graph(self, kind: str) -> list:
        expr = self._objective_graph(kind)
        return [expr, grad(expr, self.theta, disconnected_inputs="ignore")]

    KINDS = ("loglik", "logpost", "logp")
    PRIOR_PARTS = ("prior", "prior_jac")
    # Each objective with a gradient is the log-likelihood plus the free variables' own terms. The log-likelihood
    # holds the data and nearly all of the graph (on the missing-data model: its gradient graph takes 3-4 s to build
    # and rewrite, the priors' a fraction of a second), so it is built once and shared by MLE, MAP, Laplace, ADVI and
    # Pathfinder, and each objective adds its small part.
    _PARTS = {"loglik": ("loglik",), "logpost": ("loglik", "prior"), "logp": ("loglik", "prior_jac")}

    def value_and_grad(self, kind: str, *, many_calls: bool = False):
        """f(theta) -> (value, gradient) of the objective ``kind`` ('loglik', 'logpost' or 'logp').

        ``many_calls=True`` is for callers that evaluate it thousands of times in sequence (ADVI's steps): where the
        uncompiled form costs more than ``SLOW_CALL_SECONDS`` a call, PyTensor's compiled backend is used instead,
        compiled once and shared by those callers. For ``"logp"`` the compiled density is used whatever an
        uncompiled call costs when it exists already or ``density_planned`` says NUTS will compile it in this run
        (:func:`inference.compare` sets it): the compilation is then paid once either way.

        ``"logpost"`` and ``"logp"`` are the sum of two compiled functions: the log-likelihood's (shared by every
        objective) and that of the free variables' terms, with or without the Jacobian."""
        if kind not in self.KINDS:
            raise ValueError(f"kind: expected 'loglik', 'logpost' or 'logp', got {kind!r}")
        if many_calls and kind == "logp" and (self.mode is COMPILED_MODE or self.density_planned
                                              or ("shared", "logp") in self._compiled):
            return self.shared_density()  # on the uncompiled backend: compiled for NUTS in any case
        fn = self._sum_of_parts(kind, self.mode)
        if not many_calls or self.mode is COMPILED_MODE:
            return fn
        if not self._slow(fn, kind):
            return fn
        return self.shared_density() if kind == "logp" else self._sum_of_parts(kind, COMPILED_MODE)

    def _sum_of_parts(self, kind: str, mode):
        def part(name):
            if name in self.PRIOR_PARTS:
                # both prior parts in one function: they share nearly all their graph, and one build and rewrite
                # of the pair took 0.09-0.33 s warm against 0.12-0.65 s for the two apart
                both = self._get(("vg", self.PRIOR_PARTS, mode is COMPILED_MODE), lambda: self._theta_function(
                    [out for p in self.PRIOR_PARTS for out in self._value_and_grad_graph(p)], mode=mode))
                i = 2 * self.PRIOR_PARTS.index(name)
                return lambda theta: both(theta)[i:i + 2]
            return self._get(("vg", name, mode is COMPILED_MODE),
                             lambda: self._theta_function(self._value_and_grad_graph(name), mode=mode))

        fns = [part(name) for name in self._PARTS[kind]]
        if len(fns) == 1:
            return fns[0]
        loglik, rest = fns

        def value_and_grad(theta):
            v, g = loglik(theta)
            v2, g2 = rest(theta)
            return v + v2, g + g2

        return value_and_grad

    def _slow(self, fn, kind: str) -> bool:
        """Whether an uncompiled call of ``fn`` (the objective ``kind``) costs more than ``SLOW_CALL_SECONDS``,
        timed once per model and objective."""
        slow = self._compiled.get(("slow", kind))
        if slow is None:
            t0 = time.perf_counter()
            for _ in range(3):
                fn(self.initial_theta)
            slow = self._compiled[("slow", kind)] = (time.perf_counter() - t0) / 3 > self.SLOW_CALL_SECONDS
        return slow

    def shared_density(self):
        """f(theta) -> (value, gradient) of ``"logp"`` (the log density of the unconstrained values, Jacobian
        included), compiled once in :data:`~inference.modes.COMPILED_MODE` by PyMC itself: the function
        ``model.logp_dlogp_function(ravel_inputs=True)`` that ``pm.sample`` initialises NUTS with, whose later calls
        get copies of this compilation (:func:`share_compiled_density`). Its flat input is theta: the model's
        continuous value variables raveled in ``model.value_vars`` order."""

        def build():
            share_compiled_density(self.model)
            return self._unchecked_call(self.model.logp_dlogp_function(ravel_inputs=True)._pytensor_function)

        return self._get(("shared", "logp"), build)

    SLOW_CALL_SECONDS = 5e-4

    def hessian(self, kind: str, exact: bool = False):
        """f(theta) -> Hessian of the objective ``kind`` with respect to theta.

        By default: central differences of the exact gradient with one Richardson extrapolation (error O(h^4), about
        1e-9 relative), 4 gradient calls per parameter. A symbolic Hessian of a mixture of multivariate normals took
        minutes to compile; differencing the compiled gradient costs nothing to compile. ``exact=True`` compiles the
        symbolic Hessian (the tests check one against the other).
        """
        if exact:
            def build():
                g = self._value_and_grad_graph(kind)[1]
                return self._theta_function(jacobian(g, self.theta, vectorize=True))

            return self._get(("hess", kind), build)
        vg = self.value_and_grad(kind)

        def hess(theta):
            theta = np.array(theta, dtype=float)  # a copy: one entry at a time is moved and put back
            n = theta.size
            H = np.empty((n, n))
            for i in range(n):
                t = theta[i]
                h = 1e-3 * max(1.0, abs(t))
                diffs = []
                for step in (h / 2, h):
                    theta[i] = t + step
                    up = vg(theta)[1]
                    theta[i] = t - step
                    diffs.append((up - vg(theta)[1]) / (2 * step))
                theta[i] = t
                H[:, i] = (4 * diffs[0] - diffs[1]) / 3
            return 0.5 * (H + H.T)

        return hess

    def value(self, kind: str):
        """f(theta) -> value of the objective ``kind`` (no gradient: EM and the sampling methods need only the
        log-likelihood column, and a gradient graph of a large mixture takes seconds to rewrite). For thousands of
        draws use :meth:`score_rows`.

        Uncompiled on either backend, as are :meth:`constrained` and :meth:`to_unconstrained`: a fit calls them a
        few times, where compiling them cost more than it saved (a segmentation's EM, a mixture over 16,000 pixels
        with 49 parameters, spent 45 s compiling these three functions on an empty cache, 61 s in all)."""

        return self._value_in(kind, PY_MODE)

    def _value_in(self, kind: str, mode):
        """:meth:`value` compiled in ``mode``: ``COMPILED_MODE`` for callers that score many rows one at a time."""

        def build():
            fn = self._theta_function(self._objective_graph(kind), mode=mode)
            return lambda theta: float(fn(theta))

        return self._get(("v" if mode is PY_MODE else "v-compiled", kind), build)

    ROWS_PER_CALL = 256

    def value_rows(self, kind: str):
        """f(thetas) -> the objective ``kind`` at every row of ``thetas`` (draws x size), one vectorised call per
        ``ROWS_PER_CALL`` rows: the graph of :meth:`value` vectorised over the rows (``vectorize_graph``) and run
        with this model's backend, so a model on the uncompiled backend scores thousands of draws (Pathfinder, the
        importance ratios) at NumPy speed with nothing to compile. A graph that cannot be vectorised is called once
        per row."""

        def build():
            from pytensor.graph.replace import vectorize_graph

            rows = pt.matrix("thetas", dtype="float64")
            try:
                out = vectorize_graph(self._objective_graph(kind), replace={self.theta: rows})
                compiled = pytensor.function([rows], out, on_unused_input="ignore", mode=self.mode)
                compiled(np.atleast_2d(self.initial_theta))

                def block_fn(block):
                    return np.asarray(compiled(block), dtype=float).reshape(len(block))
            except Exception:  # an Op without a batched form (whatever it raises): one call per row
                one = self._value_in(kind, self.mode)

                def block_fn(block):
                    return np.array([one(t) for t in block], dtype=float)

            def call(thetas):
                thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
                if thetas.ndim != 2 or thetas.shape[1] != self.size:
                    raise ValueError(f"thetas: expected rows of {self.size} values, got shape {thetas.shape}")
                if not len(thetas):
                    return np.empty(0)
                step = self.ROWS_PER_CALL
                return np.concatenate([block_fn(np.ascontiguousarray(thetas[i:i + step]))
                                       for i in range(0, len(thetas), step)])

            return call

        return self._get(("v_rows", kind), build, warm=False)

    SCORE_ROW_SECONDS = 7e-4

    def score_rows(self, kind: str):
        """f(thetas) -> the objective ``kind`` at every row of ``thetas``, for callers that score thousands of
        draws (Pathfinder, the importance ratios). On the uncompiled backend: :meth:`value_rows` when it costs at
        most ``SCORE_ROW_SECONDS`` a row (the mixture 0.05 ms, the HMM 0.4 ms; measured once per model). Otherwise a
        compiled function called per row: for ``"logp"`` the :meth:`shared_density` (the compilation ADVI and NUTS
        use too, so a run of several estimators compiles the model's gradient once), for another objective its value
        alone compiled (the model's own on the compiled backend). The choice does not depend on which estimators ran
        before."""
        fn = self._compiled.get(("score", kind))
        if fn is not None:
            return fn
        if self.mode is PY_MODE:
            rows = self.value_rows(kind)
            block = np.repeat(self.initial_theta[None, :], 32, axis=0)
            rows(block)
            t0 = time.perf_counter()
            rows(block)
            if (time.perf_counter() - t0) / len(block) <= self.SCORE_ROW_SECONDS:
                self._compiled[("score", kind)] = rows
                return rows
        if kind == "logp":
            shared = self.shared_density()

            def one(theta):
                return float(shared(theta)[0])
        else:
            one = self._value_in(kind, COMPILED_MODE)

        def fn(thetas):
            return np.array([one(t) for t in np.atleast_2d(np.asarray(thetas, dtype=float))], dtype=float)

        self._compiled[("score", kind)] = fn
        return fn

    def constrained(self, theta) -> dict:
        """Named constrained parameters (free variables and deterministics) at ``theta``."""
        fn = self._get(("params",), lambda: self._theta_function(self._param_graphs, mode=PY_MODE))
        return {n: np.asarray(v, dtype=float) for n, v in zip(self.param_names, fn(theta))}

    def constrained_many(self, thetas) -> dict:
        """Named constrained parameters at every row of ``thetas`` (draws x size), each with a leading draw axis:
        the graph of :meth:`constrained` vectorised over the rows, one call for all draws."""
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))

        def build():
            from pytensor.graph.replace import vectorize_graph

            rows = pt.matrix("thetas", dtype="float64")
            outs = vectorize_graph(self._param_graphs, replace={self.theta: rows})
            return pytensor.function([rows], outs, on_unused_input="ignore", mode=self.mode)

        fn = self._get(("params_many",), build, warm=False)
        return {n: np.asarray(v, dtype=float).reshape((len(thetas),) + np.shape(v)[1:])
                for n, v in zip(self.param_names, fn(thetas))}

    def constrained_jacobian(self, theta) -> np.ndarray:
        """Jacobian of the flattened constrained parameters with respect to theta (rows in ``param_names`` order).

        Uncompiled on either backend: a fit calls it once, for the delta method, and its compilation took 16 s of a
        Poisson mixture's simulation study of 800 fits on an empty cache (the 800 uncompiled calls: a fraction of a
        second)."""

        def build():
            flat = pt.concatenate([pt.as_tensor(g).astype("float64").ravel() for g in self._param_graphs])
            return self._theta_function(jacobian(flat, self.theta, vectorize=True), mode=PY_MODE)

        return self._get(("pjac",), build)(theta)

    def log_prior_and_pointwise(self):
        """f(theta) -> [log prior, elementwise log-likelihood of each observed variable]: the log prior is
        ``model.logp(vars=free_RVs, jacobian=False)`` (the density of the constrained parameters, the one
        power-scaling scales), the log-likelihood terms one array per observed variable, in
        ``model.observed_RVs`` order (the pointwise values ArviZ's ``log_likelihood`` group holds)."""

        def build():
            model = self.model
            exprs = [model.logp(vars=model.free_RVs, jacobian=False)]
            exprs += model.logp(vars=model.observed_RVs, jacobian=False, sum=False)
            outs = [graph_replace(e, self._replace, strict=False).astype("float64") for e in exprs]
            return pytensor.function([self.theta], outs, on_unused_input="ignore", mode=self.mode)

        return self._get(("pointwise",), build)

    def _forward(self):
        """(constrained input variables, the graph of theta from them, its function): the value transforms of
        the free variables applied forward."""

        def build():
            model = self.model
            inputs, pieces = [], []
            for vv, s in zip(self.value_vars, self.slots):
                rv = model.values_to_rvs[vv]
                x = rv.type(name=rv.name)
                inputs.append(x)
                tr = model.rvs_to_transforms.get(rv)
                y = tr.forward(x, *rv.owner.inputs) if tr is not None else x
                pieces.append(pt.as_tensor(y).astype("float64").ravel())
            out = pt.concatenate(pieces)
            return inputs, out, pytensor.function(inputs, out, on_unused_input="ignore", mode=PY_MODE)

        return self._get(("forward",), build, warm=False)

    def _forward_args(self, params: dict, inputs, leading: int) -> list[np.ndarray]:
        missing = [x.name for x in inputs if x.name not in params]
        if missing:
            raise ValueError(f"params: missing value for free variable(s) {', '.join(missing)}")
        args = []
        for x in inputs:
            value = np.asarray(params[x.name], dtype=x.dtype)
            shape = value.shape[leading:]
            if value.ndim != x.type.ndim + leading or any(a is not None and a != b
                                                          for a, b in zip(x.type.shape, shape)):
                what = f"a leading draw axis and shape {x.type.shape} after it" if leading else f"shape {x.type.shape}"
                raise ValueError(f"params: expected {x.name} with {what}, got shape {value.shape}")
            args.append(value)
        if leading and len({a.shape[0] for a in args}) > 1:
            raise ValueError(f"params: expected the same number of draws of every variable, got "
                             f"{', '.join(f'{x.name}: {a.shape[0]}' for x, a in zip(inputs, args))}")
        return args

    def to_unconstrained(self, params: dict) -> np.ndarray:
        """theta for a dict of constrained free-variable values (value transforms applied forward)."""
        inputs, _, fn = self._forward()
        return np.asarray(fn(*self._forward_args(params, inputs, 0)), dtype=float)

    def to_unconstrained_many(self, params: dict) -> np.ndarray:
        """Rows of theta (draws x size) for a dict of constrained free-variable values with a leading draw axis.
        On the uncompiled backend :meth:`to_unconstrained`'s graph vectorised over the draws, one call for all of
        them; on the compiled one (where a new graph costs seconds to compile) and for a graph that cannot be
        vectorised, one call per draw."""
        inputs, out, one = self._forward()
        args = self._forward_args(params, inputs, 1)
        S = args[0].shape[0] if args else 0

        def per_draw(*values):
            return np.array([np.asarray(one(*(v[s] for v in values)), dtype=float) for s in range(len(values[0]))])

        def build():
            from pytensor.graph.replace import vectorize_graph

            if self.mode is COMPILED_MODE:
                return per_draw
            batched = [pt.tensor(name=x.name, dtype=x.dtype, shape=(None, *x.type.shape)) for x in inputs]
            try:
                rows = vectorize_graph(out, replace=dict(zip(inputs, batched)))
                return pytensor.function(batched, rows, on_unused_input="ignore", mode=self.mode)
            except Exception:  # an Op without a batched form (whatever it raises)
                return per_draw

        if S == 0:
            return np.empty((0, self.size))
        fn = self._get(("forward_many",), build, warm=False)
        return np.asarray(fn(*args), dtype=float).reshape(S, self.size)

    # ---------------------------------------------------------------- helpers
    def loglik_at(self, params: dict) -> float:
        """Observed-data log-likelihood at constrained parameters, by the model's own PyMC graph."""
        return float(self.value("loglik")(self.to_unconstrained(params)))

    def logpost_at(self, params: dict) -> float:
        """Full log density without Jacobian (log-likelihood plus log prior) at constrained parameters."""
        return float(self.value("logpost")(self.to_unconstrained(params)))

    def free_names(self) -> list[str]:
        return [rv.name for rv in self.model.free_RVs]
