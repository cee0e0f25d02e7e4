"""The report's charts, drawn with matplotlib and returned as inline SVG (no scripts, no network).

Each function takes report rows and returns an ``svg`` string, or raises ``NoData`` with the sentence the
page shows instead of an empty chart. Figures are built with ``matplotlib.figure.Figure`` (no pyplot global
state), text is drawn as paths so the page looks the same without the fonts, and element ids are prefixed
per chart so several SVGs can live in one HTML document.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections import defaultdict
from typing import Any

import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from scoring.models.reference import psi

SCORED, QUARANTINED, FAILED, OK = "#4C72B0", "#DD8452", "#C44E52", "#55A868"
RC = {"svg.fonttype": "path", "svg.hashsalt": "scoring-report", "font.size": 9, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}
WIDTH = 11.0


class NoData(Exception):  # noqa: N818 - a signal, not an error
    """A chart has nothing to draw; the message says why."""


def to_svg(fig: Figure, prefix: str) -> str:
    """The figure as an ``<svg>`` element with ids made unique by ``prefix``."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return re.sub(r'(\bid="|href="#|url\(#)([^")]+)', lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _figure(height: float, rows: int = 1, **kw: Any) -> tuple[Figure, Any]:
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=rows > 1, **kw)
    return fig, axes


def _at(day: dt.date, offset: float = 0.0) -> dt.datetime:
    """A point on the date axis: midnight of ``day`` plus ``offset`` days (dates alone drop fractions)."""
    return dt.datetime(day.year, day.month, day.day) + dt.timedelta(days=offset)


def _date_axis(ax: Any, start: dt.date, end: dt.date) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlim(_at(start, -0.6), _at(end, 0.6))


LEGEND_ROW_PT = 16  # height of one row of an 8 pt legend placed by _legend_above


def _legend_above(ax: Any) -> None:
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=4, fontsize=8, frameon=False)


def _latest_failed(runs: list[dict[str, Any]]) -> list[dt.date]:
    latest: dict[dt.date, str] = {}
    for r in runs:  # ordered by started_at
        latest[r["day"]] = r["status"]
    return sorted(d for d, s in latest.items() if s != "success")


def rows_per_day(daily: list[dict[str, Any]], runs: list[dict[str, Any]], start: dt.date, end: dt.date) -> str:
    """Stacked bars of scored and quarantined rows per day; days whose latest run failed are shaded red."""
    if not daily and not runs:
        raise NoData("no runs in this range")
    with matplotlib.rc_context(RC):
        fig, ax = _figure(3.2)
        days = [r["day"] for r in daily]
        scored = np.array([r["rows_scored"] for r in daily], dtype=float)
        quarantined = np.array([r["rows_quarantined"] for r in daily], dtype=float)
        ax.bar(days, scored, width=0.8, color=SCORED, label="scored")
        ax.bar(days, quarantined, width=0.8, bottom=scored, color=QUARANTINED, label="quarantined")
        for i, d in enumerate(_latest_failed(runs)):
            ax.axvspan(_at(d, -0.5), _at(d, 0.5), color=FAILED, alpha=0.25,
                       label="latest run failed" if i == 0 else None, gid=f"failed-day-{d}")
        ax.set_ylabel("rows")
        ax.set_ylim(0, max(float((scored + quarantined).max()) if daily else 0.0, 1.0) * 1.05)
        _legend_above(ax)
        _date_axis(ax, start, end)
        return to_svg(fig, "rows")


def _version_changes(daily: list[dict[str, Any]]) -> list[tuple[dt.date, int]]:
    out, previous = [], None
    for r in daily:
        if r["model_version"] != previous:
            out.append((r["day"], r["model_version"]))
            previous = r["model_version"]
    return out


