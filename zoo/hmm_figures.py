"""Figures for the hidden Markov model: the series coloured by its decoded state."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_states"]


def plot_states(y, states, means, ax=None, x=None):
    """The series ``y`` as points coloured by ``states`` (one colour per state), with the mean of the state at each
    step (``means[states[t]]``: the rates or the means of the fit) as a step line. Returns the Figure.

    ``x`` gives the positions of the observations (years, times); default 0..T-1.
    """
    import matplotlib.pyplot as plt

    y = np.asarray(y, dtype=float)
    states = np.asarray(states, dtype=int)
    means = np.atleast_1d(np.asarray(means, dtype=float))
    if y.ndim != 1 or states.shape != y.shape:
        raise ValueError(f"states: expected one state per observation ({y.size}), got shape {states.shape}")
    if states.size and (states.min() < 0 or states.max() >= means.size):
        raise ValueError(f"states: expected labels 0..{means.size - 1}, got {states.min()}..{states.max()}")
    x = np.arange(y.size) if x is None else np.asarray(x)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.5))
    else:
        fig = ax.figure
    ax.plot(x, y, color="0.75", lw=0.8, zorder=1)
    colours = plt.get_cmap("tab10")
    for j in range(means.size):
        on = states == j
        ax.scatter(x[on], y[on], s=12, color=colours(j % 10), zorder=2, label=f"state {j} (mean {means[j]:.3g})")
    ax.step(x, means[states], where="mid", color="black", lw=1.2, zorder=3, label="state mean")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize="small", frameon=False)
    return fig
