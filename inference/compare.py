"""Run several estimators on one ``pm.Model`` and lay their answers side by side."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from .base import hooks_for
from .checks import check_model
from .em import em
from .functions import functions_for
from .laplace import laplace
from .mcmc import nuts
from .optimize import map_estimate, mle
from .pathfinder import pathfinder
from .result import Result, flat_labels
from .starts import as_generator
from .vem import vem
from .vi import advi, fullrank_advi

__all__ = ["DEFAULT_ESTIMATORS", "ESTIMATORS", "Comparison", "compare", "default_estimators", "parse_estimators",
           "run_estimator", "unavailable"]

ESTIMATORS = {
    "mle": mle,
    "map": map_estimate,
    "em": partial(em, prior=False),
    "map_em": partial(em, prior=True),
    "advi": advi,
    "fullrank_advi": fullrank_advi,
    "nuts": nuts,
    "vem": vem,
    "laplace": laplace,
    "pathfinder": pathfinder,
}
DEFAULT_ESTIMATORS = tuple(ESTIMATORS)
_PROGRESS = {"em", "map_em", "advi", "fullrank_advi", "nuts", "vem"}


def parse_estimators(estimators) -> list[str]:
    """A list of known estimator names from a list or a comma-separated string; ValueError otherwise."""
    if estimators is None:
        return list(DEFAULT_ESTIMATORS)
    names = [e.strip() for e in estimators.split(",")] if isinstance(estimators, str) else list(estimators)
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"estimators: expected one or more of {', '.join(ESTIMATORS)}, got none")
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"estimators: unknown estimator {unknown[0]!r}; expected some of {', '.join(ESTIMATORS)}")
    if len(set(names)) != len(names):
        raise ValueError("estimators: an estimator is named twice")
    return names


def run_estimator(name: str, model, *, seed=None, progress: bool = False, **kwargs) -> Result:
    """Run the estimator called ``name`` (one of ``ESTIMATORS``)."""
    parse_estimators([name])
    if name in _PROGRESS:
        kwargs.setdefault("progress", progress)
    return ESTIMATORS[name](model, seed=seed, **kwargs)


@dataclass
class Comparison:
    """Every estimator's result on one model, with the truth when the data were simulated."""

    results: dict
    errors: dict = field(default_factory=dict)
    truth: dict | None = None
    order: list = field(default_factory=list)
    public: list | None = None
    n_obs: int | None = None
    n_params: int | None = None
    diagnostics: dict = field(default_factory=dict)  # filled by the application: approximation quality, sensitivity,
    # the model's notes

    def _shown(self, res):
        names = self.public if self.public is not None else list(res.params)
        return [(n, res.params[n]) for n in names if n in res.params]

    def _truth_value(self, name, idx):
        if not self.truth or name not in self.truth:
            return np.nan
        return float(np.asarray(self.truth[name], dtype=float)[idx])

    def tidy(self) -> pd.DataFrame:
        """One row per (estimator, scalar parameter): estimate, sd, truth."""
        rows = []
        for est in self.order:
            res = self.results.get(est)
            if res is None:
                continue
            for name, value in self._shown(res):
                for label, idx in flat_labels(name, value.shape):
                    rows.append({"estimator": est, "parameter": label, "variable": name,
                                 "estimate": float(value[idx]), "sd": float(res.sd[name][idx]),
                                 "truth": self._truth_value(name, idx)})
        return pd.DataFrame(rows, columns=["estimator", "parameter", "variable", "estimate", "sd", "truth"])

    def summary(self) -> pd.DataFrame:
        """One row per estimator: observed-data log-likelihood at its point, AIC and BIC for the point estimators
        (MLE, MAP, EM: -2 log L + 2 p and -2 log L + p log n, p free parameters, n observations), iterations,
        convergence, the self-diagnosis of the approximations with draws (``reliable`` and their own Pareto
        ``khat``, see :func:`inference.self_diagnosis`; NaN for the others), seconds."""
        rows = []
        for est in self.order:
            res = self.results.get(est)
            if res is None:
                rows.append({"estimator": est, "loglik": np.nan, "aic": np.nan, "bic": np.nan, "n_iter": np.nan,
                             "converged": False, "reliable": np.nan, "khat": np.nan, "compile_s": np.nan,
                             "run_s": np.nan, "error": self.errors.get(est, "")})
                continue
            aic = bic = np.nan
            if res.draws is None and self.n_params is not None and self.n_obs:
                aic = -2 * res.loglik + 2 * self.n_params
                bic = -2 * res.loglik + self.n_params * np.log(self.n_obs)
            rows.append({"estimator": est, "loglik": res.loglik, "aic": aic, "bic": bic, "n_iter": res.n_iter,
                         "converged": res.converged, "reliable": res.info.get("reliable", np.nan),
                         "khat": res.info.get("khat", np.nan), "compile_s": res.time_compile,
                         "run_s": res.time_run, "error": ""})
        return pd.DataFrame(rows).set_index("estimator")

    def starts(self) -> dict:
        """Every start's final objective, for the estimators that ran from several starts."""
        return {est: res.info["starts"] for est, res in self.results.items()
                if len(res.info.get("starts", ())) > 1}

    def wide(self, digits: int = 4) -> pd.DataFrame:
        """Rows are parameters; columns the truth and each estimator's ``estimate ± sd``."""
        tidy = self.tidy()
        if tidy.empty:
            return pd.DataFrame()
        labels = list(dict.fromkeys(tidy["parameter"]))
        table = pd.DataFrame(index=pd.Index(labels, name="parameter"))
        if self.truth:
            truth = tidy.drop_duplicates("parameter").set_index("parameter")["truth"]
            table["truth"] = [_fmt(truth[lab], np.nan, digits) if np.isfinite(truth[lab]) else "" for lab in labels]
        for est in self.order:
            sub = tidy[tidy["estimator"] == est].set_index("parameter")
            table[est] = [_fmt(sub.loc[lab, "estimate"], sub.loc[lab, "sd"], digits) if lab in sub.index else ""
                          for lab in labels]
        return table

    def table(self, digits: int = 4) -> str:
        """The printable side-by-side view: the parameter table (none when no parameter is public), then the
        per-estimator summary."""
        wide = self.wide(digits)
        parts = [] if wide.empty else [wide.to_string()]
        summary = self.summary()
        show = summary.drop(columns="error")
        show["n_iter"] = show["n_iter"].map(lambda v: f"{int(v)}" if np.isfinite(v) else "")
        show["loglik"] = show["loglik"].map(lambda v: f"{v:.6f}" if np.isfinite(v) else "")
        for col in ("aic", "bic"):
            show[col] = show[col].map(lambda v: f"{v:.2f}" if np.isfinite(v) else "")
        for col in ("compile_s", "run_s"):
            show[col] = show[col].map(lambda v: f"{v:.2f}" if np.isfinite(v) else "")
        show["khat"] = show["khat"].map(lambda v: f"{v:.2f}" if np.isfinite(v) else "")
        show["reliable"] = show["reliable"].map(lambda v: "" if not isinstance(v, (bool, np.bool_)) else str(v))
        parts.append(show.to_string())
        for est, values in self.starts().items():
            parts.append(f"{est}: {len(values)} starts, final objective " + ", ".join(f"{v:.6f}" for v in values))
        for est, err in self.errors.items():
            parts.append(f"{est}: failed: {err}")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.table()

    def to_json(self) -> dict:
        """The ``estimators`` mapping of the CLI's JSON schema (see README)."""
        out = {}
        for est in self.order:
            res = self.results.get(est)
            if res is None:
                out[est] = {"params": {}, "sd": {}, "loglik": None, "converged": False, "reliable": None,
                            "khat": None, "n_iter": 0,
                            "time_s": {"compile": 0.0, "run": 0.0}, "error": self.errors.get(est)}
                continue
            shown = [k for k, _ in self._shown(res)]
            out[est] = {"params": {k: _jsonable(res.params[k]) for k in shown},
                        "sd": {k: _jsonable(res.sd[k]) for k in shown},
                        "loglik": _jsonable(res.loglik), "converged": bool(res.converged),
                        "reliable": None if "reliable" not in res.info else bool(res.info["reliable"]),
                        "khat": _jsonable(res.info["khat"]) if "khat" in res.info else None,
                        "n_iter": int(res.n_iter),
                        "time_s": {"compile": round(res.time_compile, 4), "run": round(res.time_run, 4)},
                        "error": None}
        return out


