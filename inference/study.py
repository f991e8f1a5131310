"""Simulation studies: every estimator on many data sets drawn at a known truth, and how well each one does.

A study fixes a model (its declaration and options), a truth, sample sizes ``n`` and a number of replicates. For
every (n, replicate) it draws one data set from the model's own declaration at the truth (``spec.simulate``), runs
every estimator on it, and records one row per (estimator, scalar parameter): the estimate, its standard error, a
nominal 95 % interval, whether the estimator converged, the error if it failed, and the seconds it took. Failures
are caught per replicate and counted, never dropped silently.

The performance measures and their Monte Carlo standard errors (MCSE) follow Morris, White & Crowther (2019), "Using
simulation studies to evaluate statistical methods", Statistics in Medicine 38:2074-2102, Table 6 (the formulas of
R's rsimsum). With M successful replicates, estimates t_i, model standard errors s_i and truth T:

=================  ===========================================  ====================================================
measure            estimate                                     MCSE
=================  ===========================================  ====================================================
bias               mean(t) - T                                  sqrt(sum (t_i - mean t)^2 / (M (M - 1)))
empirical SE       sqrt(sum (t_i - mean t)^2 / (M - 1))          EmpSE / sqrt(2 (M - 1))
model SE           sqrt(mean(s_i^2))                            sqrt(var(s^2) / (4 M ModSE^2))
relative error     100 (ModSE / EmpSE - 1)  (per cent)          100 (ModSE / EmpSE) sqrt(var(s^2) / (4 M ModSE^4)
  of model SE                                                     + 1 / (2 (M - 1)))
MSE                mean((t_i - T)^2)                             sqrt(sum ((t_i - T)^2 - MSE)^2 / (M (M - 1)))
RMSE               sqrt(MSE)                                    MCSE(MSE) / (2 RMSE)   (delta method)
coverage           share of intervals holding T                 sqrt(p (1 - p) / M)
=================  ===========================================  ====================================================

Intervals: estimate +- 1.96 sd (Wald, in the constrained space) for the point estimators (MLE, MAP, EM, MAP-EM,
whose sd is the observed information's); the 2.5 % and 97.5 % quantiles of the draws for ADVI, full-rank ADVI and
NUTS. Replicates that did not converge are kept in the measures (that is the answer the method gave) and counted.

Speed: one model is built and compiled per worker; each replicate, at whatever sample size, swaps its data in
(``spec.swap_data``) when the model has that hook (the data containers have no fixed length), and the simulator
reuses its compiled draw. From ``COMPILED_FROM_REPS`` replicates on, in models that swap their data, the functions
of the optimisers and of the standard errors run on PyTensor's compiled backend (``inference.functions``): about a
second of compiling per model from PyTensor's cache (tens of seconds on an empty one), repaid by calls 10 to 50
times faster; smaller studies run them as a single comparison does. Replicate r at sample size n draws from
``np.random.SeedSequence([seed, n, r])`` whatever the number of workers, the scheduler, or how often the study was
interrupted, so the raw table (all but its ``seconds``) is always the same.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from . import registry
from .base import hooks_for
from .checks import check
from .compare import ESTIMATORS, default_estimators, parse_estimators, run_estimator
from .functions import BACKENDS, functions_for
from .result import flat_labels
from .signals import on_sigterm

__all__ = ["COLUMNS", "COMPILED_FROM_REPS", "INTERVALS", "MEASURES", "Z95", "Study", "performance", "run_batch",
           "study"]

Z95 = float(stats.norm.ppf(0.975))
# the interval each estimator gives; an estimator not named here: quantiles when it has draws, else Wald
INTERVALS = {"mle": "wald", "map": "wald", "em": "wald", "map_em": "wald",
             "advi": "quantile", "fullrank_advi": "quantile", "nuts": "quantile", "vem": "wald"}
COLUMNS = ["replicate", "n", "estimator", "parameter", "estimate", "sd", "lower", "upper", "converged", "error",
           "seconds", "interval"]
MEASURES = ["bias", "empse", "modse", "relerr_modse", "mse", "rmse", "coverage"]
CONNECT_TIMEOUT = 5.0
COMPILED_FROM_REPS = 200  # replicates per sample size from which the default backend is "compiled"
MANIFEST = "manifest.json"
_MODELS: dict = {}  # per process: (id(spec), build options, n) -> (spec, model)
_MODELS_KEPT = 8


# ------------------------------------------------------------------------------------------------ one batch
def _seeds(seed: int, n: int, replicate: int) -> tuple[int, dict]:
    """The data's seed and one seed per estimator (by its place in ESTIMATORS, so choosing others changes none)."""
    state = np.random.SeedSequence([seed, n, replicate]).generate_state(1 + len(ESTIMATORS), dtype=np.uint32)
    return int(state[0]), {name: int(s) & 0x7FFFFFFF for name, s in zip(ESTIMATORS, state[1:])}


