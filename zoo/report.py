"""Outputs of a comparison: the JSON record, the figures and the HTML page, written only once every run has
finished, through temporary files in the target's own folder that are removed on any failure or signal."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

import numpy as np

from inference.base import hooks_for
from inference.signals import on_sigterm

from .figures import figures

__all__ = ["check_output_paths", "model_notes", "run_record", "write_atomic", "write_outputs"]


def check_output_paths(*, json_path=None, out_dir=None, file_path=None, what="--json") -> None:
    """Refuse, before any work, output paths that cannot be written: an empty name, a file path naming a folder, a
    folder path naming a file, a parent that is not a writable folder."""
    for path, flag, want_dir in ((json_path, "--json", False), (out_dir, "--out", True), (file_path, what, False)):
        if path is None:
            continue
        if not isinstance(path, str) or not path.strip():
            raise ValueError(f"{flag}: expected a {'folder' if want_dir else 'file'} name, got an empty string")
        if want_dir and os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{flag}: {path} exists and is not a folder")
        if not want_dir and os.path.isdir(path):
            raise ValueError(f"{flag}: {path} is a folder, expected a file name")
        probe = os.path.abspath(path if want_dir else os.path.dirname(os.path.abspath(path)))
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
            raise ValueError(f"{flag}: cannot write under {path}")


def _cleanup_on_signal(paths: list):
    """Remove ``paths`` (temporary files or folders) if SIGTERM arrives while they exist, then exit 143."""
    def handler(signum, frame):
        for p in paths:
            shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else _unlink(p)
        raise SystemExit(128 + signum)

    return on_sigterm(handler)


def _unlink(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_atomic(path, write, *, binary: bool = False) -> str:
    """Write ``path`` through a temporary file beside it (``write(fh)`` fills it) and an atomic rename; the
    temporary file is removed on any failure, Ctrl-C or SIGTERM. An existing file keeps its permissions."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".zoo-", suffix=os.path.splitext(path)[1], dir=parent)
    with _cleanup_on_signal([tmp]):
        try:
            with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
                write(fh)
            mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_umask()
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


def run_record(spec, example, model, comparison, metrics=None) -> dict:
    """One entry of the JSON ``runs`` list (schema in the README)."""
    hooks = hooks_for(model)
    record = {
        "model": spec.name,
        "options": _plain(hooks.options if hooks else {}),
        "data": {"n": example.n, "source": example.source},
        "truth": _plain(example.truth) if example.truth else None,
        "estimators": comparison.to_json(),
    }
    if metrics:
        record["metrics"] = _plain(metrics)
    diagnostics = comparison.diagnostics
    if diagnostics.get("self"):
        record["self_diagnosis"] = dict(diagnostics["self"])
    if diagnostics.get("quality") is not None:
        record["quality"] = {"rows": _plain(diagnostics["quality"].to_dict(orient="records")),
                             "verdicts": dict(diagnostics.get("verdicts", {}))}
    if "power_scaling" in diagnostics or diagnostics.get("sweep") is not None:
        record["sensitivity"] = {
            "power_scaling": {name: _plain(table.to_dict(orient="index"))
                              for name, table in diagnostics.get("power_scaling", {}).items()},
            "prior_sweep": None if diagnostics.get("sweep") is None else {
                "prior": diagnostics["sweep_prior"],
                "rows": _plain(diagnostics["sweep"].to_dict(orient="records"))}}
    return record


def model_notes(spec, example, comparison) -> list[str]:
    """The model's sentences on this comparison (``spec.notes``), computed once and kept in
    ``comparison.diagnostics["notes"]``: the terminal and the report show the same lines, and the missing-data
    model's note runs a fit of its own."""
    if "notes" not in comparison.diagnostics:
        comparison.diagnostics["notes"] = list(spec.notes(example, comparison)) if spec.notes is not None else []
    return comparison.diagnostics["notes"]


def run_slug(record: dict) -> str:
    k = record["options"].get("k")
    return record["model"] + (f"-k{k}" if k not in (None, 1) else "")


