"""Latent Dirichlet allocation (Blei, Ng & Jordan 2003) with the topic of every word summed out.

Declaration (``build``), for D documents, a vocabulary of V words and k topics::

    theta_d ~ Dirichlet(alpha)                 d = 1..D, theta is D x k     default alpha = 1/k (symmetric)
    phi_j   ~ Dirichlet(beta)                  j = 1..k, phi is k x V       default beta = 0.01 (symmetric)
    n_d     ~ Multinomial(N_d, theta_d @ phi)  the word counts of document d, N_d its length

Drawing a topic z for each word and then the word from phi_z gives word v with probability
sum_j theta_dj phi_jv = (theta_d @ phi)_v, so summing the topics out leaves a multinomial per document: the
likelihood is exact and every generic estimator (MLE, MAP, ADVI, NUTS) runs on the PyMC model. The defaults are
scikit-learn's and gensim's alpha = 1/k and Griffiths & Steyvers' (and the ``lda`` package's) beta = 0.01; both can
be scalars (symmetric) or vectors of length k and V.

The corpus enters as a sparse document-term matrix (scipy.sparse, converted to CSR); only its nonzero entries are
stored. The observation is one ``pm.CustomDist`` over those entries (rows, columns and counts as data) whose log
density is::

    sum_(d,v) [ n_dv log (theta_d @ phi)_v - log n_dv! ] + sum_d log N_d!

that is, the multinomial log-probability **including** the multinomial coefficient, so ``model.logp(vars=
model.observed_RVs)`` is the log-likelihood of the counts. (Perplexities below are per word and leave it out, as is
usual.) The simulator draws from the same declaration (``pm.do`` fixes theta and phi, ``pm.draw`` draws the counts):
it declares every (document, word) pair, so it builds a D x V array of counts and is meant for small corpora.

Built-in examples: a simulated corpus with well-separated topics (the default: 3 topics over 30 words, each putting
90 % of its mass on its own 10 words; 200 documents of 100 words), and ``"reuters"``, the 395 Reuters news stories
(4,258 words, 84,010 tokens) shipped with the ``lda`` package. The 20 Newsgroups corpus is not offered: scikit-learn
downloads it on first use, and the zoo reads nothing from the network.

Estimators particular to this model:

* EM without priors is probabilistic latent semantic analysis (PLSA, Hofmann 1999) and reaches the MLE: with
  n_dk = sum_v n_dv r_dvk and n_kv = sum_d n_dv r_dvk, where r_dvk = theta_dk phi_kv / (theta_d @ phi)_v is the
  probability that a word v of document d came from topic k, the M-step is theta_dk = n_dk / N_d and
  phi_kv = n_kv / sum_v n_kv. With R the sparse matrix of n_dv / (theta_d @ phi)_v on the corpus's nonzeros,
  n_dk = theta_dk (R phi^T)_dk and n_kv = phi_kv (theta^T R)_kv: two sparse-dense products per iteration.
* MAP-EM adds the Dirichlet priors: theta_dk proportional to n_dk + alpha_k - 1, phi_kv to n_kv + beta_v - 1. The
  posterior density has an interior mode only when every alpha and beta is at least 1, so MAP-EM refuses smaller
  priors (the usual sparse ones); variational EM handles those.
* Variational EM (``inference.vem.vem``) in Hoffman, Blei & Bach's (2010) formulation: q(theta_d) = Dirichlet
  (gamma_d), q(phi_k) = Dirichlet(lambda_k), q(z_dn) = Categorical(varphi_dn). Keeping a distribution over phi (not
  Blei 2003's point estimate) makes the smoothing prior beta act, puts both levels under one ELBO that bounds the log
  marginal likelihood of the declared model, and is what the online variant and scikit-learn update. The E-step, per
  document, alternates varphi_dvk proportional to exp(E log theta_dk + E log phi_kv) and gamma_d = alpha +
  sum_v n_dv varphi_dv to convergence; it runs for all documents at once with sparse products (as above, with
  exp E log in place of the parameters). The M-step sets lambda_kv = beta_v + sum_d n_dv varphi_dvk and, with
  ``update_alpha=True``, maximises the ELBO over alpha by Newton's method (Blei et al. 2003, appendix A.4.2).
  Point estimates are the posterior means under q: theta = gamma / sum gamma, phi = lambda / sum lambda.

NUTS is not a default estimator (``NOT_DEFAULT``), nor is MLE/MAP by optimisation or ADVI on large corpora: see the
constants below.
"""

from __future__ import annotations

import weakref

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import scipy.sparse as sp
from numba import njit
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma, gammaln, polygamma

from inference.base import EMMath, ModelHooks, ModelSpec, Option, VEMMath, attach

from ._common import Example, dist_params

NAME = "lda"
DESCRIPTION = "latent Dirichlet allocation: word counts ~ Multinomial(N_d, theta_d @ phi), k topics"
EXAMPLE_SEED = 42
# The largest number of parameters (D + V) k for which the dense (D + V) k square matrices behind EM's standard
# errors (the observed information) and ADVI's many full-corpus gradient passes are affordable (0.5 GB at 8,000).
MAX_DENSE = 8000
# ADVI's stochastic gradients over the PyMC graph: about 40 ms per step on the simulated example's 690 parameters and
# 6,000 counts, four minutes to converge; so by default only on corpora of at most this many parameters.
MAX_ADVI = 300
# Comparison tables show phi (k x V) up to this many entries, and no parameter table beyond: theta (D x k) never,
# as its D rows say nothing a reader can take in; the metrics (perplexity, coherence, top words) compare the fits.
MAX_SHOWN = 300
NOT_DEFAULT = {
    "nuts": "the posterior is multimodal (the k! relabellings of the topics, and more): chains land in different "
            "modes, so R-hat cannot certify them, and each gradient costs a pass over the corpus for (D + V) k "
            "parameters; it runs on tiny corpora only",
    "mle": "the optimisers build a dense Hessian over all (D + V) k parameters (singular, since theta @ phi is "
           "invariant to topic relabelling); EM reaches the same maximum at a fraction of the cost",
    "map": "as for mle; MAP-EM reaches the MAP",
    "fullrank_advi": "a covariance over all (D + V) k parameters",
    "laplace": "as for mle: a dense Hessian over all (D + V) k parameters, singular at the mode",
    "pathfinder": "its paths each settle on one of the k! labellings of the topics and their draws are pooled, "
                  "which mixes topics; each path is an L-BFGS run over all (D + V) k parameters",
    "map_em": "with alpha or beta below 1 (the defaults 1/k and 0.01): the posterior density is unbounded at the "
              "edges of the simplex and has no interior mode; vem handles such priors",
    "em": "PLSA's maximum lies on the boundary of the simplex on most corpora (documents that use only some "
          "topics), where EM converges sublinearly, and its observed information is singular (theta @ phi is "
          "unchanged by mixing topics), so it has no standard errors; ask for it with --estimators em",
    "advi": f"on corpora with (D + V) k above {MAX_ADVI:,}: minutes of stochastic gradient steps, while vem "
            "optimises the same kind of bound in closed form",
}
SIMULATED = {"k": 3, "V": 30, "D": 200, "N": 100, "own": 0.9, "alpha": 0.2, "held_out": 50}
HELD_OUT = 0.2  # the share of a real corpus's documents kept out of the fit, for held-out perplexity

