"""Default starts that are finite, and users' starts checked, for every estimator.

A mixture's means declared the usual way (``transform=ordered`` without an ``initval``) have PyMC's default initial
point ``[0, -inf]`` in the unconstrained space: every estimator used to fail there with "array must not contain
infs or NaNs"."""

import importlib.util
import warnings

import numpy as np
import pymc as pm
import pytest

import inference
from inference.functions import functions_for
from inference.starts import starting_points

TRUE_MU = np.array([-2.0, 3.0])
WEIGHTS = np.array([0.4, 0.6])
NOT_FINITE = "PyMC's default initial value of mu is not finite"


def ordered_mixture(seed: int = 1, n: int = 300) -> pm.Model:
    """Two normal components of known sigma and weights; their means ordered, with PyMC's default initial value."""
    rng = np.random.default_rng(seed)
    z = rng.random(n) < WEIGHTS[0]
    y = np.where(z, rng.normal(TRUE_MU[0], 1.0, n), rng.normal(TRUE_MU[1], 1.0, n))
    with pm.Model() as model:
        mu = pm.Normal("mu", 0.0, 10.0, shape=2, transform=pm.distributions.transforms.ordered)
        pm.NormalMixture("y", w=WEIGHTS, mu=mu, sigma=1.0, observed=y)
    return model


def packed(model, point) -> np.ndarray:
    return np.concatenate([np.ravel(point[vv.name]) for vv in model.value_vars]).astype(float)


def ours(caught) -> list[str]:
    return [str(w.message) for w in caught if NOT_FINITE in str(w.message)]


RUNS = {
    "mle": lambda m: inference.mle(m, seed=0),
    "map": lambda m: inference.map_estimate(m, seed=0),
    "laplace": lambda m: inference.laplace(m, seed=0),
    "advi": lambda m: inference.advi(m, seed=0),
    "advi-default-init": lambda m: inference.advi(m, seed=0, init="default"),
    "pathfinder": lambda m: inference.pathfinder(m, seed=0),
    "nuts": lambda m: inference.nuts(m, draws=300, tune=300, chains=2, seed=0),
    "nuts-nutpie": lambda m: inference.nuts(m, draws=300, tune=300, chains=2, seed=0, sampler="nutpie"),
}


@pytest.fixture(scope="module")
def fits():
    model = ordered_mixture()
    assert not np.all(np.isfinite(packed(model, model.initial_point())))  # the case this file is about
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, run in RUNS.items():
            if name == "nuts-nutpie" and importlib.util.find_spec("nutpie") is None:
                continue
            out[name] = run(model)
    return model, out, caught


@pytest.mark.parametrize("name", list(RUNS))
def test_every_estimator_fits_the_ordered_mixture_and_recovers_its_means(fits, name):
    _, out, _ = fits
    if name not in out:
        pytest.skip("nutpie is not installed")
    res = out[name]
    mu, sd = np.asarray(res.params["mu"]), np.asarray(res.sd["mu"])
    assert np.all(np.isfinite(mu)) and np.all(sd > 0)
    assert mu[0] < mu[1]
    assert np.all(np.abs(mu - TRUE_MU) < 4 * sd), (mu, sd)


def test_the_default_start_is_finite_and_said_once_per_model(fits):
    model, out, caught = fits
    said = ours(caught)
    assert len(said) == 1, said
    assert "\n" not in said[0]
    assert "mu_ordered__ = [0, -inf]" in said[0] and "draw from the prior" in said[0] and "sorted" in said[0]
    fns = functions_for(model)
    assert np.all(np.isfinite(fns.initial_theta))
    assert np.isfinite(fns.value_and_grad("logp")(fns.initial_theta)[0])
    assert np.all(np.diff(fns.initial_start.replaced["mu"]) > 0)
    assert starting_points(model)[0] is fns.initial_theta


def test_the_same_model_gets_the_same_start_in_every_build():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = functions_for(ordered_mixture()), functions_for(ordered_mixture())
        assert np.array_equal(a.initial_theta, b.initial_theta)
        assert inference.mle(a.model, seed=0).params["mu"].tolist() == inference.mle(b.model, seed=0).params[
            "mu"].tolist()


