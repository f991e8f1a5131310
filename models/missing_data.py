"""Multivariate normal with entries missing at random: the textbook use of EM.

Declaration (``build``), D columns, NaN marking a missing entry::

    mu  ~ Normal(mu_prior), shape D                      default Normal(column means, 10 column sds)
    D >= 2: chol ~ LKJCholeskyCov(eta=lkj_eta, sd_dist=HalfNormal(sigma_prior))   default eta 2, 5 column sds
            cov  = chol chol'                             deterministic, D x D
    D = 1:  sigma ~ HalfNormal(sigma_prior); cov = sigma^2 (1 x 1)
    for every row i, O_i the set of its observed columns:
            x_i[O_i] ~ MvNormal(mu[O_i], cov[O_i, O_i])  observed: one CustomDist ``x`` over the rows

So the model's log-likelihood is the observed-data likelihood (Little & Rubin): each row's observed entries under
the matching sub-vector and sub-matrix, and MLE and MAP optimise the right objective. The rows are grouped by
missingness pattern and each pattern's sub-matrix is factorised once, in a PyTensor op with its gradient written
out (Numba kernels, under both of PyTensor's backends; the graph and its compilation do not grow with the number of
patterns). Rows with every entry missing carry no information and are dropped, with a warning that says how many.

Every estimator runs on this form, the missing entries integrated out exactly. Posterior imputations for NUTS and VI
come from the same posterior without sampling hundreds of extra unknowns: for each draw of (mu, cov) the missing
entries of every row are drawn from their conditional normal given the row's observed entries (the hooks'
``latent_draws``); they appear in the results as ``x_unobserved``. That is the posterior of the imputing form below,
by the chain rule p(theta, x_mis | x_obs) = p(theta | x_obs) p(x_mis | x_obs, theta).

``build_imputing`` declares the same model as one masked observation, so PyMC adds the missing entries as unknowns
(``x_unobserved``). Its joint MAP over parameters *and* missing values is not the MLE: each missing entry is set to
its conditional mean, with no spread, so the covariance shrinks. :func:`joint_map` computes it in closed form, as EM
without the conditional-covariance term (``em(model, prior=True, conditional_covariance=False)``), and the comparison
notes show it next to the MLE.

Built-in examples: (1) ``k = 3``: 1,000 rows, 3 correlated columns, 20 % of entries missing completely at random,
the complete data kept to score imputations. (2) ``series``: the one-column series 2, ?, 6, 8, ?, 10, 12, 14, ?, 18.
Its MLE is the observed mean 70 / 7 = 10 and the observed variance with divisor 7, 168 / 7 = 24. In one dimension
a gap is a row with nothing observed, so it carries no information and is dropped (with the warning); EM then
works on the seven values and its first M-step is already the MLE. Kept in, the gaps would change nothing: the
E-step fills each with the current mu (adding sigma^2 to its expected square), the M-step gives
mu' = (70 + 3 mu) / 10, a contraction by 0.3 whose fixed point is exactly 70 / 7 = 10, and
sigma^2' = (SS_obs(mu) + 3 sigma^2) / 10, whose fixed point is SS_obs / 7 = 24. EM lands on exactly 10 because the
gaps say nothing about mu; a procedure that fills them from clusters of sorted neighbours (10.00007873 in a popular
notebook) is not EM on this model.

EM:

* E-step, per missingness pattern (vectorised over its rows): x_M = mu_M + S_MO S_OO^-1 (x_O - mu_O) and the
  conditional covariance C = S_MM - S_MO S_OO^-1 S_OM, added to the expected x x' of every row of the pattern
  (without it the covariance is biased low).
* M-step: mu = mean of the completed rows, S = mean of E[x x'] - mu mu' (data centred first).
* MAP M-step with the model's priors (ECM): mu from the Normal prior given S; S by maximising
  -n/2 log|S| - tr(S^-1 SS)/2 + log p(chol) with the LKJ prior's density taken from the PyMC model (L-BFGS from the
  current value); for D = 1 the HalfNormal case in closed form.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numba import njit
from pytensor.gradient import disconnected_type, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key
from scipy import stats

from inference.base import EMMath, ModelHooks, ModelSpec, Option, SufficientEM, attach, hooks_for

from ._common import (
    Example,
    check_n,
    chol_prior_fn,
    data_centred_priors,
    dist_params,
    halfnormal_scale_map,
    lkj_m_step,
    normal_mean_map,
    once_per_params,
    pack,
    has_prior_containers,
    positive,
    prior_containers,
    prior_options,
    simulate_from,
    swapped_priors,
)

NAME = "missing_data"
TRUTH = {"mu": np.array([1.0, -2.0, 0.5]),
         "cov": np.array([[1.0, 0.6, -0.3], [0.6, 2.0, 0.4], [-0.3, 0.4, 0.5]])}
EXAMPLE_N = 1000
EXAMPLE_SEED = 42
MISSING_FRACTION = 0.2
SERIES = np.array([2, np.nan, 6, 8, np.nan, 10, 12, 14, np.nan, 18])

__all__ = ["SPEC", "build", "build_imputing", "em_math", "example", "factored_mle", "impute", "joint_map",
           "patterns", "prepare", "simulate", "swap_data"]


# ------------------------------------------------------------------------------------------------ input checks
def prepare(X, columns=None, *, warn: bool = True) -> tuple[np.ndarray, list[str]]:
    """A float (n, D) array with NaN for missing entries; rows with nothing observed dropped (warned)."""
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("X: expected numbers, with NaN (or an empty cell) for a missing entry") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] < 1 or X.shape[0] < 1:
        raise ValueError(f"X: expected a 2-D array (rows, columns) with at least one row, got shape {X.shape}")
    names = [f"x{j}" for j in range(X.shape[1])] if columns is None else [str(c) for c in columns]
    if np.isinf(X).any():
        i, j = map(int, np.argwhere(np.isinf(X))[0])
        raise ValueError(f"X: column {names[j]!r} has an infinite value (row {i}); missing entries must be NaN")
    observed = ~np.isnan(X)
    empty_cols = np.flatnonzero(~observed.any(axis=0))
    if empty_cols.size:
        raise ValueError(f"X: column {names[empty_cols[0]]!r} is entirely missing")
    empty_rows = ~observed.any(axis=1)
    if empty_rows.any():
        if warn:
            warnings.warn(f"X: dropped {int(empty_rows.sum())} rows with every entry missing", UserWarning,
                          stacklevel=3)
        X = X[~empty_rows]
    return X, names


def patterns(X) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observed column mask, row indices) for every missingness pattern, in a stable order."""
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.ravel(inverse)
    return [(keys[g], np.flatnonzero(inverse == g)) for g in range(len(keys))]