__all__ = ["NAME", "NOT_DEFAULT", "as_corpus", "build", "coherence_umass", "document_completion", "e_step",
           "em_math", "example", "kfold_perplexity", "match_topics", "perplexity", "split_documents", "simulate",
           "top_words", "vem_math"]


# ------------------------------------------------------------------------------------------------ input checks
def as_corpus(X, name: str = "X") -> sp.csr_matrix:
    """A document-term matrix as CSR of int64 counts; ValueError naming ``name`` when it is not one.

    Accepts any scipy.sparse matrix or a 2-D array (documents in rows, words in columns). Every document needs at
    least one word; words that never occur are allowed (their topic probabilities go to the prior).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    else:
        try:
            arr = np.asarray(X, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a document-term matrix of counts, got values that are not "
                             "numeric") from None
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D document-term matrix, got shape {arr.shape}")
        X = sp.csr_matrix(arr)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one document and one word, got shape {X.shape}")
    data = np.asarray(X.data, dtype=float)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name}: expected finite counts, found NaN or inf")
    if np.any(data < 0):
        raise ValueError(f"{name}: expected non-negative counts, found {data[data < 0][0]:g}")
    if np.any(data != np.round(data)):
        raise ValueError(f"{name}: expected integer counts, found {data[data != np.round(data)][0]:g}")
    X = sp.csr_matrix((data.astype(np.int64), X.indices.copy(), X.indptr.copy()), shape=X.shape)
    X.eliminate_zeros()  # in place: on copies of the index arrays, never on the caller's
    X.sort_indices()
    lengths = np.diff(X.indptr)
    if np.any(lengths == 0):
        empty = np.flatnonzero(lengths == 0)
        raise ValueError(f"{name}: expected every document to have at least one word; {empty.size} are empty "
                         f"(first: row {int(empty[0])})")
    return X


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k: expected a positive integer number of topics, got {k!r}")
    if k < 1:
        raise ValueError(f"k: expected at least 1 topic, got {k}")
    return int(k)


def _concentration(value, size: int, name: str) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=float), (size,)).copy()
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number or {size} positive numbers, got {value!r}") from None
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name}: expected positive concentrations, got {value!r}")
    return arr


# ------------------------------------------------------------------------------------------------- declaration
def _word_logp(value, theta, phi, rows, cols, lengths):
    p = (theta[rows] * phi[:, cols].T).sum(axis=-1)
    return pt.sum(value * pt.log(p) - pt.gammaln(value + 1.0)) + pt.sum(pt.gammaln(lengths + 1.0))


def _word_random(theta, phi, rows, cols, lengths, rng=None, size=None):
    """Counts on the declared (row, col) pairs: document d's N_d words drawn from theta_d @ phi restricted to its
    declared words (the model's multinomial exactly when every word is declared, as the simulator does)."""
    if size not in (None, ()):
        raise NotImplementedError("the LDA word counts are drawn one corpus at a time")
    p = np.sum(theta[rows] * phi[:, cols].T, axis=-1)
    bounds = np.searchsorted(rows, np.arange(len(lengths) + 1))
    out = np.zeros(len(rows), dtype=np.int64)
    for d in range(len(lengths)):
        lo, hi = bounds[d], bounds[d + 1]
        if hi > lo:
            out[lo:hi] = rng.multinomial(int(lengths[d]), p[lo:hi] / p[lo:hi].sum())
    return out


def _declare(rows, cols, counts, lengths, D: int, V: int, k: int, alpha, beta) -> pm.Model:
    with pm.Model() as model:
        rows_data = pm.Data("rows", rows.astype(np.int64))
        cols_data = pm.Data("cols", cols.astype(np.int64))
        lengths_data = pm.Data("lengths", lengths.astype(np.int64))
        counts_data = pm.Data("counts", counts.astype(np.int64))
        theta = pm.Dirichlet("theta", np.tile(alpha, (D, 1)))
        phi = pm.Dirichlet("phi", np.tile(beta, (k, 1)))
        pm.CustomDist("words", theta, phi, rows_data, cols_data, lengths_data, logp=_word_logp,
                      random=_word_random, signature="(d,k),(k,v),(n),(n),(d)->(n)", dtype="int64",
                      observed=counts_data)
    return model


def build(X, k: int = 3, *, alpha=None, beta=0.01) -> pm.Model:
    """The PyMC model of the document-term matrix ``X`` with ``k`` topics.

    Parameters
    ----------
    X : scipy.sparse matrix (or 2-D array) of non-negative integer counts, documents in rows; no empty document.
    k : number of topics (>= 1).
    alpha : concentration of the Dirichlet prior on each document's topic proportions theta_d: a scalar (symmetric)
        or k values. Default 1/k.
    beta : concentration of the Dirichlet prior on each topic's word distribution phi_j: a scalar or V values.
        Default 0.01.
    """
    X = as_corpus(X)
    k = _check_k(k)
    D, V = X.shape
    alpha = _concentration(1.0 / k if alpha is None else alpha, k, "alpha")
    beta = _concentration(beta, V, "beta")
    coo = X.tocoo()
    model = _declare(coo.row, coo.col, coo.data, np.asarray(X.sum(axis=1)).ravel(), D, V, k, alpha, beta)
    options = {"k": k, "alpha": alpha, "beta": beta}
    return attach(model, ModelHooks(NAME, options, em_math=lambda prior: em_math(model, prior=prior),
                                    vem_math=lambda **opts: vem_math(model, **opts),
                                    init=lambda rng: init(X, k, rng), align=aligner(),
                                    public=["phi"] if k * V <= MAX_SHOWN else [],
                                    skip=skipped(D, V, k, alpha, beta)))


def skipped(D: int, V: int, k: int, alpha, beta) -> dict:
    """The estimators left out of the default list for a corpus of D documents and V words with k topics, each
    with its reason (see ``NOT_DEFAULT``)."""
    out = {name: NOT_DEFAULT[name] for name in ("nuts", "mle", "map", "fullrank_advi", "em", "laplace", "pathfinder")}
    if np.any(np.asarray(alpha) < 1) or np.any(np.asarray(beta) < 1):
        out["map_em"] = NOT_DEFAULT["map_em"]
    size = (D + V) * k
    for name, limit in (("map_em", MAX_DENSE), ("advi", MAX_ADVI)):
        if size > limit:
            reason = ("its standard errors need the dense observed information over all the parameters"
                      if name == "map_em" else NOT_DEFAULT[name].split(": ", 1)[1])
            out.setdefault(name, f"{size:,} parameters (D + V) k, above {limit:,}: {reason}")
    return out


def aligner():
    """``align(result, truth)`` for one built model: the topics of ``result`` relabelled to match the truth's
    (Hungarian matching on Hellinger distances, ``match_topics``) or, without a truth, the first result aligned on
    this model, so that topic j is the same topic for every estimator. Permutes phi's rows and theta's columns (with
    their sds, draws and the variational parameters in ``info``)."""
    reference = {}

    def align(result, truth=None):
        from dataclasses import replace

        phi = np.asarray(result.params["phi"])
        target = truth["phi"] if truth is not None and "phi" in truth else reference.setdefault("phi", phi)
        perm, _ = match_topics(target, phi)
        if np.array_equal(perm, np.arange(perm.size)):
            return result
        axes = {"phi": 0, "theta": 1, "lambda": 0, "gamma": 1, "alpha": 0}
        params, sd = dict(result.params), dict(result.sd)
        for name in ("phi", "theta"):
            params[name] = np.take(params[name], perm, axis=axes[name])
            if name in sd:
                sd[name] = np.take(sd[name], perm, axis=axes[name])
        draws = None if result.draws is None else {
            n: (np.take(v, perm, axis=v.ndim - 2 + axes[n]) if n in ("phi", "theta") else v)
            for n, v in result.draws.items()}
        info = {n: (np.take(v, perm, axis=axes[n]) if n in ("lambda", "gamma", "alpha") and np.ndim(v) else v)
                for n, v in result.info.items()}
        return replace(result, params=params, sd=sd, draws=draws, info=info)

    return align


def corpus_of(model: pm.Model) -> sp.csr_matrix:
    """The document-term matrix a model was built from, read back from its data containers."""
    rows = np.asarray(model["rows"].get_value())
    cols = np.asarray(model["cols"].get_value())
    counts = np.asarray(model["counts"].get_value())
    D = int(np.asarray(model["lengths"].get_value()).size)
    V = _priors(model)[1].size
    return sp.csr_matrix((counts, (rows, cols)), shape=(D, V))


def _priors(model: pm.Model) -> tuple[np.ndarray, np.ndarray]:
    alpha = dist_params(model, "theta", "dirichlet")[0]
    beta = dist_params(model, "phi", "dirichlet")[0]
    return np.atleast_2d(alpha)[0], np.atleast_2d(beta)[0]


# -------------------------------------------------------------------------------------------------- simulation
def simulate(params: dict, lengths, seed=EXAMPLE_SEED) -> sp.csr_matrix:
    """A corpus drawn from the declaration with ``theta`` (D x k) and ``phi`` (k x V) fixed; ``lengths`` gives the
    number of words of each document (D values). Every (document, word) pair is declared, so the draw is the
    model's multinomial; zero counts are dropped from the CSR matrix returned."""
    theta = np.asarray(params["theta"], dtype=float)
    phi = np.asarray(params["phi"], dtype=float)
    if theta.ndim != 2 or phi.ndim != 2 or theta.shape[1] != phi.shape[0]:
        raise ValueError(f"params: expected theta (D x k) and phi (k x V), got shapes {theta.shape} and {phi.shape}")
    D, k = theta.shape
    V = phi.shape[1]
    lengths = np.broadcast_to(np.asarray(lengths), (D,))
    if np.any(lengths < 1) or np.any(lengths != np.round(lengths)):
        raise ValueError("lengths: expected a positive integer number of words per document")
    rows, cols = np.repeat(np.arange(D), V), np.tile(np.arange(V), D)
    model = _declare(rows, cols, np.zeros(D * V), lengths.astype(np.int64), D, V, k, np.ones(k), np.ones(V))
    fixed = pm.do(model, {"theta": theta, "phi": phi})
    counts = np.asarray(pm.draw(fixed["words"], random_seed=seed))
    X = sp.csr_matrix((counts, (rows, cols)), shape=(D, V))
    X.eliminate_zeros()
    return X


def simulated_truth(seed=EXAMPLE_SEED) -> dict:
    """The built-in example's topics (each word block owned by one topic) and document mixtures."""
    s = SIMULATED
    k, V = s["k"], s["V"]
    block = V // k
    phi = np.full((k, V), (1 - s["own"]) / (V - block))
    for j in range(k):
        phi[j, j * block:(j + 1) * block] = s["own"] / block
    theta = np.random.default_rng(seed).dirichlet(np.full(k, s["alpha"]), size=s["D"])
    return {"theta": theta, "phi": phi}


def hold_out(X, fraction: float = HELD_OUT, seed=0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The documents of ``X`` split at random into those a fit uses and ``fraction`` of them (at least one) kept
    out for held-out perplexity; both keep the original order. Returns (fitted, held_out)."""
    X = as_corpus(X)
    if not 0 < fraction < 1 or X.shape[0] < 2:
        raise ValueError(f"fraction: expected a number in (0, 1) and at least 2 documents, got {fraction!r} and "
                         f"{X.shape[0]}")
    n_out = max(1, int(round(fraction * X.shape[0])))
    out = np.zeros(X.shape[0], dtype=bool)
    out[np.random.default_rng(seed).choice(X.shape[0], n_out, replace=False)] = True
    return X[~out], X[out]


def example(seed=EXAMPLE_SEED, example: str = "simulated") -> Example:
    """The simulated corpus (default) or ``"reuters"``; ``extra`` holds the words (``vocab``) and the documents kept
    out of the fit (``held_out``): 50 more drawn from the true topics, or a fifth of Reuters' stories."""
    if example == "simulated":
        truth = simulated_truth(seed)
        X = simulate(truth, SIMULATED["N"], seed)
        more = np.random.default_rng(seed + 1).dirichlet(np.full(SIMULATED["k"], SIMULATED["alpha"]),
                                                         size=SIMULATED["held_out"])
        held = simulate({"theta": more, "phi": truth["phi"]}, SIMULATED["N"], seed + 1)
        vocab = [f"w{j}" for j in range(SIMULATED["V"])]
        return Example(X, build_kwargs={"k": SIMULATED["k"]}, truth=truth, extra={"vocab": vocab, "held_out": held})
    if example == "reuters":
        import lda.datasets

        X, held = hold_out(sp.csr_matrix(lda.datasets.load_reuters()), HELD_OUT, seed)
        return Example(X, build_kwargs={"k": 10}, source="reuters (Blei's 395 stories, from the lda package)",
                       extra={"vocab": list(lda.datasets.load_reuters_vocab()), "held_out": held})
    raise ValueError(f"example: expected 'simulated' or 'reuters', got {example!r}")


def init(X: sp.csr_matrix, k: int, rng) -> dict:
    """A start from the data: document mixtures from a flat Dirichlet, topics the corpus's word frequencies
    (add-one smoothed) multiplied by independent Gamma(1, 1) noise, so the topics differ."""
    D, V = X.shape
    freq = np.asarray(X.sum(axis=0)).ravel() + 1.0
    phi = freq[None, :] * rng.gamma(1.0, 1.0, size=(k, V))
    return {"theta": rng.dirichlet(np.ones(k), size=D), "phi": phi / phi.sum(axis=1, keepdims=True)}


def seed_documents(X: sp.csr_matrix, k: int, rng) -> np.ndarray:
    """The word frequencies of k documents picked k-means++ style (Arthur & Vassilvitskii 2007): each next document
    with probability proportional to its squared Hellinger distance to the nearest one already picked, so the
    seeds spread over the corpus's distinct themes. Returns k x V rows on the simplex."""
    lengths = np.asarray(X.sum(axis=1)).ravel()
    root = sp.diags(1.0 / lengths) @ X
    root.data = np.sqrt(root.data)  # sqrt of the word frequencies: Hellinger^2 = 1 - <sqrt p, sqrt q>
    picked = [int(rng.integers(X.shape[0]))]
    d2 = np.full(X.shape[0], np.inf)
    for _ in range(k - 1):
        affinity = np.asarray(root @ root[picked[-1]].T.toarray()).ravel()
        d2 = np.minimum(d2, np.clip(1.0 - affinity, 0.0, None))
        total = d2.sum()
        picked.append(int(rng.choice(X.shape[0], p=d2 / total)) if total > 0 else int(rng.integers(X.shape[0])))
    seeds = X[picked].toarray().astype(float)
    return seeds / seeds.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------ the EM math
def _rowdot(A, B, X: sp.csr_matrix) -> np.ndarray:
    """(A @ B)[d, v] at the nonzero entries of X, in CSR order, without forming A @ B."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return np.einsum("nk,nk->n", A[rows], np.ascontiguousarray(B.T)[X.indices])


def _with_data(X: sp.csr_matrix, data) -> sp.csr_matrix:
    return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape)


def _log_coefficient(X: sp.csr_matrix) -> float:
    return float(np.sum(gammaln(np.asarray(X.sum(axis=1)).ravel() + 1.0)) - np.sum(gammaln(X.data + 1.0)))


def _dirichlet_logpdf_rows(P, a) -> float:
    """sum over rows of log Dirichlet(P_i | a), P with rows on the simplex."""
    with np.errstate(divide="ignore"):
        logP = np.log(P)
    return float(P.shape[0] * (gammaln(a.sum()) - gammaln(a).sum()) + np.sum((a - 1.0) * logP, where=a - 1.0 != 0))


def em_math(model: pm.Model, *, prior: bool) -> EMMath:
    """PLSA (``prior=False``) or MAP-EM (``prior=True``, every alpha and beta >= 1) on the model's corpus."""
    X = corpus_of(model)
    D, V = X.shape
    alpha, beta = _priors(model)
    k = alpha.size
    if prior and (np.any(alpha < 1) or np.any(beta < 1)):
        bad = "alpha" if np.any(alpha < 1) else "beta"
        raise ValueError(f"{bad}: MAP-EM needs every alpha and beta >= 1 (below 1 the posterior density is "
                         f"unbounded at the edges of the simplex and has no interior mode); got {bad} = "
                         f"{np.min(alpha if bad == 'alpha' else beta):g}. Use variational EM "
                         "(inference.vem.vem) for sparse priors")
    lengths = np.asarray(X.sum(axis=1)).ravel().astype(float)
    coefficient = _log_coefficient(X)
    counts = X.data.astype(float)

    def loglik(p):
        return float(counts @ np.log(_rowdot(p["theta"], p["phi"], X)) + coefficient)

    def step(p):
        theta, phi = p["theta"], p["phi"]
        R = _with_data(X, counts / _rowdot(theta, phi, X))
        n_dk = theta * (R @ phi.T)
        n_kv = phi * (R.T @ theta).T
        if prior:
            n_dk, n_kv = n_dk + alpha - 1.0, n_kv + beta - 1.0
        theta = n_dk / (lengths[:, None] if not prior else n_dk.sum(axis=1, keepdims=True))
        if np.any(n_kv.sum(axis=1) <= 0):
            raise FloatingPointError("EM: a topic lost all its words (empty topic); use fewer topics")
        return {"theta": theta, "phi": n_kv / n_kv.sum(axis=1, keepdims=True)}

    def log_prior(p):
        return _dirichlet_logpdf_rows(p["theta"], alpha) + _dirichlet_logpdf_rows(p["phi"], beta)

    def check_init(p):
        out = {}
        for name, shape in (("theta", (D, k)), ("phi", (k, V))):
            if name not in p:
                raise ValueError(f"init: expected a value for {name}")
            value = np.asarray(p[name], dtype=float)
            if value.shape != shape or np.any(value <= 0) or not np.allclose(value.sum(axis=1), 1.0):
                raise ValueError(f"init: expected {name} as {shape[0]} x {shape[1]} positive rows summing to 1")
            out[name] = value
        return out

    return EMMath(init=lambda rng: init(X, k, rng), step=step, loglik=loglik,
                  log_prior=log_prior if prior else None, check_init=check_init)


# ----------------------------------------------------------------------------------------------- the VEM math
def _expected_log_dirichlet(G) -> np.ndarray:
    """E log x under Dirichlet(G_i) for every row i: digamma(G) - digamma(row sum)."""
    return digamma(G) - digamma(G.sum(axis=1, keepdims=True))


def e_step(X: sp.csr_matrix, exp_elog_phi, alpha, gamma, *, tol: float = 1e-3, max_iter: int = 100) -> np.ndarray:
    """The variational E-step of every document, topics fixed, from the start ``gamma`` (D x k).

    Per document d, alternates varphi_dvk proportional to exp(E log theta_dk) exp(E log phi_kv) and
    gamma_d = alpha + sum_v n_dv varphi_dv, i.e. gamma_d = alpha + exp(E log theta_d) * sum_v s_dv exp(E log phi_v)
    with s_dv = n_dv / sum_k exp(E log theta_dk + E log phi_kv). Each pass raises the document's part of the
    ELBO; the document stops when the mean absolute change of gamma_d falls below ``tol`` (scikit-learn's criterion)
    or after ``max_iter`` passes. One compiled loop over the documents and their nonzero counts (Numba), so
    nothing of size nonzeros x k is formed.
    """
    gamma = np.array(gamma, dtype=float)
    exp_elog_phi_t = np.ascontiguousarray(np.asarray(exp_elog_phi, dtype=float).T)  # V x k: a word's row is contiguous
    _e_step_kernel(X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(float), exp_elog_phi_t,
                   np.ascontiguousarray(alpha, dtype=float), gamma, float(tol), int(max_iter))
    return gamma


@njit(cache=True)
def _digamma(x):
    """psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, then the asymptotic series to
    x^-14 (its next term is below 1e-16 there)."""
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    t = f * (-1.0 / 12 + f * (1.0 / 120 + f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (
        691.0 / 32760 + f * (-1.0 / 12)))))))
    return r + np.log(x) - 0.5 / x + t


