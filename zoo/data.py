"""Reading a user's data file into the data a model's ``build`` takes, by the model's data kind.

Every problem is a ValueError naming the command-line argument (``--data``, ``--column``, ...) in one line, raised
before any estimator runs.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import pandas as pd

from inference.base import Example

__all__ = ["KIND_OPTIONS", "example_from_file", "read_table"]

# The command-line options each data kind reads (besides --data itself).
KIND_OPTIONS = {
    "vector": ("column",),
    "matrix": ("columns",),
    "incomplete": ("columns",),
    "design": ("target", "features"),
    "documents": ("min_df", "max_df"),
}
OPTION_HELP = {
    "column": "the column holding the observations (default: the only numeric column)",
    "columns": "comma-separated columns (default: every numeric column)",
    "target": "the outcome column (two distinct values, mapped to 0/1 in sorted order)",
    "features": "comma-separated feature columns (default: every other numeric column)",
    "min_df": "text files: drop words in fewer documents than this count (or proportion, with a point) (default 1)",
    "max_df": "text files: drop words in more documents than this count (or proportion) (default 1.0: none)",
}


def read_table(path) -> pd.DataFrame:
    """A CSV (or Parquet, by its ``.parquet`` ending) file as a DataFrame; ValueError naming ``--data`` when it is
    missing, unreadable, empty, or names a column twice."""
    if not isinstance(path, str) or not path:
        raise ValueError("--data: expected a file name")
    if not os.path.exists(path):
        raise ValueError(f"--data: no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"--data: {path} is a folder, expected a file")
    try:
        if path.endswith(".parquet"):
            frame = pd.read_parquet(path)
            header = [str(c) for c in frame.columns]
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"--data: cannot read {path} as {'Parquet' if path.endswith('.parquet') else 'CSV'}: "
                         f"{reason}") from None
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise ValueError(f"--data: {path} names column {dup[0]!r} more than once")
    if frame.shape[0] == 0:
        raise ValueError(f"--data: {path} has a header but no rows")
    return frame


def _names(value, what) -> list[str]:
    names = [c.strip() for c in value.split(",")] if isinstance(value, str) else list(value)
    if not names or any(not n for n in names):
        raise ValueError(f"{what}: expected a comma-separated list of column names")
    dup = [n for n in names if names.count(n) > 1]
    if dup:
        raise ValueError(f"{what}: column {dup[0]!r} is named twice")
    return names


def _numeric(frame, names, what, allow_missing=False):
    for c in names:
        if c not in frame.columns:
            raise ValueError(f"{what}: no column {c!r} in the file (columns: {', '.join(map(str, frame.columns))})")
        if allow_missing and not frame[c].notna().any():
            raise ValueError(f"{what}: column {c!r} is entirely missing")
        if not pd.api.types.is_numeric_dtype(frame[c]):
            raise ValueError(f"{what}: column {c!r} is not numeric")


def _finite(values, what, names):
    try:
        arr = values.astype(float)
    except (OverflowError, ValueError):
        raise ValueError(f"{what}: values too large for a float") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1) if arr.ndim == 2 else bad)[0])
        rows = int((bad.any(axis=1) if arr.ndim == 2 else bad).sum())
        raise ValueError(f"{what}: expected finite values, {rows} rows have NaN or inf (first: row {i})")
    return arr


def read_vector(frame, column=None):
    if column is None:
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if len(numeric) != 1:
            raise ValueError(f"--column: expected the name of the column to use; the file has {len(numeric)} "
                             f"numeric columns ({', '.join(map(str, numeric)) or 'none'})")
        column = numeric[0]
    _numeric(frame, [column], "--column")
    return _finite(frame[column].to_numpy(), f"--data: column {column!r}", [column]), {}


def read_matrix(frame, columns=None):
    if columns is None:
        names = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if not names:
            raise ValueError("--columns: the file has no numeric column")
    else:
        names = _names(columns, "--columns")
        _numeric(frame, names, "--columns")
    X = _finite(frame[names].to_numpy(), "--data", names)
    if X.shape[0] > 1:
        const = np.flatnonzero(np.ptp(X, axis=0) == 0)
        if const.size:
            raise ValueError(f"--data: column {names[const[0]]!r} is constant")
    return (X[:, 0] if X.shape[1] == 1 else X), {}


def read_incomplete(frame, columns=None):
    if columns is None:
        all_na = [c for c in frame.columns if not frame[c].notna().any()]
        if all_na:
            raise ValueError(f"--data: column {all_na[0]!r} is entirely missing")
        names = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        if not names:
            raise ValueError("--data: the file has no numeric column")
    else:
        names = _names(columns, "--columns")
        _numeric(frame, names, "--columns", allow_missing=True)
    X = frame[names].to_numpy(dtype=float)
    if np.isinf(X).any():
        i, j = map(int, np.argwhere(np.isinf(X))[0])
        raise ValueError(f"--data: column {names[j]!r} has an infinite value (row {i}); missing entries must be "
                         "empty cells or NA")
    return X, {"columns": [str(c) for c in names]}


def read_design(frame, target=None, features=None):
    if target is None:
        raise ValueError("--target: expected the name of the outcome column")
    if target not in frame.columns:
        raise ValueError(f"--target: no column {target!r} in the file (columns: {', '.join(map(str, frame.columns))})")
    if features is None:
        names = [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])]
        if not names:
            raise ValueError("--features: the file has no numeric column besides the target")
    else:
        names = _names(features, "--features")
        if target in names:
            raise ValueError(f"--features: {target!r} is the target")
        _numeric(frame, names, "--features")
    labels = frame[target]
    if labels.isna().any():
        raise ValueError(f"--target: column {target!r} has missing values")
    levels = sorted(pd.unique(labels), key=lambda v: (str(type(v)), v))
    if len(levels) != 2:
        raise ValueError(f"--target: expected exactly two distinct values in {target!r}, found {len(levels)}")
    y = labels.map({levels[0]: 0, levels[1]: 1}).to_numpy(dtype=float)
    X = frame[names].to_numpy(dtype=float)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise ValueError(f"--features: expected finite values, feature {names[j]!r} has NaN or inf (first at row {i})")
    note = f"target {target!r}: {levels[0]!r} -> 0, {levels[1]!r} -> 1"
    return (X, y), {"feature_names": [str(c) for c in names], "_mapping": note}


READERS = {"vector": read_vector, "matrix": read_matrix, "incomplete": read_incomplete, "design": read_design}


def _df(value, name, default):
    if value is None:
        return default
    text = str(value).strip()
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: expected a document count or a proportion, got {value!r}") \
            from None


def read_documents(path, min_df=None, max_df=None) -> Example:
    """A corpus: a ``.csv`` file is a document-term matrix (the header the words), any other file text with one
    document per line (CountVectorizer, English stop words). A fifth of the documents is kept out of the fit for
    held-out perplexity (``extra["held_out"]``)."""
    from models.lda import HELD_OUT, hold_out

    from .documents import read_dtm_csv, read_text

    if not os.path.isfile(path):
        raise ValueError(f"--data: no such file: {path}")
    try:
        if path.endswith(".csv"):
            if min_df is not None or max_df is not None:
                raise ValueError("--min-df/--max-df: apply to text files only, not to a document-term CSV")
            corpus = read_dtm_csv(path)
        else:
            corpus = read_text(path, min_df=_df(min_df, "min_df", 1), max_df=_df(max_df, "max_df", 1.0))
        fitted, held = hold_out(corpus.X, HELD_OUT, 0)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        for old, new in (("path:", "--data:"), ("min_df/max_df:", "--min-df/--max-df:"), ("min_df:", "--min-df:"),
                         ("max_df:", "--max-df:"), ("fraction:", "--data:"), ("X:", "--data:")):
            if message.startswith(old):
                message = new + message[len(old):]
                break
        raise ValueError(message) from None
    return Example(fitted, source=os.path.basename(path), extra={"vocab": corpus.vocab, "held_out": held})


def example_from_file(spec, path, *, frame=None, **options) -> Example:
    """The data of ``path`` for model ``spec``: the data-kind options (``column``, ``columns``, ``target``,
    ``features``) pick the columns; the model's own options (``k``, ``standardize``) go to its ``build``."""
    if spec.data_kind == "documents":
        kind_opts = {k: options.pop(k) for k in KIND_OPTIONS["documents"] if k in options}
        example = read_documents(path, **kind_opts)
        return Example(example.data, build_kwargs=options, source=example.source, extra=example.extra)
    if spec.data_kind not in READERS:
        raise ValueError(f"--data: the {spec.name} model reads no data files")
    frame = read_table(path) if frame is None else frame
    kind_opts = {k: options.pop(k) for k in KIND_OPTIONS[spec.data_kind] if k in options}
    data, build_kwargs = READERS[spec.data_kind](frame, **kind_opts)
    mapping = build_kwargs.pop("_mapping", None)
    return Example(data, build_kwargs={**build_kwargs, **options}, source=os.path.basename(path),
                   extra={"mapping": mapping} if mapping else {})