def mle_check(X) -> None:
    """Refuse data whose observed-data likelihood has no (unique) maximum for an unrestricted covariance."""
    n, D = X.shape
    obs = (~np.isnan(X)).astype(int)
    counts = obs.T @ obs
    reason = None
    if n < D + 1:
        reason = f"{n} rows for a {D} x {D} covariance"
    elif np.any(np.diag(counts) < 2):
        reason = f"column {int(np.argmin(np.diag(counts)))} has fewer than 2 observed values"
    elif np.any(counts < 3):
        i, j = map(int, np.argwhere(counts < 3)[0])
        reason = f"columns {i} and {j} are observed together in fewer than 3 rows"
    if reason is not None:
        raise ValueError(f"fewer complete-enough rows than the covariance needs ({reason}): the MLE does not exist "
                         "or is not unique; use map or map_em (the priors regularise the covariance)")


def check_plan(example, estimators) -> None:
    wants = [e for e in estimators if e in ("mle", "em")]
    if wants:
        try:
            mle_check(example.data)
        except ValueError as exc:
            raise ValueError(f"{wants[0]}: {exc}") from None


def _parameters(D, m0, s0, tau, eta):
    """Declare mu and the covariance inside the current model; returns (mu, chol matrix)."""
    mu = pm.Normal("mu", m0, s0, shape=D)
    if D == 1:
        sigma = pm.HalfNormal("sigma", tau[0])
        L = sigma.reshape((1, 1))
    else:
        packed = pm.LKJCholeskyCov("chol", eta=eta, n=D, sd_dist=pm.HalfNormal.dist(tau, shape=D),
                                   compute_corr=False)
        L = pm.math.expand_packed_triangular(D, packed, lower=True)
    pm.Deterministic("cov", L @ L.T)
    return mu, L


# ------------------------------------------------------------------------------------------------ the models
def build(X, *, columns=None, mu_prior=None, sigma_prior=None, lkj_eta: float = 2.0) -> pm.Model:
    """The observed-data-likelihood model: every row's observed entries under the matching marginal normal.

    Parameters
    ----------
    X : (n, D) array with NaN for missing entries (a 1-D array is one column).
    columns : column names, for messages.
    mu_prior : (mean, sd) of the Normal prior on each mean. Default (column means, 10 x column sds).
    sigma_prior : HalfNormal scale of the column sds. Default 5 x column sds.
    lkj_eta : LKJ concentration of the correlation matrix (D >= 2). Default 2.

    The data sit in containers (the rows with 0 in place of a missing entry, the missingness patterns, each row's
    pattern) and so do the priors' numbers: the model's structure depends on D alone, so :func:`swap_data` can put
    any other data set of D columns in its place and every compiled function is reused (a simulation study draws
    a new set of patterns with every data set).
    """
    X, names = prepare(X, columns)
    n, D = X.shape
    m0, s0, tau = data_centred_priors(X, mu_prior, sigma_prior)
    eta = positive(lkj_eta, "lkj_eta")
    with pm.Model() as model:
        mu, L = _parameters(D, *prior_containers(model, (m0, s0, tau), mu_prior, sigma_prior), eta)
        cov = L @ L.T
        values, masks, row_pattern = (pm.Data(name, v) for name, v in zip(DATA_CONTAINERS, _containers(X)))
        pm.CustomDist("x", mu, cov, masks, row_pattern, logp=_observed_logp, random=_observed_random,
                      signature="(d),(d,d),(g,d),()->(d)", observed=values)
    options = {"columns": names, **prior_options(m0, s0, tau), "lkj_eta": eta}

    def math(prior, conditional_covariance: bool = True, shift=None):
        return em_math(model, prior=prior, conditional_covariance=conditional_covariance, shift=shift)

    return attach(model, ModelHooks(NAME, options, em_math=math,
                                    init=lambda rng: _to_model(_init(data_from_model(model), rng), D),
                                    public=["mu", "cov"], mle_check=lambda: mle_check(data_from_model(model)),
                                    latent_draws=lambda draws, rng: imputation_draws(data_from_model(model), draws,
                                                                                     rng)))


