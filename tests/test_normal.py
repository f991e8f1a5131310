"""Normal model: closed forms, observed information, and the posterior on a quadrature grid."""

import numpy as np
import pytest
from scipy import stats

import inference
from inference.functions import functions_for
from models import normal


@pytest.fixture(scope="module")
def data():
    return normal.example().data


@pytest.fixture(scope="module")
def model(data):
    return normal.build(data)


@pytest.fixture(scope="module")
def grid_posterior(data):
    """Posterior mean and sd of (mu, sigma) by brute-force quadrature on a fine grid (the model's priors)."""
    mu = np.linspace(data.mean() - 0.5, data.mean() + 0.5, 801)
    sigma = np.linspace(data.std() - 0.35, data.std() + 0.35, 801)
    M, S = np.meshgrid(mu, sigma, indexing="ij")
    n, ybar, ss = data.size, data.mean(), np.sum((data - data.mean()) ** 2)
    loglik = -n * np.log(S) - (ss + n * (ybar - M) ** 2) / (2 * S**2)
    logp = loglik + stats.norm.logpdf(M, 0, 10) + stats.halfnorm.logpdf(S, scale=5)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    out = {}
    for name, X in (("mu", M), ("sigma", S)):
        mean = np.sum(w * X)
        out[name] = (mean, np.sqrt(np.sum(w * (X - mean) ** 2)))
    return out


def test_example_is_the_classic_one(data):
    assert data.shape == (1000,)
    # drawn from Normal(5, 2): the sample moments are within a few standard errors of the truth
    assert abs(data.mean() - 5) < 4 * 2 / np.sqrt(1000)
    assert abs(data.std() - 2) < 4 * 2 / np.sqrt(2000)
    np.testing.assert_array_equal(data, normal.example().data)  # same seed, same numbers


def test_mle_equals_closed_form(model, data):
    res = inference.mle(model)
    cf = normal.closed_form_mle(data)
    assert res.converged
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(res.params[name], cf[name], rtol=1e-6)
    np.testing.assert_allclose(res.loglik, np.sum(stats.norm.logpdf(data, cf["mu"], cf["sigma"])), rtol=1e-10)


def test_mle_standard_errors_are_the_textbook_ones(model, data):
    res = inference.mle(model)
    s, n = res.params["sigma"], data.size
    np.testing.assert_allclose(res.sd["mu"], s / np.sqrt(n), rtol=0.01)
    np.testing.assert_allclose(res.sd["sigma"], s / np.sqrt(2 * n), rtol=0.01)


def test_em_equals_closed_form(model, data):
    res = inference.em(model)
    cf = normal.closed_form_mle(data)
    assert res.converged and res.method == "em"
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(res.params[name], cf[name], rtol=1e-6)


def test_map_em_equals_map(model):
    a, b = inference.em(model, prior=True), inference.map_estimate(model)
    for name in ("mu", "sigma"):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-7)
    # the MAP is not the MLE: the priors move it (slightly)
    assert not np.isclose(b.params["sigma"], inference.mle(model).params["sigma"], rtol=1e-6, atol=0)
    # the objective of MAP-EM is the PyMC log density without Jacobian
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(a.params), rtol=1e-10)


def test_em_reads_priors_from_the_model(data):
    strong = normal.build(data, mu_prior=(0.0, 0.05))
    a, b = inference.em(strong, prior=True), inference.map_estimate(strong)
    assert a.params["mu"] < 4.0  # a prior this tight pulls mu far from the data mean
    np.testing.assert_allclose(a.params["mu"], b.params["mu"], rtol=1e-7)
    np.testing.assert_allclose(a.params["sigma"], b.params["sigma"], rtol=1e-7)


def test_nuts_matches_quadrature_posterior(model, grid_posterior):
    res = inference.nuts(model, seed=1)
    assert res.converged
    for name, (mean, sd) in grid_posterior.items():
        assert abs(res.params[name] - mean) < 0.2 * sd, name
        np.testing.assert_allclose(res.sd[name], sd, rtol=0.15)


@pytest.mark.parametrize("method", ["advi", "fullrank_advi"])
def test_vi_means_match_quadrature_posterior(model, grid_posterior, method):
    res = getattr(inference, method)(model, seed=2)
    assert res.converged
    for name, (mean, sd) in grid_posterior.items():
        assert abs(res.params[name] - mean) < 0.2 * sd, (name, res.params[name], mean, sd)


def test_simulate_uses_the_declaration():
    y = normal.simulate({"mu": -3.0, "sigma": 0.5}, n=20000, seed=3)
    assert abs(y.mean() + 3) < 4 * 0.5 / np.sqrt(20000)
    assert abs(y.std() - 0.5) < 0.02
    np.testing.assert_array_equal(y, normal.simulate({"mu": -3.0, "sigma": 0.5}, n=20000, seed=3))


@pytest.mark.parametrize("bad, message", [
    ([1.0, np.nan, 2.0], "y: expected finite values"),
    ([1.0, np.inf], "y: expected finite values"),
    ([], "y: expected at least one observation"),
    ([[1.0, 2.0]], "y: expected a 1-D array"),
    (["a", "b"], "y: expected numbers"),
])
def test_bad_data_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        normal.build(bad)


def test_bad_prior_is_refused():
    with pytest.raises(ValueError, match="sigma_prior: expected a positive number"):
        normal.build([1.0, 2.0], sigma_prior=-1)
