"""Figures of the comparison reports (matplotlib, Agg backend): plain arrays in, `Figure` out.

Owns the look of every plot wmbench writes: aggregate interval plots (rliable style, Agarwal et al. 2021 Fig. 4),
performance profiles (Fig. 5), probability-of-improvement intervals (Fig. 8), per-task learning curves with bands,
and small scatter / bar helpers reused by the analyses. No statistics are computed here: callers pass point
estimates and intervals computed by `wmbench.stats`, so a figure can never disagree with the table beside it.
`to_png_base64` turns a figure into the inline image the self-contained HTML report embeds.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written on headless machines; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

# Font sizes chosen for figures shown at their natural size: at to_png_base64's 110 dpi, a figure at most
# MAX_WIDTH inches wide fits the report's 1150 px column without being scaled down (which shrinks the text).
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
MAX_WIDTH = 10.4
# Colour-blind-safe palette (Okabe & Ito 2008), stable per method across all figures of a report.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

METRIC_LABELS = {
    "iqm": "IQM",
    "mean": "Mean",
    "median": "Median",
    "optimality_gap": "Optimality gap",
}

Interval = tuple[float, float, float]  # (point, low, high)


def colours(labels: Sequence[str]) -> dict[str, str]:
    """One colour per label, in order (cycles after 8)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _short_number(value: float, _pos: int | None = None) -> str:
    """Tick label without offset text: 400000 -> 400k, 2500000 -> 2.5M, 0.25 -> 0.25."""
    magnitude = abs(value)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _figure(width: float, height: float) -> Figure:
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(width, height), dpi=100)
    return fig


