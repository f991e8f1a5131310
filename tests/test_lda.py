"""LDA: the PyMC declaration against NumPy, PLSA and MAP-EM against the optimisers, variational EM (batch and online)
against the truth and against scikit-learn, the comparison helpers, the readers and the figure."""

import warnings
from importlib import import_module

import numpy as np
import pymc as pm
import pytest
import scipy.sparse as sp
from scipy.special import gammaln

import inference
from inference.em import EMDecreaseError
from inference.functions import functions_for
from inference.vem import vem
from models import lda
from zoo.documents import read_dtm_csv, read_text
from zoo.lda_figures import top_words_figure


@pytest.fixture(scope="module")
def tiny():
    """6 documents of 40 words over 8 words, 2 topics: small enough for the optimisers' dense Hessians and NUTS."""
    rng = np.random.default_rng(3)
    phi = np.array([[.30, .25, .20, .10, .05, .04, .03, .03], [.03, .03, .04, .05, .10, .20, .25, .30]])
    return lda.simulate({"theta": rng.dirichlet(np.ones(2), 6), "phi": phi}, 40, seed=1)


@pytest.fixture(scope="module")
def simulated():
    return lda.example()


@pytest.fixture(scope="module")
def reuters():
    """All 395 Reuters stories (the built-in example keeps a fifth of them out of the fit)."""
    return sp.csr_matrix(import_module("lda.datasets").load_reuters())


