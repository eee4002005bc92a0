"""Server-rendered SVG plots for leaderboard pages and the report.

Each function returns one ``<svg>`` element as a string, ready to inline in HTML:
no XML prolog or DOCTYPE, no external reference, text kept as ``<text>`` (browsers
draw it with local fonts; nothing is downloaded). Rendering uses matplotlib's
object API with the Agg/SVG canvases only (no pyplot state), so it is safe in a web
worker thread. Output is deterministic for given inputs: no date in the metadata, ids
salted per plot so several plots can share one HTML page.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from evaluator.bootstrap_result import BootstrapResult

__all__ = [
    "center_heatmap_svg",
    "per_case_dsc_svg",
    "rank_stability_svg",
    "svg_without_css",
    "text_label",
]

_METADATA: dict[str, str | None] = {"Date": None, "Type": None, "Format": None, "Creator": None}
_ACCENT = "#1f5fa8"
# rc_context changes matplotlib's global rcParams: serialise SVG writing across threads.
_SAVE_LOCK = threading.Lock()
# ``vert`` became ``orientation`` in matplotlib 3.10 (``vert`` is deprecated from 3.11).
_HORIZONTAL: dict[str, Any] = (
    {"orientation": "horizontal"}
    if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    else {"vert": False}
)
_CMAP = LinearSegmentedColormap.from_list("hecktor", ["#f7fbff", "#6baed6", "#08306b"], N=64)


def text_label(text: object) -> str:
    """A user-supplied string as literal matplotlib text (no mathtext on ``$``)."""
    return str(text).replace("$", r"\$")


def _to_svg(fig: Figure, *, salt: str) -> str:
    buf = io.StringIO()
    salt_hex = hashlib.sha256(salt.encode()).hexdigest()[:16]
    with (
        _SAVE_LOCK,
        matplotlib.rc_context(
            {"svg.fonttype": "none", "svg.hashsalt": salt_hex, "svg.image_inline": True}
        ),
    ):
        fig.savefig(buf, format="svg", metadata=_METADATA, bbox_inches="tight")
    text = buf.getvalue()
    start = text.find("<svg")
    if start < 0:  # pragma: no cover - matplotlib always writes an <svg> root
        raise RuntimeError("matplotlib produced no <svg> element")
    return text[start:].strip() + "\n"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    fig.patch.set_facecolor("white")
    return fig


def _height(n_rows: int) -> float:
    return 1.3 + 0.32 * max(n_rows, 1)


def _empty(message: str, *, salt: str) -> str:
    fig = _new_figure(5.0, 1.0)
    fig.text(0.5, 0.5, text_label(message), ha="center", va="center", color="#555555")
    return _to_svg(fig, salt=salt)


def per_case_dsc_svg(
    values: Mapping[str, Sequence[float | None]],
    *,
    title: str = "GTVp DSC per case",
    xlabel: str = "DSC",
    seed: int = 0,
) -> str:
    """Per-case values per team: one row per team (in the given order, best first),
    a box (quartiles, whiskers at 1.5 IQR) under the individual cases as jittered dots,
    and the mean as a diamond. ``None`` (a case excluded by the protocol) is skipped."""
    teams = list(values)
    salt = f"per-case:{title}:{'|'.join(teams)}"
    if not teams:
        return _empty("no team to show", salt=salt)
    data = [
        np.asarray(
            [float(v) for v in values[t] if v is not None and math.isfinite(float(v))],
            dtype=float,
        )
        for t in teams
    ]
    fig = _new_figure(7.5, _height(len(teams)))
    ax = fig.add_subplot()
    pos = np.arange(len(teams))[::-1]  # first team on top
    nonempty = [i for i, d in enumerate(data) if d.size]
    if nonempty:
        ax.boxplot(
            [data[i] for i in nonempty],
            positions=pos[nonempty],
            **_HORIZONTAL,
            widths=0.6,
            showfliers=False,
            patch_artist=True,
            boxprops={"facecolor": "#dfe8f3", "edgecolor": "#4a6a8a"},
            medianprops={"color": "#08306b", "linewidth": 1.5},
            whiskerprops={"color": "#4a6a8a"},
            capprops={"color": "#4a6a8a"},
        )
    rng = np.random.default_rng(seed)
    for i, d in enumerate(data):
        if not d.size:
            continue
        jitter = rng.uniform(-0.22, 0.22, d.size)
        ax.scatter(d, pos[i] + jitter, s=7, color=_ACCENT, alpha=0.55, linewidths=0, zorder=3)
        ax.scatter(
            [d.mean()], [pos[i]], marker="D", s=28, color="#d95f02", zorder=4,
            label="mean" if i == nonempty[0] else None,
        )  # fmt: skip
    ax.set_yticks(pos, labels=[text_label(t) for t in teams])
    ax.set_ylim(-0.7, len(teams) - 0.3)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(text_label(xlabel))
    ax.set_title(text_label(title), loc="left", fontsize=11)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    if nonempty:
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _to_svg(fig, salt=salt)


def rank_stability_svg(result: BootstrapResult, *, title: str | None = None) -> str:
    """Blob plot of the final rank across bootstrap resamples: one row per team (by
    full-data rank), a disc at each rank it took with area proportional to how often,
    a black bar for the 95% interval, a black tick at the median, and a red ring at
    the full-data rank."""
    title = title or f"Task {result.task}: final rank over {result.n_resamples} bootstrap resamples"
    teams = sorted(result.teams, key=lambda t: (t.rank.full_rank, t.team))
    salt = f"rank:{title}:{'|'.join(t.team for t in teams)}"
    if not teams:
        return _empty("no team to show", salt=salt)
    n = len(teams)
    fig = _new_figure(7.5, _height(n))
    ax = fig.add_subplot()
    pos = np.arange(n)[::-1]
    ranks = np.asarray(result.rank_values, dtype=float)
    for i, t in enumerate(teams):
        total = sum(t.rank.counts)
        if total and ranks.size:
            share = np.asarray(t.rank.counts, dtype=float) / total
            seen = share > 0
            ax.scatter(
                ranks[seen], np.full(int(seen.sum()), pos[i]), s=600.0 * share[seen],
                color=_ACCENT, alpha=0.6, linewidths=0, zorder=2,
            )  # fmt: skip
        if t.rank.low is not None and t.rank.high is not None:
            ax.plot([t.rank.low, t.rank.high], [pos[i], pos[i]], color="black", lw=1.2, zorder=3)
        if t.rank.median is not None:
            ax.plot([t.rank.median], [pos[i]], marker="|", ms=12, mew=2, color="black", zorder=4)
        ax.plot(
            [t.rank.full_rank], [pos[i]], marker="o", ms=9, mfc="none", mec="#c0392b",
            mew=1.5, zorder=5,
        )  # fmt: skip
    ax.set_yticks(pos, labels=[text_label(t.team) for t in teams])
    ax.set_xticks(np.arange(1, n + 1))
    ax.set_xlim(0.4, n + 0.6)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("final rank (1 = best)")
    ax.set_title(text_label(title), loc="left", fontsize=11)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    alpha_pct = round(100 * (1 - result.alpha))
    # below the tick labels and the axis label, whatever the figure's height
    ax.annotate(
        f"disc area: share of resamples at that rank; bar: {alpha_pct}% interval; "
        "tick: median; ring: full-data rank",
        xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0.0, -38.0),
        textcoords="offset points", fontsize=8, color="#555555", ha="left", va="top",
        annotation_clip=False,
    )  # fmt: skip
    return _to_svg(fig, salt=salt)


def _value_grid(
    values: Mapping[str, Mapping[str, float | None]], teams: Sequence[str], cols: Sequence[str]
) -> np.ndarray:
    """teams x centres as floats, NaN where a value is missing or not finite."""
    grid = np.full((len(teams), len(cols)), np.nan)
    for i, t in enumerate(teams):
        for j, c in enumerate(cols):
            v = values[t].get(c)
            if v is not None and math.isfinite(float(v)):
                grid[i, j] = float(v)
    return grid


def _label_cells(ax: Any, grid: np.ndarray, mid: float) -> None:
    """Each cell's value as text ("n/a" when undefined), white on the dark half."""
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            label = "n/a" if not math.isfinite(v) else f"{v:.2f}"
            color = "white" if math.isfinite(v) and v > mid else "#222222"
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color=color)


