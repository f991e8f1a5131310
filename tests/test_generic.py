"""Every registered model x every estimator through one test of the shared contract, generated from the registry."""

import numpy as np
import pytest

import inference
from inference import registry
from inference.compare import unavailable
from inference.functions import functions_for

SPECS = registry.models()
CASES = [(name, case) for name, spec in SPECS.items() for case in spec.test_cases]
_CACHE = {}


def comparison(model_name, case):
    key = (model_name, case)
    if key not in _CACHE:
        spec = SPECS[model_name]
        ex = spec.example(**spec.test_cases[case])
        model = spec.build(*ex.args, **ex.build_kwargs)
        skip = unavailable(model)  # by design (the model's hooks) or by capability (no EM or VEM math), with reasons
        names = [e for e in inference.ESTIMATORS if e not in skip]
        _CACHE[key] = (ex, model, inference.compare(model, names, truth=ex.truth, seed=0, raise_errors=True), skip)
    return _CACHE[key]


def test_registry_holds_the_zoos_models():
    assert {"normal", "poisson", "logistic", "gaussian_mixture", "missing_data"} <= set(SPECS)
    for name, spec in SPECS.items():
        assert spec.name == name and registry.get(name) is spec


@pytest.mark.parametrize("estimator", list(inference.ESTIMATORS))
@pytest.mark.parametrize("model_name, case", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_contract(model_name, case, estimator):
    ex, model, comp, skip = comparison(model_name, case)
    if estimator in skip:
        assert estimator not in comp.results and skip[estimator]  # skipped by design, with a reason
        assert estimator not in inference.default_estimators(model)
        return
    res = comp.results[estimator]
    fns = functions_for(model)
    assert res.method == estimator
    assert res.converged
    free = [rv.name for rv in model.free_RVs]
    shown = [n for n in (res.params if comp.public is None else comp.public) if n in (ex.truth or {})]
    for name in free:
        assert name in res.params and res.sd[name].shape == res.params[name].shape
    for name in shown:
        assert res.params[name].shape == np.shape(ex.truth[name])
    # the log-likelihood column is the PyMC model's own, at the reported point
    np.testing.assert_allclose(res.loglik, fns.loglik_at({n: res.params[n] for n in free}), rtol=1e-10)
    assert res.time_compile >= 0 and res.time_run >= 0
    assert all(np.all(np.isfinite(res.sd[n])) and np.all(res.sd[n] >= 0) for n in free)
    assert all(np.all(res.sd[n] > 0) for n in free if n.startswith(("mu", "lam", "w", "alpha", "beta")))
    twin = comp.results.get({"em": "mle", "map_em": "map"}.get(estimator))
    if twin is not None:  # EM's errors: the observed information at EM's point, the optimiser's point
        for n in free:
            np.testing.assert_allclose(res.sd[n], twin.sd[n], rtol=1e-5, atol=1e-12 * np.max(twin.sd[n]))
    # every estimator lands near the truth the data were drawn from (5 standard errors, the MLE's as yardstick;
    # a model whose MLE is not in its list, the topic model, is held to its truth in its own tests, after matching)
    mle = comp.results.get("mle")
    for name in shown if mle is not None else []:
        err = np.abs(res.params[name] - ex.truth[name])
        assert np.all(err < 5 * mle.sd[name] + 1e-12), (name, res.params[name], ex.truth[name])
    # its ArviZ form holds the same numbers
    post = res.to_arviz()["posterior"]
    for name in free:
        np.testing.assert_allclose(post[name].values.mean(axis=(0, 1)), res.params[name], rtol=1e-12)
    # and no estimator beats the MLE at its own game
    assert mle is None or res.loglik <= mle.loglik + 1e-8 * abs(mle.loglik)


@pytest.mark.parametrize("model_name, case", CASES, ids=[f"{m}-{c}" for m, c in CASES])
def test_table_and_tidy(model_name, case):
    ex, model, comp, skip = comparison(model_name, case)
    ran = [e for e in inference.ESTIMATORS if e not in skip]
    table = comp.table()
    if comp.public != []:  # an empty public list: the model shows metrics, not a parameter table
        header = table.splitlines()[0].split()
        assert header == (["truth"] if ex.truth else []) + ran  # every estimator that ran is a column, in order
    summary = comp.summary()
    assert list(summary.index) == ran and summary["converged"].all()
    tidy = comp.tidy()
    if comp.public != []:
        assert list(dict.fromkeys(tidy["estimator"])) == ran
        row = tidy[(tidy.estimator == ran[0])].iloc[0]
        assert row["estimate"] == pytest.approx(float(np.ravel(comp.results[ran[0]].params[row["variable"]])[0]))
    else:
        assert tidy.empty


def test_same_seed_same_numbers():
    from models import poisson

    ex = poisson.example(k=2)
    a = inference.compare(poisson.build(ex.data, k=2), ["em", "advi"], seed=7)
    b = inference.compare(poisson.build(ex.data, k=2), ["em", "advi"], seed=7)
    for est in ("em", "advi"):
        for name in ("w", "lam"):
            np.testing.assert_array_equal(a.results[est].params[name], b.results[est].params[name])


def test_em_on_a_model_without_em_math_says_what_is_missing():
    import pymc as pm

    with pm.Model() as model:
        pm.Normal("x", 0, 1, observed=[0.1, 0.2])
        pm.Normal("z")
    with pytest.raises(TypeError, match="model: EM needs hand-derived EM math attached to the pm.Model"):
        inference.em(model)
    # the other estimators run on any pm.Model; compare records EM's refusal and goes on
    with pytest.warns(RuntimeWarning, match="em: model: EM needs hand-derived EM math"):
        comp = inference.compare(model, ["map", "em"])
    assert "em" in comp.errors and "map" in comp.results


def test_an_em_option_the_model_does_not_take_is_named():
    from models import gaussian_mixture, normal

    model = normal.build([1.0, 2.0, 3.5])
    with pytest.raises(TypeError, match="reg_covar: the normal model's EM takes no options"):
        inference.em(model, reg_covar=1e-3)
    gm = gaussian_mixture.build(gaussian_mixture.example().data, k=2)
    with pytest.raises(TypeError, match="ridge: the gaussian_mixture model's EM takes reg_covar"):
        inference.em(gm, ridge=1e-3)
    assert inference.em(gm, reg_covar=1e-6).converged


@pytest.mark.parametrize("call, message", [
    (lambda m: inference.em(m, n_init=0), "n_init: expected a positive integer"),
    (lambda m: inference.em(m, tol=-1.0), "tol: expected a non-negative number"),
    (lambda m: inference.em(m, max_iter=0), "max_iter: expected a positive integer"),
    (lambda m: inference.em(m, seed=-3), "seed: expected a non-negative integer"),
    (lambda m: inference.em(m, standard_errors="no"), "standard_errors: expected a boolean"),
    (lambda m: inference.mle(m, start={"mu": 1.0}), "params: missing value for free variable"),
    (lambda m: inference.mle(m, start={"mu": 1.0, "sigma": -2.0}), "start: values outside the support"),
    (lambda m: inference.advi(m, max_iter=0), "max_iter: expected a positive integer"),
    (lambda m: inference.nuts(m, chains=1), "chains: expected at least 2 chains"),
    (lambda m: inference.compare(m, ["mle", "bogus"]), "estimators: unknown estimator 'bogus'"),
])
def test_bad_arguments_are_refused_before_work(call, message):
    from models import normal

    model = normal.build([1.0, 2.0, 3.5])
    with pytest.raises(ValueError, match=message):
        call(model)
