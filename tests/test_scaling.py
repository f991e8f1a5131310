"""Badly scaled designs: MLE and Laplace against statsmodels, and the same answers in every unit of the parameters.

The designs are those a statsmodels user fits as they come: statsmodels' own ``cpunish`` (17 states, income near
3e4 next to an intercept) and ``randhie`` (20,190 rows) Poisson regressions, and a simulated logistic regression
with covariates in the tens of thousands. Each is declared as a plain PyMC model with flat priors, the way such a
user would write it.
"""

import warnings

import numpy as np
import pymc as pm
import pytest
import statsmodels.api as sm

import inference
from inference.functions import functions_for

DRAWS = 4000


def cpunish():
    """Executions on income, poverty, race, log violent crime, South and degree (statsmodels' GLM Poisson example),
    constant last as in statsmodels' own test of it."""
    d = sm.datasets.cpunish.load_pandas().data
    X = d[["INCOME", "PERPOVERTY", "PERBLACK", "VC100k96", "SOUTH", "DEGREE"]].to_numpy(dtype=float)
    X[:, 3] = np.log(X[:, 3])
    return np.column_stack([X, np.ones(len(X))]), d["EXECUTIONS"].to_numpy(dtype=float)


def randhie():
    """Doctor visits (mdvis) on the nine regressors of the RAND health insurance experiment, and a constant."""
    d = sm.datasets.randhie.load_pandas().data
    X = d.drop(columns="mdvis").to_numpy(dtype=float)
    return np.column_stack([X, np.ones(len(X))]), d["mdvis"].to_numpy(dtype=float)


def scaled_logit(n=10_000, seed=20240601):
    """A logistic regression on two covariates in the tens of thousands (uncentred) and one standard normal."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(3e4, 5e3, n), rng.uniform(1e4, 5e4, n), rng.standard_normal(n)])
    p = 1.0 / (1.0 + np.exp(-(X @ np.array([-1.0, 8e-5, -2e-5, 0.5]))))
    return X, (rng.uniform(size=n) < p).astype(float)


def poisson_glm(X, y):
    with pm.Model() as model:
        beta = pm.Flat("beta", shape=X.shape[1])
        pm.Poisson("y", pm.math.exp(X @ beta), observed=y)
    return model


def logit_glm(X, y):
    with pm.Model() as model:
        beta = pm.Flat("beta", shape=X.shape[1])
        pm.Bernoulli("y", logit_p=X @ beta, observed=y)
    return model


def quietly(fit, model, **kwargs):
    """``fit(model)`` with the warnings it raised that come from the package (the estimator's own, or a singular
    information), which these tests expect to be none."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit(model, **kwargs)
    ours = [w for w in caught if issubclass(w.category, (RuntimeWarning, inference.ConvergenceWarning))
            or str(w.message).startswith(f"{res.method}:")]
    return res, [str(w.message) for w in ours]


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=float) - b) / np.abs(b)))


DESIGNS = {"cpunish": cpunish, "randhie": randhie}


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def poisson_case(request):
    X, y = DESIGNS[request.param]()
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit()
    # the default fit's standard errors use the weights of its last-but-one iterate; a tight one's do not
    tight = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-14)
    model = poisson_glm(X, y)
    return X, y, ref, tight, model, quietly(inference.mle, model)


def test_poisson_mle_matches_statsmodels(poisson_case):
    _, _, ref, tight, _, (res, warned) = poisson_case
    assert res.converged and not warned, warned
    assert res.info["decrement"] <= inference.optimize.DECREMENT_TOL
    assert rel(res.params["beta"], ref.params) < 1e-6
    assert rel(res.sd["beta"], ref.bse) < 1e-6
    assert rel(res.params["beta"], tight.params) < 1e-8
    assert rel(res.sd["beta"], tight.bse) < 1e-8
    assert res.loglik == pytest.approx(tight.llf, rel=1e-12)