def center_heatmap_svg(
    values: Mapping[str, Mapping[str, float | None]],
    *,
    metric_label: str,
    centers: Sequence[str] | None = None,
    n_cases: Mapping[str, int] | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
) -> str:
    """Heat map of one metric: teams (rows, in the given order) x centres (columns),
    each cell annotated with its value; undefined cells grey with "n/a".
    ``n_cases`` adds the centre's case count to the column labels."""
    teams = list(values)
    cols = list(centers) if centers is not None else sorted({c for t in teams for c in values[t]})
    salt = f"centre:{metric_label}:{'|'.join(teams)}:{'|'.join(cols)}"
    if not teams or not cols:
        return _empty("no per-centre values to show", salt=salt)
    grid = _value_grid(values, teams, cols)
    finite = grid[np.isfinite(grid)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1.0
    width = min(2.6 + 0.75 * len(cols), 14.0)
    fig = _new_figure(width, _height(len(teams)))
    ax = fig.add_subplot()
    cmap = _CMAP.with_extremes(bad="#d9d9d9")
    # pcolormesh, not imshow: vector cells in the SVG instead of an embedded PNG.
    image = ax.pcolormesh(
        np.arange(len(cols) + 1) - 0.5,
        np.arange(len(teams) + 1) - 0.5,
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=lo,
        vmax=hi,
        edgecolors="white",
        linewidth=1.0,
    )
    ax.set_xlim(-0.5, len(cols) - 0.5)
    ax.set_ylim(len(teams) - 0.5, -0.5)  # first team on top
    _label_cells(ax, grid, (lo + hi) / 2.0)
    col_labels = [
        text_label(f"{c}\n(n={n_cases[c]})" if n_cases and c in n_cases else c) for c in cols
    ]
    ax.set_xticks(np.arange(len(cols)), labels=col_labels, fontsize=8)
    ax.set_yticks(np.arange(len(teams)), labels=[text_label(t) for t in teams])
    ax.tick_params(top=True, bottom=False, labeltop=True, labelbottom=False)
    ax.set_title(text_label(f"{metric_label} per centre"), loc="left", fontsize=11, pad=28)
    cbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label(text_label(metric_label))
    if cbar.solids is not None:
        cbar.solids.set_rasterized(False)  # keep the SVG free of embedded images
    return _to_svg(fig, salt=salt)


# SVG properties that are also presentation attributes (SVG 1.1/2): the ones matplotlib
# writes, and the usual others.
_PRESENTATION = frozenset(
    {
        "clip-rule", "color", "display", "dominant-baseline", "fill", "fill-opacity",
        "fill-rule", "font-family", "font-size", "font-style", "font-variant", "font-weight",
        "letter-spacing", "opacity", "paint-order", "shape-rendering", "stop-color",
        "stop-opacity", "stroke", "stroke-dasharray", "stroke-dashoffset", "stroke-linecap",
        "stroke-linejoin", "stroke-miterlimit", "stroke-opacity", "stroke-width",
        "text-anchor", "text-rendering", "visibility", "white-space", "word-spacing",
    }
)  # fmt: skip
_STYLE_ATTR = re.compile(r"""\sstyle=(?:"([^"]*)"|'([^']*)')""")
_TAG = re.compile(r"<[^<>]*>")
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S)
_UNIVERSAL_RULE = re.compile(r"(?:^|[\s}])\*\s*\{([^}]*)\}")


