"""Conjugate posteriors with closed-form moments: Normal-Inverse-Gamma linear regression, Beta-Binomial and
Gamma-Poisson, at scales from 1e-4 to 1e5.

The closed forms are evaluated twice, in float64 and in the platform's extended precision (``np.longdouble``, 64-bit
significand on x86-64); the reference is the extended-precision value and its stated error is the difference between
the two routes (the float64 route's error, far larger than the extended one's), at least two units in the last place.
All data are simulated from the fixed seeds named in each builder.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy.special import betaln, gamma, gammaln

from .core import Entry, Free, Reference

__all__ = ["beta_binomial", "gamma_poisson", "nig_regression", "nig_closed_form"]

_EPS = np.finfo(float).eps


def _f64(x) -> np.ndarray:
    """A float64 array: PyTensor would store a Python float that float32 represents exactly as float32."""
    return np.asarray(x, dtype=np.float64)


def _solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A^-1 B by Gauss-Jordan elimination with partial pivoting, in the dtype of ``A`` (works for ``longdouble``,
    which ``np.linalg`` does not take)."""
    p = A.shape[0]
    M = np.concatenate([A, B.reshape(p, -1)], axis=1)
    for i in range(p):
        piv = i + int(np.argmax(np.abs(M[i:, i])))
        M[[i, piv]] = M[[piv, i]]
        M[i] = M[i] / M[i, i]
        for r in range(p):
            if r != i:
                M[r] = M[r] - M[r, i] * M[i]
    return M[:, p:].reshape(B.shape)


