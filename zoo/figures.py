"""The figures of a comparison: generic ones for every model, and each built-in model's own."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["approximation_figure", "em_panels", "figures", "prior_sweep_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder, name) -> str:
    fig.savefig(os.path.join(folder, name), dpi=90)
    _plt().close(fig)
    return name


def figures(spec, example, model, comparison, folder) -> list[str]:
    """Write the run's figures into ``folder``; returns the file names."""
    plt = _plt()
    out = []
    results = comparison.results
    colors = {name: f"C{i}" for i, name in enumerate(comparison.order)}

    # 1. Estimates with +-2 sd per parameter, the truth as a line.
    tidy = comparison.tidy()
    if not tidy.empty:
        labels = list(dict.fromkeys(tidy["parameter"]))
        fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels) + 1, 3.2), squeeze=False)
        for ax, label in zip(axes[0], labels):
            sub = tidy[tidy["parameter"] == label]
            for j, row in enumerate(sub.itertuples()):
                err = 2 * row.sd if np.isfinite(row.sd) else 0.0
                ax.errorbar(row.estimate, j, xerr=err, fmt="o", color=colors[row.estimator])
            if np.isfinite(sub["truth"]).any():
                ax.axvline(sub["truth"].iloc[0], color="k", lw=1, ls="--", label="truth")
            ax.set_yticks(range(len(sub)), sub["estimator"])
            ax.set_title(label)
            ax.invert_yaxis()
        fig.suptitle(f"{spec.name}: estimates ± 2 sd")
        fig.tight_layout()
        out.append(_save(fig, folder, "estimates.png"))

    # 2. The fitted density over the data (one-dimensional models with a density).
    data = example.data
    if spec.density is not None and isinstance(data, np.ndarray) and data.ndim == 1:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        integer = np.all(data == np.round(data))
        if integer:
            grid = np.arange(int(data.min()), int(data.max()) + 1)
            ax.hist(data, bins=np.arange(grid[0] - 0.5, grid[-1] + 1.5), density=True, color="0.85",
                    label="data")
        else:
            grid = np.linspace(data.min(), data.max(), 400)
            ax.hist(data, bins=40, density=True, color="0.85", label="data")
        if example.truth:
            ax.plot(grid, spec.density(example.truth, grid), "k--", lw=1.5, label="truth")
        for name, res in results.items():
            ax.plot(grid, spec.density(res.params, grid), color=colors[name], lw=1.2, label=name,
                    marker="." if integer else None)
        ax.legend(fontsize=8)
        ax.set_title(f"{spec.name}: fitted densities")
        fig.tight_layout()
        out.append(_save(fig, folder, "fit.png"))

    # 3. Each method's objective per iteration.
    traced = [(n, r) for n, r in results.items() if r.trace.size > 1]
    if traced:
        fig, axes = plt.subplots(1, len(traced), figsize=(3 * len(traced) + 1, 3), squeeze=False)
        for ax, (name, res) in zip(axes[0], traced):
            ax.plot(np.arange(res.trace.size), res.trace, color=colors[name], lw=1)
            ax.set_title(f"{name}\n{res.info.get('objective', '')}", fontsize=9)
            ax.set_xlabel("iteration")
        fig.tight_layout()
        out.append(_save(fig, folder, "traces.png"))

    # 4. Approximations against NUTS, and the prior sweep (when the diagnostics ran).
    diagnostics = comparison.diagnostics
    if diagnostics.get("quality") is not None and not diagnostics["quality"].empty:
        out.append(_save(approximation_figure(comparison, spec.name), folder, "approximations.png"))
    if diagnostics.get("sweep") is not None and not diagnostics["sweep"].empty:
        fig = prior_sweep_figure(diagnostics["sweep"], diagnostics["sweep_prior"], spec.name)
        out.append(_save(fig, folder, "prior_sweep.png"))

    # 5. The model's own figures.
    own = MODEL_FIGURES.get(spec.name)
    if own is not None:
        out += own(example, model, comparison, folder)
    return out