@njit(cache=True)
def _e_step_kernel(indptr, indices, counts, G, alpha, gamma, tol, max_iter):
    k = G.shape[1]
    eth = np.empty(k)
    acc = np.empty(k)
    for d in range(gamma.shape[0]):
        start, stop = indptr[d], indptr[d + 1]
        g = gamma[d]
        if start == stop:  # no words: the posterior is the prior
            g[:] = alpha
            continue
        for _ in range(max_iter):
            total = 0.0
            for j in range(k):
                total += g[j]
            psi_total = _digamma(total)
            for j in range(k):
                eth[j] = np.exp(_digamma(g[j]) - psi_total)
                acc[j] = 0.0
            for n in range(start, stop):
                w = indices[n]
                dot = 0.0
                for j in range(k):
                    dot += eth[j] * G[w, j]
                s = counts[n] / dot
                for j in range(k):
                    acc[j] += s * G[w, j]
            change = 0.0
            for j in range(k):
                new = alpha[j] + eth[j] * acc[j]
                change += abs(new - g[j])
                g[j] = new
            if change / k < tol:
                break


def sufficient_statistics(X: sp.csr_matrix, gamma, exp_elog_phi) -> np.ndarray:
    """sum_d n_dv varphi_dvk (k x V) with varphi at its optimum given gamma and q(phi)."""
    exp_elog_theta = np.exp(_expected_log_dirichlet(gamma))
    S = _with_data(X, X.data / _rowdot(exp_elog_theta, exp_elog_phi, X))
    return (S.T @ exp_elog_theta).T * exp_elog_phi


