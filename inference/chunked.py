"""EM beyond memory: exact EM over chunks, online EM, incremental EM, and exact EM on a Dask cluster.

Every model whose hooks give a :class:`~inference.base.SufficientEM` (its E-step is a sum over rows of expected
sufficient statistics s, its M-step a function of s) runs here on data read chunk by chunk from CSV or Parquet files,
a NumPy array or memmap, or a Dask array. The model itself (``pm.Model``) is built on a sample (:func:`reference_model`
builds it on the first chunk): it supplies the priors, the start and the centring shift; the data are streamed.

* Exact EM over chunks (:func:`chunked_em`): each iteration streams the data once, sums the chunks' statistics in a
  fixed order, and takes one M-step. Since s is a sum over rows, the iterates are those of the in-memory EM (whose
  step is the one-chunk case) up to the order of floating-point additions; the objective is climbed monotonically
  and the step goes through :func:`inference.em.run_em`, its convergence monitor and its monotonicity guard.
  Peak memory is one chunk and its features.
* The same on a Dask cluster (``client=``): every file or block is read once by a worker and kept there; each
  iteration sends the parameters, every worker returns its chunks' statistics, the client adds them in the serial
  order (so the iterates equal the single-machine ones) and takes the M-step.
* Online EM (:func:`online_em`; Cappe & Moulines 2009, "On-line expectation-maximization algorithm for latent data
  models", JRSS B 71:593; stepwise EM, Liang & Klein 2009, NAACL): after mini-batch t, the running average of the
  per-row statistics moves towards the batch's, s <- s + gamma_t (s_batch(theta) - s), gamma_t = (t + t0)^-kappa
  with kappa in (0.5, 1] (Robbins-Monro: sum gamma = inf, sum gamma^2 < inf), and theta = M(s). It converges to a
  stationary point of the expected log-likelihood; with Polyak-Ruppert averaging of the iterates it reaches the
  MLE's 1/sqrt(n) efficiency after a single pass (Cappe & Moulines, Theorem 2). Blending the *parameters* of
  successive batches instead (:func:`parameter_blending`, the sketch on the classic slides) converges, if at all, to
  a fixed point of E[M(s_batch)], not of M(E[s_batch]): M is not linear, so its answer is biased by O(1/batch size).
* Incremental EM (:func:`incremental_em`; Neal & Hinton 1998, "A view of the EM algorithm that justifies
  incremental, sparse, and other variants", in Learning in Graphical Models): each chunk's statistics are kept;
  visiting a chunk replaces its share of the total by the statistics at the current parameters, then one M-step.
  Each visit raises the free energy F(q, theta) = sum_b (E_q_b log p(x_b, z_b | theta) + H(q_b)) <= loglik(theta),
  which is computed here from the statistics (Q is linear in s) and guarded at every visit.

:func:`write_parquet` writes large test data in files from the model's own simulator, one file at a time.
"""

from __future__ import annotations

import csv
import glob as globmod
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from .base import EMMath, hooks_for
from .checks import check, check_model
from .em import ConvergenceMonitor, EMDecreaseError, run_em
from .starts import as_generator

__all__ = ["ArraySource", "ChunkedFit", "FileSource", "chunked_em", "incremental_em", "online_em", "open_source",
           "parameter_blending", "reference_model", "write_parquet"]

DEFAULT_CHUNK_ROWS = 100_000


# ------------------------------------------------------------------------------------------------ sources
class Chunk(NamedTuple):
    """Rows read from one place: an (n, columns) float array, where they came from, and the first row's index."""

    rows: np.ndarray
    source: str
    start: int


