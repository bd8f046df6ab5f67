"""`rank evaluate --html`: one self-contained page people can review.

Figures are drawn with matplotlib and inlined as SVG (text kept as text), so the page
needs no network and no script to show them; a few lines of inline script only mark,
once the page has laid out, how many figures have a visible size (what the test checks
in headless Chromium). Sections: each metric against k with intervals, MRR, rank
movement between the first heuristic and each other, score distributions, and the top
of a few sample feeds side by side.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from feedctl.pipelines.ranking.evaluate import Evaluation, EvaluationReport
from feedctl.rank.evaluation.metrics import QUERY, rank_candidates, rank_movement

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FAMILIES = (
    ("ndcg", "NDCG@k"),
    ("recall", "recall@k"),
    ("communities", "distinct communities in the top k (share)"),
    ("authors", "distinct authors in the top k (share)"),
)
SAMPLE_FEEDS = 3
SAMPLE_TOP = 10
GAIN_NAMES = {0: "", 1: "viewed", 2: "reacted", 3: "commented"}

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 68rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
td, th { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
td.engaged { background: #e3f2e1; } .feeds { display: flex; gap: 1rem; flex-wrap: wrap; }
"""
_MARK_RENDERED = """
window.addEventListener("load", function () {
  var figures = document.querySelectorAll("figure.plot");
  var drawn = 0;
  figures.forEach(function (figure) {
    var svg = figure.querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : null;
    var shapes = svg ? svg.querySelectorAll("path, rect, line, polyline, use").length : 0;
    var ok = box !== null && box.width > 50 && box.height > 50 && shapes > 0;
    figure.setAttribute("data-rendered", ok ? "yes" : "no");
    if (ok) { drawn += 1; }
  });
  document.body.setAttribute("data-figures", String(figures.length));
  document.body.setAttribute("data-figures-rendered", String(drawn));
});
"""


def write_report(evaluation: Evaluation, path: Path) -> None:
    """Write the page to `path` (replacing it)."""
    path.write_text(render_report(evaluation), encoding="utf-8")


def render_report(evaluation: Evaluation) -> str:
    report = evaluation.report
    ranked = [rank_candidates(evaluation.candidates, h).collect() for h in evaluation.heuristics]
    sections = [
        _header(report),
        "<h2>Metrics against k</h2>",
        *(_figure(_metric_against_k(report, family, title), title) for family, title in FAMILIES),
        _figure(_mrr(report), "MRR (1 / position of the first engaged post)"),
        "<h2>Rank movement</h2>",
        _figure(
            _movement(evaluation.labels, ranked, max(report.ks)),
            f"positions a post moves, first heuristic to each other, for posts in either top "
            f"{max(report.ks)} (positive: moved up)",
        ),
        "<h2>Score distributions</h2>",
        _figure(
            _scores(evaluation.labels, ranked),
            "each candidate's rank key minus the top key of its feed (0 is the top), "
            "all candidates and the engaged ones",
        ),
        "<h2>Sample feeds</h2>",
        _sample_feeds(evaluation.labels, ranked),
    ]
    title = "feedctl rank evaluate: " + ", ".join(evaluation.labels)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(sections)
        + f"\n<script>{_MARK_RENDERED}</script></body></html>\n"
    )