def doc_bounds(X: sp.csr_matrix, gamma, exp_elog_phi, alpha) -> np.ndarray:
    """Each document's part of the ELBO with varphi at its optimum given gamma and q(phi):
    sum_v n_dv log sum_k exp(E log theta_dk + E log phi_kv) + E log p(theta_d | alpha) - E log q(theta_d)."""
    elog_theta = _expected_log_dirichlet(gamma)
    words = X.data * np.log(_rowdot(np.exp(elog_theta), exp_elog_phi, X))
    return (np.add.reduceat(words, X.indptr[:-1]) + np.sum((alpha - gamma) * elog_theta + gammaln(gamma), axis=1)
            - gammaln(gamma.sum(axis=1)) + gammaln(alpha.sum()) - gammaln(alpha).sum())


def best_e_step(X: sp.csr_matrix, exp_elog_phi, alpha, gamma, *, tol: float = 1e-3, max_iter: int = 100):
    """The E-step run twice, from the previous ``gamma`` and from a fresh flat start (gamma = 1, sharper than
    alpha + N_d / k), keeping per document the one with the higher bound. The per-document problem has local optima
    and a warm start tends to stay in its first one (on the simulated example, warm starts alone ended hundreds of
    nats below scikit-learn, which restarts every E-step); a fresh start alone could lower the ELBO. Taking the best
    of both keeps every sweep monotone. Returns gamma and the per-document bounds."""
    warm = e_step(X, exp_elog_phi, alpha, gamma, tol=tol, max_iter=max_iter)
    fresh = e_step(X, exp_elog_phi, alpha, np.ones_like(warm), tol=tol, max_iter=max_iter)
    b_warm, b_fresh = doc_bounds(X, warm, exp_elog_phi, alpha), doc_bounds(X, fresh, exp_elog_phi, alpha)
    better = b_fresh > b_warm
    warm[better] = fresh[better]
    return warm, np.where(better, b_fresh, b_warm)


