"""Outputs of a comparison: the JSON record, the figures, written only once every run has finished."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from .hooks import hooks_for

__all__ = ["figures", "run_record", "write_outputs"]


def _plain(v):
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def run_record(mod, example, model, comparison) -> dict:
    """One entry of the JSON ``runs`` list (schema in the README)."""
    hooks = hooks_for(model)
    record = {
        "model": mod.NAME,
        "options": _plain(hooks.options if hooks else {}),
        "data": {"n": example.n, "source": example.source},
        "truth": _plain(example.truth) if example.truth else None,
        "estimators": comparison.to_json(),
    }
    metrics = mod.metrics(example, comparison) if hasattr(mod, "metrics") else {}
    if metrics:
        record["metrics"] = _plain(metrics)
    return record


def run_slug(record: dict) -> str:
    k = record["options"].get("k")
    return record["model"] + (f"-k{k}" if k not in (None, 1) else "")


def write_outputs(runs, records, *, json_path=None, out_dir=None) -> list[str]:
    """Write the JSON (to ``json_path``, else ``out_dir/results.json`` when ``out_dir`` is given) and the figures
    under ``out_dir``. Everything is first written to a temporary folder and moved into place at the end."""
    if json_path is None and out_dir is None:
        return []
    written = []
    payload = json.dumps({"runs": records}, indent=2, allow_nan=False)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".zoo-", dir=out_dir)
        try:
            names = []
            for (mod, example, model, comparison), record in zip(runs, records):
                slug = run_slug(record)
                os.makedirs(os.path.join(staging, slug))
                for fname in figures(mod, example, comparison, os.path.join(staging, slug)):
                    names.append(os.path.join(slug, fname))
            if json_path is None:
                with open(os.path.join(staging, "results.json"), "w") as fh:
                    fh.write(payload)
                names.append("results.json")
            with open(os.path.join(staging, "index.html"), "w") as fh:
                fh.write(html_page(runs, records, names))
            names.append("index.html")
            for rel in names:
                dest = os.path.join(out_dir, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(os.path.join(staging, rel), dest)
                written.append(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if json_path is not None:
        parent = os.path.dirname(os.path.abspath(json_path))
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".zoo-", suffix=".json", dir=parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
        os.replace(tmp, json_path)
        written.append(json_path)
    return written


def html_page(runs, records, files) -> str:
    """One self-contained HTML page: a section per run with its tables, notes and (neighbouring) figures."""
    import html

    import pandas as pd

    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<title>estimator zoo: comparison</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
             "table{border-collapse:collapse;margin:0.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
             "img{max-width:100%;margin:0.3em 0;border:1px solid #eee}.note{color:#444}</style>",
             "</head><body>", "<h1>estimator zoo: comparison</h1>"]
    parts.append("<ul>" + "".join(f"<li><a href='#{esc(run_slug(r))}'>{esc(run_slug(r))}</a></li>"
                                  for r in records) + "</ul>")
    for (mod, example, model, comparison), record in zip(runs, records):
        slug = run_slug(record)
        parts.append(f"<section id='{esc(slug)}'><h2>{esc(mod.NAME)}</h2>")
        parts.append(f"<p>{esc(mod.DESCRIPTION)}</p>")
        parts.append(f"<p>data: {esc(str(record['data']['source']))}, n = {record['data']['n']}; options: "
                     f"{esc(json.dumps(record['options']))}</p>")
        parts.append("<h3>Estimates (± sd)</h3>" + comparison.wide().to_html(border=0))
        summary = comparison.summary()
        parts.append("<h3>Per estimator</h3>" + summary.to_html(border=0, float_format=lambda v: f"{v:.6g}"))
        if record.get("metrics"):
            title = getattr(mod, "METRICS_TITLE", "metrics")
            parts.append(f"<h3>{esc(title)}</h3>"
                         + pd.DataFrame(record["metrics"]).T.to_html(border=0, float_format=lambda v: f"{v:.4f}"))
        for line in (mod.notes(example, comparison) if hasattr(mod, "notes") else []):
            parts.append(f"<p class='note'>{esc(line)}</p>")
        for rel in files:
            if rel.startswith(slug + "/") and rel.endswith(".png"):
                parts.append(f"<figure><img src='{esc(rel)}' alt='{esc(rel)}'><figcaption>{esc(rel)}"
                             "</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def figures(mod, example, comparison, folder) -> list[str]:
    """Write the run's figures into ``folder``; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    results = comparison.results
    colors = {name: f"C{i}" for i, name in enumerate(comparison.order)}

    # 1. Estimates with +-2 sd per parameter, the truth as a line.
    tidy = comparison.tidy()
    if not tidy.empty:
        labels = list(dict.fromkeys(tidy["parameter"]))
        fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels) + 1, 3.2), squeeze=False)
        for ax, label in zip(axes[0], labels):
            sub = tidy[tidy["parameter"] == label]
            for j, row in enumerate(sub.itertuples()):
                err = 2 * row.sd if np.isfinite(row.sd) else 0.0
                ax.errorbar(row.estimate, j, xerr=err, fmt="o", color=colors[row.estimator])
            if np.isfinite(sub["truth"]).any():
                ax.axvline(sub["truth"].iloc[0], color="k", lw=1, ls="--", label="truth")
            ax.set_yticks(range(len(sub)), sub["estimator"])
            ax.set_title(label)
            ax.invert_yaxis()
        fig.suptitle(f"{mod.NAME}: estimates ± 2 sd")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "estimates.png"), dpi=90)
        plt.close(fig)
        out.append("estimates.png")

    # 2. The fitted density over the data (one-dimensional models with a density).
    data = example.data
    if hasattr(mod, "density") and isinstance(data, np.ndarray) and data.ndim == 1:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        integer = np.all(data == np.round(data))
        if integer:
            grid = np.arange(int(data.min()), int(data.max()) + 1)
            ax.hist(data, bins=np.arange(grid[0] - 0.5, grid[-1] + 1.5), density=True, color="0.85",
                    label="data")
        else:
            grid = np.linspace(data.min(), data.max(), 400)
            ax.hist(data, bins=40, density=True, color="0.85", label="data")
        if example.truth:
            ax.plot(grid, mod.density(example.truth, grid), "k--", lw=1.5, label="truth")
        for name, res in results.items():
            ax.plot(grid, mod.density(res.params, grid), color=colors[name], lw=1.2, label=name,
                    marker="." if integer else None)
        ax.legend(fontsize=8)
        ax.set_title(f"{mod.NAME}: fitted densities")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "fit.png"), dpi=90)
        plt.close(fig)
        out.append("fit.png")

    # 3. Each method's objective per iteration.
    traced = [(n, r) for n, r in results.items() if r.trace.size > 1]
    if traced:
        fig, axes = plt.subplots(1, len(traced), figsize=(3 * len(traced) + 1, 3), squeeze=False)
        for ax, (name, res) in zip(axes[0], traced):
            ax.plot(np.arange(res.trace.size), res.trace, color=colors[name], lw=1)
            ax.set_title(f"{name}\n{res.info.get('objective', '')}", fontsize=9)
            ax.set_xlabel("iteration")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "traces.png"), dpi=90)
        plt.close(fig)
        out.append("traces.png")

    # 4. Whatever the model module draws itself (decision boundaries, segmentations, ...).
    if hasattr(mod, "figures"):
        out += mod.figures(example, comparison, folder)
    return out


def write_segmentation(out_dir, original, segmented, title="") -> str:
    """The original and the segmented image side by side, as ``out_dir/segmented.png`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    for ax, img, name in zip(axes, (original, segmented), ("original", "segmented")):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=".zoo-", suffix=".png", dir=out_dir)
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    path = os.path.join(out_dir, "segmented.png")
    os.replace(tmp, path)
    return path