def _model_for(spec, build_kwargs: dict, args: tuple):
    """The model holding ``args``: the cached one with these options, its data swapped in (whatever their size),
    else a new build."""
    key = (id(spec), json.dumps(_plain(build_kwargs), sort_keys=True))
    cached = _MODELS.get(key)
    if cached is not None and spec.swap_data is not None:
        model = spec.swap_data(cached[1], args if len(args) > 1 else args[0])
        if model is not None:
            return model
    model = spec.build(*args, **build_kwargs)
    if len(_MODELS) >= _MODELS_KEPT:
        _MODELS.pop(next(iter(_MODELS)))
    _MODELS[key] = (spec, model)
    return model


def _first_line(exc) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _interval(res, name, idx, estimate, sd, kind):
    if kind == "wald":
        return estimate - Z95 * sd, estimate + Z95 * sd
    draws = None if res.draws is None else res.draws.get(name)
    if draws is None:
        return np.nan, np.nan
    values = np.asarray(draws, dtype=float)
    values = values.reshape(-1, *values.shape[2:])[(slice(None), *idx)]
    lo, hi = np.quantile(values, [0.025, 0.975])
    return float(lo), float(hi)


def run_batch(task: dict) -> list[dict]:
    """Run every estimator on the replicates of one batch; the rows of the raw table (see :data:`COLUMNS`).

    ``task`` holds ``model`` (a registered name or a spec), ``build_kwargs``, ``truth``, ``n``, ``replicates``,
    ``estimators``, ``estimator_options``, ``seed`` and optionally ``backend`` (of ``inference.functions``).
    Runs in whichever process the scheduler chose.
    """
    logging.getLogger("pymc").setLevel(logging.ERROR)
    spec = registry.get(task["model"])
    truth = {k: np.asarray(v, dtype=float) for k, v in task["truth"].items()}
    labels = [(name, label, idx) for name, value in truth.items() for label, idx in flat_labels(name, value.shape)]
    n = task["n"]
    rows = []
    for r in task["replicates"]:
        data_seed, est_seeds = _seeds(task["seed"], n, r)
        t0 = time.perf_counter()
        try:
            data = spec.simulate(truth, n, data_seed)
            args = data if isinstance(data, tuple) else (data,)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _model_for(spec, task["build_kwargs"], args)
            with contextlib.suppress(ValueError):  # a model without continuous parameters has no such functions
                functions_for(model, task.get("backend", "auto"))
            setup_error = ""
        except Exception as exc:  # noqa: BLE001 - the data cannot make a model (too few distinct values, ...): every fit fails
            model, setup_error = None, _first_line(exc)
        setup_seconds = time.perf_counter() - t0
        hooks = hooks_for(model) if model is not None else None
        for est in task["estimators"]:
            t0 = time.perf_counter()
            res, error = None, setup_error
            if model is not None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = run_estimator(est, model, seed=est_seeds[est], **task["estimator_options"].get(est, {}))
                        if hooks is not None and hooks.align is not None:
                            res = hooks.align(res, truth)
                except Exception as exc:  # noqa: BLE001 - counted as a failure of this estimator on this replicate
                    error = _first_line(exc)
            seconds = time.perf_counter() - t0 + (setup_seconds if model is None else 0.0)
            kind = INTERVALS.get(est, "quantile" if getattr(res, "draws", None) is not None else "wald")
            for name, label, idx in labels:
                estimate = sd = lower = upper = np.nan
                if res is not None and name in res.params:
                    estimate = float(res.params[name][idx])
                    sd = float(res.sd[name][idx])
                    lower, upper = _interval(res, name, idx, estimate, sd, kind)
                rows.append({"replicate": r, "n": n, "estimator": est, "parameter": label, "estimate": estimate,
                             "sd": sd, "lower": lower, "upper": upper,
                             "converged": bool(res is not None and res.converged), "error": error,
                             "seconds": seconds, "interval": kind})
    return rows


