"""Simulation studies: exact small-sample answers reproduced within their Monte Carlo error, every model and
estimator through a small study, the same numbers however the work is run, and the command line."""

import contextlib
import json
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import gammaln

import inference
from inference import registry
from inference.functions import PY_MODE, functions_for
from inference.modes import COMPILED_MODE
from inference.study import Z95, study
from models import missing_data
from models._common import dist_params, pack
from zoo.cli import main

FAST_OPTIONS = {"advi": {"window": 100, "draws": 200}, "fullrank_advi": {"window": 100, "draws": 200},
                "nuts": {"draws": 150, "tune": 150}}


def _row(perf, n, est, par):
    sel = perf[(perf.n == n) & (perf.estimator == est) & (perf.parameter == par)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_normal_sigma_bias_and_mu_coverage_match_their_exact_values():
    # EM's point on the normal model is the closed-form MLE (mean, root mean square deviation with divisor n) and
    # its sd the observed information's, as the MLE's; EM reaches it without an optimiser, so 2,000 replicates run
    # in seconds.
    n, reps, sigma = 20, 2000, 2.0
    res = study("normal", ["em"], n=n, reps=reps, seed=11)
    perf = res.performance()
    # sigma_hat = sigma sqrt(chi2_{n-1} / n): E sqrt(chi2_k) = sqrt(2) Gamma((k+1)/2) / Gamma(k/2)
    c = np.sqrt(2) * np.exp(gammaln(n / 2) - gammaln((n - 1) / 2))
    exact_bias = sigma * (c / np.sqrt(n) - 1)
    sd_sigma_hat = sigma / np.sqrt(n) * np.sqrt((n - 1) - c**2)
    row = _row(perf, n, "em", "sigma")
    assert abs(row.bias - exact_bias) < 3 * row.bias_mcse
    assert row.bias_mcse == pytest.approx(sd_sigma_hat / np.sqrt(reps), rel=0.1)
    assert row.empse_mcse == pytest.approx(sd_sigma_hat / np.sqrt(2 * (reps - 1)), rel=0.1)
    # the Wald interval of mu, sd sigma_hat / sqrt(n), covers iff |t_{n-1}| < z sqrt((n-1)/n)
    p = 2 * stats.t.cdf(Z95 * np.sqrt((n - 1) / n), n - 1) - 1
    row = _row(perf, n, "em", "mu")
    assert abs(row.coverage - p) < 3 * row.coverage_mcse
    assert row.coverage_mcse == pytest.approx(np.sqrt(p * (1 - p) / reps), rel=0.1)
    assert row.n_ok == reps and row.n_failed == 0 and row.interval == "wald"
    # the RMSE's MCSE is the delta method's from the MSE's
    assert row.rmse_mcse == pytest.approx(row.mse_mcse / (2 * row.rmse))


def test_poisson_wald_coverage_matches_the_exact_sum():
    n, reps = 10, 1500
    res = study("poisson", ["em"], n=n, reps=reps, seed=5)
    lam = float(res.truth["lam"][0])
    # the total count S is Poisson(n lam); lam_hat = S / n with sd sqrt(lam_hat / n)
    s = np.arange(0, int(n * lam * 6) + 50)
    lam_hat = s / n
    covers = np.abs(lam_hat - lam) <= Z95 * np.sqrt(lam_hat / n)
    exact = float(np.sum(stats.poisson.pmf(s, n * lam) * covers))
    row = _row(res.performance(), n, "em", "lam[0]")
    assert abs(row.coverage - exact) < 3 * row.coverage_mcse
    assert row.coverage_mcse == pytest.approx(np.sqrt(exact * (1 - exact) / reps), rel=0.1)
    assert exact < 0.95  # the Wald interval of a small-count rate under-covers: the test can tell


@pytest.mark.parametrize("name", sorted(registry.models()))
def test_every_estimator_of_every_model_runs_in_a_small_study(name):
    spec = registry.get(name)
    # the topic model's truth holds one row of theta per document: its studies draw as many documents as the truth has
    n = spec.example().n if name == "lda" else max(30, spec.min_n({}))
    options = {}
    res = study(name, None, n=n, reps=2, seed=3, options=options, estimator_options={
        e: o for e, o in FAST_OPTIONS.items() if e not in spec.not_default and e not in _skipped(spec)})
    raw = res.raw
    labels = [lab for v, arr in res.truth.items() for lab, _ in inference.result.flat_labels(v, np.shape(arr))]
    assert list(raw.columns) == ["replicate", "n", "estimator", "parameter", "estimate", "sd", "lower", "upper",
                                 "converged", "error", "seconds", "interval"]
    assert len(raw) == 2 * len(res.estimators) * len(labels)
    ok = raw[raw.error == ""]
    assert set(ok.estimator) == set(res.estimators), raw[raw.error != ""][["estimator", "error"]].drop_duplicates()
    assert np.all(np.isfinite(ok[["estimate", "sd", "lower", "upper"]].to_numpy()))
    assert np.all(ok.lower <= ok.upper)
    perf = res.performance()
    assert len(perf) == len(res.estimators) * len(labels)
    assert set(perf.interval) <= {"wald", "quantile"}


def _skipped(spec):
    ex = spec.example()
    return inference.hooks_for(spec.build(*ex.args, **ex.build_kwargs)).skip


def test_failures_are_counted_not_hidden():
    # rates so small that most data sets of 3 counts have a single distinct value: no 2-component model for them
    truth = {"w": [0.5, 0.5], "lam": [0.02, 0.05]}
    res = study("poisson", ["em"], n=3, reps=8, truth=truth, options={"k": 2}, seed=0)
    perf = res.performance()
    assert (perf.n_failed > 0).all() and (perf.n_ok + perf.n_failed == 8).all()
    failed = res.raw[res.raw.error != ""]
    assert failed.error.str.contains("k:").all() and failed.estimate.isna().all()


# ------------------------------------------------------------------------------------------------ swapping data
@pytest.mark.parametrize("name, options, build", [
    ("normal", {}, {}), ("poisson", {"k": 2}, {}), ("logistic", {}, {}),
    ("gaussian_mixture", {}, {"mu_prior": (2.0, 30.0), "sigma_prior": 6.0}),
    ("gaussian_mixture", {}, {}),  # the default priors, centred on each data set, move with the data
    ("missing_data", {}, {}),  # data-centred priors and a different set of missingness patterns, swapped too
])
def test_a_swapped_model_is_indistinguishable_from_a_rebuilt_one(name, options, build):
    spec = registry.get(name)
    ex = spec.example(**options)
    kwargs = {**ex.build_kwargs, **build}
    # a study swaps data sets of every sample size into one model: the second is smaller
    first, second = (spec.simulate(ex.truth, n, s) for n, s in ((60, 1), (45, 2)))
    as_args = lambda d: d if isinstance(d, tuple) else (d,)  # noqa: E731
    swapped = spec.build(*as_args(first), **kwargs)
    inference.mle(swapped)  # compiled on the first data set
    swapped = spec.swap_data(swapped, second)
    rebuilt = spec.build(*as_args(second), **kwargs)
    assert inference.hooks_for(swapped).options == inference.hooks_for(rebuilt).options
    for key, value in rebuilt.initial_point().items():
        np.testing.assert_array_equal(swapped.initial_point()[key], value)
    for est in ("mle", "map", "em"):
        a, b = (inference.run_estimator(est, m, seed=4) for m in (swapped, rebuilt))
        for key in b.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
            np.testing.assert_allclose(a.sd[key], b.sd[key], rtol=1e-12)
        assert a.loglik == b.loglik


def test_missing_data_swaps_any_data_with_the_same_columns():
    spec = registry.get("missing_data")
    first, second = (spec.simulate(None, 30, s) for s in (1, 2))
    groups = [{tuple(obs) for obs, _ in missing_data.patterns(X)} for X in (first, second)]
    assert groups[0] != groups[1]  # the swap below has patterns to fill that the first data set lacked
    model = spec.build(first)
    assert spec.swap_data(model, second) is model
    np.testing.assert_array_equal(missing_data.data_from_model(model), second)
    assert spec.swap_data(model, second[:, :2]) is None  # two columns: another structure, rebuilt
    wide = np.random.default_rng(0).standard_normal((40, 6))
    wide[::7, 0] = np.nan
    model = spec.build(wide)
    other = wide[:35].copy()
    other[1::7, 1] = np.nan  # a pattern the first data set did not have, and fewer rows
    assert spec.swap_data(model, other) is model
    mu, cov = np.full(6, 0.1), 0.5 * np.eye(6) + 0.5  # any point: the log-likelihoods below against the closed form
    point = {"mu": mu, "chol": pack(np.linalg.cholesky(cov))}
    swapped, rebuilt = (functions_for(m).value("loglik")(functions_for(m).to_unconstrained(point))
                        for m in (model, spec.build(other)))
    assert swapped == pytest.approx(missing_data.observed_loglik(other, mu, cov), rel=1e-12)
    assert swapped == rebuilt


def test_nuts_on_a_swapped_model_reuses_its_compiled_density_with_the_same_draws(monkeypatch):
    from pymc.model.core import ValueGradFunction

    compiled = []
    init = ValueGradFunction.__init__
    monkeypatch.setattr(ValueGradFunction, "__init__",
                        lambda self, *a, **k: (compiled.append(1), init(self, *a, **k))[1])
    spec = registry.get("normal")
    first, second = (spec.simulate(None, 40, s) for s in (1, 2))
    swapped = spec.build(first)
    inference.nuts(swapped, draws=100, tune=100, seed=5)
    assert len(compiled) == 1
    spec.swap_data(swapped, second)
    a = inference.nuts(swapped, draws=100, tune=100, seed=5)
    assert len(compiled) == 1  # a copy of the first compilation, not a new one
    b = inference.nuts(spec.build(second), draws=100, tune=100, seed=5)
    assert len(compiled) == 2
    for key in b.draws:
        np.testing.assert_array_equal(a.draws[key], b.draws[key])


def test_a_swapped_mixture_moves_its_data_centred_default_priors_with_the_data():
    spec = registry.get("gaussian_mixture")
    ex = spec.example()
    model = spec.build(ex.data, **ex.build_kwargs)
    new = spec.simulate(ex.truth, 50, 1) + 100.0  # far from the example: centred priors must follow
    assert spec.swap_data(model, new) is model
    m0, s0 = (float(np.ravel(v)[0]) for v in dist_params(model, "mu", "normal"))
    assert m0 == pytest.approx(np.mean(new)) and s0 == pytest.approx(10 * np.std(new))
    assert inference.hooks_for(model).options == inference.hooks_for(spec.build(new, **ex.build_kwargs)).options


def test_simulation_reuses_its_compiled_draw_with_the_same_numbers():
    spec = registry.get("normal")
    a = spec.simulate({"mu": 1.0, "sigma": 3.0}, 25, 9)
    b = spec.simulate({"mu": 1.0, "sigma": 3.0}, 25, 9)
    c = spec.simulate({"mu": 1.0, "sigma": 3.0}, 25, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    import pymc as pm

    from models import normal

    fixed = pm.do(normal.build(np.arange(25.0)), {"mu": np.array(1.0), "sigma": np.array(3.0)})
    np.testing.assert_array_equal(a, pm.draw(fixed["y"], random_seed=9, mode=PY_MODE))
    # small draws run uncompiled, large ones compiled: each repeats pm.draw with its mode
    from models._common import PY_DRAW_MAX_VALUES, draw_mode

    n_big = PY_DRAW_MAX_VALUES + 1
    big = spec.simulate({"mu": 1.0, "sigma": 3.0}, n_big, 9)
    fixed_big = pm.do(normal.build(np.zeros(n_big), _placeholder=True), {"mu": np.array(1.0), "sigma": np.array(3.0)})
    assert draw_mode(fixed["y"]) is PY_MODE and draw_mode(fixed_big["y"]) is COMPILED_MODE
    np.testing.assert_array_equal(big, pm.draw(fixed_big["y"], random_seed=9, mode=COMPILED_MODE))
    # a mixture draws from two generators: reseeded in pm.draw's order, the numbers are still pm.draw's
    from models import poisson

    truth = {"w": np.array([0.4, 0.6]), "lam": np.array([2.0, 9.0])}
    first, _, again = (poisson.simulate(truth, 40, s) for s in (3, 4, 3))
    np.testing.assert_array_equal(first, again)
    model = pm.do(poisson.build(np.arange(40) % 3, k=2, _initval=False), truth)
    np.testing.assert_array_equal(first, pm.draw(model["y"], random_seed=3, mode=PY_MODE))
    # the multivariate mixture keeps its compiled draw too (large test data are written file by file from it)
    from models import gaussian_mixture as gm

    first, _, again = (gm.simulate(gm.TRUTH_3D, 30, s) for s in (5, 6, 5))
    np.testing.assert_array_equal(first, again)
    fixed = {"w": gm.TRUTH_3D["w"], "mu_first": gm.TRUTH_3D["mu"][:, 0], "mu_rest": gm.TRUTH_3D["mu"][:, 1:],
             **{f"chol_{j}": pack(np.linalg.cholesky(c)) for j, c in enumerate(gm.TRUTH_3D["cov"])}}
    model = pm.do(gm.build(np.random.default_rng(0).standard_normal((30, 3)), k=3, _initval=False), fixed)
    np.testing.assert_array_equal(first, pm.draw(model["x"], random_seed=5, mode=PY_MODE))


# ------------------------------------------------------------------------------------------------ same numbers
ARGS = {"model": "normal", "estimators": ["mle", "em"], "n": (10, 30), "reps": 6, "seed": 2, "batch_size": 2}


def _comparable(res):
    return res.raw.drop(columns="seconds")


def test_same_raw_table_whatever_runs_it(tmp_path):
    reference = _comparable(study(**ARGS))
    assert len(reference) == 2 * 6 * 2 * 2
    pd.testing.assert_frame_equal(_comparable(study(**ARGS, n_jobs=2)), reference)
    pd.testing.assert_frame_equal(_comparable(study(**ARGS, n_jobs=2, scheduler="local")), reference)

    calls = []

    def stop_after_two_batches(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    folder = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        study(**ARGS, folder=folder, callback=stop_after_two_batches)
    parts = os.listdir(folder / "parts")
    assert len(parts) == 2 and all(p.endswith(".parquet") for p in parts)
    resumed = []
    result = study(**ARGS, folder=folder, callback=lambda done, total: resumed.append(done))
    assert resumed[0] == 6  # two batches of two replicates were kept, and the next batch continued from there
    pd.testing.assert_frame_equal(_comparable(result), reference)
    with pytest.raises(ValueError, match=f"folder: {folder} holds a study made with other arguments"):
        study(**{**ARGS, "reps": 7}, folder=folder)


def test_a_sigterm_that_something_swallowed_still_stops_the_study_after_its_batch(tmp_path):
    # PyMC's sampler catches the KeyboardInterrupt a SIGTERM raises, and Numba drops one raised in its callbacks
    def terminated_and_swallowed(done, total):
        if done == 2:
            with contextlib.suppress(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)

    folder = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt, match="signal"):
        study("normal", ["em"], n=10, reps=6, seed=2, batch_size=2, folder=folder, callback=terminated_and_swallowed)
    assert len(os.listdir(folder / "parts")) == 1  # the batch under way when the signal came was kept; no other ran


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, message", [
    ({"reps": 1}, "reps: expected a integer >= 2"),
    ({"n": 1}, "n: the normal model needs at least 2 observations"),
    ({"truth": {"mu": 1.0, "tau": 2.0}}, "truth: unknown parameter 'tau'"),
    ({"truth": {"mu": 1.0}}, "truth: missing a value for 'sigma'"),
    ({"truth": {"mu": 1.0, "sigma": -2.0}}, "truth: sigma = -2.0 is outside the support"),
    ({"scheduler": "nowhere"}, "scheduler: expected None, 'local' or a Dask scheduler address"),
    ({"n_jobs": 0}, "n_jobs: expected a positive integer"),
    ({"estimators": ["mle", "bogus"]}, "estimators: unknown estimator 'bogus'"),
    ({"backend": "fast"}, "backend: expected one of 'auto', 'python', 'compiled' or None, got 'fast'"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        study("normal", **{"estimators": ["em"], "n": 10, "reps": 3, **kwargs})


def test_truth_off_the_simplex_or_out_of_order_is_refused():
    with pytest.raises(ValueError, match="truth: w = .* is outside the support"):
        study("poisson", ["em"], n=10, reps=3, options={"k": 2}, truth={"w": [0.5, 0.7], "lam": [1.0, 5.0]})
    with pytest.raises(ValueError, match="truth: lam = .* is outside the support"):
        study("poisson", ["em"], n=10, reps=3, options={"k": 2}, truth={"w": [0.5, 0.5], "lam": [5.0, 1.0]})


def test_an_unreachable_scheduler_is_an_error_within_seconds():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="scheduler: cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        study("normal", ["em"], n=10, reps=2, scheduler="tcp://127.0.0.1:9")
    assert time.perf_counter() - t0 < 20


# ------------------------------------------------------------------------------------------------ command line
def test_cli_writes_the_json_schema_and_the_study_folder(tmp_path, capsys):
    out, path = tmp_path / "out", tmp_path / "study.json"
    code = main(["study", "normal", "--estimators", "mle,em", "--n", "10,20", "--reps", "4", "--seed", "1",
                 "--out", str(out), "--json", str(path), "--quiet"])
    assert code == 0
    doc = json.loads(path.read_text())
    assert doc["study"] == {"model": "normal", "options": {}, "truth": {"mu": 5.0, "sigma": 2.0}, "n": [10, 20],
                            "reps": 4, "seed": 1, "estimators": ["mle", "em"]}
    keys = {"n", "estimator", "parameter", "bias", "bias_mcse", "empse", "empse_mcse", "modse", "relerr_modse",
            "relerr_modse_mcse", "rmse", "rmse_mcse", "coverage", "coverage_mcse", "interval", "n_ok", "n_failed",
            "n_not_converged", "seconds_mean"}
    assert len(doc["performance"]) == 2 * 2 * 2 and all(set(r) == keys for r in doc["performance"])
    for name in ("manifest.json", "results.csv", "performance.csv", "bias.png", "rmse.png", "coverage.png",
                 "index.html"):
        assert (out / name).exists(), name
    assert len(pd.read_csv(out / "results.csv")) == 2 * 4 * 2 * 2
    printed = capsys.readouterr()
    assert "coverage" in printed.out and "study:" not in printed.err  # --quiet: no progress line
    # the same command again finds every replicate done and writes the same tables
    before = (out / "performance.csv").read_text()
    assert main(["study", "normal", "--estimators", "mle,em", "--n", "10,20", "--reps", "4", "--seed", "1",
                 "--out", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "performance.csv").drop(columns="seconds_mean"),
                                  pd.read_csv(pd.io.common.StringIO(before)).drop(columns="seconds_mean"))


@pytest.mark.parametrize("argv, message", [
    (["--reps", "1"], "--reps: expected at least 2 replicates"),
    (["--n", "1"], "n: the normal model needs at least 2"),
    (["--truth", '{"mu": 1, "tau": 1}'], "truth: unknown parameter 'tau'"),
    (["--truth", '{"mu": 1, "sigma": -1}'], "truth: sigma = -1.0 is outside the support"),
    (["--truth", "{mu"], "--truth: expected a JSON object"),
    (["--dask", "tcp://127.0.0.1:9"], "scheduler: cannot reach"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    code = main(["study", "normal", "--estimators", "em", "--n", "10", "--reps", "3", "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_cli_refuses_an_out_folder_of_another_study(tmp_path, capsys):
    out = str(tmp_path / "out")
    base = ["study", "normal", "--estimators", "em", "--n", "10", "--quiet", "--out", out]
    assert main([*base, "--reps", "3"]) == 0
    capsys.readouterr()
    assert main([*base, "--reps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"folder: {out} holds a study made with other arguments" in err
