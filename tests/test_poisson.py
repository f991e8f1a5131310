"""Poisson model and Poisson mixtures: closed forms, conjugacy, and EM against the PyMC declaration."""

import numpy as np
import pytest
from scipy import stats

import inference
from inference.functions import functions_for
from models import poisson


@pytest.fixture(scope="module")
def single():
    ex = poisson.example(k=1)
    return ex.data, poisson.build(ex.data, k=1)


@pytest.fixture(scope="module")
def mixture():
    ex = poisson.example(k=2)
    return ex.data, poisson.build(ex.data, k=2)


def test_mle_is_the_sample_mean(single):
    y, model = single
    res = inference.mle(model)
    np.testing.assert_allclose(res.params["lam"], [y.mean()], rtol=1e-6)
    np.testing.assert_allclose(res.sd["lam"], [np.sqrt(y.mean() / y.size)], rtol=1e-4)
    np.testing.assert_allclose(res.loglik, stats.poisson.logpmf(y, y.mean()).sum(), rtol=1e-10)
    em = inference.em(model)
    np.testing.assert_allclose(em.params["lam"], [y.mean()], rtol=1e-10)


def test_conjugate_posterior_nuts_and_advi(single):
    y, model = single
    alpha, beta = 2.0, 0.2  # the model's default Gamma prior
    post = stats.gamma(alpha + y.sum(), scale=1 / (beta + y.size))
    res = inference.nuts(model, seed=3)
    assert res.converged
    mcse_mean = res.info["mcse"]["lam"][0]
    assert abs(res.params["lam"][0] - post.mean()) < 3 * mcse_mean
    draws = res.draws["lam"][..., 0]
    import arviz as az
    mcse_sd = float(az.mcse(res.to_arviz(), method="sd")["lam"].values[0])
    assert abs(draws.std(ddof=1) - post.std()) < 3 * mcse_sd
    for method in ("advi", "fullrank_advi"):
        vi = getattr(inference, method)(model, seed=4)
        assert abs(vi.params["lam"][0] - post.mean()) < 0.2 * post.std(), method
    # MAP is the posterior mode in the constrained space: (alpha - 1 + S) / (beta + n)
    np.testing.assert_allclose(inference.map_estimate(model).params["lam"], [(alpha - 1 + y.sum()) / (beta + y.size)],
                               rtol=1e-7)
    np.testing.assert_allclose(inference.em(model, prior=True).params["lam"],
                               [(alpha - 1 + y.sum()) / (beta + y.size)], rtol=1e-10)


def test_mixture_em_reaches_the_mle(mixture):
    y, model = mixture
    em = inference.em(model, n_init=3, seed=0)
    mle = inference.mle(model)
    assert em.converged and mle.converged
    np.testing.assert_allclose(em.loglik, mle.loglik, rtol=1e-6)
    for name in ("w", "lam"):
        np.testing.assert_allclose(em.params[name], mle.params[name], rtol=1e-6)
    assert len(em.info["starts"]) == 3


def test_mixture_em_is_monotone_and_matches_pymc(mixture):
    y, model = mixture
    em = inference.em(model, keep_path=True, seed=5)
    assert np.all(np.diff(em.trace) >= -1e-9 * np.abs(em.trace[:-1]))
    fns = functions_for(model)
    assert len(em.info["path"]) == em.trace.size
    for params, ll in zip(em.info["path"], em.trace):
        ordered = {k: np.asarray(v)[np.argsort(params["lam"])] for k, v in params.items()}
        np.testing.assert_allclose(fns.loglik_at(ordered), ll, rtol=1e-8)


def test_mixture_em_log_likelihood_matches_scipy(mixture):
    y, model = mixture
    p = {"w": np.array([0.3, 0.7]), "lam": np.array([1.5, 7.0])}
    math = poisson.em_math(model, prior=False)
    ref = np.log(0.3 * stats.poisson.pmf(y, 1.5) + 0.7 * stats.poisson.pmf(y, 7.0)).sum()
    np.testing.assert_allclose(math.loglik(p), ref, rtol=1e-12)
    r = math.extras(p)["responsibilities"]
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(r[:, 0], 0.3 * stats.poisson.pmf(y, 1.5) /
                               (0.3 * stats.poisson.pmf(y, 1.5) + 0.7 * stats.poisson.pmf(y, 7.0)), rtol=1e-10)


def test_map_em_agrees_with_map(mixture):
    y, model = mixture
    a = inference.em(model, prior=True, seed=1)
    b = inference.map_estimate(model, start={"w": a.params["w"] * 0.9 + 0.05, "lam": a.params["lam"] * 1.1})
    for name in ("w", "lam"):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-6)
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(a.params), rtol=1e-10)
    # the prior matters: the MAP differs from the MLE
    assert not np.allclose(a.params["lam"], inference.em(model, seed=1).params["lam"], rtol=1e-5, atol=0)


def test_em_reports_every_start_and_is_reproducible(mixture):
    y, model = mixture
    a = inference.em(model, n_init=4, seed=11)
    b = inference.em(model, n_init=4, seed=11)
    assert len(a.info["starts"]) == 4
    assert a.info["starts"] == b.info["starts"]
    assert a.trace[-1] == max(a.info["starts"])


def test_em_flags_non_convergence(mixture):
    y, model = mixture
    with pytest.warns(inference.ConvergenceWarning, match="em: did not converge"):
        res = inference.em(model, max_iter=2, seed=0)
    assert not res.converged


def test_simulated_mixture_recovers_the_truth():
    truth = {"w": np.array([0.5, 0.5]), "lam": np.array([1.0, 20.0])}
    y = poisson.simulate(truth, n=4000, seed=9)
    model = poisson.build(y, k=2)
    res = inference.em(model, seed=0)
    np.testing.assert_allclose(res.params["lam"], truth["lam"], rtol=0.08)
    np.testing.assert_allclose(res.params["w"], truth["w"], atol=0.03)


@pytest.mark.parametrize("y, k, message", [
    ([1, 2, -1], 1, "y: expected non-negative counts"),
    ([1, 2.5, 3], 1, "y: expected integer counts"),
    ([1, np.nan], 1, "y: expected finite values"),
    ([], 1, "y: expected at least one observation"),
    ([1, 2, 3], 0, "k: expected at least 1 component"),
    ([1, 1, 2], 3, r"k: expected at most as many components as distinct values in the data \(2\)"),
    ([1, 2], 1.5, "k: expected a positive integer"),
])
def test_bad_input_is_refused(y, k, message):
    with pytest.raises(ValueError, match=message):
        poisson.build(y, k=k)


def test_bad_em_init_is_refused(mixture):
    y, model = mixture
    with pytest.raises(ValueError, match="init: expected w as 2 positive weights"):
        inference.em(model, init={"w": [0.5, 0.6], "lam": [1.0, 2.0]})
    with pytest.raises(ValueError, match="init: expected lam as 2 positive rates"):
        inference.em(model, init={"w": [0.5, 0.5], "lam": [1.0, 2.0, 3.0]})
