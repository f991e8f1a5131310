"""The reference posteriors of ``tests/reference``: each PyMC declaration against its transcription, each reference
against an independent route, the near-Gaussian flags against the Laplace approximation, and the scoring rules of
``benchmarks/trust_suite.py`` on made-up results."""

import zlib

import numpy as np
import pytensor
import pytest
from scipy import integrate, stats

from inference import Result
from inference.modes import PY_MODE
from reference import CATALOGUE
from reference import eight_schools as es
from reference.conjugate import nig_closed_form
from reference.core import TRANSFORM_CLASSES, grid_moments, laplace_moments, mode_and_cov
from reference.scoring import score

ENTRIES = list(CATALOGUE.values())
NAMES = [e.name for e in ENTRIES]
NIG = [n for n in NAMES if n.startswith("nig_")]


def _close(got: dict, entry, *, slack: float, extra: dict | None = None):
    """Every (mean, sd) of ``got`` within its stated error plus the reference's, plus ``slack`` reference sds."""
    extra = extra or {}
    for label, (m, s) in entry.reference.items():
        em, es_ = entry.error[label]
        gm, gs = got[label]
        xm, xs = extra.get(label, (0.0, 0.0))
        assert abs(gm - m) <= em + xm + slack * s, (entry.name, label, "mean", gm, m)
        assert abs(gs - s) <= es_ + xs + slack * s, (entry.name, label, "sd", gs, s)


def test_catalogue():
    assert len(CATALOGUE) >= 15
    assert len(set(NAMES)) == len(NAMES)
    for entry in ENTRIES:
        ref = entry.solution
        assert set(ref.moments) == set(ref.error)
        for m, s in ref.moments.values():
            assert np.isfinite(m) and s > 0
        assert ref.max_error_sd() < 1e-9, entry.name
        # labelled as inference.Result.flat labels a result holding the same variables
        point = entry.unflatten(entry.flatten(entry.start)[None])
        params = {k: np.asarray(v)[0] for k, v in entry.derived(point).items()}
        labels = [label for label, _, _ in Result(method="laplace", params=params, sd=params, loglik=0.0).flat()]
        assert set(labels) == set(ref.moments), entry.name


@pytest.mark.parametrize("entry", ENTRIES, ids=NAMES)
def test_declaration_matches_transcription(entry):
    """PyMC's log density, with and without the Jacobian, minus the transcription's is one constant at eight random
    points, and PyMC's deterministics are the transcription's derived variables."""
    model = entry.build()
    assert [rv.name for rv in model.free_RVs] == list(entry.free)
    for rv in model.free_RVs:
        tr = model.rvs_to_transforms.get(rv)
        assert (None if tr is None else type(tr).__name__) == TRANSFORM_CLASSES[entry.free[rv.name].transform]
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    dets = model.replace_rvs_by_values(list(model.deterministics))
    fn = pytensor.function(values, [model.logp(jacobian=True), model.logp(jacobian=False), *dets], mode=PY_MODE)

    rng = np.random.default_rng(zlib.crc32(entry.name.encode()))
    u = entry.flatten(entry.start) + 3 * entry.scale_vector() * rng.standard_normal((8, entry.dim))
    blocks = entry.unconstrained_values(u)
    outs = [fn(*[blocks[rv.name][i] for rv in model.free_RVs]) for i in range(len(u))]
    with_jac = np.array([o[0] for o in outs]) - entry.logp_unconstrained(u)
    without = np.array([o[1] for o in outs]) - entry.logp(entry.unflatten(u))
    assert np.ptp(with_jac) < 1e-9, with_jac
    assert np.ptp(without) < 1e-9, without
    # the points are far enough apart for a constant difference to mean something
    assert np.ptp(entry.logp_unconstrained(u)) > 1.0
    derived = entry.derived(entry.unflatten(u))
    for k, d in enumerate(model.deterministics):
        np.testing.assert_allclose(np.array([o[2 + k] for o in outs]), derived[d.name], rtol=1e-13, atol=0)


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.name != "eight_schools_centered"],
                         ids=[n for n in NAMES if n != "eight_schools_centered"])
