"""Image segmentation: a Gaussian mixture fitted by the zoo's EM to an image's Lab colours."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

__all__ = ["load_image", "segment"]


def load_image(source="astronaut") -> np.ndarray:
    """An RGB image as floats in [0, 1]: ``"astronaut"`` (shipped with scikit-image) or a file path."""
    from skimage import color, data, io

    if source == "astronaut":
        img = data.astronaut()
    else:
        if not os.path.isfile(source):
            raise ValueError(f"--image: no such file: {source}")
        try:
            img = io.imread(source)
        except Exception as exc:  # imageio raises many types for unreadable files
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"--image: cannot read {source} as an image: {reason}") from None
    img = np.asarray(img)
    if img.ndim == 2:
        img = color.gray2rgb(img)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 1:
        raise ValueError(f"--image: expected an RGB image, got an array of shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype.kind in "ui":
        return img.astype(float) / np.iinfo(img.dtype).max
    return np.clip(img.astype(float), 0.0, 1.0)


def segment(rgb, k: int = 5, *, seed=0, max_iter: int = 200, reg_covar: float = 1e-3, progress: bool = False) -> dict:
    """Fit a K-component full-covariance mixture to the Lab colours of ``rgb`` with the zoo's EM.

    Photographs hold many identical pixels (saturated white or black), onto which a component collapses without a
    ridge; ``reg_covar`` (in squared Lab units, 1e-3 by default) keeps every covariance regular.

    Returns the labels (H x W), the segmented image (each pixel painted with its component's mean colour, RGB) and
    the EM result, without standard errors (NaN ``sd``): a segmentation needs the labels and the means, and the
    observed information of a mixture over every pixel took longer to compile than EM took to run.
    """
    from skimage import color

    from inference import em
    from models import gaussian_mixture

    lab = color.rgb2lab(rgb)
    X = lab.reshape(-1, 3)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"--k: expected a positive number of components, got {k!r}")
    distinct = np.unique(X, axis=0).shape[0] if X.shape[0] <= 2_000_000 else X.shape[0]
    if k > distinct:
        raise ValueError(f"--k: expected at most as many components as distinct colours ({distinct}), got {k}")
    model = gaussian_mixture.build(X, k=k)
    result = em(model, seed=seed, max_iter=max_iter, tol=1e-9, param_tol=1e-6, progress=progress,
                reg_covar=reg_covar, callback=_progress_line(max_iter) if progress else None, standard_errors=False)
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    resp = result.info["responsibilities"]
    labels = np.argmax(resp, axis=1).reshape(rgb.shape[:2])
    means_rgb = color.lab2rgb(result.params["mu"][None, :, :])[0]
    return {"labels": labels, "segmented": means_rgb[labels], "result": result}


def _progress_line(max_iter):
    """EM's iteration and log-likelihood on one line of a terminal (redrawn), or a line every 10 seconds otherwise."""
    tty = sys.stderr.isatty()
    last = [time.monotonic()]

    def show(state, info):
        now = time.monotonic()
        if tty:
            print(f"\rEM iteration {state.n_iter}/{max_iter}: log-likelihood {state.loglik:.6f}", end="",
                  file=sys.stderr, flush=True)
        elif now - last[0] >= 10:
            print(f"EM iteration {state.n_iter}/{max_iter}: log-likelihood {state.loglik:.6f}", file=sys.stderr,
                  flush=True)
            last[0] = now

    return show