# ------------------------------------------------------------------------------------------------ performance
def _measures(est: np.ndarray, sd: np.ndarray, lower, upper, truth: float) -> dict:
    """Morris et al. (2019), Table 6: each measure and its Monte Carlo SE, over the successful replicates."""
    m = est.size
    out = dict.fromkeys([x for k in MEASURES for x in (k, k + "_mcse")], np.nan)
    if m == 0:
        return out
    err = est - truth
    out["bias"] = float(err.mean())
    out["mse"] = float(np.mean(err**2))
    out["rmse"] = math.sqrt(out["mse"])
    cover = (lower <= truth) & (truth <= upper)
    ok = np.isfinite(lower) & np.isfinite(upper)
    if ok.any():
        p = float(cover[ok].mean())
        out["coverage"], out["coverage_mcse"] = p, math.sqrt(p * (1 - p) / ok.sum())
    s2 = sd[np.isfinite(sd)] ** 2
    if s2.size:
        out["modse"] = math.sqrt(float(s2.mean()))
    if m < 2:
        return out
    empse = float(np.std(est, ddof=1))
    out["empse"] = empse
    out["bias_mcse"] = empse / math.sqrt(m)
    out["empse_mcse"] = empse / math.sqrt(2 * (m - 1))
    out["mse_mcse"] = math.sqrt(float(np.sum((err**2 - out["mse"]) ** 2)) / (m * (m - 1)))
    out["rmse_mcse"] = out["mse_mcse"] / (2 * out["rmse"]) if out["rmse"] > 0 else np.nan
    if s2.size >= 2 and out["modse"] > 0:
        var_s2 = float(np.var(s2, ddof=1))
        k = s2.size
        out["modse_mcse"] = math.sqrt(var_s2 / (4 * k * out["modse"] ** 2))
        if empse > 0:
            ratio = out["modse"] / empse
            out["relerr_modse"] = 100 * (ratio - 1)
            out["relerr_modse_mcse"] = 100 * ratio * math.sqrt(var_s2 / (4 * k * out["modse"] ** 4)
                                                               + 1 / (2 * (m - 1)))
    return out