def write_outputs(runs, records, *, json_path=None, out_dir=None) -> list[str]:
    """Write the JSON (to ``json_path``, else ``out_dir/results.json`` when ``out_dir`` is given), the figures and
    ``index.html`` under ``out_dir``. Everything is first written to a temporary folder inside ``out_dir`` (and a
    temporary file beside ``json_path``) and moved into place at the end; those are removed on any failure."""
    if json_path is None and out_dir is None:
        return []
    check_output_paths(json_path=json_path, out_dir=out_dir)
    written = []
    payload = json.dumps({"runs": records}, indent=2, allow_nan=False)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".zoo-", dir=out_dir)
        with _cleanup_on_signal([staging]):
            try:
                names = []
                for (spec, example, model, comparison, _), record in zip(runs, records):
                    slug = run_slug(record)
                    os.makedirs(os.path.join(staging, slug))
                    for fname in figures(spec, example, model, comparison, os.path.join(staging, slug)):
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
        written.append(write_atomic(json_path, lambda fh: fh.write(payload)))
    return written


def sig(value, sd=np.nan, digits: int = 4) -> str:
    """A number for a reader: ``digits`` significant digits; with a standard error, the value to the decimal place
    of the error's second significant digit and the error to two (1.2346 ± 0.0021, 1,234.6 ± 12)."""
    if value is None or not np.isfinite(value):
        return ""
    if sd is not None and np.isfinite(sd) and sd > 0:
        places = max(0, 1 - int(np.floor(np.log10(sd))))
        return f"{value:,.{places}f} ± {sd:,.{places}f}"
    if value == 0:
        return "0"
    magnitude = int(np.floor(np.log10(abs(value))))
    if -4 <= magnitude < 9:
        return f"{value:,.{max(0, digits - 1 - magnitude)}f}"
    return f"{value:.{digits - 1}e}"


def html_table(header, rows, *, highlight=(), cls="") -> str:
    """A table with one header row (the first column's header may be empty) and no index-name row; the columns
    named in ``highlight`` carry the class ``hl``."""
    import html

    esc = html.escape
    marks = [" class='hl'" if h in highlight else "" for h in header]
    out = [f"<table class='{cls}'><thead><tr>" + "".join(f"<th{m}>{esc(str(h))}</th>" for h, m in zip(header, marks))
           + "</tr></thead><tbody>"]
    for row in rows:
        cells = [f"<th>{esc(str(row[0]))}</th>"] + [f"<td{m}>{esc(str(v))}</td>" for v, m in zip(row[1:], marks[1:])]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _estimates_table(comparison) -> str:
    tidy = comparison.tidy()
    if tidy.empty:
        return "<p>no estimates</p>"
    labels = list(dict.fromkeys(tidy["parameter"]))
    cols = (["truth"] if comparison.truth else []) + [e for e in comparison.order if e in comparison.results]
    by = {(r.estimator, r.parameter): (r.estimate, r.sd) for r in tidy.itertuples()}
    truth = dict(zip(tidy["parameter"], tidy["truth"]))
    rows = []
    for lab in labels:
        row = [lab]
        for c in cols:
            row.append(sig(truth[lab]) if c == "truth" else sig(*by[(c, lab)]) if (c, lab) in by else "")
        rows.append(row)
    return html_table(["parameter"] + cols, rows, highlight=("truth",), cls="estimates")


def _summary_table(comparison) -> str:
    summary = comparison.summary()
    header = ["estimator", "log-likelihood", "AIC", "BIC", "iterations", "converged", "reliable", "k-hat",
              "compile s", "run s", "error"]
    rows = []
    for est, r in summary.iterrows():
        reliable = "" if not isinstance(r.reliable, (bool, np.bool_)) else "yes" if r.reliable else "no"
        rows.append([est, sig(r.loglik, digits=9), sig(r.aic, digits=8), sig(r.bic, digits=8),
                     "" if not np.isfinite(r.n_iter) else f"{int(r.n_iter):,}", "yes" if r.converged else "no",
                     reliable, sig(r.khat, digits=2), sig(r.compile_s, digits=2), sig(r.run_s, digits=2), r.error])
    return html_table(header, rows, cls="summary")


def _metrics_table(metrics: dict) -> str:
    names = list(dict.fromkeys(k for m in metrics.values() for k in m))
    rows = [[est] + [sig(m.get(k, np.nan)) for k in names] for est, m in metrics.items()]
    return html_table([""] + names, rows, cls="metrics")


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:0.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;"
         "text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}thead th{background:#f3f3f3}"
         "tbody th{text-align:left;font-weight:600;background:#fafafa}.hl{background:#fff4c2;font-weight:600}"
         "img{max-width:100%;margin:0.3em 0;border:1px solid #eee}.note{color:#444;max-width:60em}"
         "nav ul{columns:2}section{border-top:1px solid #ddd;margin-top:2em}")