def _topic_bound(lam, elog_phi, beta) -> float:
    """E log p(phi | beta) - E log q(phi), summed over topics."""
    return float(np.sum((beta - lam) * elog_phi) + np.sum(gammaln(lam)) - np.sum(gammaln(lam.sum(axis=1)))
                 + lam.shape[0] * (gammaln(beta.sum()) - gammaln(beta).sum()))


def _alpha_newton(alpha, sum_elog_theta, n_docs, *, max_iter: int = 50, tol: float = 1e-10) -> np.ndarray:
    """argmax over alpha > 0 of f(alpha) = n [log Gamma(sum alpha) - sum log Gamma(alpha)] + sum (alpha - 1) s,
    s = sum_d E log theta_d, by Newton's method (Blei et al. 2003, A.4.2; Minka 2000).

    f is concave; its Hessian is diag(h) + z 1 1^T with h = -n trigamma(alpha), z = n trigamma(sum alpha), so the
    Newton step is (g - c) / h with c = sum(g / h) / (1 / z + sum(1 / h)) (Sherman-Morrison). Steps are halved until
    alpha stays positive and f does not fall.
    """
    def f(a):
        return n_docs * (gammaln(a.sum()) - gammaln(a).sum()) + np.sum((a - 1.0) * sum_elog_theta)

    alpha = np.array(alpha, dtype=float)
    value = f(alpha)
    for _ in range(max_iter):
        g = n_docs * (digamma(alpha.sum()) - digamma(alpha)) + sum_elog_theta
        h = -n_docs * polygamma(1, alpha)
        z = n_docs * polygamma(1, alpha.sum())
        c = np.sum(g / h) / (1.0 / z + np.sum(1.0 / h))
        delta = (g - c) / h
        t = 1.0
        while t > 1e-10:
            cand = alpha - t * delta
            if np.all(cand > 0) and f(cand) >= value:
                break
            t /= 2
        else:
            break
        new_value = f(cand)
        alpha, change = cand, new_value - value
        value = new_value
        if change <= tol * max(1.0, abs(value)):
            break
    return alpha


