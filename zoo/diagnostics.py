"""The diagnostics of a comparison for the application: approximation quality against NUTS, and (on request)
power-scaling prior sensitivity and a prior sweep. Results go into ``comparison.diagnostics`` for the report."""

from __future__ import annotations

import warnings

import pandas as pd

from inference import (
    approximation_quality,
    default_sweep,
    power_scaling,
    prior_sweep,
    verdicts,
)
from inference.quality import self_verdict

__all__ = ["SWEEP_ESTIMATORS", "diagnose", "lines"]

SWEEP_ESTIMATORS = ("map", "map_em", "advi", "nuts")


def diagnose(spec, example, model, comparison, *, sensitivity: bool = False, seed: int = 0) -> dict:
    """Fill ``comparison.diagnostics`` and return it.

    self : {estimator: verdict} of every approximation that judged itself by its own draws (k-hat, convergence),
        whether or not NUTS ran.
    quality, verdicts : when NUTS ran and at least one approximation with draws ran beside it.
    power_scaling : {estimator: table} for every result with draws (with ``sensitivity``).
    sweep, sweep_prior : the prior sweep over the model's first prior hyperparameter with a default (see
        :func:`inference.default_sweep`), with the MLE as reference (with ``sensitivity``).
    """
    out = comparison.diagnostics
    results = comparison.results
    out["self"] = {name: v for name, res in results.items() if (v := self_verdict(res)) is not None}
    nuts = results.get("nuts")
    if nuts is not None and any(r.draws is not None for n, r in results.items() if n != "nuts"):
        out["quality"] = approximation_quality(comparison, model)
        out["verdicts"] = verdicts(out["quality"])
    if not sensitivity:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out["power_scaling"] = {name: power_scaling(res, model) for name, res in results.items()
                                if res.draws is not None}
    sweep = default_sweep(spec.build)
    if sweep is not None:
        prior, values = sweep
        # the sweepable estimators of this run: a user who asked for two estimators waits for two, not four
        # (MAP alone when none of them ran: it shows where the prior starts to speak, at the cost of a few fits)
        estimators = [e for e in SWEEP_ESTIMATORS if e in results] or ["map"]
        out["sweep_prior"] = prior
        out["sweep"] = prior_sweep(spec.build, example.data, prior=prior, values=values, estimators=estimators,
                                   seed=seed, **example.build_kwargs)
    return out


def lines(diagnostics: dict) -> list[str]:
    """The printable summary: one verdict per approximation, then the sensitivity tables when computed."""
    text = []
    if diagnostics.get("self"):
        text.append("approximations judged by their own draws:")
        text += [f"  {name}: {verdict}" for name, verdict in diagnostics["self"].items()]
    if diagnostics.get("verdicts"):
        text.append("approximations against nuts:")
        text += [f"  {name}: {verdict}" for name, verdict in diagnostics["verdicts"].items()]
    for name, table in diagnostics.get("power_scaling", {}).items():
        text.append(f"\npower-scaling sensitivity ({name}):")
        text.append(table.to_string())
    if diagnostics.get("sweep") is not None:
        sweep = diagnostics["sweep"]
        text.append(f"\nprior sweep over {diagnostics['sweep_prior']} (estimates):")
        text.append(sweep_table(sweep).to_string(float_format=lambda v: f"{v:.4f}"))
    return text


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sweep as a wide table: rows (parameter, estimator), one column per hyperparameter value."""
    return sweep.pivot_table(index=["parameter", "estimator"], columns="scale", values="estimate", sort=False)
