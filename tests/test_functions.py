"""The compiled building blocks: derivatives against finite differences, densities against scipy."""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.builders import FinalizedOpFromGraph, OpFromGraph
from pytensor.graph.replace import vectorize_graph
from pytensor.tensor.blas import BatchedDot
from pytensor.tensor.elemwise import Elemwise
from scipy import special, stats

from inference.functions import functions_for
from inference.modes import COMPILED_MODE, PY_MODE
from inference.optimize import laplace_sd
from models import logistic, normal, poisson


def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.fixture(scope="module", params=["normal", "poisson-k2"])
def fns(request):
    if request.param == "normal":
        return functions_for(normal.build(normal.example().data))
    ex = poisson.example(k=2)
    return functions_for(poisson.build(ex.data, k=2))


@pytest.mark.parametrize("kind", ["loglik", "logpost", "logp"])
def test_gradient_and_hessian_match_finite_differences(fns, kind):
    rng = np.random.default_rng(0)
    theta = fns.initial_theta + 0.1 * rng.standard_normal(fns.size)
    vg = fns.value_and_grad(kind)
    value = lambda t: float(vg(t)[0])
    np.testing.assert_allclose(vg(theta)[1], fd_grad(value, theta), rtol=1e-5, atol=1e-4)
    H_exact = fns.hessian(kind, exact=True)(theta)
    H_fd = np.array([fd_grad(lambda t: vg(t)[1][i], theta) for i in range(fns.size)])
    np.testing.assert_allclose(H_exact, H_fd, rtol=1e-5, atol=1e-3)
    # the Hessian the optimisers use (extrapolated differences of the exact gradient) agrees to ~1e-8
    np.testing.assert_allclose(fns.hessian(kind)(theta), H_exact, rtol=1e-7, atol=1e-7 * np.abs(H_exact).max())


def test_the_objectives_equal_pymc_and_share_one_function_of_both_prior_parts(monkeypatch):
    from inference.functions import ModelFunctions

    ex = poisson.example(k=2)
    model = poisson.build(ex.data, k=2)
    fns = functions_for(model)
    built = []
    theta_function = ModelFunctions._theta_function
    monkeypatch.setattr(ModelFunctions, "_theta_function",
                        lambda self, outs, **k: (built.append(len(outs)), theta_function(self, outs, **k))[1])
    logpost, logp = fns.value_and_grad("logpost"), fns.value_and_grad("logp")
    # the log-likelihood's value and gradient, then both prior parts' (without and with the Jacobian) in one function
    assert built == [2, 4]
    rng = np.random.default_rng(4)
    for _ in range(3):
        theta = fns.initial_theta + 0.3 * rng.standard_normal(fns.size)
        point = fns.unpack_unconstrained(theta)
        for vg, jacobian in ((logpost, False), (logp, True)):
            value, g = vg(theta)
            pymc_value = float(model.compile_logp(jacobian=jacobian, mode=PY_MODE)(point))
            assert float(value) == pytest.approx(pymc_value, rel=1e-12)
            np.testing.assert_allclose(g, fd_grad(lambda t: float(vg(t)[0]), theta), rtol=1e-5, atol=1e-4)


def test_constrained_round_trip(fns):
    theta = fns.initial_theta + 0.05
    params = fns.constrained(theta)
    back = fns.to_unconstrained({n: params[n] for n in fns.free_names()})
    np.testing.assert_allclose(back, theta, rtol=1e-10, atol=1e-12)


def test_normal_loglik_matches_scipy():
    y = normal.example().data
    fns = functions_for(normal.build(y))
    assert fns.loglik_at({"mu": 4.0, "sigma": 2.5}) == pytest.approx(stats.norm.logpdf(y, 4.0, 2.5).sum(), rel=1e-12)
    lp = stats.norm.logpdf(4.0, 0, 10) + stats.halfnorm.logpdf(2.5, scale=5)
    # PyMC keeps some prior constants in float32, hence 1e-10 rather than 1e-12
    assert fns.logpost_at({"mu": 4.0, "sigma": 2.5}) == pytest.approx(stats.norm.logpdf(y, 4.0, 2.5).sum() + lp,
                                                                      rel=1e-10)