def vem_math(model: pm.Model, *, update_alpha: bool = False, e_tol: float = 1e-3, e_max_iter: int = 100,
             init_scale: float = 100.0, restart_sweeps: int = 10) -> VEMMath:
    """Variational EM for LDA on the model's corpus and priors (see the module docstring for the updates).

    update_alpha : maximise the ELBO over an asymmetric alpha by Newton's method after each M-step (empirical
        Bayes); the prior declared in the model is the start.
    e_tol, e_max_iter : per-document convergence of the E-step (mean absolute change of gamma) and its cap.
    init_scale : lambda starts at a mix of the word frequencies of k documents picked k-means++ style and of the
        whole corpus, times Gamma(init_scale, 1 / init_scale) noise; gamma starts at alpha + N_d / k (Blei et al.).
    restart_sweeps : the first sweeps run the E-step from both the previous and a fresh start (``best_e_step``),
        which is where the topics take shape and warm starts get stuck; later sweeps only from the previous gamma
        (a third of the cost). Both keep the ELBO monotone.
    """
    if isinstance(restart_sweeps, bool) or not isinstance(restart_sweeps, (int, np.integer)) or restart_sweeps < 0:
        raise ValueError(f"restart_sweeps: expected a non-negative integer, got {restart_sweeps!r}")
    X = corpus_of(model)
    D, V = X.shape
    alpha0, beta = _priors(model)
    k = alpha0.size
    lengths = np.asarray(X.sum(axis=1)).ravel().astype(float)
    coefficient = _log_coefficient(X)

    def loglik(p):
        return float(X.data @ np.log(_rowdot(p["theta"], p["phi"], X)) + coefficient)

    def init_state(rng):
        seeds = seed_documents(X, k, rng)
        freq = np.asarray(X.sum(axis=0)).ravel() / lengths.sum()
        noise = rng.gamma(init_scale, 1.0 / init_scale, size=(k, V))
        lam = beta + lengths.sum() / k * (0.5 * seeds + 0.5 * freq) * noise
        return {"gamma": alpha0 + lengths[:, None] / k + np.zeros((D, k)), "lam": lam, "alpha": alpha0.copy(),
                "sweep": 0}

    def elbo(s):
        elog_phi = _expected_log_dirichlet(s["lam"])
        return (float(doc_bounds(X, s["gamma"], np.exp(elog_phi), s["alpha"]).sum())
                + _topic_bound(s["lam"], elog_phi, beta) + coefficient)

    def step(s):
        exp_elog_phi = np.exp(_expected_log_dirichlet(s["lam"]))
        if s["sweep"] < restart_sweeps:
            gamma, _ = best_e_step(X, exp_elog_phi, s["alpha"], s["gamma"], tol=e_tol, max_iter=e_max_iter)
        else:
            gamma = e_step(X, exp_elog_phi, s["alpha"], s["gamma"], tol=e_tol, max_iter=e_max_iter)
        sstats = sufficient_statistics(X, gamma, exp_elog_phi)
        alpha = s["alpha"]
        if update_alpha:
            alpha = _alpha_newton(alpha, _expected_log_dirichlet(gamma).sum(axis=0), D)
        return {"gamma": gamma, "lam": beta + sstats, "alpha": alpha, "sweep": s["sweep"] + 1}

    def online_step(s, batch, rho):
        Xb = X[batch]
        exp_elog_phi = np.exp(_expected_log_dirichlet(s["lam"]))
        gamma_b, bounds = best_e_step(Xb, exp_elog_phi, s["alpha"], s["gamma"][batch], tol=e_tol,
                                      max_iter=e_max_iter)
        sstats = sufficient_statistics(Xb, gamma_b, exp_elog_phi)
        scale = D / len(batch)
        estimate = (scale * (bounds.sum() + _log_coefficient(Xb))
                    + _topic_bound(s["lam"], np.log(exp_elog_phi), beta))
        gamma = s["gamma"].copy()
        gamma[batch] = gamma_b
        lam = (1.0 - rho) * s["lam"] + rho * (beta + scale * sstats)
        alpha = s["alpha"]
        if update_alpha:
            target = _alpha_newton(alpha, _expected_log_dirichlet(gamma_b).sum(axis=0), len(batch))
            alpha = (1.0 - rho) * alpha + rho * target
        return {**s, "gamma": gamma, "lam": lam, "alpha": alpha}, estimate

    def finish(s):
        exp_elog_phi = np.exp(_expected_log_dirichlet(s["lam"]))
        gamma, _ = best_e_step(X, exp_elog_phi, s["alpha"], s["gamma"], tol=e_tol, max_iter=e_max_iter)
        return {**s, "gamma": gamma}

    def to_result(s):
        return {"theta": s["gamma"] / s["gamma"].sum(axis=1, keepdims=True),
                "phi": s["lam"] / s["lam"].sum(axis=1, keepdims=True)}

    def sd(s):
        out = {}
        for name, G in (("theta", s["gamma"]), ("phi", s["lam"])):
            a0 = G.sum(axis=1, keepdims=True)
            out[name] = np.sqrt(G * (a0 - G) / (a0 ** 2 * (a0 + 1.0)))
        return out

    def extras(s):
        return {"gamma": s["gamma"], "lambda": s["lam"], "alpha": s["alpha"]}

    return VEMMath(init=init_state, step=step, elbo=elbo, to_result=to_result, sd=sd, extras=extras, n_units=D,
                   online_step=online_step, finish=finish, loglik=loglik)


