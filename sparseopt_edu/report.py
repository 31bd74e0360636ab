"""Self-contained HTML reports (plotly inlined once: they open offline): convergence curves and Fig. 3.

The training engine never imports this module (or plotly); the CLI does.
"""
from __future__ import annotations

import html

from .bands import band_over_seeds

COLORS = {"dense": "#444444", "rigl": "#d62728", "rigl+sparseopt": "#1f77b4", "set": "#ff7f0e",
          "set+sparseopt": "#2ca02c", "srigl": "#9467bd", "srigl+sparseopt": "#17becf", "static": "#8c564b",
          "static+sparseopt": "#e377c2", "bn": "#d62728", "none": "#444444", "ln": "#1f77b4", "gn": "#2ca02c"}


def convergence_figures(rows: list[dict]):
    """One figure per sparsity: train loss and test accuracy per epoch, mean over seeds with a min-max band."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sparsities = sorted({r["sparsity"] for r in rows if r["variant"] != "dense"}) or [0.0]
    figs = []
    for sp in sparsities:
        fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "test accuracy"))
        variants = [v for v in dict.fromkeys(r["variant"] for r in rows)]
        for variant in variants:
            group = [r for r in rows if r["variant"] == variant and (variant == "dense" or r["sparsity"] == sp)]
            if not group:
                continue
            color = COLORS.get(variant, None)
            for col, key in ((1, "train_loss"), (2, "test_acc")):
                mean, lo, hi, _ = band_over_seeds([r["history"][key] for r in group])
                x = list(range(1, len(mean) + 1))
                fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", line={"width": 0},
                                         fillcolor=color, opacity=0.15, showlegend=False, hoverinfo="skip",
                                         legendgroup=variant), row=1, col=col)
                fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=variant, legendgroup=variant,
                                         line={"color": color}, showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="epoch")
        fig.update_layout(title=f"sparsity {sp:.0%} (mean over seeds, band = min..max)", height=420,
                          template="plotly_white")
        figs.append(fig)
    return figs


def skew_figure(rows: list[dict]):
    """The paper's Fig. 3: sparse/dense gradient ratio against sparsity, measured and theory."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for norm in dict.fromkeys(r["norm"] for r in rows):
        rs = sorted((r for r in rows if r["norm"] == norm), key=lambda r: r["sparsity"])
        color = COLORS.get(norm)
        fig.add_trace(go.Scatter(x=[r["sparsity"] for r in rs], y=[r["ratio"] for r in rs], mode="lines+markers",
                                 name=f"{norm}: measured", line={"color": color},
                                 error_y={"type": "data", "array": [r.get("std", 0.0) for r in rs]}))
        fig.add_trace(go.Scatter(x=[r["sparsity"] for r in rs], y=[r["theory"] for r in rs], mode="lines",
                                 name=f"{norm}: theory", line={"color": color, "dash": "dash"}))
    fig.update_layout(title="Gradient skew (paper Fig. 3): sparse-layer / dense-layer mean |gradient| per weight",
                      xaxis_title="sparsity of the first layer", yaxis_title="ratio", template="plotly_white",
                      height=450)
    return fig


def page(title: str, figures=(), sections: list[str] = ()) -> str:
    """One HTML page: the sections (already HTML) then the figures, plotly.js inlined once."""
    import plotly.io as pio

    parts = []
    for i, fig in enumerate(figures):
        parts.append(pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False))
    body = "\n".join(list(sections) + parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def markdown_to_html_table(md: str) -> str:
    """The small Markdown tables we write, as an HTML table."""
    rows = [line.strip().strip("|").split("|") for line in md.strip().splitlines() if line.startswith("|")]
    rows = [r for r in rows if not all(set(c.strip()) <= set("-:") for c in r)]
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write(path, text: str) -> str:
    from .train.runs import atomic_write_text

    atomic_write_text(path, text)
    return str(path)
