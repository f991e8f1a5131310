"""A two-component 1-D Gaussian mixture with known weights and sds and ordered means, the reference by a 2-D grid.

The means are declared the usual PyMC way, ``transform=pm.distributions.transforms.ordered`` with no initial
value: the unconstrained coordinates are (mu_0, log(mu_1 - mu_0)), and PyMC's default initial point puts the
second one at log 0. The density of the means is the product of two Normal(0, prior_sd) priors restricted to
mu_0 < mu_1 (a factor 2 off a normalised density, a constant) times the mixture likelihood.

The reference integrates over (mu_0, d = mu_1 - mu_0), d > 0, where the density is analytic and, when the components
overlap, still far from zero at d = 0: a product Gauss-Legendre rule on a box [a_lo, a_hi] x [d_lo, d_hi] (d_lo = 0
unless the density has fallen by 50 in log before the gap closes) converges spectrally up to that edge, where the
trapezoid rule in log d would need a long grid down the exp(log d) tail. The box is grown until the log density on
its faces (bar the d = 0 one) is 50 below its maximum. The stated error is the larger of the changes with 3/4 of the
nodes and with the box shrunk to 80% about the mode. (``tests/test_reference_posteriors.py`` checks it against the
trapezoid rule in the unconstrained coordinates.) Data simulated from the fixed seed given to :func:`mixture`.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from .core import Entry, Free, Reference, mode_and_cov

__all__ = ["mixture"]


def _normal_logpdf(x, mu, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((x - mu) / sd) ** 2


def mixture(name: str, summary: str, *, seed: int, n: int, weight: float, means, sds, prior_sd: float,
            near_gaussian: bool) -> Entry:
    """y_i ~ weight N(mu_0, sds_0^2) + (1 - weight) N(mu_1, sds_1^2), mu_0 < mu_1, mu_k ~ Normal(0, prior_sd);
    ``n`` draws at the true ``means`` from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    sds = np.asarray(sds, dtype=float)
    means = np.asarray(means, dtype=float)
    first = rng.random(n) < weight
    y = np.where(first, means[0] + sds[0] * rng.standard_normal(n), means[1] + sds[1] * rng.standard_normal(n))
    w = np.array([weight, 1 - weight])

    def build():
        with pm.Model() as model:
            mu = pm.Normal("mu", mu=np.float64(0.0), sigma=np.float64(prior_sd), shape=2,
                           transform=pm.distributions.transforms.ordered)
            pm.NormalMixture("y", w=w, mu=mu, sigma=sds, observed=y)
        return model

    def logp(point):
        mu = point["mu"]
        prior = _normal_logpdf(mu, 0.0, prior_sd).sum(axis=1)
        comp0 = np.log(w[0]) + _normal_logpdf(y, mu[:, :1], sds[0])
        comp1 = np.log(w[1]) + _normal_logpdf(y, mu[:, 1:], sds[1])
        return prior + np.logaddexp(comp0, comp1).sum(axis=1)

    def solve():
        return _gauss_legendre(entry)

    gap_sd = np.hypot(sds[0] / np.sqrt(n * w[0]), sds[1] / np.sqrt(n * w[1]))
    entry = Entry(name=name, summary=summary, build=build, free={"mu": Free((2,), "ordered")}, logp=logp,
                  derived=lambda point: {"mu": point["mu"]}, solve=solve, near_gaussian=near_gaussian,
                  start={"mu": means}, scale={"mu": np.array([sds[0] / np.sqrt(n * w[0]),
                                                              gap_sd / (means[1] - means[0])])})
    return entry


def _gl_pass(logdens, a_box, d_box, n: int, top: float, centre: np.ndarray) -> dict:
    """Means and sds of mu_0 and mu_1 by the n x n Gauss-Legendre product rule on the box."""
    x, wx = np.polynomial.legendre.leggauss(n)
    a = (a_box[0] + a_box[1]) / 2 + (a_box[1] - a_box[0]) / 2 * x
    d = (d_box[0] + d_box[1]) / 2 + (d_box[1] - d_box[0]) / 2 * x
    A, D = np.meshgrid(a, d, indexing="ij")
    W = np.outer(wx, wx) * np.exp(logdens(A.ravel(), D.ravel()).reshape(A.shape) - top)
    out = {}
    for k, q in (("mu[0]", A), ("mu[1]", A + D)):
        dq = q - centre[int(k[3])]
        z = W.sum()
        m = (W * dq).sum() / z
        out[k] = (centre[int(k[3])] + m, float(np.sqrt((W * dq * dq).sum() / z - m * m)))
    return out


def _gauss_legendre(entry: Entry, *, n: int = 160, drop: float = 50.0) -> Reference:
    """The reference moments of a mixture entry (see the module docstring)."""
    mode, cov = mode_and_cov(entry)
    a0, d0 = mode[0], np.exp(mode[1])
    sa, sd_ = np.sqrt(cov[0, 0]), d0 * np.sqrt(cov[1, 1])

    def logdens(a, d):
        return entry.logp({"mu": np.stack([a, a + d], axis=-1)})

    top = float(logdens(np.array([a0]), np.array([d0]))[0])
    a_box = [a0 - 4 * sa, a0 + 4 * sa]
    d_box = [max(d0 - 4 * sd_, 0.0), d0 + 4 * sd_]
    for _ in range(400):
        grid_a = np.linspace(*a_box, 401)
        grid_d = np.linspace(*d_box, 401)
        faces = [(np.full(401, a_box[0]), grid_d), (np.full(401, a_box[1]), grid_d),
                 (grid_a, np.full(401, d_box[1])), (grid_a, np.full(401, d_box[0]))]
        high = [np.max(logdens(a, d)) > top - drop for a, d in faces]
        if high[0]:
            a_box[0] -= sa
        if high[1]:
            a_box[1] += sa
        if high[2]:
            d_box[1] += sd_
        if high[3] and d_box[0] > 0:
            d_box[0] = max(d_box[0] - sd_, 0.0)
        if not any(high[:3]) and not (high[3] and d_box[0] > 0):
            break
    centre = np.array([a0, a0 + d0])
    fine = _gl_pass(logdens, a_box, d_box, n, top, centre)
    fewer = _gl_pass(logdens, a_box, d_box, 3 * n // 4, top, centre)
    shrink = [0.8 * (b - c) + c for b, c in zip(a_box, (a0, a0))], \
        [d_box[0] if d_box[0] == 0 else 0.8 * (d_box[0] - d0) + d0, 0.8 * (d_box[1] - d0) + d0]
    small = _gl_pass(logdens, shrink[0], shrink[1], n, top, centre)
    error = {}
    for k, (m, s) in fine.items():
        error[k] = (max(abs(m - fewer[k][0]), abs(m - small[k][0])) + 1e-13 * (abs(m) + s),
                    max(abs(s - fewer[k][1]), abs(s - small[k][1])) + 1e-13 * s)
    edge = "d from 0" if d_box[0] == 0 else f"d from {d_box[0]:.3g}"
    return Reference(fine, error, f"2-D Gauss-Legendre product rule over (mu_0, mu_1 - mu_0), {n} x {n} nodes, "
                                  f"{edge}")