def _header(report: EvaluationReport) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(h['label'])}</td>"
        + "".join(f"<td>{value:g}</td>" for value in h["coefficients"].values())
        + "</tr>"
        for h in report.heuristics
    )
    names = "".join(f"<th>{html.escape(n)}</th>" for n in report.heuristics[0]["coefficients"])
    first, last = report.moments[0], report.moments[-1]
    return (
        f"<p>{report.queries} queries (a sampled user at a past moment, with engagement in "
        f"the {report.window_hours:g} hours after it): {len(report.moments)} moments from "
        f"{html.escape(first)} to {html.escape(last)}, {report.users_sampled} users sampled, "
        f"{report.candidates} candidate posts ranked. Intervals are 95% bootstrap "
        f"intervals over queries ({report.resamples} resamples).</p>"
        f"<table><tr><th>heuristic</th>{names}</tr>{rows}</table>"
    )


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="plot">{svg}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _new_figure(width: float = 7.5, height: float = 3.4) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def _svg(figure: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "feedctl"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _metric_against_k(report: EvaluationReport, family: str, title: str) -> str:
    figure, axes = _new_figure()
    ks = np.array(report.ks, dtype=np.float64)
    count = len(report.heuristics)
    for index, heuristic in enumerate(report.heuristics):
        rows = [report.result(heuristic["label"], f"{family}@{k}") for k in report.ks]
        means = np.array([row.mean for row in rows])
        errors = np.array(
            [[row.mean - row.low for row in rows], [row.high - row.mean for row in rows]]
        )
        shift = 1.0 + 0.02 * (index - (count - 1) / 2)  # keep the error bars apart
        axes.errorbar(
            ks * shift, means, yerr=errors, marker="o", capsize=3, label=heuristic["label"]
        )
    axes.set_xscale("log")
    axes.set_xticks(ks, [str(k) for k in report.ks])
    axes.minorticks_off()
    axes.set_xlabel("k")
    axes.set_ylabel(title.split(" (")[0])
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return _svg(figure)


def _mrr(report: EvaluationReport) -> str:
    figure, axes = _new_figure(height=2.6)
    labels = [h["label"] for h in report.heuristics]
    rows = [report.result(label, "mrr") for label in labels]
    errors = np.array([[r.mean - r.low for r in rows], [r.high - r.mean for r in rows]])
    axes.barh(labels, [r.mean for r in rows], xerr=errors, capsize=3, color="#4c72b0")
    axes.invert_yaxis()
    axes.set_xlabel("MRR")
    axes.grid(alpha=0.3, axis="x")
    return _svg(figure)


def _movement(labels: Sequence[str], ranked: Sequence[pl.DataFrame], top: int) -> str:
    figure, axes = _new_figure()
    if len(ranked) < 2:
        axes.text(0.5, 0.5, "one heuristic: nothing moves", ha="center", va="center")
        axes.set_axis_off()
        return _svg(figure)
    first = ranked[0].lazy()
    moved = [rank_movement(first, other.lazy(), top)["movement"].to_numpy() for other in ranked[1:]]
    spread = max(1, int(max(np.abs(m).max() if m.size else 0 for m in moved)))
    bins = np.linspace(-spread - 0.5, spread + 0.5, min(81, 2 * spread + 2))
    for label, values in zip(labels[1:], moved, strict=True):
        axes.hist(
            values, bins=list(bins), histtype="step", linewidth=1.5, label=f"{labels[0]} → {label}"
        )
    axes.set_yscale("log")
    axes.set_xlabel("positions moved (before - after)")
    axes.set_ylabel("posts")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return _svg(figure)


def _scores(labels: Sequence[str], ranked: Sequence[pl.DataFrame]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 1.2 + 1.8 * len(ranked)), layout="constrained")
    axes_list = figure.subplots(len(ranked), 1, squeeze=False)[:, 0]
    for axes, label, frame in zip(axes_list, labels, ranked, strict=True):
        gaps = frame.with_columns(gap=pl.col("score") - pl.col("score").max().over(QUERY))
        every = gaps["gap"].to_numpy()
        engaged = gaps.filter(pl.col("gain") > 0)["gap"].to_numpy()
        low = float(np.quantile(every, 0.01)) if every.size else -1.0
        bins = np.linspace(min(low, -1e-9), 0.0, 50)
        axes.hist(np.clip(every, low, 0.0), bins=bins, density=True, alpha=0.5, label="all")
        axes.hist(
            np.clip(engaged, low, 0.0),
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.5,
            label="engaged",
        )
        axes.set_title(label, fontsize="medium", loc="left")
        axes.legend(fontsize="small")
    axes_list[-1].set_xlabel("key minus the feed's top key (the lowest 1% clipped)")
    return _svg(figure)


def _sample_feeds(labels: Sequence[str], ranked: Sequence[pl.DataFrame]) -> str:
    """The queries with the most engaged posts, their top posts under each heuristic."""
    first = ranked[0]
    busiest = (
        first.group_by(QUERY)
        .agg((pl.col("gain") > 0).sum().alias("engaged"))
        .sort(["engaged", *QUERY], descending=[True, False, False])
        .head(SAMPLE_FEEDS)
    )
    parts: list[str] = []
    for moment, user_id, engaged in busiest.iter_rows():
        columns = []
        for label, frame in zip(labels, ranked, strict=True):
            top = frame.filter(
                (pl.col("moment") == moment)
                & (pl.col("user_id") == user_id)
                & (pl.col("position") <= SAMPLE_TOP)
            ).sort("position")
            cells = "".join(
                f"<tr><td>{row['position']}</td>"
                f'<td class="{"engaged" if row["gain"] else ""}">post {row["post_id"]} '
                f"{GAIN_NAMES[row['gain']]}</td></tr>"
                for row in top.iter_rows(named=True)
            )
            columns.append(
                f"<table><tr><th colspan=2>{html.escape(label)}</th></tr>{cells}</table>"
            )
        parts.append(
            f"<p>user {user_id} at {html.escape(moment.isoformat())}: {engaged} engaged "
            f"posts in the window (green).</p><div class=feeds>{''.join(columns)}</div>"
        )
    return "\n".join(parts)
