"""Figures for topic models: the top words of every topic, per estimator."""

from __future__ import annotations

import numpy as np

__all__ = ["top_words_figure"]


def top_words_figure(estimates: dict, vocab, n_words: int = 10, *, width: float = 2.2, height: float = 2.4):
    """A grid of horizontal bar charts: one row per estimator, one column per topic, bars the ``n_words`` most
    probable words of the topic with their probabilities (largest on top).

    estimates : ``{estimator name: phi}`` with phi a k x V array of topic-word probabilities (every estimator the same
        k; match the topics first, for example with ``models.lda.match_topics``, so columns line up).
    vocab : the V words.
    Returns a matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not estimates:
        raise ValueError("estimates: expected at least one estimator's topics, got none")
    phis = {name: np.asarray(phi, dtype=float) for name, phi in estimates.items()}
    shapes = {phi.shape for phi in phis.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"estimates: expected k x V arrays of one shape, got shapes {sorted(shapes)}")
    k, V = next(iter(shapes))
    if len(vocab) != V:
        raise ValueError(f"vocab: expected {V} words, got {len(vocab)}")
    fig, axes = plt.subplots(len(phis), k, figsize=(width * k, height * len(phis)), squeeze=False,
                             constrained_layout=True)
    for r, (name, phi) in enumerate(phis.items()):
        for j in range(k):
            ax = axes[r, j]
            top = np.argsort(-phi[j], kind="stable")[:n_words][::-1]
            ax.barh(np.arange(top.size), phi[j, top], color=f"C{r}")
            ax.set_yticks(np.arange(top.size), [vocab[i] for i in top], fontsize=7)
            ax.tick_params(axis="x", labelsize=6)
            if r == 0:
                ax.set_title(f"topic {j}", fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=9)
    return fig