class ArraySource:
    """Chunks of ``chunk_rows`` rows of an in-memory array or a ``np.memmap`` (only the chunk is read)."""

    def __init__(self, array, chunk_rows: int = DEFAULT_CHUNK_ROWS, name: str = "array"):
        check(chunk_rows, "chunk_rows", "positive integer")
        if not hasattr(array, "shape") or len(array.shape) not in (1, 2) or array.shape[0] == 0:
            raise ValueError("data: expected a non-empty 1-D or 2-D array")
        self.array, self.chunk_rows, self.name = array, int(chunk_rows), name
        self.n_rows = int(array.shape[0])
        self.columns = [f"x{j}" for j in range(1 if len(array.shape) == 1 else array.shape[1])]

    def __iter__(self):
        for start in range(0, self.n_rows, self.chunk_rows):
            rows = np.asarray(self.array[start: start + self.chunk_rows], dtype=float)
            yield Chunk(rows[:, None] if rows.ndim == 1 else rows, self.name, start)

    def pieces(self) -> list:
        """Zero-argument readers, each returning its list of chunks (one reader per chunk here)."""
        return [_Rows(c) for c in self]


class _Rows:
    def __init__(self, chunk):
        self.chunk = chunk

    def __call__(self):
        return [self.chunk]


class FileSource:
    """Chunks of at most ``chunk_rows`` rows of the CSV or Parquet files matching ``pattern`` (a file name or a glob),
    in sorted file order: Parquet by ``pyarrow`` row batches, CSV by ``pandas.read_csv(chunksize=...)``.

    Checked before any pass: the pattern matches files, of one format, every file has the same columns, and the
    chosen ``columns`` (default: every column) exist. Values are checked chunk by chunk as they are read.
    """

    def __init__(self, pattern: str, columns=None, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        check(chunk_rows, "chunk_rows", "positive integer")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("data: expected a file name or a glob pattern")
        paths = sorted(p for p in globmod.glob(pattern) if os.path.isfile(p))
        if not paths:
            raise ValueError(f"data: {pattern} matches no file")
        kinds = {"parquet" if p.endswith(".parquet") else "csv" for p in paths}
        if len(kinds) > 1:
            raise ValueError(f"data: {pattern} matches both CSV and Parquet files")
        self.kind = kinds.pop()
        self.paths, self.chunk_rows = paths, int(chunk_rows)
        headers = [self._header(p) for p in paths]
        for p, h in zip(paths[1:], headers[1:]):
            if h != headers[0]:
                raise ValueError(f"data: the files have different columns: {os.path.basename(paths[0])} has "
                                 f"{', '.join(headers[0])}; {os.path.basename(p)} has {', '.join(h)}")
        if columns is None:
            self.columns = headers[0]
        else:
            self.columns = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
            missing = [c for c in self.columns if c not in headers[0]]
            if missing or not self.columns:
                raise ValueError(f"columns: no column {missing[0] if missing else ''!r} in the files (columns: "
                                 f"{', '.join(headers[0])})")
        self.n_rows = sum(self._rows(p) for p in paths) if self.kind == "parquet" else None

    def _header(self, path) -> list:
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                return [str(c) for c in pq.read_schema(path).names]
            with open(path, newline="", encoding="utf-8") as fh:
                return next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
            raise ValueError(f"data: cannot read {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from None

    @staticmethod
    def _rows(path) -> int:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)

    def __iter__(self):
        for path in self.paths:
            yield from _read_file(path, self.kind, self.columns, self.chunk_rows)

    def pieces(self) -> list:
        return [_FileReader(p, self.kind, self.columns, self.chunk_rows) for p in self.paths]


class _FileReader:
    def __init__(self, path, kind, columns, chunk_rows):
        self.args = (path, kind, columns, chunk_rows)

    def __call__(self):
        return list(_read_file(*self.args))


def _read_file(path, kind, columns, chunk_rows):
    name = os.path.basename(path)
    start = 0
    try:
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
                rows = np.column_stack([batch.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False)
                                        for c in columns])
                yield Chunk(rows, name, start)
                start += rows.shape[0]
        else:
            import pandas as pd

            for frame in pd.read_csv(path, usecols=columns, chunksize=chunk_rows):
                rows = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
                bad = frame[columns].notna().to_numpy() & np.isnan(rows)
                if bad.any():
                    i, j = map(int, np.argwhere(bad)[0])
                    raise ValueError(f"data: column {columns[j]!r} is not numeric (row {start + i} of {name})")
                yield Chunk(rows, name, start)
                start += rows.shape[0]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"data: cannot read {path}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # pyarrow's and pandas' parse errors have no common base class
        if isinstance(exc, ValueError) and str(exc).startswith("data:"):
            raise
        if type(exc).__module__.split(".")[0] in ("pyarrow", "pandas") or isinstance(exc, ValueError):
            raise ValueError(f"data: cannot read {path}: {str(exc).splitlines()[0]}") from None
        raise


