"""Gaussian mixture: EM against the optimiser, scikit-learn and scipy; log-space safety; segmentation; bad input."""

import threading
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.mixture import GaussianMixture

import inference
from inference.functions import functions_for
from models import gaussian_mixture as gm
from zoo.cli import main

TRUTH3 = gm.TRUTH_3D


@pytest.fixture(scope="module")
def one_d():
    ex = gm.example()
    return ex, gm.build(ex.data, k=2)


@pytest.fixture(scope="module")
def three_d():
    X = gm.simulate(TRUTH3, n=600, seed=1)
    return X, gm.build(X, k=3)


def start_1d(x):
    return {"w": np.array([0.5, 0.5]), "mu": np.quantile(x, [0.2, 0.8]), "sigma": np.array([1.0, 1.0])}


def test_example_is_the_classic_one(one_d):
    ex, _ = one_d
    assert ex.data.shape == (300,) and ex.truth["w"].tolist() == [0.3, 0.7]
    np.testing.assert_array_equal(ex.data, gm.example().data)


def test_em_and_optimiser_reach_the_same_loglik(one_d):
    ex, model = one_d
    start = start_1d(ex.data)
    em = inference.em(model, init=start)
    mle = inference.mle(model, start=start)
    assert em.converged and mle.converged
    np.testing.assert_allclose(em.loglik, mle.loglik, rtol=1e-6)
    for name in ("w", "mu", "sigma"):
        np.testing.assert_allclose(em.params[name], mle.params[name], rtol=1e-4)


def test_map_em_agrees_with_map(one_d):
    ex, model = one_d
    a = inference.em(model, prior=True, init=start_1d(ex.data))
    b = inference.map_estimate(model, start=start_1d(ex.data))
    for name in ("w", "mu", "sigma"):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-6)


@pytest.mark.parametrize("prior", [False, True])
def test_em_monotone_and_equal_to_pymc_loglik(one_d, prior):
    ex, model = one_d
    res = inference.em(model, prior=prior, keep_path=True, init=start_1d(ex.data))
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    fns = functions_for(model)
    for params, ll in zip(res.info["path"][::7], res.info["loglik_trace"][::7]):
        ordered = gm._order(params)
        np.testing.assert_allclose(fns.loglik_at(ordered), ll, rtol=1e-8)


def test_multivariate_em_matches_pymc_and_optimiser(three_d):
    X, model = three_d
    res = inference.em(model, keep_path=True, seed=0)
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    fns = functions_for(model)
    math = gm.em_math(model, prior=False)
    for params, ll in zip(res.info["path"][::4], res.info["loglik_trace"][::4]):
        np.testing.assert_allclose(fns.loglik_at(math.to_model(gm._order(params))), ll, rtol=1e-8)
    mle = inference.mle(model, start=res.info["model_point"])
    np.testing.assert_allclose(res.loglik, mle.loglik, rtol=1e-8)
    np.testing.assert_allclose(res.params["mu"], TRUTH3["mu"], atol=0.35)


def test_multivariate_map_em_with_lkj_prior_agrees_with_map(three_d):
    X, model = three_d
    a = inference.em(model, prior=True, seed=0)
    b = inference.map_estimate(model, start=a.info["model_point"])
    assert a.converged and b.converged
    for name in ("w", "mu", "cov"):
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(a.info["model_point"]), rtol=1e-10)


def test_diag_covariance(three_d):
    X, _ = three_d
    model = gm.build(X, k=3, covariance_type="diag")
    em = inference.em(model, seed=0)
    mle = inference.mle(model, start=em.info["model_point"])
    np.testing.assert_allclose(em.loglik, mle.loglik, rtol=1e-8)
    off = em.params["cov"] * (1 - np.eye(3))
    assert np.all(off == 0)


