"""PNG charts of a `Report`, drawn with matplotlib's Agg backend (no display, no pyplot).

Each chart sets this period's bars next to the previous period's. Chinese labels need a CJK
font: WenQuanYi Micro Hei (Debian's fonts-wqy-microhei) when it is installed, else any CJK font
matplotlib finds; without one the labels still render, Chinese glyphs as boxes.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from handoff.reports import RATES, SURVEY_DIMENSIONS, Count, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WQY = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
_FAMILIES = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "DejaVu Sans"]
NOW_COLOUR, BEFORE_COLOUR = "#2b6cb0", "#a0aec0"

TITLES = {
    "category": "类型 type",
    "department": "部门 department",
    "priority": "优先级 priority",
    "channel": "渠道 channel",
    "product": "商品 product (top 10)",
    "merchant": "商家 merchant (top 10)",
    "rates": "比率 rates",
    "satisfaction": "满意度 satisfaction (1-5)",
    "improve_aspect": "待改进 aspect to improve",
}
CHARTS = tuple(TITLES)
_ready = False


def _setup() -> None:
    """Pick the fonts once; matplotlib's font manager is process-wide anyway."""
    global _ready
    if _ready:
        return
    import matplotlib
    from matplotlib import font_manager

    matplotlib.use("Agg")
    if WQY.exists():
        font_manager.fontManager.addfont(str(WQY))
    matplotlib.rcParams["font.sans-serif"] = _FAMILIES
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["axes.unicode_minus"] = False  # CJK fonts often lack U+2212
    _ready = True


def _pairs(ax: Axes, labels: Sequence[str], now: Sequence[float], before: Sequence[float],
           fmt: str = "{:g}") -> None:
    """Horizontal bars, this period over the previous one, largest at the top."""
    positions = range(len(labels))
    height = 0.4
    ax.barh([p - height / 2 for p in positions], now, height, color=NOW_COLOUR,
            label="this period")
    ax.barh([p + height / 2 for p in positions], before, height, color=BEFORE_COLOUR,
            label="previous")
    ax.set_yticks(list(positions), list(labels))
    ax.invert_yaxis()
    for p, value in zip(positions, now, strict=True):
        ax.annotate(fmt.format(value), (value, p - height / 2), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=8)
    if not labels:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.legend(loc="lower right", fontsize=8)
    ax.margins(x=0.15)


def _counts(counts: Sequence[Count]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        _pairs(ax, [c.key[:24] for c in counts], [c.count for c in counts],
               [c.previous for c in counts])
    return draw


def _drawers(report: Report) -> dict[str, Callable[[Axes], None]]:
    cur, prev = report.current, report.previous

    def rates(ax: Axes) -> None:
        _pairs(ax, [r.removesuffix("_rate").replace("_", " ") for r in RATES],
               [(getattr(cur, r) or 0.0) * 100 for r in RATES],
               [(getattr(prev, r) or 0.0) * 100 for r in RATES], "{:.1f}%")

    def satisfaction(ax: Axes) -> None:
        _pairs(ax, list(SURVEY_DIMENSIONS),
               [cur.satisfaction.get(d) or 0.0 for d in SURVEY_DIMENSIONS],
               [prev.satisfaction.get(d) or 0.0 for d in SURVEY_DIMENSIONS], "{:.2f}")
        ax.set_xlim(0, 5.5)

    drawers: dict[str, Callable[[Axes], None]] = {
        name: _counts(counts) for name, counts in report.volume.items()}
    drawers.update(rates=rates, satisfaction=satisfaction,
                   improve_aspect=_counts(report.improve_aspects))
    return drawers


def _png(figure: Figure) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        # Without a CJK font, Chinese glyphs are drawn as boxes: a worse chart, not an error.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


def chart(report: Report, name: str) -> bytes:
    """One chart as PNG bytes; `name` is one of CHARTS."""
    if name not in TITLES:
        raise KeyError(name)
    _setup()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.add_subplot()
    _drawers(report)[name](ax)
    ax.set_title(f"{TITLES[name]} · {report.period.label()}")
    return _png(figure)


def charts(report: Report) -> dict[str, bytes]:
    """Every chart, by name."""
    return {name: chart(report, name) for name in CHARTS}


def overview(report: Report) -> bytes:
    """One PNG with all the charts in a grid under a title."""
    _setup()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(18, 15), layout="constrained")
    figure.suptitle(f"投诉报告 complaint report {report.period.label()} "
                    f"(vs {report.previous_period.label()}): {report.current.tickets} tickets",
                    fontsize=16)
    drawers = _drawers(report)
    for ax, name in zip(figure.subplots(3, 3).flat, CHARTS, strict=True):
        drawers[name](ax)
        ax.set_title(TITLES[name])
    return _png(figure)
