"""Charts for the HTML page, as inline SVG strings (nothing loaded from the network).

Bars are hand-built SVG (small, crisp, coloured like the tables beside them); the x/y charts (peak
vs batch size, allocation timeline, peak vs a hyperparameter) are drawn with matplotlib's SVG
backend on a bare `Figure`, so no pyplot state and no GUI backend is touched. Every function takes
plain numbers and labels and returns markup that is safe to embed: all text is escaped here.
"""
from __future__ import annotations

import html
import io
import re
from typing import Sequence

from preflight.common.units import format_bytes

INK = "#1f2933"
MUTED = "#6b7785"
GRID = "#e3e7ec"
MEASURED_COLOR = "#4c78a8"
PREDICTED_COLOR = "#9bb4d3"
LIMIT_COLOR = "#c62828"
RECOMMENDED_COLOR = "#2e7d32"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"

_UNITS = (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024), ("B", 1))


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _unit_for(max_bytes: float) -> tuple[str, int]:
    """The largest binary unit in which the biggest value is at least 1, for axis labels."""
    for name, size in _UNITS:
        if max_bytes >= size:
            return name, size
    return "B", 1


def footprint_bar(segments: Sequence[tuple[str, int, str]], width: int = 960, height: int = 46) -> str:
    """One stacked horizontal bar: (label, bytes, colour) per part, scaled to their sum.

    A segment wide enough carries its label; the table beside the chart has every figure anyway.
    """
    total = sum(max(0, size) for _, size, _ in segments)
    parts = [f'<svg class="chart-bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="footprint breakdown" xmlns="http://www.w3.org/2000/svg">']
    if total <= 0:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" rx="6" fill="{GRID}"/>')
        parts.append("</svg>")
        return "".join(parts)
    x = 0.0
    for label, size, color in segments:
        if size <= 0:
            continue
        segment_width = width * size / total
        parts.append(f'<rect x="{x:.2f}" y="0" width="{segment_width:.2f}" height="{height}" fill="{_esc(color)}">'
                     f'<title>{_esc(label)}: {_esc(format_bytes(size))} ({size / total:.0%})</title></rect>')
        caption = f"{label} {size / total:.0%}"
        # About 7 px per character at 13 px: only label segments the caption fits into.
        if segment_width > 7 * len(caption) + 12:
            parts.append(f'<text x="{x + segment_width / 2:.2f}" y="{height / 2 + 4.5:.1f}" text-anchor="middle" '
                         f'font-family="{FONT}" font-size="13" fill="#ffffff">{_esc(caption)}</text>')
        x += segment_width
    parts.append("</svg>")
    return "".join(parts)


