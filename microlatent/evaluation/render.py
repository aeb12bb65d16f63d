"""Rendering an evaluation report from its numbers alone: metrics.json -> report.md, report.html,
per_sample.csv and summary.csv (``render_report``), and the report's vocabulary (metric names, the
headline's scores, the keys metrics.json must have). Measuring is ``microlatent.evaluation.report``;
nothing here needs a model, data or torch.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

# The keys of results["meta"] that the report's Definitions section lists, in order.
DEFINITIONS = ("statistics", "excess_cess", "js_binary", "latent", "vf_threshold_rule", "win_matrix", "traversal")

HEADLINE_SCORES = {
    "excess_cess": "excess CESS of the reconstruction as the model gives it (phase probabilities)",
    "js_binary": "statistics of the binary microstructure (the reconstruction thresholded; JS divergence)",
}


# Per-sample metrics, in table order: key -> (title, which statistic the tables show).
METRICS = {
    "excess_cess": ("excess CESS", "median"),
    "js_binary": ("JS thresholded", "median"),
    "cess": ("CESS", "median"),
    "log_cess": ("log CESS", "mean"),
    "msess": ("MSESS", "median"),
    "mse": ("image MSE", "median"),
    "vf_diff": ("VF diff %", "median"),
    "stsim2": ("STSIM-2", "mean"),
    "gram": ("Gram dist.", "median"),
}


METRICS_JSON_KEYS = ("meta", "samples", "per_sample", "summary", "win_matrix", "latent", "headline", "figures")


def headline_lines(results) -> list:
    """The report's first lines, as plain text."""
    h = results.get("headline")
    if not h:
        return []
    lines = [
        "Lower = 2-point statistics closer to the input's. Excess CESS = CESS - H(f_in), the mean KL "
        "divergence between the input's and the reconstruction's statistics (0 = identical); JS = Jensen-"
        "Shannon divergence between the input's statistics and those of the thresholded reconstruction."
    ]
    for key, what in HEADLINE_SCORES.items():
        for c in h["scores"][key]["comparisons"]:
            win, change = c["win_share"], c["median_change"]
            win = "–" if win is None or not math.isfinite(win) else f"{win:.0%}"
            change = "–" if change is None or not math.isfinite(change) else f"{change:+.0%}"
            lines.append(f"{c['model']} beats {c['reference']} on {win} of the images in the {what}; median {change}.")
    best = h["best"]
    if best is not None and len(h["scores"]["js_binary"]["medians"]) > 1:
        lines.append(
            f"Use {best}: its binary reconstructions have the statistics closest to the inputs' "
            f"(median JS {h['scores']['js_binary']['medians'][best]:.3g})."
        )
    for label, warning in h["collapse_warnings"].items():
        lines.append(f"Warning, {label}: {warning}.")
    return lines


def _fmt(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):  # metrics.json holds plain JSON numbers
        return str(int(value))
    return f"{value:.{digits}g}"


