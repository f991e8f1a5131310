"""Trust suite: NUTS, ADVI, full-rank ADVI, Laplace and Pathfinder against reference posteriors known to many digits.

Each posterior of ``tests/reference`` (a plain ``pm.Model`` with a reference answer computed by closed form or
deterministic quadrature) is run by each estimator with several seeds. A row (posterior, estimator, seed) is scored
by the worst |mean error| over the parameters in reference sds and the worst sd ratio, and judged by the rules of
``tests/reference/scoring.py``: *right* (NUTS: means within 0.1 sd plus three Monte Carlo standard errors, sds within
10%; the approximations: means within 0.3 sd, and full-rank ADVI's, Laplace's and Pathfinder's sds within 25% on the
near-Gaussian posteriors), *flagged* (``converged`` False, ``info["reliable"]`` False, or an exception), or
*SILENT FAILURE* (wrong and not flagged). A right answer that was flagged counts as a false alarm.

The rows are printed as they finish, then a table posterior x estimator (one letter per seed: R right, A right but
flagged (false alarm), F flagged and wrong, X raised, S silent failure; then the worst mean error over the seeds).
The rows, the totals, the machine, the git commit and the date go to ``benchmarks/results/trust_suite.json``, the
table to ``docs/trust_suite.md``. Usage::

    python benchmarks/trust_suite.py [--seeds 5 | --seeds 0,3] [--entries nig_unit,eight_schools_centered]
                                     [--estimators nuts,laplace]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from reference import entries as catalogue_entries  # noqa: E402  (tests/reference, put on the path above)
from reference.scoring import ESTIMATORS, raised_row, score  # noqa: E402

LETTERS = {"right": "R", "false_alarm": "A", "flagged": "F", "raised": "X", "SILENT FAILURE": "S"}
JSON_OUT = os.path.join("benchmarks", "results", "trust_suite.json")
MD_OUT = os.path.join("docs", "trust_suite.md")


def parse_seeds(text: str) -> list[int]:
    """``"5"``: seeds 0 to 4; ``"0,3,7"``: those seeds."""
    if "," in text:
        return [int(s) for s in text.split(",") if s]
    return list(range(int(text)))


def letter(row: dict) -> str:
    """One letter for a row's verdict (see the module docstring)."""
    if "raised" in row:
        return LETTERS["raised"]
    if row["false_alarm"]:
        return LETTERS["false_alarm"]
    return LETTERS[row["verdict"]]


def run_row(entry, model, estimator: str, seed: int) -> dict:
    """Run one estimator with one seed on ``model`` (``entry``'s declaration) and score it."""
    import inference

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = getattr(inference, estimator)(model, seed=seed)
        row = score(entry, estimator, result)
    except Exception as error:  # an estimator that raises has not failed silently
        row = raised_row(error)
    return {"entry": entry.name, "estimator": estimator, "seed": seed, **row,
            "seconds": time.perf_counter() - t0}


def cell(rows: list[dict]) -> str:
    """The table cell of one (posterior, estimator): a letter per seed and the worst mean error in sds."""
    errs = [r["worst_mean_error_sd"] for r in rows]
    known = [e for e in errs if e is not None and not math.isnan(e)]
    return f"{''.join(letter(r) for r in rows)} {format_err(max(known) if known else math.nan)}"


def format_err(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.2f}" if x < 100 else f"{x:.2g}"


def totals(rows: list[dict], estimators: list[str]) -> dict:
    """Counts of rows, right answers, flags, silent failures and false alarms, overall and by estimator."""
    def count(rs):
        return {"rows": len(rs), "right": sum(r["verdict"] == "right" for r in rs),
                "flagged": sum(r["verdict"] == "flagged" for r in rs),
                "silent_failures": sum(r["verdict"] == "SILENT FAILURE" for r in rs),
                "false_alarms": sum(bool(r["false_alarm"]) for r in rs),
                "raised": sum("raised" in r for r in rs)}

    out = count(rows)
    out["by_estimator"] = {e: count([r for r in rows if r["estimator"] == e]) for e in estimators}
    return out


def table_lines(entries, estimators, rows) -> list[str]:
    """The printed table: posterior x estimator."""
    cells = [[cell([r for r in rows if r["entry"] == entry.name and r["estimator"] == est]) for est in estimators]
             for entry in entries]
    width = max(len("posterior"), *(len(e.name) for e in entries))
    cw = [max(len(est), *(len(c[j]) for c in cells)) for j, est in enumerate(estimators)]
    lines = [f"{'posterior':{width}s}  " + "  ".join(f"{e:>{w}s}" for e, w in zip(estimators, cw))]
    for entry, row in zip(entries, cells):
        lines.append(f"{entry.name:{width}s}  " + "  ".join(f"{c:>{w}s}" for c, w in zip(row, cw)))
    return lines