DATA_CONTAINERS = ("x_values", "patterns", "row_pattern")


def _containers(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with 0 for a missing entry, (G, D) 0/1 observed-column masks of the G patterns in :func:`patterns`'
    order, each row's pattern index)."""
    observed = ~np.isnan(X)
    keys, inverse = np.unique(observed, axis=0, return_inverse=True)
    return np.where(observed, X, 0.0), keys.astype(float), np.ravel(inverse).astype(np.int64)


def _observed_logp(value, mu, cov, masks, row_pattern):
    """log N(x_O | mu_O, cov_OO) of every row (:class:`_ObservedLogp`)."""
    # PyMC hands the parameters with a leading batch axis of length 1 (the rows are the batch)
    mu, cov, masks = mu.reshape(mu.shape[-1:]), cov.reshape(cov.shape[-2:]), masks.reshape(masks.shape[-2:])
    return _OBSERVED_LOGP(value, mu, cov, masks, row_pattern)


class _ObservedLogp(Op):
    """log N(x_O | mu_O, cov_OO) of every row, the rows grouped by missingness pattern: with the pattern's 0/1 mask
    m, the matrix S = (m m') * cov + diag(1 - m) is cov_OO with the identity in the missing rows and columns (up to a
    permutation), so its Cholesky factor gives |cov_OO| and its inverse, on the residual m * (x - mu), the quadratic
    form of the observed entries. One factorisation per pattern (a Numba kernel, under both of PyTensor's backends),
    -inf for the rows of a pattern whose cov_OO is not positive definite. The gradient (:class:`_ObservedScore`) is
    written out: the same likelihood as a graph of batched Cholesky factors and triangular solves took Numba 56 s to
    compile, with its gradient."""

    __props__ = ()
    gufunc_signature = "(n,d),(d),(d,d),(g,d),(n)->(n)"

    def make_node(self, values, mu, cov, masks, row_pattern):
        inputs = [pt.as_tensor_variable(v, dtype=t) for v, t in
                  zip((values, mu, cov, masks, row_pattern), ("float64",) * 4 + ("int64",))]
        return Apply(self, inputs, [pt.dvector()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = _observed_rows(*_contiguous(inputs))

    def pullback(self, inputs, outputs, output_grads):
        return [*_OBSERVED_SCORE(*inputs, output_grads[0]), disconnected_type(), disconnected_type()]

    def connection_pattern(self, node):
        return [[True], [True], [True], [False], [False]]


class _ObservedScore(Op):
    """The rows' log-densities' gradient, weighted by the output gradient g: with s_i = cov_OO^-1 (x_iO - mu_O),
    d/d x_i = -g_i s_i, d/d mu = sum_i g_i s_i and d/d cov = sum over patterns of
    (sum_i g_i s_i s_i' - (sum_i g_i) cov_OO^-1) / 2 on the pattern's observed block (the symmetric gradient)."""

    __props__ = ()
    gufunc_signature = "(n,d),(d),(d,d),(g,d),(n),(n)->(n,d),(d),(d,d)"

    def make_node(self, values, mu, cov, masks, row_pattern, g):
        inputs = [pt.as_tensor_variable(v) for v in (values, mu, cov, masks, row_pattern, g)]
        return Apply(self, inputs, [inputs[0].type(), inputs[1].type(), inputs[2].type()])

    def perform(self, node, inputs, outputs):
        for out, value in zip(outputs, _observed_score(*_contiguous(inputs))):
            out[0] = value

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, i, x, "the observed-data likelihood's second derivatives")
                for i, x in enumerate(inputs[:3])] + [disconnected_type()] * 3

    def connection_pattern(self, node):
        return [[True] * 3] * 3 + [[False] * 3] * 2 + [[True] * 3]


def _contiguous(inputs):
    return tuple(np.ascontiguousarray(v, dtype=np.int64 if i == 4 else np.float64) for i, v in enumerate(inputs))


_OBSERVED_LOGP, _OBSERVED_SCORE = _ObservedLogp(), _ObservedScore()
# The cache version of the two ops' Numba functions: bump it when the kernels below change.
_OPS_VERSION = 1


@register_funcify_default_op_cache_key(_ObservedLogp)
def _numba_observed_logp(op, node, **kwargs):
    @numba_njit
    def observed_logp(values, mu, cov, masks, row_pattern):
        return _observed_rows(values, mu, cov, masks, row_pattern)

    return observed_logp, _OPS_VERSION


@register_funcify_default_op_cache_key(_ObservedScore)
def _numba_observed_score(op, node, **kwargs):
    @numba_njit
    def observed_score(values, mu, cov, masks, row_pattern, g):
        return _observed_score(values, mu, cov, masks, row_pattern, g)

    return observed_score, _OPS_VERSION


@njit(cache=True)
def _pattern_inverses(cov, masks):  # pragma: no cover - compiled
    """For every pattern: the inverse of S = (m m') * cov + diag(1 - m) (cov_OO^-1 in the observed block, the
    identity elsewhere), half its log-determinant, and whether it is positive definite; by a Cholesky factor."""
    G, D = masks.shape
    inv = np.zeros((G, D, D))
    half_log_det = np.zeros(G)
    ok = np.ones(G, dtype=np.bool_)
    S = np.empty((D, D))
    L = np.zeros((D, D))
    L_inv = np.zeros((D, D))
    for g in range(G):
        for a in range(D):
            for b in range(D):
                S[a, b] = masks[g, a] * masks[g, b] * cov[a, b] + (1.0 - masks[g, a] if a == b else 0.0)
        L[:] = 0.0
        for a in range(D):
            for b in range(a + 1):
                acc = S[a, b]
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if a == b:
                    if not acc > 0.0:
                        ok[g] = False
                        break
                    L[a, a] = np.sqrt(acc)
                    half_log_det[g] += np.log(L[a, a])
                else:
                    L[a, b] = acc / L[b, b]
            if not ok[g]:
                break
        if not ok[g]:
            continue
        L_inv[:] = 0.0
        for b in range(D):  # forward substitution, column by column of the identity
            for a in range(b, D):
                acc = 1.0 if a == b else 0.0
                for c in range(b, a):
                    acc -= L[a, c] * L_inv[c, b]
                L_inv[a, b] = acc / L[a, a]
        for a in range(D):
            for b in range(D):
                acc = 0.0
                for c in range(max(a, b), D):
                    acc += L_inv[c, a] * L_inv[c, b]
                inv[g, a, b] = acc
    return inv, half_log_det, ok


@njit(cache=True)
def _observed_rows(values, mu, cov, masks, row_pattern):  # pragma: no cover - compiled
    inv, half_log_det, ok = _pattern_inverses(cov, masks)
    N, D = values.shape
    out = np.empty(N)
    r = np.empty(D)
    for i in range(N):
        g = row_pattern[i]
        if not ok[g]:
            out[i] = -np.inf
            continue
        n_obs = 0.0
        for a in range(D):
            r[a] = masks[g, a] * (values[i, a] - mu[a])
            n_obs += masks[g, a]
        q = 0.0
        for a in range(D):
            for b in range(D):
                q += r[a] * inv[g, a, b] * r[b]
        out[i] = -0.5 * (q + n_obs * np.log(2.0 * np.pi)) - half_log_det[g]
    return out


@njit(cache=True)
def _observed_score(values, mu, cov, masks, row_pattern, weights):  # pragma: no cover - compiled
    inv, _, ok = _pattern_inverses(cov, masks)
    N, D = values.shape
    G = masks.shape[0]
    d_values = np.zeros((N, D))
    d_mu = np.zeros(D)
    outer = np.zeros((G, D, D))
    total = np.zeros(G)
    r = np.empty(D)
    s = np.empty(D)
    singular = False
    for i in range(N):
        g, w = row_pattern[i], weights[i]
        if not ok[g]:
            d_values[i, :] = np.nan
            singular = True
            continue
        for a in range(D):
            r[a] = masks[g, a] * (values[i, a] - mu[a])
        for a in range(D):
            acc = 0.0
            for b in range(D):
                acc += inv[g, a, b] * r[b]
            s[a] = acc
        for a in range(D):
            d_values[i, a] = -w * s[a]
            d_mu[a] += w * s[a]
            for b in range(D):
                outer[g, a, b] += w * s[a] * s[b]
        total[g] += w
    d_cov = np.zeros((D, D))
    for g in range(G):
        for a in range(D):
            for b in range(D):
                d_cov[a, b] += 0.5 * (outer[g, a, b] - total[g] * masks[g, a] * masks[g, b] * inv[g, a, b])
    if singular:  # a row's density is -inf: no gradient
        d_mu[:] = np.nan
        d_cov[:] = np.nan
    return d_values, d_mu, d_cov


def _observed_random(mu, cov, masks, row_pattern, rng=None, size=None):
    """Rows drawn from N(mu, cov), 0 in the entries their pattern leaves missing (the form the data are held in)."""
    shape = tuple(size) if size not in (None, ()) else np.shape(row_pattern)
    mu, cov, masks = (np.reshape(a, np.shape(a)[-k:]) for a, k in ((mu, 1), (cov, 2), (masks, 2)))
    return rng.multivariate_normal(mu, cov, size=shape) * masks[np.asarray(row_pattern, dtype=int)]


def swap_data(model: pm.Model, X):
    """``model`` holding ``X`` instead (``pm.set_data`` of the data containers, and of the data-centred priors
    when they were not given): the same as ``build(X)`` with the model's options, nothing built or compiled again.
    None when a rebuilt model would differ in structure: a different number of columns."""
    if not has_prior_containers(model):
        return None
    X, _ = prepare(X, warn=True)
    if X.shape[1] != len(hooks_for(model).options["columns"]):
        return None
    values = {**swapped_priors(model, X), **dict(zip(DATA_CONTAINERS, _containers(X)))}
    with model:
        pm.set_data(values)
    return model


def build_imputing(X, *, columns=None, mu_prior=None, sigma_prior=None, lkj_eta: float = 2.0) -> pm.Model:
    """The same model with the missing entries as unknowns (PyMC's masked observation ``x``, unknowns
    ``x_unobserved``), for posterior imputation with NUTS and VI."""
    X, names = prepare(X, columns, warn=False)
    n, D = X.shape
    m0, s0, tau = data_centred_priors(X, mu_prior, sigma_prior)
    eta = positive(lkj_eta, "lkj_eta")
    with pm.Model() as model:
        mu, L = _parameters(D, m0, s0, tau, eta)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PyMC's note that it imputes the masked entries
            pm.MvNormal("x", mu, chol=L, observed=np.ma.masked_invalid(X))
    options = {"columns": names, "form": "imputing"}
    return attach(model, ModelHooks(NAME, options, public=["mu", "cov"],
                                    init=lambda rng: _imputing_start(X, rng)))


def _imputing_start(X, rng):
    p = _init(X, rng)
    start = _to_model(p, X.shape[1])
    filled, _ = _conditional_fill(X, p["mu"], p["cov"])
    start["x_unobserved"] = filled[np.isnan(X)]
    return start


# ------------------------------------------------------------------------------------------------ examples
def simulate(params=None, n: int = EXAMPLE_N, seed=EXAMPLE_SEED, missing: float = MISSING_FRACTION):
    """(complete data, data with entries masked completely at random): rows drawn from the declaration with
    ``params`` fixed, then each entry hidden with probability ``missing`` (rows left empty keep one entry)."""
    params = dict(TRUTH if params is None else params)
    n = check_n(n)
    if not 0 <= missing < 1:
        raise ValueError(f"missing: expected a fraction in [0, 1), got {missing!r}")
    mu, cov = np.asarray(params["mu"], dtype=float), np.asarray(params["cov"], dtype=float)
    D = mu.size
    fixed = {"mu": mu}
    if D == 1:
        fixed["sigma"] = np.sqrt(cov[0, 0])
    else:
        fixed["chol"] = pack(np.linalg.cholesky(cov))
    # the compiled draw is kept per (n, D): a study draws every replicate's data from it
    complete = simulate_from(lambda: build_imputing(np.random.default_rng(0).standard_normal((n, D))), fixed, "x",
                             seed, key=(NAME, n, D)).reshape(n, D)
    rng = np.random.default_rng(seed + 1 if isinstance(seed, (int, np.integer)) else None)
    mask = rng.random((n, D)) < missing
    full = mask.all(axis=1)
    mask[full, rng.integers(D, size=int(full.sum()))] = False
    masked = complete.copy()
    masked[mask] = np.nan
    return complete, masked


def example(seed=EXAMPLE_SEED, example: str = "correlated") -> Example:
    """``"correlated"``: example (1), truth and complete data kept; ``"series"``: the 1-D toy series."""
    if example == "series":
        return Example(SERIES[:, None].copy(), build_kwargs={"columns": ["x"]}, truth=None,
                       source="series 2, ?, 6, 8, ?, 10, 12, 14, ?, 18")
    if example != "correlated":
        raise ValueError(f"--example: expected 'correlated' or 'series', got {example!r}")
    complete, masked = simulate(TRUTH, EXAMPLE_N, seed)
    return Example(masked, build_kwargs={"columns": ["x0", "x1", "x2"]},
                   truth={k: v.copy() for k, v in TRUTH.items()}, extra={"complete": complete})


# ------------------------------------------------------------------------------------------------ EM
def _init(X, rng) -> dict:
    """Column means and the diagonal of the observed variances, jittered by ``rng``."""
    mean = np.nanmean(X, axis=0)
    var = np.nanvar(X, axis=0)
    var = np.where(var > 0, var, 1.0)
    D = X.shape[1]
    return {"mu": mean + 0.05 * np.sqrt(var) * rng.standard_normal(D),
            "cov": np.diag(var * np.exp(0.1 * rng.standard_normal(D)))}


def _to_model(p, D) -> dict:
    if D == 1:
        return {"mu": np.asarray(p["mu"], dtype=float), "sigma": float(np.sqrt(np.asarray(p["cov"])[0, 0]))}
    return {"mu": np.asarray(p["mu"], dtype=float), "chol": pack(np.linalg.cholesky(p["cov"]))}


def _conditional_fill(X, mu, cov, groups=None):
    """Conditional means of the missing entries and the sum of the conditional covariances, pattern by pattern."""
    n, D = X.shape
    filled = X.copy()
    extra = np.zeros((D, D))
    for obs, rows in (groups if groups is not None else patterns(X)):
        mis = ~obs
        if not mis.any():
            continue
        o, m = np.flatnonzero(obs), np.flatnonzero(mis)
        if o.size == 0:  # nothing observed: the marginal mean and covariance
            filled[np.ix_(rows, m)] = mu
            extra += rows.size * cov
            continue
        S_oo = cov[np.ix_(o, o)]
        S_mo = cov[np.ix_(m, o)]
        B = np.linalg.solve(S_oo, S_mo.T).T  # S_mo S_oo^-1
        filled[np.ix_(rows, m)] = mu[m] + (X[np.ix_(rows, o)] - mu[o]) @ B.T
        C = cov[np.ix_(m, m)] - B @ S_mo.T
        extra[np.ix_(m, m)] += rows.size * C
    return filled, extra


def observed_loglik(X, mu, cov, groups=None) -> float:
    """Sum over rows of log N(x_O | mu_O, cov_OO), vectorised by missingness pattern."""
    total = 0.0
    for obs, rows in (groups if groups is not None else patterns(X)):
        o = np.flatnonzero(obs)
        L = np.linalg.cholesky(cov[np.ix_(o, o)])
        z = np.linalg.solve(L, (X[np.ix_(rows, o)] - mu[o]).T)
        total += (-0.5 * np.sum(z * z) - rows.size * (np.sum(np.log(np.diag(L))) + 0.5 * o.size * np.log(2 * np.pi)))
    return float(total)


def data_from_model(model: pm.Model) -> np.ndarray:
    """The (n, D) data matrix, NaN where missing, rebuilt from the model's data containers."""
    values, masks, row_pattern = (model[name].get_value() for name in DATA_CONTAINERS)
    return np.where(masks[np.asarray(row_pattern, dtype=int)] > 0, values, np.nan)


def _prepare(X, shift):
    """Raw rows (NaN where missing) -> (rows centred at ``shift``, their missingness patterns); rows with nothing
    observed carry no information and are left out."""
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[1] != shift.size:
        raise ValueError(f"X: expected rows of {shift.size} values, got shape {X.shape}")
    if np.isinf(X).any():
        raise ValueError(f"X: row {int(np.argwhere(np.isinf(X))[0, 0])} has an infinite value; missing entries "
                         "must be NaN")
    X = X[~np.isnan(X).all(axis=1)] - shift
    return X, patterns(X)


def _chunk_stats(p, chunk, shift, conditional_covariance=True):
    """n, sum of the completed rows and sum of their expected outer products (the conditional covariance added
    pattern by pattern), in centred coordinates, and the chunk's log-likelihood (the EM's objective)."""
    Xc, groups = chunk
    mu_c = np.asarray(p["mu"], dtype=float) - shift
    cov = np.asarray(p["cov"], dtype=float)
    filled, extra = _conditional_fill(Xc, mu_c, cov, groups)
    ll = observed_loglik(Xc, mu_c, cov, groups)
    if not conditional_covariance:
        extra = np.zeros_like(extra)
        ll += _conditional_log_det(groups, cov)
    return {"sx": filled.sum(axis=0), "sxx": filled.T @ filled + extra, "n": float(Xc.shape[0]), "loglik": ll}


def em_math(model: pm.Model, *, prior: bool, conditional_covariance: bool = True, shift=None) -> EMMath:
    """EM steps, reading the data and the priors from ``model``.

    With ``conditional_covariance=False`` the E-step fills each gap with its conditional mean and adds nothing to
    the expected squares: the steps are then coordinate ascent on the joint density of the parameters and the
    missing entries, whose maximum is the joint MAP (with ``prior``) of the imputing form. Its objective, reported
    as the log-likelihood of this EM, is the observed-data log-likelihood plus, per row, the conditional density of
    the missing entries at their conditional mean, -1/2 log |2 pi C|.

    ``shift`` (length D, default the observed column means) is the point the rows are centred at, fixed before the
    first pass so that EM over chunks (:mod:`inference.chunked`) gives the in-memory iterates. The step is the
    one-chunk case of :class:`~inference.base.SufficientEM`: the statistics n, sum x, sum E[x x'] of all rows, then
    the M-step from them.
    """
    import functools

    X = data_from_model(model)
    D = X.shape[1]
    shift = np.nanmean(X, axis=0) if shift is None else np.asarray(shift, dtype=float).reshape(-1)
    if shift.size != D or not np.all(np.isfinite(shift)):
        raise ValueError(f"shift: expected {D} finite numbers, got {shift!r}")
    data = _prepare(X, shift)
    hooks = hooks_for(model)
    names = hooks.options.get("columns") if hooks is not None else None
    names = list(names) if names is not None and len(names) == D else [f"x{j}" for j in range(D)]
    if prior:
        m0, s0 = (np.broadcast_to(np.asarray(v, dtype=float), (D,)) for v in dist_params(model, "mu", "normal"))
        if D == 1:
            tau = float(np.ravel(dist_params(model, "sigma", "halfnormal")[1])[0])
        else:
            chol_prior = chol_prior_fn(model, "chol", D)
    chunk_stats = functools.partial(_chunk_stats, shift=shift, conditional_covariance=conditional_covariance)
    evaluate = once_per_params(lambda p: chunk_stats(p, data))

    def loglik(p):
        return evaluate(p)["loglik"]

    def from_stats(totals, p):
        m, sx, sxx = totals["n"], totals["sx"], totals["sxx"]
        cov = np.asarray(p["cov"], dtype=float)
        if not prior:
            mu_new = sx / m
            cov_new = sxx / m - np.outer(mu_new, mu_new)
        else:
            mu_new = normal_mean_map(np.linalg.inv(cov), m, sx, m0 - shift, s0)
            ss = sxx - np.outer(mu_new, sx) - np.outer(sx, mu_new) + m * np.outer(mu_new, mu_new)
            if D == 1:
                cov_new = np.array([[halfnormal_scale_map(ss[0, 0], m, tau)]])
            else:
                cov_new = lkj_m_step(chol_prior, cov, m, ss, D)
        cov_new = 0.5 * (cov_new + cov_new.T)
        _check_regular(cov_new, names)
        return {"mu": mu_new + shift, "cov": cov_new}

    def expected_loglik(totals, p):
        # -n/2 log|2 pi S| - tr(S^-1 (sum E[x x'] - m sx' - sx m' + n m m'))/2, centred coordinates
        m = np.asarray(p["mu"], dtype=float) - shift
        cov = np.asarray(p["cov"], dtype=float)
        ss = totals["sxx"] - np.outer(m, totals["sx"]) - np.outer(totals["sx"], m) + totals["n"] * np.outer(m, m)
        return float(-0.5 * totals["n"] * (np.linalg.slogdet(2 * np.pi * cov)[1])
                     - 0.5 * np.sum(np.linalg.inv(cov) * ss))

    def step(p):
        return from_stats(evaluate(p), p)

    def log_prior(p):
        lp = float(np.sum(stats.norm.logpdf(p["mu"], m0, s0)))
        if D == 1:
            return lp + float(stats.halfnorm.logpdf(np.sqrt(p["cov"][0, 0]), scale=tau))
        return lp + float(chol_prior(pack(np.linalg.cholesky(p["cov"])))[0])

    def check_init(p):
        try:
            mu = np.asarray(p["mu"], dtype=float)
            cov = np.asarray(p["cov"], dtype=float)
        except KeyError as exc:
            raise ValueError(f"init: expected values for mu and cov, missing {exc.args[0]}") from None
        if mu.shape != (D,) or cov.shape != (D, D):
            raise ValueError(f"init: expected mu with shape ({D},) and cov with shape ({D}, {D})")
        if not np.allclose(cov, cov.T) or np.any(np.linalg.eigvalsh(cov) <= 0):
            raise ValueError("init: the initial covariance is not positive definite")
        return {"mu": mu, "cov": cov}

    def extras(p):
        filled, _ = _conditional_fill(X, np.asarray(p["mu"], dtype=float), np.asarray(p["cov"], dtype=float))
        return {"imputed": filled}

    sufficient = SufficientEM(prepare=functools.partial(_prepare, shift=shift), chunk_stats=chunk_stats,
                              from_stats=from_stats, expected_loglik=expected_loglik, allows_missing=True)
    return EMMath(init=lambda rng: _init(X, rng), step=step, loglik=loglik, log_prior=log_prior if prior else None,
                  check_init=check_init, to_model=lambda p: _to_model(p, D), extras=extras, sufficient=sufficient)


def _check_regular(cov, names, max_condition: float = 1e12) -> None:
    """A covariance that is singular (or numerically so) means some columns are exact linear combinations of
    others: name them, from the eigenvector of the smallest eigenvalue."""
    eig, vec = np.linalg.eigh(cov)
    if np.all(np.isfinite(eig)) and eig[0] > eig[-1] / max_condition:
        return
    v = np.abs(vec[:, 0])
    involved = [names[j] for j in np.argsort(-v) if v[j] > 0.1 * v.max()]
    what = " and ".join(repr(c) for c in involved) if len(involved) > 1 else repr(involved[0])
    raise FloatingPointError(f"EM: the covariance became singular: columns {what} are (nearly) collinear, one is a "
                             "linear function of the others; drop one of them, or use map_em (the priors keep the "
                             "covariance regular)")


def _conditional_log_det(groups, cov) -> float:
    """Sum over rows of -1/2 log |2 pi C|, C the conditional covariance of the row's missing entries."""
    total = 0.0
    for obs, rows in groups:
        m = np.flatnonzero(~obs)
        if m.size == 0:
            continue
        o = np.flatnonzero(obs)
        S_mo = cov[np.ix_(m, o)]
        C = cov[np.ix_(m, m)] - S_mo @ np.linalg.solve(cov[np.ix_(o, o)], S_mo.T) if o.size else cov[np.ix_(m, m)]
        total -= 0.5 * rows.size * (np.linalg.slogdet(C)[1] + m.size * np.log(2 * np.pi))
    return float(total)


def joint_map(model: pm.Model, **em_kwargs):
    """The joint MAP of the imputing form (parameters and missing entries together) in closed form: EM with the
    model's priors and without the conditional-covariance term. ``result.info["imputed"]`` holds the filled data.

    No standard errors (``result.sd`` is NaN): the point is the mode of the imputing form, whose curvature in the
    parameters is not that of the model's observed-data density, so the Laplace errors of the latter would mislead."""
    from inference import em

    em_kwargs.setdefault("standard_errors", False)
    return em(model, prior=True, conditional_covariance=False, **em_kwargs)


def imputation_draws(X, draws: dict, rng) -> dict:
    """``x_unobserved`` draws (chain, draw, missing entries in row-major order) given draws of ``mu`` and ``cov``:
    for every posterior draw, each row's missing entries from their conditional normal given its observed ones.

    Vectorised over the draws, one missingness pattern at a time. The standard normal variates are those a loop over
    the draws and then the patterns would take (a block of rows x missing columns each), drawn in one call."""
    mu_d, cov_d = np.asarray(draws["mu"], dtype=float), np.asarray(draws["cov"], dtype=float)
    chains, n_draws = mu_d.shape[:2]
    D = X.shape[1]
    mu_d, cov_d = mu_d.reshape(-1, D), cov_d.reshape(-1, D, D)
    mask = np.isnan(X)
    position = np.full(X.shape, -1)
    position[mask] = np.arange(int(mask.sum()))  # each missing entry's place in the row-major output
    groups = [(np.flatnonzero(~obs), np.flatnonzero(obs), rows) for obs, rows in patterns(X) if not obs.all()]
    z = rng.standard_normal((len(mu_d), sum(rows.size * m.size for m, _, rows in groups)))
    out = np.empty((len(mu_d), int(mask.sum())))
    start = 0
    for m, o, rows in groups:
        eps = z[:, start:start + rows.size * m.size].reshape(-1, rows.size, m.size)
        start += rows.size * m.size
        S_mm = cov_d[:, m[:, None], m]
        if o.size:
            S_om = cov_d[:, o[:, None], m]
            B = np.linalg.solve(cov_d[:, o[:, None], o], S_om)  # (draws, |O|, |M|): the regression of x_M on x_O
            mean = mu_d[:, None, m] + (X[np.ix_(rows, o)][None] - mu_d[:, None, o]) @ B
            C = S_mm - S_om.transpose(0, 2, 1) @ B
        else:
            mean, C = mu_d[:, None, m], S_mm
        L = np.linalg.cholesky(0.5 * (C + C.transpose(0, 2, 1)))
        out[:, position[np.ix_(rows, m)].ravel()] = (mean + eps @ L.transpose(0, 2, 1)).reshape(len(mu_d), -1)
    return {"x_unobserved": out.reshape(chains, n_draws, -1)}


def impute(X, params) -> np.ndarray:
    """The data with every missing entry replaced by its conditional mean given the row's observed entries."""
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    return _conditional_fill(X, np.asarray(params["mu"], dtype=float), np.asarray(params["cov"], dtype=float))[0]


# ------------------------------------------------------------------------------------------------ closed form
def factored_mle(X) -> dict:
    """Anderson's (1957) factored-likelihood MLE for a monotone pattern: column j observed wherever column j+1 is.

    mu and cov of the first column from all its values; each further column by the least-squares regression on the
    previous ones over the rows where it is observed, then the implied moments.
    """
    X = np.asarray(X, dtype=float)
    n, D = X.shape
    obs = ~np.isnan(X)
    if np.any(obs[:, 1:] & ~obs[:, :-1]):
        raise ValueError("X: the missingness pattern is not monotone (a column is observed where the previous is not)")
    rows = obs[:, 0]
    mu = np.empty(D)
    cov = np.empty((D, D))
    x0 = X[rows, 0]
    mu[0] = x0.mean()
    cov[0, 0] = np.mean((x0 - mu[0]) ** 2)
    for j in range(1, D):
        r = obs[:, j]
        Z = np.column_stack([np.ones(r.sum()), X[np.ix_(r, np.arange(j))]])
        y = X[r, j]
        beta, *_ = np.linalg.lstsq(Z, y, rcond=None)
        resid = y - Z @ beta
        s2 = np.mean(resid**2)
        b = beta[1:]
        mu[j] = beta[0] + b @ mu[:j]
        cov[j, :j] = cov[:j, j] = cov[:j, :j] @ b
        cov[j, j] = s2 + b @ cov[:j, :j] @ b
    return {"mu": mu, "cov": cov}


def notes(example, comparison) -> list[str]:
    """What the reader should see: the joint MAP's covariance is shrunk next to the MLE's."""
    mle = comparison.results.get("mle") or comparison.results.get("em")
    X, _ = prepare(example.data, warn=False)
    if mle is None or not np.isnan(X).any():
        return []
    joint = joint_map(build(X, **example.build_kwargs))
    a, b = np.diag(mle.params["cov"]), np.diag(joint.params["cov"])
    return [f"The joint MAP over the parameters and the missing values together (the imputing form's MAP) sets each "
            f"gap to its conditional mean with no spread, so the variances shrink (diagonal "
            f"{np.round(b, 4).tolist()} against the MLE's {np.round(a, 4).tolist()}); the MLE integrates the gaps "
            f"out."]


def metrics(example, comparison) -> dict:
    """Imputation RMSE per column on the masked-out truth: EM's conditional means, PyMC's posterior mean
    imputations (NUTS, ADVI), column-mean imputation and scikit-learn's IterativeImputer."""
    complete = example.extra.get("complete")
    if complete is None:
        return {}
    X = example.data
    mask = np.isnan(X)
    out = {}

    def rmse(filled):
        return {f"rmse_{j}": float(np.sqrt(np.mean((filled[mask[:, j], j] - complete[mask[:, j], j]) ** 2)))
                for j in range(X.shape[1])}

    if "em" in comparison.results:
        out["em"] = rmse(impute(X, comparison.results["em"].params))
    for name in ("nuts", "advi", "fullrank_advi"):
        res = comparison.results.get(name)
        if res is not None and "x_unobserved" in res.params:
            filled = X.copy()
            filled[mask] = res.params["x_unobserved"]
            out[name] = rmse(filled)
    out["column_mean"] = rmse(np.where(mask, np.nanmean(X, axis=0), X))
    try:
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer

        out["iterative_imputer"] = rmse(IterativeImputer(random_state=0, max_iter=50).fit_transform(X))
    except ImportError:  # scikit-learn is a test/peer dependency
        pass
    return out


SPEC = ModelSpec(
    name=NAME,
    description="rows ~ MvNormal(mu, cov) with entries missing at random (1,000 x 3, 20% missing)",
    build=build,
    example=example,
    simulate=lambda params, n, seed: simulate(params, n, seed)[1],
    data_kind="incomplete",
    options=(Option("example", str, "built-in example", choices=("correlated", "series"), applies="example"),),
    params=("mu", "cov"),
    check_plan=check_plan,
    metrics=metrics,
    metrics_title="imputation RMSE per column on the masked-out truth:",
    notes=notes,
    min_n=lambda options: 4,
    swap_data=lambda model, data: swap_data(model, data),
)
