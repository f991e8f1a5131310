"""Logistic regression: y_i ~ Bernoulli(sigmoid(alpha + X_i @ beta)).

Declaration (``build``)::

    alpha ~ Normal(alpha_prior)            default Normal(0, 2.5)
    beta  ~ Normal(beta_prior), one per feature (dims "feature", in the column order of X)   default Normal(0, 2.5)
    y_i   ~ Bernoulli(logit_p = alpha + X_i @ beta)     observed, data in the containers ``X`` and ``y_data``

With ``standardize=True`` the free variables are ``alpha_std`` and ``beta_std``, the coefficients of the standardised
features z = (x - mean) / sd (the priors apply to those), and ``alpha``, ``beta`` are deterministics on the original
scale: beta = beta_std / sd, alpha = alpha_std - sum(beta_std * mean / sd).

Built-in example: 1,000 rows, 2 informative standard-normal features, alpha = -0.5, beta = (1.5, -2.0), y drawn from
this declaration with the coefficients fixed (seed 42); 800 rows fit, 200 held out.

EM by Pólya-Gamma augmentation (Polson, Scott & Windle 2013; EM form of Scott & Sun 2013). With psi_i = x_i' theta
(x_i with a leading 1, theta = (alpha, beta)) and kappa_i = y_i - 1/2, the likelihood of one observation is

    sigmoid(psi)^y (1 - sigmoid(psi))^(1-y) = 2^-1 exp(kappa psi) E_omega[exp(-omega psi^2 / 2)],  omega ~ PG(1, 0).

So given omega the log-likelihood is quadratic in theta, and E[omega_i | psi_i] = tanh(psi_i / 2) / (2 psi_i)
(limit 1/4 at psi = 0, computed by its series 1/4 - psi^2/48 + psi^4/480 for small |psi|).

* E-step: omega_i = tanh(psi_i / 2) / (2 psi_i) at the current theta.
* M-step: theta = (X' Omega X + P)^-1 (X' kappa + P m): a weighted least-squares solve; P and m are the prior
  precision and mean (zero for the MLE). With the model's Gaussian priors EM thus reaches the MAP.

The E-step's expected complete-data log-likelihood is a quadratic minorant of the log-likelihood that touches it at
the current theta (the Jaakkola-Jordan bound), so every iteration raises the objective: EM is monotone.

The MLE does not exist when the classes are (quasi-)completely separated by a hyperplane; ``mle`` and EM without
priors refuse such data with a message (a linear programme detects it before any work), while MAP, MAP-EM, ADVI and
NUTS still give finite answers.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import optimize, stats
from scipy.special import expit, log_expit

from inference.base import EMMath, ModelHooks, ModelSpec, Option, attach, hooks_for

from ._common import Example, data_of, dist_params, normal_prior, simulate_from

NAME = "logistic"
TRUTH = {"alpha": -0.5, "beta": np.array([1.5, -2.0])}
EXAMPLE_N = 1000
EXAMPLE_SEED = 42
TEST_FRACTION = 0.2

__all__ = ["SPEC", "build", "em_math", "example", "predict_proba", "separated", "simulate", "swap_data"]


# ------------------------------------------------------------------------------------------------ input checks
def check_design(X, y=None, feature_names=None):
    """Validated float X (n, p), y (n,) in {0, 1}, and feature names; ValueError naming the argument otherwise."""
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("X: expected numeric features") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"X: expected a 2-D array (rows, features), got shape {X.shape}")
    if X.shape[0] < 1:
        raise ValueError("X: expected at least one row, got none")
    names = [f"x{j}" for j in range(X.shape[1])] if feature_names is None else [str(f) for f in feature_names]
    if len(names) != X.shape[1]:
        raise ValueError(f"feature_names: expected {X.shape[1]} names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError("feature_names: a feature is named twice")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"X: expected finite values, feature {names[j]!r} has NaN or inf (first at row {i})")
    if X.shape[0] > 1:
        const = np.flatnonzero(np.ptp(X, axis=0) == 0)
        if const.size:
            raise ValueError(f"X: feature {names[const[0]]!r} is constant (it would duplicate the intercept)")
    if y is None:
        return X, None, names
    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("y: expected 0/1 outcomes") from None
    if y.ndim != 1 or y.size != X.shape[0]:
        raise ValueError(f"y: expected a 1-D array with one outcome per row of X ({X.shape[0]}), got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y: expected finite 0/1 outcomes, found NaN or inf")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("y: expected outcomes coded 0 and 1")
    return X, y, names


# ------------------------------------------------------------------------------------------------ the model
def build(X, y, *, feature_names=None, standardize: bool = False, alpha_prior=(0.0, 2.5),
          beta_prior=(0.0, 2.5)) -> pm.Model:
    """The PyMC model for features ``X`` (n x p) and 0/1 outcomes ``y``.

    Parameters
    ----------
    X : 2-D array of finite floats, no constant column.
    y : 1-D array of 0/1.
    feature_names : names of the columns of X (the ``feature`` coordinate); default x0, x1, ...
    standardize : fit on standardised features and report ``alpha``, ``beta`` on the original scale.
    alpha_prior, beta_prior : (mean, sd) of the Normal priors on the intercept and on each coefficient.
    """
    X, y, names = check_design(X, y, feature_names)
    a_m, a_s = normal_prior(alpha_prior, "alpha_prior")
    b_m, b_s = normal_prior(beta_prior, "beta_prior")
    if standardize:
        center, scale = X.mean(axis=0), X.std(axis=0)
        Z = (X - center) / scale
    else:
        center, scale, Z = np.zeros(X.shape[1]), np.ones(X.shape[1]), X
    suffix = "_std" if standardize else ""
    with pm.Model(coords={"feature": names}) as model:
        X_data = pm.Data("X", Z)
        y_data = pm.Data("y_data", y.astype("int64"))
        a = pm.Normal("alpha" + suffix, a_m, a_s)
        b = pm.Normal("beta" + suffix, b_m, b_s, dims="feature")
        if standardize:
            pm.Deterministic("alpha", a - (b * center / scale).sum())
            pm.Deterministic("beta", b / scale, dims="feature")
        pm.Bernoulli("y", logit_p=a + X_data @ b, observed=y_data, shape=y_data.shape)
    options = {"features": names, "standardize": bool(standardize), "alpha_prior": (a_m, a_s),
               "beta_prior": (b_m, b_s)}
    return attach(model, ModelHooks(
        NAME, options, em_math=lambda prior: em_math(model, prior=prior),
        init=lambda rng: _init(model, rng),
        mle_check=lambda: mle_check(_design(model), data_of(model, "y_data"))))


def _design(model) -> np.ndarray:
    Z = data_of(model, "X")
    return np.column_stack([np.ones(len(Z)), Z])


def swap_data(model: pm.Model, data):
    """``model`` with its rows replaced by ``data = (X, y)`` (``pm.set_data``): the same as ``build(X, y)`` with
    the model's options, without building or compiling again. None for a model built with ``standardize=True``
    (its scaling constants come from the data it was built on, so it must be rebuilt)."""
    if hooks_for(model).options["standardize"]:
        return None
    X, y, _ = check_design(*data, feature_names=hooks_for(model).options["features"])
    with model:
        pm.set_data({"X": X, "y_data": y.astype("int64")})
    return model


def simulate(X, params=None, seed=EXAMPLE_SEED) -> np.ndarray:
    """0/1 outcomes for features ``X`` drawn from the declaration with ``params`` (default: the truth) fixed."""
    params = dict(TRUTH if params is None else params)
    X = np.asarray(X, dtype=float)
    placeholder = np.arange(len(X)) % 2
    model = build(X, placeholder)
    return simulate_from(model, {"alpha": params["alpha"], "beta": params["beta"]}, "y", seed).astype(float)


def example(seed=EXAMPLE_SEED, standardize: bool = False) -> Example:
    """The built-in example: 800 rows to fit, 200 held out (``extra["X_test"]``, ``extra["y_test"]``)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((EXAMPLE_N, 2))
    y = simulate(X, TRUTH, seed=seed)
    n_test = int(round(TEST_FRACTION * EXAMPLE_N))
    perm = rng.permutation(EXAMPLE_N)
    test, train = perm[:n_test], perm[n_test:]
    return Example((X[train], y[train]), build_kwargs={"feature_names": ["x0", "x1"], "standardize": standardize},
                   truth={"alpha": TRUTH["alpha"], "beta": TRUTH["beta"].copy()},
                   extra={"X_test": X[test], "y_test": y[test]})


