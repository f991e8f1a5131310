"""Hidden Markov model: a K-state Markov chain z_t with Poisson or Normal emissions y_t | z_t.

Declaration (``build``), states labelled by increasing emission mean::

    P[i, :] ~ Dirichlet(a_P[i, :])       rows of the K x K transition matrix, default a_P = 2 everywhere
    pi0     ~ Dirichlet(a_0)             initial="free" only, default a_0 = 2; with initial="stationary" the chain
                                         starts in the stationary distribution of P (pi0 P = pi0, Zucchini & MacDonald)
    lam     ~ Gamma(alpha, beta), ordered                     emission="poisson", default Gamma(2, 0.2)
    mu      ~ Normal(m0, s0), ordered; sigma ~ HalfNormal(tau)  emission="normal", default m0 = mean(y),
                                                                s0 = 10 sd(y), tau = 5 sd(y)
    y       ~ HMM(pi0, P, emission)      observed; z_1..z_T summed out by the forward algorithm

``y`` may hold several independent sequences (``lengths`` as in hmmlearn); each starts afresh from pi0. The
log-density of ``y`` is the forward algorithm in log space: with log b_t(j) = log p(y_t | z_t = j),

    log alpha_t = log pi0 + log b_t                                          at the start of a sequence,
    log alpha_t = logsumexp_i(log alpha_{t-1}(i) + log P[i, :]) + log b_t     otherwise,
    log p(y) = logsumexp_j log alpha_T(j)   (the sequences chained),

evaluated by a PyTensor op that runs the E-step's scaled forward pass below (a Numba kernel, also under PyTensor's
Numba backend) and whose gradient is the E-step's forward-backward pass (Fisher's identity: d log p / d log b_t(j) =
gamma_t(j), d log p / d P_ij = n_ij / P_ij, d log p / d pi0_j = w_j / pi0_j). The same recursion as a graph (a
``pytensor.scan``, or log-space step matrices multiplied pairwise) took Numba 80 to 90 s to compile, anew for every
length of series. So ``model.logp(vars=model.observed_RVs)`` is the exact observed-data log-likelihood and every
generic estimator runs on the model unchanged (an exact symbolic Hessian excepted: the op has no second
derivative; the optimisers' Hessians difference the gradient). For K = 1 there is no chain (no ``P``, no ``pi0``):
y_t are iid Poisson(lam_0) or Normal(mu_0, sigma_0).

EM (Baum-Welch), with the same recursions in probability space, rescaled at every step (numba kernels):

* E-step: forward pass alpha_t (normalised, scale c_t), backward pass beta_t (divided by the same c_{t+1}); state
  probabilities gamma_t(j) = alpha_t(j) beta_t(j) and expected transition counts
  n_ij = sum_t alpha_{t-1}(i) P_ij b_t(j) beta_t(j) / c_t over steps t inside a sequence; w_j = sum of gamma at the
  first step of every sequence.
* M-step for the emissions, with N_j = sum_t gamma_t(j): lam_j = sum_t gamma_t(j) y_t / N_j; mu_j likewise and
  sigma_j^2 = sum_t gamma_t(j) (y_t - mu_j)^2 / N_j. MAP (the model's priors, no Jacobian):
  lam_j = (S_j + alpha - 1) / (N_j + beta); for the Normal one coordinate-ascent sweep (mu_j given sigma_j, the
  precision-weighted mean, then sigma_j given mu_j, the positive root of s^4 / tau^2 + N_j s^2 - q_j = 0 with
  q_j = sum_t gamma_t(j) (y_t - mu_j)^2), as in ``models/normal.py``.
* M-step for the chain, initial="free": P_ij = n_ij / sum_j n_ij and pi0 = w / (number of sequences); MAP:
  P_ij = (n_ij + a_ij - 1) / sum_j (n_ij + a_ij - 1), pi0_j = (w_j + a0_j - 1) / sum_j (w_j + a0_j - 1).
* initial="stationary": pi0 is a function of P, and the expected complete-data objective in P,
  Q(P) = sum_ij (n_ij + [a_ij - 1]) log P_ij + sum_j w_j log pi_j(P), has no closed-form maximiser. It is
  maximised numerically (Newton with a ridge on row-wise softmax coordinates, the exact gradient from
  d pi / d P_kl = pi_k (I - P + 1 1')^{-1}[l, :], starting from the better of the current P and the free-start
  update), and the result is kept only if Q did not decrease: a generalised EM step, which, like the exact one,
  never lowers the log-likelihood (or the log posterior).

Every M-step above maximises Q (or does not lower it), so EM never lowers its objective (``exact=True``).
The forward pass at the new parameters gives both the log-likelihood the driver records and the next E-step, so an
iteration costs one forward and one backward pass. States are relabelled by increasing emission mean after
convergence (the order the model's transform imposes); P, pi0 and sigma are permuted with them.

Built-in examples: "simulated", 2-state Poisson, lam = (15, 26), P = [[0.93, 0.07], [0.13, 0.87]], n = 500, drawn
from the declaration; "earthquakes", the yearly counts of major (M7+) earthquakes 1900-2006 (Zucchini & MacDonald,
*Hidden Markov Models for Time Series*, 2009).
"""

from __future__ import annotations

import warnings
from importlib import resources

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
from scipy import stats
from scipy.special import gammaln