def _share(value):
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _tables(results):
    """[(title, note, headers, rows)] of the report, built from the JSON-ready results only."""
    tables = []
    labels = list(results["summary"])
    present = [k for k in METRICS if k in results["summary"][labels[0]]["all"]]
    headers = ["model", "n", "excess CESS mean", "CESS mean", *[f"{METRICS[k][0]} {METRICS[k][1]}" for k in present]]
    rows = []
    for label in labels:
        s = results["summary"][label]["all"]
        rows.append(
            [
                label,
                _fmt(s["cess"]["n"]),
                _fmt(s["excess_cess"]["mean"]),
                _fmt(s["cess"]["mean"]),
                *[_fmt(s[k][METRICS[k][1]]) for k in present],
            ]
        )
    note = (
        f"{results['meta']['split']} split of {results['meta']['data']}; lower is better except STSIM-2. "
        f"Excess CESS = CESS - H(f_in); the input's own entropy H(f_in) (median "
        f"{_fmt(results['summary'][labels[0]]['all']['entropy']['median'])}) is the same for every model."
    )
    tables.append(("All samples", note, headers, rows))
    if len(labels) > 1:
        m = results["win_matrix"]
        rows = [[a, *[_share(m["matrix"][i][j]) for j in range(len(m["models"]))]] for i, a in enumerate(m["models"])]
        tables.append(
            (
                "Win matrix (excess CESS)",
                "Share of samples on which the row model has lower excess CESS (and so lower CESS) than the "
                "column model.",
                ["A \\ B", *m["models"]],
                rows,
            )
        )
    if "latent" in results:
        rows = []
        for label, d in results["latent"].items():
            if not d:
                continue
            kl = ", ".join(f"{v:.2g}" for v in d["kl_per_unit"][:16]) + (" …" if len(d["kl_per_unit"]) > 16 else "")
            rows.append([label, f"{d['active_units']} / {d['latent_units']}", _fmt(d["output_std"], 3), kl])
        tables.append(
            (
                "Latent diagnostics",
                "Active units: Var(mu) > 0.01 and KL > 0.1 nats. Output std: each reconstructed pixel's std "
                "across the evaluated images, averaged over pixels (0 = the same image for every input). "
                "A collapsed model has one active unit or fewer and an output std near 0.",
                ["model", "active units", "output std", "KL per unit (nats)"],
                rows,
            )
        )
    rows = []
    for c in results["meta"]["samples_per_class"]:
        for label in labels:
            s = results["summary"][label]["by_class"][c]
            rows.append([c, label, _fmt(s["cess"]["n"]), *[_fmt(s[k][METRICS[k][1]]) for k in present]])
    tables.append(
        ("Per class", None, ["class", "model", "n", *[f"{METRICS[k][0]} {METRICS[k][1]}" for k in present]], rows)
    )
    if "lines" in results:
        lines = results["lines"]
        headers = [
            "model",
            "n",
            "orientation right",
            "line count right",
            "mean abs. count error",
            "nearest train to recon: count right",
        ]
        rows = [
            [
                label,
                _fmt(v["n"]),
                _share(v["orientation_accuracy"]),
                _share(v["count_accuracy"]),
                _fmt(v["mean_abs_count_error"]),
                _share(v.get("nearest_to_recon_count_accuracy")),
            ]
            for label, v in lines["models"].items()
        ]
        n = len(lines["true_count"])
        rows.append(["originals (counter check)", _fmt(n), "–", _share(lines["input_count_accuracy"]), "–", "–"])
        if lines.get("nearest_train_count_accuracy") is not None:
            rows.append(
                [
                    "nearest train image to the original (B.3)",
                    _fmt(n),
                    "–",
                    _share(lines["nearest_train_count_accuracy"]),
                    "–",
                    "–",
                ]
            )
        note = (
            f"Orientation and line count against the labels (Hashemi et al. B, B.3); lines counted after "
            f"thresholding at {results['line_threshold']}."
        )
        tables.append(("Lines", note, headers, rows))
    if "overfitting" in results:
        headers = [
            "model",
            "n train / val",
            "image: train median",
            "image: val median",
            "image KS p",
            "stats: train median",
            "stats: val median",
            "stats KS p",
        ]
        rows = []
        for label, e in results["overfitting"].items():
            if "train" not in e or "val" not in e:
                continue
            rows.append(
                [
                    label,
                    f"{e['train']['n']} / {e['val']['n']}",
                    _fmt(e["train"]["image_summary"]["median"]),
                    _fmt(e["val"]["image_summary"]["median"]),
                    _fmt(e["ks_image"]["pvalue"], 3),
                    _fmt(e["train"]["stats_summary"]["median"]),
                    _fmt(e["val"]["stats_summary"]["median"]),
                    _fmt(e["ks_stats"]["pvalue"], 3),
                ]
            )
        if rows:
            tables.append(
                (
                    "Overfitting check",
                    "Mean MSE of each reconstruction to every image of its own split (Hashemi et al. B); "
                    "similar train and val distributions (large KS p) = no sign of overfitting.",
                    headers,
                    rows,
                )
            )
    return tables