# ------------------------------------------------------------------------------------------------ MLE existence
def separated(design, y, tol: float = 1e-9) -> int:
    """How many observations a separating hyperplane puts on its boundary, or -1 when the data are not separated.

    Solves max sum_i s_i x_i'w subject to s_i x_i'w >= 0, -1 <= w <= 1, with s_i = 2 y_i - 1 (Konis 2007). A
    positive optimum means a direction along which the log-likelihood increases without bound: no MLE.
    """
    s = 2.0 * np.asarray(y) - 1.0
    A = design * s[:, None]
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    A = A / scale
    res = optimize.linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(A)), bounds=[(-1, 1)] * A.shape[1],
                           method="highs")
    if res.status != 0 or -res.fun <= tol * len(A):
        return -1
    margins = A @ res.x
    return int(np.sum(margins <= tol * np.abs(margins).max()))


def mle_check(design, y) -> None:
    n, p = design.shape
    if n < p:
        raise ValueError(f"fewer rows ({n}) than coefficients ({p}): the MLE is not unique; "
                         "use map or map_em (the priors make the answer unique)")
    if separated(design, y) >= 0:
        raise RuntimeError("the maximum likelihood estimate does not exist: the classes are (quasi-)completely "
                           "separated by the features, so the log-likelihood keeps rising as the coefficients grow; "
                           "use map, map_em, advi or nuts")