class _DaskArraySource:
    """The blocks of a ``dask.array`` (along the rows), each read by the worker holding it."""

    def __init__(self, array):
        if array.ndim not in (1, 2):
            raise ValueError("data: expected a 1-D or 2-D dask array")
        self.array = array if array.ndim == 2 else array[:, None]
        self.array = self.array.rechunk({1: -1})
        self.n_rows = int(self.array.shape[0])
        self.columns = [f"x{j}" for j in range(self.array.shape[1])]
        starts = np.concatenate([[0], np.cumsum(self.array.chunks[0])[:-1]])
        self.starts = [int(s) for s in starts]

    def __iter__(self):
        for block, start in zip(self.array.to_delayed().ravel(), self.starts):
            yield Chunk(np.asarray(block.compute(), dtype=float), "dask array", start)

    def pieces(self) -> list:
        import dask

        return [dask.delayed(_block_chunks)(b, s) for b, s in zip(self.array.to_delayed().ravel(), self.starts)]


def _block_chunks(block, start):
    return [Chunk(np.asarray(block, dtype=float), "dask array", start)]


def open_source(data, columns=None, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """A chunk source: a file name or glob (CSV or Parquet), a NumPy array or memmap, or a ``dask.array``."""
    if isinstance(data, (str, os.PathLike)):
        return FileSource(os.fspath(data), columns, chunk_rows)
    if isinstance(data, (ArraySource, FileSource, _DaskArraySource)):
        return data
    if type(data).__module__.startswith("dask"):
        return _DaskArraySource(data)
    return ArraySource(data, chunk_rows)


# ------------------------------------------------------------------------------------------------ the model
def _sufficient(model, prior: bool, em_options: dict):
    check_model(model)
    check(prior, "prior", "boolean")
    hooks = hooks_for(model)
    math_fn = None if hooks is None else hooks.em_math
    em_math = math_fn(bool(prior), **em_options) if math_fn is not None else None
    if em_math is None or em_math.sufficient is None:
        name = hooks.name if hooks is not None else "this"
        raise ValueError(f"model: the {name} model's EM is not written as sufficient statistics, so it cannot run "
                         "over chunks")
    return hooks, em_math


def reference_model(spec, data, columns=None, chunk_rows: int = DEFAULT_CHUNK_ROWS, **options):
    """``spec.build`` on the first chunk of ``data``: the model that supplies the priors, the start and the shift
    (the first chunk's column means) of EM over all chunks. Returns (model, source).

    The first chunk is checked as every chunk will be: a missing value (NaN) is refused, naming the row and the
    file, unless the model's data kind allows missing entries."""
    source = open_source(data, columns, chunk_rows)
    if spec.data_kind not in ("vector", "matrix", "incomplete"):
        raise ValueError(f"model: the {spec.name} model reads no rows of numbers, so it cannot run over chunks")
    if spec.data_kind == "vector" and len(source.columns) != 1:
        raise ValueError(f"columns: the {spec.name} model reads one column; the data have {len(source.columns)} "
                         f"({', '.join(source.columns)})")
    first = next(iter(source))
    rows = first.rows
    if spec.data_kind != "incomplete":
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            raise ValueError(f"data: row {first.start + int(np.flatnonzero(bad)[0])} of {first.source} has a missing "
                             f"or infinite value (NaN or inf), which the {spec.name} model does not allow")
    kwargs = {"columns": list(source.columns)} if spec.data_kind == "incomplete" else {}
    return spec.build(rows[:, 0] if rows.shape[1] == 1 else rows, **kwargs, **options), source


def _prepared(suff, chunk: Chunk):
    """The chunk validated and prepared by the model; errors name the file and the row."""
    rows = chunk.rows
    if not suff.allows_missing:
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"data: row {chunk.start + i} of {chunk.source} has a missing or infinite value "
                             f"(NaN or inf), which this model does not allow")
    try:
        return suff.prepare(rows)
    except ValueError as exc:
        raise ValueError(f"data: rows {chunk.start} to {chunk.start + rows.shape[0] - 1} of {chunk.source}: "
                         f"{exc}") from None


