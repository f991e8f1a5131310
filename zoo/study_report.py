"""``zoo study``: a simulation study from the command line, its figures and its page.

The study's folder (``--out``) keeps its arguments and every finished batch, so the same command run again after an
interruption continues where it stopped; at the end it also holds the raw table (``results.csv``), the performance
table (``performance.csv``), the figures (bias, RMSE and coverage against n, each with +-2 MCSE bars) and
``index.html``.
"""

from __future__ import annotations

import html
import json
import os
import warnings

import numpy as np

from .report import check_output_paths, write_atomic

__all__ = ["add_parser", "figure", "figures", "html_page", "run"]

FIGURES = (("bias", "bias", 0.0), ("rmse", "RMSE", None), ("coverage", "coverage of the 95 % interval", 0.95))


def add_parser(sub, specs) -> None:
    """The ``study`` subcommand, with every registered model's own options (``--k``, ...)."""
    s = sub.add_parser("study", help="a simulation study: every estimator on many data sets drawn at a truth")
    s.add_argument("model", metavar="MODEL", help="model name (see zoo list)")
    s.add_argument("--estimators", default=None, help="comma-separated estimators (default: every estimator the "
                                                      "model does not skip)")
    s.add_argument("--n", default="20,100,1000", help="comma-separated sample sizes (default 20,100,1000)")
    s.add_argument("--reps", type=int, default=1000, help="replicates per sample size (default 1000)")
    s.add_argument("--truth", default=None, metavar="JSON",
                   help='the parameters to simulate at, e.g. \'{"mu": 0, "sigma": 1}\' (default: the example\'s)')
    s.add_argument("--seed", type=int, default=0, help="seed of the study (default 0)")
    s.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    s.add_argument("--dask", default=None, metavar="local|ADDRESS",
                   help="run on Dask: 'local' starts a cluster of --jobs workers on 127.0.0.1, or a scheduler "
                        "address such as tcp://host:8786")
    s.add_argument("--out", default=None, metavar="DIR", help="study folder: resumable results, tables, figures, "
                                                              "index.html")
    s.add_argument("--json", default=None, metavar="PATH", help="write the performance table as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    seen = set()
    for spec in specs.values():
        for opt in spec.options:
            if opt.name in seen or opt.applies == "data":
                continue
            seen.add(opt.name)
            if opt.type is bool:
                s.add_argument(f"--{opt.name}", action="store_true", default=None, help=opt.help)
            else:
                s.add_argument(f"--{opt.name}", type=opt.type if opt.type in (int, float) else str, default=None,
                               help=opt.help, choices=opt.choices)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--n: expected comma-separated integers, got {text!r}") from None
    if not sizes:
        raise ValueError("--n: expected at least one sample size")
    return sizes


def run(args, specs) -> int:
    """Validate, run (resuming from ``--out``), print the table, and write the outputs."""
    from inference import registry
    from inference.study import study

    spec = registry.get(args.model)
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.jobs < 1:
        raise ValueError(f"--jobs: expected a positive integer, got {args.jobs}")
    if args.reps < 2:
        raise ValueError(f"--reps: expected at least 2 replicates, got {args.reps}")
    truth = None
    if args.truth is not None:
        try:
            truth = json.loads(args.truth)
        except ValueError:
            raise ValueError(f"--truth: expected a JSON object, got {args.truth!r}") from None
        if not isinstance(truth, dict):
            raise ValueError(f"--truth: expected a JSON object of parameter values, got {args.truth!r}")
    options = {}
    for opt in spec.options:
        value = getattr(args, opt.name, None)
        if value is not None:
            options[opt.name] = value
    others = [o for s in specs.values() for o in s.options if o.name not in options and o.applies != "data"
              and getattr(args, o.name, None) is not None and spec.option(o.name) is None]
    if others:
        raise ValueError(f"--{others[0].name}: the {spec.name} model takes no --{others[0].name}")
    check_output_paths(json_path=args.json, out_dir=args.out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = study(spec, args.estimators, n=_sizes(args.n), reps=args.reps, truth=truth, seed=args.seed,
                       n_jobs=args.jobs, scheduler=args.dask, folder=args.out, progress=not args.quiet,
                       options=options)
    print(f"== {spec.name} study: {result.reps} replicates per n, seed {result.seed}, truth "
          f"{json.dumps(result.to_json()['study']['truth'])}", flush=True)
    print(result.table(), flush=True)
    written = []
    if args.out is not None:
        written += write_outputs(result, args.out)
    if args.json is not None:
        payload = json.dumps(result.to_json(), indent=2, allow_nan=False)
        written.append(write_atomic(args.json, lambda fh: fh.write(payload)))
    for path in written:
        print(f"wrote {path}")
    return 0


def write_outputs(result, folder) -> list[str]:
    """results.csv, performance.csv, the figures and index.html, each written atomically into ``folder``."""
    written = [write_atomic(os.path.join(folder, "results.csv"), lambda fh: result.raw.to_csv(fh, index=False)),
               write_atomic(os.path.join(folder, "performance.csv"),
                            lambda fh: result.performance().to_csv(fh, index=False))]
    names = figures(result, folder)
    written += [os.path.join(folder, f) for f in names]
    page = html_page(result, names)
    written.append(write_atomic(os.path.join(folder, "index.html"), lambda fh: fh.write(page)))
    return written


def figure(result, measure: str):
    """One measure (``bias``, ``rmse`` or ``coverage``) against n (log axis) per estimator, one panel per
    parameter, with +-2 MCSE bars and the target as a dashed line; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    title, reference = {m: (t, r) for m, t, r in FIGURES}[measure]
    perf = result.performance()
    labels = list(dict.fromkeys(perf["parameter"]))
    shift = {e: 1.0 + 0.04 * (i - (len(result.estimators) - 1) / 2) for i, e in enumerate(result.estimators)}
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels) + 1.2, 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        sub = perf[perf["parameter"] == label]
        for i, est in enumerate(result.estimators):
            rows = sub[sub["estimator"] == est]
            x = rows["n"].to_numpy(dtype=float) * shift[est]
            err = 2 * np.nan_to_num(rows[measure + "_mcse"].to_numpy(dtype=float))
            ax.errorbar(x, rows[measure], yerr=err, fmt="o-", ms=4, capsize=2, color=f"C{i}", label=est)
        if reference is not None:
            ax.axhline(reference, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("n")
        ax.set_title(label)
    axes[0][0].set_ylabel(title)
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"{result.model}: {title} (± 2 MCSE), {result.reps} replicates")
    fig.tight_layout()
    return fig


def figures(result, folder) -> list[str]:
    """``bias.png``, ``rmse.png`` and ``coverage.png`` (see :func:`figure`), written atomically into ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for measure, _, _ in FIGURES:
        fig = figure(result, measure)
        name = f"{measure}.png"
        write_atomic(os.path.join(folder, name), lambda fh, fig=fig: fig.savefig(fh, dpi=90, format="png"),
                     binary=True)
        plt.close(fig)
        names.append(name)
    return names


def html_page(result, files) -> str:
    """One self-contained page, in the style of the comparison's: the arguments, the table, the figures."""
    esc = html.escape
    meta = result.to_json()["study"]
    perf = result.performance()
    shown = ["n", "estimator", "parameter", "truth", "bias", "bias_mcse", "empse", "empse_mcse", "modse",
             "relerr_modse", "relerr_modse_mcse", "rmse", "rmse_mcse", "coverage", "coverage_mcse", "interval",
             "n_ok", "n_failed", "n_not_converged", "seconds_mean"]
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>estimator zoo: {esc(result.model)} simulation study</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse;margin:0.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
             "img{max-width:100%;margin:0.3em 0;border:1px solid #eee}.note{color:#444}</style>",
             "</head><body>", f"<h1>estimator zoo: {esc(result.model)} simulation study</h1>",
             f"<p>{result.reps} replicates at each n = {', '.join(map(str, result.n))}; seed {result.seed}; "
             f"options {esc(json.dumps(meta['options']))}; truth {esc(json.dumps(meta['truth']))}.</p>",
             "<p class='note'>Measures and Monte Carlo standard errors (MCSE) as in Morris, White &amp; Crowther "
             "(2019), Statistics in Medicine 38:2074, Table 6. Intervals: estimate ± 1.96 sd for mle, map, em, "
             "map_em; 2.5 % and 97.5 % quantiles of the draws for advi, fullrank_advi, nuts. relerr_modse is in "
             "per cent.</p>", "<h2>Performance</h2>",
             perf[shown].to_html(border=0, index=False, float_format=lambda v: f"{v:.4g}"), "<h2>Figures</h2>"]
    for name in files:
        parts.append(f"<figure><img src='{esc(name)}' alt='{esc(name)}'><figcaption>{esc(name)}</figcaption>"
                     "</figure>")
    parts.append("<p>Raw results: <a href='results.csv'>results.csv</a>; performance: "
                 "<a href='performance.csv'>performance.csv</a>.</p></body></html>")
    return "\n".join(parts)
