"""How fast simulation studies run: 2,000 replicates of the normal model at n = 20 with mle and em, against one
``zoo compare normal --estimators mle,em`` in the same shell (the goal: under 10 times its wall time), then
replicates per second of each model's fastest (em) and slowest (nuts) estimator (a few replicates for nuts).

    python benchmarks/study_speed.py [--jobs 2] [--reps 2000]

Run it warm (a second time) so PyTensor's compilation cache is filled; it is never run as a timed test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SLOW = {"advi", "fullrank_advi", "nuts"}


def compare_seconds() -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.cli", "compare", "normal", "--estimators", "mle,em", "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--skip-models", action="store_true", help="only the normal study against compare")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from inference import registry
    from inference.study import study

    one = compare_seconds()
    t0 = time.perf_counter()
    study("normal", ["mle", "em"], n=20, reps=args.reps, seed=0, n_jobs=args.jobs)
    many = time.perf_counter() - t0
    print(f"zoo compare normal --estimators mle,em: {one:.2f} s")
    print(f"study: {args.reps} replicates of normal, n = 20, mle + em, {args.jobs} process(es): {many:.2f} s "
          f"({args.reps / many:.1f} replicates/s)")
    print(f"ratio: {many / one:.1f} (goal: under 10)")
    if args.skip_models:
        return
    print("\nreplicates per second, one process, n = 100 (after one warm-up replicate):")
    for name, spec in registry.models().items():
        for est in ("em", "nuts"):
            reps = 2 if est in SLOW else 20
            options = {"nuts": {"draws": 500, "tune": 500}} if est == "nuts" else {}
            study(name, [est], n=100, reps=2, seed=1, estimator_options=options)  # compile, fill caches
            t0 = time.perf_counter()
            res = study(name, [est], n=100, reps=reps, seed=2, estimator_options=options)
            seconds = time.perf_counter() - t0
            failed = int((res.raw.groupby("replicate")["error"].first() != "").sum())
            print(f"  {name:18s} {est:6s} {reps / seconds:8.2f} replicates/s"
                  + (f"  ({failed} of {reps} failed)" if failed else ""))


if __name__ == "__main__":
    main()
