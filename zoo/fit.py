"""``zoo fit``: EM on data too large for memory, read chunk by chunk from CSV or Parquet files.

The model is built on the first chunk (its priors, start and centring shift), then exact EM over chunks, online EM or
incremental EM (:mod:`inference.chunked`) runs over every matching file; ``--dask`` computes the chunks' statistics
on a Dask cluster. Bad input (a pattern matching nothing, files whose columns differ, a missing value where the model
allows none, an unreachable scheduler) is one line on stderr with exit status 2, before or at the chunk concerned.
"""

from __future__ import annotations

import json
import time

import numpy as np

__all__ = ["METHODS", "add_parser", "run"]

METHODS = ("em", "online_em", "incremental_em")
# The library's messages name its arguments; on the command line they are these flags.
FLAGS = {"data:": "--data:", "columns:": "--columns:", "scheduler:": "--dask:", "chunk_rows:": "--chunk-rows:",
         "batch_rows:": "--batch-size:", "epochs:": "--epochs:", "k:": "--k:"}


def add_parser(sub) -> None:
    f = sub.add_parser("fit", help="fit a model by EM over data read chunk by chunk (files larger than memory)")
    f.add_argument("model", metavar="MODEL", help="gaussian_mixture, poisson or missing_data")
    f.add_argument("--data", required=True, metavar="FILE_OR_GLOB",
                   help="CSV or Parquet file(s), e.g. 'part-*.parquet'")
    f.add_argument("--columns", default=None, help="comma-separated columns (default: every column)")
    f.add_argument("--k", type=int, default=None, help="number of mixture components")
    f.add_argument("--method", default="em", choices=METHODS, help="exact EM over chunks (default), online EM, or "
                                                                    "incremental EM")
    f.add_argument("--chunk-rows", type=int, default=100_000, help="rows per chunk (default 100000)")
    f.add_argument("--batch-size", type=int, default=1000, help="rows per mini-batch of online EM (default 1000)")
    f.add_argument("--epochs", type=int, default=2, help="passes of online EM (default 2)")
    f.add_argument("--max-iter", type=int, default=500, help="iterations or sweeps at most (default 500)")
    f.add_argument("--seed", type=int, default=0, help="seed of the start (default 0)")
    f.add_argument("--dask", default=None, metavar="local|ADDRESS",
                   help="compute the chunks' statistics on a Dask cluster: 'local' starts two workers on this "
                        "machine, an address such as tcp://host:8786 joins a running scheduler (method em)")
    f.add_argument("--json", default=None, metavar="PATH", help="write the result in the comparison's JSON schema")


def _flagged(exc) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
    for name, flag in FLAGS.items():
        if text.startswith(name):
            return flag + text[len(name):]
    return text


def run(args) -> int:
    from inference import registry

    from .cli import UsageError
    from .report import check_output_paths, write_atomic

    for value, flag in ((args.chunk_rows, "--chunk-rows"), (args.batch_size, "--batch-size"),
                        (args.epochs, "--epochs"), (args.max_iter, "--max-iter")):
        if value < 1:
            raise UsageError(f"{flag}: expected a positive integer, got {value}")
    if args.seed < 0:
        raise UsageError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.dask is not None and args.method != "em":
        raise UsageError(f"--dask: only --method em runs on Dask, got --method {args.method}")
    check_output_paths(json_path=args.json)
    spec = registry.get(args.model)
    options = {}
    if args.k is not None:
        if spec.option("k") is None:
            raise UsageError(f"--k: the {spec.name} model takes no --k")
        options["k"] = args.k
    try:
        record, fit = _fit(spec, args, options)
    except ValueError as exc:
        raise UsageError(_flagged(exc)) from None
    _print(fit)
    if args.json is not None:
        payload = json.dumps({"runs": [record]}, indent=2, allow_nan=False)
        write_atomic(args.json, lambda fh: fh.write(payload))
        print(f"wrote {args.json}")
    return 0


def _fit(spec, args, options):
    import contextlib
    import warnings

    from inference import chunked
    from inference.base import hooks_for
    from inference.study import dask_client

    from .report import _plain

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows with nothing observed are dropped chunk by chunk
        model, source = chunked.reference_model(spec, args.data, args.columns, args.chunk_rows, **options)
        print(f"== {spec.name} by {args.method} over {len(getattr(source, 'paths', [args.data]))} file(s), columns "
              f"{', '.join(source.columns)}", flush=True)
        common = {"seed": args.seed, "progress": True}
        start = time.perf_counter()
        with (dask_client(args.dask, 2) if args.dask else contextlib.nullcontext()) as client:
            if args.method == "em":
                fit = chunked.chunked_em(model, source, max_iter=args.max_iter, client=client, **common)
            elif args.method == "online_em":
                source = chunked.open_source(args.data, source.columns, args.batch_size)
                fit = chunked.online_em(model, source, batch_rows=args.batch_size, epochs=args.epochs, **common)
            else:
                fit = chunked.incremental_em(model, source, max_iter=args.max_iter, **common)
    hooks = hooks_for(model)
    options_out = {key: v for key, v in (hooks.options if hooks else {}).items()
                   if key not in ("mu_prior", "sigma_prior")}  # centred on the first chunk, used by MAP only
    options_out.update({"method": args.method, "chunk_rows": args.chunk_rows, "dask": args.dask})
    if args.method == "online_em":
        options_out.update({"batch_size": args.batch_size, "epochs": args.epochs})
    record = {
        "model": spec.name,
        "options": _plain(options_out),
        "data": {"n": int(fit.rows), "source": args.data},
        "truth": None,
        "estimators": {args.method: {"params": _plain(fit.params), "sd": None, "loglik": _plain(fit.loglik),
                                     "n_iter": int(fit.n_iter), "converged": bool(fit.converged),
                                     "reliable": None, "khat": None,
                                     "time_s": float(time.perf_counter() - start), "error": None}},
    }
    return record, fit


def _print(fit) -> None:
    with np.printoptions(precision=6, suppress=True):
        for name, value in fit.params.items():
            print(f"{name} = {np.asarray(value)}")
    label = {"em": "log-likelihood per iteration", "online_em": "log-likelihood per epoch (progressive)",
             "incremental_em": "free energy per sweep"}[fit.method]
    trace = ", ".join(f"{v:.6f}" for v in fit.trace[-10:])
    print(f"{label} (last {min(10, len(fit.trace))}): {trace}")
    print(f"log-likelihood {fit.loglik:.6f}; {fit.n_iter} iterations; converged {fit.converged}; {fit.rows:,} rows; "
          f"{fit.time_s:.2f} s; {fit.rows_per_second:,.0f} rows per second")
