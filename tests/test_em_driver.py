"""The generic EM driver and the VI stopping rule, on toy problems whose answers are known."""

import numpy as np
import pymc as pm
import pytest

import inference
from inference import ConvergenceMonitor, EMDecreaseError, EMMath, ModelHooks, attach, run_em
from inference.em import em_init, em_step


def toy(rate=0.5, exact=True):
    """Objective -(x - 3)^2 / 2 - log(2 pi) / 2 (the log-likelihood of one N(x, 1) observation at 3); each step
    moves x by ``rate`` of the way to 3: monotone for rate in (0, 2), overshooting (lowering it) beyond."""
    def loglik(p):
        return -0.5 * (p["x"] - 3.0) ** 2 - 0.5 * np.log(2 * np.pi)

    return EMMath(init=lambda rng: {"x": 0.0}, step=lambda p: {"x": p["x"] + rate * (3.0 - p["x"])},
                  loglik=loglik, exact=exact)


def test_step_api_over_an_immutable_state():
    math = toy()
    s0 = em_init(math, {"x": 0.0})
    s1, info = em_step(math, s0)
    assert s0.params == {"x": 0.0} and s0.n_iter == 0  # untouched
    assert s1.params["x"] == pytest.approx(1.5) and s1.n_iter == 1
    assert info.change == pytest.approx(s1.objective - s0.objective) and info.change > 0 and not info.dropped


def test_run_em_converges_monotonically_and_the_monitor_is_replaceable():
    run = run_em(toy(), {"x": 0.0})
    assert run.converged and run.params["x"] == pytest.approx(3.0, abs=1e-8)
    assert np.all(np.diff(run.trace) >= 0)
    short = run_em(toy(), {"x": 0.0}, ConvergenceMonitor(max_iter=3))
    assert not short.converged and short.state.n_iter == 3 and len(short.trace) == 4

    class AfterTwo:
        max_iter = 100

        def converged(self, state, info):
            return state.n_iter == 2

    assert run_em(toy(), {"x": 0.0}, AfterTwo()).state.n_iter == 2


def test_a_step_that_lowers_the_objective_is_an_error():
    with pytest.raises(EMDecreaseError, match="EM lowered its objective .* at iteration 1"):
        run_em(toy(rate=2.5), {"x": 0.0})
    # declared approximate: the drops are counted instead
    run = run_em(toy(rate=2.5, exact=False), {"x": 0.0}, ConvergenceMonitor(max_iter=5))
    assert run.state.drops == 5 and not run.converged


def test_em_on_a_hand_built_model_with_its_own_math():
    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 10.0)
        pm.Normal("y", x, 1.0, observed=[3.0])
    attach(model, ModelHooks("toy", em_math=lambda prior: toy()))
    res = inference.em(model, keep_path=True)
    assert res.converged and res.params["x"] == pytest.approx(3.0, abs=1e-8)
    from inference.functions import functions_for

    fns = functions_for(model)
    for p, ll in zip(res.info["path"], res.info["loglik_trace"]):
        assert ll == pytest.approx(fns.loglik_at(p), abs=1e-12)  # the toy's objective is the model's own


def test_vi_stopping_rule_stops_on_noise_and_not_on_a_downward_trend():
    from inference.vi import ELBOConvergence

    x = np.zeros(2)
    rng = np.random.default_rng(0)
    flat = ELBOConvergence(window=100, min_windows=3)
    hist = []
    with pytest.raises(StopIteration):
        for i in range(10_000):
            hist.append(5.0 + rng.standard_normal())
            flat(x, hist, i)
    assert flat.converged and len(hist) == 300  # the first test, after three windows

    falling = ELBOConvergence(window=100, min_windows=3)
    hist = []
    for i in range(2_000):
        hist.append(-100.0 + 0.05 * i + 0.1 * rng.standard_normal())  # still rising
        falling(x, hist, i)
    assert not falling.converged
