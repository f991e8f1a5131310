"""The generic variational-EM driver, batch and online.

Variational EM maximises an evidence lower bound (ELBO) on the log marginal likelihood by coordinate ascent over the
parameters of a factorised approximation q (and, optionally, point estimates of hyperparameters). The model-specific
math (the updates, the ELBO, the reading of q as point estimates) lives in the model's own module and reaches this
driver as an :class:`~inference.base.VEMMath` through the model's hooks (``ModelHooks.vem_math``); this file owns
the loops only: the ELBO trace, the monotonicity guard, the convergence test, the step sizes of the online variant,
the bookkeeping.

Batch: every step is a full coordinate-ascent sweep, so the ELBO can never fall; a drop beyond round-off means the
model's updates are wrong and raises :class:`inference.em.EMDecreaseError`.

Online (stochastic variational inference, Hoffman, Blei & Bach 2010): the units (documents) are visited in shuffled
mini-batches; after batch t the global variational parameters move toward the batch's estimate with step size
rho_t = (tau0 + t)^-kappa, kappa in (0.5, 1] (the Robbins-Monro conditions: sum rho = inf, sum rho^2 < inf). One
update reads only the mini-batch, so its cost does not grow with the number of units. The trace holds each batch's
noisy estimate of the ELBO, which is not monotone; convergence is judged on the mean of those estimates per epoch.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .base import VEMMath, hooks_for
from .em import EMDecreaseError
from .functions import functions_for
from .result import Result, warn_not_converged
from .starts import as_generator

__all__ = ["VEMMath", "vem"]


def vem(model, *, seed=None, max_iter: int = 500, tol: float | None = None, progress: bool = False,
        online: bool = False, batch_size: int = 256, tau0: float = 10.0, kappa: float = 0.7, epochs: int = 10,
        **model_options) -> Result:
    """Variational EM on a model whose hooks supply its updates; online variational Bayes with ``online=True``.

    Parameters
    ----------
    model : pm.Model whose hooks supply variational-EM math (``ModelHooks.vem_math``).
    seed : int or numpy.random.Generator
        Seeds the starting state and (online) the order of the mini-batches.
    max_iter : int
        Batch sweeps; reaching it before ``tol`` is met sets ``converged=False`` and warns.
    tol : float
        Batch: stop when one sweep raises the ELBO by less than ``tol * |ELBO|`` (default 1e-6). Online: stop when
        the mean batch estimate of the ELBO changes by less than ``tol`` relative from one epoch to the next
        (default 1e-3: the estimates are noisy).
    progress : bool
        Print the ELBO every 10 sweeps (every epoch online) to stderr.
    online : bool
        Stochastic variational inference over mini-batches instead of full sweeps.
    batch_size : int
        Units per mini-batch (online).
    tau0, kappa : float
        Step size rho_t = (tau0 + t)^-kappa for the t-th mini-batch, t = 0, 1, ...; tau0 >= 0 down-weights the
        early batches, kappa in (0.5, 1] sets the decay (online).
    epochs : int
        Passes over the units (online).
    **model_options
        Passed to the model's VEM factory (for example ``update_alpha`` for LDA).

    Returns
    -------
    Result with method ``"vem"`` or ``"online_vem"``; ``trace`` is the ELBO per sweep (the batch estimates
    online); ``loglik`` the observed-data log-likelihood of the PyMC model at the point estimates (from the
    model's math when it provides one).

    Raises
    ------
    EMDecreaseError
        When a batch sweep lowers the ELBO beyond round-off (a bug in the model's updates).
    """
    hooks = hooks_for(model)
    if hooks is None or hooks.vem_math is None:
        raise TypeError("model: variational EM needs hand-derived variational-EM math attached to the pm.Model "
                        "(ModelHooks(vem_math=...)); this one has none")
    for name, value in (("max_iter", max_iter), ("batch_size", batch_size), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if tol is None:
        tol = 1e-3 if online else 1e-6
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol: expected a non-negative number, got {tol!r}")
    if isinstance(tau0, bool) or not isinstance(tau0, (int, float)) or not tau0 >= 0:
        raise ValueError(f"tau0: expected a non-negative number, got {tau0!r}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.5 < kappa <= 1:
        raise ValueError(f"kappa: expected a number in (0.5, 1], got {kappa!r}")
    math = hooks.vem_math(**model_options)
    if online and (math.online_step is None or math.n_units is None):
        raise ValueError("online: this model provides no online variational updates")
    rng = as_generator(seed)
    method = "online_vem" if online else "vem"

    t0 = time.perf_counter()
    state = math.init(rng)
    if online:
        state, run = _run_online(math, state, rng, batch_size, tau0, kappa, epochs, tol, progress)
    else:
        state, run = _run_batch(math, state, max_iter, tol, progress)
    params = math.to_result(state)
    sd = math.sd(state) if math.sd is not None else {}
    info = {"objective": "ELBO" if not online else "ELBO (mini-batch estimates)", "elbo": run["elbo"]}
    if math.extras is not None:
        info.update(math.extras(state))
    if online:
        info.update(epoch_elbo=np.array(run["epoch_means"]), batches=run["n_iter"])
    t_run = time.perf_counter() - t0

    t0 = time.perf_counter()
    time_compile = 0.0
    if math.loglik is not None:
        loglik = float(math.loglik(params))
    else:
        fns = functions_for(model)
        compile_before = fns.compile_seconds
        loglik = fns.loglik_at({name: params[name] for name in fns.free_names()})
        time_compile = fns.compile_seconds - compile_before
    t_loglik = time.perf_counter() - t0 - time_compile
    if not run["converged"]:
        what = (f"epochs={epochs} passed before the epoch-mean ELBO settled (tol={tol:g})" if online
                else f"max_iter={max_iter} reached before the ELBO settled (tol={tol:g})")
        warn_not_converged(method, what)
    return Result(method=method, params=params, sd=sd, loglik=loglik, trace=np.array(run["trace"]),
                  n_iter=run["n_iter"], converged=run["converged"],
                  time_compile=time_compile, time_run=t_run + t_loglik, info=info)


def _run_batch(math: VEMMath, state, max_iter: int, tol: float, progress: bool):
    elbo = math.elbo(state)
    trace = [elbo]
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        state = math.step(state)
        new = math.elbo(state)
        if not np.isfinite(new):
            raise FloatingPointError(f"VEM: the ELBO became {new} at iteration {n_iter}")
        if new < elbo - 1e-9 * max(1.0, abs(elbo)):
            raise EMDecreaseError(f"VEM lowered the ELBO from {elbo!r} to {new!r} at iteration {n_iter}")
        trace.append(new)
        if progress and n_iter % 10 == 0:
            print(f"vem: iteration {n_iter}: ELBO {new:.10g}", file=sys.stderr)
        done = new - elbo <= tol * max(1.0, abs(new))
        elbo = new
        if done:
            converged = True
            break
    return state, {"trace": trace, "n_iter": n_iter, "converged": converged, "elbo": elbo}


def _run_online(math: VEMMath, state, rng, batch_size: int, tau0: float, kappa: float, epochs: int, tol: float,
                progress: bool):
    n = int(math.n_units)
    trace, epoch_means = [], []
    t = 0
    converged = False
    for epoch in range(epochs):
        order = rng.permutation(n)
        estimates = []
        for start in range(0, n, batch_size):
            rho = (tau0 + t) ** -kappa
            state, estimate = math.online_step(state, np.sort(order[start:start + batch_size]), rho)
            if not np.isfinite(estimate):
                raise FloatingPointError(f"online VEM: the ELBO estimate became {estimate} at batch {t}")
            estimates.append(estimate)
            t += 1
        trace.extend(estimates)
        epoch_means.append(float(np.mean(estimates)))
        if progress:
            print(f"online_vem: epoch {epoch + 1}: mean batch ELBO {epoch_means[-1]:.10g}", file=sys.stderr)
        if len(epoch_means) >= 2 and abs(epoch_means[-1] - epoch_means[-2]) <= tol * abs(epoch_means[-1]):
            converged = True
            break
    if math.finish is not None:
        state = math.finish(state)
    return state, {"trace": trace, "n_iter": t, "converged": converged, "epoch_means": epoch_means,
                   "elbo": math.elbo(state)}