def comparison_bars(rows: Sequence[tuple[str, int, str]], limit_bytes: int | None = None,
                    limit_label: str = "budget", width: int = 960) -> str:
    """Horizontal bars, one per (label, peak bytes, colour), with a dashed line at the limit."""
    label_width, value_width, row_height, top = 300, 90, 30, 22
    plot_width = width - label_width - value_width
    height = top + row_height * len(rows) + 8
    largest = max([size for _, size, _ in rows] + [limit_bytes or 0] + [1])
    parts = [f'<svg class="chart-bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="peak before and after" xmlns="http://www.w3.org/2000/svg" '
             f'font-family="{FONT}" font-size="13">']
    for index, (label, size, color) in enumerate(rows):
        y = top + index * row_height
        bar_width = plot_width * max(0, size) / largest
        shown_label = label if len(label) <= 40 else label[:39] + "…"
        parts.append(f'<text x="{label_width - 10}" y="{y + 17}" text-anchor="end" fill="{INK}">'
                     f'{_esc(shown_label)}<title>{_esc(label)}</title></text>')
        parts.append(f'<rect x="{label_width}" y="{y + 4}" width="{bar_width:.2f}" height="{row_height - 10}" '
                     f'rx="3" fill="{_esc(color)}"/>')
        parts.append(f'<text x="{label_width + bar_width + 6:.2f}" y="{y + 17}" fill="{MUTED}">'
                     f'{_esc(format_bytes(size))}</text>')
    if limit_bytes:
        x = label_width + plot_width * limit_bytes / largest
        parts.append(f'<line x1="{x:.2f}" y1="{top - 4}" x2="{x:.2f}" y2="{height - 4}" stroke="{LIMIT_COLOR}" '
                     f'stroke-width="1.5" stroke-dasharray="5 4"/>')
        parts.append(f'<text x="{x:.2f}" y="{top - 8}" text-anchor="end" fill="{LIMIT_COLOR}" font-size="12">'
                     f'{_esc(limit_label)} {_esc(format_bytes(limit_bytes))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _plain(text: str) -> str:
    """Keep matplotlib from reading user text as mathtext."""
    return text.replace("$", r"\$")


def _new_axes(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    axes.spines[["left", "bottom"]].set_color(MUTED)
    axes.tick_params(colors=MUTED, labelcolor=INK, labelsize=10)
    axes.grid(True, color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    return figure, axes


def _to_svg(figure, salt: str) -> str:
    """The figure as an inline <svg> element: no XML prolog, DOCTYPE or metadata, scalable."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    # fonttype none keeps text as text (small, selectable); a per-chart salt keeps element ids
    # distinct between charts on one page and stable between runs.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"preflight-{salt}"}):
        FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    svg = svg.replace("<svg ", f'<svg class="chart-plot" role="img" aria-label="{_esc(salt)} chart" ', 1)
    return svg.strip()


def _headroom(axes) -> float:
    """The y top with a little room, so a marker at the maximum is not clipped by the frame."""
    return axes.get_ylim()[1] * 1.06


def _legend_above(axes) -> None:
    """One row of legend above the plot, where it cannot cover points or the limit line."""
    handles, _ = axes.get_legend_handles_labels()
    axes.legend(frameon=False, fontsize=10, loc="lower left", bbox_to_anchor=(0, 1.01),
                ncol=max(1, len(handles)), borderaxespad=0, handletextpad=0.4, columnspacing=1.6)


def _limit_line(axes, limit_bytes: int | None, limit_label: str, unit_size: int) -> None:
    if limit_bytes:
        axes.axhline(limit_bytes / unit_size, color=LIMIT_COLOR, linestyle="--", linewidth=1.3,
                     label=_plain(f"{limit_label} {format_bytes(limit_bytes)}"))


def curve_chart(measured: Sequence[tuple[int, int]], predicted: Sequence[tuple[int, int]],
                limit_bytes: int | None = None, limit_label: str = "budget",
                recommended: tuple[int, int] | None = None, x_label: str = "batch size") -> str:
    """Peak vs batch size (or `x_label`: a sequence length): measured points, the predicted line, the limit
    and the recommendation."""
    all_points = list(measured) + list(predicted) + ([recommended] if recommended else [])
    largest = max([peak for _, peak in all_points] + [limit_bytes or 0] + [1])
    unit_name, unit_size = _unit_for(largest)
    figure, axes = _new_axes((10, 3.6))
    if predicted:
        # The line runs through measured points too, so it reads as one curve.
        line = sorted(set(measured) | set(predicted))
        axes.plot([b for b, _ in line], [p / unit_size for _, p in line], color=PREDICTED_COLOR,
                  linewidth=2, linestyle="-", label="predicted", zorder=2)
    if measured:
        axes.plot([b for b, _ in measured], [p / unit_size for _, p in measured], linestyle="none",
                  marker="o", markersize=7, color=MEASURED_COLOR, label="measured", zorder=3)
    _limit_line(axes, limit_bytes, limit_label, unit_size)
    if recommended:
        batch, peak = recommended
        axes.plot([batch], [peak / unit_size], linestyle="none", marker="*", markersize=16,
                  color=RECOMMENDED_COLOR, label=f"recommended: batch {batch}", zorder=4)
    batches = [b for b, _ in all_points]
    if batches and min(batches) > 0 and max(batches) / min(batches) >= 16:
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(_int_formatter())
    axes.set_xlabel(x_label, color=INK)
    axes.set_ylabel(f"peak ({unit_name})", color=INK)
    axes.set_ylim(0, _headroom(axes))
    _legend_above(axes)
    return _to_svg(figure, "curve")


def _int_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def timeline_chart(points: Sequence[tuple[float, int]], limit_bytes: int | None = None,
                   limit_label: str = "budget") -> str:
    """Bytes in use over one step, with the peak marked."""
    largest = max([size for _, size in points] + [1])
    unit_name, unit_size = _unit_for(largest)
    figure, axes = _new_axes((10, 3.0))
    times = [t for t, _ in points]
    values = [size / unit_size for _, size in points]
    axes.fill_between(times, values, step="post", color=PREDICTED_COLOR, alpha=0.5, linewidth=0)
    axes.step(times, values, where="post", color=MEASURED_COLOR, linewidth=1.5, label="in use")
    if points:
        peak_time, peak_bytes = max(points, key=lambda point: point[1])
        axes.plot([peak_time], [peak_bytes / unit_size], marker="v", markersize=9, color=LIMIT_COLOR,
                  linestyle="none", label=f"peak {format_bytes(peak_bytes)}")
    # The limit only when it is on the same scale; a distant budget would flatten the step.
    if limit_bytes and limit_bytes <= 1.5 * largest:
        _limit_line(axes, limit_bytes, limit_label, unit_size)
    axes.set_xlabel("time in step (ms)", color=INK)
    axes.set_ylabel(f"in use ({unit_name})", color=INK)
    axes.set_ylim(0, _headroom(axes))
    _legend_above(axes)
    return _to_svg(figure, "timeline")


def scatter_chart(points: Sequence[tuple[float, int, bool | None]], x_label: str,
                  limit_bytes: int | None = None, limit_label: str = "budget") -> str:
    """Peak of each sampled configuration against one hyperparameter, coloured by fit."""
    largest = max([peak for _, peak, _ in points] + [limit_bytes or 0] + [1])
    unit_name, unit_size = _unit_for(largest)
    figure, axes = _new_axes((10, 3.4))
    groups = ((True, "fits", MEASURED_COLOR), (False, "does not fit", LIMIT_COLOR), (None, "unknown", MUTED))
    for flag, label, color in groups:
        chosen = [(x, peak) for x, peak, fits in points if fits is flag]
        if chosen:
            axes.scatter([x for x, _ in chosen], [peak / unit_size for _, peak in chosen], s=28,
                         color=color, alpha=0.8, label=label, zorder=3)
    _limit_line(axes, limit_bytes, limit_label, unit_size)
    axes.set_xlabel(_plain(x_label), color=INK)
    axes.set_ylabel(f"peak ({unit_name})", color=INK)
    axes.set_ylim(0, _headroom(axes))
    _legend_above(axes)
    return _to_svg(figure, "search")
