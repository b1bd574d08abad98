"""Small inline-SVG charts for the HTML report and ``--plots``: no plotting library needed.

Each function returns one self-contained ``<svg>`` element as a string.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from tlprof.reports.builder import Report
from tlprof.reports.text import ROW_TITLES

WIDTH, HEIGHT = 960, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 60, 300, 30, 40
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")


@dataclass
class Series:
    name: str
    values: Sequence[float]
    color: str
    dashed: bool = False


def nice_max(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above ``x`` (1 for nothing to show)."""
    if not x > 0 or not math.isfinite(x):
        return 1.0
    exp = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= x * (1 - 1e-12):
            return m * exp
    return 10 * exp


def _fmt_tick(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _frame(title: str, y_label: str, y_max: float, x_label: str, below: int = 0) -> list[str]:
    """Axes, grid and titles; ``below`` px more under the plot for x labels."""
    plot_w, plot_h = WIDTH - MARGIN_L - MARGIN_R, HEIGHT - MARGIN_T - MARGIN_B
    height = HEIGHT + below
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_L}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i in range(5):
        v = y_max * i / 4
        y = MARGIN_T + plot_h * (1 - i / 4)
        out.append(f'<line x1="{MARGIN_L}" x2="{MARGIN_L + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(v)}</text>')
    out.append(f'<text x="14" y="{MARGIN_T + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {MARGIN_T + plot_h / 2:.0f})">{escape(y_label)}</text>')
    out.append(f'<text x="{MARGIN_L + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
               f"{escape(x_label)}</text>")
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    x = WIDTH - MARGIN_R + 12
    out = []
    for i, s in enumerate(series):
        y = MARGIN_T + 6 + 16 * i
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{s.color}" '
                   f'stroke-width="3"{dash}/>')
        out.append(f'<text x="{x + 24}" y="{y + 4}">{escape(s.name)}</text>')
    return out


LABEL_ROOM = 150  # px under a bar chart for its rotated bar labels, at most


def stacked_totals(stacks: Sequence[Series]) -> list[float]:
    return [sum(max(s.values[i], 0.0) for s in stacks) for i in range(len(stacks[0].values))]


def stacked_bars(title: str, labels: Sequence[str], stacks: Sequence[Series], y_label: str,
                 x_label: str = "unit", y_max: float | None = None) -> str:
    """One bar per label, the series stacked bottom to top, each bar labelled under the axis.
    Pass ``y_max`` to share one scale between charts that are compared."""
    y_max = y_max or nice_max(max(stacked_totals(stacks), default=0.0))
    plot_w, plot_h = WIDTH - MARGIN_L - MARGIN_R, HEIGHT - MARGIN_T - MARGIN_B
    step = plot_w / max(len(labels), 1)
    size = max(6, min(11, int(step * 0.9)))
    longest = max((len(label) for label in labels), default=0)
    below = min(LABEL_ROOM, int(0.5 * size * longest * 0.87))  # the rotated labels' height
    out = _frame(title, y_label, y_max, x_label, below=below)
    for i, label in enumerate(labels):
        cx, cy = MARGIN_L + (i + 0.5) * step, MARGIN_T + plot_h + 6
        out.append(f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="{size}" text-anchor="end" '
                   f'transform="rotate(-60 {cx:.1f} {cy:.1f})">{escape(label)}</text>')
    for i, label in enumerate(labels):
        base = 0.0
        x = MARGIN_L + i * step + step * 0.1
        for s in stacks:
            v = max(s.values[i], 0.0)
            h = plot_h * v / y_max
            y = MARGIN_T + plot_h * (1 - (base + v) / y_max)
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" '
                       f'fill="{s.color}"><title>{escape(label)} {escape(s.name)}: '
                       f"{v:.3g}</title></rect>")
            base += v
    out += _legend(stacks)
    out.append("</svg>")
    return "\n".join(out)


