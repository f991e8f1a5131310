"""The ``zoo`` command: the same comparison on the built-in examples or on a CSV file.

Bad input (unknown names, unreadable files, impossible values) is reported in one line on stderr with exit status 2,
before any estimator runs; nothing is written unless every run finished.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings

import numpy as np

__all__ = ["main"]


class UsageError(ValueError):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description="Compare MLE, MAP, EM, VI and NUTS on one PyMC model.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="name the models, their description and options")
    c = sub.add_parser("compare", help="run estimators side by side on one or more models")
    c.add_argument("models", nargs="+", metavar="MODEL", help="model names (see zoo list)")
    c.add_argument("--estimators", default=None,
                   help="comma-separated estimators (default: mle,map,em,map_em,advi,fullrank_advi,nuts)")
    c.add_argument("--data", default=None, help="CSV file with the observations (default: the built-in example)")
    c.add_argument("--column", default=None, help="CSV column holding the observations")
    c.add_argument("--k", type=int, default=None, help="number of mixture components")
    c.add_argument("--target", default=None, help="logistic: the CSV column holding the two classes")
    c.add_argument("--features", default=None, help="logistic: comma-separated feature columns (default: all numeric)")
    c.add_argument("--columns", default=None, help="gaussian_mixture, missing_data: comma-separated CSV columns")
    c.add_argument("--standardize", action="store_true", default=None,
                   help="logistic: fit on standardised features, report coefficients on the original scale")
    c.add_argument("--seed", type=int, default=0, help="seed of the estimators' randomness (default 0)")
    c.add_argument("--json", default=None, metavar="PATH", help="write every run's results as JSON")
    c.add_argument("--out", default=None, metavar="DIR", help="write figures (and the JSON if --json is not given)")
    c.add_argument("--example", default=None, help="missing_data: built-in example 'correlated' (default) or 'series'")
    c.add_argument("--quiet", action="store_true", help="no progress bars or per-start lines")
    m = sub.add_parser("impute", help="fill the missing entries of a CSV file with EM's conditional means")
    m.add_argument("file", metavar="FILE.csv")
    m.add_argument("--out", required=True, metavar="FILLED.csv", help="where to write the completed table")
    m.add_argument("--columns", default=None, help="comma-separated columns to model (default: all numeric)")
    g = sub.add_parser("segment", help="segment an image with a Gaussian mixture fitted by EM to its Lab colours")
    g.add_argument("--image", default="astronaut", help="'astronaut' (shipped with scikit-image) or an image file")
    g.add_argument("--k", type=int, default=5, help="number of segments (default 5)")
    g.add_argument("--seed", type=int, default=0, help="seed of the k-means++ start (default 0)")
    g.add_argument("--max-iter", type=int, default=200, help="EM iterations at most (default 200)")
    g.add_argument("--out", default="runs/segment", metavar="DIR", help="folder for segmented.png")
    return p


def main(argv=None) -> int:
    # PyTensor's C backend (used for a few ops the Numba backend lacks) warns once that it found no BLAS: noise here.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"zoo: warning: {message}\n"
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # input checks in models/ and inference/ raise ValueError naming the argument
        print(f"zoo: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except (FloatingPointError, RuntimeError) as exc:  # the algorithm failed on valid input (e.g. a collapse)
        print(f"zoo: failed: {_first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


def _first_line(exc) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def _main(argv) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "segment":
        return _segment(args)
    if args.command == "impute":
        return _impute(args)
    return _compare(args)


def _list() -> int:
    import models

    for name, mod in models.MODELS.items():
        print(f"{name:18s} {mod.DESCRIPTION}")
        print(f"{'':18s} options: {mod.OPTIONS}")
    return 0


def _plan(args):
    """Validate everything and build every model before any estimator runs."""
    import models
    from models._common import read_csv

    from .compare import parse_estimators

    estimators = parse_estimators(args.estimators) if args.estimators is not None else None
    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    if len(set(args.models)) != len(args.models):
        raise UsageError("MODEL: a model is named twice")
    modules = [models.get(name) for name in args.models]
    frame = read_csv(args.data) if args.data is not None else None
    given = {opt: getattr(args, opt) for opt in ("column", "columns", "k", "target", "features", "standardize",
                                                 "example")
             if getattr(args, opt, None) is not None}
    plans = []
    for mod in modules:
        allowed = mod.CSV_OPTIONS if frame is not None else mod.EXAMPLE_OPTIONS
        for opt in given:
            if opt not in allowed:
                where = "with --data" if frame is not None else "without --data"
                raise UsageError(f"--{opt}: the {mod.NAME} model takes no --{opt} {where}")
        kwargs = {opt: given[opt] for opt in allowed if opt in given}
        if frame is not None:
            example = mod.from_frame(frame, source=os.path.basename(args.data), **kwargs)
        else:
            example = mod.example(**kwargs)
        if hasattr(mod, "check_plan"):
            mod.check_plan(example, estimators or parse_estimators(None))
        model = None if hasattr(mod, "run_comparison") else mod.build(*example.args, **example.build_kwargs)
        plans.append((mod, example, model))
    if args.json is not None:
        _check_writable(os.path.dirname(os.path.abspath(args.json)), "--json")
    if args.out is not None:
        _check_writable(args.out, "--out")
    return estimators, plans


def _compare(args) -> int:
    estimators, plans = _plan(args)
    from .compare import compare
    from .report import run_record, write_outputs

    runs = []
    for mod, example, model in plans:
        print(f"== {mod.NAME} (n = {example.n}, data: {example.source})", flush=True)
        if "mapping" in example.extra:
            print(example.extra["mapping"], flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if model is None:
                model, comparison = mod.run_comparison(example, estimators, seed=args.seed,
                                                       progress=not args.quiet)
            else:
                comparison = compare(model, estimators, truth=example.truth, seed=args.seed,
                                     progress=not args.quiet)
        print(f"options: {_options_text(model)}", flush=True)
        print(comparison.table(), flush=True)
        metrics = mod.metrics(example, comparison) if hasattr(mod, "metrics") else {}
        if metrics:
            import pandas as pd

            print("\n" + getattr(mod, "METRICS_TITLE", "metrics:"), flush=True)
            print(pd.DataFrame(metrics).T.to_string(float_format=lambda v: f"{v:.4f}"), flush=True)
        for line in (mod.notes(example, comparison) if hasattr(mod, "notes") else []):
            print("\n" + line, flush=True)
        print(flush=True)
        runs.append((mod, example, model, comparison))
    records = [run_record(mod, example, model, comparison) for mod, example, model, comparison in runs]
    written = write_outputs(runs, records, json_path=args.json, out_dir=args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


def _segment(args) -> int:
    from models import gaussian_mixture as gm

    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.max_iter < 1:
        raise UsageError(f"--max-iter: expected a positive integer, got {args.max_iter}")
    if args.k < 1:
        raise UsageError(f"--k: expected a positive number of components, got {args.k}")
    _check_writable(args.out, "--out")
    rgb = gm.load_image(args.image)
    print(f"segmenting {args.image} ({rgb.shape[1]} x {rgb.shape[0]} pixels) into {args.k} colours with EM",
          flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        seg = gm.segment(rgb, args.k, seed=args.seed, max_iter=args.max_iter, progress=True)
    res = seg["result"]
    print(f"EM: {res.n_iter} iterations, log-likelihood {res.loglik:.6f}, converged {res.converged}, "
          f"{res.time_run:.2f} s")
    from .report import write_segmentation

    path = write_segmentation(args.out, rgb, seg["segmented"], title=f"{args.image}: EM, K = {args.k}")
    print(f"wrote {path}")
    return 0


def _impute(args) -> int:
    from models import missing_data
    from models._common import read_csv

    from .em import em

    _check_writable(os.path.dirname(os.path.abspath(args.out)), "--out")
    if os.path.abspath(args.out) == os.path.abspath(args.file):
        raise UsageError("--out: refusing to overwrite the input file")
    frame = read_csv(args.file)
    example = missing_data.from_frame(frame, columns=args.columns, source=os.path.basename(args.file))
    names = example.build_kwargs["columns"]
    missing_data.check_plan(example, ["em"])
    model = missing_data.build(example.data, columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        res = em(model)
    values = frame[names].to_numpy(dtype=float)
    filled = missing_data.impute(values, res.params)  # every row, also those with nothing observed
    out = frame.copy()
    out[names] = filled
    n_missing = int(np.isnan(values).sum())
    fd, tmp = tempfile.mkstemp(prefix=".zoo-", suffix=".csv", dir=os.path.dirname(os.path.abspath(args.out)))
    os.close(fd)
    out.to_csv(tmp, index=False)
    os.replace(tmp, args.out)
    print(f"EM: {res.n_iter} iterations, log-likelihood {res.loglik:.6f}, converged {res.converged}")
    print(f"filled {n_missing} missing entries in {len(names)} columns; wrote {args.out}")
    return 0


def _check_writable(path, what):
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        raise UsageError(f"{what}: cannot write under {path}")


def _options_text(model) -> str:
    from .hooks import hooks_for

    hooks = hooks_for(model)
    if hooks is None or not hooks.options:
        return "default options"
    return ", ".join(f"{k}={v}" for k, v in hooks.options.items())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
