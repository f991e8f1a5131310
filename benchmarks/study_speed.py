"""How fast simulation studies run.

1. 2,000 replicates of the normal model at n = 20 with mle and em, against one
   ``zoo compare normal --estimators mle,em`` in the same shell (the goal: under 10 times its wall time).
2. Replicates per second of each model's fastest and slowest estimator: every estimator of the model's default list
   runs a small study (one process, small n, the backend a study of many replicates uses) after a warm-up
   study of 2 replicates that compiles; the timed study runs as many replicates as fit in about ``--seconds`` (2 to
   50), wall time including the study's own setup. An estimator taking over ``--seconds / 2`` per replicate is timed
   on the warm-up's second replicate instead (its fit alone).

    python benchmarks/study_speed.py [--jobs 2] [--reps 2000] [--skip-models] [--only-models] [--models a,b]

Run it warm (a second time) so PyTensor's compilation cache is filled; it is never run as a timed test.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

N_SMALL = 50
NUTS = {"draws": 500, "tune": 500}


def compare_seconds() -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "zoo.cli", "compare", "normal", "--estimators", "mle,em", "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def normal_against_compare(reps: int, jobs: int) -> None:
    from inference.study import study

    one = compare_seconds()
    t0 = time.perf_counter()
    study("normal", ["mle", "em"], n=20, reps=reps, seed=0, n_jobs=jobs)
    many = time.perf_counter() - t0
    print(f"zoo compare normal --estimators mle,em: {one:.2f} s")
    print(f"study: {reps} replicates of normal, n = 20, mle + em, {jobs} process(es): {many:.2f} s "
          f"({reps / many:.0f} replicates/s)")
    print(f"ratio: {many / one:.1f} (goal: under 10)", flush=True)


def rates_per_model(seconds: float, only=None) -> None:
    import numpy as np

    from inference import registry
    from inference.compare import default_estimators
    from inference.study import _swaps_data, study

    print(f"\nreplicates per second, one process, the backend of a large study, nuts with {NUTS['draws']} draws after "
          f"{NUTS['tune']} tuning steps, other estimators with their defaults:")
    print(f"  {'model':18s} {'n':>4s}  {'fastest':24s} {'slowest':24s} {'replicates timed':s}")
    for name, spec in registry.models().items():
        if only and name not in only:
            continue
        example = spec.example()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = spec.build(*example.args, **example.build_kwargs)
        # the topic model draws as many documents as its truth has rows, whatever n says
        n = example.n if name == "lda" else max(N_SMALL, spec.min_n({}) if spec.min_n else 1)
        rates, counts = {}, {}
        # the backend a study of many replicates would choose: compiled where one model per size is reused
        backend = "compiled" if _swaps_data(spec, model, example) else "auto"
        for est in default_estimators(model):
            common = {"n": n, "estimator_options": {"nuts": NUTS} if est == "nuts" else None, "backend": backend}
            warm = study(name, [est], reps=2, seed=1, **common)  # compiles, fills the caches
            per_rep = float(warm.raw.groupby("replicate")["seconds"].first().iloc[-1])
            if per_rep >= seconds / 2:  # slow: the warm-up's second replicate (compiled already) is the measure
                rates[est], res, counts[est] = 1.0 / per_rep, warm, "1"
            else:
                reps = int(np.clip(math.ceil(seconds / max(per_rep, 1e-6)), 2, 50))
                t0 = time.perf_counter()
                res = study(name, [est], reps=reps, seed=2, **common)
                rates[est], counts[est] = reps / (time.perf_counter() - t0), f"{reps}"
            failed = int((res.raw.groupby("replicate")["error"].first() != "").sum())
            counts[est] += f" ({failed} failed)" if failed else ""
        fast, slow = max(rates, key=rates.get), min(rates, key=rates.get)
        print(f"  {name:18s} {n:4d}  {fast:14s}{rates[fast]:8.2f}/s  {slow:14s}{rates[slow]:8.3f}/s  "
              f"{counts[fast]}, {counts[slow]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0, help="about how long each timed small study runs")
    parser.add_argument("--skip-models", action="store_true", help="only the normal study against compare")
    parser.add_argument("--only-models", action="store_true", help="only the replicates per second per model")
    parser.add_argument("--models", default="", help="comma-separated models for the replicates per second (default all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if not args.only_models:
        normal_against_compare(args.reps, args.jobs)
    if not args.skip_models:
        rates_per_model(args.seconds, [m for m in args.models.split(",") if m])


if __name__ == "__main__":
    main()