def test_poisson_laplace_matches_statsmodels(poisson_case):
    _, _, ref, tight, model, (fit, _) = poisson_case
    res, warned = quietly(inference.laplace, model, seed=0, draws=DRAWS)
    assert res.converged and not warned, warned
    # flat priors and no transforms: the mode is the MLE and the Gaussian's sds are the standard errors
    np.testing.assert_allclose(res.info["theta"], fit.info["theta"], rtol=1e-8, atol=0)
    assert rel(res.info["theta"], ref.params) < 1e-6
    assert rel(np.sqrt(np.diag(res.info["q_cov"])), ref.bse) < 1e-6
    # the posterior sds are those of the draws: within five Monte Carlo standard errors of the standard errors
    assert rel(res.sd["beta"], tight.bse) < 5 / np.sqrt(2 * (DRAWS - 1))


@pytest.mark.parametrize("declaration", ["flat", "zoo"])
def test_scaled_logistic_matches_statsmodels_logit(declaration):
    from models import logistic

    X, y = scaled_logit()
    ref = sm.Logit(y, X).fit(disp=0)
    if declaration == "flat":
        res, warned = quietly(inference.mle, logit_glm(X, y))
        est, se = res.params["beta"], res.sd["beta"]
    else:  # the zoo's logistic model: intercept and slopes apart, priors that the MLE ignores
        res, warned = quietly(inference.mle, logistic.build(X[:, 1:], y))
        est = np.r_[res.params["alpha"], res.params["beta"]]
        se = np.r_[res.sd["alpha"], res.sd["beta"]]
    assert res.converged and not warned, warned
    assert rel(est, ref.params) < 1e-6
    assert rel(se, ref.bse) < 1e-6


SCALES = (1e-3, 1.0, 1e4)


def test_rescaled_parameters_give_the_same_answers_in_sds():
    # X / k multiplies every coefficient by k: the same posterior in other units
    X, y = cpunish()
    fits = {k: (quietly(inference.mle, poisson_glm(X / k, y)), quietly(inference.laplace, poisson_glm(X / k, y),
                                                                        seed=1, draws=500)) for k in SCALES}
    (base, _), (base_laplace, _) = fits[1.0]
    for k, ((res, warned), (lap, warned_laplace)) in fits.items():
        assert res.converged and lap.converged and not warned and not warned_laplace, (k, warned, warned_laplace)
        sd = base.sd["beta"]
        assert np.max(np.abs(res.params["beta"] / k - base.params["beta"]) / sd) < 1e-8, k
        np.testing.assert_allclose(res.sd["beta"] / k, sd, rtol=1e-8, err_msg=str(k))
        np.testing.assert_allclose(lap.info["theta"] / k, base_laplace.info["theta"], rtol=1e-8, err_msg=str(k))
        # the same seed gives the same standard normal draws, carried by the Gaussian in each unit
        np.testing.assert_allclose(lap.sd["beta"] / k, base_laplace.sd["beta"], rtol=1e-7, err_msg=str(k))


def test_rescaled_normal_regression_with_a_positive_scale_gives_the_same_answers():
    # y * k multiplies the coefficients and sigma by k; sigma's log transform shifts by log k
    rng = np.random.default_rng(7)
    X = np.column_stack([np.ones(200), rng.normal(5e4, 1e3, 200)])
    y0 = X @ np.array([2.0, 3e-4]) + rng.normal(0.0, 0.5, 200)
    fits = {}
    for k in SCALES:
        with pm.Model() as model:
            beta = pm.Flat("beta", shape=2)
            sigma = pm.HalfFlat("sigma")
            pm.Normal("y", X @ beta, sigma, observed=y0 * k)
        fits[k] = quietly(inference.mle, model)
    ols = sm.OLS(y0, X).fit()
    base, _ = fits[1.0]
    assert rel(base.params["beta"], ols.params) < 1e-8
    # the MLE of sigma divides by n, not by n - p
    assert base.params["sigma"] == pytest.approx(np.sqrt(ols.ssr / len(y0)), rel=1e-10)
    assert rel(base.sd["beta"], ols.bse * np.sqrt((len(y0) - 2) / len(y0))) < 1e-8
    for k, (res, warned) in fits.items():
        assert res.converged and not warned, (k, warned)
        for name in ("beta", "sigma"):
            np.testing.assert_allclose(res.params[name] / k, base.params[name], rtol=1e-9, err_msg=f"{name} {k}")
            np.testing.assert_allclose(res.sd[name] / k, base.sd[name], rtol=1e-8, err_msg=f"{name} {k}")