def performance(raw: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """One row per (n, estimator, parameter): the measures of :data:`MEASURES` each with its ``_mcse``, the interval
    used, the counts of successful (``n_ok``), failed and not converged replicates, their shares of all replicates
    (``failed``, ``not_converged``), and the mean seconds per replicate."""
    values = {label: float(np.asarray(v, dtype=float)[idx]) for name, v in truth.items()
              for label, idx in flat_labels(name, np.shape(v))}
    rows = []
    for (n, est, par), g in raw.groupby(["n", "estimator", "parameter"], sort=False):
        failed = (g["error"] != "") | ~np.isfinite(g["estimate"].to_numpy(dtype=float))
        ok = g[~failed]
        row = {"n": int(n), "estimator": est, "parameter": par, "truth": values[par]}
        row.update(_measures(ok["estimate"].to_numpy(dtype=float), ok["sd"].to_numpy(dtype=float),
                             ok["lower"].to_numpy(dtype=float), ok["upper"].to_numpy(dtype=float), values[par]))
        reps = len(g)
        row.update({"interval": g["interval"].iloc[0], "n_ok": len(ok), "n_failed": int(failed.sum()),
                    "n_not_converged": int((~ok["converged"].astype(bool)).sum()),
                    "failed": float(failed.sum()) / reps, "not_converged": float((~ok["converged"]).sum()) / reps,
                    "seconds_mean": float(g["seconds"].mean())})
        rows.append(row)
    columns = ["n", "estimator", "parameter", "truth"] + [x for k in MEASURES for x in (k, k + "_mcse")] + [
        "interval", "n_ok", "n_failed", "n_not_converged", "failed", "not_converged", "seconds_mean"]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class Study:
    """What a simulation study found: the raw per-replicate table and the study's arguments.

    ``raw`` has the columns of :data:`COLUMNS`, sorted by n, replicate, estimator and parameter (the order of
    ``estimators`` and of the truth); ``error`` is empty for a successful fit. :meth:`performance` summarises it.
    """

    raw: pd.DataFrame
    model: str
    options: dict
    truth: dict
    n: list
    reps: int
    seed: int
    estimators: list
    build_kwargs: dict = field(default_factory=dict)

    def performance(self) -> pd.DataFrame:
        """The performance measures with their Monte Carlo SEs (see :func:`performance` and the module's table)."""
        return performance(self.raw, self.truth)

    def table(self, measures=("bias", "empse", "modse", "rmse", "coverage"), digits: int = 4) -> str:
        """Printable: per n and parameter, the estimators side by side, each measure as ``value (MCSE)``, then the
        shares failed and not converged."""
        perf = self.performance()
        parts = []
        for n, by_n in perf.groupby("n", sort=False):
            cells = {}
            for row in by_n.itertuples(index=False):
                for measure in measures:
                    key = (row.parameter, measure)
                    value, mcse = getattr(row, measure), getattr(row, measure + "_mcse")
                    text = "" if not np.isfinite(value) else f"{value:.{digits}f}"
                    if text and np.isfinite(mcse):
                        text += f" ({mcse:.{digits}f})"
                    cells.setdefault(key, {})[row.estimator] = text
                cells.setdefault((row.parameter, "failed / not conv."), {})[row.estimator] = \
                    f"{row.n_failed} / {row.n_not_converged}"
            wide = pd.DataFrame.from_dict(cells, orient="index")[self.estimators]
            wide.index = pd.MultiIndex.from_tuples(wide.index, names=["parameter", "measure"])
            parts.append(f"n = {n}, {self.reps} replicates (MCSE in parentheses)\n{wide.to_string()}")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.table()

    def to_json(self) -> dict:
        """The CLI's JSON document: the study's arguments and one record per performance row (README)."""
        keys = ["n", "estimator", "parameter", "bias", "bias_mcse", "empse", "empse_mcse", "modse", "relerr_modse",
                "relerr_modse_mcse", "rmse", "rmse_mcse", "coverage", "coverage_mcse", "interval", "n_ok",
                "n_failed", "n_not_converged", "seconds_mean"]
        records = [{k: _plain(row[k]) for k in keys} for row in self.performance().to_dict("records")]
        return {"study": {"model": self.model, "options": _plain(self.options), "truth": _plain(self.truth),
                          "n": list(self.n), "reps": self.reps, "seed": self.seed,
                          "estimators": list(self.estimators)},
                "performance": records}


# ------------------------------------------------------------------------------------------------ checks
def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v


def _check_truth(spec, model, truth, default: dict) -> dict:
    """The truth as float arrays shaped like the example's; ValueError naming ``truth`` for unknown or missing
    names, wrong shapes, and values outside the support of the model's variables."""
    import pymc as pm

    if not isinstance(truth, dict):
        raise ValueError(f"truth: expected a dict of parameter values, got {type(truth).__name__}")
    unknown = [k for k in truth if k not in default]
    if unknown:
        raise ValueError(f"truth: unknown parameter {unknown[0]!r}; expected {', '.join(default)}")
    missing = [k for k in default if k not in truth]
    if missing:
        raise ValueError(f"truth: missing a value for {missing[0]!r}; expected {', '.join(default)}")
    out = {}
    for name, ref in default.items():
        shape = np.shape(ref)
        try:
            value = np.asarray(truth[name], dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"truth: expected numbers for {name!r}, got {truth[name]!r}") from None
        if value.size != int(np.prod(shape, dtype=int)):
            raise ValueError(f"truth: expected {name!r} with shape {shape}, got shape {value.shape}")
        value = value.reshape(shape)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"truth: expected finite values for {name!r}")
        out[name] = value
    free = {rv.name: rv for rv in model.free_RVs}
    for name, value in out.items():
        rv = free.get(name)
        if rv is None:
            continue
        inside = np.all(np.isfinite(pm.logp(rv, value).eval()))
        tr = model.rvs_to_transforms.get(rv)
        if inside and tr is not None:
            with np.errstate(all="ignore"):
                back = tr.backward(tr.forward(value, *rv.owner.inputs), *rv.owner.inputs).eval()
            inside = bool(np.all(np.isfinite(back)) and np.allclose(back, value, rtol=1e-8, atol=1e-10))
        if not inside:
            raise ValueError(f"truth: {name} = {_plain(value)} is outside the support of the model's {name!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.simulate(out, _min_n(spec, {}), 0)
    except Exception as exc:  # noqa: BLE001 - any failure of the simulator at this truth
        raise ValueError(f"truth: cannot simulate data at it ({_first_line(exc)})") from None
    return out


def _swaps_data(spec, model, example) -> bool:
    """Whether the replicates reuse one model per size, their data swapped in: only then are its functions compiled
    once and called many times (a model built anew for every replicate would compile anew every time)."""
    if spec.swap_data is None:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return spec.swap_data(model, example.data) is not None
    except Exception:  # noqa: BLE001 - a hook that cannot take its own example: build anew, as the replicates will
        return False


def _min_n(spec, options) -> int:
    return int(spec.min_n(options)) if spec.min_n is not None else 1


def _check_sizes(n, spec, options) -> list[int]:
    sizes = [n] if isinstance(n, (int, np.integer)) else list(n) if isinstance(n, (list, tuple, np.ndarray)) else None
    if not sizes:
        raise ValueError(f"n: expected a sample size or a list of them, got {n!r}")
    low = _min_n(spec, options)
    for size in sizes:
        check(size, "n", "positive integer")
        if size < low:
            raise ValueError(f"n: the {spec.name} model needs at least {low} observations, got {size}")
    if len(set(sizes)) != len(sizes):
        raise ValueError("n: a sample size is given twice")
    return [int(s) for s in sizes]


def _check_scheduler(scheduler, n_jobs):
    check(n_jobs, "n_jobs", "positive integer")
    if scheduler is None or scheduler == "local":
        return scheduler
    if not isinstance(scheduler, str) or "://" not in scheduler:
        raise ValueError(f"scheduler: expected None, 'local' or a Dask scheduler address such as "
                         f"'tcp://host:8786', got {scheduler!r}")
    return scheduler


# ------------------------------------------------------------------------------------------------ the folder
class _Folder:
    """A study's folder: ``manifest.json`` (the arguments) and one Parquet part per finished batch, each written to
    a temporary file in the folder and renamed into place, so an interruption loses at most the batches under way."""

    def __init__(self, path: str, manifest: dict):
        self.path = path
        self.parts = os.path.join(path, "parts")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"folder: {path} exists and is not a folder")
        mpath = os.path.join(path, MANIFEST)
        if os.path.exists(mpath):
            try:
                with open(mpath) as fh:
                    found = json.load(fh)
            except (OSError, ValueError):
                found = None
            if found != manifest:
                raise ValueError(f"folder: {path} holds a study made with other arguments; use another folder or "
                                 "the same arguments to continue it")
        else:
            if os.path.isdir(self.parts) and os.listdir(self.parts):
                raise ValueError(f"folder: {path} holds results without a {MANIFEST}; use another folder")
            os.makedirs(path, exist_ok=True)
            self._write(mpath, lambda tmp: _write_text(tmp, json.dumps(manifest, indent=2)))
        os.makedirs(self.parts, exist_ok=True)
        for name in os.listdir(self.parts):  # left by an interrupted write
            if name.startswith(".tmp-"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.parts, name))

    @staticmethod
    def _write(path, write):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def load(self) -> pd.DataFrame:
        names = sorted(f for f in os.listdir(self.parts) if f.endswith(".parquet"))
        if not names:
            return pd.DataFrame(columns=COLUMNS)
        return pd.concat([pd.read_parquet(os.path.join(self.parts, f)) for f in names], ignore_index=True)

    def append(self, rows: list[dict]) -> None:
        frame = _frame(rows)
        n, reps = int(frame["n"].iloc[0]), frame["replicate"]
        name = f"part-n{n:09d}-r{int(reps.min()):09d}-{int(reps.max()):09d}.parquet"
        self._write(os.path.join(self.parts, name), lambda tmp: frame.to_parquet(tmp, index=False))