def _normal_logpdf(x, mu, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((x - mu) / sd) ** 2


def _pair(ld: dict, f64: dict) -> tuple[dict, dict]:
    """(moments, errors): the extended-precision values as floats, and their distance from the float64 route's (at
    least two ulp)."""
    moments, error = {}, {}
    for k, (m, s) in ld.items():
        m, s = float(m), float(s)
        moments[k] = (m, s)
        error[k] = (max(abs(m - float(f64[k][0])), 2 * _EPS * abs(m)),
                    max(abs(s - float(f64[k][1])), 2 * _EPS * s))
    return moments, error


# -- Normal-Inverse-Gamma linear regression -------------------------------------------------------------------------

def nig_closed_form(X, y, m0, v0, a0, b0, dtype=float) -> tuple:
    """Posterior (m_n, V_n, a_n, b_n) of beta | sigma^2 ~ N(m_n, sigma^2 V_n), sigma^2 ~ InvGamma(a_n, b_n).

    Prior beta | sigma^2 ~ N(m0, sigma^2 diag(v0)), sigma^2 ~ InvGamma(a0, b0) (shape, scale); likelihood
    y ~ N(X beta, sigma^2 I). Then V_n = (diag(1/v0) + X'X)^-1, m_n = V_n (m0/v0 + X'y), a_n = a0 + n/2 and
    b_n = b0 + [(y - X m_n)'(y - X m_n) + (m_n - m0)' diag(1/v0) (m_n - m0)] / 2 (the residual form of the usual
    b0 + (y'y + m0'V0^-1 m0 - m_n'V_n^-1 m_n)/2, without its cancellation). Computed in ``dtype``.
    """
    X, y, m0, v0 = (np.asarray(a, dtype=float).astype(dtype) for a in (X, y, m0, v0))
    a0, b0 = dtype(a0), dtype(b0)
    n, p = X.shape
    prec = np.diag(1 / v0) + X.T @ X
    if dtype is float:
        Vn = np.linalg.inv(prec)
        mn = np.linalg.solve(prec, m0 / v0 + X.T @ y)
    else:
        Vn = _solve(prec, np.eye(p, dtype=dtype))
        mn = _solve(prec, m0 / v0 + X.T @ y)
    r = y - X @ mn
    an = a0 + dtype(n) / 2
    bn = b0 + (r @ r + np.sum((mn - m0) ** 2 / v0)) / 2
    return mn, Vn, an, bn


def _gamma_ratio(a, dtype) -> np.ndarray:
    """Gamma(a - 1/2) / Gamma(a), in ``dtype``.

    float64: exp(gammaln(a - 1/2) - gammaln(a)), whose relative error is that of the log-gammas (an ulp of ~150
    at a = 50, 3e-14). Extended: Gamma(c - 1/2) / Gamma(c) at c = a - floor(a - 1) in [1, 2), from SciPy's gamma
    (a few ulp), times the recurrence factors (c + k - 1/2) / (c + k) up to a, each exact to extended precision.
    """
    a = float(a)
    if dtype is float:
        return np.exp(gammaln(a - 0.5) - gammaln(a))
    k = int(np.floor(a - 1))
    c = np.longdouble(a) - k
    ratio = np.longdouble(gamma(float(c) - 0.5)) / np.longdouble(gamma(float(c)))
    for i in range(k):
        ratio = ratio * (c + i - np.longdouble(0.5)) / (c + i)
    return ratio


def _nig_moments(mn, Vn, an, bn) -> dict:
    """Exact marginal means and sds: beta_j ~ Student-t(2 a_n, m_n, b_n/a_n V_n), so var = b_n V_n,jj / (a_n - 1);
    sigma^2 ~ InvGamma(a_n, b_n); sigma = sqrt(sigma^2) with E[sigma] = sqrt(b_n) Gamma(a_n - 1/2) / Gamma(a_n)
    and var(sigma) = b_n [1/(a_n - 1) - (Gamma(a_n - 1/2) / Gamma(a_n))^2]."""
    out = {f"beta[{j}]": (mn[j], np.sqrt(bn * Vn[j, j] / (an - 1))) for j in range(len(mn))}
    out["sigma2"] = (bn / (an - 1), bn / ((an - 1) * np.sqrt(an - 2)))
    ratio = _gamma_ratio(an, type(an) if type(an) is np.longdouble else float)
    out["sigma"] = (np.sqrt(bn) * ratio, np.sqrt(bn * (1 / (an - 1) - ratio * ratio)))
    return out


def nig_regression(name: str, summary: str, *, seed: int, X: np.ndarray, beta: np.ndarray, sigma: float,
                   m0, v0, a0: float, b0: float, near_gaussian: bool) -> Entry:
    """A Normal-Inverse-Gamma regression on data y = X beta + sigma * e, e ~ N(0, I) from ``default_rng(seed)``.

    PyMC declaration: ``sigma2 ~ InverseGamma(a0, b0)`` (log-transformed), ``beta ~ Normal(m0, sqrt(sigma2 v0))``,
    ``sigma = Deterministic(sqrt(sigma2))``, ``y ~ Normal(X beta, sqrt(sigma2))``.
    """
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    y = X @ np.asarray(beta, dtype=float) + sigma * np.random.default_rng(seed).standard_normal(n)
    m0 = np.broadcast_to(np.asarray(m0, dtype=float), (p,)).copy()
    v0 = np.broadcast_to(np.asarray(v0, dtype=float), (p,)).copy()

    def build():
        with pm.Model() as model:
            sigma2 = pm.InverseGamma("sigma2", alpha=_f64(a0), beta=_f64(b0))
            b = pm.Normal("beta", mu=m0, sigma=pt.sqrt(sigma2 * v0), shape=p)
            pm.Deterministic("sigma", pt.sqrt(sigma2))
            pm.Normal("y", mu=pt.dot(X, b), sigma=pt.sqrt(sigma2), observed=y)
        return model

    def logp(point):
        s2, b = point["sigma2"], point["beta"]
        lp = a0 * np.log(b0) - gammaln(a0) - (a0 + 1) * np.log(s2) - b0 / s2
        lp = lp + _normal_logpdf(b, m0, np.sqrt(s2[:, None] * v0)).sum(axis=1)
        resid = y - b @ X.T
        return lp + _normal_logpdf(resid, 0.0, np.sqrt(s2)[:, None]).sum(axis=1)

    def derived(point):
        return {"sigma2": point["sigma2"], "beta": point["beta"], "sigma": np.sqrt(point["sigma2"])}

    def solve():
        ld = _nig_moments(*nig_closed_form(X, y, m0, v0, a0, b0, dtype=np.longdouble))
        f64 = _nig_moments(*nig_closed_form(X, y, m0, v0, a0, b0, dtype=float))
        moments, error = _pair(ld, f64)
        # sigma's sd: 1/(a_n - 1) - ratio^2 cancels, so the few ulp of error of the extended route's ratio (from
        # float64 gamma functions) grow by mean^2 / var
        an = a0 + n / 2
        m, s = moments["sigma"]
        bound = 8 * _EPS * m * m / (2 * s)
        error["sigma"] = (max(error["sigma"][0], 8 * _EPS * m), max(error["sigma"][1], bound))
        return Reference(moments, error, "closed form (Student-t and inverse-gamma marginals), "
                                         f"a_n = {an:g}, extended precision")

    mn, Vn, an, bn = nig_closed_form(X, y, m0, v0, a0, b0)
    s2 = bn / (an - 1)
    start = {"sigma2": s2, "beta": mn}
    scale = {"sigma2": 1 / np.sqrt(an), "beta": np.sqrt(s2 * np.diag(Vn))}
    return Entry(name=name, summary=summary, build=build, free={"sigma2": Free((), "log"), "beta": Free((p,), None)},
                 logp=logp, derived=derived, solve=solve, near_gaussian=near_gaussian, start=start, scale=scale,
                 data={"X": X, "y": y, "m0": m0, "v0": v0, "a0": a0, "b0": b0})


# -- Beta-Binomial ----------------------------------------------------------------------------------------------

def beta_binomial(name: str, summary: str, *, trials: int, successes: int, a: float, b: float,
                  near_gaussian: bool) -> Entry:
    """p ~ Beta(a, b), y ~ Binomial(trials, p) observed once: p | y ~ Beta(a + y, b + trials - y)."""
    n, y = int(trials), int(successes)

    def build():
        with pm.Model() as model:
            p = pm.Beta("p", alpha=_f64(a), beta=_f64(b))
            pm.Binomial("y", n=n, p=p, observed=y)
        return model

    def logp(point):
        p = point["p"]
        prior = (a - 1) * np.log(p) + (b - 1) * np.log1p(-p) - betaln(a, b)
        lik = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1) + y * np.log(p) + (n - y) * np.log1p(-p)
        return prior + lik

    def moments(dtype):
        a1, b1 = dtype(a) + dtype(y), dtype(b) + dtype(n - y)
        s = a1 + b1
        return {"p": (a1 / s, np.sqrt(a1 * b1 / (s * s * (s + 1))))}

    def solve():
        m, e = _pair(moments(np.longdouble), moments(float))
        return Reference(m, e, f"closed form Beta({a + y:g}, {b + n - y:g}), extended precision")

    a1, b1 = a + y, b + n - y
    return Entry(name=name, summary=summary, build=build, free={"p": Free((), "logodds")}, logp=logp,
                 derived=lambda point: {"p": point["p"]}, solve=solve, near_gaussian=near_gaussian,
                 start={"p": a1 / (a1 + b1)}, scale={"p": 1 / np.sqrt(a1 * b1 / (a1 + b1))},
                 data={"trials": n, "successes": y, "a": a, "b": b})