def score_over_time(daily: list[dict[str, Any]], start: dt.date, end: dt.date, task: str = "binary") -> str:
    """Positive rate (top) and the p10/p50/p90 band with the mean score (bottom); version changes marked.
    Regression: the predictions' p10/p50/p90 band, mean and min/max, without the positive rate."""
    daily = [r for r in daily if r["rows_scored"]]
    if not daily:
        raise NoData("no scored rows in this range")
    regression = task == "regression"
    # Every day of the range on the x axis, NaN where nothing was scored: lines and bands break there
    # instead of drawing straight across days without data.
    by_day = {r["day"]: r for r in daily}
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]

    def series(key: str) -> np.ndarray:
        return np.array([float(by_day[d][key]) if d in by_day and by_day[d][key] is not None else np.nan
                         for d in days])

    have = np.array([d in by_day for d in days])
    with matplotlib.rc_context(RC):
        fig, (top, bottom) = _figure(5.0, rows=2)
        if regression:
            top.plot(days, series("mean_score"), marker="o", ms=3, color=SCORED, label="mean prediction")
            top.set_ylabel("mean")
        else:
            rate, n = series("positive_rate"), series("rows_scored")
            low, high = wilson_interval(rate, n)
            top.fill_between(days, low, high, where=have, color=SCORED, alpha=0.2, interpolate=False,
                             label="95% binomial interval (Wilson): day-to-day noise")
            top.plot(days, rate, marker="o", ms=3, color=SCORED, label="positive rate (label = 1)")
            top.set_ylabel("positive rate")
        bottom.fill_between(days, series("score_p10"), series("score_p90"), where=have, color=SCORED, alpha=0.25,
                            interpolate=False, label="p10 – p90")
        bottom.plot(days, series("score_p50"), color=SCORED, marker="o", ms=3, label="median (p50)")
        bottom.plot(days, series("mean_score"), color="#333333", ls=":", label="mean")
        if regression:
            bottom.plot(days, series("score_min"), color="#777777", lw=0.8, ls="--", label="min / max")
            bottom.plot(days, series("score_max"), color="#777777", lw=0.8, ls="--")
        bottom.set_ylabel("prediction" if regression else "score")
        for i, (day, version) in enumerate(_version_changes(daily)):
            for k, ax in enumerate((top, bottom)):
                if i:  # the first version is where the chart starts, not a change
                    ax.axvline(_at(day, -0.5), color=FAILED, ls="--", lw=1,
                               gid=f"version-change-{day}-v{version}-{k}")
            # Above the legend row (which sits on the axes' top edge), so a label never hides under it.
            top.annotate(f"v{version}", (_at(day, -0.5 if i else 0.0), 1.0), xycoords=("data", "axes fraction"),
                         xytext=(0, LEGEND_ROW_PT), textcoords="offset points", va="bottom", ha="left", fontsize=8,
                         color=FAILED if i else "#333333", gid=f"version-label-v{version}")
        _legend_above(top)
        bottom.legend(loc="upper left", ncols=3, fontsize=8)
        _date_axis(bottom, start, end)
        return to_svg(fig, "quantiles")


