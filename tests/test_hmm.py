"""Hidden Markov model: the PyMC likelihood and Baum-Welch against hmmlearn, brute force and the published fits."""

import itertools

import numpy as np
import pytest
from hmmlearn.hmm import GaussianHMM, PoissonHMM
from scipy import stats

import inference
from inference.functions import functions_for
from models import hmm

P2 = np.array([[0.9, 0.1], [0.25, 0.75]])


@pytest.fixture(scope="module")
def simulated():
    ex = hmm.example()
    return ex, hmm.build(ex.data, **ex.build_kwargs)


@pytest.fixture(scope="module")
def quakes():
    return hmm.example("earthquakes").data


@pytest.fixture(scope="module")
def gaussian_series():
    truth = {"P": P2, "mu": np.array([-1.0, 2.0]), "sigma": np.array([0.7, 1.3])}
    return hmm.simulate(truth, n=300, seed=3)


def _hmmlearn_poisson(p, **kwargs):
    h = PoissonHMM(len(p["lam"]), init_params="", **kwargs)
    h.startprob_, h.transmat_, h.lambdas_ = p["pi0"], p["P"], np.asarray(p["lam"])[:, None]
    return h


def _hmmlearn_gaussian(p, covariance_type="diag", **kwargs):
    h = GaussianHMM(len(p["mu"]), covariance_type=covariance_type, init_params="", covars_prior=0.0,
                    means_prior=0.0, means_weight=0.0, **kwargs)
    h.startprob_, h.transmat_, h.means_ = p["pi0"], p["P"], np.asarray(p["mu"])[:, None]
    var = np.asarray(p["sigma"]) ** 2
    h.covars_ = var[:, None] if covariance_type == "diag" else var
    return h


@pytest.mark.parametrize("lengths", [None, [100, 250, 150]])
def test_poisson_loglik_equals_hmmlearn(simulated, lengths):
    ex, _ = simulated
    y = ex.data
    model = hmm.build(y, 2, initial="free", lengths=lengths)
    p = {"P": P2, "lam": np.array([14.0, 25.0]), "pi0": np.array([0.3, 0.7])}
    ref = _hmmlearn_poisson(p).score(y[:, None].astype(int), lengths)
    np.testing.assert_allclose(functions_for(model).loglik_at(p), ref, rtol=1e-10)
    np.testing.assert_allclose(hmm.em_math(model, prior=False).loglik(p), ref, rtol=1e-10)


@pytest.mark.parametrize("covariance_type, lengths", [("diag", None), ("spherical", [120, 180])])
def test_gaussian_loglik_equals_hmmlearn(gaussian_series, covariance_type, lengths):
    y = gaussian_series
    model = hmm.build(y, 2, emission="normal", initial="free", lengths=lengths)
    p = {"P": P2, "mu": np.array([-0.5, 1.5]), "sigma": np.array([0.9, 1.1]), "pi0": np.array([0.6, 0.4])}
    ref = _hmmlearn_gaussian(p, covariance_type).score(y[:, None], lengths)
    np.testing.assert_allclose(functions_for(model).loglik_at(p), ref, rtol=1e-10)
    np.testing.assert_allclose(hmm.em_math(model, prior=False).loglik(p), ref, rtol=1e-10)


def _fd_grad(f, x, h=1e-6):
    return np.array([(f(x + e) - f(x - e)) / (2 * h) for e in np.eye(x.size) * h])


@pytest.mark.parametrize("emission, initial, lengths", [("poisson", "stationary", None), ("poisson", "free", None),
                                                         ("normal", "stationary", [120, 80, 100]),
                                                         ("normal", "free", [150, 150])])
def test_the_forward_op_gradient_matches_finite_differences(simulated, gaussian_series, emission, initial,
                                                           lengths):
    # the log-likelihood is an op running the forward pass; its gradient (the E-step's expectations, by Fisher's
    # identity) flows through the emission densities, P, and pi0 (free, or the stationary distribution of P)
    y = simulated[0].data[:300] if emission == "poisson" else gaussian_series
    fns = functions_for(hmm.build(y, 2, emission=emission, initial=initial, lengths=lengths))
    theta = fns.initial_theta + 0.2 * np.random.default_rng(4).standard_normal(fns.size)
    for kind in ("loglik", "logp"):
        vg = fns.value_and_grad(kind)
        np.testing.assert_allclose(vg(theta)[1], _fd_grad(lambda t: float(vg(t)[0]), theta), rtol=1e-6, atol=1e-5)
    with pytest.raises(Exception, match="second derivatives"):  # exact Hessians: the op has none
        fns.hessian("loglik", exact=True)


