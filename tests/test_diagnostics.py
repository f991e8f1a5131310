"""Diagnostics: PSIS k-hat on a case with a known answer, approximation quality and verdicts, the Laplace
approximation, power-scaling sensitivity and the prior sweep."""

import warnings

import numpy as np
import pymc as pm
import pytest
from scipy import stats

import inference
from inference.functions import functions_for
from inference.quality import importance_ratios
from models import logistic, normal


@pytest.fixture(scope="module")
def normal_data():
    return normal.simulate(n=200, seed=1)


# --------------------------------------------------------------------------------------------- PSIS k-hat
def test_khat_of_a_too_narrow_gaussian_is_three_quarters():
    """q = N(0, 1) for p = N(0, 2^2): the ratio p/q grows like exp(3 x^2 / 8), whose tail under q is generalised
    Pareto with shape k = 1 - 1/2^2 = 0.75. The estimate from 10^5 draws scatters around it with sd about 0.035
    (five seeds gave 0.68-0.77) and approaches it from below (the tail is Pareto only asymptotically), so 0.12 is
    three sds of room; the wrong convention for the log ratios gives about 0 and fails."""
    x = np.random.default_rng(0).standard_normal(100_000)
    log_ratios = stats.norm.logpdf(x, 0, 2) - stats.norm.logpdf(x)
    log_weights, khat = inference.psis(log_ratios)
    assert abs(khat - 0.75) < 0.12
    assert khat > inference.khat_threshold(x.size) - 0.05
    np.testing.assert_allclose(np.exp(log_weights).sum(), 1.0, rtol=1e-12)
    # a q wider than p has bounded ratios: k-hat well below 0.5
    y = np.random.default_rng(1).normal(0, 2, size=100_000)
    assert inference.psis(stats.norm.logpdf(y) - stats.norm.logpdf(y, 0, 2))[1] < 0.3


def test_psis_of_an_exact_approximation_has_equal_weights():
    log_weights, khat = inference.psis(np.full(1000, -3.2))
    np.testing.assert_allclose(np.exp(log_weights), 1e-3)
    assert khat == -np.inf


def test_khat_threshold():
    assert inference.khat_threshold(100) == pytest.approx(0.5)
    assert inference.khat_threshold(1000) == pytest.approx(2 / 3)
    assert inference.khat_threshold(100_000) == 0.7
    with pytest.raises(ValueError, match="n_draws: expected a integer >= 2"):
        inference.khat_threshold(1)


def test_psis_weights_correct_a_shifted_gaussian():
    """Importance sampling from q = N(0.3, 1) for p = N(0, 1): the PSIS mean is near 0, the raw mean near 0.3."""
    x = np.random.default_rng(2).normal(0.3, 1.0, size=20_000)
    lw, khat = inference.psis(stats.norm.logpdf(x) - stats.norm.logpdf(x, 0.3, 1.0))
    assert khat < 0.5
    assert abs(np.exp(lw) @ x) < 0.03 and abs(x.mean() - 0.3) < 0.03


# --------------------------------------------------------------------------------------------- Laplace
def test_laplace_is_exact_for_a_gaussian_target():
    mean = np.array([1.0, -1.0])
    cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    with pm.Model() as model:
        pm.MvNormal("x", mean, cov)
    res = inference.laplace(model, seed=0)
    np.testing.assert_allclose(res.info["q_mean"], mean, atol=1e-6)
    np.testing.assert_allclose(res.info["q_cov"], cov, rtol=1e-5)
    assert res.converged and res.draws["x"].shape == (1, 4000, 2)
    np.testing.assert_allclose(res.sd["x"], np.sqrt(np.diag(cov)), rtol=0.05)


def test_laplace_of_a_positive_scale_is_log_normal(normal_data):
    """sigma > 0 is sampled as exp(log sigma): its draws are positive and right-skewed."""
    res = inference.laplace(normal.build(normal_data), seed=0)
    s = res.draws["sigma"].ravel()
    assert s.min() > 0 and stats.skew(s) > 0
    log_sd = float(np.sqrt(res.info["q_cov"][1, 1]))  # theta = (mu, log sigma)
    assert np.log(s).std() == pytest.approx(log_sd, rel=0.05)


# --------------------------------------------------------------------------------------------- quality
def test_fullrank_advi_on_the_normal_model_is_reliable():
    model = normal.build(normal.example().data)
    res = inference.fullrank_advi(model, seed=0)
    log_ratios, _ = importance_ratios(res, model)
    assert inference.psis(log_ratios)[1] < 0.5