def check_plan(example, estimators) -> None:
    """CLI check before any work: refuse ``mle``/``em`` when there are fewer rows than coefficients."""
    X, y = example.data
    wants = [e for e in estimators if e in ("mle", "em")]
    if wants and X.shape[0] < X.shape[1] + 1:
        raise ValueError(f"{wants[0]}: fewer rows ({X.shape[0]}) than coefficients ({X.shape[1] + 1}): the MLE is "
                         "not unique; use --estimators map,map_em,advi,nuts")


# ------------------------------------------------------------------------------------------------ EM
def _names(model):
    return ("alpha_std", "beta_std") if "alpha_std" in model.named_vars else ("alpha", "beta")


def _init(model, rng) -> dict:
    a, b = _names(model)
    p = data_of(model, "X").shape[1]
    return {a: 0.1 * rng.standard_normal(), b: 0.1 * rng.standard_normal(p)}


def pg_mean(psi) -> np.ndarray:
    """E[omega | psi] for omega ~ PG(1, psi): tanh(psi / 2) / (2 psi), with the series near 0."""
    psi = np.abs(np.asarray(psi, dtype=float))
    small = psi < 1e-3
    safe = np.where(small, 1.0, psi)
    return np.where(small, 0.25 - psi**2 / 48 + psi**4 / 480, np.tanh(safe / 2) / (2 * safe))


