"""Every (model, estimator) pair through one test of the shared contract."""

import numpy as np
import pytest

import inference
from inference.functions import functions_for
from models import gaussian_mixture, logistic, normal, poisson

CASES = {
    "normal": lambda: (normal.example(), normal.build),
    "poisson-k1": lambda: (poisson.example(k=1), poisson.build),
    "poisson-k2": lambda: (poisson.example(k=2), poisson.build),
    "logistic": lambda: (logistic.example(), logistic.build),
    "gaussian_mixture": lambda: (gaussian_mixture.example(), gaussian_mixture.build),
}
_CACHE = {}


def comparison(case):
    if case not in _CACHE:
        ex, build = CASES[case]()
        model = build(*ex.args, **ex.build_kwargs)
        _CACHE[case] = (ex, model, inference.compare(model, truth=ex.truth, seed=0, raise_errors=True))
    return _CACHE[case]


@pytest.mark.parametrize("estimator", list(inference.ESTIMATORS))
@pytest.mark.parametrize("case", list(CASES))
def test_contract(case, estimator):
    ex, model, comp = comparison(case)
    res = comp.results[estimator]
    fns = functions_for(model)
    assert res.method == estimator
    assert res.converged
    free = [rv.name for rv in model.free_RVs]
    for name in free:
        assert name in res.params and res.params[name].shape == np.shape(ex.truth[name])
        assert res.sd[name].shape == res.params[name].shape
    # the log-likelihood column is the PyMC model's own, at the reported point
    np.testing.assert_allclose(res.loglik, fns.loglik_at({n: res.params[n] for n in free}), rtol=1e-10)
    assert res.time_compile >= 0 and res.time_run >= 0
    if estimator in ("em", "map_em"):
        assert all(np.isnan(v).all() for v in res.sd.values())
    else:
        assert all(np.all(np.isfinite(v)) and np.all(v > 0) for v in res.sd.values())
    # every estimator lands near the truth the data were drawn from (5 standard errors, the MLE's as yardstick)
    mle = comp.results["mle"]
    for name in free:
        assert np.all(np.abs(res.params[name] - ex.truth[name]) < 5 * mle.sd[name] + 1e-12), (name, res.params)
    # its ArviZ form holds the same numbers
    tree = res.to_arviz()
    post = tree["posterior"]
    for name in free:
        np.testing.assert_allclose(post[name].values.mean(axis=(0, 1)), res.params[name], rtol=1e-12)
    # and no estimator beats the MLE at its own game
    assert res.loglik <= mle.loglik + 1e-8 * abs(mle.loglik)


@pytest.mark.parametrize("case", list(CASES))
def test_table_and_tidy(case):
    ex, model, comp = comparison(case)
    table = comp.table()
    for name in inference.ESTIMATORS:
        assert name in table
    assert "truth" in table and "loglik" in table
    tidy = comp.tidy()
    assert set(tidy["estimator"]) == set(inference.ESTIMATORS)
    row = tidy[(tidy.estimator == "mle")].iloc[0]
    first = next(iter(comp.results["mle"].params))
    assert row["estimate"] == pytest.approx(float(np.ravel(comp.results["mle"].params[first])[0]))
    summary = comp.summary()
    assert list(summary.index) == list(inference.ESTIMATORS)
    assert summary["converged"].all()


def test_same_seed_same_numbers():
    ex = poisson.example(k=2)
    a = inference.compare(poisson.build(ex.data, k=2), ["em", "advi"], seed=7)
    b = inference.compare(poisson.build(ex.data, k=2), ["em", "advi"], seed=7)
    for est in ("em", "advi"):
        for name in ("w", "lam"):
            np.testing.assert_array_equal(a.results[est].params[name], b.results[est].params[name])


def test_em_on_a_foreign_model_names_the_supported_models():
    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x", 0, 1, observed=[0.1, 0.2])
        pm.Normal("z")
    with pytest.raises(TypeError, match="EM needs a model built by one of the zoo's models \\(normal, poisson"):
        inference.em(model)
    # the other estimators run on any pm.Model; compare records EM's refusal and goes on
    with pytest.warns(RuntimeWarning, match="em: model: EM needs a model built by one of the zoo's models"):
        comp = inference.compare(model, ["map", "em"])
    assert "em" in comp.errors and "map" in comp.results


@pytest.mark.parametrize("call, message", [
    (lambda m: inference.em(m, n_init=0), "n_init: expected a positive integer"),
    (lambda m: inference.em(m, tol=-1.0), "tol: expected a non-negative number"),
    (lambda m: inference.em(m, max_iter=0), "max_iter: expected a positive integer"),
    (lambda m: inference.em(m, seed=-3), "seed: expected a non-negative integer"),
    (lambda m: inference.mle(m, start={"mu": 1.0}), "params: missing value for free variable"),
    (lambda m: inference.mle(m, start={"mu": 1.0, "sigma": -2.0}), "start: values outside the support"),
    (lambda m: inference.advi(m, max_iter=0), "max_iter: expected a positive integer"),
    (lambda m: inference.nuts(m, chains=1), "chains: expected at least 2 chains"),
    (lambda m: inference.compare(m, ["mle", "bogus"]), "estimators: unknown estimator 'bogus'"),
])
def test_bad_arguments_are_refused_before_work(call, message):
    model = normal.build([1.0, 2.0, 3.5])
    with pytest.raises(ValueError, match=message):
        call(model)