def _attributes(declarations: str) -> str:
    out: list[str] = []
    seen: set[str] = set()
    for decl in declarations.split(";"):
        name, sep, value = decl.partition(":")
        name, value = name.strip().lower(), value.strip()
        if sep and value and name in _PRESENTATION and name not in seen:
            seen.add(name)
            out.append(f' {name}="{html.escape(value, quote=True)}"')
    return "".join(out)


def svg_without_css(svg: str) -> str:
    """The same SVG with its CSS turned into presentation attributes, for pages whose
    Content-Security-Policy allows no inline style (``style-src 'self'``): ``style``
    attributes become attributes (``fill="#fff"``), the universal ``* {...}`` rule of
    the ``<style>`` element moves to the root (the properties matplotlib puts there are
    inherited) and the element is dropped."""

    def in_tag(tag: re.Match[str]) -> str:  # text content is never touched
        return _STYLE_ATTR.sub(
            lambda m: _attributes(html.unescape(m[1] if m[1] is not None else m[2])), tag[0]
        )

    svg = _TAG.sub(in_tag, svg)
    rules = " ".join(m.group(1) for m in _STYLE_ELEMENT.finditer(svg))
    svg = _STYLE_ELEMENT.sub("", svg)
    root = "".join(_attributes(body) for body in _UNIVERSAL_RULE.findall(rules))
    if root:
        svg = svg.replace("<svg", "<svg" + root, 1)
    return svg