def html_page(runs, records, files) -> str:
    """One self-contained HTML page: a table of contents, then a section per run with its tables, notes and
    (neighbouring) figures."""
    import html

    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<title>estimator zoo: comparison</title>", f"<style>{STYLE}</style>",
             "</head><body>", "<h1>estimator zoo: comparison</h1>"]
    toc = []
    for r in records:
        slug = esc(run_slug(r))
        toc.append(f"<li><a href='#{slug}'>{slug}</a>: <a href='#{slug}-estimates'>estimates</a>, "
                   f"<a href='#{slug}-summary'>per estimator</a>, <a href='#{slug}-figures'>figures</a></li>")
    parts.append("<nav><h2>Contents</h2><ul>" + "".join(toc) + "</ul></nav>")
    for (spec, example, model, comparison, _), record in zip(runs, records):
        slug = esc(run_slug(record))
        parts.append(f"<section id='{slug}'><h2>{esc(spec.name)}</h2>")
        parts.append(f"<p>{esc(spec.description)}</p>")
        parts.append(f"<p>data: {esc(str(record['data']['source']))}, n = {record['data']['n']:,}; options: "
                     f"{esc(json.dumps(record['options']))}</p>")
        parts.append(f"<h3 id='{slug}-estimates'>Estimates (± sd)</h3>" + _estimates_table(comparison))
        parts.append(f"<h3 id='{slug}-summary'>Per estimator</h3>" + _summary_table(comparison))
        if record.get("metrics"):
            parts.append(f"<h3>{esc(spec.metrics_title)}</h3>" + _metrics_table(record["metrics"]))
        for line in model_notes(spec, example, comparison):
            parts.append(f"<p class='note'>{esc(line)}</p>")
        parts += _diagnostic_sections(comparison.diagnostics)
        parts.append(f"<h3 id='{slug}-figures'>Figures</h3>")
        for rel in files:
            if rel.startswith(run_slug(record) + "/") and rel.endswith(".png"):
                parts.append(f"<figure><img src='{esc(rel)}' alt='{esc(rel)}'><figcaption>{esc(rel)}"
                             "</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _diagnostic_sections(diagnostics: dict) -> list[str]:
    """The approximation quality and sensitivity tables of one run, as HTML."""
    import html

    from .diagnostics import sweep_table

    parts = []
    if diagnostics.get("self"):
        parts.append("<h3>Approximations judged by their own draws</h3><ul>"
                     + "".join(f"<li>{html.escape(n)}: {html.escape(v)}</li>"
                               for n, v in diagnostics["self"].items()) + "</ul>")
    quality = diagnostics.get("quality")
    if quality is not None:
        parts.append("<h3>Approximation quality (against nuts)</h3><ul>"
                     + "".join(f"<li>{html.escape(n)}: {html.escape(v)}</li>"
                               for n, v in diagnostics.get("verdicts", {}).items()) + "</ul>")
        parts.append(quality.to_html(border=0, index=False, float_format=lambda v: f"{v:.4g}"))
    if diagnostics.get("power_scaling") or diagnostics.get("sweep") is not None:
        parts.append("<h3>Sensitivity</h3>")
    for name, table in diagnostics.get("power_scaling", {}).items():
        parts.append(f"<p>power-scaling sensitivity ({html.escape(name)})</p>" + table.to_html(border=0))
    if diagnostics.get("sweep") is not None:
        parts.append(f"<p>prior sweep over {html.escape(diagnostics['sweep_prior'])}: estimates</p>"
                     + sweep_table(diagnostics["sweep"]).to_html(border=0, float_format=lambda v: f"{v:.4f}"))
    return parts


def write_segmentation(out_dir, original, segmented, title="") -> str:
    """The original and the segmented image side by side, as ``out_dir/segmented.png`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    for ax, img, name in zip(axes, (original, segmented), ("original", "segmented")):
        ax.imshow(np.clip(img, 0, 1))
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.path.join(out_dir, "segmented.png")
    write_atomic(path, lambda fh: fig.savefig(fh, dpi=100, format="png"), binary=True)
    plt.close(fig)
    return path