# ------------------------------------------------------------------------------------------ comparison helpers
def split_documents(X, fraction: float = 0.5, seed=0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Each document's words split at random into an observed part (``fraction`` of its tokens, rounded down, at
    least one) and the rest; drawn without replacement (multivariate hypergeometric). Returns (observed, held)."""
    X = as_corpus(X)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: expected a number in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    observed = np.zeros_like(X.data)
    for d in range(X.shape[0]):
        lo, hi = X.indptr[d], X.indptr[d + 1]
        n = int(X.data[lo:hi].sum())
        observed[lo:hi] = rng.multivariate_hypergeometric(X.data[lo:hi], max(1, int(fraction * n)))
    parts = []
    for data in (observed, X.data - observed):
        part = sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
        part.eliminate_zeros()
        parts.append(part)
    return parts[0], parts[1]


def fold_in(phi, X, alpha, *, tol: float = 1e-4, max_iter: int = 500) -> np.ndarray:
    """Topic mixtures of the documents ``X`` with the topics ``phi`` (k x V, rows on the simplex) held fixed: the
    variational E-step with exp(E log phi) replaced by phi, and theta_d = gamma_d / sum gamma_d. The same procedure
    serves every estimator's topics, so their perplexities differ only through the topics."""
    phi = np.asarray(phi, dtype=float)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (phi.shape[0],))
    gamma, _ = best_e_step(as_corpus(X), phi, alpha, np.ones((X.shape[0], phi.shape[0])), tol=tol,
                           max_iter=max_iter)
    return gamma / gamma.sum(axis=1, keepdims=True)


def perplexity(theta, phi, X) -> float:
    """exp(- sum n_dv log (theta_d @ phi)_v / sum n_dv): per-word perplexity of the counts X (no multinomial
    coefficient)."""
    X = sp.csr_matrix(X)
    with np.errstate(divide="ignore"):
        logp = np.log(_rowdot(np.asarray(theta, dtype=float), np.asarray(phi, dtype=float), X))
    return float(np.exp(-(X.data @ logp) / X.data.sum()))


def document_completion(phi, X_test, alpha, seed=0) -> float:
    """Held-out perplexity by document completion (Wallach et al. 2009): each test document's topic mixture is fitted
    on half its words (``fold_in``, topics fixed), and the other half is scored (``perplexity``)."""
    observed, held = split_documents(X_test, 0.5, seed)
    keep = np.diff(held.indptr) > 0
    theta = fold_in(phi, observed, alpha)
    return perplexity(theta[keep], phi, held[keep])


def kfold_perplexity(X, fit, *, folds: int = 5, alpha, seed=0) -> np.ndarray:
    """Document-completion perplexity of ``fit`` over ``folds`` folds of documents: ``fit(X_train) -> phi`` is
    called on the other folds, and each fold is completed with ``document_completion``. Returns one value per fold."""
    X = as_corpus(X)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= X.shape[0]:
        raise ValueError(f"folds: expected an integer between 2 and the number of documents, got {folds!r}")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    out = []
    for i, test in enumerate(np.array_split(order, folds)):
        train = np.setdiff1d(order, test)
        out.append(document_completion(fit(X[train]), X[np.sort(test)], alpha, seed=seed + i))
    return np.array(out)


def top_words(phi, vocab, n: int = 10) -> list[list[str]]:
    """The ``n`` most probable words of each topic, most probable first."""
    phi = np.asarray(phi)
    if len(vocab) != phi.shape[1]:
        raise ValueError(f"vocab: expected {phi.shape[1]} words, got {len(vocab)}")
    return [[vocab[j] for j in np.argsort(-row, kind="stable")[:n]] for row in phi]


def coherence_umass(phi, X, n: int = 10) -> np.ndarray:
    """UMass coherence of each topic (Mimno et al. 2011) from the corpus's own document co-occurrences:
    sum over pairs of top words i < j (ranked by probability) of log((D(w_i, w_j) + 1) / D(w_i)), D(.) counting the
    documents containing the word(s). Higher (closer to 0) is more coherent."""
    binary = sp.csr_matrix(X, copy=True)
    binary.data = np.ones_like(binary.data, dtype=float)
    out = []
    for row in np.asarray(phi):
        top = np.argsort(-row, kind="stable")[:n]
        B = binary[:, top]
        co = (B.T @ B).toarray()
        df = np.diag(co)
        score = 0.0
        for j in range(1, len(top)):
            for i in range(j):
                score += np.log((co[i, j] + 1.0) / max(df[i], 1.0))
        out.append(score)
    return np.array(out)


def hellinger(P, Q) -> np.ndarray:
    """Hellinger distances between every row of P and every row of Q (distributions on the simplex)."""
    return np.sqrt(np.clip(1.0 - np.sqrt(np.asarray(P, dtype=float)) @ np.sqrt(np.asarray(Q, dtype=float)).T,
                           0.0, None))


def match_topics(phi_a, phi_b) -> tuple[np.ndarray, np.ndarray]:
    """Match the topics of two estimates (Hungarian algorithm on Hellinger distances): returns ``perm`` and the
    matched distances, so that topic ``perm[j]`` of ``phi_b`` pairs with topic j of ``phi_a``."""
    cost = hellinger(phi_a, phi_b)
    rows, cols = linear_sum_assignment(cost)
    perm = cols[np.argsort(rows)]
    return perm, cost[np.arange(len(perm)), perm]


