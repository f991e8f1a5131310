"""EM beyond memory: exact EM over chunks equals in-memory EM iterate by iterate (every model with sufficient
statistics, several chunk sizes, files and Dask), incremental EM is monotone in its free energy, online EM lands
within a fraction of a standard error of the MLE, and ``zoo fit`` refuses bad input in one line."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from inference import chunked, em, hooks_for
from inference.em import ConvergenceMonitor, run_em
from models import gaussian_mixture as gm
from models import missing_data as md
from models import poisson
from zoo.cli import main

ITERS = 25


def _in_memory(model, seed=0, **em_options):
    math = hooks_for(model).em_math(False, **em_options)
    p0 = math.init(np.random.default_rng(seed))
    return p0, run_em(math, p0, ConvergenceMonitor(max_iter=ITERS), keep_path=True)


def _max_diff(path_a, path_b):
    assert len(path_a) == len(path_b)
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for a, b in zip(path_a, path_b) for k in a)


@pytest.fixture(scope="module")
def mixture():
    X = gm.example(example="trivariate").data
    model = gm.build(X, k=3)
    return X, model, *_in_memory(model)


@pytest.fixture(scope="module")
def poisson_mixture():
    y = poisson.example(k=2).data
    model = poisson.build(y, k=2)
    return y, model, *_in_memory(model)


@pytest.fixture(scope="module")
def incomplete():
    X = md.example().data
    model = md.build(X, columns=["x0", "x1", "x2"])
    return X, model, *_in_memory(model)


@pytest.mark.parametrize("chunk_rows", [600, 250, 77])  # one chunk, a divisor of n, and one that does not divide n
@pytest.mark.parametrize("case", ["mixture", "poisson_mixture", "incomplete"])
def test_exact_chunked_em_equals_in_memory_em_iterate_by_iterate(case, chunk_rows, request):
    data, model, p0, ref = request.getfixturevalue(case)
    fit = chunked.chunked_em(model, data, chunk_rows=chunk_rows, init=p0, max_iter=ITERS, keep_path=True)
    assert _max_diff(ref.path, fit.info["path"]) < 1e-10
    assert np.allclose(fit.trace, ref.trace, rtol=1e-12, atol=0)


def test_the_same_shift_gives_the_same_iterates_from_files(mixture, tmp_path):
    X, model, p0, ref = mixture
    for i, part in enumerate(np.array_split(X, 3)):  # files of 200 rows, read in chunks of 70
        pd.DataFrame(part, columns=["a", "b", "c"]).to_parquet(tmp_path / f"part-{i}.parquet")
    first = gm.build(X[:70], k=3)  # a model built on the first chunk, told the in-memory model's shift
    fit = chunked.chunked_em(first, str(tmp_path / "*.parquet"), chunk_rows=70, init=p0, max_iter=ITERS,
                             keep_path=True, shift=X.mean(axis=0))
    assert _max_diff(ref.path, fit.info["path"]) < 1e-10


def test_dask_gives_the_single_machine_iterates(mixture, tmp_path):
    import dask.array as da

    from inference.study import dask_client

    X, model, p0, ref = mixture
    for i, part in enumerate(np.array_split(X, 4)):
        pd.DataFrame(part, columns=["a", "b", "c"]).to_parquet(tmp_path / f"part-{i}.parquet")
    pattern = str(tmp_path / "*.parquet")
    serial = chunked.chunked_em(model, pattern, chunk_rows=64, init=p0, max_iter=ITERS, keep_path=True)
    with dask_client("local", 2, processes=False) as client:
        files = chunked.chunked_em(model, pattern, chunk_rows=64, init=p0, max_iter=ITERS, keep_path=True,
                                   client=client)
        blocks = chunked.chunked_em(model, da.from_array(X, chunks=(77, 3)), init=p0, max_iter=ITERS,
                                    keep_path=True, client=client)
    assert _max_diff(serial.info["path"], files.info["path"]) < 1e-10
    assert _max_diff(ref.path, blocks.info["path"]) < 1e-10


def test_unreachable_scheduler_is_a_value_error_naming_it():
    from inference.study import dask_client

    with pytest.raises(ValueError, match="^scheduler: cannot reach"):
        with dask_client("tcp://127.0.0.1:1"):
            pass


@pytest.mark.parametrize("case", ["mixture", "poisson_mixture", "incomplete"])
def test_incremental_em_never_lowers_its_free_energy_and_reaches_the_mle(case, request):
    data, model, p0, _ = request.getfixturevalue(case)
    fit = chunked.incremental_em(model, data, chunk_rows=97, init=p0, max_iter=300)
    fe = fit.info["free_energy"]
    assert len(fe) > 10 and np.all(np.diff(fe) >= -1e-9 * np.abs(fe[1:]))
    exact = chunked.chunked_em(model, data, chunk_rows=97, init=p0)
    assert fit.converged and abs(fit.loglik - exact.loglik) < 1e-6
    assert fe[-1] <= fit.loglik + 1e-8  # the free energy bounds the log-likelihood from below


def test_online_em_is_within_a_fraction_of_a_standard_error_of_the_mle():
    # 20,000 rows of the classic mixture. Online EM with Polyak averaging is asymptotically efficient (Cappe &
    # Moulines 2009, Thm 2): its distance to the MLE is o(1/sqrt(n)) while the MLE's standard error is O(1/sqrt(n)).
    # After 3 epochs of 200-row batches the distance is a small fraction of a standard error; 0.25 SE leaves room
    # for the finite-n remainder while any bias of order one SE (as parameter blending's, below) fails.
    y = gm.simulate(gm.TRUTH, 20_000, seed=3)
    model = gm.build(y, k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mle = em(model, seed=0)
    fit = chunked.online_em(model, y, batch_rows=200, epochs=3, kappa=0.6, seed=0)
    for name in ("w", "mu", "sigma"):
        z = np.abs(fit.params[name] - mle.params[name]) / mle.sd[name]
        assert np.all(z < 0.25), (name, z)
    assert fit.loglik <= mle.loglik + 1e-6 and fit.loglik > mle.loglik - 1.0
    blend = chunked.parameter_blending(model, y, batch_rows=20, epochs=3, kappa=0.6, seed=0)
    assert np.max(np.abs(blend.params["sigma"] - mle.params["sigma"]) / mle.sd["sigma"]) > 1


def test_write_parquet_draws_from_the_model_and_is_reproducible(tmp_path):
    a = chunked.write_parquet(poisson.SPEC, poisson.TRUTH[2], 2500, str(tmp_path / "a"), rows_per_file=1000, seed=4)
    b = chunked.write_parquet(poisson.SPEC, poisson.TRUTH[2], 2500, str(tmp_path / "b"), rows_per_file=1000, seed=4)
    frames = [pd.read_parquet(p) for p in a]
    assert [len(f) for f in frames] == [1000, 1000, 500] and list(frames[0].columns) == ["y"]
    assert all(f.equals(pd.read_parquet(q)) for f, q in zip(frames, b))
    assert abs(pd.concat(frames)["y"].mean() - 0.4 * 2 - 0.6 * 9) < 0.3


# ------------------------------------------------------------------------------------------------ zoo fit
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    chunked.write_parquet(gm.SPEC, gm.TRUTH_3D, 1200, str(root / "good"), rows_per_file=500, seed=1)
    return root


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_the_comparison_schema(files, capsys, tmp_path):
    path = tmp_path / "fit.json"
    code, out, err = _run(["fit", "gaussian_mixture", "--data", str(files / "good" / "*.parquet"), "--k", "3",
                           "--chunk-rows", "300", "--json", str(path)], capsys)
    assert code == 0, err
    assert "rows per second" in out and "chunk" in err
    run = json.loads(path.read_text())["runs"][0]
    assert set(run) == {"model", "options", "data", "truth", "estimators"} and run["truth"] is None
    assert run["data"]["n"] == 1200
    est = run["estimators"]["em"]
    assert set(est) == {"params", "sd", "loglik", "n_iter", "converged", "reliable", "khat", "time_s", "error"}
    assert est["converged"] and np.shape(est["params"]["cov"]) == (3, 3, 3)


def test_fit_online_and_incremental_run(files, capsys):
    for method in ("online_em", "incremental_em"):
        code, out, err = _run(["fit", "gaussian_mixture", "--data", str(files / "good" / "*.parquet"), "--k", "3",
                               "--method", method, "--batch-size", "100", "--chunk-rows", "400"], capsys)
        assert code == 0, err


def _bad_inputs(files):
    differ = files / "differ"
    differ.mkdir(exist_ok=True)
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 2.0]}).to_csv(differ / "1.csv", index=False)
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": [1.0, 0.0, 2.0]}).to_csv(differ / "2.csv", index=False)
    nan = files / "nan"
    nan.mkdir(exist_ok=True)
    pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0]}).to_csv(nan / "1.csv", index=False)
    pd.DataFrame({"y": [1.0, 2.0, np.nan, 4.0]}).to_csv(nan / "2.csv", index=False)
    good = str(files / "good" / "*.parquet")
    return [
        (["fit", "poisson", "--data", str(files / "none-*.csv")], "--data: .*matches no file"),
        (["fit", "gaussian_mixture", "--data", str(differ / "*.csv")], "--data: the files have different columns"),
        (["fit", "poisson", "--data", str(nan / "*.csv"), "--chunk-rows", "2"], "--data: row 2 of 2.csv has a missing"),
        (["fit", "gaussian_mixture", "--data", good, "--dask", "tcp://127.0.0.1:1"], "--dask: cannot reach"),
        (["fit", "missing_data", "--data", good, "--k", "2"], "--k: the missing_data model takes no --k"),
        (["fit", "gaussian_mixture", "--data", good, "--columns", "x0,zz"], "--columns: no column 'zz'"),
    ]


def test_fit_bad_input_is_one_line_with_exit_2(files, capsys):
    import re

    for argv, pattern in _bad_inputs(files):
        code, out, err = _run(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and re.search(pattern, err), (argv, err)