def _quiet(fn, *args, **kwargs):
    """Run an optimiser whose Hessian is singular (topic models are not locally identifiable in every direction)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def test_pymc_loglik_is_the_multinomial_with_its_coefficient(simulated):
    X = simulated.data
    model = lda.build(X, k=3)
    rng = np.random.default_rng(0)
    p = {"theta": rng.dirichlet(np.ones(3), X.shape[0]), "phi": rng.dirichlet(np.ones(X.shape[1]), 3)}
    dense = X.toarray()
    direct = (np.sum(dense * np.log(p["theta"] @ p["phi"])) + np.sum(gammaln(dense.sum(axis=1) + 1))
              - np.sum(gammaln(dense + 1)))
    np.testing.assert_allclose(functions_for(model).loglik_at(p), direct, rtol=1e-10)
    np.testing.assert_allclose(lda.em_math(model, prior=False).loglik(p), direct, rtol=1e-12)


def test_simulator_draws_the_declared_lengths_and_frequencies():
    truth = {"theta": np.array([[1.0, 0.0], [0.5, 0.5]]), "phi": np.array([[0.7, 0.3, 0.0], [0.0, 0.2, 0.8]])}
    X = lda.simulate(truth, [5000, 7000], seed=2).toarray()
    np.testing.assert_array_equal(X.sum(axis=1), [5000, 7000])
    expected = truth["theta"] @ truth["phi"]
    sd = np.sqrt(expected * (1 - expected) / X.sum(axis=1, keepdims=True))
    assert np.all(np.abs(X / X.sum(axis=1, keepdims=True) - expected) <= 4 * sd + 1e-12)
    np.testing.assert_array_equal(lda.simulate(truth, [50, 70], seed=5).toarray(),
                                  lda.simulate(truth, [50, 70], seed=5).toarray())


def test_plsa_em_matches_pymc_every_iteration_and_reaches_the_mle(tiny):
    model = lda.build(tiny, k=2)
    em = inference.em(model, seed=0, max_iter=20000, keep_path=True)
    assert em.converged
    assert np.all(np.diff(em.trace) >= -1e-9 * np.abs(em.trace[:-1]))
    fns = functions_for(model)
    for params, ll in zip(em.info["path"], em.trace):
        np.testing.assert_allclose(fns.loglik_at(params), ll, rtol=1e-10)
    mle = _quiet(inference.mle, model, start=lda.init(tiny, 2, np.random.default_rng(0)))
    assert mle.converged
    assert abs(em.loglik - mle.loglik) < 1e-6
    # the MLE is an interior point here, not a saturated fit: the data are not reproduced exactly
    saturated = np.sum(tiny.data * np.log(tiny.data / np.repeat(np.asarray(tiny.sum(axis=1)).ravel(),
                                                                 np.diff(tiny.indptr))))
    assert em.loglik < saturated + lda._log_coefficient(tiny) - 1.0


def test_map_em_agrees_with_map(tiny):
    model = lda.build(tiny, k=2, alpha=1.5, beta=1.2)
    a = inference.em(model, prior=True, seed=0, max_iter=20000)
    b = _quiet(inference.map_estimate, model, start=lda.init(tiny, 2, np.random.default_rng(1)))
    assert a.converged and b.converged
    np.testing.assert_allclose(a.trace[-1], functions_for(model).logpost_at(a.params), rtol=1e-10)
    perm, _ = lda.match_topics(a.params["phi"], b.params["phi"])
    np.testing.assert_allclose(a.params["phi"], b.params["phi"][perm], atol=1e-6)
    np.testing.assert_allclose(a.params["theta"], b.params["theta"][:, perm], atol=1e-6)
    # the prior matters: the MAP is not the MLE
    mle = inference.em(lda.build(tiny, k=2), seed=0, max_iter=20000)
    perm, dist = lda.match_topics(a.params["phi"], mle.params["phi"])
    assert dist.max() > 1e-3


def test_vem_is_monotone_and_recovers_well_separated_topics(simulated):
    X, truth = simulated.data, simulated.truth
    model = lda.build(X, k=3, alpha=0.2)
    res = vem(model, seed=0)
    assert res.converged and res.method == "vem"
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    np.testing.assert_allclose(res.loglik, functions_for(model).loglik_at(res.params), rtol=1e-10)
    # Tolerance: an oracle that knew every word's topic would estimate phi_k by the empirical frequencies of the
    # n_k words of topic k, with an expected L1 error of sum_v sqrt(2 / pi) sd_v, sd_v = sqrt(phi_kv (1 - phi_kv) /
    # n_k). Not knowing the topics costs something; we allow three times the oracle's expected error.
    n_k = truth["theta"].T @ np.asarray(X.sum(axis=1)).ravel()
    oracle = np.sum(np.sqrt(2 / np.pi) * np.sqrt(truth["phi"] * (1 - truth["phi"]) / n_k[:, None]), axis=1)
    perm, _ = lda.match_topics(truth["phi"], res.params["phi"])
    l1 = np.abs(res.params["phi"][perm] - truth["phi"]).sum(axis=1)
    assert np.all(l1 < 3 * oracle), (l1, oracle)
    # and every document's mixture: the posterior mean of 100 words is within 0.25 of the truth
    assert np.max(np.abs(res.params["theta"][:, perm] - truth["theta"])) < 0.25
    assert res.sd["phi"].shape == res.params["phi"].shape and np.all(res.sd["phi"] > 0)


def test_vem_newton_alpha_update_stays_monotone_and_finds_a_stationary_alpha(simulated):
    model = lda.build(simulated.data, k=3, alpha=1.0)
    res = vem(model, seed=0, update_alpha=True)
    assert np.all(np.diff(res.trace) >= -1e-9 * np.abs(res.trace[:-1]))
    alpha, gamma = res.info["alpha"], res.info["gamma"]
    from scipy.special import digamma
    s = np.sum(digamma(gamma) - digamma(gamma.sum(axis=1, keepdims=True)), axis=0)
    grad = gamma.shape[0] * (digamma(alpha.sum()) - digamma(alpha)) + s
    assert np.max(np.abs(grad)) < 1e-6 * gamma.shape[0]
    # the simulated documents were drawn with alpha = 0.2: the estimate moved from 1 toward it
    assert np.all(alpha < 0.5), alpha


def test_vem_driver_guards_and_flags():
    calls = {"n": 0}

    def step(state):
        calls["n"] += 1
        return state - 1.0  # lowers the "ELBO": the guard must catch it

    model = lda.build(sp.csr_matrix(np.array([[1, 2], [3, 1]])), k=1)
    inference.attach(model, inference.ModelHooks("lda", vem_math=lambda: inference.VEMMath(
        init=lambda rng: 0.0, step=step, elbo=lambda s: s, to_result=lambda s: {}, loglik=lambda p: 0.0)))
    with pytest.raises(EMDecreaseError):
        vem(model)
    with pytest.raises(TypeError, match="model"):
        vem(pm.Model())
    model = lda.build(lda.example().data, k=3)
    with pytest.warns(inference.ConvergenceWarning, match="vem: did not converge"):
        res = vem(model, seed=1, max_iter=2)
    assert not res.converged and res.n_iter == 2
    again = vem(model, seed=1, max_iter=2, tol=1.0)
    assert again.converged
    for name, kwargs in (("kappa", {"kappa": 0.4}), ("batch_size", {"batch_size": 0}), ("tol", {"tol": -1.0})):
        with pytest.raises(ValueError, match=name):
            vem(model, **kwargs)


def test_online_vb_runs_and_its_perplexity_is_close_to_batch(simulated):
    X = simulated.data
    train, test = X[:150], X[150:]
    batch = vem(lda.build(train, k=3, alpha=0.2), seed=0)
    online = vem(lda.build(train, k=3, alpha=0.2), seed=0, online=True, batch_size=25, epochs=20, tau0=1.0)
    assert online.method == "online_vem" and online.n_iter == 6 * len(online.info["epoch_elbo"])
    p_batch = lda.document_completion(batch.params["phi"], test, 0.2)
    p_online = lda.document_completion(online.params["phi"], test, 0.2)
    p_truth = lda.document_completion(simulated.truth["phi"], test, 0.2)
    assert p_batch < 1.05 * p_truth, (p_batch, p_truth)
    assert p_online < 1.05 * p_batch, (p_online, p_batch)


def test_reuters_vem_perplexity_no_worse_than_sklearn(reuters):
    """5-fold document completion on Reuters, k = 10, the same priors and 10 iterations for both."""
    X, k, alpha, beta, iters = reuters, 10, 0.1, 0.01, 10

    def zoo(X_train):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", inference.ConvergenceWarning)
            return vem(lda.build(X_train, k=k, alpha=alpha, beta=beta), seed=0, max_iter=iters).params["phi"]

    def sklearn(X_train):
        return lda.sklearn_lda(X_train, k, alpha=alpha, beta=beta, max_iter=iters)["phi"]

    ours = lda.kfold_perplexity(X, zoo, folds=5, alpha=alpha).mean()
    theirs = lda.kfold_perplexity(X, sklearn, folds=5, alpha=alpha).mean()
    assert ours <= 1.02 * theirs, (ours, theirs)


def test_bad_input_names_the_argument(tiny):
    with pytest.raises(ValueError, match="alpha: MAP-EM needs"):
        inference.em(lda.build(tiny, k=2, alpha=0.5, beta=2.0), prior=True)
    with pytest.raises(ValueError, match="beta: MAP-EM needs"):
        inference.em(lda.build(tiny, k=2, alpha=2.0, beta=0.5), prior=True)
    with pytest.raises(ValueError, match="X: expected integer counts"):
        lda.build(sp.csr_matrix(np.array([[1.5, 2.0], [1.0, 0.0]])), k=1)
    with pytest.raises(ValueError, match="X: expected non-negative"):
        lda.build(np.array([[1, -2], [1, 0]]), k=1)
    with pytest.raises(ValueError, match=r"X: expected every document.*row 1"):
        lda.build(sp.csr_matrix(np.array([[1, 2], [0, 0]])), k=1)
    with pytest.raises(ValueError, match="k: expected at least 1 topic"):
        lda.build(tiny, k=0)
    with pytest.raises(ValueError, match="alpha: expected positive"):
        lda.build(tiny, k=2, alpha=-1.0)
    with pytest.raises(ValueError, match="beta: expected"):
        lda.build(tiny, k=2, beta=np.ones(3))
    with pytest.raises(ValueError, match="example: expected 'simulated' or 'reuters'"):
        lda.example(example="20newsgroups")


def test_helpers(simulated):
    X, truth = simulated.data, simulated.truth
    perm = np.array([2, 0, 1])
    found, dist = lda.match_topics(truth["phi"], truth["phi"][perm])
    np.testing.assert_array_equal(truth["phi"][perm][found], truth["phi"])
    np.testing.assert_allclose(dist, 0.0, atol=1e-7)
    words = lda.top_words(truth["phi"], simulated.extra["vocab"], n=10)
    assert [sorted(w) for w in words] == [sorted(f"w{j}" for j in range(10 * t, 10 * t + 10)) for t in range(3)]
    # UMass against a literal loop over documents
    dense = X.toarray() > 0
    top = np.argsort(-truth["phi"][0], kind="stable")[:5]
    naive = sum(np.log((np.sum(dense[:, top[i]] & dense[:, top[j]]) + 1) / np.sum(dense[:, top[i]]))
                for j in range(1, 5) for i in range(j))
    np.testing.assert_allclose(lda.coherence_umass(truth["phi"], X, n=5)[0], naive, rtol=1e-12)
    # mixed topics are less coherent than the true ones
    mixed = np.full_like(truth["phi"], 1.0 / X.shape[1]) + 1e-3 * np.arange(X.shape[1])
    assert lda.coherence_umass(mixed / mixed.sum(axis=1, keepdims=True), X).mean() < \
        lda.coherence_umass(truth["phi"], X).mean()
    # the split keeps every token; the true topics complete documents better than uniform ones
    before = X.copy()
    obs, held = lda.split_documents(X, 0.5, seed=0)
    assert (obs + held - X).nnz == 0 and (X != before).nnz == 0  # every token kept, the input untouched
    assert np.all(np.diff(obs.indptr) > 0)
    assert lda.document_completion(truth["phi"], X, 0.2) < 0.7 * X.shape[1]
    np.testing.assert_allclose(lda.perplexity(np.ones((X.shape[0], 1)), np.full((1, X.shape[1]), 1 / X.shape[1]), X),
                               X.shape[1], rtol=1e-12)


def test_peers_on_the_simulated_corpus(simulated):
    X, truth = simulated.data, simulated.truth
    for fit in (lda.sklearn_lda(X, 3, alpha=0.2, beta=0.01, max_iter=50),
                lda.sklearn_lda(X, 3, alpha=0.2, beta=0.01, max_iter=20, learning_method="online"),
                lda.gibbs_lda(X, 3, alpha=0.2, beta=0.01, n_iter=300)):
        assert fit["phi"].shape == (3, X.shape[1]) and fit["theta"].shape == (X.shape[0], 3)
        np.testing.assert_allclose(fit["phi"].sum(axis=1), 1.0)
        np.testing.assert_allclose(fit["theta"].sum(axis=1), 1.0)
        # each found topic's ten most probable words are one true topic's own block (the sampler, with beta = 0.01,
        # prefers sparser topics than the truth and gives the shared words to one topic: compare the blocks only)
        perm, _ = lda.match_topics(truth["phi"], fit["phi"])
        vocab = simulated.extra["vocab"]
        assert [set(w) for w in lda.top_words(fit["phi"][perm], vocab)] == \
            [set(w) for w in lda.top_words(truth["phi"], vocab)]


def test_advi_and_nuts_on_a_tiny_corpus(tiny):
    """The product theta @ phi is identifiable (invariant to relabelling the topics): compare it across methods."""
    model = lda.build(tiny, k=2, alpha=1.5, beta=1.2)
    with warnings.catch_warnings():  # the chains visit different labellings of the topics: R-hat of phi is large
        warnings.simplefilter("ignore", inference.ConvergenceWarning)
        nuts = inference.nuts(model, seed=0, draws=300, tune=300)
    draws = np.einsum("cnik,cnkv->cniv", nuts.draws["theta"], nuts.draws["phi"])
    assert np.all(np.isfinite(draws)) and draws.shape[:2] == (2, 300)
    np.testing.assert_allclose(draws.sum(axis=-1), 1.0, rtol=1e-10)
    advi = inference.advi(model, seed=0)
    assert advi.converged
    mean, sd = draws.mean(axis=(0, 1)), draws.std(axis=(0, 1))
    p_advi = advi.params["theta"] @ advi.params["phi"]
    # mean-field ADVI's mean of theta @ phi within 2 posterior sds of NUTS' (its means are usually good)
    assert np.all(np.abs(p_advi - mean) < 2 * sd + 0.01), np.max(np.abs(p_advi - mean) / sd)


def test_read_text_and_csv(tmp_path):
    text = tmp_path / "docs.txt"
    text.write_text("the cat sat on the mat with a cat\n\nthe dog chased the cat\nthe the the\n")
    corpus = read_text(text)
    assert corpus.vocab == ["cat", "chased", "dog", "mat", "sat"]
    np.testing.assert_array_equal(corpus.X.toarray(), [[2, 0, 0, 1, 1], [1, 1, 1, 0, 0]])
    assert corpus.dropped == [1, 3]
    assert read_text(text, min_df=2).vocab == ["cat"]
    with pytest.raises(ValueError, match="min_df"):
        read_text(text, min_df=0)
    with pytest.raises(ValueError, match="path: no such file"):
        read_text(tmp_path / "missing.txt")
    csv = tmp_path / "dtm.csv"
    csv.write_text("apple,banana,cherry\n1,0,2\n0,0,0\n3,1,0\n")
    corpus = read_dtm_csv(csv)
    assert corpus.vocab == ["apple", "banana", "cherry"] and corpus.dropped == [1]
    np.testing.assert_array_equal(corpus.X.toarray(), [[1, 0, 2], [3, 1, 0]])
    csv.write_text("apple,banana\n1,0.5\n")
    with pytest.raises(ValueError, match="path: expected non-negative integer counts.*banana"):
        read_dtm_csv(csv)


def test_top_words_figure(simulated):
    phi = simulated.truth["phi"]
    fig = top_words_figure({"truth": phi, "shuffled": phi[[1, 2, 0]]}, simulated.extra["vocab"], n_words=5)
    axes = fig.get_axes()
    assert len(axes) == 6
    assert len(axes[0].patches) == 5
    assert {t.get_text() for t in axes[0].get_yticklabels()} <= {f"w{j}" for j in range(10)}
    with pytest.raises(ValueError, match="vocab"):
        top_words_figure({"truth": phi}, ["a"])
