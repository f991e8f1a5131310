"""Missing data: EM against the optimiser, the factored-likelihood closed form, imputations against peers."""

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

import inference
from inference.functions import functions_for
from inference.modes import PY_MODE
from models import missing_data as md
from models._common import pack
from zoo.cli import main


@pytest.fixture(scope="module")
def correlated():
    ex = md.example()
    return ex, md.build(ex.data, **ex.build_kwargs)


def test_example_has_twenty_percent_missing(correlated):
    ex, _ = correlated
    frac = np.isnan(ex.data).mean()
    assert 0.17 < frac < 0.23
    assert ex.extra["complete"].shape == (1000, 3)
    observed = ~np.isnan(ex.data)
    np.testing.assert_array_equal(ex.data[observed], ex.extra["complete"][observed])


def test_em_reaches_the_optimiser_mle(correlated):
    _, model = correlated
    em, mle = inference.em(model), inference.mle(model)
    assert em.converged and mle.converged
    np.testing.assert_allclose(em.loglik, mle.loglik, rtol=1e-10)
    np.testing.assert_allclose(em.params["mu"], mle.params["mu"], rtol=1e-6)
    np.testing.assert_allclose(em.params["cov"], mle.params["cov"], rtol=1e-6)


def test_map_em_matches_map(correlated):
    _, model = correlated
    a, b = inference.em(model, prior=True), inference.map_estimate(model)
    np.testing.assert_allclose(a.params["mu"], b.params["mu"], rtol=1e-6)
    np.testing.assert_allclose(a.params["cov"], b.params["cov"], rtol=1e-6)


def test_em_monotone_and_equal_to_pymc(correlated):
    _, model = correlated
    res = inference.em(model, keep_path=True)
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    fns = functions_for(model)
    for params, ll in zip(res.info["path"], res.trace):
        np.testing.assert_allclose(fns.loglik_at(md._to_model(params, 3)), ll, rtol=1e-8)


def test_observed_loglik_matches_scipy(correlated):
    ex, _ = correlated
    X = ex.data[:50]
    mu, cov = md.TRUTH["mu"], md.TRUTH["cov"]
    ref = 0.0
    for row in X:
        o = ~np.isnan(row)
        ref += stats.multivariate_normal(mu[o], cov[np.ix_(o, o)]).logpdf(row[o])
    assert md.observed_loglik(X, mu, cov) == pytest.approx(ref, rel=1e-12)


def test_the_likelihood_op_is_scipy_row_by_row_and_minus_infinity_where_cov_oo_is_singular(correlated):
    ex, _ = correlated
    X = np.vstack([ex.data[:40], [[np.nan, 0.3, np.nan], [1.0, np.nan, np.nan]]])  # one-entry patterns too
    mu, cov = md.TRUTH["mu"], md.TRUTH["cov"]
    values, masks, row_pattern = md._containers(X)
    rows = md._OBSERVED_LOGP(values, mu, cov, masks, row_pattern).eval()
    for row, value in zip(X, rows):
        o = ~np.isnan(row)
        assert value == pytest.approx(stats.multivariate_normal(mu[o], cov[np.ix_(o, o)]).logpdf(row[o]), rel=1e-12)
    singular = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # columns 0 and 1 identical
    rows = md._OBSERVED_LOGP(values, mu, singular, masks, row_pattern).eval()
    both = ~np.isnan(X[:, 0]) & ~np.isnan(X[:, 1])
    assert both.any() and (~both).any()
    assert np.all(rows[both] == -np.inf) and np.all(np.isfinite(rows[~both]))


@pytest.mark.parametrize("rows", [1000, 25])
def test_the_likelihood_gradient_matches_finite_differences(correlated, rows):
    # the op's gradient is written out (cov_OO^-1 times the residuals, per pattern); through the LKJ factor too
    ex, _ = correlated
    fns = functions_for(md.build(ex.data[:rows]))
    theta = fns.initial_theta + 0.2 * np.random.default_rng(6).standard_normal(fns.size)
    for kind in ("loglik", "logp"):
        vg = fns.value_and_grad(kind)
        fd = np.array([(vg(theta + e)[0] - vg(theta - e)[0]) / 2e-6 for e in np.eye(fns.size) * 1e-6])
        np.testing.assert_allclose(vg(theta)[1], fd, rtol=1e-6, atol=1e-4)