def git(*args: str) -> str | None:
    """The output of ``git args`` in the repository, or None where git is missing or fails."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def clean(x):
    """JSON-safe: non-finite floats as None, NumPy scalars as Python ones."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def markdown(report: dict, entries, estimators, rows) -> str:
    """The table and the references as a markdown page."""
    t = report["totals"]
    m = report["machine"]
    lines = [
        "# Trust suite",
        "",
        "Each estimator on each reference posterior of `tests/reference` (answers by closed form or deterministic "
        "quadrature), scored by `benchmarks/trust_suite.py`. One letter per seed: **R** right, **A** right but "
        "flagged (false alarm), **F** flagged (not converged or `info[\"reliable\"]` False) and wrong, **X** raised, "
        "**S** silent failure (wrong, not flagged); then the worst |mean error| over the seeds, in reference sds. "
        "Right means: NUTS, means within 0.1 sd plus 3 Monte Carlo standard errors and sds within 10%; ADVI, "
        "full-rank ADVI, Laplace and Pathfinder, means within 0.3 sd, and on near-Gaussian posteriors full-rank "
        "ADVI's, Laplace's and Pathfinder's sds within 25% (mean-field ADVI's sds are not judged).",
        "",
        f"Commit `{report['git_commit']}`{' with uncommitted changes' if report['git_dirty'] else ''}, "
        f"{report['date']}, seeds {report['seeds']}, "
        f"{m['platform']}, {m['cpu_count']} CPUs.",
        "",
        "| posterior | near-Gaussian | " + " | ".join(estimators) + " |",
        "|---|---|" + "---|" * len(estimators),
    ]
    for entry in entries:
        cells = [cell([r for r in rows if r["entry"] == entry.name and r["estimator"] == est]) for est in estimators]
        lines.append(f"| {entry.name} | {'yes' if entry.near_gaussian else 'no'} | " + " | ".join(cells) + " |")
    lines += ["", f"{t['rows']} rows: {t['right']} right, {t['flagged']} flagged ({t['false_alarms']} false "
                  f"alarms, {t['raised']} raised), **{t['silent_failures']} silent failures**.", "",
              "| estimator | right | flagged | false alarms | silent failures |", "|---|---|---|---|---|"]
    for est, c in t["by_estimator"].items():
        lines.append(f"| {est} | {c['right']} | {c['flagged']} | {c['false_alarms']} | {c['silent_failures']} |")
    silent = [r for r in rows if r["verdict"] == "SILENT FAILURE"]
    if silent:
        lines += ["", "## Silent failures", "", "| posterior | estimator | seed | worst mean error (sd) | at | "
                  "worst sd ratio | at |", "|---|---|---|---|---|---|---|"]
        for r in silent:
            ratio = r["worst_sd_ratio"]
            lines.append(f"| {r['entry']} | {r['estimator']} | {r['seed']} | {format_err(r['worst_mean_error_sd'])}"
                         f" | {r['worst_mean_label']} | {'-' if ratio is None else f'{ratio:.3g}'} | "
                         f"{r['worst_sd_label']} |")
    lines += ["", "## The reference posteriors", "", "| posterior | reference | numerical error (sd) | what |",
              "|---|---|---|---|"]
    for entry in entries:
        ref = report["entries"][entry.name]
        summary = ref["summary"].replace("|", "\\|")
        lines.append(f"| {entry.name} | {ref['method']} | {ref['max_error_sd']:.1e} | {summary} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="5", help="a count (seeds 0..n-1) or a comma-separated list")
    parser.add_argument("--entries", default=None, help="comma-separated posteriors (default: all)")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--output", default=os.path.join(ROOT, JSON_OUT), help="the JSON results")
    parser.add_argument("--markdown", default=os.path.join(ROOT, MD_OUT), help="the markdown table")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    estimators = [e for e in args.estimators.split(",") if e]
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        parser.error(f"unknown estimators {unknown}; known: {', '.join(ESTIMATORS)}")
    entries = catalogue_entries(args.entries.split(",") if args.entries else None)
    logging.getLogger("pymc").setLevel(logging.ERROR)

    rows = []
    print(f"{'posterior':28s} {'estimator':14s} {'seed':>4s} {'verdict':15s} {'mean err':>9s} {'sd ratio':>9s} "
          f"{'s':>7s}", flush=True)
    for entry in entries:
        model = entry.build()
        for est in estimators:
            for seed in seeds:
                row = run_row(entry, model, est, seed)
                rows.append(row)
                verdict = row["verdict"] + (" (raised)" if "raised" in row else "") + \
                    (" (false alarm)" if row["false_alarm"] else "")
                ratio = row["worst_sd_ratio"]
                print(f"{entry.name:28s} {est:14s} {seed:4d} {verdict:15s} "
                      f"{format_err(row['worst_mean_error_sd']):>9s} "
                      f"{'-' if ratio is None or math.isnan(ratio) else f'{ratio:.3g}':>9s} "
                      f"{row['seconds']:7.1f}", flush=True)

    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        # tracked files changed since that commit: the estimators run may not be the commit's
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "seeds": seeds,
        "estimators": estimators,
        "entries": {e.name: {"summary": e.summary, "near_gaussian": e.near_gaussian, "method": e.solution.method,
                             "max_error_sd": e.solution.max_error_sd(), "reference": e.reference,
                             "error": e.error} for e in entries},
        "rows": rows,
        "totals": totals(rows, estimators),
    }
    print()
    for line in table_lines(entries, estimators, rows):
        print(line)
    t = report["totals"]
    print(f"\n{t['rows']} rows: {t['right']} right, {t['flagged']} flagged ({t['false_alarms']} false alarms, "
          f"{t['raised']} raised), SILENT FAILURES: {t['silent_failures']}")
    for est, c in t["by_estimator"].items():
        print(f"  {est:14s} right {c['right']:3d}  flagged {c['flagged']:3d}  false alarms {c['false_alarms']:3d}  "
              f"silent failures {c['silent_failures']:3d}")
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(clean(report), f, indent=1)
    os.makedirs(os.path.dirname(args.markdown), exist_ok=True)
    with open(args.markdown, "w") as f:
        f.write(markdown(clean(report), entries, estimators, clean(rows)))
    print(f"\nwrote {os.path.relpath(args.output, ROOT)} and {os.path.relpath(args.markdown, ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