def _add(total, part):
    return dict(part) if total is None else {key: total[key] + part[key] for key in total}


class _Progress:
    """One line on stderr, rewritten after every chunk: what is running, chunks and rows done."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, what: str, chunks: int, rows: int, total_rows):
        if self.stream is None:
            return
        of = f"/{total_rows:,}" if total_rows else ""
        self.stream.write(f"\r{what}: chunk {chunks}, {rows:,}{of} rows   ")
        self.stream.flush()

    def done(self):
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _progress(progress):
    return _Progress(sys.stderr if progress is True else (progress or None))


class _SerialPass:
    """The statistics of every chunk at ``params``, read in order and added in order."""

    def __init__(self, suff, source, progress):
        self.suff, self.source, self.progress = suff, source, progress
        self.passes = 0
        self.rows = 0

    def chunks(self, params):
        self.passes += 1
        rows = 0
        for i, chunk in enumerate(self.source):
            s = self.suff.chunk_stats(params, _prepared(self.suff, chunk))
            rows += chunk.rows.shape[0]
            self.progress(f"pass {self.passes}", i + 1, rows, self.source.n_rows)
            yield s
        self.rows += rows

    def __call__(self, params):
        total = None
        for s in self.chunks(params):
            total = _add(total, s)
        return total


def _load_chunks(suff, chunks):
    """On a worker: the piece's chunks prepared once, kept there with their row counts."""
    return [(_prepared(suff, c), c.rows.shape[0]) for c in chunks]


def _load_piece(suff, reader):
    return _load_chunks(suff, reader())


def _piece_stats(chunk_stats, params, prepared):
    return [chunk_stats(params, data) for data, _ in prepared]


class _DaskPass:
    """The same statistics computed by the workers holding the chunks: each piece (file, block) is read and
    prepared once by a worker and kept there; a pass sends the parameters and gathers the chunks' statistics, which
    the client adds in the serial order."""

    def __init__(self, suff, source, client, progress):
        self.suff, self.client, self.progress, self.source = suff, client, progress, source
        import dask

        # only what the workers need: the preparation and the E-step, never the pm.Model
        worker_suff = replace(suff, from_stats=None, expected_loglik=None)
        pieces = source.pieces()
        if isinstance(source, _DaskArraySource):
            self.loaded = [client.compute(dask.delayed(_load_chunks)(worker_suff, p)) for p in pieces]
        else:
            self.loaded = [client.submit(_load_piece, worker_suff, p, pure=False) for p in pieces]
        self.piece_rows = client.gather([client.submit(_rows_of, f, pure=False) for f in self.loaded])
        self.passes = 0
        self.rows = 0

    def __call__(self, params):
        self.passes += 1
        futures = [self.client.submit(_piece_stats, self.suff.chunk_stats, params, f, pure=False)
                   for f in self.loaded]
        total, chunks, rows = None, 0, 0
        for fut, n in zip(futures, self.piece_rows):  # in order, whatever order they finish in
            for s in fut.result():
                total = _add(total, s)
                chunks += 1
            rows += n
            self.progress(f"pass {self.passes} (dask)", chunks, rows, self.source.n_rows)
        self.rows += rows
        return total


def _rows_of(prepared):
    return int(sum(n for _, n in prepared))


def chunked_math(math: EMMath, stats_pass) -> EMMath:
    """``math``'s EM with the E-step summed over chunks: ``stats_pass(params)`` returns the summed statistics
    (one pass over the data), cached so that the objective at the new parameters and the next step share it."""
    suff = math.sufficient
    cache = {}

    def totals(p):
        key = id(p)
        if key not in cache:
            cache.clear()
            cache[key] = (p, stats_pass(p))
        return cache[key][1]

    return replace(math, step=lambda p: suff.from_stats(totals(p), p), loglik=lambda p: float(totals(p)["loglik"]),
                   extras=None, scale=None)