from inference.base import EMMath, ModelHooks, ModelSpec, Option, attach

from ._common import (
    Example,
    as_vector,
    check_n,
    data_centred_priors,
    data_of,
    dist_params,
    halfnormal_scale_map,
    positive,
    simulate_from,
)

NAME = "hmm"
MAX_COUNT = 2**31 - 1
EMISSIONS = ("poisson", "normal")
INITIALS = ("stationary", "free")
TRUTH = {"P": np.array([[0.93, 0.07], [0.13, 0.87]]), "lam": np.array([15.0, 26.0])}
EXAMPLE_N = 500
EXAMPLE_SEED = 42

__all__ = ["SPEC", "build", "em_math", "example", "init", "select_k", "simulate", "state_probabilities",
           "stationary", "viterbi"]


# ------------------------------------------------------------------------------------------------ input checks
def _choice(value, name, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k: expected a positive integer number of states, got {k!r}")
    if k < 1:
        raise ValueError(f"k: expected at least 1 state, got {k}")
    return int(k)


def _check_series(y, k, emission, lengths):
    """(y as floats, k, first-step flags) after the input checks of ``build``."""
    emission = _choice(emission, "emission", EMISSIONS)
    k = _check_k(k)
    y = as_vector(y, "y", integer=emission == "poisson", nonnegative=emission == "poisson")
    if emission == "poisson" and y.size and y.max() > MAX_COUNT:
        first = int(np.argmax(y > MAX_COUNT))
        raise ValueError(f"y: expected counts below 2^31 (PyMC holds integer data as 32-bit integers), found "
                         f"{y[first]:g} at index {first}")
    if y.size < k + 1:
        raise ValueError(f"y: expected at least k + 1 = {k + 1} observations for {k} states, got {y.size}")
    return y, k, _first_flags(lengths, y.size)


def _first_flags(lengths, n) -> np.ndarray:
    """1 at the first step of every sequence, 0 elsewhere."""
    if lengths is None:
        lengths = [n]
    try:
        lengths = np.asarray(lengths, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"lengths: expected positive integer sequence lengths, got {lengths!r}") from None
    if lengths.size == 0 or np.any(lengths < 1) or np.any(lengths != np.round(lengths)):
        raise ValueError("lengths: expected positive integer sequence lengths")
    if int(lengths.sum()) != n:
        raise ValueError(f"lengths: expected lengths summing to len(y) = {n}, got {int(lengths.sum())}")
    first = np.zeros(n, dtype="int64")
    first[np.concatenate([[0], np.cumsum(lengths.astype(int))[:-1]])] = 1
    return first


def stationary(P) -> np.ndarray:
    """The stationary distribution pi of the transition matrix P (pi P = pi, sum pi = 1)."""
    P = np.asarray(P, dtype=float)
    K = P.shape[0]
    return np.linalg.solve((np.eye(K) - P + 1.0).T, np.ones(K))


# ------------------------------------------------------------------------------------------------ declaration
def build(y, k: int = 2, *, emission: str = "poisson", initial: str = "stationary", lengths=None,
          P_prior=2.0, pi0_prior=2.0, lam_prior=(2.0, 0.2), mu_prior=None, sigma_prior=None,
          _initval: bool = True) -> pm.Model:
    """The PyMC hidden Markov model for the series ``y``.

    Parameters
    ----------
    y : 1-D array: non-negative integer counts (Poisson emissions) or finite numbers (Normal emissions).
    k : number of hidden states (>= 1; y needs at least k + 1 observations).
    emission : "poisson" (rates ``lam``) or "normal" (means ``mu``, standard deviations ``sigma``).
    initial : "stationary" (the chain starts in the stationary distribution of P) or "free" (own parameter ``pi0``).
    lengths : lengths of the independent sequences concatenated in y (default: one sequence).
    P_prior : Dirichlet concentration of every row of P, a scalar or a k x k array. Default 2.
    pi0_prior : Dirichlet concentration of pi0 (initial="free"), a scalar or a length-k array. Default 2.
    lam_prior : (alpha, beta) of the Gamma prior on every rate (shape, rate). Default (2, 0.2): mean 10.
    mu_prior : (mean, sd) of the Normal prior on every state mean. Default (mean(y), 10 sd(y)).
    sigma_prior : scale of the HalfNormal prior on every state sd. Default 5 sd(y).

    To fit another series, build another model: the sequence starts are part of it.
    """
    y, k, first = _check_series(y, k, emission, lengths)
    initial = _choice(initial, "initial", INITIALS)
    a_P = _concentration(P_prior, "P_prior", (k, k))
    a_0 = _concentration(pi0_prior, "pi0_prior", (k,))
    options = {"k": k, "emission": emission, "initial": initial, "P_prior": a_P, "pi0_prior": a_0}
    if emission == "poisson":
        try:
            alpha, beta = (float(v) for v in lam_prior)
        except (TypeError, ValueError):
            raise ValueError(f"lam_prior: expected (alpha, beta), got {lam_prior!r}") from None
        alpha, beta = positive(alpha, "lam_prior alpha"), positive(beta, "lam_prior beta")
        options["lam_prior"] = (alpha, beta)
    else:
        m0, s0, tau = (float(v[0]) for v in data_centred_priors(y[:, None], mu_prior, sigma_prior))
        options.update(mu_prior=(m0, s0), sigma_prior=tau)
    start = init(y, k, emission, initial, np.random.default_rng(0), first)
    ordered = {"transform": pm.distributions.transforms.ordered} if k >= 2 else {}
    with pm.Model() as model:
        y_data = pm.Data("y_data", y.astype("int64") if emission == "poisson" else y)
        if emission == "poisson":
            # An ordered initial value: the default one (all rates equal) is outside the ordered transform's
            # support. pm.do cannot copy a model with initial values, so the simulator builds without it.
            theta = [pm.Gamma("lam", alpha, beta, shape=k, initval=start["lam"] if _initval and k >= 2 else None,
                              **ordered)]
        else:
            theta = [pm.Normal("mu", m0, s0, shape=k, initval=start["mu"] if _initval and k >= 2 else None,
                               **ordered),
                     pm.HalfNormal("sigma", tau, shape=k)]
        if k == 1:
            dist = pm.Poisson if emission == "poisson" else pm.Normal
            dist("y", *(t[0] for t in theta), observed=y_data, shape=y_data.shape)
        else:
            P = pm.Dirichlet("P", a=a_P)
            if initial == "free":
                pi0 = pm.Dirichlet("pi0", a=a_0)
            else:
                pi0 = _stationary_graph(P, k)
            seq_start = pm.Data("seq_start", first)
            pm.CustomDist("y", pi0, P, *theta, seq_start, logp=_hmm_logp(emission),
                          random=_hmm_random(emission), signature="(k),(k,k)," + ",".join("(k)" for _ in theta) + ",(t)->(t)",
                          dtype="int64" if emission == "poisson" else "float64", observed=y_data)
    return attach(model, ModelHooks(NAME, options, em_math=lambda prior: em_math(model, prior=prior),
                                    init=lambda rng: init(y, k, emission, initial, rng, first)))


def _stationary_graph(P, k: int):
    """The stationary distribution of P in PyTensor: for two states its closed form (P_10, P_01) / (P_01 + P_10),
    else the solution of (I - P + 1)' pi = 1 (:func:`stationary`). The solve's gradient (an LU factorisation and
    triangular solves) took 16 s of the 41 s Numba spent compiling the two-state model's density on an empty cache."""
    if k == 2:
        off = pt.stack([P[1, 0], P[0, 1]])
        return off / off.sum()
    return pt.linalg.solve((pt.eye(k) - P + 1.0).T, pt.ones(k))


def _concentration(value, name, shape) -> np.ndarray:
    try:
        a = np.broadcast_to(np.asarray(value, dtype=float), shape).copy()
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive scalar or an array of shape {shape}, got {value!r}") from None
    if not np.all(np.isfinite(a) & (a > 0)):
        raise ValueError(f"{name}: expected positive concentrations, got {value!r}")
    return a


def _emission_logp_graph(emission, value, theta):
    """(T, K) log p(y_t | z_t = j) in PyTensor."""
    dist = pm.Poisson.dist(*theta) if emission == "poisson" else pm.Normal.dist(*theta)
    return pm.logp(dist, value[:, None])


class _ForwardLogLik(Op):
    """log p(y) from the (T, K) emission log-densities ``logb``, ``P``, ``pi0`` and the sequence starts ``first``:
    the scaled forward pass (``_forward``, the kernel the E-step runs). Its gradient is the forward-backward pass's
    (Fisher's identity, :class:`_ForwardScore`)."""

    __props__ = ()
    gufunc_signature = "(t,k),(k,k),(k),(t)->()"

    def make_node(self, logb, P, pi0, first):
        inputs = [pt.as_tensor_variable(logb, dtype="float64"), pt.as_tensor_variable(P, dtype="float64"),
                  pt.as_tensor_variable(pi0, dtype="float64"), pt.as_tensor_variable(first, dtype="int64")]
        return Apply(self, inputs, [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(_forward(*_contiguous(inputs))[3])

    def pullback(self, inputs, outputs, output_grads):
        (g,) = output_grads
        d_logb, d_P, d_pi0 = _SCORE(*inputs)
        return [g * d_logb, g * d_P, g * d_pi0, disconnected_type()]

    def connection_pattern(self, node):
        return [[True], [True], [True], [False]]


class _ForwardScore(Op):
    """The gradient of log p(y) (:class:`_ForwardLogLik`) from the E-step's expectations (Fisher's identity):
    d/d logb_t(j) = gamma_t(j), d/d P_ij = n_ij / P_ij (n the expected transition counts), d/d pi0_j = w_j / pi0_j
    (w the state probabilities at the sequence starts); 0 where P_ij or pi0_j is 0 (no path uses it). One forward and
    one backward pass, O(T K^2), whatever the length of the series: the same log-likelihood as a graph (a pytensor
    scan, or log-space matrix products taken pairwise) took Numba 80 to 90 s to compile, anew for every T."""

    __props__ = ()
    gufunc_signature = "(t,k),(k,k),(k),(t)->(t,k),(k,k),(k)"

    def make_node(self, logb, P, pi0, first):
        inputs = [pt.as_tensor_variable(v) for v in (logb, P, pi0, first)]
        return Apply(self, inputs, [inputs[0].type(), inputs[1].type(), inputs[2].type()])

    def perform(self, node, inputs, outputs):
        for out, value in zip(outputs, _score(*_contiguous(inputs))):
            out[0] = value

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, i, x, "the HMM log-likelihood's second derivatives")
                for i, x in enumerate(inputs[:3])] + [disconnected_type()]

    def connection_pattern(self, node):
        return [[True] * 3] * 3 + [[False] * 3]


def _contiguous(inputs):
    logb, P, pi0, first = inputs
    return (np.ascontiguousarray(logb, dtype=np.float64), np.ascontiguousarray(P, dtype=np.float64),
            np.ascontiguousarray(pi0, dtype=np.float64), np.ascontiguousarray(first, dtype=np.int64))


_FORWARD, _SCORE = _ForwardLogLik(), _ForwardScore()
# The cache version of the two ops' Numba functions: bump it when ``_forward``, ``_backward`` or ``_score`` change.
_OPS_VERSION = 1


@register_funcify_default_op_cache_key(_ForwardLogLik)
def _numba_forward_loglik(op, node, **kwargs):
    @numba_njit
    def forward_loglik(logb, P, pi0, first):
        return np.asarray(_forward(logb, P, pi0, first)[3])

    return forward_loglik, _OPS_VERSION


@register_funcify_default_op_cache_key(_ForwardScore)
def _numba_forward_score(op, node, **kwargs):
    @numba_njit
    def forward_score(logb, P, pi0, first):
        return _score(logb, P, pi0, first)

    return forward_score, _OPS_VERSION


def _hmm_logp(emission):
    """log p(y): the emission log-densities in PyTensor, then the forward pass (:class:`_ForwardLogLik`). At the
    first step of a sequence the chain restarts from pi0, whatever the state before."""

    def logp(value, pi0, P, *rest):
        *theta, first = rest
        return _FORWARD(_emission_logp_graph(emission, value, theta), P, pi0, first)

    return logp


def _hmm_random(emission):
    def random(pi0, P, *rest, rng=None, size=None):
        *theta, first = rest
        if size not in (None, ()):
            raise ValueError("size: the hidden Markov model draws one series at a time")
        z = _sample_states(np.cumsum(pi0), np.cumsum(P, axis=1), np.asarray(first), rng.random(len(first)))
        if emission == "poisson":
            return rng.poisson(np.asarray(theta[0])[z])
        return rng.normal(np.asarray(theta[0])[z], np.asarray(theta[1])[z])

    return random


@njit(cache=True)
def _sample_states(cum_pi0, cum_P, first, u):  # pragma: no cover - compiled
    T, K = first.shape[0], cum_pi0.shape[0]
    z = np.empty(T, dtype=np.int64)
    for t in range(T):
        cum = cum_pi0 if first[t] == 1 else cum_P[z[t - 1]]
        j = 0
        while j < K - 1 and u[t] * cum[K - 1] > cum[j]:
            j += 1
        z[t] = j
    return z


# ------------------------------------------------------------------------------------------------ simulator, examples
def simulate(params, n: int = EXAMPLE_N, seed=EXAMPLE_SEED, *, lengths=None) -> np.ndarray:
    """``n`` observations drawn from the declaration with ``params`` fixed: ``P`` (k >= 2), ``lam`` (Poisson) or
    ``mu`` and ``sigma`` (Normal), and ``pi0`` when the chain starts from a free initial distribution."""
    n = check_n(n)
    emission = "poisson" if "lam" in params else "normal"
    k = np.atleast_1d(params["lam" if emission == "poisson" else "mu"]).size
    initial = "free" if "pi0" in params else "stationary"
    placeholder = np.arange(max(n, k + 1)) % (k + 1)

    def model():
        return build(placeholder[:n] if n > k else placeholder, k, emission=emission, initial=initial,
                     lengths=lengths if n > k else None, _initval=False)

    with warnings.catch_warnings():
        # the compiled sampler calls the numpy draw of the chain in object mode, as intended
        warnings.filterwarnings("ignore", message="Numba will use object mode", category=UserWarning)
        # the compiled draw (its chain in object mode, which Numba cannot cache on disk: 2 s per compilation) is
        # kept per structure and length, so a study compiles it once
        key = (NAME, n, k, emission, initial, None if lengths is None else tuple(np.ravel(lengths).tolist()))
        y = simulate_from(model, params, "y", seed, key=key)
    return y[:n].astype(float)  # a series shorter than build accepts is the head of a longer draw


def example(example: str = "simulated", k: int = 2, emission: str = "poisson", initial: str = "stationary",
            seed=EXAMPLE_SEED) -> Example:
    """The built-in examples: "simulated" (2-state Poisson, the truth in ``TRUTH``) or "earthquakes" (real counts).

    ``k``, ``emission`` and ``initial`` are the options of the model fitted to the data (the simulated series is
    always drawn from the 2-state Poisson truth; its truth is attached when the model has that shape).
    """
    name = _choice(example, "example", ("simulated", "earthquakes"))
    _choice(emission, "emission", EMISSIONS)
    _choice(initial, "initial", INITIALS)
    kwargs = {"k": _check_k(k), "emission": emission, "initial": initial}
    if name == "earthquakes":
        frame = earthquakes()
        return Example(frame["count"].to_numpy(dtype=float), build_kwargs=kwargs, source="earthquakes",
                       extra={"year": frame["year"].to_numpy()})
    y = simulate(TRUTH, EXAMPLE_N, seed)
    truth = {key: v.copy() for key, v in TRUTH.items()} if (k, emission, initial) == (2, "poisson",
                                                                                       "stationary") else None
    return Example(y, build_kwargs=kwargs, truth=truth)


def earthquakes():
    """Yearly counts of major (M7+) earthquakes worldwide, 1900-2006 (columns ``year``, ``count``)."""
    import pandas as pd

    with resources.as_file(resources.files("models") / "data" / "earthquakes.csv") as path:
        return pd.read_csv(path)


def init(y, k: int, emission: str, initial: str, rng, first=None) -> dict:
    """A start from the data: state means at random quantiles of y (one per stratum of k equal strata, sorted),
    a persistent transition matrix (0.8 on the diagonal plus a random Dirichlet share) and a uniform pi0."""
    u = (np.arange(k) + rng.uniform(0.2, 0.8, size=k)) / k
    centres = np.sort(np.quantile(y, u)) + 1e-3 * np.arange(k) * max(1.0, np.std(y))
    if emission == "poisson":
        out = {"lam": np.maximum(centres, 0.5 + 1e-3 * np.arange(k))}
    else:
        spread = np.std(y) / k if k > 1 else np.std(y)
        out = {"mu": centres, "sigma": np.full(k, max(spread, 1e-3 * max(1.0, np.abs(y).max())))}
    if k >= 2:
        out["P"] = 0.8 * np.eye(k) + 0.2 * rng.dirichlet(np.full(k, 2.0), size=k)
        if initial == "free":
            out["pi0"] = np.full(k, 1.0 / k)
    return out


# ------------------------------------------------------------------------------------------------ numba kernels
@njit(cache=True)
def _forward(logb, P, pi0, first):  # pragma: no cover - compiled
    """Scaled forward pass. Returns alpha (T, K, rows summing to one), b = exp(logb - row max), the scales
    s_t = sum_j pred_t(j) b_t(j) and the log-likelihood sum_t (log s_t + row max_t)."""
    T, K = logb.shape
    alpha = np.empty((T, K))
    b = np.empty((T, K))
    scale = np.empty(T)
    loglik = 0.0
    for t in range(T):
        m = logb[t, 0]
        for j in range(1, K):
            if logb[t, j] > m:
                m = logb[t, j]
        s = 0.0
        for j in range(K):
            bj = np.exp(logb[t, j] - m)
            b[t, j] = bj
            if first[t] == 1:
                a = pi0[j]
            else:
                a = 0.0
                for i in range(K):
                    a += alpha[t - 1, i] * P[i, j]
            a *= bj
            alpha[t, j] = a
            s += a
        for j in range(K):
            alpha[t, j] /= s
        scale[t] = s
        loglik += np.log(s) + m
    return alpha, b, scale, loglik


@njit(cache=True)
def _backward(alpha, b, scale, P, first):  # pragma: no cover - compiled
    """Scaled backward pass. Returns gamma (T, K), the expected transition counts n (K, K) and w (K), the summed
    state probabilities at the first step of every sequence. Only the current row of beta is kept."""
    T, K = alpha.shape
    gamma = np.empty((T, K))
    n = np.zeros((K, K))
    w = np.zeros(K)
    beta = np.ones(K)
    nxt = np.empty(K)
    for t in range(T - 1, -1, -1):
        for j in range(K):
            gamma[t, j] = alpha[t, j] * beta[j]
        if first[t] == 1:
            for j in range(K):
                w[j] += gamma[t, j]
                beta[j] = 1.0  # the previous step ends another sequence
            continue
        for j in range(K):
            nxt[j] = b[t, j] * beta[j] / scale[t]
        for i in range(K):
            acc = 0.0
            for j in range(K):
                x = P[i, j] * nxt[j]
                n[i, j] += alpha[t - 1, i] * x
                acc += x
            beta[i] = acc
    return gamma, n, w


@njit(cache=True)
def _score(logb, P, pi0, first):  # pragma: no cover - compiled
    """The gradient of the log-likelihood with respect to logb, P and pi0 (see :class:`_ForwardScore`)."""
    alpha, b, scale, _ = _forward(logb, P, pi0, first)
    gamma, n, w = _backward(alpha, b, scale, P, first)
    d_P = np.zeros_like(P)
    d_pi0 = np.zeros_like(pi0)
    K = P.shape[0]
    for i in range(K):
        if pi0[i] > 0:
            d_pi0[i] = w[i] / pi0[i]
        for j in range(K):
            if P[i, j] > 0:
                d_P[i, j] = n[i, j] / P[i, j]
    return gamma, d_P, d_pi0


@njit(cache=True)
def _viterbi(logb, logP, log_pi0, first):  # pragma: no cover - compiled
    T, K = logb.shape
    delta = np.empty((T, K))
    back = np.zeros((T, K), dtype=np.int64)
    for t in range(T):
        for j in range(K):
            if first[t] == 1:
                best, arg = log_pi0[j], 0
            else:
                best, arg = -np.inf, 0
                for i in range(K):
                    v = delta[t - 1, i] + logP[i, j]
                    if v > best:
                        best, arg = v, i
            delta[t, j] = best + logb[t, j]
            back[t, j] = arg
    z = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        if t == T - 1 or first[t + 1] == 1:
            z[t] = np.argmax(delta[t])
        else:
            z[t] = back[t + 1, z[t + 1]]
    return z


# ------------------------------------------------------------------------------------------------ EM
def _layout(model):
    """(emission, initial, k) of a model ``build`` returned."""
    emission = "poisson" if "lam" in model.named_vars else "normal"
    k = int(model["lam" if emission == "poisson" else "mu"].type.shape[0])
    return emission, "free" if "pi0" in model.named_vars else "stationary", k


def _emission_logb(emission, y, p, log_fact=None) -> np.ndarray:
    """(T, K) log p(y_t | z_t = j), vectorised."""
    if emission == "poisson":
        lam = np.asarray(p["lam"], dtype=float)
        return y[:, None] * np.log(lam)[None, :] - lam[None, :] - (gammaln(y + 1.0) if log_fact is None
                                                                    else log_fact)[:, None]
    mu, sigma = np.asarray(p["mu"], dtype=float), np.asarray(p["sigma"], dtype=float)
    z = (y[:, None] - mu[None, :]) / sigma[None, :]
    return -0.5 * z * z - np.log(sigma)[None, :] - 0.5 * np.log(2 * np.pi)


def _chain(p, k, initial=None):
    """(P, pi0) of ``params``; K = 1 is the one-state chain."""
    if k == 1:
        return np.ones((1, 1)), np.ones(1)
    P = np.asarray(p["P"], dtype=float)
    if initial is None:
        initial = "free" if "pi0" in p else "stationary"
    return P, (np.asarray(p["pi0"], dtype=float) if initial == "free" else stationary(P))


def _stationary_q(P, counts, w) -> float:
    """Q(P) = sum_ij counts_ij log P_ij + sum_j w_j log pi_j(P), -inf outside the interior where it matters."""
    pi = stationary(P)
    if np.any(pi <= 0) or np.any((P <= 0) & (counts > 0)):
        return -np.inf
    with np.errstate(divide="ignore"):
        return float(np.sum(np.where(counts > 0, counts * np.log(P), 0.0)) + np.sum(w * np.log(pi)))


def _stationary_P_step(P_now, counts, w, max_iter: int = 100):
    """A P that does not lower Q(P) = sum_ij counts_ij log P_ij + sum_j w_j log pi_j(P) below Q(P_now), pi the
    stationary distribution: its maximiser to round-off in practice.

    Newton's method with a Levenberg-Marquardt ridge on row-wise softmax coordinates (the last logit of every row
    fixed at 0, so k(k - 1) free coordinates), from the better of P_now and the free-start update counts_ij /
    counts_i. The gradient is exact: dQ/dP_kl = counts_kl / P_kl + pi_k sum_j (w_j / pi_j) A^{-1}[l, j] with
    A = I - P + 1 1' (pi = 1' A^{-1}); the Hessian is its central difference. A step is taken only if Q rises.
    """
    K = P_now.shape[0]
    d = K * (K - 1)
    eye = np.eye(K)

    def to_P(u):
        U = np.concatenate([u.reshape(K, K - 1), np.zeros((K, 1))], axis=1)
        P = np.exp(U - U.max(axis=1, keepdims=True))
        return P / P.sum(axis=1, keepdims=True)

    def to_u(P):
        L = np.log(np.maximum(P, 1e-300))
        return (L[:, :-1] - L[:, -1:]).ravel()

    def grad(u):
        P = to_P(u)
        A_inv = np.linalg.inv(eye - P + 1.0)
        pi = A_inv.sum(axis=0)
        G = counts / np.maximum(P, 1e-300) + np.outer(pi, A_inv @ (w / pi))
        return (P * (G - np.sum(P * G, axis=1, keepdims=True)))[:, :-1].ravel()

    q_now = _stationary_q(P_now, counts, w)
    best, q = P_now, q_now
    if np.all(counts.sum(axis=1) > 0):
        free = counts / counts.sum(axis=1, keepdims=True)
        q_free = _stationary_q(free, counts, w)
        if q_free > q:
            best, q = free, q_free
    u = to_u(best)
    ridge = 0.0
    for _ in range(max_iter):
        g = grad(u)
        h = 1e-5
        H = np.empty((d, d))
        for i in range(d):
            e = np.zeros(d)
            e[i] = h
            H[:, i] = (grad(u + e) - grad(u - e)) / (2 * h)
        H = -0.5 * (H + H.T)  # the negative Hessian: positive definite near a maximum
        scale = max(1.0, float(np.max(np.abs(np.diag(H)))))
        improved = False
        while ridge < 1e12 * scale:
            try:
                np.linalg.cholesky(H + ridge * np.eye(d))
            except np.linalg.LinAlgError:
                ridge = max(2 * ridge, 1e-8 * scale)
                continue
            u_new = u + np.linalg.solve(H + ridge * np.eye(d), g)
            q_new = _stationary_q(to_P(u_new), counts, w)
            if q_new >= q:
                improved = q_new > q
                u, q = u_new, q_new
                ridge *= 0.1
                break
            ridge = max(4 * ridge, 1e-8 * scale)
        if not improved or np.max(np.abs(g)) < 1e-12 * max(1.0, abs(q)):
            break
    P = to_P(u)
    return P if _stationary_q(P, counts, w) >= q_now else P_now


def em_math(model: pm.Model, *, prior: bool) -> EMMath:
    """Baum-Welch, reading the data, the sequence boundaries and the priors from ``model``."""
    emission, initial, k = _layout(model)
    y = data_of(model, "y_data")
    first = (data_of(model, "seq_start") if k >= 2 else _first_flags(None, y.size)).astype(np.int64)
    log_fact = gammaln(y + 1.0) if emission == "poisson" else None
    y2 = y * y
    if prior:
        if emission == "poisson":
            alpha, scale = dist_params(model, "lam", "gamma")
            alpha, beta = float(np.ravel(alpha)[0]), float(1.0 / np.ravel(scale)[0])
        else:
            m0, s0 = (float(np.ravel(v)[0]) for v in dist_params(model, "mu", "normal"))
            tau = float(np.ravel(dist_params(model, "sigma", "halfnormal")[-1])[0])
        if k >= 2:
            a_P = np.broadcast_to(dist_params(model, "P", "dirichlet")[0], (k, k))
            a_0 = np.broadcast_to(dist_params(model, "pi0", "dirichlet")[0], (k,)) if initial == "free" else None
    memo = {}

    def forward(p):
        """The forward pass at ``p``, kept for the E-step that follows the log-likelihood at the same point."""
        key = tuple(np.asarray(v, dtype=float).tobytes() for v in (p.get(n) for n in sorted(p)))
        if memo.get("key") != key:
            P, pi0 = _chain(p, k, initial)
            memo.update(key=key, out=_forward(_emission_logb(emission, y, p, log_fact), P, pi0, first))
        return memo["out"]

    def loglik(p):
        return float(forward(p)[3])

    def e_step(p):
        alpha, b, scale, _ = forward(p)
        return _backward(alpha, b, scale, _chain(p, k, initial)[0], first)

    def step(p):
        gamma, counts, w = e_step(p)
        N = gamma.sum(axis=0)
        S1 = y @ gamma
        if emission == "poisson":
            lam = (S1 + alpha - 1.0) / (N + beta) if prior else S1 / np.where(N > 0, N, np.nan)
            new = {"lam": lam}
        else:
            if prior:
                s2 = np.asarray(p["sigma"], dtype=float) ** 2
                mu = (S1 / s2 + m0 / s0**2) / (N / s2 + 1 / s0**2)
            else:
                mu = S1 / np.where(N > 0, N, np.nan)
            q = y2 @ gamma - 2 * mu * S1 + mu * mu * N  # sum_t gamma_tj (y_t - mu_j)^2
            q = np.maximum(q, 0.0)
            s2 = halfnormal_scale_map(q, N, tau) if prior else q / N
            new = {"mu": mu, "sigma": np.sqrt(s2)}
        if k >= 2:
            P_now, _ = _chain(p, k, initial)
            extra_P = a_P - 1.0 if prior else 0.0
            if initial == "free":
                rows = counts + extra_P
                new["P"] = rows / rows.sum(axis=1, keepdims=True)
                w0 = w + (a_0 - 1.0 if prior else 0.0)
                new["pi0"] = w0 / w0.sum()
            else:
                new["P"] = _stationary_P_step(P_now, counts + extra_P, w)
        bad = [name for name, v in new.items() if not np.all(np.isfinite(v))
               or (name in ("P", "pi0") and np.any(v < 0)) or (name in ("lam", "sigma") and np.any(v <= 0))]
        if bad:
            raise FloatingPointError(f"EM: the M-step left the support ({', '.join(bad)}: a state lost all its "
                                     "probability or a rate or scale reached zero); use priors (MAP-EM) or fewer "
                                     "states")
        return new

    def log_prior(p):
        if emission == "poisson":
            lp = float(np.sum(stats.gamma.logpdf(p["lam"], alpha, scale=1.0 / beta)))
        else:
            lp = float(np.sum(stats.norm.logpdf(p["mu"], m0, s0)) + np.sum(stats.halfnorm.logpdf(p["sigma"],
                                                                                                scale=tau)))
        if k >= 2:
            lp += float(sum(stats.dirichlet.logpdf(row, a) for row, a in zip(np.asarray(p["P"]), a_P)))
            if initial == "free":
                lp += float(stats.dirichlet.logpdf(p["pi0"], a_0))
        return lp

    def order(p):
        idx = np.argsort(p["lam" if emission == "poisson" else "mu"], kind="stable")
        out = {name: np.asarray(v)[idx] for name, v in p.items()}
        if "P" in p:
            out["P"] = np.asarray(p["P"])[np.ix_(idx, idx)]
        return out

    def check_init(p):
        names = ["lam"] if emission == "poisson" else ["mu", "sigma"]
        names += (["P"] + (["pi0"] if initial == "free" else [])) if k >= 2 else []
        missing = [n for n in names if n not in p]
        if missing:
            raise ValueError(f"init: expected values for {', '.join(names)}, missing {', '.join(missing)}")
        out = {n: np.asarray(p[n], dtype=float) for n in names}
        for n in names:
            shape = (k, k) if n == "P" else (k,)
            v = out[n]
            if v.shape != shape or not np.all(np.isfinite(v)):
                raise ValueError(f"init: expected {n} as finite numbers of shape {shape}, got {p[n]!r}")
            if n in ("lam", "sigma", "P", "pi0") and np.any(v <= 0):
                raise ValueError(f"init: expected {n} with positive entries, got {p[n]!r}")
            if n in ("P", "pi0") and not np.allclose(v.sum(axis=-1), 1.0):
                raise ValueError(f"init: expected {n} {'with rows ' if n == 'P' else ''}summing to 1, got {p[n]!r}")
        return out

    def extras(p):
        P, pi0 = _chain(p, k, initial)
        logb = _emission_logb(emission, y, p, log_fact)
        with np.errstate(divide="ignore"):
            states = _viterbi(logb, np.log(P), np.log(pi0), first)
        return {"states": states, "state_probs": e_step(p)[0]}

    return EMMath(init=lambda rng: init(y, k, emission, initial, rng, first), step=step, loglik=loglik,
                  log_prior=log_prior if prior else None, check_init=check_init, extras=extras, order=order)


# ------------------------------------------------------------------------------------------------ decoding, choice of k
def _decode_inputs(y, params, lengths):
    emission = "poisson" if "lam" in params else "normal"
    k = np.atleast_1d(params["lam" if emission == "poisson" else "mu"]).size
    y = as_vector(y, "y", integer=emission == "poisson", nonnegative=emission == "poisson")
    p = {n: np.atleast_1d(np.asarray(v, dtype=float)) for n, v in params.items()}
    P, pi0 = _chain(p, k)
    return _emission_logb(emission, y, p), P, pi0, _first_flags(lengths, y.size)


def viterbi(y, params, lengths=None) -> np.ndarray:
    """The most probable state path (log-space Viterbi), one per sequence, at ``params`` (``P``, ``lam`` or
    ``mu``/``sigma``, and ``pi0`` for a free initial distribution, else the stationary one)."""
    logb, P, pi0, first = _decode_inputs(y, params, lengths)
    with np.errstate(divide="ignore"):
        return _viterbi(logb, np.log(P), np.log(pi0), first)


def state_probabilities(y, params, lengths=None) -> np.ndarray:
    """(T, K) posterior state probabilities p(z_t = j | y) by forward-backward at ``params`` (as for viterbi)."""
    logb, P, pi0, first = _decode_inputs(y, params, lengths)
    alpha, b, scale, _ = _forward(logb, P, pi0, first)
    return _backward(alpha, b, scale, P, first)[0]


def n_params(k: int, emission: str = "poisson", initial: str = "stationary") -> int:
    """Free parameters: k rates (or k means and k sds), k(k - 1) transition probabilities, k - 1 for a free pi0."""
    return k * (1 if emission == "poisson" else 2) + k * (k - 1) + (k - 1 if initial == "free" else 0)


def select_k(y, ks=(1, 2, 3, 4), emission: str = "poisson", initial: str = "stationary", *, lengths=None,
             seed=0, n_init: int = 5):
    """Maximum-likelihood fits (EM, best of ``n_init`` starts) for every k in ``ks``, with AIC = -2 log L + 2 p
    and BIC = -2 log L + p log T. Returns a DataFrame with columns k, loglik, n_params, AIC, BIC, converged."""
    import pandas as pd

    import inference

    rng = np.random.default_rng(seed)
    rows = []
    for k in ks:
        model = build(y, k, emission=emission, initial=initial, lengths=lengths)
        res = inference.em(model, n_init=n_init, seed=rng)
        p = n_params(k, emission, initial)
        rows.append({"k": k, "loglik": res.loglik, "n_params": p, "AIC": -2 * res.loglik + 2 * p,
                     "BIC": -2 * res.loglik + p * np.log(len(y)), "converged": res.converged})
    return pd.DataFrame(rows)


def notes(example, comparison) -> list[str]:
    """The choice of the number of states, as the HMM literature reports it: log-likelihood, AIC and BIC for
    K = 1..4 fitted by EM (best of 5 starts) with the run's emission and initial distribution."""
    kw = example.build_kwargs
    y = np.asarray(example.data, dtype=float)
    ks = [k for k in (1, 2, 3, 4) if y.size > k + 1]
    table = select_k(y, ks, emission=kw.get("emission", "poisson"), initial=kw.get("initial", "stationary"))
    best = {c: int(table.loc[table[c].idxmin(), "k"]) for c in ("AIC", "BIC")}
    rows = "; ".join(f"K={int(r.k)}: log L {r.loglik:.4f}, AIC {r.AIC:.2f}, BIC {r.BIC:.2f}" for r in table.itertuples())
    return [f"number of states (EM, best of 5 starts): {rows}. AIC prefers K = {best['AIC']}, BIC K = "
            f"{best['BIC']}."]


SPEC = ModelSpec(
    name=NAME,
    description="hidden Markov model, Poisson or Normal emissions (2 states, lam=(15, 26), n=500; or earthquakes)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, n, seed),
    data_kind="vector",
    options=(Option("k", int, "number of hidden states (default 2)"),
             Option("emission", str, "emission distribution", choices=EMISSIONS),
             Option("initial", str, "initial state distribution", choices=INITIALS),
             Option("example", str, "built-in example", choices=("simulated", "earthquakes"), applies="example")),
    params=("P", "lam", "mu", "sigma", "pi0"),
    notes=notes,
    min_n=lambda options: int(options.get("k") or 2) + 1,
    # the real series: 107 steps keep NUTS affordable in the generic tests (the simulated one is tested in its room)
    test_cases={"earthquakes": {"example": "earthquakes"}},
)
