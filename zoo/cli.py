"""The ``zoo`` command: the same comparison on the built-in examples or on a data file, for every registered model.

Bad input (unknown names, unreadable files, impossible values) is reported in one line on stderr with exit status 2,
before any estimator runs; nothing is written unless every run finished.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

import numpy as np

__all__ = ["main"]


class UsageError(ValueError):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


_TYPES = {int: int, float: float, str: str, list: str}
# More colour segments than this are no segmentation, and EM on them takes minutes per megapixel.
MAX_SEGMENTS = 64


def _model_options(specs) -> dict:
    """Every option of every registered model and data kind, once: name -> (type, help)."""
    from .data import KIND_OPTIONS, OPTION_HELP

    found = {}
    for spec in specs.values():
        for name in KIND_OPTIONS.get(spec.data_kind, ()):
            found.setdefault(name, (str, OPTION_HELP[name], None))
        for opt in spec.options:
            found.setdefault(opt.name, (opt.type, opt.help, opt.choices))
    return found


def _parser(specs) -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description="Compare MLE, MAP, EM, VI and NUTS on one PyMC model.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("list", help="name the models, their description and options")
    c = sub.add_parser("compare", help="run estimators side by side on one or more models")
    c.add_argument("models", nargs="+", metavar="MODEL", help="model names (see zoo list)")
    c.add_argument("--estimators", default=None,
                   help="comma-separated estimators (default: every estimator the model does not skip)")
    c.add_argument("--data", default=None, help="CSV or Parquet file with the observations (default: the built-in "
                                                "example)")
    for name, (typ, text, choices) in _model_options(specs).items():
        flag = f"--{name.replace('_', '-')}"
        if typ is bool:
            c.add_argument(flag, dest=name, action="store_true", default=None, help=text)
        else:
            c.add_argument(flag, dest=name, type=_TYPES.get(typ, str), default=None, help=text)
    c.add_argument("--seed", type=int, default=0, help="seed of the estimators' randomness (default 0)")
    c.add_argument("--n-init", type=int, default=None, metavar="N",
                   help="starts for EM and the optimisers (mle, map, em, map_em); every start's final value is shown")
    c.add_argument("--sampler", default="pymc", metavar="pymc|nutpie",
                   help="the NUTS implementation: PyMC's own (default) or nutpie's (needs the nutpie package)")
    c.add_argument("--json", default=None, metavar="PATH", help="write every run's results as JSON")
    c.add_argument("--out", default=None, metavar="DIR", help="write figures, index.html (and the JSON if --json is "
                                                              "not given)")
    c.add_argument("--quiet", action="store_true", help="no progress bars or per-estimator lines")
    c.add_argument("--sensitivity", action="store_true",
                   help="add power-scaling prior sensitivity and a sweep over one prior hyperparameter")
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
    from .fit import add_parser as add_fit_parser
    from .study_report import add_parser as add_study_parser

    add_study_parser(sub, specs)
    add_fit_parser(sub)
    return p


def main(argv=None) -> int:
    # PyTensor's C backend (used for a few ops the Numba backend lacks) warns once that it found no BLAS: noise here.
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"zoo: warning: {message}\n"
    try:
        # Overflow and invalid-value conditions surface as non-finite results that the estimators report; numpy's
        # own warnings about them would only clutter the terminal.
        with np.errstate(all="ignore"):
            return _main(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except (FloatingPointError, RuntimeError, np.linalg.LinAlgError) as exc:  # the algorithm failed on valid input
        print(f"zoo: failed: {_first_line(exc)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:  # input checks in models/ and inference/ name the argument
        print(f"zoo: error: {_first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


def _first_line(exc) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def _main(argv) -> int:
    from inference import registry

    specs = registry.models()
    args = _parser(specs).parse_args(argv)
    if args.command == "list":
        return _list(specs)
    if args.command == "segment":
        return _segment(args)
    if args.command == "impute":
        return _impute(args)
    if args.command == "fit":
        from .fit import run as run_fit

        return run_fit(args)
    if args.command == "study":
        from .study_report import run as run_study

        return run_study(args, specs)
    return _compare(args, specs)


def _list(specs) -> int:
    from inference.compare import DEFAULT_ESTIMATORS

    from .data import KIND_OPTIONS

    for name, spec in specs.items():
        print(f"{name:18s} {spec.description}")
        opts = [f"--{o.replace('_', '-')}" for o in KIND_OPTIONS.get(spec.data_kind, ())] + [
            f"--{o.name}" + (f" {{{','.join(o.choices)}}}" if o.choices else "") for o in spec.options]
        print(f"{'':18s} options: {' '.join(opts) if opts else 'none'}")
        offered = [e for e in DEFAULT_ESTIMATORS if e != "vem" or spec.offers_vem]
        print(f"{'':18s} estimators: {','.join(e for e in offered if e not in spec.not_default)}")
        for est, why in spec.not_default.items():
            print(f"{'':18s} not by default: {est} ({why})")
    return 0


def _options_for(spec, given: dict, with_data: bool) -> dict:
    """The given command-line options that apply to ``spec``; a UsageError for one that does not."""
    from .data import KIND_OPTIONS

    kind = set(KIND_OPTIONS.get(spec.data_kind, ())) if with_data else set()
    own = {o.name: o for o in spec.options if o.applies in ("both", "data" if with_data else "example")}
    out = {}
    for name, value in given.items():
        if name not in kind and name not in own:
            where = "with --data" if with_data else "without --data"
            flag = f"--{name.replace('_', '-')}"
            raise UsageError(f"{flag}: the {spec.name} model takes no {flag} {where}")
        opt = own.get(name)
        if opt is not None and opt.choices and value not in opt.choices:
            raise UsageError(f"--{name}: expected one of {', '.join(opt.choices)}, got {value!r}")
        out[name] = value
    return out


def _plan(args, specs):
    """Validate everything and build every model before any estimator runs."""
    from inference import registry
    from inference.compare import parse_estimators

    from .data import example_from_file, read_table
    from .report import check_output_paths

    estimators = parse_estimators(args.estimators) if args.estimators is not None else None
    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.n_init is not None and args.n_init < 1:
        raise UsageError(f"--n-init: expected a positive integer, got {args.n_init}")
    from inference.mcmc import check_sampler

    check_sampler(args.sampler, "--sampler")  # before any work: a ValueError is the one-line error, exit 2
    if len(set(args.models)) != len(args.models):
        raise UsageError("MODEL: a model is named twice")
    chosen = [registry.get(name) for name in args.models]
    check_output_paths(json_path=args.json, out_dir=args.out)
    tabular = args.data is not None and any(spec.data_kind != "documents" for spec in chosen)
    frame = read_table(args.data) if tabular else None  # a corpus is read by its own reader
    given = {name: getattr(args, name) for name in _model_options(specs) if getattr(args, name, None) is not None}
    plans = []
    for spec in chosen:
        opts = _options_for(spec, given, args.data is not None)
        if args.data is not None:
            example = example_from_file(spec, args.data, frame=frame, **opts)
        else:
            example = spec.example(**opts)
        if spec.check_plan is not None:
            spec.check_plan(example, estimators or parse_estimators(None))
        model = spec.build(*example.args, **example.build_kwargs)
        plans.append((spec, example, model))
    return estimators, plans


def _compare(args, specs) -> int:
    estimators, plans = _plan(args, specs)
    from inference.compare import compare

    from .diagnostics import diagnose, lines
    from .report import model_notes, run_record, write_outputs

    runs = []
    for spec, example, model in plans:
        print(f"== {spec.name} (n = {example.n}, data: {example.source})", flush=True)
        if "mapping" in example.extra:
            print(example.extra["mapping"], flush=True)
        # progress bars on a terminal; elsewhere (a log, a pipe) one line per estimator as it finishes
        bars = not args.quiet and sys.stderr.isatty()
        per_estimator = None if args.quiet or bars else _estimator_line
        options = {e: {"n_init": args.n_init} for e in ("mle", "map", "em", "map_em")} if args.n_init else {}
        if args.sampler != "pymc":
            options["nuts"] = {"sampler": args.sampler}
        with warnings.catch_warnings(), (contextlib.nullcontext() if bars else _pymc_logs_off()):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # each failure is shown once, in the table below
            comparison = compare(model, estimators, truth=example.truth, seed=args.seed, progress=bars,
                                 options=options, on_result=per_estimator)
        if not comparison.results:
            first = next(iter(comparison.errors.items()))
            raise RuntimeError(f"{spec.name}: every estimator failed; {first[0]}: {first[1]}")
        print(f"options: {_options_text(model)}", flush=True)
        print(comparison.table(), flush=True)
        metrics = spec.metrics(example, comparison) if spec.metrics is not None else {}
        if metrics:
            import pandas as pd

            print("\n" + spec.metrics_title, flush=True)
            print(pd.DataFrame(metrics).T.to_string(float_format=lambda v: f"{v:.4f}"), flush=True)
        for line in model_notes(spec, example, comparison):
            print("\n" + line, flush=True)
        diagnostics = diagnose(spec, example, model, comparison, sensitivity=args.sensitivity, seed=args.seed)
        for line in lines(diagnostics):
            print(line, flush=True)
        print(flush=True)
        runs.append((spec, example, model, comparison, metrics))
    records = [run_record(spec, example, model, comparison, metrics)
               for spec, example, model, comparison, metrics in runs]
    written = write_outputs(runs, records, json_path=args.json, out_dir=args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


@contextlib.contextmanager
def _pymc_logs_off():
    """Without progress bars, PyMC's own lines ("Initializing NUTS ...", "Sampling 2 chains ...") would come between
    the one line per estimator; its warnings still show."""
    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _estimator_line(name, result, error) -> None:
    if result is None:
        print(f"  {name}: failed: {error}", file=sys.stderr, flush=True)
        return
    state = "converged" if result.converged else "NOT converged"
    print(f"  {name}: {state} after {result.n_iter:,} {'draws' if name == 'nuts' else 'iterations'} "
          f"(compile {result.time_compile:.2f} s, run {result.time_run:.2f} s)", file=sys.stderr, flush=True)


def _segment(args) -> int:
    from .report import check_output_paths, write_segmentation
    from .segment import load_image, segment

    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.max_iter < 1:
        raise UsageError(f"--max-iter: expected a positive integer, got {args.max_iter}")
    if not 1 <= args.k <= MAX_SEGMENTS:
        raise UsageError(f"--k: expected a number of segments from 1 to {MAX_SEGMENTS}, got {args.k}")
    check_output_paths(out_dir=args.out)
    rgb = load_image(args.image)
    print(f"segmenting {args.image} ({rgb.shape[1]} x {rgb.shape[0]} pixels) into {args.k} colours with EM",
          flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        seg = segment(rgb, args.k, seed=args.seed, max_iter=args.max_iter, progress=True)
    res = seg["result"]
    print(f"EM: {res.n_iter} iterations, log-likelihood {res.loglik:.6f}, converged {res.converged}, "
          f"{res.time_run:.2f} s")
    path = write_segmentation(args.out, rgb, seg["segmented"], title=f"{args.image}: EM, K = {args.k}")
    print(f"wrote {path}")
    return 0


def _impute(args) -> int:
    from inference import em
    from models import missing_data

    from .data import example_from_file, read_table
    from .report import check_output_paths, write_atomic

    check_output_paths(file_path=args.out, what="--out")
    if os.path.exists(args.out) and os.path.exists(args.file) and os.path.samefile(args.out, args.file):
        raise UsageError("--out: refusing to overwrite the input file")
    frame = read_table(args.file)
    example = example_from_file(missing_data.SPEC, args.file, frame=frame, columns=args.columns)
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
    write_atomic(args.out, lambda fh: out.to_csv(fh, index=False))
    print(f"EM: {res.n_iter} iterations, log-likelihood {res.loglik:.6f}, converged {res.converged}")
    print(f"filled {n_missing} missing entries in {len(names)} columns; wrote {args.out}")
    return 0


def _options_text(model) -> str:
    from inference.base import hooks_for

    hooks = hooks_for(model)
    if hooks is None or not hooks.options:
        return "default options"
    return ", ".join(f"{k}={_option_value(v)}" for k, v in hooks.options.items())


def _option_value(v) -> str:
    """An option's value for the one-line summary: a vector whose entries are all equal (a symmetric prior over
    thousands of words) as ``0.01 (x 4258)``; other vectors as lists, shortened beyond 8 entries."""
    if not isinstance(v, np.ndarray):
        return str(v)
    flat = v.ravel()
    if flat.size > 1 and np.all(flat == flat[0]):
        return f"{flat[0].item()} (x {flat.size})"
    if flat.size > 8:
        return f"[{', '.join(str(x) for x in flat[:8].tolist())}, ... ({flat.size} values)]"
    return str(v.tolist())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