def test_near_gaussian_flag(entry):
    """near_gaussian is True exactly when the Laplace approximation of the unconstrained density gets every mean
    within 0.25 sd and every sd within 10%."""
    lap = laplace_moments(entry, draws=100_000)
    mean_err = max(abs(lap[k][0] - m) / s for k, (m, s) in entry.reference.items())
    sd_err = max(abs(lap[k][1] / s - 1) for k, (m, s) in entry.reference.items())
    assert (mean_err < 0.25 and sd_err < 0.10) == entry.near_gaussian, (mean_err, sd_err)


def test_centered_eight_schools_has_no_mode():
    """The centred funnel: along theta_j = mu the unconstrained log density grows without bound as tau -> 0, so no
    Gaussian approximation at a mode exists (near_gaussian False)."""
    entry = CATALOGUE["eight_schools_centered"]
    assert not entry.near_gaussian
    lp = [entry.logp_unconstrained(entry.flatten({"mu": 4.0, "tau": t, "theta": np.full(8, 4.0)})[None])[0]
          for t in (1e-1, 1e-3, 1e-5)]
    assert lp[0] < lp[1] < lp[2] and lp[2] - lp[0] > 60


# -- independent routes to the references -------------------------------------------------------------------------

@pytest.mark.parametrize("name", NIG)
def test_nig_against_scipy_distributions(name):
    """The closed form against SciPy's Student-t and inverse-gamma moments, with the posterior's parameters from a
    QR least-squares fit of the prior-augmented design (not the normal equations)."""
    entry = CATALOGUE[name]
    d = entry.data
    X, y, m0, v0 = d["X"], d["y"], d["m0"], d["v0"]
    A = np.vstack([X, np.diag(1 / np.sqrt(v0))])
    z = np.concatenate([y, m0 / np.sqrt(v0)])
    Q, R = np.linalg.qr(A)
    mn = np.linalg.solve(R, Q.T @ z)
    Rinv = np.linalg.inv(R)
    Vn = Rinv @ Rinv.T
    an = d["a0"] + len(y) / 2
    bn = d["b0"] + np.sum((z - A @ mn) ** 2) / 2
    got = {}
    for j in range(len(mn)):
        t = stats.t(df=2 * an, loc=mn[j], scale=np.sqrt(bn / an * Vn[j, j]))
        got[f"beta[{j}]"] = (t.mean(), t.std())
    ig = stats.invgamma(an, scale=bn)
    got["sigma2"] = (ig.mean(), ig.std())
    # sigma = sqrt(b_n / G), G ~ Gamma(a_n, 1): two quadratures of SciPy's gamma density, the second about the
    # first's mean (E[sigma^2] - E[sigma]^2 would lose E[sigma]^2 / var(sigma) ~ 400 in relative precision)
    g = stats.gamma(an)
    m = g.expect(lambda x: 1 / np.sqrt(x), epsabs=0, epsrel=1e-13)
    v = g.expect(lambda x: (1 / np.sqrt(x) - m) ** 2, epsabs=0, epsrel=1e-13)
    got["sigma"] = (np.sqrt(bn) * m, np.sqrt(bn * v))
    _close(got, entry, slack=1e-10)


@pytest.mark.parametrize("name", ["nig_correlated"])
def test_nig_against_numerical_integration(name):
    """The closed form against the trapezoid rule over (log sigma^2, beta) of the transcribed density."""
    entry = CATALOGUE[name]
    grid = grid_moments(entry, h=0.35)
    assert grid.max_error_sd() < 1e-10
    _close(grid.moments, entry, slack=0.0, extra=grid.error)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("betabinom_", "gammapois_"))])
def test_beta_gamma_against_scipy_and_quadrature(name):
    entry = CATALOGUE[name]
    d = entry.data
    if name.startswith("betabinom_"):
        dist = stats.beta(d["a"] + d["successes"], d["b"] + d["trials"] - d["successes"])
        label = "p"
    else:
        dist = stats.gamma(d["a"] + d["y"].sum(), scale=1 / (d["b"] + d["exposure"].sum()))
        label = "lam"
    _close({label: (dist.mean(), dist.std())}, entry, slack=1e-13)
    if entry.near_gaussian:  # the heavy log-odds tail of Beta(1/2, 41/2) is too long for a grid
        grid = grid_moments(entry)
        _close(grid.moments, entry, slack=0.0, extra=grid.error)
    else:
        m = integrate.quad(lambda p: p * dist.pdf(p), 0, 1, epsabs=0, epsrel=1e-13, points=[0.01, 0.1])[0]
        _close({label: (m, dist.std())}, entry, slack=1e-11)