def unavailable(model) -> dict[str, str]:
    """The estimators left out of ``model``'s default list, each with the reason: those its hooks skip by design
    (``hooks.skip``), and those needing hand-derived math it does not supply (EM math for ``em`` and ``map_em``,
    variational-EM math for ``vem``)."""
    hooks = hooks_for(model)
    out = dict(hooks.skip) if hooks is not None else {}
    if hooks is None or hooks.em_math is None:
        for name in ("em", "map_em"):
            out.setdefault(name, "the model supplies no hand-derived EM math")
    if hooks is None or hooks.vem_math is None:
        out.setdefault("vem", "the model supplies no variational-EM math")
    return out


def default_estimators(model) -> list[str]:
    """Every estimator but those :func:`unavailable` names."""
    left_out = unavailable(model)
    return [e for e in DEFAULT_ESTIMATORS if e not in left_out]


def compare(model, estimators=None, truth: dict | None = None, *, seed=0, progress: bool = False,
            options: dict | None = None, raise_errors: bool = False, on_result=None) -> Comparison:
    """Run ``estimators`` (default: :func:`default_estimators`) on ``model``.

    Every estimator's observed-data log-likelihood is evaluated by the same compiled PyMC function. Mixture
    components are aligned (to ``truth`` when given) through the model's hooks, so label switching never shows as
    an error. An estimator that fails (for example EM on a model that no zoo model built, or an MLE that does not
    exist) is recorded in ``errors`` and the others still run, unless ``raise_errors``.

    ``options`` maps an estimator name to extra keyword arguments for it. ``on_result(name, result, error)`` is
    called as each estimator finishes (one of ``result``, ``error`` is None), for progress displays.
    """
    check_model(model)
    hooks = hooks_for(model)
    if options is not None and not isinstance(options, dict):
        raise TypeError(f"options: expected a dict of estimator name -> keyword arguments, got {type(options).__name__}")
    names = parse_estimators(default_estimators(model) if estimators is None else estimators)
    options = dict(options or {})
    unknown = set(options) - set(ESTIMATORS)
    if unknown:
        raise ValueError(f"options: unknown estimator {sorted(unknown)[0]!r}")
    rng = as_generator(seed)
    seeds = {n: int(s) for n, s in zip(ESTIMATORS, rng.integers(0, 2**31 - 1, size=len(ESTIMATORS)))}
    results, errors = {}, {}
    # PyMC's NUTS compiles the model's log density; told so, ADVI runs its steps on that compilation (see
    # ModelFunctions.value_and_grad) instead of on the uncompiled graph
    fns = functions_for(model)
    planned = fns.density_planned
    nuts_options = options.get("nuts") or {}
    sampler = nuts_options.get("sampler", "pymc") if isinstance(nuts_options, dict) else None
    fns.density_planned = planned or ("nuts" in names and sampler == "pymc")
    try:
        for name in names:
            try:
                res = run_estimator(name, model, seed=seeds[name], progress=progress, **options.get(name, {}))
            except (ValueError, TypeError, RuntimeError, FloatingPointError, np.linalg.LinAlgError) as exc:
                if raise_errors:
                    raise
                errors[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.warn(f"{name}: {errors[name]}", RuntimeWarning, stacklevel=2)
                if on_result is not None:
                    on_result(name, None, errors[name])
                continue
            if hooks is not None and hooks.align is not None:
                res = hooks.align(res, truth)
            results[name] = res
            if on_result is not None:
                on_result(name, res, None)
    finally:
        fns.density_planned = planned
    return Comparison(results=results, errors=errors, truth=truth, order=names,
                      public=hooks.public if hooks is not None else None, n_obs=_n_observations(model),
                      n_params=fns.size)


def _n_observations(model) -> int:
    """The number of observations for BIC: the rows (first dimension) of every observed variable, summed."""
    total = 0
    for rv in model.observed_RVs:
        value = model.rvs_to_values[rv]
        data = value.get_value() if hasattr(value, "get_value") else getattr(value, "data", None)
        if data is None:
            data = value.eval()
        shape = np.shape(data)
        total += int(shape[0]) if shape else 1
    return total


def _fmt(value, sd, digits):
    if not np.isfinite(value):
        return "nan"
    text = f"{value:.{digits}f}"
    if np.isfinite(sd):
        text += f" ± {sd:.{digits}f}"
    return text


def _jsonable(v):
    arr = np.asarray(v, dtype=float)
    if arr.shape == ():
        f = float(arr)
        return f if np.isfinite(f) else None
    return [_jsonable(x) for x in arr]
