"""Property-based tests: EM on random hard problems either finishes with finite numbers and a non-decreasing
objective, or fails with a clear error naming the problem; malformed files given to the zoo command are refused in
one line with nothing written.

The default profile runs a few hundred examples within about a minute; ``HYPOTHESIS_PROFILE=long`` runs more.
"""

import os
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inference
from inference import registry
from inference.em import ConvergenceMonitor, EMDecreaseError, round_off, run_em
from models import gaussian_mixture, missing_data, normal, poisson
from zoo.cli import main

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CLEAR = (ValueError, RuntimeError, FloatingPointError)


@st.composite
def samples(draw, integer=False):
    """Hard 1-D samples: random size, scale 1e-8 .. 1e10, offset, ties, heavy tails."""
    n = draw(st.integers(1, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "cauchy", "ties", "two_groups"]))
    if kind == "normal":
        x = rng.standard_normal(n)
    elif kind == "cauchy":
        x = rng.standard_cauchy(n)
    elif kind == "ties":
        x = rng.integers(0, draw(st.integers(1, 4)), n).astype(float)
    else:
        x = np.where(rng.random(n) < 0.5, 0.0, 5.0) + rng.standard_normal(n)
    scale = 10.0 ** draw(st.integers(-8, 10))
    offset = draw(st.sampled_from([0.0, 1.0, 1e3, 1e7]))
    x = offset + scale * x
    if integer:
        x = np.abs(np.round(x))
    return x


def fit_or_clear_error(build, prior=False, max_iter=1000, seed=0):
    """Build the model and run its EM math through the driver (the PyMC evaluation of the result is covered by
    each model's own tests, and would cost a graph compilation per example here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = build()
            hooks = inference.hooks_for(model)
            if not prior and hooks.mle_check is not None:
                hooks.mle_check()
            math = hooks.em_math(prior)
            run = run_em(math, math.init(np.random.default_rng(seed)), ConvergenceMonitor(max_iter=max_iter),
                         keep_path=True)
        except EMDecreaseError:  # the guard firing on valid data would be a bug in the E- or M-step
            raise
        except CLEAR as exc:  # refused, or failed, in one line that says why
            assert str(exc).strip() and "\n" not in str(exc).strip()
            return None
    assert all(np.all(np.isfinite(v)) for v in run.params.values())
    tr = run.trace
    assert np.all(np.isfinite(tr))
    for i in range(len(tr) - 1):  # never lower than the driver's own round-off allowance
        assert tr[i + 1] >= tr[i] - round_off(math, tr[i], run.path[i]), (i, tr[i], tr[i + 1])
    return run


@given(samples(), st.booleans())
def test_normal_em(x, prior):
    fit_or_clear_error(lambda: normal.build(x), prior)


@given(samples(integer=True), st.integers(1, 5), st.booleans())
def test_poisson_mixture_em(y, k, prior):
    fit_or_clear_error(lambda: poisson.build(y, k=k), prior, max_iter=2000)


@given(samples(), st.integers(1, 4))
def test_gaussian_mixture_em_1d(x, k):
    fit_or_clear_error(lambda: gaussian_mixture.build(x, k=k))


@given(st.integers(0, 2**32 - 1), st.integers(2, 40), st.integers(1, 3), st.integers(-4, 6))
def test_gaussian_mixture_em_2d(seed, n, k, log_scale):
    rng = np.random.default_rng(seed)
    X = (10.0 ** log_scale) * rng.standard_t(2, size=(n, 2))
    fit_or_clear_error(lambda: gaussian_mixture.build(X, k=k))


@given(st.integers(0, 2**32 - 1), st.integers(2, 50), st.floats(0.0, 0.6), st.integers(-4, 8))
def test_missing_data_em(seed, n, missing, log_scale):
    rng = np.random.default_rng(seed)
    X = (10.0 ** log_scale) * rng.standard_normal((n, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]])
    X[rng.random(X.shape) < missing] = np.nan
    fit_or_clear_error(lambda: missing_data.build(X), max_iter=2000)


# ------------------------------------------------------------------------------------------------ the command
TOKENS = st.sampled_from(["abc", "", "1", "2.5", "-3", "x y", '"q"', "inf", "1e999", "NaN", "é", ";", "0x1F"])


@st.composite
def malformed_files(draw):
    """Bytes that are no usable table for any model: undecodable bytes, or text in which every column holds an
    infinite value or a word (so no column is a finite numeric one)."""
    kind = draw(st.sampled_from(["bytes", "text"]))
    if kind == "bytes":
        return b"\xff\xfe" + draw(st.binary(min_size=0, max_size=200))
    sep = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    ncol = draw(st.integers(1, 4))
    names = [draw(st.sampled_from(["y", "a", "b", "label", "y", "x 1", ""])) for _ in range(ncol)]
    nrow = draw(st.integers(0, 6))
    rows = [[draw(TOKENS) for _ in range(ncol)] for _ in range(nrow)]
    poison = [draw(st.sampled_from(["inf", "-inf", "word"])) for _ in range(ncol)]
    rows.append(poison)
    text = "\n".join(sep.join(r) for r in [names] + rows) + "\n"
    return text.encode("utf-8")


MODELS = [name for name, spec in registry.models().items() if spec.data_kind is not None]


@settings(max_examples=40)
@given(malformed_files(), st.sampled_from(MODELS))
def test_malformed_files_are_refused_in_one_line(tmp_path_factory, content, model):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "data.csv"
    path.write_bytes(content)
    args = ["compare", model, "--data", str(path), "--out", str(folder / "out"), "--json", str(folder / "r.json"),
            "--estimators", "mle"]
    if model == "logistic":
        args += ["--target", "y"]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    text = err.getvalue()
    assert code == 2, (content, text)
    assert text.count("\n") == 1 and text.startswith("zoo: error: ") and "Traceback" not in text
    assert sorted(p.name for p in folder.iterdir()) == ["data.csv"]
