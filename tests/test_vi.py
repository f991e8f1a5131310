"""ADVI against closed forms: on a Gaussian target the best full-rank Gaussian is the target itself, and the best
mean-field one has the target's mean and variances 1 / (precision diagonal) (Bishop 2006, section 10.1.2)."""

import numpy as np
import pymc as pm
import pytest

import inference

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.9], [0.9, 1.0]])


@pytest.fixture(scope="module")
def gaussian():
    with pm.Model() as model:
        pm.MvNormal("x", MEAN, COV)
        pm.Normal("y", 0.0, 1.0, observed=0.3)  # an observed node, so the model has a likelihood column
    return model


def test_fullrank_advi_recovers_a_gaussian_target(gaussian):
    res = inference.fullrank_advi(gaussian, seed=3)
    assert res.converged
    np.testing.assert_allclose(res.info["q_mean"], MEAN, atol=0.05)
    np.testing.assert_allclose(res.info["q_cov"], COV, atol=0.08)
    np.testing.assert_allclose(res.params["x"], MEAN, atol=0.06)
    np.testing.assert_allclose(res.sd["x"], np.sqrt(np.diag(COV)), rtol=0.08)


def test_mean_field_advi_has_the_known_variance_shrinkage(gaussian):
    res = inference.advi(gaussian, seed=3)
    assert res.converged
    expected = 1.0 / np.diag(np.linalg.inv(COV))  # 0.19: far below the marginal variance 1
    np.testing.assert_allclose(res.info["q_mean"], MEAN, atol=0.05)
    np.testing.assert_allclose(np.diag(res.info["q_cov"]), expected, rtol=0.1)
    assert res.info["q_cov"][0, 1] == 0.0
    np.testing.assert_allclose(res.sd["x"], np.sqrt(expected), rtol=0.08)


def test_same_seed_same_fit_and_the_trace_is_the_elbo(gaussian):
    a = inference.advi(gaussian, seed=11, window=200)
    b = inference.advi(gaussian, seed=11, window=200)
    np.testing.assert_array_equal(a.trace, b.trace)
    np.testing.assert_array_equal(a.params["x"], b.params["x"])
    # the ELBO of the exact mean-field optimum: E_q log p + entropy, in closed form for Gaussians
    prec = np.linalg.inv(COV)
    var = 1.0 / np.diag(prec)
    elbo = (-0.5 * np.sum(prec.diagonal() * var) - np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(COV)[1]
            + 0.5 * np.sum(np.log(2 * np.pi * np.e * var)))
    elbo += -0.5 * 0.3**2 - 0.5 * np.log(2 * np.pi)  # the observed node's log density, a constant
    last = a.trace[-200:]
    assert abs(last.mean() - elbo) < 4 * last.std() / np.sqrt(len(last)) + 0.02
