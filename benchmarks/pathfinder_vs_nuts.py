"""Wall time of Pathfinder, ADVI, full-rank ADVI and NUTS on each registered model's built-in example, cold and warm.

Each (model, estimator) runs in a fresh subprocess whose PyTensor compile cache is a new empty folder
(``PYTENSOR_FLAGS=base_compiledir=<tmpdir>``): the "cold" time includes compiling every graph from scratch. A second
subprocess on the same folder gives the "warm" time, with the compiled modules cached as in everyday use. The times
are the estimator's own wall time (build of the model excluded); compile and run seconds as the Result reports them
are shown beside. Usage::

    python benchmarks/pathfinder_vs_nuts.py [--models normal,logistic] [--estimators pathfinder,nuts]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ESTIMATORS = ("pathfinder", "advi", "fullrank_advi", "nuts")

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import inference
from inference import registry
spec = registry.get(sys.argv[1])
ex = spec.example()
model = spec.build(*ex.args, **ex.build_kwargs)
t0 = time.perf_counter()
res = inference.run_estimator(sys.argv[2], model, seed=0, **json.loads(sys.argv[3]))
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "compile": res.time_compile, "run": res.time_run, "converged": res.converged}))
"""


def run(model: str, estimator: str, compiledir: str, options: dict | None = None) -> dict:
    """Wall, compile and run seconds of one estimator (with ``options``) on a model's example, in a fresh process
    whose PyTensor and Numba caches live in ``compiledir`` (empty: a cold start; used before: warm)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={compiledir}",
               NUMBA_CACHE_DIR=os.path.join(compiledir, "numba"),
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", CHILD, model, estimator, json.dumps(options or {})], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def nuts_models() -> list[str]:
    """The registered models whose default list of estimators has NUTS."""
    from inference import default_estimators, registry

    names = []
    for name, spec in registry.models().items():
        ex = spec.example()
        if "nuts" in default_estimators(spec.build(*ex.args, **ex.build_kwargs)):
            names.append(name)
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated models (default: those NUTS runs on)")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    args = parser.parse_args(argv)
    estimators = [e for e in args.estimators.split(",") if e]
    models = args.models.split(",") if args.models else nuts_models()
    print(f"{'model':18s} {'estimator':14s} {'cold s':>8s} {'warm s':>8s} {'warm compile':>13s} {'warm run':>9s}")
    for model in models:
        for est in estimators:
            with tempfile.TemporaryDirectory(prefix="zoo-bench-") as compiledir:
                cold = run(model, est, compiledir)
                warm = run(model, est, compiledir)
            print(f"{model:18s} {est:14s} {cold['wall']:8.2f} {warm['wall']:8.2f} {warm['compile']:13.2f} "
                  f"{warm['run']:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