def test_laplace_sd_matches_numerical_information():
    y = normal.example().data
    fns = functions_for(normal.build(y))
    cf = normal.closed_form_mle(y)
    theta = fns.to_unconstrained(cf)
    sd = laplace_sd(fns, theta, "loglik", "mle")
    # numerical observed information in (mu, sigma) directly
    f = lambda m, s: stats.norm.logpdf(y, m, s).sum()
    h = 1e-4
    m, s = cf["mu"], cf["sigma"]
    Hmm = (f(m + h, s) - 2 * f(m, s) + f(m - h, s)) / h**2
    Hss = (f(m, s + h) - 2 * f(m, s) + f(m, s - h)) / h**2
    Hms = (f(m + h, s + h) - f(m + h, s - h) - f(m - h, s + h) + f(m - h, s - h)) / (4 * h * h)
    cov = np.linalg.inv(-np.array([[Hmm, Hms], [Hms, Hss]]))
    np.testing.assert_allclose([sd["mu"], sd["sigma"]], np.sqrt(np.diag(cov)), rtol=1e-4)


def test_singular_hessian_gives_nan_and_a_warning():
    import pymc as pm

    from inference import mle

    with pm.Model() as model:  # a and b enter only through their sum: the information is singular
        a = pm.Normal("a", 0, 1)
        b = pm.Normal("b", 0, 1)
        pm.Normal("y", a + b, 1.0, observed=np.array([0.3, -0.2, 0.5]))
    with pytest.warns(RuntimeWarning, match="not negative definite"):
        res = mle(model)
    assert np.isnan(res.sd["a"]) and np.isnan(res.sd["b"])


