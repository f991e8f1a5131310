"""What every reference posterior is made of, and the numerical integration shared by several of them.

An :class:`Entry` holds a posterior three ways: as a plain ``pm.Model`` (``build``), as a transcription of its log
density written from the mathematics with NumPy and SciPy (``logp``, over the constrained free variables), and as a
reference answer (``solve``) computed without sampling, closed form or deterministic quadrature, with an estimate
of its own numerical error.

The unconstrained space is the one PyMC's samplers see. Its value transforms are written out here from their
definitions (log, log-odds, ordered) rather than taken from PyMC, so that comparing the two log densities checks
PyMC's transform and Jacobian as well as the density itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.special import expit, log_expit

__all__ = ["Entry", "Free", "Reference", "TRANSFORM_CLASSES", "backward", "flat_labels", "forward", "grid_moments",
           "laplace_moments", "log_jacobian", "mode_and_cov"]

#: The name of PyMC's transform class for each transform written here (``None``: no transform).
TRANSFORM_CLASSES = {None: None, "log": "LogTransform", "logodds": "LogOddsTransform", "ordered": "Ordered"}


@dataclass(frozen=True)
class Free:
    """A free variable of a posterior.

    Attributes
    ----------
    shape : tuple of int
        Its shape (``()`` for a scalar).
    transform : {None, "log", "logodds", "ordered"}
        The value transform PyMC applies to it: the log of a positive scalar, the log-odds of a probability, or
        ``ordered`` (the first entry, then the logs of the successive differences) for an increasing vector.
    """

    shape: tuple = ()
    transform: str | None = None

    @property
    def size(self) -> int:
        """The number of scalars in the variable."""
        return int(np.prod(self.shape, dtype=int))


def backward(transform: str | None, u: np.ndarray) -> np.ndarray:
    """Constrained values of unconstrained ones ``u`` (any leading axes; for ``ordered``, the last axis)."""
    u = np.asarray(u, dtype=float)
    if transform is None:
        return u
    if transform == "log":
        return np.exp(u)
    if transform == "logodds":
        return expit(u)
    if transform == "ordered":
        steps = np.concatenate([np.zeros(u.shape[:-1] + (1,)), np.cumsum(np.exp(u[..., 1:]), axis=-1)], axis=-1)
        return u[..., :1] + steps
    raise ValueError(f"unknown transform {transform!r}")


def forward(transform: str | None, x: np.ndarray) -> np.ndarray:
    """Unconstrained values of constrained ones ``x``: the inverse of :func:`backward`."""
    x = np.asarray(x, dtype=float)
    if transform is None:
        return x
    if transform == "log":
        return np.log(x)
    if transform == "logodds":
        return np.log(x) - np.log1p(-x)
    if transform == "ordered":
        return np.concatenate([x[..., :1], np.log(np.diff(x, axis=-1))], axis=-1)
    raise ValueError(f"unknown transform {transform!r}")


def log_jacobian(transform: str | None, u: np.ndarray, ndim: int) -> np.ndarray:
    """log |d backward(u) / du| summed over the variable's own ``ndim`` trailing axes (one value per leading
    index)."""
    u = np.asarray(u, dtype=float)
    if transform is None:
        terms = np.zeros_like(u)
    elif transform == "log":
        terms = u
    elif transform == "logodds":
        terms = log_expit(u) + log_expit(-u)
    elif transform == "ordered":
        # x_0 = u_0 and x_k = x_{k-1} + exp(u_k): a triangular Jacobian with diagonal (1, exp(u_1), ...)
        terms = np.concatenate([np.zeros(u.shape[:-1] + (1,)), u[..., 1:]], axis=-1)
    else:
        raise ValueError(f"unknown transform {transform!r}")
    return terms.sum(axis=tuple(range(terms.ndim - ndim, terms.ndim))) if ndim else terms


def flat_labels(name: str, shape: tuple) -> list[tuple[str, tuple]]:
    """Labels and indices of every scalar entry of an array named ``name``, as ``inference.Result.flat`` writes
    them: ``"tau"``, ``"theta[3]"``, ``"cov[0,1]"``."""
    if shape == ():
        return [(name, ())]
    return [(f"{name}[{','.join(map(str, idx))}]", idx) for idx in np.ndindex(*shape)]


@dataclass(frozen=True)
class Reference:
    """A reference answer.

    Attributes
    ----------
    moments : dict[str, tuple[float, float]]
        Posterior mean and standard deviation of every reported scalar, by flat label.
    error : dict[str, tuple[float, float]]
        An estimate of the absolute numerical error of each mean and standard deviation (same labels).
    method : str
        How the answer was computed, in a few words.
    """

    moments: dict
    error: dict
    method: str

    def max_error_sd(self) -> float:
        """The largest numerical error of any mean or standard deviation, in units of that parameter's posterior
        standard deviation."""
        return max(max(e) / self.moments[k][1] for k, e in self.error.items())


@dataclass(frozen=True, eq=False)
class Entry:
    """One posterior of the catalogue.

    Attributes
    ----------
    name : str
        A short identifier (``"eight_schools_centered"``).
    summary : str
        What the posterior is, why it is hard, and where its data come from.
    build : callable
        ``build() -> pm.Model``: the posterior declared the usual PyMC way. Its constants are passed as float64
        arrays: PyTensor stores a Python float that float32 represents exactly (``1e3``) as a float32 constant, and
        PyMC's Gamma then takes the scale ``1 / beta`` in float32 (0.001 to 7 digits).
    free : dict[str, Free]
        The free variables of the model, by name.
    logp : callable
        ``logp(point) -> ndarray``: the log posterior density (up to a constant) of the constrained free variables,
        ``point`` a dict of arrays with one leading axis over points; written from the mathematics.
    derived : callable
        ``derived(point) -> dict``: every reported variable (the free ones and the model's deterministics) from the
        constrained free variables, with the same leading axis.
    solve : callable
        ``solve() -> Reference``: computes the reference answer (closed form or deterministic quadrature).
    near_gaussian : bool
        Whether the posterior is near-Gaussian in the unconstrained space: a Gaussian at the mode of the
        unconstrained density, with its curvature there (the Laplace approximation), gets every reference mean
        within 0.25 posterior sd and every sd within 10%. ``tests/test_reference_posteriors.py`` checks the flag.
    start : dict[str, ndarray]
        A constrained point near the posterior's bulk (the values the data were simulated from, or the data).
    scale : dict[str, ndarray]
        Rough posterior standard deviations in the unconstrained space (within a factor of a few), by variable.
    data : dict
        The data and prior constants, by name, for checks that recompute the reference another way.
    """

    name: str
    summary: str
    build: Callable
    free: dict
    logp: Callable
    derived: Callable
    solve: Callable
    near_gaussian: bool
    start: dict
    scale: dict
    data: dict = field(default_factory=dict)

    @functools.cached_property
    def solution(self) -> Reference:
        """The reference answer, computed once."""
        return self.solve()

    @property
    def reference(self) -> dict:
        """``{flat label: (mean, sd)}``."""
        return self.solution.moments

    @property
    def error(self) -> dict:
        """``{flat label: (error of the mean, error of the sd)}``, absolute."""
        return self.solution.error

    # -- the unconstrained space -----------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """The number of unconstrained scalars."""
        return sum(f.size for f in self.free.values())

    def unflatten(self, u: np.ndarray) -> dict:
        """Constrained free variables from unconstrained vectors ``u`` of shape (S, dim)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out, i = {}, 0
        for name, f in self.free.items():
            block = u[:, i:i + f.size].reshape((u.shape[0],) + f.shape)
            out[name] = backward(f.transform, block)
            i += f.size
        return out

    def unconstrained_values(self, u: np.ndarray) -> dict:
        """The unconstrained blocks of ``u`` (S, dim), by variable, shaped like the variables."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out, i = {}, 0
        for name, f in self.free.items():
            out[name] = u[:, i:i + f.size].reshape((u.shape[0],) + f.shape)
            i += f.size
        return out

    def flatten(self, point: dict) -> np.ndarray:
        """The unconstrained vector (dim,) of one constrained point."""
        return np.concatenate([np.ravel(forward(f.transform, np.asarray(point[n], dtype=float)))
                               for n, f in self.free.items()])

    def scale_vector(self) -> np.ndarray:
        """``scale`` as one vector in the order of :meth:`flatten`."""
        return np.concatenate([np.ravel(np.broadcast_to(np.asarray(self.scale[n], dtype=float), f.shape))
                               for n, f in self.free.items()])

    def logp_unconstrained(self, u: np.ndarray) -> np.ndarray:
        """The log density of the unconstrained vectors ``u`` (S, dim): ``logp`` plus the log Jacobian of the
        transforms (the density PyMC's samplers see, up to a constant)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        blocks = self.unconstrained_values(u)
        lp = np.asarray(self.logp(self.unflatten(u)), dtype=float)
        for name, f in self.free.items():
            lp = lp + log_jacobian(f.transform, blocks[name], len(f.shape))
        return lp

    def labelled(self, point: dict) -> dict:
        """Every reported scalar of ``point`` (leading axis S) by flat label, each an array (S,)."""
        out = {}
        for name, value in self.derived(point).items():
            value = np.asarray(value, dtype=float)
            for label, idx in flat_labels(name, value.shape[1:]):
                out[label] = value[(slice(None),) + idx]
        return out


# -- numerical integration in the Laplace-whitened unconstrained space --------------------------------------------

def _hessian(f, x: np.ndarray, h: float) -> np.ndarray:
    """Central-difference Hessian of a vectorised scalar function ``f`` at ``x`` (all stencil points in one call)."""
    d = x.size
    eye = np.eye(d) * h
    pts = [x + s * eye[i] + t * eye[j] for i in range(d) for j in range(i, d) for s in (1, -1) for t in (1, -1)]
    vals = f(np.array(pts)).reshape(-1, 4)
    H = np.empty((d, d))
    k = 0
    for i in range(d):
        for j in range(i, d):
            pp, pm_, mp, mm = vals[k]
            H[i, j] = H[j, i] = (pp - pm_ - mp + mm) / (4 * h * h)
            k += 1
    return H


def mode_and_cov(entry: Entry, *, rounds: int = 3, h: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """Mode of the unconstrained log density and the inverse of its negative Hessian there.

    BFGS runs in coordinates whitened by the previous round's covariance (the first round by ``entry.scale``);
    the Hessian is a central difference with step ``h`` in those coordinates.
    """
    from scipy.optimize import minimize

    centre = entry.flatten(entry.start)
    L = np.diag(entry.scale_vector())
    cov = L @ L.T
    for _ in range(rounds):
        def f(v, centre=centre, L=L):
            return entry.logp_unconstrained(centre + np.atleast_2d(v) @ L.T)

        res = minimize(lambda v: -f(v)[0], np.zeros(entry.dim), method="BFGS", options={"gtol": 1e-9})
        centre = centre + L @ res.x
        H = -_hessian(f, np.zeros(entry.dim), h)
        cov = L @ np.linalg.inv(H) @ L.T
        cov = (cov + cov.T) / 2
        L = np.linalg.cholesky(cov)
    return centre, cov


def _box(entry: Entry, mode, L, drop: float, *, face_points: int = 61,
         limit: float = 150.0) -> tuple[np.ndarray, np.ndarray]:
    """A box in whitened coordinates on whose faces the log density is everywhere below its maximum minus ``drop``.

    Each face starts where the density along its axis through the mode has fallen by ``drop`` and moves out by one
    whitened unit while the largest value on it (on a ``face_points``-per-axis grid of the face) is above that
    level, so a curved or skewed posterior is not cut where it leaves the axes. A face beyond ``limit`` units means
    tails too heavy for a grid: ValueError.
    """
    top = entry.logp_unconstrained(mode[None])[0]
    d = entry.dim
    lo, hi = np.empty(d), np.empty(d)
    for i in range(d):
        for sign, out in ((-1, lo), (1, hi)):
            t = 1.0
            while t < limit and entry.logp_unconstrained((mode + sign * t * L[:, i])[None])[0] > top - drop:
                t += 0.5
            out[i] = sign * t
    moved = True
    while moved:
        moved = False
        for i in range(d):
            for bound in (lo, hi):
                axes = [np.linspace(a, b, face_points) for a, b in zip(lo, hi)]
                axes[i] = np.array([bound[i]])
                z = np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)
                if np.max(entry.logp_unconstrained(mode + z @ L.T)) > top - drop:
                    bound[i] += np.sign(bound[i])
                    moved = True
        if max(np.max(-lo), np.max(hi)) > limit:
            raise ValueError(f"{entry.name}: the density has not fallen by {drop} within {limit} whitened units")
    return lo, hi


def _grid_pass(entry: Entry, mode, L, lo, hi, h: float, chunk: int) -> dict:
    """Means and sds of every label by the trapezoid rule on the grid ``h * k`` (k integer) of whitened coordinates
    inside the box [lo, hi], the density taken as zero outside."""
    axes = [h * np.arange(np.ceil(a / h), np.floor(b / h) + 1) for a, b in zip(lo, hi)]
    top = entry.logp_unconstrained(mode[None])[0]
    centre = {k: v[0] for k, v in entry.labelled(entry.unflatten(mode[None])).items()}
    shape = tuple(a.size for a in axes)
    total = int(np.prod(shape))
    s0 = 0.0
    s1 = dict.fromkeys(centre, 0.0)
    s2 = dict.fromkeys(centre, 0.0)
    for start in range(0, total, chunk):
        idx = np.unravel_index(np.arange(start, min(start + chunk, total)), shape)
        z = np.stack([axes[i][idx[i]] for i in range(len(axes))], axis=1)
        u = mode + z @ L.T
        w = np.exp(entry.logp_unconstrained(u) - top)
        s0 += w.sum()
        for k, q in entry.labelled(entry.unflatten(u)).items():
            dq = q - centre[k]
            s1[k] += w @ dq
            s2[k] += w @ (dq * dq)
    out = {}
    for k in centre:
        m = s1[k] / s0
        out[k] = (centre[k] + m, float(np.sqrt(max(s2[k] / s0 - m * m, 0.0))))
    return out


def grid_moments(entry: Entry, *, h: float = 0.1, drop: float = 50.0, limit: float = 150.0, chunk: int = 20_000,
                 method: str | None = None) -> Reference:
    """Reference moments by the trapezoid rule on a grid in the Laplace-whitened unconstrained space.

    The unconstrained density is smooth and decays at least exponentially, so the trapezoid rule on a uniform grid
    converges faster than any power of the step. The grid covers the box on whose faces the log density is ``drop``
    below its maximum (see :func:`_box`). The error estimate is the larger of the changes when the step is doubled
    (the step-``2h`` grid's error, far larger than the step-``h`` one's) and when the box is shrunk to 80% of its
    size (the mass left outside), plus 1e-13 of the value for round-off. ``limit``: see :func:`_box`.
    """
    mode, cov = mode_and_cov(entry)
    L = np.linalg.cholesky(cov)
    lo, hi = _box(entry, mode, L, drop, limit=limit)
    fine = _grid_pass(entry, mode, L, lo, hi, h, chunk)
    coarse = _grid_pass(entry, mode, L, lo, hi, 2 * h, chunk)
    small = _grid_pass(entry, mode, L, 0.8 * lo, 0.8 * hi, h, chunk)
    error = {}
    for k, (m, s) in fine.items():
        em = max(abs(m - coarse[k][0]), abs(m - small[k][0])) + 1e-13 * (abs(m) + s)
        es = max(abs(s - coarse[k][1]), abs(s - small[k][1])) + 1e-13 * s
        error[k] = (em, es)
    n = int(np.prod([np.floor(b / h) - np.ceil(a / h) + 1 for a, b in zip(lo, hi)]))
    return Reference(moments=fine, error=error,
                     method=method or f"{entry.dim}-D trapezoid grid in Laplace-whitened coordinates "
                                      f"(step {h:g}, {n} points)")


def laplace_moments(entry: Entry, *, draws: int = 200_000, seed: int = 0) -> dict:
    """Means and sds of every label under the Laplace approximation of the unconstrained density (a Gaussian at
    its mode, its covariance the inverse negative Hessian), by ``draws`` Monte Carlo draws mapped to the
    constrained space."""
    mode, cov = mode_and_cov(entry)
    rng = np.random.default_rng(seed)
    u = mode + rng.standard_normal((draws, entry.dim)) @ np.linalg.cholesky(cov).T
    return {k: (float(q.mean()), float(q.std(ddof=1))) for k, q in entry.labelled(entry.unflatten(u)).items()}

