"""A model from another package joins the zoo through the entry-point group, as the built-in ones do."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import inference
from inference import registry

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "plugin_example.py"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """A package ``tinyzoo`` holding docs/plugin_example.py, installed the way pip leaves a package: the module and
    a ``.dist-info`` folder whose ``entry_points.txt`` names the model, on the path of a fresh interpreter."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / "tinyzoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, pkg / "exponential.py")
    info = root / "tinyzoo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyzoo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[estimator_zoo.models]\nexponential = tinyzoo.exponential:SPEC\n")
    return root


def zoo(args, site, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    exe = os.path.join(os.path.dirname(sys.executable), "zoo")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def test_installed_package_adds_a_model_to_zoo_list_and_compare(installed_plugin, tmp_path):
    listing = zoo(["list"], installed_plugin, tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert any(line.startswith("exponential ") for line in listing.stdout.splitlines())
    proc = zoo(["compare", "exponential", "--estimators", "mle,em,map,map_em", "--json", "r.json", "--quiet"],
               installed_plugin, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    est = run["estimators"]
    assert run["model"] == "exponential" and run["truth"] == {"lam": 0.5}
    # EM's closed-form step is the MLE n / sum(y), and agrees with the optimiser; MAP-EM agrees with MAP
    assert est["em"]["params"]["lam"] == pytest.approx(est["mle"]["params"]["lam"], rel=1e-7)
    assert est["map_em"]["params"]["lam"] == pytest.approx(est["map"]["params"]["lam"], rel=1e-7)
    assert est["map_em"]["params"]["lam"] != pytest.approx(est["em"]["params"]["lam"], rel=1e-9)


def test_model_registered_in_process(tmp_path, capsys):
    import importlib.util

    from zoo.cli import main

    spec = importlib.util.spec_from_file_location("plugin_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registry.register(module.SPEC)
    try:
        assert registry.get("exponential") is module.SPEC
        data = tmp_path / "y.csv"
        y = module.simulate({"lam": 2.0}, 400, 1)
        data.write_text("y\n" + "\n".join(map(str, y)) + "\n")
        code = main(["compare", "exponential", "--data", str(data), "--estimators", "em,mle", "--quiet"])
        out, err = capsys.readouterr()
        assert code == 0, err
        mle_line = [line for line in out.splitlines() if line.startswith("lam")][0]
        assert f"{len(y) / y.sum():.4f}" in mle_line
    finally:
        registry.unregister("exponential")
    with pytest.raises(ValueError, match="model: unknown model 'exponential'"):
        registry.get("exponential")


def test_registry_refuses_what_is_not_a_model_spec():
    with pytest.raises(TypeError, match="spec: expected a ModelSpec"):
        registry.register("normal")
    with pytest.raises(ValueError, match="data_kind: expected one of"):
        inference.ModelSpec(name="x", description="", build=len, example=len, simulate=len, data_kind="table")
    assert np.isfinite(registry.get("normal").example().data).all()