def approximation_figure(comparison, title: str = "", max_panels: int = 8):
    """Each approximation's marginal draws against NUTS's, one panel per scalar parameter (the first
    ``max_panels`` of the quality table), with each approximation's verdict in the legend."""
    plt = _plt()
    quality = comparison.diagnostics["quality"]
    verdicts = comparison.diagnostics.get("verdicts", {})
    labels = list(dict.fromkeys(quality["parameter"]))[:max_panels]
    names = list(dict.fromkeys(quality["estimator"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(2.8 * len(labels) + 1, 3.2), squeeze=False)
    colors = {name: f"C{i}" for i, name in enumerate(comparison.order)}
    for ax, label in zip(axes[0], labels):
        for name in ["nuts"] + names:
            draws = _marginal(comparison.results[name], label)
            if draws is None:
                continue
            text = name if name == "nuts" else f"{name}: {verdicts.get(name, '')}"
            ax.hist(draws, bins=40, density=True, histtype="step", lw=1.6 if name == "nuts" else 1.0,
                    color="k" if name == "nuts" else colors.get(name), label=text)
        ax.set_title(label, fontsize=9)
        ax.set_yticks([])
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{title}: approximations against nuts")
    fig.tight_layout()
    return fig


def _marginal(result, label):
    """The draws of one scalar entry (``beta[1]``) of a result, flattened over chains."""
    from inference.result import flat_labels

    for name, d in (result.draws or {}).items():
        d = np.asarray(d)
        for lab, idx in flat_labels(name, d.shape[2:]):
            if lab == label:
                return d[(slice(None), slice(None)) + idx].ravel()
    return None


def prior_sweep_figure(sweep, prior: str, title: str = ""):
    """Each parameter's estimate (± 1 sd where the method has one) against the swept hyperparameter, one line per
    estimator, with the MLE (which ignores the prior) as a horizontal line."""
    plt = _plt()
    labels = list(dict.fromkeys(sweep["parameter"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels) + 1, 3.2), squeeze=False)
    estimators = [e for e in dict.fromkeys(sweep["estimator"]) if e != "mle"]
    for ax, label in zip(axes[0], labels):
        sub = sweep[sweep["parameter"] == label]
        mle = sub[sub["estimator"] == "mle"]
        if not mle.empty:
            ax.axhline(mle["estimate"].iloc[0], color="k", ls="--", lw=1, label="mle")
        for i, name in enumerate(estimators):
            rows = sub[sub["estimator"] == name].sort_values("scale")
            ax.plot(rows["scale"], rows["estimate"], marker="o", ms=3, color=f"C{i}", label=name)
            sd = rows["sd"].to_numpy()
            if np.isfinite(sd).all():
                ax.fill_between(rows["scale"], rows["estimate"] - sd, rows["estimate"] + sd, color=f"C{i}",
                                alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel(prior)
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{title}: estimates across {prior}")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ mixture
def em_panels(x, path, iterations=(0, 1, 2, 5, 10, 20)):
    """EM's first iterations as panels: the histogram and the mixture at each iteration (1-D)."""
    from scipy import stats

    from models.gaussian_mixture import density

    plt = _plt()
    its = [i for i in iterations if i < len(path)]
    fig, axes = plt.subplots(1, len(its), figsize=(2.6 * len(its), 2.6), sharey=True)
    axes = np.atleast_1d(axes)
    grid = np.linspace(x.min() - 1, x.max() + 1, 300)
    for ax, i in zip(axes, its):
        p = path[i]
        ax.hist(x, bins=30, density=True, color="0.85")
        for j in range(len(p["w"])):
            ax.plot(grid, p["w"][j] * stats.norm.pdf(grid, p["mu"][j], p["sigma"][j]), lw=1)
        ax.plot(grid, density(p, grid), "k", lw=1.2)
        ax.set_title(f"iteration {i}", fontsize=9)
    fig.tight_layout()
    return fig


def _mixture_figures(example, model, comparison, folder) -> list[str]:
    """EM's first iterations as panels (1-D), from a deliberately poor start (every component on the left) so
    that the panels show EM at work."""
    from inference import em

    data = np.asarray(example.data)
    if data.ndim != 1 or "em" not in comparison.results:
        return []
    K = int(model["w"].type.shape[0])
    start = {"w": np.full(K, 1.0 / K), "mu": np.quantile(data, np.linspace(0.05, 0.3, K)),
             "sigma": np.full(K, data.std())}
    res = em(model, keep_path=True, init=start)
    return [_save(em_panels(data, res.info["path"]), folder, "em_iterations.png")]


# ------------------------------------------------------------------------------------------------ logistic
def _logistic_figures(example, model, comparison, folder) -> list[str]:
    """The data with each estimator's decision boundary (two features only)."""
    plt = _plt()
    X, y = example.data
    if X.shape[1] != 2:
        return []
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(X[y == 0, 0], X[y == 0, 1], s=8, c="tab:blue", alpha=0.5, label="y = 0")
    ax.scatter(X[y == 1, 0], X[y == 1, 1], s=8, c="tab:red", alpha=0.5, label="y = 1")
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 50)
    lines = [("truth", example.truth, "k", "--")] if example.truth else []
    lines += [(n, r.params, f"C{i}", "-") for i, (n, r) in enumerate(comparison.results.items())]
    for name, params, color, ls in lines:
        a, b = float(params["alpha"]), np.asarray(params["beta"], dtype=float)
        if abs(b[1]) > 1e-12:
            ax.plot(xs, -(a + b[0] * xs) / b[1], color=color, ls=ls, lw=1.2, label=name)
    ax.set_ylim(X[:, 1].min(), X[:, 1].max())
    ax.legend(fontsize=7)
    ax.set_title("logistic: decision boundaries (p = 0.5)")
    fig.tight_layout()
    return [_save(fig, folder, "boundary.png")]


# ------------------------------------------------------------------------------------------------ missing data
def _missing_data_figures(example, model, comparison, folder) -> list[str]:
    """Imputed against true values (when the truth is known): column means, EM, and posterior means."""
    from models.missing_data import impute

    plt = _plt()
    complete = example.extra.get("complete")
    if complete is None or "em" not in comparison.results:
        return []
    X = example.data
    mask = np.isnan(X)
    fills = {"column mean": np.where(mask, np.nanmean(X, axis=0), X), "em": impute(X, comparison.results["em"].params)}
    for name in ("nuts", "advi"):
        res = comparison.results.get(name)
        if res is not None and "x_unobserved" in res.params:
            f = X.copy()
            f[mask] = res.params["x_unobserved"]
            fills[name] = f
    fig, axes = plt.subplots(1, len(fills), figsize=(3.2 * len(fills), 3.2), sharex=True, sharey=True)
    for ax, (name, f) in zip(np.atleast_1d(axes), fills.items()):
        ax.scatter(complete[mask], f[mask], s=4, alpha=0.4)
        lim = [complete[mask].min(), complete[mask].max()]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("true value")
    np.atleast_1d(axes)[0].set_ylabel("imputed value")
    fig.tight_layout()
    return [_save(fig, folder, "imputations.png")]


# ------------------------------------------------------------------------------------------------ hmm
def _hmm_figures(example, model, comparison, folder) -> list[str]:
    """The series coloured by the Viterbi path of the first point estimate (EM's, else the MLE's or MAP's), with the
    state means as a step line."""
    from models.hmm import viterbi

    from .hmm_figures import plot_states

    name = next((e for e in ("em", "mle", "map_em", "map") if e in comparison.results), None)
    if name is None:
        return []
    params = comparison.results[name].params
    y = np.asarray(example.data, dtype=float)
    states = viterbi(y, params)
    means = params["lam"] if "lam" in params else params["mu"]
    fig = plot_states(y, states, means, x=example.extra.get("year"))
    fig.axes[0].set_title(f"hmm: states decoded by Viterbi at the {name} estimate")
    fig.tight_layout()
    return [_save(fig, folder, "states.png")]


# ------------------------------------------------------------------------------------------------ lda
def _lda_figures(example, model, comparison, folder) -> list[str]:
    """The top 10 words of every topic, one row per estimator (topics already matched to the truth or to the first
    estimate by the model's alignment), the truth first when the corpus was simulated."""
    from .lda_figures import top_words_figure

    topics = {"truth": example.truth["phi"]} if example.truth and "phi" in example.truth else {}
    topics.update({name: res.params["phi"] for name, res in comparison.results.items()})
    vocab = example.extra.get("vocab") or [f"w{j}" for j in range(example.data.shape[1])]
    if not topics:
        return []
    return [_save(top_words_figure(topics, vocab, n_words=10), folder, "top_words.png")]


MODEL_FIGURES = {
    "hmm": _hmm_figures,
    "lda": _lda_figures,
    "gaussian_mixture": _mixture_figures,
    "logistic": _logistic_figures,
    "missing_data": _missing_data_figures,
}