def test_eight_schools_marginal_of_tau():
    """log p(tau) + log p(y | tau) against SciPy: the half-Cauchy density and y's 8-variate normal marginal
    N(0, 5^2 11' + diag(sigma^2 + tau^2))."""
    diffs = []
    for tau in (0.0, 0.3, 2.0, 7.0, 40.0):
        cov = es.MU_SD ** 2 * np.ones((8, 8)) + np.diag(es.SIGMA ** 2 + tau ** 2)
        want = (stats.halfcauchy(scale=es.TAU_SCALE).logpdf(tau)
                + stats.multivariate_normal(np.zeros(8), cov).logpdf(es.Y))
        diffs.append(es.log_tau_density(tau) - want)
    np.testing.assert_allclose(diffs, 0.0, atol=1e-12)


@pytest.mark.parametrize("tau", [0.5, 3.0, 20.0])
def test_eight_schools_conditionals_against_transcription(tau):
    """Given tau, the centred transcription is quadratic in (mu, theta): its exact Gaussian (mean by solving the
    gradient, covariance the inverse of the negative Hessian, both by finite differences of a quadratic) against
    the closed-form conditional moments; and log of its integral over (mu, theta) against log_tau_density up to one
    constant."""
    entry = CATALOGUE["eight_schools_centered"]

    def f(x):  # x = (mu, theta_1..8) rows
        x = np.atleast_2d(x)
        return entry.logp({"mu": x[:, 0], "tau": np.full(len(x), tau), "theta": x[:, 1:]})

    x0 = np.zeros(9)
    h = 1.0
    eye = np.eye(9) * h
    g = np.array([(f(x0 + eye[i]) - f(x0 - eye[i]))[0] / (2 * h) for i in range(9)])
    H = np.array([[(f(x0 + eye[i] + eye[j]) - f(x0 + eye[i] - eye[j]) - f(x0 - eye[i] + eye[j])
                    + f(x0 - eye[i] - eye[j]))[0] / (4 * h * h) for j in range(9)] for i in range(9)])
    cov = np.linalg.inv(-H)
    mean = cov @ g
    cond = es.conditional_moments(tau)
    np.testing.assert_allclose(mean[0], cond["mu"][0], rtol=1e-9)
    np.testing.assert_allclose(cov[0, 0], cond["mu"][1], rtol=1e-9)
    for j in range(8):
        np.testing.assert_allclose(mean[1 + j], cond[f"theta[{j}]"][0], rtol=1e-9)
        np.testing.assert_allclose(cov[1 + j, 1 + j], cond[f"theta[{j}]"][1], rtol=1e-9)
        eta_mean = (mean[1 + j] - mean[0]) / tau
        eta_var = (cov[1 + j, 1 + j] - 2 * cov[0, 1 + j] + cov[0, 0]) / tau ** 2
        np.testing.assert_allclose(eta_mean, cond[f"eta[{j}]"][0], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(eta_var, cond[f"eta[{j}]"][1], rtol=1e-8)
    log_integral = f(mean)[0] + 4.5 * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(cov)[1]
    # the transcription's density of tau (times the integral) is the half-Cauchy times p(y | tau), like
    # log_tau_density; the test is that no tau-dependent factor is missing from either
    np.testing.assert_allclose(log_integral, es.log_tau_density(tau), atol=1e-8)


def test_eight_schools_parameterisations_agree():
    """The non-centred transcription is the centred one after theta = mu + tau eta, with Jacobian tau^8."""
    c, nc = CATALOGUE["eight_schools_centered"], CATALOGUE["eight_schools_noncentered"]
    rng = np.random.default_rng(8)
    mu, tau, eta = rng.normal(4, 3, 6), np.exp(rng.normal(1, 1, 6)), rng.standard_normal((6, 8))
    theta = mu[:, None] + tau[:, None] * eta
    lhs = nc.logp({"mu": mu, "tau": tau, "eta": eta})
    rhs = c.logp({"mu": mu, "tau": tau, "theta": theta}) + 8 * np.log(tau)
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10)
    for label in c.reference:
        assert c.reference[label] == nc.reference[label]