# ------------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class ChunkedFit:
    """What a fit over chunks found.

    method : ``"em"``, ``"online_em"`` or ``"incremental_em"``.
    params : the estimate (the model's public parameters, components in the model's order).
    loglik : the observed-data log-likelihood of all rows at ``params`` (one pass; NaN when not computed).
    trace : per iteration (exact EM: the objective), per epoch (online EM: the rows' log-likelihood summed as the
        batches went by, each at the parameters of that moment) or per sweep (incremental EM: the free energy).
    n_iter : iterations, epochs or sweeps.  converged : the monitor's verdict (online EM: True after its epochs).
    time_s : seconds.  rows : rows per pass.  rows_read : rows read in all.
    info : method-specific extras (free energy per visit, held-out log-likelihoods, the shift, ...).
    """

    method: str
    params: dict
    loglik: float
    trace: np.ndarray
    n_iter: int
    converged: bool
    time_s: float
    rows: int
    rows_read: int
    info: dict = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.time_s if self.time_s > 0 else float("nan")


def _start(math: EMMath, init, seed):
    if init is not None:
        if not isinstance(init, dict):
            raise ValueError("init: expected a dict of starting values keyed by parameter name")
        return math.check_init(dict(init)) if math.check_init else dict(init)
    return math.init(as_generator(seed))