def mixed_model(ordered_initval: bool) -> pm.Model:
    """A positive scale, a simplex and an ordered vector (with or without an initval) in one model."""
    y = np.random.default_rng(2).normal(size=50)
    with pm.Model() as model:
        sigma = pm.HalfNormal("sigma", 2.0)
        w = pm.Dirichlet("w", np.ones(3))
        mu = pm.Normal("mu", 0.0, 5.0, shape=3, transform=pm.distributions.transforms.ordered,
                       initval=np.array([-1.0, 0.0, 1.0]) if ordered_initval else None)
        pm.NormalMixture("y", w=w, mu=mu, sigma=sigma, observed=y)
    return model


def test_a_finite_default_point_is_kept_exactly_and_nothing_is_said():
    model = mixed_model(ordered_initval=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fns = functions_for(model)
        theta = fns.initial_theta
        starts = starting_points(model, n_init=2, seed=0)
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    assert np.array_equal(theta, packed(model, model.initial_point()))
    assert starts[0] is theta and fns.initial_start.replaced == {}


def test_a_positive_and_a_simplex_variable_keep_their_start_when_an_ordered_one_moves():
    model = mixed_model(ordered_initval=False)
    default = model.initial_point()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fns = functions_for(model)
        theta = fns.initial_theta
    assert len(ours(caught)) == 1 and "sigma" not in ours(caught)[0] and "w =" not in ours(caught)[0]
    point = fns.unpack_unconstrained(theta)
    for name in ("sigma_log__", "w_simplex__"):
        assert np.array_equal(point[name], default[name]), name
    assert not np.all(np.isfinite(default["mu_ordered__"])) and np.all(np.isfinite(point["mu_ordered__"]))
    assert list(fns.initial_start.replaced) == ["mu"]
    assert np.isfinite(fns.value_and_grad("logp")(theta)[0])


@pytest.mark.parametrize("start, message", [
    ({"sigma": np.nan, "w": [0.2, 0.3, 0.5], "mu": [-1.0, 0.0, 1.0]}, r"^start: sigma = nan is not finite$"),
    ({"sigma": 1.0, "w": [0.2, 0.3, 0.5], "mu": [-1.0, np.inf, 1.0]}, r"^start: mu = \[-1, inf, 1\] is not finite$"),
    ({"sigma": -1.0, "w": [0.2, 0.3, 0.5], "mu": [-1.0, 0.0, 1.0]},
     r"^start: values outside the support of the model's variables: sigma = -1 is outside the support"),
    ({"sigma": 1.0, "w": [0.2, 0.3, 0.5], "mu": [1.0, 0.0, 2.0]},
     r"^start: values outside the support of the model's variables: mu = \[1, 0, 2\] is outside the support"),
    ({"sigma": 1.0, "w": [0.0, 0.5, 0.5], "mu": [-1.0, 0.0, 1.0]},
     r"^start: values outside the support of the model's variables: w = \[0, 0.5, 0.5\] is outside the support"),
])
def test_a_users_start_that_cannot_be_started_from_is_refused_naming_the_variable(start, message):
    model = mixed_model(ordered_initval=True)
    with pytest.raises(ValueError, match=message) as refused:
        inference.mle(model, start=start)
    assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match=message):
        inference.laplace(model, start=start)


def test_a_value_outside_the_support_of_a_variable_without_a_transform_is_refused():
    with pm.Model() as model:
        u = pm.Uniform("u", 0.0, 1.0, default_transform=None)
        pm.Normal("y", u, 1.0, observed=[0.3, 0.6])
    with pytest.raises(ValueError, match=r"^start: .*: u = 1.5 is outside the support .*log density there"):
        starting_points(model, start={"u": 1.5})
    np.testing.assert_allclose(starting_points(model, start={"u": 0.25})[0], [0.25])


def test_a_model_with_no_finite_start_is_refused_in_one_line_naming_the_terms():
    # the data lie above every upper bound the prior and the jitter reach
    with pm.Model() as model:
        b = pm.HalfNormal("b", 1.0)
        pm.Uniform("y", 0.0, b, observed=[50.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in (lambda: inference.mle(model), lambda: inference.nuts(model, draws=10, tune=10)):
            with pytest.raises(ValueError, match=r"^model: no finite starting point found: .*\(the terms of y\)") as no:
                run()
            assert "\n" not in str(no.value)
        # a start of the user's own is still used
        assert inference.mle(model, start={"b": 60.0}).params["b"] == pytest.approx(50.0, rel=1e-3)