def sklearn_vs_zoo(X, k, seed):
    X2 = X[:, None] if X.ndim == 1 else X
    model = gm.build(X, k=k)
    math = gm.em_math(model, prior=False)
    start = math.init(np.random.default_rng(seed))
    q = gm._internal(start, X2.shape[1])
    # tol=0: scikit-learn runs all max_iter iterations (its own test on the mean log-likelihood stops EM while the
    # parameters still move in the fifth digit)
    sk = GaussianMixture(k, covariance_type="full", reg_covar=0.0, tol=0.0, max_iter=5000,
                         weights_init=q["w"], means_init=q["mu"], precisions_init=np.linalg.inv(q["cov"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X2)
    res = inference.em(model, init=start, tol=1e-14, param_tol=1e-12, max_iter=20000)
    return model, sk, res


@pytest.mark.parametrize("dims", [1, 3])
def test_em_at_least_as_good_as_sklearn_and_same_responsibilities(one_d, three_d, dims):
    X = one_d[0].data if dims == 1 else three_d[0]
    k = 2 if dims == 1 else 3
    model, sk, res = sklearn_vs_zoo(X, k, seed=4)
    X2 = X[:, None] if X.ndim == 1 else X
    sk_ll = sk.score(X2) * len(X2)
    assert res.loglik >= sk_ll - 1e-8 * abs(sk_ll)
    proba = sk.predict_proba(X2)
    # align labels (both are orderings of the same optimum)
    sk_order = np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(res.info["responsibilities"], proba[:, sk_order], atol=1e-6)
    # at scikit-learn's own parameters our E-step gives its predict_proba to round-off
    F = gm.quadratic_features(X2)
    cov = sk.covariances_
    _, resp = gm.log_responsibilities(gm.estimate_log_prob(F, sk.weights_, sk.means_, cov))
    np.testing.assert_allclose(resp.T, proba, atol=1e-12)


def test_log_prob_matches_scipy_and_is_finite_far_away():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    X[0] = 1e6 * np.array([1.0, -1.0, 1.0])  # a million standard deviations from every component
    p = {"w": TRUTH3["w"], "mu": TRUTH3["mu"], "cov": TRUTH3["cov"]}
    lp = gm.estimate_log_prob(gm.quadratic_features(X), p["w"], p["mu"], p["cov"])
    ref = np.stack([np.log(p["w"][k]) + stats.multivariate_normal(p["mu"][k], p["cov"][k]).logpdf(X)
                    for k in range(3)])
    np.testing.assert_allclose(lp[:, 1:], ref[:, 1:], rtol=1e-10)
    np.testing.assert_allclose(lp[:, 0], ref[:, 0], rtol=1e-6)  # 1e12-sized numbers: relative accuracy
    lse, resp = gm.log_responsibilities(lp.copy())
    assert np.all(np.isfinite(resp)) and np.all(np.isfinite(lse))
    np.testing.assert_allclose(resp.sum(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(lse[1:], np.log(np.exp(ref[:, 1:]).sum(axis=0)), rtol=1e-10)


def test_sufficient_statistics_match_naive_sums():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3))
    r = rng.dirichlet(np.ones(4), size=40).T
    nk, sx, sxx = gm.sufficient_statistics(gm.quadratic_features(X), r, 3)
    np.testing.assert_allclose(nk, r.sum(axis=1))
    np.testing.assert_allclose(sx, r @ X)
    np.testing.assert_allclose(sxx, np.einsum("kn,ni,nj->kij", r, X, X))


def test_fused_blocked_statistics_equal_the_two_passes(monkeypatch):
    monkeypatch.setattr(gm, "BLOCK_ROWS", 64)  # 1,000 rows: 16 blocks, the last one short
    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    X[0] = [40.0, -40.0, 40.0]  # far from every component: the log-sum-exp must stay finite
    p = {"w": TRUTH3["w"], "mu": TRUTH3["mu"], "cov": TRUTH3["cov"]}
    F = gm.quadratic_features(X)
    C = gm._coefficients(p["w"], p["mu"], p["cov"])
    lse, resp = gm.log_responsibilities(C @ F)
    S, loglik = gm.fused_statistics(C, F)
    np.testing.assert_allclose(S, resp @ F.T, rtol=1e-12, atol=1e-12 * np.abs(resp @ F.T).max())
    assert np.isfinite(loglik) and loglik == pytest.approx(float(lse.sum()), rel=1e-13)
    nk, sx, sxx = gm._unpack_stats(S, 3)
    np.testing.assert_allclose(nk.sum(), 1000.0, rtol=1e-13)  # responsibilities sum to one on every row


def test_fused_statistics_are_the_same_bits_on_one_thread_or_two(monkeypatch):
    monkeypatch.setattr(gm, "BLOCK_ROWS", 64)  # 1,000 rows: 16 blocks
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1000, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    F = gm.quadratic_features(X)
    C = gm._coefficients(TRUTH3["w"], TRUTH3["mu"], TRUTH3["cov"])
    threads = []
    blocks = gm._block_statistics

    def spy(C, FT, starts):
        threads.append((threading.current_thread().name, len(starts)))
        return blocks(C, FT, starts)

    monkeypatch.setattr(gm, "_block_statistics", spy)
    monkeypatch.setattr(gm, "THREAD_BLOCKS", 10**9)
    S1, ll1 = gm.fused_statistics(C, F)
    assert [n for _, n in threads] == [16]
    threads.clear()
    monkeypatch.setattr(gm, "THREAD_BLOCKS", 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a process held to one thread keeps to it
    gm.fused_statistics(C, F)
    assert [n for _, n in threads] == [16]
    threads.clear()
    for var in gm._ONE_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    S2, ll2 = gm.fused_statistics(C, F)
    assert sorted(n for _, n in threads) == [8, 8] and any(name.startswith("gmm-em") for name, _ in threads)
    np.testing.assert_array_equal(S2, S1)
    assert ll2 == ll1
    assert not any(t.name.startswith("gmm-em") for t in threading.enumerate())  # no thread left behind

    def failing(C, FT, starts):
        if threading.current_thread().name.startswith("gmm-em"):
            raise FloatingPointError("in the second thread")
        return blocks(C, FT, starts)

    monkeypatch.setattr(gm, "_block_statistics", failing)
    with pytest.raises(FloatingPointError, match="in the second thread"):  # raised to the caller, not lost
        gm.fused_statistics(C, F)


def test_alignment_to_truth_and_by_ordering(one_d):
    ex, model = one_d
    res = inference.em(model, init=start_1d(ex.data))
    swapped = gm.align(res, {"mu": ex.truth["mu"][::-1]})
    np.testing.assert_array_equal(swapped.params["mu"], res.params["mu"][::-1])
    np.testing.assert_array_equal(gm.align(swapped).params["mu"], res.params["mu"])


def test_collapse_is_a_clear_error():
    x = np.r_[np.zeros(20), np.linspace(1, 5, 20)]
    model = gm.build(x, k=2)
    with pytest.raises(FloatingPointError, match="component 0 collapsed"):
        inference.em(model, init={"w": [0.5, 0.5], "mu": [0.0, 3.0], "sigma": [0.01, 1.0]})
    res = inference.em(model, init={"w": [0.5, 0.5], "mu": [0.0, 3.0], "sigma": [0.01, 1.0]}, reg_covar=1e-4)
    assert np.all(np.isfinite(res.params["sigma"]))


@pytest.mark.parametrize("X, k, kwargs, message", [
    (np.arange(10.0), 0, {}, "k: expected at least 1 component"),
    (np.array([1.0, 1.0, 2.0]), 3, {}, r"k: expected at most as many components as distinct points in the data \(2\)"),
    (np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]]), 2, {}, "X: expected finite values, 1 rows have NaN"),
    (np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]), 2, {}, "X: column 1 is constant"),
    (np.arange(10.0), 2, {"covariance_type": "spherical"}, "covariance_type: expected 'full' or 'diag'"),
])
def test_bad_input_is_refused(X, k, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gm.build(X, k=k, **kwargs)


def test_bad_initial_values_are_refused(three_d):
    X, model = three_d
    good = {"w": TRUTH3["w"], "mu": TRUTH3["mu"], "cov": TRUTH3["cov"]}
    with pytest.raises(ValueError, match=r"init: expected mu with shape \(3, 3\)"):
        inference.em(model, init=dict(good, mu=np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"init: expected cov with shape \(3, 3, 3\)"):
        inference.em(model, init=dict(good, cov=np.stack([np.eye(3)] * 2)))
    bad_cov = TRUTH3["cov"].copy()
    bad_cov[1] = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="init: the initial covariance of component 1 is not positive definite"):
        inference.em(model, init=dict(good, cov=bad_cov))


def test_cli_csv_and_errors(tmp_path, capsys, three_d):
    import pandas as pd

    X, _ = three_d
    path = tmp_path / "x.csv"
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["label"] = "z"
    frame.to_csv(path, index=False)
    code = main(["compare", "gaussian_mixture", "--data", str(path), "--k", "3", "--estimators", "em,mle",
                 "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cov[2,0,1]" in out and "mu_first" not in out
    for argv, message in [
        (["--k", "0"], "k: expected at least 1 component"),
        (["--k", "2", "--columns", "a,zz"], "--columns: no column 'zz'"),
        (["--k", "2", "--columns", "a,label"], "--columns: column 'label' is not numeric"),
    ]:
        code = main(["compare", "gaussian_mixture", "--data", str(path), "--estimators", "em"] + argv)
        _, err = capsys.readouterr()
        assert code == 2 and message in err and err.count("\n") == 1
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1.0, 2.0, np.nan, 4.0], "b": [1.0, 1.0, 1.0, 1.0]}).to_csv(bad, index=False)
    code = main(["compare", "gaussian_mixture", "--data", str(bad), "--k", "2", "--columns", "a"])
    _, err = capsys.readouterr()
    assert code == 2 and "--data: expected finite values, 1 rows have NaN" in err
    code = main(["compare", "gaussian_mixture", "--data", str(bad), "--k", "2", "--columns", "b"])
    _, err = capsys.readouterr()
    assert code == 2 and "column 'b' is constant" in err