def test_the_compiled_density_runs_the_same_forward_pass(simulated):
    # PyMC's density compiled with Numba (NUTS's, ADVI's) calls the ops' Numba implementations
    _, model = simulated
    fns = functions_for(model)
    thetas = fns.initial_theta + 0.2 * np.random.default_rng(5).standard_normal((3, fns.size))
    dens, uncompiled = fns.shared_density(), fns.value_and_grad("logp")
    for theta in thetas:
        (v, g), (v0, g0) = dens(theta), uncompiled(theta)
        np.testing.assert_allclose(v, v0, rtol=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-10)


def test_stationary_start_and_one_state(quakes):
    p = {"P": P2, "lam": np.array([15.0, 26.0])}
    pi = hmm.stationary(P2)
    np.testing.assert_allclose(pi @ P2, pi, rtol=1e-12)
    free = functions_for(hmm.build(quakes, 2, initial="free")).loglik_at({**p, "pi0": pi})
    np.testing.assert_allclose(functions_for(hmm.build(quakes, 2)).loglik_at(p), free, rtol=1e-12)
    one = hmm.build(quakes, 1)
    np.testing.assert_allclose(functions_for(one).loglik_at({"lam": np.array([19.0])}),
                               stats.poisson.logpmf(quakes, 19.0).sum(), rtol=1e-12)
    res = inference.em(one)
    np.testing.assert_allclose(res.params["lam"], [quakes.mean()], rtol=1e-12)
    assert set(res.params) == {"lam"}


def test_decoding_against_brute_force():
    y = np.array([3.0, 9.0, 8.0, 2.0, 1.0, 7.0])
    p = {"P": P2, "lam": np.array([2.0, 8.0]), "pi0": np.array([0.4, 0.6])}
    lengths = [4, 2]
    first = [0, 4]
    paths = np.array(list(itertools.product([0, 1], repeat=y.size)))
    logp = np.array([sum(np.log(p["pi0"][z[t]]) if t in first else np.log(P2[z[t - 1], z[t]])
                         for t in range(y.size)) + stats.poisson.logpmf(y, p["lam"][z]).sum() for z in paths])
    np.testing.assert_array_equal(hmm.viterbi(y, p, lengths), paths[np.argmax(logp)])
    weights = np.exp(logp - logp.max())
    probs = np.stack([(weights[:, None] * (paths == j)).sum(axis=0) for j in (0, 1)], axis=1) / weights.sum()
    np.testing.assert_allclose(hmm.state_probabilities(y, p, lengths), probs, rtol=1e-10)


@pytest.mark.parametrize("initial", ["stationary", "free"])
def test_em_is_monotone_matches_pymc_and_reaches_the_mle(quakes, initial):
    model = hmm.build(quakes, 2, initial=initial)
    em = inference.em(model, keep_path=True, seed=2)
    assert em.converged
    assert np.all(np.diff(em.trace) >= -1e-12 * np.abs(em.trace[:-1]))
    assert em.trace[-1] - em.trace[0] > 1.0  # the start is not already the optimum
    fns = functions_for(model)
    order = hmm.em_math(model, prior=False).order
    for params, ll in zip(em.info["path"], em.trace):
        np.testing.assert_allclose(fns.loglik_at(order(params)), ll, rtol=1e-8)
    start = hmm.init(quakes, 2, "poisson", initial, np.random.default_rng(7))
    mle = inference.mle(model, start=start)
    assert mle.converged
    np.testing.assert_allclose(em.loglik, mle.loglik, rtol=1e-6)
    states = em.info["states"]
    assert states.shape == quakes.shape and set(np.unique(states)) == {0, 1}
    np.testing.assert_allclose(em.info["state_probs"].sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("initial", ["stationary", "free"])
def test_map_em_equals_map(quakes, initial):
    model = hmm.build(quakes, 2, initial=initial)
    a = inference.em(model, prior=True, seed=1)
    b = inference.map_estimate(model, start=hmm.init(quakes, 2, "poisson", initial, np.random.default_rng(3)))
    assert a.converged and b.converged
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(a.params), rtol=1e-10)
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(b.params), rtol=1e-6)
    for name in ("P", "lam") + (("pi0",) if initial == "free" else ()):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-4, atol=1e-6)


