"""The zoo command: output, JSON schema, and one-line errors with exit status 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from zoo.cli import main


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_model(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    from inference import registry

    lines = out.splitlines()
    for name, spec in registry.models().items():
        (row,) = [line for line in lines if line.split()[:1] == [name]]
        assert spec.description in row
        for opt in spec.options:
            assert f"--{opt.name}" in out
        listed = lines[lines.index(row) + 2].split("estimators: ")[1].split(",")
        assert ("vem" in listed) == spec.offers_vem  # variational EM only where the model supplies its math
        assert not set(listed) & set(spec.not_default)


def test_compare_on_a_csv_writes_the_documented_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    csv = tmp_path / "counts.csv"
    pd.DataFrame({"id": np.arange(300), "count": rng.poisson(4.0, 300)}).to_csv(csv, index=False)
    out_json = tmp_path / "res" / "r.json"
    code, out, err = run(["compare", "poisson", "--data", str(csv), "--column", "count",
                          "--estimators", "mle,em,map", "--json", str(out_json), "--quiet"], capsys)
    assert code == 0, err
    assert "mle" in out and "truth" not in out.split("\n\n")[0]
    doc = json.loads(out_json.read_text())
    (run_,) = doc["runs"]
    assert run_["model"] == "poisson" and run_["data"] == {"n": 300, "source": "counts.csv"}
    assert run_["truth"] is None and run_["options"]["k"] == 1
    assert set(run_["estimators"]) == {"mle", "em", "map"}
    mle = run_["estimators"]["mle"]
    assert set(mle) == {"params", "sd", "loglik", "converged", "reliable", "khat", "n_iter", "time_s", "error"}
    assert mle["reliable"] is None and mle["khat"] is None  # a point estimate judges no draws of its own
    assert mle["params"]["lam"][0] == pytest.approx(pd.read_csv(csv)["count"].mean(), rel=1e-6)
    assert set(mle["time_s"]) == {"compile", "run"} and mle["error"] is None and mle["converged"] is True
    # EM's standard errors: the observed information at its point, the MLE's point
    assert run_["estimators"]["em"]["sd"]["lam"][0] == pytest.approx(mle["sd"]["lam"][0], rel=1e-6)


def test_compare_builtin_examples_shows_truth_and_writes_figures(tmp_path, capsys):
    code, out, err = run(["compare", "normal", "poisson", "--estimators", "mle,em", "--out", str(tmp_path),
                          "--quiet"], capsys)
    assert code == 0, err
    assert out.count("truth") == 2
    for f in ("normal/estimates.png", "normal/fit.png", "poisson/fit.png", "results.json"):
        assert (tmp_path / f).stat().st_size > 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in doc["runs"]] == ["normal", "poisson"]
    assert doc["runs"][0]["truth"] == {"mu": 5.0, "sigma": 2.0}


def test_without_a_terminal_each_estimator_is_one_line_and_pymc_says_nothing_between(capsys):
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("pymc")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # as PyMC sets it in a plain process (under pytest it leaves it to the root)
    try:
        code, out, err = run(["compare", "normal", "--estimators", "mle,nuts"], capsys)  # captured: not a terminal
        assert logger.level == logging.INFO  # PyMC's logging is as it was
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line.split(":")[0].strip() for line in lines] == ["mle", "nuts"], lines
    assert "nuts: converged after 1,000 draws" in lines[1]
    assert [r.getMessage() for r in records if r.levelno < logging.WARNING] == []  # no "Initializing NUTS ..."


def test_n_init_runs_every_start_and_shows_each_final_value(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    code, out, err = run(["compare", "poisson", "--k", "2", "--estimators", "mle,em", "--n-init", "3",
                          "--json", str(out_json), "--quiet"], capsys)
    assert code == 0, err
    doc = json.loads(out_json.read_text())["runs"][0]["estimators"]
    for est in ("mle", "em"):
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{est}: 3 starts, final objective ")]
        values = [float(v) for v in line.split("final objective ")[1].split(", ")]
        assert len(values) == 3
        # the result is the best start's: its log-likelihood is the largest final value shown
        assert max(values) == pytest.approx(doc[est]["loglik"], abs=2e-6)
    code, out, err = run(["compare", "poisson", "--n-init", "0"], capsys)
    assert code == 2 and err.strip() == "zoo: error: --n-init: expected a positive integer, got 0"


def _csv(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BAD = [
    (["compare", "nosuch"], "model: unknown model 'nosuch'"),
    (["compare", "normal", "--estimators", "mle,magic"], "estimators: unknown estimator 'magic'"),
    (["compare", "poisson", "--k", "0"], "k: the built-in Poisson examples have k = 1 or 2"),
    (["compare", "normal", "--data", "MISSING.csv"], "--data: no such file"),
    (["compare", "normal", "--data", "{d}/nan.csv"], "expected finite values"),
    (["compare", "normal", "--data", "{d}/inf.csv"], "expected finite values"),
    (["compare", "normal", "--data", "{d}/empty.csv"], "has a header but no rows"),
    (["compare", "normal", "--data", "{d}/blank.csv"], "--data: cannot read"),
    (["compare", "normal", "--data", "{d}/binary.csv"], "--data: cannot read"),
    (["compare", "poisson", "--data", "{d}/neg.csv"], "expected non-negative counts"),
    (["compare", "poisson", "--data", "{d}/frac.csv"], "expected integer counts"),
    (["compare", "poisson", "--data", "{d}/neg.csv", "--k", "0"], "expected non-negative counts"),
    (["compare", "poisson", "--data", "{d}/ok.csv", "--k", "0"], "k: expected at least 1 component"),
    (["compare", "poisson", "--data", "{d}/ok.csv", "--k", "9"], "k: expected at most as many components"),
    (["compare", "normal", "--data", "{d}/ok.csv", "--column", "nope"], "--column: no column 'nope'"),
    (["compare", "normal", "--data", "{d}/ok.csv", "--column", "label"], "--column: column 'label' is not numeric"),
    (["compare", "normal", "--data", "{d}/two.csv"], "--column: expected the name of the column"),
    (["compare", "normal", "--k", "2"], "--k: the normal model takes no --k"),
    (["compare", "normal", "--seed", "-1"], "--seed: expected a non-negative integer"),
    (["compare", "normal", "--seed", "x"], "argument --seed: invalid int value"),
    (["compare"], "the following arguments are required: MODEL"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.fixture
def bad_files(tmp_path):
    _csv(tmp_path, "nan.csv", "y\n1.0\n\n2.0\nnan\n")
    _csv(tmp_path, "inf.csv", "y\n1.0\ninf\n")
    _csv(tmp_path, "empty.csv", "y\n")
    _csv(tmp_path, "blank.csv", "")
    (tmp_path / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01")
    _csv(tmp_path, "neg.csv", "y\n1\n-2\n3\n")
    _csv(tmp_path, "frac.csv", "y\n1\n2.5\n3\n")
    _csv(tmp_path, "ok.csv", "y,label\n1,a\n2,b\n3,c\n1,d\n")
    _csv(tmp_path, "two.csv", "a,b\n1,2\n3,4\n")
    return tmp_path


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_one_line_exit_2(argv, message, bad_files, capsys):
    argv = [a.replace("{d}", str(bad_files)) for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err and "'" + message not in err
    assert err.count("\n") == 1 and err.startswith("zoo: error: ")
    assert "Traceback" not in err


def test_nothing_is_written_when_input_is_bad(tmp_path, bad_files, capsys):
    out_dir = tmp_path / "out"
    code, _, _ = run(["compare", "normal", "poisson", "--data", str(bad_files / "neg.csv"),
                      "--out", str(out_dir)], capsys)
    assert code == 2
    assert not out_dir.exists()


def test_console_script_exit_status(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "zoo")
    proc = subprocess.run([exe, "compare", "normal", "--data", str(tmp_path / "none.csv")], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("zoo: error: --data: no such file")
    assert "Traceback" not in proc.stderr
