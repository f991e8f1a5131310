"""How good is an approximate posterior? Pareto k-hat of its importance ratios, and its marginals against NUTS.

An approximation q of the posterior p(theta | y) (ADVI, full-rank ADVI, Laplace, Pathfinder) is judged two ways.

1. Importance sampling from q (Yao, Vehtari, Simpson & Gelman 2018, "Yes, but did it work?: Evaluating variational
   inference", ICML). For draws theta_s ~ q the log importance ratios are

       log r_s = log p(theta_s, y) - log q(theta_s),

   both densities taken in the *same* (unconstrained) space, so the log density is PyMC's ``model.logp`` with the
   Jacobian of the value transforms (``functions_for(model).value("logp")``). Pareto-smoothed importance sampling
   (PSIS; Vehtari, Simpson, Gelman, Yao & Gabry 2024, JMLR 25(72)) fits a generalised Pareto distribution to the
   largest ratios; its shape k-hat estimates how many moments of the ratios exist (1/k). The estimate is reliable and
   the PSIS-weighted means of the draws are accurate when k-hat < min(1 - 1/log10(S), 0.7) for S draws.

   The PSIS implementation is arviz-stats' ``psislw``, which follows the leave-one-out convention: it smooths the
   ratios ``-ary``, so it is given the *negated* log ratios. (Its ``pareto_khat(..., log_weights=True)`` is not the
   right call for log ratios: it fits the tail of the log ratios themselves, and returns about 0 where the true shape
   is 0.75; the tests guard the convention used here with that known case.)

   k-hat describes the tail of the ratios, not the bulk: a Gaussian q for a posterior with an exponential tail (the
   log of a scale parameter) has ratios growing like exp(c theta^2) far out, so k is 1 asymptotically even when q is
   excellent where the mass is; with a few thousand draws the estimate then scatters widely. The errors below say
   whether that matters for the means.

2. Against the reference posterior (NUTS), per scalar parameter: the error of the mean in posterior sds
   (mean_q - mean_nuts) / sd_nuts, the ratio sd_q / sd_nuts, and the 1-D Wasserstein distance between the two
   samples' marginals. An approximation is flagged when a mean is off by more than 0.2 posterior sd or when k-hat is
   above the threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import logsumexp

from .base import hooks_for
from .checks import check
from .functions import functions_for
from .result import Result, UnreliableWarning, flat_labels
from .result import warn as _warn

__all__ = ["MEAN_TOLERANCE", "approximation_quality", "importance_ratios", "khat_threshold", "psis",
           "self_diagnosis", "self_verdict", "verdicts"]

MEAN_TOLERANCE = 0.2  # flag an approximation whose mean is further than this many NUTS posterior sds


def khat_threshold(n_draws: int) -> float:
    """min(1 - 1/log10(S), 0.7): the sample-size-dependent k-hat threshold of Vehtari et al. (2024)."""
    check(n_draws, "n_draws", "integer >= 2")
    return float(min(1.0 - 1.0 / np.log10(n_draws), 0.7))


def psis(log_ratios) -> tuple[np.ndarray, float]:
    """Pareto-smoothed importance sampling of independent draws: (normalised log weights, k-hat).

    ``log_ratios`` are log p - log q at draws from q (one-dimensional). The largest ratios are replaced by the
    expected order statistics of the fitted generalised Pareto distribution, then the weights are normalised
    to sum to one.
    """
    from arviz_stats.base import array_stats

    lr = np.asarray(log_ratios, dtype=float)
    if lr.ndim != 1 or lr.size < 5:
        raise ValueError(f"log_ratios: expected a 1-D array of at least 5 values, got shape {lr.shape}")
    if not np.all(np.isfinite(lr)):
        raise ValueError("log_ratios: expected finite values")
    if np.ptp(lr) <= 1e-12 * max(1.0, float(np.max(np.abs(lr)))):  # q = p: equal weights, no tail at all
        return np.full(lr.size, -np.log(lr.size)), float("-inf")
    # psislw smooths -ary (log-likelihood -> leave-one-out ratios): hand it the negated ratios; r_eff = 1 for
    # independent draws.
    smoothed, khat = array_stats.psislw(-lr, r_eff=1.0)
    smoothed = np.asarray(smoothed, dtype=float)
    return smoothed - logsumexp(smoothed), float(khat)


# Draws of q at which the model's log density is not finite (a point PyMC's graph cannot evaluate: an overflow, a
# value outside a bound the declaration checks) are allowed up to this share before the approximation is unreliable.
MAX_NONFINITE_SHARE = 0.01


def self_diagnosis(method: str, fns, theta, logq, *, converged: bool, constrained: dict | None = None,
                   logp=None, resampled: bool = False) -> dict:
    """An approximation judged by its own draws, without a reference posterior (Yao, Vehtari, Simpson & Gelman 2018).

    The log importance ratios log p(theta_s, y) - log q(theta_s) at the approximation's own draws theta_s ~ q, with
    PyMC's log density of the unconstrained values (Jacobian included), are Pareto-smoothed (:func:`psis`). The
    approximation is ``reliable`` when it converged, k-hat is below the sample-size threshold
    :func:`khat_threshold`, at most ``MAX_NONFINITE_SHARE`` of the draws have a log density that is not finite,
    and its PSIS means are finite and within ``MEAN_TOLERANCE`` PSIS-corrected sds of the draws' own means (with
    k-hat below the threshold the corrected means are accurate, so a larger gap is an error of the approximation
    measured from its own draws). An unreliable approximation gets an :class:`~inference.UnreliableWarning` that says
    why, unless it did not converge (its ``ConvergenceWarning`` said so already).

    Parameters
    ----------
    method : str
        The estimator's name, for the messages.
    fns : ModelFunctions
        The model's functions (:func:`inference.functions.functions_for`).
    theta : ndarray, shape (S, N)
        Draws of q in the unconstrained space.
    logq : ndarray, shape (S,)
        Their log density under q.
    converged : bool
        The approximation's own convergence verdict.
    constrained : dict, optional
        The constrained values of the draws, {name: (S, ...)}; with it the PSIS-reweighted means are returned.
    logp : ndarray, optional
        The model's log density at the draws, when the caller has it already.
    resampled : bool
        Whether the approximation reports its draws resampled with these PSIS weights (Pathfinder): its means are
        then the corrected ones, and the gap between the raw and the corrected means is not an error of them.

    Returns
    -------
    dict
        The entries an approximation adds to ``Result.info``: ``q_theta``, ``q_logq``, ``q_logp`` (the draws and
        their two log densities), ``psis_log_weights`` (normalised, -inf where the log density is not finite),
        ``khat``, ``khat_threshold``, ``reliable``, ``reliability`` (``"reliable"`` or
        the reasons it is not), ``elbo`` (the mean log ratio over the finite draws, the ELBO's estimate) and, when
        ``constrained`` was given and k-hat is below 0.7, ``psis_params`` (the PSIS-reweighted means).

    Examples
    --------
    >>> res = inference.laplace(model)                    # doctest: +SKIP
    >>> res.info["khat"], res.info["reliable"]            # doctest: +SKIP
    (0.12, True)
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    logq = np.asarray(logq, dtype=float).reshape(len(theta))
    logp = fns.score_rows("logp")(theta) if logp is None else np.asarray(logp, dtype=float).reshape(len(theta))
    lr = logp - logq
    finite = np.isfinite(lr)
    n_finite = int(finite.sum())
    threshold = khat_threshold(max(len(lr), 2))
    reasons = []
    if not converged:
        reasons.append("not converged")
    khat, psis_params = np.nan, None
    log_weights = np.full(len(lr), -np.inf)
    try:
        lw, khat = psis(lr[finite])
    except ValueError:  # too few draws for a Pareto tail (arviz-stats needs five in the tail)
        lw = None
    if lw is not None:
        log_weights[finite] = lw
        if not khat <= threshold:  # NaN too: the tail could not be fitted
            reasons.append(f"k-hat {khat:.2f} above {threshold:.2f}" if khat > threshold
                           else "k-hat could not be estimated")
        if constrained is not None and khat <= 0.7:
            w = np.exp(lw)
            psis_params = {n: np.tensordot(w, np.asarray(v)[finite], axes=(0, 0)) for n, v in constrained.items()}
            if not all(np.all(np.isfinite(v)) for v in psis_params.values()):
                reasons.append("PSIS means not finite")
            elif khat <= threshold and not resampled:
                gap, label = _psis_gap(constrained, finite, w, psis_params)
                if gap > MEAN_TOLERANCE:
                    reasons.append(f"its mean of {label} is {gap:.2f} sd from the importance-corrected one")
    else:
        reasons.append(f"k-hat could not be estimated from {n_finite} draws with a finite log density")
    share = 1.0 - n_finite / max(len(lr), 1)
    if lw is not None and share > MAX_NONFINITE_SHARE:
        reasons.append(f"log density not finite at {share:.1%} of the draws")
    reliable = not reasons
    out = {"q_theta": theta, "q_logq": logq, "q_logp": logp, "psis_log_weights": log_weights, "khat": float(khat),
           "khat_threshold": threshold, "reliable": reliable,
           "reliability": "reliable" if reliable else "unreliable: " + "; ".join(reasons),
           "elbo": float(np.mean(lr[finite])) if n_finite else float("-inf")}
    if psis_params is not None:
        out["psis_params"] = psis_params
    if not reliable and converged:
        _warn(f"{method}: {out['reliability']} (the importance ratios of its own draws against the model's "
             "density: the approximation is not to be trusted; compare with nuts)", UnreliableWarning)
    return out


def _psis_gap(constrained: dict, finite, w, psis_means: dict) -> tuple[float, str]:
    """The largest distance between the draws' mean and the PSIS-corrected mean, in PSIS-corrected sds, over every
    scalar entry of ``constrained`` (draws on the first axis), and that entry's label."""
    worst, label = 0.0, ""
    for name, values in constrained.items():
        v = np.asarray(values, dtype=float)[finite]
        m = np.asarray(psis_means[name], dtype=float)
        sd = np.sqrt(np.maximum(np.tensordot(w, (v - m) ** 2, axes=(0, 0)), 0.0))
        gap = np.abs(v.mean(axis=0) - m)
        for entry, idx in flat_labels(name, m.shape):
            if sd[idx] > 1e-12 * max(1.0, abs(float(m[idx]))) and gap[idx] / sd[idx] > worst:
                worst, label = float(gap[idx] / sd[idx]), entry
    return worst, label


def self_verdict(result: Result) -> str | None:
    """The one-line self-diagnosis of an approximation (None for a result that carries none): ``"reliable,
    k-hat 0.12"`` or ``"unreliable: ..."`` with the reasons, then its ``info["notes"]`` (Pathfinder's paths that
    ended at different modes)."""
    info = result.info
    if "reliable" not in info:
        return None
    if info["reliable"]:
        khat = info.get("khat", np.nan)
        text = "reliable" + (f", k-hat {khat:.2f}" if np.isfinite(khat) else "")
    else:
        text = info["reliability"]
    return "; ".join([text, *info.get("notes", ())])


def importance_ratios(result: Result, model) -> tuple[np.ndarray, dict]:
    """log p(theta, y) - log q(theta) at draws theta ~ q of an approximation, and those draws' constrained values.

    q is read from ``result.info``: either a Gaussian over the unconstrained vector (``q_mean``, ``q_cov``; ADVI and
    Laplace, whose ``draws`` are then mapped back to that vector), or explicit draws with their log density
    (``q_theta``, ``q_logq``, and ``q_logp`` when already computed; Pathfinder, whose reported draws are already
    resampled). Returns (log ratios of shape
    (S,), {name: constrained draws of shape (S, ...)}).
    """
    fns = functions_for(model)
    info = result.info
    if "q_theta" in info:
        theta = np.asarray(info["q_theta"], dtype=float)
        logq = np.asarray(info["q_logq"], dtype=float)
        constrained = fns.constrained_many(theta)
    elif "q_mean" in info and result.draws is not None:
        free = fns.free_names()
        flat = {n: np.asarray(result.draws[n]).reshape((-1,) + np.shape(result.draws[n])[2:]) for n in free}
        S = len(flat[free[0]])
        theta = fns.to_unconstrained_many(flat)
        logq = stats.multivariate_normal(np.asarray(info["q_mean"]), np.asarray(info["q_cov"]),
                                         allow_singular=True).logpdf(theta).reshape(S)
        constrained = {n: np.asarray(d).reshape((S,) + np.shape(d)[2:]) for n, d in result.draws.items()
                       if n in fns.param_names}
    else:
        raise ValueError(f"result: the {result.method} result carries no approximating density q (expected "
                         "q_mean/q_cov or q_theta/q_logq in its info)")
    if "q_logp" in info:
        logp = np.asarray(info["q_logp"], dtype=float)
    else:
        logp = fns.score_rows("logp")(theta)  # vectorised, or compiled where an uncompiled call is slow
    lr = logp - logq
    keep = np.isfinite(lr)  # a draw outside the density's support has ratio 0 (weight exp(-inf))
    if not keep.all():
        lr = lr[keep]
        constrained = {n: v[keep] for n, v in constrained.items()}
    return lr, constrained


def approximation_quality(comparison_or_results, model, *, reference: str = "nuts") -> pd.DataFrame:
    """Every approximation against the reference posterior, one row per (estimator, scalar parameter).

    Parameters
    ----------
    comparison_or_results : Comparison or dict of name -> Result
        Holding the reference (``reference``, NUTS by default) and the approximations to judge: every other result
        with draws (point estimates are left out).
    model : pm.Model the results were fitted on (its log density gives the importance ratios).

    Columns: estimator, parameter, mean, ref_mean, ref_sd, error_sd = (mean - ref_mean) / ref_sd, sd_ratio,
    wasserstein (1-D, in the parameter's units), psis_mean and psis_error_sd (the PSIS-reweighted mean and its error
    in ref sds), khat, khat_threshold and flag (|error_sd| > 0.2 or khat > khat_threshold). k-hat is NaN for a
    result whose approximating density is unknown.
    """
    results = getattr(comparison_or_results, "results", comparison_or_results)
    if not isinstance(results, dict):
        raise ValueError("comparison_or_results: expected a Comparison or a dict of name -> Result")
    ref = results.get(reference)
    if ref is None or ref.draws is None:
        raise ValueError(f"reference: expected a result with draws named {reference!r} among the results")
    hooks = hooks_for(model)
    fns = functions_for(model)
    names = [n for n in (hooks.public if hooks is not None and hooks.public else fns.param_names)
             if n in ref.draws]
    rows = []
    for est, res in results.items():
        if est == reference or res is None or res.draws is None:
            continue
        khat, psis_means = np.nan, {}
        if "q_theta" in res.info or "q_mean" in res.info:
            lr, constrained = importance_ratios(res, model)
            lw, khat = psis(lr)
            w = np.exp(lw)
            psis_means = {n: np.tensordot(w, v, axes=(0, 0)) for n, v in constrained.items()}
            threshold = khat_threshold(lr.size)
        else:
            threshold = np.nan
        for name in names:
            if name not in res.draws:
                continue
            r = np.asarray(ref.draws[name])
            q = np.asarray(res.draws[name])
            r = r.reshape((-1,) + r.shape[2:])
            q = q.reshape((-1,) + q.shape[2:])
            for label, idx in flat_labels(name, r.shape[1:]):
                rs, qs = r[(slice(None),) + idx], q[(slice(None),) + idx]
                ref_sd = rs.std(ddof=1)
                if not ref_sd > 1e-12 * max(1.0, abs(rs.mean())):
                    continue  # a constant entry (a correlation matrix's diagonal): nothing to compare
                pm_ = float(psis_means[name][idx]) if name in psis_means else np.nan
                error = (qs.mean() - rs.mean()) / ref_sd
                rows.append({"estimator": est, "parameter": label, "mean": float(qs.mean()),
                             "ref_mean": float(rs.mean()), "ref_sd": float(ref_sd), "error_sd": float(error),
                             "sd_ratio": float(qs.std(ddof=1) / ref_sd),
                             "wasserstein": float(stats.wasserstein_distance(qs, rs)),
                             "psis_mean": pm_, "psis_error_sd": float((pm_ - rs.mean()) / ref_sd),
                             "khat": float(khat), "khat_threshold": float(threshold),
                             "flag": bool(abs(error) > MEAN_TOLERANCE or khat > threshold)})
    columns = ["estimator", "parameter", "mean", "ref_mean", "ref_sd", "error_sd", "sd_ratio", "wasserstein",
               "psis_mean", "psis_error_sd", "khat", "khat_threshold", "flag"]
    return pd.DataFrame(rows, columns=columns)


def verdicts(quality: pd.DataFrame) -> dict:
    """One line per approximation from :func:`approximation_quality`'s table.

    "unreliable: k-hat K" when k-hat is above its threshold (the importance ratios have too heavy a tail for the
    approximation, or any reweighting of it, to be trusted), else "off by X sd on PARAM" for the parameter whose
    mean is furthest from the reference when that is more than 0.2 posterior sd, else "fine".
    """
    out = {}
    for est, sub in quality.groupby("estimator", sort=False):
        khat, threshold = float(sub["khat"].iloc[0]), float(sub["khat_threshold"].iloc[0])
        worst = sub.loc[sub["error_sd"].abs().idxmax()]
        if khat > threshold:
            out[est] = f"unreliable: k-hat {khat:.2f}"
        elif abs(worst["error_sd"]) > MEAN_TOLERANCE:
            out[est] = f"off by {abs(worst['error_sd']):.2f} sd on {worst['parameter']}"
        else:
            out[est] = "fine"
    return out
