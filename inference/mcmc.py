"""NUTS as the reference posterior."""

from __future__ import annotations

import importlib.util
import time

import arviz_stats as azs  # arviz's diagnostics without its plotting half (matplotlib.pyplot: 0.4 s per process)
import numpy as np
import pymc as pm
import pytensor

from .checks import check, check_model
from .functions import functions_for, share_compiled_density
from .modes import COMPILED_MODE, untraced
from .result import Result, summarise_draws, warn_not_converged
from .starts import as_generator

__all__ = ["SAMPLERS", "check_sampler", "nuts"]


SAMPLERS = ("pymc", "nutpie")


def check_sampler(sampler, name: str = "sampler") -> None:
    """Refuse a sampler that is not one of :data:`SAMPLERS`, or nutpie where it is not installed."""
    if sampler not in SAMPLERS:
        raise ValueError(f"{name}: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise ValueError(f"{name}: 'nutpie' needs the nutpie package (pip install nutpie)")


def nuts(model, *, draws: int = 1000, tune: int = 1000, chains: int = 2, seed=None, target_accept: float = 0.9,
         progress: bool = False, rhat_max: float = 1.01, ess_min: float = 400.0, sampler: str = "pymc") -> Result:
    """NUTS through ``pm.sample``: posterior means and standard deviations, with R-hat and effective sample sizes.

    ``sampler``: ``"pymc"`` (PyMC's own NUTS, the default) or ``"nutpie"`` (nutpie's Rust NUTS on the model's
    Numba-compiled log density, through ``pm.sample(nuts_sampler="nutpie")``; needs the ``nutpie`` package). nutpie
    takes fewer seconds per draw but several more to compile, so on the zoo's small models PyMC's sampler is the
    faster of the two for 1,000 draws (``benchmarks/nuts_samplers.py`` measures both). The same seed gives the same
    draws with either sampler; the two samplers give different draws of the same posterior.

    ``converged`` is True when every parameter has R-hat below ``rhat_max`` and bulk ESS above ``ess_min`` and no
    draw diverged; otherwise a ConvergenceWarning says which. R-hat, bulk and tail ESS and the Monte Carlo standard
    error of each mean are in ``result.info``, with the sampler's name.
    """
    check_model(model)
    check_sampler(sampler)
    check(draws, "draws", "positive integer")
    check(tune, "tune", "non-negative integer")
    check(chains, "chains", "positive integer")
    check(target_accept, "target_accept", "probability in (0, 1)")
    check(rhat_max, "rhat_max", "positive number")
    check(ess_min, "ess_min", "non-negative number")
    if chains < 2:
        raise ValueError(f"chains: expected at least 2 chains for R-hat, got {chains}")
    rng = as_generator(seed)
    sample_seed = int(rng.integers(0, 2**31 - 1))
    fns = functions_for(model)
    # PyMC's sampler starts from PyMC's initial point (jittered), which is not finite for some models (an ordered
    # vector without an initval): those start from the model's default start instead (inference.starts)
    initial = fns.initial_start
    if initial.problem is not None:
        raise ValueError(initial.problem)
    flags = {}
    if sampler == "pymc":
        share_compiled_density(model)  # the compilation ADVI and Pathfinder made, when they ran first
        # and the functions pm.sample compiles besides (the trace's deterministics) in the same mode
        flags = {"mode": COMPILED_MODE}
    t0 = time.perf_counter()
    with model, pytensor.config.change_flags(**flags), untraced():
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=sample_seed,
                          target_accept=target_accept, progressbar=progress, compute_convergence_checks=False,
                          nuts_sampler=sampler, initvals=initial.replaced or None)
    total = time.perf_counter() - t0
    post = idata["posterior"]
    t_run = float(post.attrs.get("sampling_time", total))
    names = [n for n in fns.param_names if n in post]
    draws_out = {n: np.asarray(post[n].values, dtype=float) for n in names}
    draws_out, params, sd = summarise_draws(model, draws_out, rng)
    rhat = azs.rhat(idata, var_names=names)
    ess_bulk = azs.ess(idata, var_names=names, method="bulk")
    ess_tail = azs.ess(idata, var_names=names, method="tail")
    mcse = azs.mcse(idata, var_names=names, method="mean")
    info = {n: {} for n in ("rhat", "ess_bulk", "ess_tail", "mcse")}
    for key, ds in (("rhat", rhat), ("ess_bulk", ess_bulk), ("ess_tail", ess_tail), ("mcse", mcse)):
        for n in names:
            info[key][n] = np.asarray(ds[n].values, dtype=float)
    divergences = int(np.asarray(idata["sample_stats"]["diverging"].values).sum())
    info["divergences"] = divergences
    info["sampler"] = sampler
    info["objective"] = "log density"
    worst_rhat = max(float(np.nanmax(v)) for v in info["rhat"].values())
    worst_ess = min(float(np.nanmin(v)) for v in info["ess_bulk"].values())
    converged = worst_rhat < rhat_max and worst_ess > ess_min and divergences == 0
    if not converged:
        warn_not_converged("nuts", f"max R-hat {worst_rhat:.4f}, min bulk ESS {worst_ess:.0f}, "
                                   f"{divergences} divergences")
    compile_before = fns.compile_seconds
    loglik = fns.loglik_at({n: params[n] for n in fns.free_names()})
    return Result(method="nuts", params=params, sd=sd, loglik=loglik, n_iter=draws, converged=converged,
                  time_compile=max(total - t_run, 0.0) + fns.compile_seconds - compile_before, time_run=t_run,
                  draws=draws_out, info=info)