# -- Gamma-Poisson ----------------------------------------------------------------------------------------------

def gamma_poisson(name: str, summary: str, *, seed: int, rate: float, exposure: np.ndarray, a: float, b: float,
                  near_gaussian: bool) -> Entry:
    """lam ~ Gamma(a, b) (shape, rate), y_i ~ Poisson(lam t_i) with counts from ``default_rng(seed)`` at the true
    ``rate``: lam | y ~ Gamma(a + sum y, b + sum t)."""
    t = np.asarray(exposure, dtype=float)
    y = np.random.default_rng(seed).poisson(rate * t)

    def build():
        with pm.Model() as model:
            lam = pm.Gamma("lam", alpha=_f64(a), beta=_f64(b))
            pm.Poisson("y", mu=lam * t, observed=y)
        return model

    def logp(point):
        lam = point["lam"]
        prior = a * np.log(b) - gammaln(a) + (a - 1) * np.log(lam) - b * lam
        mu = lam[:, None] * t
        return prior + (y * np.log(mu) - mu - gammaln(y + 1)).sum(axis=1)

    def moments(dtype):
        a1 = dtype(a) + dtype(int(y.sum()))
        b1 = dtype(b) + np.sum(t.astype(dtype))
        return {"lam": (a1 / b1, np.sqrt(a1) / b1)}

    def solve():
        m, e = _pair(moments(np.longdouble), moments(float))
        return Reference(m, e, f"closed form Gamma({a + y.sum():g}, {b + t.sum():g}), extended precision")

    a1, b1 = a + y.sum(), b + t.sum()
    return Entry(name=name, summary=summary, build=build, free={"lam": Free((), "log")}, logp=logp,
                 derived=lambda point: {"lam": point["lam"]}, solve=solve, near_gaussian=near_gaussian,
                 start={"lam": a1 / b1}, scale={"lam": 1 / np.sqrt(a1)},
                 data={"y": y, "exposure": t, "a": a, "b": b})