def _collinear_logistic(n=300, rho=0.99, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(n)
    X = np.column_stack([x0, rho * x0 + np.sqrt(1 - rho**2) * rng.standard_normal(n)])
    y = logistic.simulate(X, {"alpha": -0.5, "beta": np.array([1.0, 1.0])}, seed=seed)
    return X, y


def test_mean_field_advi_on_collinear_features_is_unreliable():
    """Two features correlated 0.99 make beta's posterior a narrow ridge; a diagonal Gaussian cannot follow it,
    so it is too narrow across the ridge's length and the importance ratios get a heavy tail."""
    X, y = _collinear_logistic()
    assert np.corrcoef(X.T)[0, 1] > 0.98
    model = logistic.build(X, y)
    comp = inference.compare(model, ["advi", "fullrank_advi", "nuts"], seed=0,
                             options={"nuts": {"draws": 500, "tune": 500}}, raise_errors=True)
    quality = inference.approximation_quality(comp, model)
    advi = quality[quality.estimator == "advi"]
    assert advi["khat"].iloc[0] > 0.7 and advi["flag"].all()
    verdicts = inference.verdicts(quality)
    assert verdicts["advi"].startswith("unreliable: k-hat ")
    assert quality[quality.estimator == "fullrank_advi"]["khat"].iloc[0] < advi["khat"].iloc[0]


def test_verdicts_name_the_worst_parameter_and_the_flag_threshold():
    """An approximation without a known density (no k-hat) is judged on its means alone."""
    with pm.Model() as model:
        pm.Normal("a")
        pm.Normal("b")
    rng = np.random.default_rng(0)

    def result(name, shift_a, shift_b):
        draws = {"a": rng.normal(shift_a, 1, size=(2, 4000)), "b": rng.normal(shift_b, 1, size=(2, 4000))}
        return inference.Result(method=name, params={k: v.mean() for k, v in draws.items()},
                                sd={k: v.std() for k, v in draws.items()}, loglik=0.0, draws=draws)

    results = {"nuts": result("nuts", 0, 0), "close": result("close", 0.05, 0.0), "far": result("far", 0.1, 0.5)}
    quality = inference.approximation_quality(results, model)
    assert set(quality.estimator) == {"close", "far"} and quality["khat"].isna().all()
    verdicts = inference.verdicts(quality)
    assert verdicts["close"] == "fine"
    assert verdicts["far"].startswith("off by 0.") and verdicts["far"].endswith(" sd on b")
    assert quality.set_index(["estimator", "parameter"]).loc[("far", "b"), "flag"]
    with pytest.raises(ValueError, match="reference: expected a result with draws named 'nuts'"):
        inference.approximation_quality({"far": results["far"]}, model)


# --------------------------------------------------------------------------------------------- power scaling
def test_posterior_tree_holds_the_models_own_log_prior_and_likelihood(normal_data):
    model = normal.build(normal_data)
    res = inference.laplace(model, seed=0, draws=50)
    tree = inference.posterior_tree(res, model)
    mu, sigma = res.draws["mu"][0, 7], res.draws["sigma"][0, 7]
    value = float(tree["log_prior"]["prior"].values[0, 7])
    by_pymc = model.compile_logp(vars=model.free_RVs, jacobian=False)({"mu": mu, "sigma_log__": np.log(sigma)})
    assert value == pytest.approx(float(by_pymc), rel=1e-12)
    # PyMC's HalfNormal constant is rounded at about 1e-8
    assert value == pytest.approx(stats.norm.logpdf(mu, 0, 10) + stats.halfnorm.logpdf(sigma, scale=5), rel=1e-7)
    pointwise = tree["log_likelihood"]["y"].values[0, 7]
    np.testing.assert_allclose(pointwise, stats.norm.logpdf(normal_data, mu, sigma), rtol=1e-10)
    fns = functions_for(model)
    assert pointwise.sum() == pytest.approx(fns.loglik_at({"mu": mu, "sigma": sigma}), rel=1e-10)


def test_power_scaling_flags_a_prior_data_conflict_and_not_the_default_prior(normal_data):
    y = normal_data
    far = (float(y.mean() + 10 * y.std()), 0.1)  # a confident prior ten data sds away from the data
    out = {}
    for label, kwargs in (("benign", {}), ("conflict", {"mu_prior": far})):
        model = normal.build(y, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = inference.nuts(model, seed=0, draws=500, tune=500)
        out[label] = inference.power_scaling(res, model)
    assert (out["benign"]["diagnosis"] == "✓").all()
    assert (out["benign"]["prior"] < 0.05).all()
    assert out["conflict"].loc["mu", "diagnosis"] == "potential prior-data conflict"


def test_prior_sweep_moves_map_towards_the_mle_as_the_prior_widens():
    y = normal.simulate(n=30, seed=3)
    values = [(0.0, 0.05), (0.0, 0.5), (0.0, 50.0)]
    frame = inference.prior_sweep(normal.build, y, prior="mu_prior", values=values, estimators=("map", "map_em"))
    assert list(frame.columns) == ["value", "scale", "estimator", "parameter", "estimate", "sd"]
    mu = frame[frame.parameter == "mu"].pivot(index="scale", columns="estimator", values="estimate")
    assert mu["mle"].nunique() == 1  # the MLE ignores the prior
    gap = (mu["mle"] - mu["map"]).abs()
    assert gap.is_monotonic_decreasing and gap.iloc[-1] < 0.01 * gap.iloc[0]
    np.testing.assert_allclose(mu["map_em"], mu["map"], rtol=1e-6)


def test_default_sweep_reads_the_build_signature():
    prior, values = inference.default_sweep(normal.build)
    assert prior == "sigma_prior" and values[2] == 5.0 and len(values) == 5
    prior, values = inference.default_sweep(logistic.build)
    assert prior == "alpha_prior" and values[0] == (0.0, 0.25)


@pytest.mark.parametrize("kwargs, message", [
    ({"prior": "nope"}, "prior: expected the name of an argument of build"),
    ({"values": []}, "values: expected a non-empty list"),
    ({"estimators": ("map", "bogus")}, "estimators: unknown estimator 'bogus'"),
])
def test_prior_sweep_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        inference.prior_sweep(normal.build, [1.0, 2.0, 3.0], **kwargs)


def test_bad_arguments_are_refused():
    model = normal.build([1.0, 2.0, 3.5])
    with pytest.raises(ValueError, match="draws: expected a positive integer"):
        inference.laplace(model, draws=0)
    with pytest.raises(ValueError, match="log_ratios: expected a 1-D array"):
        inference.psis(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="threshold: expected a positive number"):
        inference.power_scaling(inference.laplace(model, draws=20), model, threshold=-1)
    with pytest.raises(ValueError, match="result: the map result has no draws"):
        inference.posterior_tree(inference.map_estimate(model), model)


# --------------------------------------------------------------------------------------------- the application
def test_zoo_compare_prints_verdicts_and_writes_the_quality_table(tmp_path, capsys):
    import json

    from zoo.cli import main

    code = main(["compare", "normal", "--estimators", "laplace,nuts", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "approximations against nuts:\n  laplace: " in printed
    record = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    rows = record["quality"]["rows"]
    assert {r["parameter"] for r in rows} == {"mu", "sigma"} and all(r["estimator"] == "laplace" for r in rows)
    assert record["quality"]["verdicts"]["laplace"] in printed
    page = (tmp_path / "index.html").read_text()
    assert "Approximation quality (against nuts)" in page and (tmp_path / "normal" / "approximations.png").exists()


def test_sweep_figure_and_tables_from_a_sweep():
    from zoo.diagnostics import lines, sweep_table
    from zoo.figures import prior_sweep_figure

    y = normal.simulate(n=30, seed=3)
    sweep = inference.prior_sweep(normal.build, y, prior="sigma_prior", values=[0.5, 5.0], estimators=("map",))
    table = sweep_table(sweep)
    assert list(table.columns) == [0.5, 5.0] and ("sigma", "mle") in table.index
    text = "\n".join(lines({"sweep": sweep, "sweep_prior": "sigma_prior"}))
    assert "prior sweep over sigma_prior" in text
    fig = prior_sweep_figure(sweep, "sigma_prior", "normal")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"


def test_zoo_compare_sensitivity_reaches_the_json_the_report_and_the_figures(tmp_path, capsys):
    import json

    from zoo.cli import main

    code = main(["compare", "normal", "--estimators", "mle,map,laplace,nuts", "--sensitivity", "--quiet",
                 "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "results.json").read_text())["runs"][0]
    sens = record["sensitivity"]
    # power-scaling for every method with draws, each parameter with both sensitivities and a diagnosis
    assert set(sens["power_scaling"]) == {"laplace", "nuts"}
    for table in sens["power_scaling"].values():
        assert set(table) == {"mu", "sigma"}
        for row in table.values():
            assert row["prior"] >= 0 and row["likelihood"] >= 0 and isinstance(row["diagnosis"], str)
    # the default priors of the normal model are benign: no conflict is reported for NUTS
    assert all("conflict" not in row["diagnosis"] for row in sens["power_scaling"]["nuts"].values())
    # the sweep refits the run's sweepable estimators (map, nuts: not mle, not laplace) over five values,
    # with the MLE as the yardstick
    sweep = sens["prior_sweep"]
    rows = sweep["rows"]
    assert {r["estimator"] for r in rows} == {"map", "nuts", "mle"}
    assert len({r["value"] if not isinstance(r["value"], list) else tuple(r["value"]) for r in rows}) == 5
    assert f"prior sweep over {sweep['prior']}" in printed
    # the MAP of the parameter under the swept prior moves towards the MLE as that prior widens
    param = sweep["prior"].removesuffix("_prior")
    by_scale = {r["scale"]: r["estimate"] for r in rows if r["estimator"] == "map" and r["parameter"] == param}
    mle = next(r["estimate"] for r in rows if r["estimator"] == "mle" and r["parameter"] == param)
    gaps = [abs(by_scale[s] - mle) for s in sorted(by_scale)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < gaps[0]
    page = (tmp_path / "index.html").read_text()
    assert "<h3>Sensitivity</h3>" in page and f"prior sweep over {sweep['prior']}" in page
    assert (tmp_path / "normal" / "prior_sweep.png").exists()
    assert "src='normal/prior_sweep.png'" in page
