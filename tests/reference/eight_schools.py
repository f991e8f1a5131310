"""Eight schools (Rubin 1981), centred and non-centred, with the reference by 1-D quadrature over tau.

Data: the estimated effects of coaching on SAT-V scores in eight schools and their standard errors, Rubin, D. B.
(1981), "Estimation in parallel randomized experiments", Journal of Educational Statistics 6(4), 377-401 (also
Gelman et al., *Bayesian Data Analysis*, 3rd ed., Table 5.2). Priors as in posteriordb's ``eight_schools``
models: mu ~ Normal(0, 5), tau ~ HalfCauchy(5); theta_j ~ Normal(mu, tau), y_j ~ Normal(theta_j, sigma_j).

Given tau, (mu, theta) is Gaussian in closed form, so every posterior moment is a 1-D integral over tau of a
closed-form conditional moment weighted by p(tau | y), itself closed form up to its normalising constant:

    p(tau | y) ∝ p(tau) ∫ N(mu | 0, 5^2) ∏_j N(y_j | mu, sigma_j^2 + tau^2) dmu.

The integrals are computed with ``scipy.integrate.quad`` (relative tolerance 1e-13) on [0, 10], [10, 50] and
[50, inf), and again by the trapezoid rule in log tau (step 0.02 on [-40, 8]; the integrand is analytic in a strip
of half-width pi/2 about the real axis, so that rule's error is of order exp(-pi^2 / 0.02)); the stated error is the
larger of quad's own error estimate, propagated to the moments, and the difference between the two routes.
"""

from __future__ import annotations

import functools

import numpy as np
import pymc as pm
from scipy.integrate import quad

from .core import Entry, Free, Reference

__all__ = ["MU_SD", "SIGMA", "TAU_SCALE", "Y", "conditional_moments", "eight_schools", "log_tau_density",
           "reference_moments"]

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
MU_SD = 5.0
TAU_SCALE = 5.0
J = len(Y)


def _normal_logpdf(x, mu, sd):
    return -0.5 * np.log(2 * np.pi) - np.log(sd) - 0.5 * ((x - mu) / sd) ** 2


def _halfcauchy_logpdf(x, beta):
    return np.log(2 / (np.pi * beta)) - np.log1p((x / beta) ** 2)


def log_tau_density(tau: float) -> float:
    """log p(tau) + log p(y | tau), mu and theta integrated out (the exact log marginal posterior of tau up to
    its normalising constant).

    With v_j = sigma_j^2 + tau^2, w_j = 1/v_j, P = 1/5^2 + sum w_j and s = sum w_j y_j:
    log p(y | tau) = -log 5 - sum log(2 pi v_j)/2 - sum w_j y_j^2 / 2 - log(P)/2 + s^2 / (2P).
    """
    v = SIGMA ** 2 + tau * tau
    w = 1 / v
    P = 1 / MU_SD ** 2 + w.sum()
    s = (w * Y).sum()
    loglik = (-np.log(MU_SD) - 0.5 * np.sum(np.log(2 * np.pi * v)) - 0.5 * np.sum(w * Y * Y)
              - 0.5 * np.log(P) + 0.5 * s * s / P)
    return float(_halfcauchy_logpdf(tau, TAU_SCALE) + loglik)


def conditional_moments(tau: float) -> dict:
    """Means and variances of mu, tau, theta_j and eta_j = (theta_j - mu) / tau given tau (and y).

    mu | tau ~ N(s/P, 1/P). With shrinkage b_j = sigma_j^2 / (sigma_j^2 + tau^2) and V_j = b_j tau^2,
    theta_j | mu, tau ~ N((1 - b_j) y_j + b_j mu, V_j); so theta_j | tau has mean (1 - b_j) y_j + b_j E[mu | tau]
    and variance V_j + b_j^2 / P, and theta_j - mu | tau has mean (1 - b_j)(y_j - E[mu | tau]) and variance
    V_j + (1 - b_j)^2 / P. eta_j's are those divided by tau and tau^2 (written without the division, finite at 0).
    """
    v = SIGMA ** 2 + tau * tau
    w = 1 / v
    P = 1 / MU_SD ** 2 + w.sum()
    mu_hat = (w * Y).sum() / P
    b = SIGMA ** 2 * w
    out = {"mu": (mu_hat, 1 / P), "tau": (tau, 0.0)}
    theta_mean = (1 - b) * Y + b * mu_hat
    theta_var = b * tau * tau + b * b / P
    eta_mean = tau * w * (Y - mu_hat)
    eta_var = b + tau * tau * w * w / P
    for j in range(J):
        out[f"theta[{j}]"] = (theta_mean[j], theta_var[j])
        out[f"eta[{j}]"] = (eta_mean[j], eta_var[j])
    return out


_PIECES = ((0.0, 10.0), (10.0, 50.0), (50.0, np.inf))


def _quad(g) -> tuple[float, float]:
    """∫_0^inf g(tau) dtau by quad on three pieces: (value, quad's error estimate)."""
    total = err = 0.0
    for a, b in _PIECES:
        val, e = quad(g, a, b, epsabs=0.0, epsrel=1e-13, limit=500)
        total += val
        err += e
    return total, err


def _trapezoid(labels, shift: float) -> tuple[float, dict, dict]:
    """The same integrals by the trapezoid rule in u = log tau: (normaliser, means, variances)."""
    u = np.arange(-40.0, 8.0 + 1e-9, 0.02)
    tau = np.exp(u)
    f = np.exp(np.array([log_tau_density(t) for t in tau]) - shift) * tau
    cond = [conditional_moments(t) for t in tau]
    Z = f.sum()
    means = {k: sum(fi * c[k][0] for fi, c in zip(f, cond)) / Z for k in labels}
    var = {k: sum(fi * (c[k][1] + (c[k][0] - means[k]) ** 2) for fi, c in zip(f, cond)) / Z for k in labels}
    return Z, means, var


