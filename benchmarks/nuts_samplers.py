"""NUTS by PyMC's sampler against nutpie's, cold and warm, on each model whose default list has NUTS.

Each (model, sampler) runs ``inference.nuts`` (2 chains, 1,000 draws after 1,000 tuning steps) in a fresh process
on a new empty compile cache ("cold": everything compiled from scratch), then again in another process on the same
cache ("warm", as in everyday use). Prints wall, compile and run seconds of both samplers and the ratio of their
wall times, so the default sampler can be chosen by what it costs end to end.

    python benchmarks/nuts_samplers.py [--models normal,logistic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pathfinder_vs_nuts import nuts_models, run  # noqa: E402

SAMPLERS = ("pymc", "nutpie")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated models (default: those NUTS runs on)")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else nuts_models()
    print(f"{'model':18s} {'sampler':8s} {'cold s':>8s} {'warm s':>8s} {'warm compile':>13s} {'warm run':>9s}")
    for model in models:
        walls = {}
        for sampler in SAMPLERS:
            with tempfile.TemporaryDirectory(prefix="zoo-bench-") as compiledir:
                cold = run(model, "nuts", compiledir, {"sampler": sampler})
                warm = run(model, "nuts", compiledir, {"sampler": sampler})
            walls[sampler] = (cold["wall"], warm["wall"])
            print(f"{model:18s} {sampler:8s} {cold['wall']:8.2f} {warm['wall']:8.2f} {warm['compile']:13.2f} "
                  f"{warm['run']:9.2f}", flush=True)
        print(f"{model:18s} nutpie / pymc wall time: cold {walls['nutpie'][0] / walls['pymc'][0]:.2f}, "
              f"warm {walls['nutpie'][1] / walls['pymc'][1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