def to_png_base64(fig: Figure, dpi: int = 110) -> str:
    """PNG bytes of the figure, base64-encoded for `<img src="data:image/png;base64,...">`; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def interval_plot(
    estimates: Mapping[str, Mapping[str, Interval]],
    metrics: Sequence[str],
    xlabel: str = "normalised score",
    colour_of: Mapping[str, str] | None = None,
) -> Figure:
    """Aggregate point estimates with confidence intervals: one panel per metric, one row per method.

    estimates: {method: {metric: (point, low, high)}}.
    """
    methods = list(estimates)
    colour_of = colour_of or colours(methods)
    with plt.rc_context(STYLE):
        fig = _figure(min(MAX_WIDTH, 2.1 * len(metrics) + 2.0), 0.5 * len(methods) + 1.4)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
        for j, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
            lows = [estimates[m][metric][1] for m in methods]
            highs = [estimates[m][metric][2] for m in methods]
            span = max(highs) - min(lows) or max(1.0, abs(max(highs)))
            for i, method in enumerate(methods):
                point, low, high = estimates[method][metric]
                y = len(methods) - 1 - i
                # Thick translucent bar = CI, tick = point estimate (rliable's plot_interval_estimates look). An
                # interval narrower than 1.5% of the panel (e.g. a method near 0 on every seed) would vanish: draw it
                # at that width around the point, outlined, so it stays visible.
                width = high - low
                if width < 0.015 * span:
                    width = 0.015 * span
                    low = point - width / 2
                ax.barh(y, width, left=low, height=0.6, color=colour_of[method], alpha=0.75,
                        edgecolor=colour_of[method], linewidth=1.2)
                ax.vlines(point, y - 0.3, y + 0.3, color="black", linewidth=1.8)
            ax.set_yticks(range(len(methods)))
            ax.set_yticklabels(list(reversed(methods)) if j == 0 else [])
            ax.set_title(METRIC_LABELS.get(metric, metric))
            ax.grid(axis="y", visible=False)
            ax.set_ylim(-0.6, len(methods) - 0.4)
            # Keep intervals at the edge of the range visibly off the axis spine (bars are "sticky" at their base,
            # which defeats ax.margins: PPO's near-zero bars sat on the spine).
            pad = 0.08 * span
            ax.set_xlim(min(min(lows), min(e[metric][0] for e in estimates.values())) - pad,
                        max(max(highs), max(e[metric][0] for e in estimates.values())) + pad)
        fig.supxlabel(xlabel, fontsize=11, y=0.02)
        fig.tight_layout()
    return fig


def performance_profile_plot(
    taus: np.ndarray,
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    xlabel: str = "normalised score (τ)",
    colour_of: Mapping[str, str] | None = None,
) -> Figure:
    """Run-score distributions: fraction of runs with score > τ, with a CI band per method.

    profiles: {method: (fraction[len(taus)], low, high)}.
    """
    colour_of = colour_of or colours(list(profiles))
    with plt.rc_context(STYLE):
        fig = _figure(8.0, 4.5)
        ax = fig.subplots()
        for method, (frac, low, high) in profiles.items():
            ax.plot(taus, frac, color=colour_of[method], linewidth=2, label=method)
            ax.fill_between(taus, low, high, color=colour_of[method], alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_ylim(0, 1.02)
        ax.set_xlim(float(taus[0]), float(taus[-1]))
        ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
    return fig


def improvement_plot(
    probabilities: Mapping[str, Interval],
    against: str,
    colour_of: Mapping[str, str] | None = None,
) -> Figure:
    """P(method > against) with CIs, one row per method; 0.5 (no difference) marked."""
    methods = list(probabilities)
    colour_of = colour_of or colours(methods)
    with plt.rc_context(STYLE):
        fig = _figure(7.0, 0.5 * len(methods) + 1.4)
        ax = fig.subplots()
        for i, method in enumerate(methods):
            point, low, high = probabilities[method]
            y = len(methods) - 1 - i
            ax.barh(y, high - low, left=low, height=0.6, color=colour_of.get(method, PALETTE[0]), alpha=0.75)
            ax.vlines(point, y - 0.3, y + 0.3, color="black", linewidth=1.8)
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels([f"P({m} > {against})" for m in reversed(methods)])
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability of improvement")
        ax.grid(axis="y", visible=False)
        fig.tight_layout()
    return fig


def learning_curves(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]],
    xlabel: str = "steps",
    ylabel: str = "episode return",
    colour_of: Mapping[str, str] | None = None,
    columns: int = 4,
    budget: float | None = None,
) -> Figure:
    """Grid of per-task learning curves: line = mean over seeds, band = its 95% bootstrap CI over seeds.

    curves: {task: {method: (x, mean, low, high)}}. A vertical dotted line marks the protocol budget.
    """
    tasks = list(curves)
    methods = list(dict.fromkeys(m for per_task in curves.values() for m in per_task))
    colour_of = colour_of or colours(methods)
    columns = max(1, min(columns, len(tasks)))
    rows = math.ceil(len(tasks) / columns)
    with plt.rc_context(STYLE):
        fig = _figure(min(MAX_WIDTH, 2.6 * columns), 2.3 * rows + 0.6)
        axes = fig.subplots(rows, columns, squeeze=False)
        for k, task in enumerate(tasks):
            ax = axes[k // columns][k % columns]
            for method, (x, mean, low, high) in curves[task].items():
                ax.plot(x, mean, color=colour_of[method], linewidth=1.6, label=method)
                ax.fill_between(x, low, high, color=colour_of[method], alpha=0.18, linewidth=0)
            if budget is not None:
                ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
            ax.set_title(task)
            ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
            ax.yaxis.set_major_formatter(FuncFormatter(_short_number))
        for k in range(len(tasks), rows * columns):
            axes[k // columns][k % columns].set_visible(False)
        handles = [plt.Line2D([], [], color=colour_of[m], linewidth=2) for m in methods]
        fig.legend(handles, methods, loc="upper center", ncol=min(len(methods), 6), frameon=False,
                   bbox_to_anchor=(0.5, 1.0))
        fig.supxlabel(xlabel, fontsize=11)
        fig.supylabel(ylabel, fontsize=11)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.3 * rows + 0.6)))
    return fig


def scatter(
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    diagonal: bool = False,
) -> Figure:
    """Scatter of paired values with optional point labels and an x = y reference line."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    with plt.rc_context(STYLE):
        fig = _figure(5.5, 4.5)
        ax = fig.subplots()
        ax.scatter(x, y, s=28, color=PALETTE[0], alpha=0.8)
        if labels is not None:
            for xi, yi, label in zip(x, y, labels, strict=True):
                ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=8)
        if diagonal and len(x):
            lo, hi = float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))
            ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        fig.tight_layout()
    return fig