def test_normal_map_em_is_monotone(gaussian_series):
    model = hmm.build(gaussian_series, 2, emission="normal")
    res = inference.em(model, prior=True, seed=0)
    assert res.converged
    assert np.all(np.diff(res.trace) >= -1e-12 * np.abs(res.trace[:-1]))
    np.testing.assert_allclose(res.trace[-1], functions_for(model).logpost_at(res.params), rtol=1e-10)
    np.testing.assert_allclose(res.params["mu"], [-1.0, 2.0], atol=0.3)


def test_poisson_em_agrees_with_hmmlearn(simulated):
    ex, _ = simulated
    y = ex.data
    model = hmm.build(y, 2, initial="free")
    start = {"P": np.array([[0.7, 0.3], [0.4, 0.6]]), "lam": np.array([12.0, 30.0]), "pi0": np.array([0.5, 0.5])}
    em = inference.em(model, init=start)
    ref = _hmmlearn_poisson(start, params="stl", tol=1e-12, n_iter=100_000).fit(y[:, None].astype(int))
    assert ref.monitor_.converged and em.converged
    np.testing.assert_allclose(em.loglik, ref.score(y[:, None].astype(int)), rtol=1e-6)
    np.testing.assert_allclose(em.params["lam"], ref.lambdas_[:, 0], rtol=1e-4)
    np.testing.assert_array_equal(em.info["states"], ref.predict(y[:, None].astype(int)))
    # the truth's Viterbi path is close to the simulated chain's (the states are well separated)
    assert np.mean(em.info["states"] == hmm.viterbi(y, {**ex.truth, "pi0": em.params["pi0"]})) > 0.98


def test_gaussian_em_agrees_with_hmmlearn(gaussian_series):
    y = gaussian_series
    lengths = [120, 180]
    model = hmm.build(y, 2, emission="normal", initial="free", lengths=lengths)
    start = {"P": np.array([[0.8, 0.2], [0.3, 0.7]]), "mu": np.array([-2.0, 3.0]), "sigma": np.array([1.0, 1.0]),
             "pi0": np.array([0.5, 0.5])}
    em = inference.em(model, init=start)
    ref = _hmmlearn_gaussian(start, params="stmc", tol=1e-12, n_iter=100_000).fit(y[:, None], lengths)
    assert ref.monitor_.converged and em.converged
    np.testing.assert_allclose(em.loglik, ref.score(y[:, None], lengths), rtol=1e-6)
    np.testing.assert_allclose(em.params["sigma"] ** 2, ref.covars_[:, 0, 0], rtol=1e-4)
    np.testing.assert_array_equal(em.info["states"], ref.predict(y[:, None], lengths))


def test_earthquakes_reproduce_zucchini_macdonald(quakes):
    table = hmm.select_k(quakes, ks=(1, 2, 3), n_init=4, seed=0)
    assert table["converged"].all()
    ll = dict(zip(table["k"], table["loglik"]))
    # Zucchini & MacDonald (2009), stationary Poisson HMMs: -log L = 342.32 (2 states), 329.46 (3 states)
    np.testing.assert_allclose(-ll[2], 342.32, atol=0.01)
    np.testing.assert_allclose(-ll[3], 329.46, atol=0.01)
    np.testing.assert_allclose(ll[1], stats.poisson.logpmf(quakes, quakes.mean()).sum(), rtol=1e-12)
    np.testing.assert_allclose(table["AIC"], -2 * table["loglik"] + 2 * table["n_params"], rtol=1e-12)
    np.testing.assert_array_equal(table["n_params"], [1, 4, 9])
    assert table["BIC"].idxmin() == 2 and table["AIC"].idxmin() == 2  # three states, as in the book
    fit = inference.em(hmm.build(quakes, 2), n_init=4, seed=0)
    np.testing.assert_allclose(fit.params["lam"], [15.42, 26.01], rtol=0.01)
    free = inference.em(hmm.build(quakes, 2, initial="free"), n_init=4, seed=0)
    assert free.loglik >= fit.loglik - 1e-9  # a free start can only fit better