def wilson_interval(rate: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of binomial proportions ``rate`` over ``n`` trials (95% for z = 1.96).

    Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA 22; it stays
    inside [0, 1] and behaves for rates near 0 or 1, unlike the normal approximation. NaN in, NaN out.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = 1 + z * z / n
        centre = (rate + z * z / (2 * n)) / denom
        half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def rebin(bins: list[dict[str, Any]], edges: list[float]) -> list[float]:
    """Shares of the day's score bins regrouped into the reference's bins (by bin midpoint)."""
    total = sum(b["count"] for b in bins) or 1
    out = [0.0] * (len(edges) - 1)
    for b in bins:
        mid = (b["bin_lo"] + b["bin_hi"]) / 2
        i = min(max(int(np.searchsorted(edges, mid, side="right")) - 1, 0), len(out) - 1)
        out[i] += b["count"] / total
    return out


def reference_bins(reference: dict[str, Any], low: float, high: float) -> tuple[list[float], np.ndarray, int]:
    """The reference's bins as finite edges and shares for a histogram over [low, high].

    A classifier's score reference (``kind == "score"``) has its own edges over [0, 1]. A regression's is a
    numeric reference (``scoring.models.reference.numeric_reference``): interior quantile edges, point-mass
    shares first; its outer bins are closed at the day's (or the edges') extremes and point masses are left
    out (their count is returned).

    Returns:
        ``(edges, shares, point masses left out)``: ``len(edges) == len(shares) + 1``.
    """
    if reference.get("kind", "score") == "score":
        return list(reference["edges"]), np.asarray(reference["shares"], dtype=np.float64), 0
    points = len(reference.get("points") or [])
    inner = [float(e) for e in reference.get("edges") or []]
    shares = np.asarray(reference["shares"][points:], dtype=np.float64)
    edges = [min(low, inner[0]) if inner else low, *inner, max(high, inner[-1]) if inner else high]
    return edges, shares[:len(edges) - 1], points


def score_distribution(bins: list[dict[str, Any]], day: dt.date | None, version: int | None,
                       reference: dict[str, Any] | None, task: str = "binary") -> str:
    """The day's score histogram (density) against the model version's training reference, with the PSI.
    Regression: the histogram of the predictions over the day's range (its bins' real edges)."""
    if day is None or not bins:
        raise NoData(f"no scored rows on {day}" if day else "no scored rows in this range")
    with matplotlib.rc_context(RC):
        fig, ax = _figure(3.4)
        total = sum(b["count"] for b in bins) or 1
        lo = np.array([b["bin_lo"] for b in bins])
        width = np.array([b["bin_hi"] - b["bin_lo"] for b in bins])
        ax.bar(lo, [b["count"] / total for b in bins] / width, width=width, align="edge", color=SCORED,
               alpha=0.8, label=f"{day} (v{version}, {total:,} rows)")
        title = f"Score distribution on {day} vs the training reference"
        regression = task == "regression"
        if regression:
            title = f"Distribution of the predictions on {day}"
            if float(width.max()) == 0.0:  # every prediction the same value: one bin of zero width
                ax.bar(lo, [total], width=1.0, align="center", color=SCORED, alpha=0.8)
        if reference:
            edges, shares, points = reference_bins(reference, float(lo.min()), float((lo + width).max()))
            widths = np.diff(edges)
            ref_density = np.divide(shares, widths, out=np.zeros_like(shares), where=widths > 0)
            ax.stairs(ref_density, edges, color="#333333", lw=2, label=f"training reference (v{version})")
            # With point masses (a regression's repeated values) the day's bins cannot be split the same way:
            # the PSI is then the drift table's, not re-computed here.
            title += f" — PSI {psi(list(shares), rebin(bins, edges)):.3f}" if not points else \
                " (PSI: see the drift table)"
        else:
            title += " (no reference stored for this version)"
        if regression:
            ax.set_xlabel("prediction")
        else:
            ax.set_xlim(0, 1)
            ax.set_xlabel("score")
        ax.set_ylabel("density")
        ax.set_title(title, loc="left")
        ax.legend(loc="upper right", fontsize=8)
        return to_svg(fig, "distribution")


def quarantine_by_rule(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars: quarantined rows per rule and column over the range."""
    if not rows:
        raise NoData("no quarantined rows in this range")
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[f"{r['rule']} · {r['column_name'] or '(row)'}"] += r["count"]
    items = sorted(totals.items(), key=lambda kv: kv[1])
    with matplotlib.rc_context(RC):
        fig, ax = _figure(1.2 + 0.3 * len(items))
        ax.barh([k for k, _ in items], [v for _, v in items], color=QUARANTINED)
        for i, (_, v) in enumerate(items):
            ax.annotate(f"{v:,}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_xlabel("rows")
        ax.set_title(f"Quarantined rows by rule ({sum(totals.values()):,} in the range)", loc="left")
        return to_svg(fig, "quarantine")


STATUS_LEVEL = {"ok": 0, "warn": 1, "alert": 2}
STATUS_COLOURS = ("#E8F1E4", "#F6C85F", "#C44E52")  # ok, warn, alert


def drift_heatmap(rows: list[dict[str, Any]], start: dt.date, end: dt.date, warn: float, alert: float) -> str:
    """Drift per feature (rows) and day (columns), coloured by the status each run recorded (ok / warn /
    alert, judged with the run's own thresholds: calibrated per feature, or the fixed ``warn``/``alert``),
    so the map says what the run's verdict said; warn cells outlined thin, alert cells thick; blank where
    no run measured. ``warn`` and ``alert`` are only named in the legend, for rows without a status.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    if not rows:
        raise NoData("no drift figures in this range")
    features = sorted({r["feature"] for r in rows})
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    col = {d: i for i, d in enumerate(days)}
    grid = np.full((len(features), len(days)), np.nan)
    for r in rows:
        status = r.get("status")
        if status not in STATUS_LEVEL:  # no recorded verdict: judge with the fixed thresholds
            value = r.get("psi")
            status = "ok" if value is None else "alert" if value >= alert else "warn" if value >= warn else "ok"
        grid[features.index(r["feature"]), col[r["day"]]] = STATUS_LEVEL[status]
    with matplotlib.rc_context({**RC, "axes.grid": False}):
        fig, ax = _figure(1.6 + 0.28 * len(features))
        cmap = ListedColormap(STATUS_COLOURS)
        ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], 3),
                  interpolation="nearest")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value) and value >= 1:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#000000",
                                       lw=1.4 if value >= 2 else 0.6))
        ax.set_yticks(range(len(features)), features)
        step = max(1, len(days) // 12)
        ax.set_xticks(range(0, len(days), step), [days[i].strftime("%m-%d") for i in range(0, len(days), step)])
        ax.legend(handles=[Patch(fc=STATUS_COLOURS[0], ec="#999999", label="ok"),
                           Patch(fc=STATUS_COLOURS[1], ec="#000000", lw=0.6, label="warn (outlined)"),
                           Patch(fc=STATUS_COLOURS[2], ec="#000000", lw=1.4, label="alert (outlined thick)")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_title("Drift per feature and day: the status each run recorded, with its own thresholds "
                     f"(calibrated, or the fixed warn {warn:g} / alert {alert:g})", loc="left")
        return to_svg(fig, "drift")


def run_timeline(runs: list[dict[str, Any]], start: dt.date, end: dt.date) -> str:
    """Every run's duration by day: successes in green, failures as red crosses."""
    if not runs:
        raise NoData("no runs in this range")
    with matplotlib.rc_context(RC):
        fig, ax = _figure(2.8)
        for status, colour, marker in (("success", OK, "o"), (None, FAILED, "X")):
            pick = [r for r in runs if (r["status"] == "success") == (status == "success")]
            if pick:
                ax.scatter([r["day"] for r in pick], [r["duration_s"] or 0.0 for r in pick], color=colour,
                           marker=marker, s=36 if marker == "X" else 16, zorder=3,
                           gid="successful-runs" if status else "failed-runs",
                           label=f"{'succeeded' if status else 'failed / unfinished'} ({len(pick)})")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        _legend_above(ax)
        _date_axis(ax, start, end)
        return to_svg(fig, "runs")