def test_singularity_is_judged_on_the_scale_free_hessian():
    import warnings

    from inference.optimize import unconstrained_cov

    # singular up to round-off: an eigenvalue of 1e-15 against 6, which a Cholesky factorisation lets through
    H = -np.array([[3.0, 3.0], [3.0, 3.0 + 2e-15]])
    with pytest.warns(RuntimeWarning, match="not negative definite"):
        assert unconstrained_cov(None, np.zeros(2), "loglik", "mle", hess=lambda t: H) is None
    # regular but badly scaled (a rate of 4e10 next to a weight): information 1e13 and 150, correlated
    H = -np.array([[1.2e13, 2e5], [2e5, 150.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = unconstrained_cov(None, np.zeros(2), "loglik", "mle", hess=lambda t: H)
    np.testing.assert_allclose(cov, np.linalg.inv(-H), rtol=1e-12)


def test_compiled_backend_agrees_with_the_python_one_and_follows_swapped_data():
    from inference import mle

    y = normal.example().data
    model = normal.build(y)
    fns = functions_for(model)
    assert fns.backend == "python"  # a model of two parameters runs without compiling by default
    theta = fns.initial_theta + np.array([0.3, -0.2])
    want = fns.value_and_grad("loglik")(theta), fns.hessian("loglik")(theta), fns.constrained_jacobian(theta)
    fit = mle(model)
    assert functions_for(model, "compiled") is fns and fns.backend == "compiled"
    got = fns.value_and_grad("loglik")(theta), fns.hessian("loglik")(theta), fns.constrained_jacobian(theta)
    np.testing.assert_allclose(got[0][0], want[0][0], rtol=1e-13)
    for a, b in [(got[0][1], want[0][1]), (got[1], want[1]), (got[2], want[2])]:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    fast = mle(model)
    for name in ("mu", "sigma"):
        assert fast.params[name] == pytest.approx(fit.params[name], rel=1e-10)
        assert fast.sd[name] == pytest.approx(fit.sd[name], rel=1e-7)
    # the data are read at every call: a swapped-in data set is the one fitted, without compiling again
    compiled = dict(fns._compiled)
    y2 = y[: y.size // 2] * 1.5
    normal.swap_data(model, y2)
    again = mle(model)
    assert fns._compiled.keys() == compiled.keys() and all(fns._compiled[k] is compiled[k] for k in compiled)
    cf = normal.closed_form_mle(y2)
    assert again.params["mu"] == pytest.approx(cf["mu"], rel=1e-10)
    assert again.params["sigma"] == pytest.approx(cf["sigma"], rel=1e-10)
    with pytest.raises(ValueError, match="^theta: expected a vector of 2 values"):
        fns.value_and_grad("loglik")(np.zeros(3))
    with pytest.raises(ValueError, match="^backend: expected one of"):
        functions_for(model, "fast")


def test_initial_point_compiled_once_per_model_and_rebuilt_when_an_initial_value_changes(monkeypatch):
    import pymc.initial_point

    from inference.functions import initial_point_of
    from models import gaussian_mixture

    built = []
    make = pymc.initial_point.make_initial_point_fn
    monkeypatch.setattr(pymc.initial_point, "make_initial_point_fn", lambda **kw: built.append(1) or make(**kw))
    ex = gaussian_mixture.example()
    model = gaussian_mixture.build(*ex.args, **ex.build_kwargs)

    def same(a, b):
        assert a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)

    before = initial_point_of(model)
    for seed in (None, 0, 0, 7):
        same(initial_point_of(model, seed), model.initial_point(seed))
    assert len(built) == 1
    # swapped data move the ordered initial value (a new array) and the data-centred priors: rebuilt, and equal again
    gaussian_mixture.swap_data(model, np.random.default_rng(1).normal(3.0, 1.0, size=200))
    after = initial_point_of(model)
    same(after, model.initial_point())
    assert len(built) == 2
    assert not np.allclose(after["mu_ordered__"], before["mu_ordered__"])


def test_few_call_functions_run_uncompiled_on_either_backend(monkeypatch):
    # a fit calls value, constrained and to_unconstrained a few times: compiling them cost a segmentation 45 s cold;
    # and the delta method's Jacobian once: compiling it cost a Poisson mixture's study 16 s cold
    modes = []
    compile_function = pytensor.function

    def spy(*args, **kwargs):
        modes.append(kwargs.get("mode"))
        return compile_function(*args, **kwargs)

    y = normal.example().data
    expected = stats.norm(y.mean() + 0.5, 2.5).logpdf(y).sum()
    for backend in ("python", "compiled"):
        fns = functions_for(normal.build(y), backend)
        monkeypatch.setattr(pytensor, "function", spy)
        theta = fns.to_unconstrained({"mu": y.mean() + 0.5, "sigma": 2.5})
        assert fns.value("loglik")(theta) == pytest.approx(expected, rel=1e-12)
        assert fns.constrained(theta)["sigma"] == pytest.approx(2.5, rel=1e-14)
        # (mu, sigma) from (mu, log sigma): d sigma / d log sigma = sigma
        np.testing.assert_allclose(fns.constrained_jacobian(theta), np.diag([1.0, 2.5]), rtol=1e-14, atol=1e-15)
        monkeypatch.undo()
        assert len(modes) == 4 and all(mode is PY_MODE for mode in modes), backend
        modes.clear()


@pytest.mark.parametrize("name", ["normal", "gaussian_mixture", "hmm"])
def test_vectorised_scoring_equals_one_call_per_row(name):
    from inference import registry

    spec = registry.get(name)
    ex = spec.example()
    fns = functions_for(spec.build(*ex.args, **ex.build_kwargs))
    thetas = fns.initial_theta + 0.1 * np.random.default_rng(0).standard_normal((fns.ROWS_PER_CALL + 7, fns.size))
    one = fns.value("logp")
    expected = np.array([one(t) for t in thetas])
    np.testing.assert_allclose(fns.value_rows("logp")(thetas), expected, rtol=1e-12)  # two blocks, the last short
    np.testing.assert_allclose(fns.score_rows("logp")(thetas), expected, rtol=1e-12)
    assert fns.value_rows("logp")(thetas[:0]).shape == (0,)
    with pytest.raises(ValueError, match=r"thetas: expected rows of \d+ values"):
        fns.value_rows("logp")(thetas[:, :-1])


@pytest.mark.parametrize("name, backend", [("normal", None), ("normal", "compiled"), ("gaussian_mixture", None),
                                           ("hmm", None), ("missing_data", None)])
def test_vectorised_transforms_equal_one_call_per_draw(name, backend):
    from inference import registry

    spec = registry.get(name)
    ex = spec.example()
    fns = functions_for(spec.build(*ex.args, **ex.build_kwargs), backend=backend)
    thetas = fns.initial_theta + 0.3 * np.random.default_rng(1).standard_normal((40, fns.size))
    params = {n: v for n, v in fns.constrained_many(thetas).items() if n in fns.free_names()}
    many = fns.to_unconstrained_many(params)
    one = np.stack([fns.to_unconstrained({n: v[s] for n, v in params.items()}) for s in range(len(thetas))])
    np.testing.assert_allclose(many, one, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(many, thetas, rtol=1e-9, atol=1e-9)  # the round trip through the constrained values
    assert fns.to_unconstrained_many({n: v[:0] for n, v in params.items()}).shape == (0, fns.size)
    first = fns.free_names()[0]
    with pytest.raises(ValueError, match=f"params: expected {first} with a leading draw axis"):
        fns.to_unconstrained_many({**params, first: params[first][0]})
    with pytest.raises(ValueError, match="params: missing value"):
        fns.to_unconstrained_many({n: v for n, v in params.items() if n != first})


def test_advi_pathfinder_and_nuts_share_one_compiled_density(monkeypatch):
    # where an uncompiled call is slow (forced here on the normal model, whose compile is quick), ADVI's steps,
    # Pathfinder's scoring and NUTS run on one compilation of the log density: PyMC's ValueGradFunction, made once
    import inference
    from inference.functions import ModelFunctions
    from pymc.model.core import ValueGradFunction

    compiled = []
    init = ValueGradFunction.__init__
    monkeypatch.setattr(ValueGradFunction, "__init__",
                        lambda self, *a, **k: (compiled.append(1), init(self, *a, **k))[1])
    monkeypatch.setattr(ModelFunctions, "SLOW_CALL_SECONDS", 0.0)
    monkeypatch.setattr(ModelFunctions, "SCORE_ROW_SECONDS", 0.0)
    model = normal.build(normal.example().data)
    fns = functions_for(model)
    inference.advi(model, seed=1, window=100, draws=200)
    assert len(compiled) == 1
    inference.pathfinder(model, seed=1)
    inference.nuts(model, draws=100, tune=100, seed=1)
    assert len(compiled) == 1
    # the compiled density is the uncompiled "logp" objective, value and gradient
    vg = fns.value_and_grad("logp")
    for theta in fns.initial_theta + np.array([[0.0, 0.0], [0.3, -0.2], [-1.0, 0.5]]):
        value, grad = fns.shared_density()(theta)
        assert value == pytest.approx(float(vg(theta)[0]), rel=1e-12)
        np.testing.assert_allclose(grad, vg(theta)[1], rtol=1e-10)
    with pytest.raises(ValueError, match=r"theta: expected a vector of 2 values"):
        fns.shared_density()(np.zeros(3))


def test_a_comparison_with_nuts_runs_advi_on_the_density_nuts_compiles(monkeypatch):
    # however cheap an uncompiled call, ADVI steps on the compiled density when PyMC's NUTS compiles it in the same
    # comparison anyway; without NUTS nothing is compiled
    import inference
    import inference.vi as vi
    from inference.functions import ModelFunctions
    from pymc.model.core import ValueGradFunction

    compiled, steps_on = [], []
    init = ValueGradFunction.__init__
    monkeypatch.setattr(ValueGradFunction, "__init__",
                        lambda self, *a, **k: (compiled.append(1), init(self, *a, **k))[1])
    optimise = vi._optimise
    monkeypatch.setattr(vi, "_optimise", lambda q, vg, *a, **k: (steps_on.append(vg), optimise(q, vg, *a, **k))[1])
    monkeypatch.setattr(ModelFunctions, "SLOW_CALL_SECONDS", float("inf"))
    data = normal.example().data
    alone = normal.build(data)
    first = inference.compare(alone, ["advi"], seed=3, raise_errors=True)
    assert compiled == [] and ("shared", "logp") not in functions_for(alone)._compiled
    with_nuts = normal.build(data)
    second = inference.compare(with_nuts, ["advi", "nuts"], seed=3, raise_errors=True,
                               options={"nuts": {"draws": 100, "tune": 100}})
    fns = functions_for(with_nuts)
    # ADVI steps in whitened coordinates, on a wrapper of the density it was given
    assert len(compiled) == 1 and steps_on[-1].__self__.vg is fns._compiled[("shared", "logp")]
    assert fns.density_planned is False  # for this comparison only
    for name in ("mu", "sigma"):  # the same steps on the same density, compiled or not
        assert second.results["advi"].params[name] == pytest.approx(first.results["advi"].params[name], rel=1e-12)


def test_each_caller_of_the_shared_density_gets_its_own_state_without_a_new_link():
    # pm.sample asks for the density twice per run; a copy relinks the compiled graph (20-55 ms), needed only where
    # the compiled function holds per-caller state: here the tempered density's weights
    from inference.functions import share_compiled_density

    model = normal.build(normal.example().data)
    share_compiled_density(model)
    a, b = (model.logp_dlogp_function(ravel_inputs=True) for _ in range(2))
    assert a is not b and a._pytensor_function is b._pytensor_function
    theta = functions_for(model).initial_theta + 0.2
    assert float(a(theta)[0]) == float(b(theta)[0])
    assert float(a(theta)[0]) == pytest.approx(float(functions_for(model).value_and_grad("logp")(theta)[0]), rel=1e-12)
    hot, cold = (model.logp_dlogp_function(tempered=True, ravel_inputs=True) for _ in range(2))
    assert hot._pytensor_function is not cold._pytensor_function
    hot.set_weights(np.array([0.5]))
    cold.set_weights(np.array([1.0]))
    loglik = float(functions_for(model).value_and_grad("loglik")(theta)[0])
    assert float(cold(theta)[0]) - float(hot(theta)[0]) == pytest.approx(0.5 * loglik, rel=1e-10)


def test_graphs_built_inside_skip_pytensor_stack_traces_unless_the_user_set_a_limit():
    from inference.modes import untraced

    x = pt.dscalar("x")
    assert (x + 1).tag.trace  # PyTensor's default: where the variable was made
    with untraced():
        assert not (x + 2).tag.trace
        fns = functions_for(normal.build(normal.example().data))
    assert (x + 3).tag.trace and pytensor.config.traceback__limit == 8  # restored
    fns.value_and_grad("loglik")  # builds under it and restores it
    assert pytensor.config.traceback__limit == 8
    with pytensor.config.change_flags(traceback__limit=2), untraced():
        assert (x + 4).tag.trace  # a limit the user chose is kept


# ------------------------------------------------------------------ the compiled mode's matrix products
def _products(x, y, batched=False):
    a = pt.tensor("a", dtype=x.dtype, shape=(None,) * x.ndim)
    b = pt.tensor("b", dtype=y.dtype, shape=(None,) * y.ndim)
    # transposed inputs reach the product as strided views, the layouts the Numba products must read
    out = BatchedDot()(a.mT, b) if batched else pt.dot(a.T, b)
    fn = pytensor.function([a, b], out, mode=COMPILED_MODE)
    return fn, [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(3, 3, 3), (5, 1, 7), (40, 800, 2), (64, 64, 64)])  # m, k, n: loops and BLAS
def test_compiled_mode_products_equal_numpy_for_every_layout(shape, dtype):
    m, k, n = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((k, m)).astype(dtype)  # used as x.T: an F-ordered m x k operand
    y = rng.standard_normal((k, n)).astype(dtype)
    fn, ops = _products(x, y)
    assert "NpDot" in ops and "Dot" not in ops
    tol = 1e-12 if dtype == "float64" else 1e-4
    for yy in (y, np.asfortranarray(y), rng.standard_normal((k, 2 * n)).astype(dtype)[:, ::2]):
        got = fn(x, yy)
        assert got.dtype == np.dtype(dtype) and got.shape == (m, n)
        np.testing.assert_allclose(got, x.T.astype(float) @ yy.astype(float), rtol=tol, atol=tol * k)

    xb = rng.standard_normal((4, k, m)).astype(dtype)
    yb = rng.standard_normal((4, k, n)).astype(dtype)
    fb, ops = _products(xb, yb, batched=True)
    assert "NpBatchedDot" in ops and "BatchedDot" not in ops
    np.testing.assert_allclose(fb(xb, yb), np.einsum("bkm,bkn->bmn", xb.astype(float), yb.astype(float)),
                               rtol=tol, atol=tol * k)


def test_compiled_mode_leaves_other_products_and_other_modes_alone():
    # (graphs only: calling PyTensor's own products would compile its gemm wrapper, the 10-15 s this mode avoids)
    a, b = pt.lmatrix("a"), pt.lmatrix("b")
    fn = pytensor.function([a, b], pt.dot(a, b), mode=COMPILED_MODE)  # integers: PyTensor's own Dot
    assert "Dot" in [type(n.op).__name__ for n in fn.maker.fgraph.toposort()]
    x, y = pt.dmatrix("x"), pt.dmatrix("y")
    default = pytensor.function([x, y], pt.dot(x, y), mode="NUMBA")
    assert "Dot" in [type(n.op).__name__ for n in default.maker.fgraph.toposort()]


def test_the_compiled_backend_and_pymc_density_use_the_compiled_mode():
    ex = logistic.example()
    model = logistic.build(*ex.args, **ex.build_kwargs)
    fns = functions_for(model, backend="compiled")
    assert fns.mode is COMPILED_MODE
    theta = fns.initial_theta + 0.1
    compiled = fns.value_and_grad("loglik")(theta)
    python = functions_for(model, backend="python").value_and_grad("loglik")(theta)
    np.testing.assert_allclose(compiled[0], python[0], rtol=1e-13)
    np.testing.assert_allclose(compiled[1], python[1], rtol=1e-12)
    dens = fns.shared_density()
    ops = [type(n.op).__name__ for n in model.logp_dlogp_function(ravel_inputs=True)._pytensor_function.maker
           .fgraph.toposort()]
    assert "NpDot" in ops and "Dot" not in ops
    value, grad_ = dens(theta)
    np.testing.assert_allclose(value, float(fns.value_and_grad("logp")(theta)[0]), rtol=1e-12)
    assert grad_.shape == theta.shape


def _inner_graphs_left(fn) -> list:
    """The OpFromGraph ops of a compiled function, batched ones included, but fused loops (made for the backend)."""
    ops = [n.op for n in fn.maker.fgraph.toposort()]
    ops += [op.core_op for op in ops if hasattr(op, "core_op")]
    return [op for op in ops if isinstance(op, OpFromGraph) and not isinstance(op, FinalizedOpFromGraph)]


def test_the_uncompiled_mode_inlines_softmax_and_stays_stable():
    x = pt.dmatrix("x")
    outs = [pt.special.softmax(x, axis=1), pt.special.log_softmax(x, axis=1), pt.logsumexp(x, axis=1)]
    outs.append(pt.grad(outs[1][:, 0].sum(), x))
    fn = pytensor.function([x], outs, mode=PY_MODE)
    # no OpFromGraph left: nothing for the C compiler, the whole graph runs on NumPy
    assert not [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, OpFromGraph)]
    xv = np.array([[1000.0, 0.0, -1000.0], [0.5, -0.25, 2.0], [-800.0, -801.0, -799.0]])
    soft, logsoft, lse, g = fn(xv)
    np.testing.assert_allclose(soft, special.softmax(xv, axis=1), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(logsoft, special.log_softmax(xv, axis=1), rtol=1e-14)
    np.testing.assert_allclose(lse, special.logsumexp(xv, axis=1), rtol=1e-14)
    expected = -special.softmax(xv, axis=1)
    expected[:, 0] += 1.0
    np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-15)


def test_the_uncompiled_mode_rewrites_inlined_graphs_into_numpy_ufuncs():
    # a Hessian-vector product through logsumexp: inlined unrewritten, its gradient kept a `second` (a broadcast with
    # no NumPy ufunc: one Python call per element; a mixture's MLE with errors over a million rows took 16 s, not 6)
    x, v, u = pt.dmatrix("x"), pt.dvector("v"), pt.dvector("u")
    hessian_u = pt.grad((pt.grad(pt.logsumexp(x * v, axis=1).sum(), v) * u).sum(), v)
    fn = pytensor.function([x, v, u], hessian_u, mode=PY_MODE)
    assert not _inner_graphs_left(fn)
    elementwise = [n.op.scalar_op for n in fn.maker.fgraph.toposort() if isinstance(n.op, Elemwise)]
    assert elementwise and not [op for op in elementwise if op.nfunc_spec is None]
    xv, vv, uv = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]), np.array([0.3, -0.7, 1.1]), np.array([1.0, 2.0, -3.0])
    expected = np.zeros((3, 3))
    for row in xv:  # the Hessian: the sum over rows of diag(x) (diag(p) - p p') diag(x), p = softmax(x * v)
        p = special.softmax(row * vv)
        expected += np.outer(row, row) * (np.diag(p) - np.outer(p, p))
    np.testing.assert_allclose(fn(xv, vv, uv), expected @ uv, rtol=1e-12, atol=1e-15)


