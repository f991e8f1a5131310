"""NUTS by PyMC's sampler and by nutpie's: the same posterior, reproducible draws, the option on the command line."""

import json
import warnings

import numpy as np
import pytest

import inference
from models import normal
from zoo.cli import main


@pytest.fixture(scope="module")
def fits():
    y = normal.simulate(n=200, seed=4)
    model = normal.build(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, {s: inference.nuts(model, seed=3, sampler=s) for s in ("pymc", "nutpie")}


def test_both_samplers_draw_the_same_posterior(fits):
    model, res = fits
    a, b = res["pymc"], res["nutpie"]
    assert a.converged and b.converged
    assert a.info["sampler"] == "pymc" and b.info["sampler"] == "nutpie"
    for name in ("mu", "sigma"):
        # two independent chains of the same posterior: the means differ by their Monte Carlo errors only
        se = np.hypot(a.info["mcse"][name], b.info["mcse"][name])
        assert abs(a.params[name] - b.params[name]) < 4 * se, name
        assert b.sd[name] == pytest.approx(a.sd[name], rel=0.12), name
    # and they are different draws: the test above could fail
    assert not np.array_equal(a.draws["mu"], b.draws["mu"])
    assert b.draws["mu"].shape == a.draws["mu"].shape == (2, 1000)


def test_nutpie_same_seed_same_draws(fits):
    model, res = fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = inference.nuts(model, seed=3, sampler="nutpie")
    np.testing.assert_array_equal(again.draws["sigma"], res["nutpie"].draws["sigma"])


def test_an_unknown_sampler_is_refused_naming_the_argument(fits):
    model, _ = fits
    with pytest.raises(ValueError, match=r"^sampler: expected one of pymc, nutpie, got 'stan'$"):
        inference.nuts(model, sampler="stan")


def test_zoo_compare_sampler_flag(tmp_path, capsys):
    path = tmp_path / "r.json"
    assert main(["compare", "normal", "--estimators", "mle,nuts", "--sampler", "nutpie", "--quiet",
                 "--json", str(path)]) == 0
    capsys.readouterr()
    runs = json.loads(path.read_text())["runs"][0]["estimators"]
    nuts, mle = runs["nuts"], runs["mle"]
    assert nuts["converged"] and abs(nuts["params"]["mu"] - mle["params"]["mu"]) < 0.5 * mle["sd"]["mu"]
    assert main(["compare", "normal", "--sampler", "stan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "zoo: error: --sampler: expected one of pymc, nutpie, got 'stan'"


def test_nutpie_missing_is_one_line_naming_the_argument(fits, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nutpie" else real(name, *a))
    model, _ = fits
    with pytest.raises(ValueError, match=r"^sampler: 'nutpie' needs the nutpie package \(pip install nutpie\)$"):
        inference.nuts(model, sampler="nutpie")
    assert main(["compare", "normal", "--sampler", "nutpie"]) == 2
    assert capsys.readouterr().err.strip() == \
        "zoo: error: --sampler: 'nutpie' needs the nutpie package (pip install nutpie)"