def chunked_em(model, data, *, columns=None, chunk_rows: int = DEFAULT_CHUNK_ROWS, prior: bool = False, init=None,
               seed=None, tol: float = 1e-10, param_tol: float = 1e-9, max_iter: int = 5000, monitor=None,
               client=None, keep_path: bool = False, progress=False, **em_options) -> ChunkedFit:
    """Exact EM over chunks: every iteration one pass over ``data``, the chunks' statistics added in a fixed
    order, one M-step; driven by :func:`inference.em.run_em` (its monitor and monotonicity guard).

    Parameters
    ----------
    model : a ``pm.Model`` of a registered model built on a sample of the data (:func:`reference_model`): it gives
        the priors, the start (``init``/``seed``) and the centring shift (``em_options`` ``shift=`` overrides it).
    data : a file name or glob (CSV, Parquet), an array or memmap, or a ``dask.array``.
    columns, chunk_rows : which columns to read; the rows per chunk (at most; Parquet batches stop at row groups).
    prior : climb the log posterior (MAP-EM) instead of the log-likelihood.
    client : a ``distributed.Client``; the chunks' statistics are then computed by the workers holding the data.
    progress : True for a progress line on stderr (or a stream).
    """
    check(chunk_rows, "chunk_rows", "positive integer")
    hooks, math = _sufficient(model, prior, em_options)
    source = open_source(data, columns, chunk_rows)
    monitor = ConvergenceMonitor(tol, param_tol, max_iter) if monitor is None else monitor
    bar = _progress(progress)
    t0 = time.perf_counter()
    passes = _DaskPass(math.sufficient, source, client, bar) if client is not None else \
        _SerialPass(math.sufficient, source, bar)
    run = run_em(chunked_math(math, passes), _start(math, init, seed), monitor, keep_path=keep_path)
    bar.done()
    params = math.order(run.params) if math.order is not None else run.params
    info = {"objective": "log density (no Jacobian)" if prior else "log-likelihood", "loglik_trace": run.loglik_trace,
            "passes": passes.passes}
    if keep_path:
        info["path"] = run.path
    return ChunkedFit("em", params, float(run.state.loglik), run.trace, run.state.n_iter, run.converged,
                      time.perf_counter() - t0, passes.rows // max(passes.passes, 1), passes.rows, info)


def _per_row(s):
    n = float(s["n"])
    return {key: np.asarray(v, dtype=float) / n for key, v in s.items() if key != "loglik"}


def online_em(model, data, *, columns=None, batch_rows: int = 1000, epochs: int = 1, kappa: float = 0.6,
              t0: float = 1.0, polyak: bool = True, average_from: float = 0.5, prior: bool = False, init=None,
              seed=None, holdout=None, final_pass: bool = True, progress=False, **em_options) -> ChunkedFit:
    """Online EM (Cappe & Moulines 2009) over mini-batches of ``batch_rows`` rows, ``epochs`` passes.

    After batch t (t = 0, 1, ...) the per-row statistics s move towards the batch's, s <- s + gamma_t (s_t - s) with
    gamma_0 = 1 and gamma_t = (t + t0)^-kappa, kappa in (0.5, 1]; the parameters are theta = M(n s), n the rows seen
    (the whole data after the first epoch; the MLE's M-step does not depend on n, the MAP's does). With ``polyak``
    the estimate is the running average of the iterates after the first ``average_from`` of all rows (Polyak &
    Juditsky 1992), which makes online EM as efficient as the MLE (Cappe & Moulines, Theorem 2). The rows are taken
    in the order stored: they should be in random order (as :func:`write_parquet` writes them).

    The trace holds, per epoch, the log-likelihood of the rows summed as the batches went by (each batch at the
    parameters of that moment: free, but not one parameter's value); ``holdout`` (rows, as the data) adds the
    held-out log-likelihood at the current estimate after every epoch to ``info["holdout_loglik"]``; ``final_pass``
    computes the log-likelihood of all rows at the estimate (one more pass).
    """
    check(batch_rows, "batch_rows", "positive integer")
    check(epochs, "epochs", "positive integer")
    if not (isinstance(kappa, (int, float)) and 0.5 < kappa <= 1):
        raise ValueError(f"kappa: expected a number in (0.5, 1], got {kappa!r}")
    check(t0, "t0", "non-negative number")
    check(polyak, "polyak", "boolean")
    if not (isinstance(average_from, (int, float)) and 0 <= average_from < 1):
        raise ValueError(f"average_from: expected a fraction in [0, 1), got {average_from!r}")
    hooks, math = _sufficient(model, prior, em_options)
    suff = math.sufficient
    source = open_source(data, columns, batch_rows)
    held = suff.prepare(np.asarray(holdout, dtype=float)) if holdout is not None else None
    bar = _progress(progress)
    t_start = time.perf_counter()
    theta = _start(math, init, seed)
    s, t, seen, n_total = None, 0, 0, source.n_rows
    average, n_avg = None, 0
    trace, held_ll = [], []
    for epoch in range(epochs):
        epoch_ll, rows = 0.0, 0
        for i, chunk in enumerate(source):
            batch = suff.chunk_stats(theta, _prepared(suff, chunk))
            epoch_ll += batch["loglik"]
            rows += chunk.rows.shape[0]
            seen += chunk.rows.shape[0]
            gamma = 1.0 if s is None else (t + t0) ** -kappa
            s = _per_row(batch) if s is None else {k: v + gamma * (_per_row(batch)[k] - v) for k, v in s.items()}
            t += 1
            n_scale = seen if n_total is None or epoch == 0 else n_total
            theta = suff.from_stats({k: v * n_scale for k, v in s.items()}, theta)
            if polyak and n_total is not None and seen > average_from * epochs * n_total:
                n_avg += 1
                average = dict(theta) if average is None else \
                    {k: average[k] + (np.asarray(theta[k]) - average[k]) / n_avg for k in average}
            bar(f"online EM epoch {epoch + 1}/{epochs}", i + 1, rows, n_total)
        n_total = rows
        trace.append(epoch_ll)
        if held is not None:
            held_ll.append(float(suff.chunk_stats(average if average is not None else theta, held)["loglik"]))
    estimate = average if (polyak and average is not None) else theta
    rows_read = seen
    loglik = float("nan")
    if final_pass:
        passes = _SerialPass(suff, source, bar)
        loglik = float(passes(estimate)["loglik"])
        rows_read += passes.rows
    bar.done()
    params = math.order(estimate) if math.order is not None else estimate
    info = {"steps": t, "kappa": kappa, "t0": t0, "polyak": bool(polyak), "averaged_iterates": n_avg,
            "holdout_loglik": held_ll, "last_iterate": theta}
    return ChunkedFit("online_em", params, loglik, np.array(trace), epochs, True, time.perf_counter() - t_start,
                      n_total, rows_read, info)


def incremental_em(model, data, *, columns=None, chunk_rows: int = DEFAULT_CHUNK_ROWS, prior: bool = False,
                   init=None, seed=None, tol: float = 1e-10, param_tol: float = 1e-9, max_iter: int = 1000,
                   monitor=None, progress=False, **em_options) -> ChunkedFit:
    """Incremental EM (Neal & Hinton 1998): the statistics S_b of every chunk kept, their sum S; visiting chunk b
    replaces S_b by its statistics at the current parameters, then theta = M(S).

    Neal and Hinton's free energy F(q, theta) = sum_b E_q_b[log p(x_b, z_b | theta)] + H(q_b) is raised by both the
    visit (q_b becomes the posterior at theta, which maximises F in q_b) and the M-step (which maximises it in
    theta), and F <= loglik(theta), with equality once every q_b is the posterior at theta. Since the expected
    complete-data log-likelihood Q is linear in the statistics, F(theta) = sum_b (ll_b - Q(S_b, theta_b))
    + Q(S, theta), with ll_b the chunk's log-likelihood and theta_b the parameters when it was visited; F (plus the
    log prior for MAP) is checked after every visit (an EMDecreaseError when it drops beyond round-off) and kept in
    ``info["free_energy"]``. One sweep visits every chunk in order and is one step of :func:`inference.em.run_em`,
    whose monitor and guard run on F per sweep. ``loglik`` is the log-likelihood of all rows at the end (one pass).
    """
    check(chunk_rows, "chunk_rows", "positive integer")
    hooks, math = _sufficient(model, prior, em_options)
    suff = math.sufficient
    source = open_source(data, columns, chunk_rows)
    monitor = ConvergenceMonitor(tol, param_tol, max_iter) if monitor is None else monitor
    bar = _progress(progress)
    t_start = time.perf_counter()
    kept, const, free_energy = [], [], []
    state = {"S": None, "F": None, "rows": 0, "sweeps": 0}

    def prior_at(p):
        return math.log_prior(p) if math.log_prior is not None else 0.0

    def energy(p):
        return float(sum(const) + suff.expected_loglik(state["S"], p) + prior_at(p))

    def first_pass(p):
        for i, chunk in enumerate(source):
            s = suff.chunk_stats(p, _prepared(suff, chunk))
            kept.append(s)
            const.append(s["loglik"] - suff.expected_loglik(s, p))
            state["S"] = _add(state["S"], s)
            state["rows"] += chunk.rows.shape[0]
            bar("incremental EM: first pass", i + 1, state["rows"], source.n_rows)
        state["F"] = energy(p)
        free_energy.append(state["F"])
        return state["F"] - prior_at(p)

    def sweep(p):
        state["sweeps"] += 1
        rows = 0
        for b, chunk in enumerate(source):
            s = suff.chunk_stats(p, _prepared(suff, chunk))
            state["S"] = {k: state["S"][k] - kept[b][k] + s[k] for k in s}
            kept[b], const[b] = s, s["loglik"] - suff.expected_loglik(s, p)
            p = suff.from_stats(state["S"], p)
            new = energy(p)
            if math.exact and new < state["F"] - 1e-9 * max(1.0, abs(state["F"])):
                raise EMDecreaseError(f"incremental EM lowered the free energy from {state['F']!r} to {new!r} "
                                      f"at chunk {b} of sweep {state['sweeps']}")
            state["F"] = new
            free_energy.append(new)
            rows += chunk.rows.shape[0]
            bar(f"incremental EM sweep {state['sweeps']}", b + 1, rows, source.n_rows)
        state["rows"] += rows
        return p

    def loglik(p):  # the free energy without the prior: the lower bound on loglik that each visit raises
        return first_pass(p) if state["S"] is None else energy(p) - prior_at(p)

    run = run_em(replace(math, step=sweep, loglik=loglik, extras=None, scale=None), _start(math, init, seed), monitor)
    final = _SerialPass(suff, source, bar)
    ll = float(final(run.params)["loglik"])
    bar.done()
    params = math.order(run.params) if math.order is not None else run.params
    info = {"free_energy": np.array(free_energy), "objective": "free energy (Neal & Hinton)"}
    n = state["rows"] // max(state["sweeps"] + 1, 1)
    return ChunkedFit("incremental_em", params, ll, run.trace, run.state.n_iter, run.converged,
                      time.perf_counter() - t_start, n, state["rows"] + final.rows, info)


def parameter_blending(model, data, *, columns=None, batch_rows: int = 1000, epochs: int = 1, kappa: float = 0.6,
                       t0: float = 1.0, init=None, seed=None, **em_options) -> ChunkedFit:
    """The "stochastic EM: mini-batches" sketch of the classic slides, kept as the baseline online EM improves on:
    every batch's own M-step M(s_batch(theta)) is blended into the parameters, theta <- theta + gamma_t
    (M(s_batch(theta)) - theta), with the same batches and rates as :func:`online_em`. Its fixed point solves
    E[M(s_batch(theta))] = theta, not M(E[s_batch(theta)]) = theta (the MLE's, for the average over batches of the
    data): M is a ratio of statistics, so the answer is biased by O(1 / batch_rows) and is not the MLE."""
    check(batch_rows, "batch_rows", "positive integer")
    check(epochs, "epochs", "positive integer")
    hooks, math = _sufficient(model, False, em_options)
    suff = math.sufficient
    source = open_source(data, columns, batch_rows)
    t_start = time.perf_counter()
    theta = _start(math, init, seed)
    t, seen = 0, 0
    for _ in range(epochs):
        for chunk in source:
            batch = suff.chunk_stats(theta, _prepared(suff, chunk))
            new = suff.from_stats(batch, theta)
            gamma = 1.0 if t == 0 else (t + t0) ** -kappa
            theta = {k: np.asarray(theta[k]) + gamma * (np.asarray(new[k]) - np.asarray(theta[k])) for k in theta}
            t += 1
            seen += chunk.rows.shape[0]
    params = math.order(theta) if math.order is not None else theta
    return ChunkedFit("parameter_blending", params, float("nan"), np.array([]), epochs, True,
                      time.perf_counter() - t_start, seen // epochs, seen, {"steps": t})


# ------------------------------------------------------------------------------------------------ test data
def write_parquet(spec, params: dict, n: int, path: str, rows_per_file: int = 1_000_000, seed: int = 0,
                  columns=None) -> list[str]:
    """Write ``n`` rows drawn from ``spec.simulate(params, ...)`` (the model's own declaration) as Parquet files
    ``path/part-00000.parquet``, ... of ``rows_per_file`` rows each, one file in memory at a time. File i draws
    with the seed ``SeedSequence([seed, i])``, so the data do not depend on anything but (params, n, rows_per_file,
    seed). Returns the file names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check(n, "n", "positive integer")
    check(rows_per_file, "rows_per_file", "positive integer")
    check(seed, "seed", "non-negative integer")
    os.makedirs(path, exist_ok=True)
    written = []
    for i in range(math.ceil(n / rows_per_file)):
        rows = min(rows_per_file, n - i * rows_per_file)
        file_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        x = np.asarray(spec.simulate(params, rows, file_seed), dtype=float)
        x = x[:, None] if x.ndim == 1 else x
        names = list(columns) if columns is not None else (["y"] if x.shape[1] == 1 else
                                                           [f"x{j}" for j in range(x.shape[1])])
        if len(names) != x.shape[1]:
            raise ValueError(f"columns: expected {x.shape[1]} names, got {len(names)}")
        target = os.path.join(path, f"part-{i:05d}.parquet")
        pq.write_table(pa.table({c: x[:, j] for j, c in enumerate(names)}), target)
        written.append(target)
    return written
