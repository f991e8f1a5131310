"""Reading a user's corpus as a document-term matrix for the LDA model.

Two formats:

* a text file with one document per line, tokenised and counted by scikit-learn's ``CountVectorizer`` (English stop
  words removed by default; words in fewer than ``min_df`` documents or in more than ``max_df`` of them dropped);
* a CSV file of counts with one row per document and the vocabulary as its header.

Both return ``(X, vocab)``: a scipy.sparse CSR matrix of int64 counts (documents x words) and the list of words.
Documents left without any word (blank lines, or only stop words) are dropped, and their line numbers reported in
``dropped``; bad input is refused with a ValueError naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["Corpus", "read_dtm_csv", "read_text"]


@dataclass(frozen=True)
class Corpus:
    """A document-term matrix, its vocabulary, and the (0-based) rows of the file that were dropped as empty."""

    X: sp.csr_matrix
    vocab: list
    dropped: list = field(default_factory=list)


def _drop_empty(X: sp.csr_matrix, vocab: list, name: str) -> Corpus:
    lengths = np.asarray(X.sum(axis=1)).ravel()
    keep = lengths > 0
    if not keep.any():
        raise ValueError(f"{name}: no document has any word left after tokenising and filtering")
    return Corpus(sp.csr_matrix(X[keep], dtype=np.int64), list(vocab), np.flatnonzero(~keep).tolist())


def read_text(path, *, min_df=1, max_df=1.0, stop_words="english", encoding: str = "utf-8") -> Corpus:
    """One document per line of the text file ``path``, counted with ``CountVectorizer``.

    min_df, max_df : as in CountVectorizer: an int is a number of documents, a float in (0, 1] a proportion.
    stop_words : "english" (scikit-learn's list), a list of words, or None.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    path = Path(path)
    for name, value in (("min_df", min_df), ("max_df", max_df)):
        ok = (isinstance(value, (int, np.integer)) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
        if isinstance(value, bool) or not ok:
            raise ValueError(f"{name}: expected a document count >= 1 or a proportion in (0, 1], got {value!r}")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except FileNotFoundError:
        raise ValueError(f"path: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"path: cannot read {path} as {encoding} text: {exc}") from None
    if not any(line.strip() for line in lines):
        raise ValueError(f"path: {path} has no documents (every line is blank)")
    vectorizer = CountVectorizer(stop_words=stop_words, min_df=min_df, max_df=max_df)
    try:
        X = vectorizer.fit_transform(lines)
    except ValueError as exc:  # empty vocabulary, or min_df / max_df leaving no word
        raise ValueError(f"min_df/max_df: no word is left in {path} ({exc})") from None
    return _drop_empty(sp.csr_matrix(X), vectorizer.get_feature_names_out().tolist(), "path")


def read_dtm_csv(path) -> Corpus:
    """A document-term CSV: the header is the vocabulary, each row a document's non-negative integer counts."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise ValueError(f"path: no such file: {path}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"path: cannot read {path} as CSV: {reason}") from None
    if frame.shape[0] == 0:
        raise ValueError(f"path: {path} has a header but no rows")
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"path: expected counts in every column, column {bad[0]!r} is not numeric")
    values = frame.to_numpy(dtype=float)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"path: expected counts, found missing or infinite values in {path}")
    if np.any(values < 0) or np.any(values != np.round(values)):
        row, col = np.argwhere((values < 0) | (values != np.round(values)))[0]
        raise ValueError(f"path: expected non-negative integer counts, found {values[row, col]:g} in row {row}, "
                         f"column {frame.columns[col]!r}")
    return _drop_empty(sp.csr_matrix(values.astype(np.int64)), [str(c) for c in frame.columns], "path")