# ---------------------------------------------------------------------------------------------------- peers
def sklearn_lda(X, k: int, *, alpha, beta, max_iter: int = 10, learning_method: str = "batch", batch_size=128,
                seed=0, **kwargs) -> dict:
    """scikit-learn's variational LDA on the same counts: ``{"phi": k x V, "theta": D x k}``, rows normalised."""
    from sklearn.decomposition import LatentDirichletAllocation

    model = LatentDirichletAllocation(k, doc_topic_prior=alpha, topic_word_prior=beta, max_iter=max_iter,
                                      learning_method=learning_method, batch_size=batch_size, random_state=seed,
                                      **kwargs)
    theta = model.fit_transform(as_corpus(X))
    return {"phi": model.components_ / model.components_.sum(axis=1, keepdims=True), "theta": theta,
            "model": model}


def gibbs_lda(X, k: int, *, alpha, beta, n_iter: int = 500, seed=0) -> dict:
    """The ``lda`` package's collapsed Gibbs sampler (Griffiths & Steyvers 2004) on the same counts: the topic-word
    and document-topic estimates of its last state, smoothed by the priors and normalised."""
    import logging

    import lda as lda_package

    logging.getLogger("lda").setLevel(logging.WARNING)
    model = lda_package.LDA(k, n_iter=n_iter, alpha=float(alpha), eta=float(beta), random_state=seed)
    model.fit(as_corpus(X))
    return {"phi": model.topic_word_, "theta": model.doc_topic_, "model": model}


# ------------------------------------------------------------------------------------------------ the comparison
PEERS = {
    "sklearn_batch": lambda X, k, a, b: sklearn_lda(X, k, alpha=a, beta=b, max_iter=50),
    "sklearn_online": lambda X, k, a, b: sklearn_lda(X, k, alpha=a, beta=b, max_iter=10, learning_method="online"),
    "lda_gibbs": lambda X, k, a, b: gibbs_lda(X, k, alpha=a, beta=b, n_iter=500),
}
PEER_ITERATIONS = {"sklearn_batch": 50, "sklearn_online": 10, "lda_gibbs": 500}
_RUNS: dict = {}  # id(comparison) -> its topics, dropped with the comparison


def _priors_of(example) -> tuple[int, float, float]:
    kw = example.build_kwargs
    k = int(kw.get("k", 3))
    return k, kw.get("alpha", 1.0 / k), kw.get("beta", 0.01)


def _topics(example, comparison) -> dict:
    """Every estimator's and every peer's topics (phi), aligned to the truth or to the first estimate, with the
    peers' iterations and seconds; the peers run once per comparison (on the same documents, k and priors, when the
    priors are symmetric: the peers take one number each)."""
    if id(comparison) in _RUNS:
        return _RUNS[id(comparison)]
    import time

    X = as_corpus(example.data)
    k, alpha, beta = _priors_of(example)
    out = {name: {"phi": res.params["phi"], "n_iter": res.n_iter, "time_s": res.time_compile + res.time_run}
           for name, res in comparison.results.items()}
    if np.ndim(alpha) == 0 and np.ndim(beta) == 0:
        reference = (comparison.truth or {}).get("phi")
        if reference is None and out:
            reference = next(iter(out.values()))["phi"]
        for name, fit in PEERS.items():
            t0 = time.perf_counter()
            phi = fit(X, k, float(alpha), float(beta))["phi"]
            seconds = time.perf_counter() - t0
            if reference is not None:
                phi = phi[match_topics(reference, phi)[0]]
            out[name] = {"phi": phi, "n_iter": PEER_ITERATIONS[name], "time_s": seconds}
    _RUNS[id(comparison)] = out
    weakref.finalize(comparison, _RUNS.pop, id(comparison), None)
    return out


def metrics(example, comparison) -> dict:
    """Per estimator and per peer: held-out perplexity by document completion on ``extra["held_out"]`` (the same
    fold-in for every set of topics), the mean UMass coherence of the topics' 10 top words on the fitted corpus,
    iterations and seconds."""
    _, alpha, _ = _priors_of(example)
    held = example.extra.get("held_out")
    out = {}
    for name, fit in _topics(example, comparison).items():
        row = {}
        if held is not None:
            row["perplexity"] = document_completion(fit["phi"], held, alpha)
        row["coherence"] = float(coherence_umass(fit["phi"], example.data).mean())
        row["n_iter"] = fit["n_iter"]
        row["time_s"] = fit["time_s"]
        out[name] = row
    return out


def notes(example, comparison) -> list[str]:
    """The top 10 words of every topic per estimator and peer (topics matched across them), and how to read the
    metrics."""
    vocab = example.extra.get("vocab") or [f"w{j}" for j in range(example.data.shape[1])]
    held = example.extra.get("held_out")
    lines = [f"perplexity: document completion on {held.shape[0]} documents kept out of the fit (each one's topic "
             "mixture fitted on half its words, the other half scored; lower is better). coherence: mean UMass "
             "over the topics' top 10 words (closer to 0 is better). Topics are matched to "
             + ("the truth" if comparison.truth else "the first estimate")
             + " (Hungarian matching on Hellinger distances); theta (documents x topics) is not tabulated."
             if held is not None else "theta (documents x topics) is not tabulated."]
    for name, fit in _topics(example, comparison).items():
        words = top_words(fit["phi"], vocab, 10)
        lines.append(f"top words, {name}: " + "; ".join(f"[{j}] {' '.join(w)}" for j, w in enumerate(words)))
    return lines


SPEC = ModelSpec(
    name=NAME,
    description="latent Dirichlet allocation, k topics (simulated: 3 topics over 30 words, 200 documents; or the "
                "Reuters stories)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, SIMULATED["N"], seed),  # n documents: theta's n rows
    data_kind="documents",
    options=(Option("k", int, "number of topics (default 3; 10 on Reuters)"),
             Option("alpha", float, "symmetric Dirichlet prior on each document's topic mixture (default 1/k)"),
             Option("beta", float, "symmetric Dirichlet prior on each topic's words (default 0.01)"),
             Option("example", str, "built-in example", choices=("simulated", "reuters"), applies="example")),
    params=("phi",),
    metrics=metrics,
    metrics_title="topics (held-out perplexity, coherence; peers on the same documents and k):",
    notes=notes,
    not_default=NOT_DEFAULT,
    offers_vem=True,
)