def _write_text(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def _frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.astype({"replicate": "int64", "n": "int64", "estimate": "float64", "sd": "float64",
                         "lower": "float64", "upper": "float64", "converged": "bool", "seconds": "float64",
                         "estimator": "str", "parameter": "str", "error": "str", "interval": "str"})


# ------------------------------------------------------------------------------------------------ running
class _Progress:
    """One line on stderr, rewritten in place: replicates done, elapsed seconds, and the time left at this pace."""

    def __init__(self, total: int, done: int, stream=None):
        self.total, self.start_done, self.stream = total, done, stream or sys.stderr
        self.t0 = time.perf_counter()

    def update(self, done: int) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = (done - self.start_done) / elapsed if elapsed > 0 else 0.0
        left = f", about {(self.total - done) / rate:.0f} s left" if rate > 0 and done < self.total else ""
        self.stream.write(f"\rstudy: {done}/{self.total} replicates ({100 * done / self.total:.0f} %), "
                          f"{elapsed:.0f} s{left}   ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class _Signal:
    signum = None


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises KeyboardInterrupt in the main thread, so a terminated study stops its workers and keeps every
    finished batch, as Ctrl-C does. The signal is also remembered: code that swallows the interruption (PyMC's
    sampler ends early on it, and an exception raised inside Numba's compiler callbacks is printed and dropped) only
    delays the stop to the end of the batch under way."""
    received = _Signal()

    def handler(signum, frame):
        received.signum = signum
        raise KeyboardInterrupt(f"signal {signum}")

    with on_sigterm(handler):
        yield received


def _serial(tasks):
    for task in tasks:
        yield task, run_batch(task)


def _processes(tasks, n_jobs):
    from joblib.externals.loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=n_jobs, timeout=60)
    futures = {executor.submit(run_batch, task): task for task in tasks}
    from concurrent.futures import as_completed

    try:
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    except BaseException:
        for fut in futures:
            fut.cancel()
        executor.shutdown(wait=False, kill_workers=True)
        raise


@contextlib.contextmanager
def dask_client(scheduler, n_workers: int = 1, *, processes: bool = True):
    """A ``distributed.Client``: on a new LocalCluster of ``n_workers`` single-threaded workers bound to loopback
    (``scheduler="local"``; ``processes=False`` runs them as threads of this process), or joined to the scheduler
    at an address (ValueError naming ``scheduler`` when it cannot be reached within ``CONNECT_TIMEOUT`` seconds).
    Closed, with the cluster it started, on exit."""
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler == "local":
        where = {"host": "127.0.0.1"} if processes else {}  # threads talk in-process, binding no port at all
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                               dashboard_address=None, silence_logs=logging.ERROR, **where)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ValueError(f"scheduler: cannot reach the Dask scheduler at {scheduler} within "
                             f"{CONNECT_TIMEOUT:g} s ({_first_line(exc)})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask(tasks, n_jobs, scheduler):
    from distributed import as_completed

    with dask_client(scheduler, n_jobs) as client:
        futures = client.map(run_batch, tasks, pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks)}
        for fut in as_completed(futures):
            yield by_key[fut.key], fut.result()


def study(model, estimators=None, n=(20, 100, 1000), reps: int = 1000, truth: dict | None = None, seed: int = 0,
          *, n_jobs: int = 1, scheduler=None, folder=None, progress: bool = False, options: dict | None = None,
          estimator_options: dict | None = None, batch_size: int | None = None, callback=None,
          backend: str | None = None) -> Study:
    """Run every estimator on ``reps`` data sets of each size in ``n`` drawn at ``truth``; see the module docstring.

    Parameters
    ----------
    model : a registered model's name, its ``ModelSpec``, or a module holding one as ``SPEC``.
    estimators : list or comma-separated names (default: those the model does not skip).
    n : one sample size or several; each at least the model's ``min_n``.
    reps : replicates per sample size (at least 2: the measures need a spread).
    truth : the parameters the data are drawn at, keyed like the model's example truth (its default). Unknown or
        missing names and values outside the support of the model's variables are a ValueError naming ``truth``.
    seed : replicate r at size n uses ``np.random.SeedSequence([seed, n, r])``.
    n_jobs : worker processes (without ``scheduler``: a local process pool; with ``"local"``: the Dask workers).
    scheduler : None, ``"local"`` (a Dask LocalCluster on 127.0.0.1) or a Dask scheduler address
        (``"tcp://host:8786"``, whose workers have this package installed). An address that does not answer within
        a few seconds is a ValueError.
    folder : where to keep the study so it can be resumed: its arguments in ``manifest.json`` and one Parquet part
        per finished batch. Run again with the same arguments, it continues where it stopped and ends with the same
        tables; a folder made with other arguments is refused.
    progress : print a progress line with the estimated time left on stderr.
    options : the model's options (``k``, ...) and other keyword arguments of its ``build`` (priors, ...).
    estimator_options : estimator name -> extra keyword arguments (``{"nuts": {"draws": 500}}``).
    batch_size : replicates per batch (the unit of work and of saving); default about reps / (8 n_jobs), 1 to 50.
    callback : ``callback(done, total)`` after every finished batch (raise KeyboardInterrupt in it to stop).
    backend : how the optimisers' and the standard errors' functions run (``inference.functions``): ``"compiled"``,
        ``"python"`` or ``"auto"`` (a single comparison's choice). Default: ``"compiled"`` from
        ``COMPILED_FROM_REPS`` replicates on when the model swaps its data (``spec.swap_data``), so each worker
        compiles once; else ``"auto"``. The backends agree to round-off, not bit for bit, so the
        backend is one of the study's arguments (a folder made with another is refused).

    Only registered models can run in other processes (``n_jobs > 1`` or a scheduler): workers find them by name.
    """
    spec = registry.get(model)
    options = dict(options or {})
    check(reps, "reps", "integer >= 2")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    scheduler = _check_scheduler(scheduler, n_jobs)
    if batch_size is not None:
        check(batch_size, "batch_size", "positive integer")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))} or None, got {backend!r}")
    model_options = {o.name for o in spec.options}
    example = spec.example(**{k: v for k, v in options.items() if k in model_options})
    build_kwargs = {**example.build_kwargs, **{k: v for k, v in options.items() if k not in model_options}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example_model = spec.build(*example.args, **build_kwargs)
    sizes = _check_sizes(n, spec, options)
    names = parse_estimators(default_estimators(example_model) if estimators is None else estimators)
    estimator_options = dict(estimator_options or {})
    unknown = set(estimator_options) - set(names)
    if unknown:
        raise ValueError(f"estimator_options: {sorted(unknown)[0]!r} is not among the estimators")
    if example.truth is None and truth is None:
        raise ValueError(f"truth: the {spec.name} example has no truth; give one")
    truth = _check_truth(spec, example_model, example.truth if truth is None else truth,
                         example.truth if example.truth is not None else truth)
    if backend is None:
        backend = "compiled" if reps >= COMPILED_FROM_REPS and _swaps_data(spec, example_model, example) else "auto"
    remote = n_jobs > 1 or scheduler is not None
    if remote and registry.models().get(spec.name) is not spec:
        raise ValueError(f"model: {spec.name!r} is not a registered model, so other processes cannot find it; "
                         "register it through the entry-point group, or use n_jobs=1 without a scheduler")
    manifest = _plain({"format": 1, "model": spec.name, "options": options, "truth": truth, "n": sizes,
                       "reps": reps, "seed": seed, "estimators": names, "estimator_options": estimator_options,
                       "backend": backend})
    manifest = json.loads(json.dumps(manifest))
    store = _Folder(os.fspath(folder), manifest) if folder is not None else None
    frames = [store.load()] if store is not None else []
    done = set() if store is None else set(zip(frames[0]["n"].astype(int), frames[0]["replicate"].astype(int)))
    size = batch_size or max(1, min(50, math.ceil(reps / (8 * n_jobs))))
    base = {"model": spec.name if remote else spec, "build_kwargs": build_kwargs, "truth": _plain(truth),
            "estimators": names, "estimator_options": estimator_options, "seed": seed, "backend": backend}
    tasks = []
    for s in sizes:
        todo = [r for r in range(reps) if (s, r) not in done]
        tasks += [{**base, "n": s, "replicates": todo[i:i + size]} for i in range(0, len(todo), size)]
    total, finished = reps * len(sizes), len(done)
    bar = _Progress(total, finished) if progress else None
    try:
        with _sigterm_interrupts() as received:
            if bar is not None:
                bar.update(finished)
            runner = (_serial(tasks) if not remote else _processes(tasks, n_jobs) if scheduler is None
                      else _dask(tasks, n_jobs, scheduler))
            for task, rows in runner:
                if store is not None:
                    store.append(rows)
                frames.append(_frame(rows))
                finished += len(task["replicates"])
                if bar is not None:
                    bar.update(finished)
                if callback is not None:
                    callback(finished, total)
                if received.signum is not None:
                    raise KeyboardInterrupt(f"signal {received.signum}")
    finally:
        if bar is not None:
            bar.close()
    raw = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else \
        _frame([])
    raw = _sorted(_frame(raw.to_dict("records")), names, truth)
    return Study(raw=raw, model=spec.name, options=options, truth=truth, n=sizes, reps=reps, seed=seed,
                 estimators=names, build_kwargs=build_kwargs)


def _sorted(raw: pd.DataFrame, estimators, truth) -> pd.DataFrame:
    labels = [label for name, v in truth.items() for label, _ in flat_labels(name, np.shape(v))]
    keys = pd.DataFrame({"e": raw["estimator"].map({e: i for i, e in enumerate(estimators)}),
                         "p": raw["parameter"].map({p: i for i, p in enumerate(labels)})})
    order = np.lexsort((keys["p"].to_numpy(), keys["e"].to_numpy(), raw["replicate"].to_numpy(),
                        raw["n"].to_numpy()))
    return raw.iloc[order].reset_index(drop=True)