def em_math(model: pm.Model, *, prior: bool) -> EMMath:
    """Pólya-Gamma EM, reading the data and the Normal priors from ``model``."""
    a_name, b_name = _names(model)
    Z = data_of(model, "X")
    y = data_of(model, "y_data")
    n, p = Z.shape
    D = np.column_stack([np.ones(n), Z])
    kappa = y - 0.5
    Dk = D.T @ kappa
    if prior:
        a_m, a_s = (float(v) for v in dist_params(model, a_name, "normal"))
        b_m, b_s = (np.broadcast_to(np.asarray(v, dtype=float), (p,)) for v in dist_params(model, b_name, "normal"))
        prec = np.concatenate([[1 / a_s**2], 1 / b_s**2])
        mean = np.concatenate([[a_m], b_m])
    else:
        prec, mean = np.zeros(p + 1), np.zeros(p + 1)

    def theta_of(params):
        return np.concatenate([[float(params[a_name])], np.asarray(params[b_name], dtype=float).ravel()])

    def loglik(params):
        psi = D @ theta_of(params)
        return float(np.sum(y * log_expit(psi) + (1 - y) * log_expit(-psi)))

    def step(params):
        omega = pg_mean(D @ theta_of(params))
        A = (D * omega[:, None]).T @ D + np.diag(prec)
        theta = np.linalg.solve(A, Dk + prec * mean)
        return {a_name: float(theta[0]), b_name: theta[1:]}

    def log_prior(params):
        th = theta_of(params)
        return float(np.sum(stats.norm.logpdf(th, mean, 1 / np.sqrt(prec))))

    def check_init(params):
        if set(params) != {a_name, b_name}:
            raise ValueError(f"init: expected values for {a_name} and {b_name}")
        b = np.asarray(params[b_name], dtype=float)
        if b.shape != (p,) or not np.all(np.isfinite(b)) or not np.isfinite(float(params[a_name])):
            raise ValueError(f"init: expected a finite {a_name} and {p} finite values for {b_name}")
        return {a_name: float(params[a_name]), b_name: b}

    return EMMath(init=lambda rng: _init(model, rng), step=step, loglik=loglik,
                  log_prior=log_prior if prior else None, check_init=check_init)


# ------------------------------------------------------------------------------------------------ prediction
def predict_proba(result, X) -> np.ndarray:
    """P(y = 1 | X): at the point estimate, or averaged over the draws (posterior predictive mean)."""
    X = np.asarray(X, dtype=float)
    if result.draws is not None and "alpha" in result.draws:
        a = result.draws["alpha"].reshape(-1)
        b = result.draws["beta"].reshape(a.size, -1)
        return expit(a[None, :] + X @ b.T).mean(axis=1)
    return expit(float(result.params["alpha"]) + X @ np.asarray(result.params["beta"]))


def metrics(example, comparison) -> dict:
    """Held-out accuracy and log-loss per estimator (only when the example has a held-out split)."""
    if "X_test" not in example.extra:
        return {}
    X, y = example.extra["X_test"], example.extra["y_test"]
    out = {}
    for name, res in comparison.results.items():
        prob = np.clip(predict_proba(res, X), 1e-15, 1 - 1e-15)
        out[name] = {"accuracy": float(np.mean((prob > 0.5) == (y == 1))),
                     "log_loss": float(-np.mean(y * np.log(prob) + (1 - y) * np.log1p(-prob)))}
    return out


def simulate_study(params, n, seed):
    """(X, y) for simulation studies: ``n`` rows of standard-normal features (as many as ``params["beta"]`` has)
    and outcomes drawn from the declaration."""
    p = np.size(params["beta"])
    X = np.random.default_rng(seed).standard_normal((n, p))
    return X, simulate(X, params, seed=seed)


SPEC = ModelSpec(
    name=NAME,
    description="y ~ Bernoulli(sigmoid(alpha + X beta)): logistic regression (2 features, n=1000, 20% held out)",
    build=build,
    example=example,
    simulate=simulate_study,
    data_kind="design",
    options=(Option("standardize", bool, "fit on standardised features, report the original scale"),),
    params=("alpha", "beta"),
    check_plan=check_plan,
    metrics=metrics,
    metrics_title="held-out data:",
    min_n=lambda options: 4,
    test_cases={"default": {}, "standardized": {"standardize": True}},
    swap_data=lambda model, data: swap_data(model, data),
)