def test_segmentation_recovers_colour_blocks(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = np.zeros((30, 45, 3))
    img[:, :15] = [0.9, 0.1, 0.1]
    img[:, 15:30] = [0.1, 0.8, 0.2]
    img[:, 30:] = [0.1, 0.2, 0.9]
    img = np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)
    from zoo.segment import segment

    seg = segment(img, 3, seed=0)
    labels = seg["labels"]
    for block in (labels[:, :15], labels[:, 15:30], labels[:, 30:]):
        assert np.all(block == block[0, 0])
    assert len({labels[0, 0], labels[0, 20], labels[0, 40]}) == 3
    np.testing.assert_allclose(seg["segmented"][0, 0], [0.9, 0.1, 0.1], atol=0.03)
    assert all(np.isnan(v).all() for v in seg["result"].sd.values())  # no standard errors computed for a segmentation
    from skimage import io

    path = tmp_path / "blocks.png"
    io.imsave(path, (img * 255).astype(np.uint8))
    out = tmp_path / "out"
    code = main(["segment", "--image", str(path), "--k", "3", "--out", str(out)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert (out / "segmented.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["segment", "--image", "nonexistent.png"], "--image: no such file"),
    (["segment", "--k", "0"], "--k: expected a number of segments from 1 to 64"),
    (["segment", "--image", "{bad}"], "--image: cannot read"),
])
def test_segment_bad_input(tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    argv = [a.replace("{bad}", str(bad)) for a in argv]
    code = main(argv + ["--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