def _md_escape(text):
    """Text safe in Markdown: no raw HTML (labels such as ``<img onerror=...>``) and no cell breaks."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def _markdown(results, tables):
    meta = results["meta"]
    lines = [
        "# Evaluation report",
        "",
        *[
            f"**{_md_escape(line)}**" if i == 0 else f"- {_md_escape(line)}"
            for i, line in enumerate(headline_lines(results))
        ],
        "",
        f"Data `{meta['data']}`, split **{meta['split']}**, {meta['n_samples']} samples "
        f"({_md_escape(', '.join(f'{c}: {n}' for c, n in meta['samples_per_class'].items()))}). Created "
        f"{meta['created']}.",
        "",
        "| model | checkpoint | architecture | config | loss | image size | parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in meta["models"].items():
        loss = ", ".join(str(k) for k in (m["loss"] or {}))
        cells = [
            label,
            m["checkpoint"],
            m["model"],
            m["config_name"] or "–",
            loss or "–",
            "x".join(map(str, m["input_size"] or [])) or "–",
            m["parameters"],
        ]
        lines.append("| " + " | ".join(map(_md_escape, cells)) + " |")
    lines.append("")
    for title, note, headers, rows in tables:
        lines += [f"## {_md_escape(title)}", ""]
        if note:
            lines += [_md_escape(note), ""]
        lines += ["| " + " | ".join(map(_md_escape, headers)) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(map(_md_escape, row)) + " |" for row in rows]
        lines.append("")
    lines += ["## Figures", ""]
    for section in dict.fromkeys(f["section"] for f in results["figures"]):
        lines += [f"### {section}", ""]
        for figure in (f for f in results["figures"] if f["section"] == section):
            caption = _md_escape(figure["caption"])
            lines += [f"![{caption}](<{figure['path']}>)", "", f"*{caption}*", ""]
    lines += ["## Definitions", ""]
    for key in DEFINITIONS:
        lines.append(f"- {key}: {_md_escape(meta[key])}")
    lines.append(f"- texture: {_md_escape(meta['texture'])}")
    lines += ["", "Every number is in `metrics.json` (per-sample values in `per_sample.csv`).", ""]
    return "\n".join(lines)


def _html(results, tables):
    meta = results["meta"]
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>microlatent evaluation</title><style>",
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}"
        "figure{margin:1.5em 0}figcaption{font-style:italic;color:#444}</style></head><body>",
        "<h1>Evaluation report</h1>",
        *[
            f"<p><b>{esc(line)}</b></p>" if i == 0 else f"<p>{esc(line)}</p>"
            for i, line in enumerate(headline_lines(results))
        ],
        f"<p>Data <code>{esc(meta['data'])}</code>, split <b>{esc(str(meta['split']))}</b>, {meta['n_samples']} "
        "samples "
        f"({esc(', '.join(f'{c}: {n}' for c, n in meta['samples_per_class'].items()))}). Created "
        f"{esc(meta['created'])}. "
        "Every number is in <a href='metrics.json'>metrics.json</a> and <a "
        "href='per_sample.csv'>per_sample.csv</a>.</p>",
        "<table><tr>"
        + "".join(
            f"<th>{h}</th>"
            for h in ("model", "checkpoint", "architecture", "config", "loss", "image size", "parameters")
        )
        + "</tr>",
    ]
    for label, m in meta["models"].items():
        loss = ", ".join(str(k) for k in (m["loss"] or {}))
        size = "x".join(map(str, m["input_size"] or [])) or "–"
        parts.append(
            f"<tr><td>{esc(label)}</td><td><code>{esc(m['checkpoint'])}</code></td><td>{esc(str(m['model']))}</td>"
            f"<td>{esc(str(m['config_name'] or '–'))}</td><td>{esc(loss or '–')}</td><td>{size}</td>"
            f"<td>{m['parameters']}</td></tr>"
        )
    parts.append("</table>")
    for title, note, headers, rows in tables:
        parts.append(f"<h2>{esc(title)}</h2>")
        if note:
            parts.append(f"<p>{esc(note)}</p>")
        parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    for section in dict.fromkeys(f["section"] for f in results["figures"]):
        parts.append(f"<h2>{esc(section)}</h2>")
        for figure in (f for f in results["figures"] if f["section"] == section):
            parts.append(
                f"<figure><img src='{esc(figure['path'])}' alt='{esc(figure['caption'])}'>"
                f"<figcaption>{esc(figure['caption'])}</figcaption></figure>"
            )
    parts.append("<h2>Definitions</h2><ul>")
    for key in DEFINITIONS:
        parts.append(f"<li>{esc(key)}: {esc(meta[key])}</li>")
    parts.append(f"<li>texture: {esc(json.dumps(meta['texture']))}</li></ul></body></html>")
    return "\n".join(parts)


def render_report(out_dir):
    """Write report.md, report.html, per_sample.csv and summary.csv of an evaluation folder from its
    metrics.json alone (see the module docstring for its schema; the figures it names are the PNGs
    already in ``figures/``). Returns the path of report.html."""
    from microlatent.errors import DataError

    out_dir = Path(out_dir)
    if not (out_dir / "metrics.json").is_file():
        raise DataError(f"{out_dir}: no metrics.json (make one with `microlatent evaluate` or `compare`)")
    try:
        results = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{out_dir / 'metrics.json'}: cannot read the evaluation's numbers ({err})") from None
    missing = [key for key in METRICS_JSON_KEYS if key not in results]
    if missing:
        raise DataError(f"{out_dir / 'metrics.json'}: not an evaluation's metrics (no {missing[0]!r})")
    samples = results["samples"]
    keys = sorted({k for values in results["per_sample"].values() for k in values})
    with open(out_dir / "per_sample.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "name", "class", "index", *keys])
        for label, values in results["per_sample"].items():
            for i, sample in enumerate(samples):
                writer.writerow(
                    [
                        label,
                        sample["name"],
                        sample["class"],
                        sample["index"],
                        *["" if values.get(k) is None or values[k][i] is None else repr(values[k][i]) for k in keys],
                    ]
                )
    stat_keys = ["n", "mean", "std", "median", "q05", "q25", "q75", "q95", "min", "max"]
    with open(out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "class", "metric", *stat_keys])
        for label, summary in results["summary"].items():
            groups = [("all", summary["all"]), *summary["by_class"].items()]
            for group, metrics in groups:
                for metric, stats in metrics.items():
                    writer.writerow(
                        [label, group, metric, *["" if stats[k] is None else repr(stats[k]) for k in stat_keys]]
                    )
    tables = _tables(results)
    (out_dir / "report.md").write_text(_markdown(results, tables))
    path = out_dir / "report.html"
    path.write_text(_html(results, tables))
    return path