def test_the_compiled_density_runs_the_same_likelihood(correlated):
    # PyMC's density compiled with Numba (NUTS's, ADVI's) calls the ops' Numba implementations
    _, model = correlated
    fns = functions_for(model)
    dens, uncompiled = fns.shared_density(), fns.value_and_grad("logp")
    for theta in fns.initial_theta + 0.2 * np.random.default_rng(7).standard_normal((3, fns.size)):
        (v, g), (v0, g0) = dens(theta), uncompiled(theta)
        np.testing.assert_allclose(v, v0, rtol=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-8)


def test_monotone_pattern_equals_factored_likelihood():
    complete, _ = md.simulate(md.TRUTH, n=400, seed=3, missing=0.0)
    X = complete.copy()
    X[250:, 2] = np.nan  # monotone: column 2 missing from row 250, column 1 from row 320
    X[320:, 1] = np.nan
    X[320:, 2] = np.nan
    model = md.build(X)
    res = inference.em(model, tol=1e-15, param_tol=1e-13, max_iter=20000)
    ref = md.factored_mle(X)
    np.testing.assert_allclose(res.params["mu"], ref["mu"], rtol=1e-8)
    np.testing.assert_allclose(res.params["cov"], ref["cov"], rtol=1e-8)


def test_conditional_covariance_term_matters(correlated):
    """Without the conditional-covariance correction the variances come out biased low."""
    ex, model = correlated
    res = inference.em(model)
    filled = md.impute(ex.data, res.params)
    naive = np.cov(filled.T, bias=True)
    assert np.all(np.diag(naive) < np.diag(res.params["cov"]) - 0.02)


@pytest.fixture(scope="module")
def comparison(correlated):
    """One run of the comparison on the observed-data model: EM, MLE and ADVI (whose imputations are drawn from the
    conditional normals given each draw of the parameters)."""
    ex, model = correlated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return inference.compare(model, ["em", "mle", "advi"], truth=ex.truth, seed=0)


def test_em_imputation_beats_column_means(correlated, comparison):
    ex, _ = correlated
    m = md.metrics(ex, comparison)
    for j in range(3):
        assert m["em"][f"rmse_{j}"] < m["column_mean"][f"rmse_{j}"]
    assert "iterative_imputer" in m


def test_series_example():
    ex = md.example(example="series")
    with pytest.warns(UserWarning, match="dropped 3 rows with every entry missing"):
        model = md.build(ex.data, **ex.build_kwargs)
    res = inference.em(model)
    assert res.params["mu"][0] == pytest.approx(10.0, abs=1e-12)
    assert res.params["cov"][0, 0] == pytest.approx(168 / 7, rel=1e-12)
    np.testing.assert_allclose(inference.mle(model).params["cov"], [[24.0]], rtol=1e-7)


def small_incomplete():
    """40 rows, 20 % missing: the imputing form has 33 unknowns, small enough to optimise directly."""
    return md.simulate(md.TRUTH, n=40, seed=3)[1]


def test_joint_map_in_closed_form_equals_the_imputing_forms_map():
    X = small_incomplete()
    joint = md.joint_map(md.build(X))
    imodel = md.build_imputing(X)
    assert "x_unobserved" in imodel.named_vars
    direct = inference.map_estimate(imodel)
    np.testing.assert_allclose(joint.params["mu"], direct.params["mu"], atol=1e-6)
    np.testing.assert_allclose(joint.params["cov"], direct.params["cov"], atol=1e-6)
    np.testing.assert_allclose(joint.info["imputed"][np.isnan(X)], direct.params["x_unobserved"], atol=1e-5)
    # its objective is the imputing form's log density at the joint point (same priors, no Jacobian)
    ifns = functions_for(imodel)
    at = {"mu": joint.params["mu"], "chol": md._to_model(joint.params, 3)["chol"],
          "x_unobserved": joint.info["imputed"][np.isnan(X)]}
    assert joint.trace[-1] == pytest.approx(ifns.logpost_at(at), rel=1e-9)