def test_the_compiled_mode_inlines_softmax_too():
    x = pt.dmatrix("x")
    fn = pytensor.function([x], pt.special.log_softmax(x, axis=1), mode=COMPILED_MODE)
    assert not _inner_graphs_left(fn)
    xv = np.array([[1000.0, 0.0, -1000.0], [0.5, -0.25, 2.0]])
    np.testing.assert_allclose(fn(xv), special.log_softmax(xv, axis=1), rtol=1e-14)


def test_the_uncompiled_mode_inlines_a_vectorised_logsumexp():
    # scoring draws vectorises the log density: logsumexp becomes a Blockwise of an OpFromGraph, inlined as well
    x, rows = pt.dvector("x"), pt.dmatrix("rows")
    out = vectorize_graph(pt.logsumexp(x) + pt.special.log_softmax(x)[0], replace={x: rows})
    fn = pytensor.function([rows], out, mode=PY_MODE)
    assert not _inner_graphs_left(fn)
    rv = np.array([[1000.0, 0.0, -1000.0], [0.5, -0.25, 2.0]])
    np.testing.assert_allclose(fn(rv), special.logsumexp(rv, axis=1) + special.log_softmax(rv, axis=1)[:, 0],
                               rtol=1e-14)


def test_the_compiled_mode_keeps_a_batched_diag_compiled():
    # a batched OpFromGraph vectorised would batch its arange, which Numba can only run in object mode
    m = pt.dmatrix("m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Numba will use object mode ..." is a UserWarning
        fn = pytensor.function([m], pt.vectorize(pt.diag, signature="(k)->(k,k)")(m) * 2.0, mode=COMPILED_MODE)
        got = fn(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(got, [np.diag([2.0, 4.0]), np.diag([6.0, 8.0])])
