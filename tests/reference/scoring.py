"""How an estimator's answer is judged against a reference: the rules of ``benchmarks/trust_suite.py``.

A row is one (entry, estimator, seed). Its answer is *right* when

* NUTS: every mean is within 0.1 reference sd of the reference, allowing three Monte Carlo standard errors of the
  mean besides, and every sd within 10%, allowing three Monte Carlo standard errors of the sd besides (an sd whose
  draws have no finite fourth moment, as an inverse-gamma's with shape below 4, cannot be estimated to 10% from a
  few thousand draws);
* ADVI, full-rank ADVI, Laplace, Pathfinder: every mean is within 0.3 reference sd; on a near-Gaussian entry
  (``Entry.near_gaussian``) full-rank ADVI's, Laplace's and Pathfinder's sds are also within 25% (mean-field ADVI's
  sds, which it is known to shrink, are not judged, nor any approximation's sds on the other entries).

It is *flagged* when ``result.converged`` is False, when ``result.info.get("reliable")`` is False (a missing key
does not flag), or when the estimator raised. The verdict is ``"right"`` (right, not flagged), ``"flagged"``
(flagged; a right answer that was flagged is also counted as a false alarm) or ``"SILENT FAILURE"`` (wrong and not
flagged).
"""

from __future__ import annotations

import math

import numpy as np

from .core import flat_labels

__all__ = ["APPROX_MEAN_TOL", "APPROX_SD_TOL", "ESTIMATORS", "MCSE_FACTOR", "NUTS_MEAN_TOL", "NUTS_SD_TOL",
           "SD_JUDGED", "is_flagged", "raised_row", "score"]

ESTIMATORS = ("nuts", "advi", "fullrank_advi", "laplace", "pathfinder")
SD_JUDGED = ("fullrank_advi", "laplace", "pathfinder")
NUTS_MEAN_TOL = 0.1
NUTS_SD_TOL = 0.10
MCSE_FACTOR = 3.0
APPROX_MEAN_TOL = 0.3
APPROX_SD_TOL = 0.25


def _mcse(result, method: str = "mean") -> dict:
    """Monte Carlo standard error of each mean (or sd, ``method="sd"``) by flat label: for the mean NUTS's own
    (``info["mcse"]``) where it has it, else ArviZ's from the draws."""
    out = {}
    kept = result.info.get("mcse", {}) if isinstance(result.info, dict) and method == "mean" else {}
    for name, value in result.params.items():
        m = kept.get(name)
        if m is None and result.draws is not None and name in result.draws:
            import arviz_stats as azs

            d = np.asarray(result.draws[name], dtype=float)
            m = np.empty(d.shape[2:])
            for idx in np.ndindex(*d.shape[2:]):
                m[idx] = float(azs.mcse(d[(slice(None), slice(None)) + idx], method=method))
        if m is None:
            continue
        m = np.broadcast_to(np.asarray(m, dtype=float), value.shape)
        for label, idx in flat_labels(name, value.shape):
            out[label] = float(m[idx])
    return out


def is_flagged(result) -> bool:
    """Whether the result warns about itself: not converged, or ``info["reliable"]`` present and False."""
    reliable = result.info.get("reliable") if isinstance(result.info, dict) else None
    return (not bool(result.converged)) or (reliable is not None and not bool(reliable))


def score(entry, estimator: str, result) -> dict:
    """The scores and verdict of one result against ``entry``'s reference (see the module docstring).

    Returns a dict with the worst |mean error| in reference sds and its label, the sd ratio farthest from 1 (in log)
    and its label, ``right``, ``flagged``, ``false_alarm``, ``verdict`` and, for NUTS, the largest Monte Carlo
    allowance used (in reference sds). A reference label missing from the result counts as wrong.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    est = {label: (m, s) for label, m, s in result.flat()}
    mcse = _mcse(result) if estimator == "nuts" else {}
    mcse_sd = _mcse(result, "sd") if estimator == "nuts" else {}
    judge_sd = estimator == "nuts" or (estimator in SD_JUDGED and entry.near_gaussian)
    sd_tol = NUTS_SD_TOL if estimator == "nuts" else APPROX_SD_TOL
    worst_err, worst_err_label = -1.0, None
    worst_log, worst_ratio, worst_ratio_label = -1.0, math.nan, None
    right, allowance = True, 0.0
    for label, (m_ref, s_ref) in entry.reference.items():
        m, s = est.get(label, (math.nan, math.nan))
        err = abs(m - m_ref) / s_ref
        ratio = s / s_ref
        if estimator == "nuts":
            extra = MCSE_FACTOR * mcse.get(label, math.nan) / s_ref
            allowance = max(allowance, extra) if math.isfinite(extra) else allowance
            mean_ok = err <= NUTS_MEAN_TOL + (extra if math.isfinite(extra) else 0.0)
        else:
            mean_ok = err <= APPROX_MEAN_TOL
        sd_extra = MCSE_FACTOR * mcse_sd.get(label, math.nan) / s_ref if estimator == "nuts" else math.nan
        sd_ok = (not judge_sd) or abs(ratio - 1) <= sd_tol + (sd_extra if math.isfinite(sd_extra) else 0.0)
        right = right and bool(mean_ok) and bool(sd_ok)
        e = err if math.isfinite(err) else math.inf
        if e > worst_err:
            worst_err, worst_err_label = e, label
        lg = abs(math.log(ratio)) if ratio > 0 and math.isfinite(ratio) else math.inf
        if lg > worst_log:
            worst_log, worst_ratio, worst_ratio_label = lg, ratio, label
    flagged = is_flagged(result)
    verdict = ("flagged" if flagged else "right") if right else ("flagged" if flagged else "SILENT FAILURE")
    row = {"worst_mean_error_sd": worst_err, "worst_mean_label": worst_err_label, "worst_sd_ratio": worst_ratio,
           "worst_sd_label": worst_ratio_label, "sd_judged": judge_sd, "right": right, "flagged": flagged,
           "false_alarm": right and flagged, "verdict": verdict, "converged": bool(result.converged),
           "reliable": (None if result.info.get("reliable") is None else bool(result.info.get("reliable")))}
    if estimator == "nuts":
        row["mcse_allowance_sd"] = allowance
    return row


def raised_row(error: BaseException) -> dict:
    """The row of an estimator that raised: flagged (it did not return a wrong answer silently), not right."""
    return {"worst_mean_error_sd": math.nan, "worst_mean_label": None, "worst_sd_ratio": math.nan,
            "worst_sd_label": None, "sd_judged": None, "right": False, "flagged": True, "false_alarm": False,
            "verdict": "flagged", "converged": False, "reliable": None,
            "raised": f"{type(error).__name__}: {error}"}