def test_eight_schools_reference_by_quadrature_in_log_tau():
    """The reference by quad against a Gauss-Legendre rule in log tau, with 400 nodes on [-40, 8] (a third route,
    besides the trapezoid rule the reference itself compares with)."""
    entry = CATALOGUE["eight_schools_noncentered"]
    x, w = np.polynomial.legendre.leggauss(400)
    u = -16 + 24 * x
    tau = np.exp(u)
    shift = es.log_tau_density(1.0)
    f = w * np.exp(np.array([es.log_tau_density(t) for t in tau]) - shift) * tau
    cond = [es.conditional_moments(t) for t in tau]
    got = {}
    for label in entry.reference:
        m = sum(fi * c[label][0] for fi, c in zip(f, cond)) / f.sum()
        v = sum(fi * (c[label][1] + (c[label][0] - m) ** 2) for fi, c in zip(f, cond)) / f.sum()
        got[label] = (m, np.sqrt(v))
    _close(got, entry, slack=1e-11)


@pytest.mark.parametrize("name", ["logistic_scaled", "poisson_glm"])
def test_glm_against_gauss_legendre(name):
    """The whitened-grid trapezoid reference against a 240 x 240 Gauss-Legendre product rule on the whitened box
    [-22, 22]^2 (on whose edges the density is below exp(-50) of its peak: the logistic log-likelihood's tails are
    linear, not quadratic)."""
    entry = CATALOGUE[name]
    mode, cov = mode_and_cov(entry)
    L = np.linalg.cholesky(cov)
    top = entry.logp_unconstrained(mode[None])[0]
    ref = entry.reference
    x, w = np.polynomial.legendre.leggauss(240)
    z = 22.0 * np.stack([a.ravel() for a in np.meshgrid(x, x, indexing="ij")], axis=1)
    u = mode + z @ L.T
    edges = np.concatenate([u[np.abs(z[:, 0]) == np.abs(z[:, 0]).max()], u[np.abs(z[:, 1]) == np.abs(z[:, 1]).max()]])
    assert np.max(entry.logp_unconstrained(edges)) < top - 50
    weight = np.outer(w, w).ravel() * np.exp(entry.logp_unconstrained(u) - top)
    centre = np.array([ref["beta[0]"][0], ref["beta[1]"][0]])
    b = entry.unflatten(u)["beta"] - centre
    shift = weight @ b / weight.sum()
    sd = np.sqrt(weight @ (b - shift) ** 2 / weight.sum())
    got = {f"beta[{j}]": (centre[j] + shift[j], sd[j]) for j in range(2)}
    _close(got, entry, slack=1e-11)


@pytest.mark.parametrize("name", ["mixture_separated", "mixture_overlap"])
def test_mixture_against_trapezoid_in_unconstrained_space(name):
    """The Gauss-Legendre reference over (mu_0, gap) against the trapezoid rule over (mu_0, log gap)."""
    entry = CATALOGUE[name]
    grid = grid_moments(entry, h=0.2, drop=36.0, limit=400.0)
    _close(grid.moments, entry, slack=1e-11, extra=grid.error)


def test_references_differ_between_scale_variants():
    """The scale variants are what they claim: coefficient sds near 1e-3, 1 and 1e4; rates near 1e-4 and 1e5;
    probabilities near 1e-4 and 0.5; an intercept-slope correlation near -1."""
    sd = {n: CATALOGUE[n].reference["beta[1]"][1] for n in ("nig_small", "nig_unit", "nig_large")}
    assert 3e-4 < sd["nig_small"] < 3e-3 and 0.3 < sd["nig_unit"] < 3 and 3e3 < sd["nig_large"] < 3e4
    assert 5e-5 < CATALOGUE["gammapois_rare"].reference["lam"][0] < 2e-4
    assert 5e4 < CATALOGUE["gammapois_huge"].reference["lam"][0] < 2e5
    assert 5e-5 < CATALOGUE["betabinom_rare"].reference["p"][0] < 2e-4
    assert 0.45 < CATALOGUE["betabinom_half"].reference["p"][0] < 0.55
    d = CATALOGUE["nig_correlated"].data
    mn, Vn, an, bn = nig_closed_form(d["X"], d["y"], d["m0"], d["v0"], d["a0"], d["b0"])
    assert Vn[0, 1] / np.sqrt(Vn[0, 0] * Vn[1, 1]) < -0.999