def reference_moments() -> Reference:
    """Posterior means and sds of mu, tau, theta_j and eta_j by quadrature over tau (see the module docstring)."""
    labels = list(conditional_moments(1.0))
    grid = np.linspace(0, 30, 301)
    shift = max(log_tau_density(t) for t in grid)

    def f(t):
        return np.exp(log_tau_density(t) - shift)

    Z, eZ = _quad(f)
    means, var, err = {}, {}, {}
    for k in labels:
        n1, e1 = _quad(lambda t, k=k: f(t) * conditional_moments(t)[k][0])
        m = n1 / Z
        def second(t, k=k, m=m):
            mean, var = conditional_moments(t)[k]
            return f(t) * (var + (mean - m) ** 2)

        n2, e2 = _quad(second)
        means[k], var[k] = m, n2 / Z
        err[k] = ((e1 + abs(m) * eZ) / Z, (e2 + var[k] * eZ) / Z)
    _, tmeans, tvar = _trapezoid(labels, shift)
    moments, error = {}, {}
    for k in labels:
        sd = np.sqrt(var[k])
        moments[k] = (float(means[k]), float(sd))
        error[k] = (float(max(err[k][0], abs(means[k] - tmeans[k]))),
                    float(max(err[k][1] / (2 * sd), abs(sd - np.sqrt(tvar[k])))))
    return Reference(moments, error, "1-D adaptive quadrature over tau (scipy quad, epsrel 1e-13) of the "
                                     "closed-form Gaussian conditionals, checked by the trapezoid rule in log tau")


@functools.cache
def _shared_reference() -> Reference:
    """The reference of both parameterisations, computed once."""
    return reference_moments()


def eight_schools(centered: bool) -> Entry:
    """The centred (theta free) or non-centred (eta free, theta = mu + tau * eta deterministic) parameterisation."""
    if centered:
        def build():
            with pm.Model() as model:
                mu = pm.Normal("mu", mu=np.float64(0.0), sigma=np.float64(MU_SD))
                tau = pm.HalfCauchy("tau", beta=np.float64(TAU_SCALE))
                theta = pm.Normal("theta", mu=mu, sigma=tau, shape=J)
                pm.Normal("y", mu=theta, sigma=SIGMA, observed=Y)
            return model

        def logp(point):
            mu, tau, theta = point["mu"], point["tau"], point["theta"]
            return (_normal_logpdf(mu, 0.0, MU_SD) + _halfcauchy_logpdf(tau, TAU_SCALE)
                    + _normal_logpdf(theta, mu[:, None], tau[:, None]).sum(axis=1)
                    + _normal_logpdf(Y, theta, SIGMA).sum(axis=1))

        def derived(point):
            return {"mu": point["mu"], "tau": point["tau"], "theta": point["theta"]}

        free = {"mu": Free((), None), "tau": Free((), "log"), "theta": Free((J,), None)}
        keep = ("mu", "tau", "theta")
        start = {"mu": 4.4, "tau": 3.6, "theta": np.array([6.2, 5.0, 3.9, 4.8, 3.6, 4.0, 6.3, 4.9])}
        scale = {"mu": 3.3, "tau": 1.0, "theta": 5.0}
        name = "eight_schools_centered"
        summary = ("Eight schools, centred: the funnel between tau and the theta_j (Rubin 1981; posteriordb "
                   "eight_schools_centered)")
    else:
        def build():
            with pm.Model() as model:
                mu = pm.Normal("mu", mu=np.float64(0.0), sigma=np.float64(MU_SD))
                tau = pm.HalfCauchy("tau", beta=np.float64(TAU_SCALE))
                eta = pm.Normal("eta", mu=np.float64(0.0), sigma=np.float64(1.0), shape=J)
                theta = pm.Deterministic("theta", mu + tau * eta)
                pm.Normal("y", mu=theta, sigma=SIGMA, observed=Y)
            return model

        def logp(point):
            mu, tau, eta = point["mu"], point["tau"], point["eta"]
            theta = mu[:, None] + tau[:, None] * eta
            return (_normal_logpdf(mu, 0.0, MU_SD) + _halfcauchy_logpdf(tau, TAU_SCALE)
                    + _normal_logpdf(eta, 0.0, 1.0).sum(axis=1) + _normal_logpdf(Y, theta, SIGMA).sum(axis=1))

        def derived(point):
            theta = point["mu"][:, None] + point["tau"][:, None] * point["eta"]
            return {"mu": point["mu"], "tau": point["tau"], "eta": point["eta"], "theta": theta}

        free = {"mu": Free((), None), "tau": Free((), "log"), "eta": Free((J,), None)}
        keep = ("mu", "tau", "eta", "theta")
        start = {"mu": 4.4, "tau": 3.6, "eta": np.zeros(J)}
        scale = {"mu": 3.3, "tau": 1.0, "eta": 1.0}
        name = "eight_schools_noncentered"
        summary = ("Eight schools, non-centred: the same posterior as the centred one, theta_j = mu + tau eta_j "
                   "(Rubin 1981; posteriordb eight_schools_noncentered)")

    def solve():
        ref = _shared_reference()
        labels = [k for k in ref.moments if k.split("[")[0] in keep]
        return Reference({k: ref.moments[k] for k in labels}, {k: ref.error[k] for k in labels}, ref.method)

    return Entry(name=name, summary=summary, build=build, free=free, logp=logp, derived=derived, solve=solve,
                 near_gaussian=False, start=start, scale=scale)