def test_joint_map_shrinks_the_covariance(correlated):
    ex, model = correlated
    joint, mle = md.joint_map(model), inference.mle(model)
    assert np.all(np.diag(joint.params["cov"]) < 0.95 * np.diag(mle.params["cov"]))
    # the joint MAP fills each gap with its conditional mean under its own parameters
    X = ex.data
    np.testing.assert_allclose(joint.info["imputed"], md.impute(X, joint.params), atol=1e-9)
    assert joint.loglik < mle.loglik
    # no Laplace errors for a point that is not the mode of the observed-data density; EM's own are finite
    assert all(np.isnan(v).all() for v in joint.sd.values())
    assert np.isfinite(inference.em(model).sd["cov"]).all()
    (note,) = md.notes(ex, inference.compare(model, ["mle"]))
    assert str(np.round(np.diag(joint.params["cov"]), 4).tolist()) in note


def test_the_command_fits_the_joint_map_once_for_the_terminal_and_the_report(tmp_path, monkeypatch, capsys):
    calls = []
    joint_map = md.joint_map
    monkeypatch.setattr(md, "joint_map", lambda model, **kw: calls.append(1) or joint_map(model, **kw))
    assert main(["compare", "missing_data", "--estimators", "mle", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    (note,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("The joint MAP")]
    assert len(calls) == 1
    html = (tmp_path / "run" / "index.html").read_text()
    assert note.split("(diagonal ")[1].split(" against")[0] in html  # the joint MAP's variances


def test_posterior_imputations(correlated, comparison):
    ex, _ = correlated
    comp = comparison
    draws = comp.results["advi"].draws["x_unobserved"]
    assert draws.shape[2] == int(np.isnan(ex.data).sum())
    m = md.metrics(ex, comp)
    for j in range(3):
        assert m["advi"][f"rmse_{j}"] < m["column_mean"][f"rmse_{j}"]
        assert abs(m["advi"][f"rmse_{j}"] - m["em"][f"rmse_{j}"]) < 0.05


def test_imputation_draws_have_the_conditional_moments():
    X = small_incomplete()
    mu, cov = md.TRUTH["mu"], md.TRUTH["cov"]
    draws = {"mu": np.broadcast_to(mu, (2, 4000, 3)), "cov": np.broadcast_to(cov, (2, 4000, 3, 3))}
    x = md.imputation_draws(X, draws, np.random.default_rng(0))["x_unobserved"].reshape(-1, int(np.isnan(X).sum()))
    expected = md.impute(X, {"mu": mu, "cov": cov})[np.isnan(X)]
    se = x.std(axis=0) / np.sqrt(x.shape[0])
    assert np.all(np.abs(x.mean(axis=0) - expected) < 4.5 * se)
    # a row with one missing entry: its conditional variance is the Schur complement
    obs = ~np.isnan(X)
    i = int(np.flatnonzero(obs.sum(axis=1) == 2)[0])
    m = int(np.flatnonzero(~obs[i])[0])
    o = np.flatnonzero(obs[i])
    var = cov[m, m] - cov[m, o] @ np.linalg.solve(cov[np.ix_(o, o)], cov[o, m])
    col = int(np.flatnonzero(np.flatnonzero(np.isnan(X).ravel()) == i * 3 + m)[0])
    assert x[:, col].var() == pytest.approx(var, rel=0.05)


def test_imputation_draws_equal_one_conditional_draw_per_posterior_draw():
    # the vectorised draws are those of the plain loop: per posterior draw, per pattern, x_M = mean + L eps with
    # L the Cholesky factor of the conditional covariance, eps taken from the generator in that order
    X = small_incomplete()
    rng = np.random.default_rng(3)
    mu = rng.standard_normal((2, 5, 3))
    A = rng.standard_normal((2, 5, 3, 3))
    cov = A @ A.transpose(0, 1, 3, 2) + np.eye(3)
    got = md.imputation_draws(X, {"mu": mu, "cov": cov}, np.random.default_rng(7))["x_unobserved"]
    gen = np.random.default_rng(7)
    for c in range(2):
        for d in range(5):
            filled = X.copy()
            for obs, rows in md.patterns(X):
                m, o = np.flatnonzero(~obs), np.flatnonzero(obs)
                if m.size == 0:
                    continue
                S, mean = cov[c, d], mu[c, d]
                B = S[np.ix_(m, o)] @ np.linalg.inv(S[np.ix_(o, o)])
                cond_mean = mean[m] + (X[np.ix_(rows, o)] - mean[o]) @ B.T
                L = np.linalg.cholesky(S[np.ix_(m, m)] - B @ S[np.ix_(o, m)])
                eps = gen.standard_normal((rows.size, m.size))
                filled[np.ix_(rows, m)] = cond_mean + eps @ L.T
            np.testing.assert_allclose(got[c, d], filled[np.isnan(X)], rtol=1e-10, atol=1e-12)
    assert got.shape == (2, 5, int(np.isnan(X).sum()))
@pytest.mark.parametrize("X, message", [
    (np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan]]), "X: column 'x1' is entirely missing"),
    (np.array([[1.0, np.inf], [2.0, 1.0]]), "X: column 'x1' has an infinite value"),
])
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        md.build(X)


