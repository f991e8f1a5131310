"""The whole zoo, cold and warm: ``zoo compare normal poisson logistic gaussian_mixture missing_data`` with every
default estimator, first on an empty PyTensor/Numba compile cache, then again on the cache the first run filled.
Prints wall time of each run against the goals (120 s cold, 30 s warm) and compile and run seconds per model and
estimator, so the next regression shows where it is.

    python benchmarks/zoo_speed.py [--models normal,poisson,...] [--keep-cache DIR]

Each run is a fresh ``python -m zoo.cli`` process, as a user would start it; the cold one gets its own empty cache
directories (``PYTENSOR_FLAGS=base_compiledir=...``, ``NUMBA_CACHE_DIR``), so the user's cache is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = "normal,poisson,logistic,gaussian_mixture,missing_data"
GOALS = {"cold": 120.0, "warm": 30.0}


def run(models: list[str], cache: str, json_path: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir=")]
    env["PYTENSOR_FLAGS"] = ",".join(flags + [f"base_compiledir={os.path.join(cache, 'pytensor')}"])
    env["NUMBA_CACHE_DIR"] = os.path.join(cache, "numba")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.cli", "compare", *models, "--json", json_path, "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS, help=f"comma-separated models (default {MODELS})")
    parser.add_argument("--keep-cache", default=None, metavar="DIR",
                        help="use DIR (created empty) for the compile caches and keep it afterwards")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if args.keep_cache:
        if os.path.exists(args.keep_cache) and os.listdir(args.keep_cache):
            parser.error(f"--keep-cache: {args.keep_cache} exists and is not empty; the cold run needs an empty cache")
        os.makedirs(args.keep_cache, exist_ok=True)
        cache = args.keep_cache
    else:
        cache = tempfile.mkdtemp(prefix="zoo-cache-")
    out = tempfile.mkdtemp(prefix="zoo-speed-")
    try:
        walls, records = {}, {}
        for phase in ("cold", "warm"):
            path = os.path.join(out, f"{phase}.json")
            walls[phase] = run(models, cache, path)
            with open(path) as fh:
                records[phase] = json.load(fh)["runs"]
            print(f"{phase}: {walls[phase]:.1f} s wall (goal: under {GOALS[phase]:.0f} s)", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep_cache:
            shutil.rmtree(cache, ignore_errors=True)

    print(f"\n{'model':<18} {'estimator':<15} {'compile cold':>12} {'run cold':>9} {'compile warm':>12} "
          f"{'run warm':>9}  converged")
    totals = {"cold": [0.0, 0.0], "warm": [0.0, 0.0]}
    not_converged = []
    for cold, warm in zip(records["cold"], records["warm"]):
        for est, c in cold["estimators"].items():
            w = warm["estimators"].get(est, {"time_s": {"compile": float("nan"), "run": float("nan")}})
            ok = bool(c["converged"]) and bool(w.get("converged"))
            if not ok:
                not_converged.append(f"{cold['model']}/{est}")
            for phase, rec in (("cold", c), ("warm", w)):
                totals[phase][0] += rec["time_s"]["compile"]
                totals[phase][1] += rec["time_s"]["run"]
            print(f"{cold['model']:<18} {est:<15} {c['time_s']['compile']:>12.2f} {c['time_s']['run']:>9.2f} "
                  f"{w['time_s']['compile']:>12.2f} {w['time_s']['run']:>9.2f}  {'yes' if ok else 'NO'}")
    print(f"{'total':<34} {totals['cold'][0]:>12.1f} {totals['cold'][1]:>9.1f} {totals['warm'][0]:>12.1f} "
          f"{totals['warm'][1]:>9.1f}")
    for phase in ("cold", "warm"):
        other = walls[phase] - sum(totals[phase])
        print(f"{phase}: wall {walls[phase]:.1f} s = compile {totals[phase][0]:.1f} + run {totals[phase][1]:.1f} "
              f"+ imports, data, peers and report {other:.1f}; ratio to goal {walls[phase] / GOALS[phase]:.2f}")
    if not_converged:
        print("not converged: " + ", ".join(not_converged))


if __name__ == "__main__":
    main()