def line_chart(title: str, xs: Sequence[float], series: Sequence[Series], y_label: str,
               x_label: str) -> str:
    finite_values = [v for s in series for v in s.values if math.isfinite(v)]
    y_max = nice_max(max(finite_values, default=0.0))
    plot_w, plot_h = WIDTH - MARGIN_L - MARGIN_R, HEIGHT - MARGIN_T - MARGIN_B
    x0, x1 = min(xs), max(xs)
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return MARGIN_L + plot_w * (x - x0) / span

    def py(y: float) -> float:
        return MARGIN_T + plot_h * (1 - y / y_max)

    out = _frame(title, y_label, y_max, x_label)
    for x in sorted({xs[0], xs[len(xs) // 2], xs[-1]}):
        out.append(f'<text x="{px(x):.1f}" y="{HEIGHT - MARGIN_B + 14}" text-anchor="middle">'
                   f"{_fmt_tick(x)}</text>")
    for s in series:
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, s.values)
                          if math.isfinite(y))
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(f'<polyline points="{points}" fill="none" stroke="{s.color}" '
                   f'stroke-width="2"{dash}><title>{escape(s.name)}</title></polyline>')
    out += _legend(series)
    out.append("</svg>")
    return "\n".join(out)


# -- the report's plots -----------------------------------------------------------


def _unit_stacks(report: Report, run: str) -> list[Series] | None:
    rows = report.units
    if run == "full":
        fwd, bwd = [r.fwd_ms for r in rows], [r.bwd_ms for r in rows]
    elif run == "frozen" and report.frozen is not None:
        fwd = [r.frozen_fwd_ms or 0.0 for r in rows]
        bwd = [r.frozen_bwd_ms or 0.0 for r in rows]
    else:
        return None
    return [Series("forward", fwd, PALETTE[0]), Series("backward", bwd, PALETTE[2])]


def unit_bars(report: Report, run: str) -> str | None:
    """Forward and backward per unit; the full and frozen charts share one y scale."""
    stacks = _unit_stacks(report, run)
    if stacks is None:
        return None
    both = [s for r in ("full", "frozen") if (s := _unit_stacks(report, r))]
    y_max = nice_max(max(t for s in both for t in stacked_totals(s)))
    labels = [f"{r.first} {r.name}" for r in report.units]
    return stacked_bars(f"Per unit, {run} run (median ms per step; same scale as the other run)",
                        labels, stacks, "ms", "unit (execution order)", y_max=y_max)


def cumulative_share(report: Report) -> str:
    xs = [float(r.first) for r in report.units]
    series = [Series("full", [r.cum_share for r in report.units], PALETTE[0])]
    if report.frozen is not None:
        step = report.frozen.frozen_step_ms
        cum, values = 0.0, []
        for r in report.units:
            cum += (r.frozen_fwd_ms or 0.0) + (r.frozen_bwd_ms or 0.0)
            values.append(cum / step if step else float("nan"))
        series.append(Series("frozen", values, PALETTE[2]))
    n = report.n_units
    series.append(Series("uniform t", [r.first / n * report.units[-1].cum_share for r in report.units],
                         "#999", dashed=True))
    return line_chart("Cumulative share of the step over units", xs, series,
                      "share of step", "unit")


def cost_curves(report: Report) -> str:
    """T_transfer(k) of every row, and each distinct T_classic(k) once (the paper rows share one)."""
    cm = report.cost_model
    classics: dict[tuple[float, ...], list[str]] = {}
    transfers = []
    for i, (name, row) in enumerate(cm.rows.items()):
        classics.setdefault(tuple(row.classic), []).append(ROW_TITLES.get(name, name))
        transfers.append(Series(f"{ROW_TITLES.get(name, name)}: with transfer", row.transfer,
                                PALETTE[i % len(PALETTE)]))
    series = [Series(f"{' = '.join(names)}: from scratch", list(values), "#555" if i == 0 else "#aaa",
                     dashed=True) for i, (values, names) in enumerate(classics.items())]
    return line_chart(f"T(k) of every row ({cm.unit})", [float(k) for k in cm.k],
                      series + transfers, cm.unit, "k models")


def report_plots(report: Report) -> dict[str, str]:
    """File stem → SVG text, for every plot the report has data for."""
    plots = {"units_full": unit_bars(report, "full"), "units_frozen": unit_bars(report, "frozen"),
             "cumulative_share": cumulative_share(report), "cost_model": cost_curves(report),
             "roofline": roofline(report)}
    return {name: svg for name, svg in plots.items() if svg is not None}


def _log_scale(lo: float, hi: float, size: float, flip: bool) -> Callable[[float], float]:
    a, b = math.log10(lo), math.log10(hi)

    def scale(v: float) -> float:
        t = (math.log10(max(v, lo)) - a) / (b - a)
        return size * (1 - t) if flip else size * t

    return scale


def roofline(report: Report) -> str | None:
    """Achieved TFLOP/s against FLOP/byte per unit pass, log-log, under the device's roofs."""
    k = report.kernels
    if k is None or k.ceilings is None:
        return None
    points = [r for r in k.rows if r.intensity and r.achieved_tflops]
    if not points:
        return None
    ceiling, peak = k.ceilings.peak_tflops(k.ceiling_precision)  # effective_precision: default may be tf32
    bw_tflops = k.ceilings.copy_gbps * 1e9 / 1e12  # TFLOP/s per FLOP/byte under the memory roof
    x_lo = 10 ** math.floor(math.log10(min(r.intensity for r in points)))
    x_hi = 10 ** math.ceil(math.log10(max(max(r.intensity for r in points), peak / bw_tflops) * 1.01))
    y_lo = 10 ** math.floor(math.log10(min(r.achieved_tflops for r in points)))
    y_hi = 10 ** math.ceil(math.log10(peak * 1.01))
    plot_w, plot_h = WIDTH - MARGIN_L - MARGIN_R, HEIGHT - MARGIN_T - MARGIN_B
    sx, sy = _log_scale(x_lo, x_hi, plot_w, False), _log_scale(y_lo, y_hi, plot_h, True)
    title = (f"Roofline ({ceiling} matmul peak {peak:.3g} TFLOP/s, "
             f"copy {k.ceilings.copy_gbps:.0f} GB/s)")
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_L}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ddd"/>',
    ]
    for exp in range(round(math.log10(x_lo)), round(math.log10(x_hi)) + 1):
        x = MARGIN_L + sx(10**exp)
        out.append(f'<text x="{x:.1f}" y="{MARGIN_T + plot_h + 14}" text-anchor="middle">1e{exp}</text>')
    for exp in range(round(math.log10(y_lo)), round(math.log10(y_hi)) + 1):
        y = MARGIN_T + sy(10**exp)
        out.append(f'<text x="{MARGIN_L - 6}" y="{y + 4:.1f}" text-anchor="end">1e{exp}</text>')
    ridge = peak / bw_tflops
    xs = [x_lo, min(max(ridge, x_lo), x_hi), x_hi]
    roof = " ".join(f"{MARGIN_L + sx(x):.1f},{MARGIN_T + sy(min(peak, x * bw_tflops)):.1f}" for x in xs)
    out.append(f'<polyline points="{roof}" fill="none" stroke="#555" stroke-width="2"><title>roof: '
               f"min(peak, intensity × copy bandwidth)</title></polyline>")
    colors = {"fwd": PALETTE[0], "bwd": PALETTE[2]}
    for r in points:
        cx, cy = MARGIN_L + sx(r.intensity), MARGIN_T + sy(r.achieved_tflops)
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colors[r.direction]}" '
                   f'fill-opacity="0.7"><title>{escape(r.run)} {r.index} {escape(r.name)} {r.direction}: '
                   f"{r.intensity:.3g} FLOP/B, {r.achieved_tflops:.3g} TFLOP/s</title></circle>")
    out.append(f'<text x="{MARGIN_L + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">'
               "intensity (FLOP per byte moved, lower bound on bytes)</text>")
    out.append(f'<text x="14" y="{MARGIN_T + plot_h / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {MARGIN_T + plot_h / 2:.0f})">achieved TFLOP/s</text>')
    out += _legend([Series("forward", [], PALETTE[0]), Series("backward", [], PALETTE[2]),
                    Series("roof", [], "#555")])
    out.append("</svg>")
    return "\n".join(out)