# -- the scoring rules of benchmarks/trust_suite.py ---------------------------------------------------------------

def _result(entry, *, shift=0.0, sd_factor=1.0, converged=True, info=None, draws=None):
    """A made-up result: the reference moments, every mean moved by ``shift`` sds and every sd scaled."""
    point = entry.unflatten(entry.flatten(entry.start)[None])
    shapes = {k: np.asarray(v).shape[1:] for k, v in entry.derived(point).items()}
    params, sds = {}, {}
    for name, shape in shapes.items():
        labels = [k for k in entry.reference if k == name or k.startswith(name + "[")]
        m = np.array([entry.reference[k][0] + shift * entry.reference[k][1] for k in labels]).reshape(shape)
        s = np.array([sd_factor * entry.reference[k][1] for k in labels]).reshape(shape)
        params[name], sds[name] = m, s
    return Result(method="x", params=params, sd=sds, loglik=0.0, converged=converged, info=info or {},
                  draws=draws)


def test_scoring_rules():
    gauss, skew = CATALOGUE["betabinom_half"], CATALOGUE["betabinom_zero"]
    assert score(gauss, "laplace", _result(gauss))["verdict"] == "right"
    row = score(gauss, "laplace", _result(gauss, shift=0.5))
    assert row["verdict"] == "SILENT FAILURE" and abs(row["worst_mean_error_sd"] - 0.5) < 1e-9
    assert score(gauss, "laplace", _result(gauss, shift=0.5, converged=False))["verdict"] == "flagged"
    row = score(gauss, "pathfinder", _result(gauss, converged=False))
    assert row["verdict"] == "flagged" and row["false_alarm"]
    assert score(gauss, "pathfinder", _result(gauss, info={"reliable": False}))["flagged"]
    assert not score(gauss, "pathfinder", _result(gauss, info={"reliable": True}))["flagged"]
    # sds: judged within 25% for full-rank ADVI, Laplace and Pathfinder on near-Gaussian entries only
    assert score(gauss, "fullrank_advi", _result(gauss, sd_factor=1.3))["verdict"] == "SILENT FAILURE"
    assert score(gauss, "fullrank_advi", _result(gauss, sd_factor=1.2))["verdict"] == "right"
    assert score(skew, "laplace", _result(skew, sd_factor=2.0))["verdict"] == "right"
    assert score(gauss, "advi", _result(gauss, sd_factor=0.5))["verdict"] == "right"
    row = score(gauss, "advi", _result(gauss, sd_factor=0.5))
    assert abs(row["worst_sd_ratio"] - 0.5) < 1e-12
    # NUTS: 0.1 sd plus three Monte Carlo standard errors, and sds within 10%
    mcse = {"p": np.array(0.05 * gauss.reference["p"][1])}
    assert score(gauss, "nuts", _result(gauss, shift=0.2, info={"mcse": mcse}))["verdict"] == "right"
    assert score(gauss, "nuts", _result(gauss, shift=0.3, info={"mcse": mcse}))["verdict"] == "SILENT FAILURE"
    assert score(gauss, "nuts", _result(gauss, sd_factor=1.12, info={"mcse": mcse}))["verdict"] == "SILENT FAILURE"
    # a missing label, a NaN sd
    nan = Result(method="x", params={"q": np.array(0.5)}, sd={"q": np.array(0.1)}, loglik=0.0)
    assert score(gauss, "laplace", nan)["verdict"] == "SILENT FAILURE"
    assert score(gauss, "laplace", _result(gauss, sd_factor=np.nan))["verdict"] == "SILENT FAILURE"


def test_one_estimator_against_a_reference():
    """A cheap end-to-end check: the zoo's Laplace approximation on the Beta-Binomial with 1000 trials, its labels
    those of the reference, its answer within 0.05 sd and 2% of it."""
    import inference

    entry = CATALOGUE["betabinom_half"]
    res = inference.laplace(entry.build(), seed=0, draws=20_000)
    row = score(entry, "laplace", res)
    assert row["verdict"] == "right"
    assert row["worst_mean_error_sd"] < 0.05 and abs(row["worst_sd_ratio"] - 1) < 0.02