def test_generic_estimators_land_near_the_truth(simulated):
    ex, model = simulated
    estimators = ["mle", "map", "em", "map_em", "advi", "fullrank_advi", "nuts"]
    cmp = inference.compare(model, estimators, truth=ex.truth, seed=0, raise_errors=True,
                            options={"nuts": {"draws": 400, "tune": 400, "ess_min": 200}})
    for name in estimators:
        res = cmp.results[name]
        assert res.converged, name
        np.testing.assert_allclose(res.params["lam"], ex.truth["lam"], rtol=0.06, err_msg=name)
        np.testing.assert_allclose(res.params["P"], ex.truth["P"], atol=0.04, err_msg=name)
    np.testing.assert_allclose(cmp.results["em"].loglik, cmp.results["mle"].loglik, rtol=1e-6)


def test_simulation_is_seeded_and_follows_the_chain():
    p = {"P": np.array([[0.99, 0.01], [0.02, 0.98]]), "lam": np.array([1.0, 40.0])}
    a, b = hmm.simulate(p, n=400, seed=5), hmm.simulate(p, n=400, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, hmm.simulate(p, n=400, seed=6))
    high = a > 15
    switches = np.count_nonzero(high[1:] != high[:-1])
    assert 0 < switches < 30  # a persistent chain, not iid draws (about 200 switches)


def test_plot_states():
    from zoo.hmm_figures import plot_states

    y = np.array([1.0, 2.0, 9.0, 8.0, 1.0])
    fig = plot_states(y, np.array([0, 0, 1, 1, 0]), np.array([1.3, 8.5]))
    ax = fig.axes[0]
    assert len(ax.collections) == 2  # one scatter per state
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [1.3, 1.3, 8.5, 8.5, 1.3])


@pytest.mark.parametrize("kwargs, message", [
    ({"y": [1, 2, -1, 4]}, "y: expected non-negative counts"),
    ({"y": [1, 2.5, 3, 4]}, "y: expected integer counts"),
    ({"y": [1, np.nan, 3, 4]}, "y: expected finite values"),
    ({"y": [1.0, np.inf, 3.0, 4.0], "emission": "normal"}, "y: expected finite values"),
    ({"y": [1, 2], "k": 2}, r"y: expected at least k \+ 1 = 3 observations"),
    ({"y": [1, 2, 3], "k": 0}, "k: expected at least 1 state"),
    ({"y": [1, 2, 3], "k": 1.5}, "k: expected a positive integer"),
    ({"y": [1, 2, 3], "emission": "gamma"}, "emission: expected one of 'poisson', 'normal'"),
    ({"y": [1, 2, 3], "initial": "fixed"}, "initial: expected one of 'stationary', 'free'"),
    ({"y": [1, 2, 3, 4], "lengths": [2, 3]}, r"lengths: expected lengths summing to len\(y\) = 4, got 5"),
    ({"y": [1, 2, 3, 4], "lengths": [2, 0, 2]}, "lengths: expected positive integer"),
    ({"y": [1, 2, 3, 4], "P_prior": -1.0}, "P_prior: expected positive concentrations"),
])
def test_bad_input_is_refused(kwargs, message):
    kwargs = dict(kwargs)
    y = kwargs.pop("y")
    with pytest.raises(ValueError, match=message):
        hmm.build(y, **{"k": 2, **kwargs})


def test_bad_em_init_is_refused(quakes):
    model = hmm.build(quakes, 2)
    with pytest.raises(ValueError, match="init: expected P with rows summing to 1"):
        inference.em(model, init={"P": [[0.5, 0.6], [0.5, 0.5]], "lam": [10.0, 20.0]})
    with pytest.raises(ValueError, match=r"init: expected lam as finite numbers of shape \(2,\)"):
        inference.em(model, init={"P": P2, "lam": [10.0, 20.0, 30.0]})