def test_too_few_rows_points_to_map():
    X = np.array([[1.0, 2.0, np.nan], [2.0, np.nan, 1.0], [np.nan, 1.0, 3.0], [1.5, 2.5, 2.0]])
    model = md.build(X)
    with pytest.raises(ValueError, match="fewer complete-enough rows than the covariance needs.*use map or map_em"):
        inference.mle(model)
    with pytest.raises(ValueError, match="fewer complete-enough rows"):
        inference.em(model)
    res = inference.em(model, prior=True)
    assert np.all(np.isfinite(res.params["cov"]))


def test_cli_impute(tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("a,b,name\n1,2,x\n2,,y\n,5,z\n4,4.5,w\n,,v\n3,3.9,u\n5,6.1,t\n")
    out = tmp_path / "filled.csv"
    with pytest.warns(UserWarning, match="dropped 1 rows with every entry missing"):
        code = main(["impute", str(path), "--out", str(out)])
    text, err = capsys.readouterr()
    assert code == 0, err
    assert "filled 4 missing entries in 2 columns" in text
    filled = pd.read_csv(out)
    orig = pd.read_csv(path)
    assert list(filled.columns) == list(orig.columns) and list(filled["name"]) == list(orig["name"])
    assert not filled[["a", "b"]].isna().any().any()
    keep = orig[["a", "b"]].notna().to_numpy()
    np.testing.assert_allclose(filled[["a", "b"]].to_numpy()[keep], orig[["a", "b"]].to_numpy()[keep])


@pytest.mark.parametrize("content, extra, message", [
    ("a,b\n1,\n2,\n3,\n", [], "--data: column 'b' is entirely missing"),
    ("a,b\n1,x\n2,y\n3,\n", ["--columns", "a,b"], "--columns: column 'b' is not numeric"),
    ("a,b\n1,2\n2,\n,3\n", [], "em: fewer complete-enough rows than the covariance needs"),
])
def test_cli_bad_input(tmp_path, capsys, content, extra, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    for argv in (["compare", "missing_data", "--data", str(path), "--estimators", "em"] + extra,
                 ["impute", str(path), "--out", str(tmp_path / "o.csv")] + extra):
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2 and message.split(": ", 1)[1] in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o.csv").exists()


def test_the_declaration_draws_rows_in_the_form_it_holds_the_data(correlated):
    ex, model = correlated
    truth = md.TRUTH
    fixed = pm.do(model, {"mu": truth["mu"], "chol": pack(np.linalg.cholesky(truth["cov"]))})
    draws = pm.draw(fixed["x"], draws=20, random_seed=0, mode=PY_MODE)  # 20 x 1000 rows, nothing to compile
    missing = np.isnan(ex.data)
    assert draws.shape == (20, *ex.data.shape)
    assert np.all(draws[:, missing] == 0.0) and np.all(draws[:, ~missing] != 0.0)
    # each column's observed entries: mean and variance of the truth's marginal normal
    for j in range(3):
        col = draws[:, ~missing[:, j], j].ravel()
        sd = np.sqrt(truth["cov"][j, j])
        assert abs(col.mean() - truth["mu"][j]) < 4 * sd / np.sqrt(col.size)
        assert col.var() == pytest.approx(truth["cov"][j, j], rel=4 * np.sqrt(2 / col.size))
