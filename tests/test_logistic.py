"""Logistic regression: statsmodels and scikit-learn as peers, Pólya-Gamma EM, separation, bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression

import inference
from inference.functions import functions_for
from models import logistic
from zoo.cli import main


@pytest.fixture(scope="module")
def spector():
    """Spector & Mazzeo (1980), shipped with statsmodels: 32 students, GPA, TUCE, PSI -> GRADE."""
    d = sm.datasets.spector.load_pandas()
    X, y = d.exog.to_numpy(dtype=float), d.endog.to_numpy(dtype=float)
    return X, y, logistic.build(X, y, feature_names=list(d.exog.columns))


@pytest.fixture(scope="module")
def statsmodels_fit(spector):
    X, y, _ = spector
    return sm.Logit(y, sm.add_constant(X)).fit(disp=0, method="newton", tol=1e-14, maxiter=200)


def coef(res):
    return np.concatenate([[float(res.params["alpha"])], res.params["beta"]])


def se(res):
    return np.concatenate([[float(res.sd["alpha"])], res.sd["beta"]])


def test_mle_matches_statsmodels(spector, statsmodels_fit):
    res = inference.mle(spector[2])
    assert res.converged
    np.testing.assert_allclose(coef(res), statsmodels_fit.params, rtol=1e-6)
    np.testing.assert_allclose(se(res), statsmodels_fit.bse, rtol=1e-4)
    np.testing.assert_allclose(res.loglik, statsmodels_fit.llf, rtol=1e-10)


def test_mle_matches_sklearn(spector):
    X, y, model = spector
    sk = LogisticRegression(penalty=None, tol=1e-12, max_iter=100_000).fit(X, y)
    res = inference.mle(model)
    np.testing.assert_allclose(coef(res), np.r_[sk.intercept_, sk.coef_[0]], rtol=1e-4)


def test_em_reaches_the_mle(spector, statsmodels_fit):
    res = inference.em(spector[2])
    assert res.converged
    np.testing.assert_allclose(coef(res), statsmodels_fit.params, rtol=1e-6)


def test_em_is_monotone_and_matches_pymc(spector):
    model = spector[2]
    res = inference.em(model, keep_path=True, seed=3)
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    fns = functions_for(model)
    for params, ll in zip(res.info["path"][::5], res.trace[::5]):
        np.testing.assert_allclose(fns.loglik_at(params), ll, rtol=1e-8)


def test_map_em_matches_map(spector):
    model = spector[2]
    a, b = inference.em(model, prior=True), inference.map_estimate(model)
    np.testing.assert_allclose(coef(a), coef(b), rtol=1e-6)
    # the Normal(0, 2.5) priors shrink the large intercept a lot on 32 rows
    assert abs(coef(a)[0]) < abs(coef(inference.mle(model))[0]) / 2


def test_pg_mean_is_accurate_near_zero():
    psi = np.array([0.0, 1e-12, 1e-6, 9.99e-4, 1e-3, 0.5, 3.0, -3.0, 50.0])
    exact = np.where(psi == 0, 0.25, np.tanh(np.abs(psi) / 2) / (2 * np.abs(np.where(psi == 0, 1, psi))))
    got = logistic.pg_mean(psi)
    np.testing.assert_allclose(got, exact, rtol=1e-13)
    # continuous across the switch to the series
    assert abs(logistic.pg_mean(0.000999999) - logistic.pg_mean(0.001000001)) < 1e-12


@pytest.fixture(scope="module")
def builtin():
    ex = logistic.example()
    model = logistic.build(*ex.args, **ex.build_kwargs)
    return ex, model, inference.compare(model, truth=ex.truth, seed=0, raise_errors=True)


def test_builtin_example_shape(builtin):
    ex, _, _ = builtin
    X, y = ex.data
    assert X.shape == (800, 2) and ex.extra["X_test"].shape == (200, 2)
    assert set(np.unique(y)) == {0.0, 1.0}


def test_nuts_and_advi_agree_on_builtin(builtin):
    _, _, comp = builtin
    nuts = comp.results["nuts"]
    for method in ("advi", "fullrank_advi"):
        vi = comp.results[method]
        for name in ("alpha", "beta"):
            assert np.all(np.abs(vi.params[name] - nuts.params[name]) < 0.2 * nuts.sd[name]), (method, name)


def test_heldout_metrics(builtin):
    ex, _, comp = builtin
    metrics = logistic.metrics(ex, comp)
    assert set(metrics) == set(comp.results)
    X, y = ex.extra["X_test"], ex.extra["y_test"]
    p = 1 / (1 + np.exp(-(comp.results["mle"].params["alpha"] + X @ comp.results["mle"].params["beta"])))
    assert metrics["mle"]["accuracy"] == pytest.approx(np.mean((p > 0.5) == (y == 1)))
    from sklearn.metrics import log_loss

    assert metrics["mle"]["log_loss"] == pytest.approx(log_loss(y, p), rel=1e-9)
    for m in metrics.values():
        assert 0.75 < m["accuracy"] <= 1.0


def test_standardize_reports_original_scale(builtin):
    ex, _, comp = builtin
    X, y = ex.data
    model = logistic.build(X * [10.0, 0.1] + [3.0, -1.0], y, standardize=True)
    res = inference.mle(model)
    ref = comp.results["mle"]
    np.testing.assert_allclose(res.params["beta"], ref.params["beta"] / [10.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(res.params["alpha"], ref.params["alpha"] - np.sum(ref.params["beta"] / [10.0, 0.1]
                                                                               * [3.0, -1.0]), rtol=1e-6)
    em = inference.em(model)
    np.testing.assert_allclose(em.params["beta"], res.params["beta"], rtol=1e-6)


@pytest.fixture(scope="module")
def separable():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(float)
    return X, y, logistic.build(X, y)


def test_separable_data_refuse_mle_and_em(separable):
    X, y, model = separable
    assert logistic.separated(np.column_stack([np.ones(len(X)), X]), y) >= 0
    for call in (inference.mle, inference.em):
        with pytest.raises(RuntimeError, match="maximum likelihood estimate does not exist"):
            call(model)


def test_separable_data_other_estimators_stay_finite(separable):
    X, y, model = separable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = inference.compare(model, ["mle", "em", "map", "map_em", "advi", "nuts"], seed=1)
    assert set(comp.errors) == {"mle", "em"}
    for name in ("map", "map_em", "advi", "nuts"):
        res = comp.results[name]
        assert np.all(np.isfinite(coef(res))) and np.all(np.abs(coef(res)) < 30), name
    np.testing.assert_allclose(coef(comp.results["map_em"]), coef(comp.results["map"]), rtol=1e-6)


def test_overlapping_data_are_not_flagged(spector):
    X, y, _ = spector
    assert logistic.separated(np.column_stack([np.ones(len(X)), X]), y) == -1


def test_fewer_rows_than_coefficients():
    X = np.array([[0.1, 0.5, 1.0], [0.7, 0.2, 0.3]])
    model = logistic.build(X, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"fewer rows \(2\) than coefficients \(4\)"):
        inference.mle(model)
    res = inference.map_estimate(model)  # MAP still runs: the prior makes it unique
    assert res.converged and np.all(np.isfinite(coef(res)))


@pytest.mark.parametrize("X, y, message", [
    ([[1.0], [2.0], [np.nan]], [0, 1, 0], "X: expected finite values, feature 'x0' has NaN"),
    ([[1.0, 3.0], [2.0, 3.0]], [0, 1], "X: feature 'x1' is constant"),
    ([[1.0], [2.0]], [0, 2], "y: expected outcomes coded 0 and 1"),
    ([[1.0], [2.0]], [0, 1, 1], "y: expected a 1-D array with one outcome per row"),
])
def test_bad_input_is_refused(X, y, message):
    with pytest.raises(ValueError, match=message):
        logistic.build(X, y)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def csv(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    frame = pd.DataFrame({"a": rng.standard_normal(n), "b": rng.standard_normal(n)})
    frame["label"] = np.where(frame.a - frame.b + rng.standard_normal(n) > 0, "yes", "no")
    frame["c"] = 1.0
    frame["three"] = np.arange(n) % 3
    frame.loc[0, "b_nan"] = np.nan
    frame["b_nan"] = frame["b"].where(np.arange(n) != 5)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_cli_csv_maps_labels_and_runs(csv, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["compare", "logistic", "--data", csv, "--target", "label", "--features", "a,b",
                 "--estimators", "mle,em", "--json", str(out), "--quiet"])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "'no' -> 0, 'yes' -> 1" in text
    import json

    est = json.loads(out.read_text())["runs"][0]["estimators"]
    frame = pd.read_csv(csv)
    ref = sm.Logit((frame.label == "yes").astype(float), sm.add_constant(frame[["a", "b"]])).fit(disp=0)
    np.testing.assert_allclose([est["mle"]["params"]["alpha"]] + est["mle"]["params"]["beta"], ref.params,
                               rtol=1e-5)


@pytest.mark.parametrize("extra, message", [
    (["--target", "three"], "--target: expected exactly two distinct values in 'three', found 3"),
    (["--target", "label", "--features", "a,b_nan"], "--features: expected finite values, feature 'b_nan'"),
    (["--target", "label", "--features", "a,c"], "X: feature 'c' is constant"),
    (["--target", "label", "--features", "a,a"], "--features: column 'a' is named twice"),
    (["--target", "label", "--features", "a,zz"], "--features: no column 'zz'"),
    (["--target", "nope"], "--target: no column 'nope'"),
    ([], "--target: expected the name of the outcome column"),
])
def test_cli_bad_input(csv, extra, message, capsys):
    code = main(["compare", "logistic", "--data", csv, "--estimators", "mle"] + extra)
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1


def test_cli_fewer_rows_than_coefficients(tmp_path, capsys):
    path = tmp_path / "tiny.csv"
    path.write_text("a,b,c,y\n0.1,0.5,1.0,0\n0.7,0.2,0.3,1\n")
    code = main(["compare", "logistic", "--data", str(path), "--target", "y", "--estimators", "mle,map"])
    _, err = capsys.readouterr()
    assert code == 2 and "mle: fewer rows (2) than coefficients (4)" in err
    code = main(["compare", "logistic", "--data", str(path), "--target", "y", "--estimators", "map", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