def bar(
    values: Mapping[str, float],
    errors: Mapping[str, tuple[float, float]] | None = None,
    ylabel: str = "",
    title: str = "",
) -> Figure:
    """Vertical bars, one per key, with optional (low, high) intervals drawn as error bars."""
    keys = list(values)
    heights = np.array([values[k] for k in keys], float)
    with plt.rc_context(STYLE):
        fig = _figure(max(4.0, 0.6 * len(keys) + 2), 4.0)
        ax = fig.subplots()
        yerr = None
        if errors is not None:
            low = np.array([errors[k][0] for k in keys], float)
            high = np.array([errors[k][1] for k in keys], float)
            yerr = np.vstack([heights - low, high - heights])
        ax.bar(range(len(keys)), heights, yerr=yerr, color=PALETTE[0], alpha=0.8, capsize=3)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=45 if len(keys) > 6 else 0, ha="right" if len(keys) > 6 else "center")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
        fig.tight_layout()
    return fig


def sample_efficiency_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    xlabel: str = "steps",
    ylabel: str = "IQM of normalised score",
    colour_of: Mapping[str, str] | None = None,
) -> Figure:
    """An aggregate (IQM) at several budgets per method with its CI band: {method: (x, point, low, high)}."""
    colour_of = colour_of or colours(list(curves))
    with plt.rc_context(STYLE):
        fig = _figure(8.0, 4.5)
        ax = fig.subplots()
        for method, (x, point, low, high) in curves.items():
            ax.plot(x, point, color=colour_of[method], linewidth=2, marker="o", markersize=3, label=method)
            ax.fill_between(x, low, high, color=colour_of[method], alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
    return fig


# One colour per method name on every report and leaderboard page (`colours` above numbers labels in order, so a
# method's colour depends on what else is on the page). The shipped baselines and the most compared published
# methods have fixed colours; any other name takes one from a hash of its name, so it is the same wherever it
# appears (two unlisted names can share a colour: the legend and the table name them).
METHOD_COLOURS = {
    "dreamerv3": "#0072B2",
    "random": "#7F7F7F",
    "pets": "#E69F00",
    "pilco": "#009E73",
    "mbmf": "#D55E00",
    "ppo": "#CC79A7",
}
# Okabe & Ito (without its yellow, too faint on white) plus Paul Tol's "muted" scheme: colour-blind-safe.
HASHED_PALETTE = ("#56B4E9", "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#882255",
                  "#AA4499", "#DDCC77", "#661100", "#CC6677")


def _blend(colour: str, towards: str, amount: float) -> str:
    a = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(towards[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * amount):02X}" for x, y in zip(a, b, strict=True))


def _luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def method_colour(label: str) -> str:
    """The colour of an entry label such as `dreamerv3`, `dreamerv3 (published)` or `pets (smoke, 1,800 steps)`.

    The method name (before " (") picks the hue; a qualifier keeps the hue and shifts the shade (published: darker,
    smoke: lighter, or darker for an already light hue; anything else: by its hash), so our runs and a method's
    published runs stay side by side and distinguishable, and no shade fades into the white page.
    """
    import zlib

    method, _, qualifier = label.partition(" (")
    method = method.strip()
    base = METHOD_COLOURS.get(method) or HASHED_PALETTE[zlib.crc32(method.encode()) % len(HASHED_PALETTE)]
    qualifier = qualifier.rstrip(")").strip()
    if not qualifier:
        return base
    if qualifier.startswith("published"):
        return _blend(base, "#000000", 0.35)
    # smoke: lighter, unless the hue is light already (it would fade into the white page): then darker
    lighter = _luminance(base) < 0.6
    if not qualifier.startswith("smoke"):
        lighter = bool(zlib.crc32(qualifier.encode()) % 2)
    return _blend(base, "#FFFFFF", 0.4) if lighter else _blend(base, "#000000", 0.5)


def method_colours(labels: Sequence[str]) -> dict[str, str]:
    """`method_colour` for each label: the same label has the same colour on every page."""
    return {label: method_colour(label) for label in labels}