def test_ill_conditioned_but_regular_information_keeps_its_standard_errors():
    # an uncentred covariate 3e4 +- 3: information scaled to a unit diagonal has an eigenvalue near 5e-9
    rng = np.random.default_rng(3)
    x = 3e4 + rng.normal(0.0, 3.0, 2000)
    X = np.column_stack([np.ones(2000), x, rng.standard_normal(2000)])
    y = rng.poisson(np.exp(0.5 + 0.1 * (x - 3e4) + 0.2 * X[:, 2])).astype(float)
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-14)
    res, warned = quietly(inference.mle, poisson_glm(X, y))
    assert res.converged and not warned, warned
    assert rel(res.params["beta"], ref.params) < 1e-8
    assert rel(res.sd["beta"], ref.bse) < 1e-6


@pytest.mark.parametrize("symbolic", [True, False], ids=["symbolic-hessian", "differences-only"])
def test_a_duplicated_column_still_gives_nan_and_a_warning(symbolic):
    X, y = cpunish()
    model = poisson_glm(np.column_stack([X, X[:, 1]]), y)
    if not symbolic:  # a model whose graph has no second derivatives (as an HMM's)
        fns = functions_for(model)
        plain = fns.hessian

        def no_second_derivatives(kind, exact=False):
            if exact:
                raise NotImplementedError("no second derivatives")
            return plain(kind)

        fns.hessian = no_second_derivatives
    with pytest.warns(RuntimeWarning, match="not negative definite"):
        res = inference.mle(model)
    assert np.all(np.isnan(res.sd["beta"]))
    # the likelihood is maximised along a ridge: the fitted means are statsmodels'
    ref = sm.GLM(y, X, family=sm.families.Poisson()).fit()
    Xd = np.column_stack([X, X[:, 1]])
    np.testing.assert_allclose(np.exp(Xd @ res.params["beta"]), ref.fittedvalues, rtol=1e-7)
    with pytest.warns(RuntimeWarning, match="not negative definite"), \
            pytest.warns(inference.ConvergenceWarning, match="no Gaussian"):
        lap = inference.laplace(model, seed=0, draws=100)
    assert not lap.converged and np.all(np.isnan(lap.sd["beta"]))


def test_stopping_early_is_not_converged_and_says_why():
    X, y = cpunish()
    with pytest.warns(inference.ConvergenceWarning, match="Newton decrement"):
        res = inference.mle(poisson_glm(X, y), max_iter=2)
    assert not res.converged and res.info["decrement"] > inference.optimize.DECREMENT_TOL


def test_difference_hessian_is_scale_free():
    from inference.optimize import difference_hessian

    # log-likelihood of a Poisson regression in units where the coefficients are 1e-6 .. 1e6 apart
    X, y = cpunish()
    units = np.array([1e-6, 1e-2, 1.0, 1e2, 1e4, 1e6, 1.0])
    Xs = X / units  # coefficients of Xs are beta * units
    beta = sm.GLM(y, X, family=sm.families.Poisson()).fit().params * units

    def gradient(b):
        with np.errstate(over="ignore", invalid="ignore"):  # the first steps may overflow: they are shrunk
            return Xs.T @ (y - np.exp(Xs @ b))

    H, scale = difference_hessian(gradient, beta)
    exact = -(Xs.T * np.exp(Xs @ beta)) @ Xs
    d = 1.0 / np.sqrt(-np.diag(exact))
    np.testing.assert_allclose(H * d[:, None] * d[None, :], exact * d[:, None] * d[None, :], rtol=0, atol=1e-9)
    np.testing.assert_allclose(scale, d, rtol=1e-4)  # measured by the steps' own central differences
