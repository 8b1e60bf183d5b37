"""The AGP report (`report.Report`) as HTML with inline SVG charts and as PDF.

- `render_fragment`: a `<section class="agp-report">` for the web site's pages. Its pages send
  `style-src 'self'`, so the fragment holds no `<style>`, no `style=""` and no script: the charts
  use SVG presentation attributes (fill=, stroke=...) and the page links static/report.css. The
  fragment is well-formed XML as well as HTML.
- `render_page`: a standalone document (the fragment plus report.css inline, printable on A4),
  for a response sent with CSP "default-src 'none'; style-src 'unsafe-inline'; img-src data:".
- `render_pdf`: two A4 pages drawn with reportlab (vector charts): the summary, consensus table,
  time in ranges and AGP; then the daily profiles and episodes. Chinese text uses reportlab's
  built-in CID font STSong-Light (not embedded: viewers supply it), English Helvetica.

Glucose axes run from 0 to 400 mg/dL (22.2 mmol/L); values beyond are drawn at the edge. A daily
profile's line breaks where readings are more than 3 sampling intervals (at least 15 minutes)
apart. Path data is written in tenths of a unit as integers and drawn scaled by 0.1 (one <path> per
band or line), and the PDF's data lines go in as path operators at once: reportlab's per-point
float formatting (pure Python without its optional C extension) cost more than the rest.
"""

from __future__ import annotations

import functools
import html
import io
import itertools
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from reportlab.graphics.shapes import Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import (
    Flowable,
    KeepInFrame,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from ehospital.glucose.report import (
    AGP_MIN_DAYS,
    AGP_QUANTILES,
    CONSENSUS_DAYS,
    Agp,
    DayProfile,
    Report,
    days_phrase,
    format_glucose,
    format_percent,
    format_threshold,
)

Y_MAX = 400.0  # mg/dL at the top of every chart
BAND_COLOURS = {  # the consensus report's colours, very low to very high
    "very_low": "#8b1a1a",
    "low": "#e0453a",
    "in_range": "#2e9e55",
    "high": "#f2b63c",
    "very_high": "#e8772e",
}
TARGET_FILL = "#dcefd9"
P5_95_FILL = "#c9dcf0"
P25_75_FILL = "#6d9fd1"
MEDIAN_STROKE = "#0b3d7a"
LINE_STROKE = "#1f5fa8"
GRID_STROKE = "#e3e8ee"
CUT_STROKE = "#9aa5b1"
INK = "#1f2933"
MUTED = "#637381"


# --- shared geometry -----------------------------------------------------------------------------


def _runs(ok: np.ndarray[Any, np.dtype[np.bool_]]) -> Iterator[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    yield from zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True)


def _agp_curves(
    agp: Agp,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """Minutes 0..1440 (bin centres plus both midnights) and the five curves there (mg/dL); the
    value at midnight is the mean of the bins on either side (the profile is circular)."""
    p = agp.percentiles
    ends = np.nanmean(np.stack([p[:, -1], p[:, 0]]), axis=0) if np.any(~np.isnan(p[:, [0, -1]])) else None
    if ends is None:
        ends = np.full(p.shape[0], np.nan)
    x = np.concatenate(([0.0], agp.centers, [1440.0]))
    y = np.concatenate((ends[:, None], p, ends[:, None]), axis=1)
    return x, y


def _day_breaks(day: DayProfile, sampling_minutes: float) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """True before a reading that follows a gap longer than 3 sampling intervals: lines break."""
    gap = max(3.0 * sampling_minutes, 15.0)
    breaks = np.zeros(day.minutes.size, dtype=bool)
    breaks[1:] = np.diff(day.minutes) > gap
    return breaks


# --- SVG -----------------------------------------------------------------------------------------


def _tenths(values: Any) -> list[str]:
    """Coordinates in tenths of a unit as integers (paths are drawn scaled by 0.1): formatting
    integers is several times faster than floats."""
    return list(map(str, np.rint(np.asarray(values, dtype=np.float64) * 10.0).astype(np.int64).tolist()))


def _coords(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> str:
    return " ".join(_tenths(np.column_stack((x, y)).ravel()))


def _svg_line(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], starts: np.ndarray[Any, Any]) -> str:
    """Path data (in tenths: draw it scaled by 0.1) of a line through the points, a new subpath at
    each True of `starts`."""
    cuts = np.flatnonzero(starts).tolist()
    if not cuts or cuts[0] != 0:
        cuts.insert(0, 0)
    parts = []
    for a, b in zip(cuts, [*cuts[1:], x.size], strict=True):
        if b - a == 1:
            parts.append(f"M{_coords(x[a:b], y[a:b])}h5")
        elif b > a:
            parts.append(f"M{_coords(x[a : a + 1], y[a : a + 1])}L{_coords(x[a + 1 : b], y[a + 1 : b])}")
    return "".join(parts)


def _svg_band(x: np.ndarray[Any, Any], low: np.ndarray[Any, Any], high: np.ndarray[Any, Any]) -> str:
    """Path data (in tenths) of the area between two curves, a closed subpath per stretch of values."""
    parts = []
    for a, b in _runs(~np.isnan(low) & ~np.isnan(high)):
        upper = _coords(x[a:b], high[a:b])
        lower = _coords(x[a:b][::-1], low[a:b][::-1])
        parts.append(f"M{upper}L{lower}Z")
    return "".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


class _Scale:
    """Minutes of the day and mg/dL to SVG coordinates of a plot area (y grows downwards)."""

    def __init__(self, left: float, top: float, width: float, height: float) -> None:
        self.left, self.top, self.width, self.height = left, top, width, height

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def x(self, minutes: Any) -> Any:
        return self.left + np.asarray(minutes, dtype=np.float64) / 1440.0 * self.width

    def y(self, mgdl: Any) -> Any:
        return self.bottom - np.clip(np.asarray(mgdl, dtype=np.float64), 0.0, Y_MAX) / Y_MAX * self.height


def _target_svg(r: Report, s: _Scale) -> str:
    top, bottom = float(s.y(r.targets.high)), float(s.y(r.targets.low))
    return (
        f'<rect x="{s.left}" y="{top:.1f}" width="{s.width}" height="{bottom - top:.1f}" '
        f'fill="{TARGET_FILL}"/>'
    )


def agp_svg(r: Report) -> str:
    """The AGP chart: percentile bands and median by time of day over the target range."""
    assert r.agp is not None
    s = _Scale(46.0, 14.0, 660.0, 250.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="agp-chart" viewBox="0 0 720 300" '
        f'role="img" aria-label="{_e(r.text("agp"))}">',
        f'<rect x="{s.left}" y="{s.top}" width="{s.width}" height="{s.height}" fill="#ffffff" '
        f'stroke="{GRID_STROKE}"/>',
        _target_svg(r, s),
    ]
    for hour in range(3, 24, 3):
        x = float(s.x(hour * 60))
        out.append(
            f'<line x1="{x:.1f}" y1="{s.top}" x2="{x:.1f}" y2="{s.bottom}" stroke="{GRID_STROKE}" '
            f'stroke-width="1"/>'
        )
    for hour in range(0, 25, 3):
        x = float(s.x(hour * 60))
        anchor = "end" if hour == 24 else "middle"  # 24:00 centred would run past the chart's edge
        out.append(
            f'<text x="{x:.1f}" y="{s.bottom + 16}" text-anchor="{anchor}" font-size="11" '
            f'fill="{MUTED}">{hour:02d}:00</text>'
        )
    for mgdl in _cuts(r):
        y = float(s.y(mgdl))
        dash = "" if mgdl in (r.targets.low, r.targets.high) else ' stroke-dasharray="4 3"'
        out.append(
            f'<line x1="{s.left}" y1="{y:.1f}" x2="{s.right}" y2="{y:.1f}" stroke="{CUT_STROKE}" '
            f'stroke-width="1"{dash}/>'
        )
        out.append(
            f'<text x="{s.left - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{INK}">{_e(format_threshold(mgdl, r.unit, with_unit=False))}</text>'
        )
    out.append(f'<text x="4" y="10" font-size="10" fill="{MUTED}">{_e(r.unit)}</text>')
    minutes, curves = _agp_curves(r.agp)
    x = s.x(minutes)
    ys = [s.y(c) for c in curves]
    out.append('<g transform="scale(0.1)">')  # path data in tenths
    out.append(f'<path class="agp-p5-95" d="{_svg_band(x, ys[0], ys[4])}" fill="{P5_95_FILL}"/>')
    out.append(f'<path class="agp-p25-75" d="{_svg_band(x, ys[1], ys[3])}" fill="{P25_75_FILL}"/>')
    ok = ~np.isnan(curves[2])
    starts = ok & ~np.concatenate(([False], ok[:-1]))
    out.append(
        f'<path class="agp-median" d="{_svg_line(x[ok], ys[2][ok], starts[ok])}" fill="none" '
        f'stroke="{MEDIAN_STROKE}" stroke-width="22" stroke-linejoin="round"/>'
    )
    out.append("</g></svg>")
    return "".join(out)


def _cuts(r: Report) -> list[float]:
    t = r.targets
    return sorted({t.very_low, t.low, t.high, t.very_high})


def day_svg(r: Report, day: DayProfile) -> str:
    """One day's readings over the target range (a small multiple)."""
    s = _Scale(1.0, 1.0, 198.0, 108.0)
    label = _e(day.day.isoformat())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="agp-day-chart" viewBox="0 0 200 110" '
        f'role="img" aria-label="{label}">',
        f'<rect x="{s.left}" y="{s.top}" width="{s.width}" height="{s.height}" fill="#ffffff" '
        f'stroke="{GRID_STROKE}"/>',
        _target_svg(r, s),
        f'<line x1="{float(s.x(720)):.1f}" y1="{s.top}" x2="{float(s.x(720)):.1f}" y2="{s.bottom}" '
        f'stroke="{GRID_STROKE}"/>',
    ]
    if day.glucose.size:
        d = _svg_line(s.x(day.minutes), s.y(day.glucose), _day_breaks(day, r.sampling_minutes))
        out.append(
            f'<path d="{d}" transform="scale(0.1)" fill="none" stroke="{LINE_STROKE}" stroke-width="1.5" '
            f'stroke-linejoin="round" stroke-linecap="round" vector-effect="non-scaling-stroke"/>'
        )
    else:
        out.append(
            f'<text x="100" y="60" text-anchor="middle" font-size="14" fill="{MUTED}">'
            f"{_e(r.text('no_data'))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _bar_heights(percents: list[float], total: float, minimum: float) -> list[float]:
    """Segment heights: proportional, a visible minimum for any share above zero."""
    raw = [p / 100.0 * total for p in percents]
    small = [p > 0 and h < minimum for p, h in zip(percents, raw, strict=True)]
    fixed = sum(minimum for s in small if s)
    rest = sum(h for h, s in zip(raw, small, strict=True) if not s)
    scale = (total - fixed) / rest if rest > 0 else 0.0
    return [minimum if s else h * scale for h, s in zip(raw, small, strict=True)]


def tir_svg(r: Report) -> str:
    """The time-in-ranges stacked bar, very low at the bottom, with a label per range."""
    top, height, bar_x, bar_w = 12.0, 216.0, 16.0, 40.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="agp-tir-chart" viewBox="0 0 320 240" '
        f'role="img" aria-label="{_e(r.text("ranges"))}">'
    ]
    if r.n_readings == 0:
        out.append(f'<rect x="{bar_x}" y="{top}" width="{bar_w}" height="{height}" fill="{GRID_STROKE}"/>')
        heights = [height / 5.0] * 5
    else:
        heights = _bar_heights([b.percent or 0.0 for b in r.bands], height, 3.0)
    y = top + height
    centres = []
    for band, h in zip(r.bands, heights, strict=True):
        y -= h
        centres.append(y + h / 2.0)
        if r.n_readings and h > 0:
            out.append(
                f'<rect x="{bar_x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" '
                f'fill="{BAND_COLOURS[band.key]}"/>'
            )
    # Labels in five fixed slots, top (very high) to bottom, joined to their segments.
    for slot, (band, centre) in enumerate(zip(reversed(r.bands), reversed(centres), strict=True)):
        ly = top + 22.0 + slot * 44.0
        out.append(
            f'<polyline points="{bar_x + bar_w + 2},{centre:.1f} {bar_x + bar_w + 14},{centre:.1f} '
            f'{bar_x + bar_w + 26},{ly - 4:.1f}" fill="none" stroke="{CUT_STROKE}" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{bar_x + bar_w + 30}" y="{ly:.1f}" font-size="12" fill="{INK}">'
            f'<tspan font-weight="bold">{_e(r.text("band." + band.key))}</tspan>'
            f'<tspan dx="6" fill="{MUTED}" font-size="11">{_e(band.label)}</tspan></text>'
        )
        out.append(
            f'<text x="316" y="{ly:.1f}" text-anchor="end" font-size="13" font-weight="bold" '
            f'fill="{BAND_COLOURS[band.key]}">{_e(format_percent(band.percent))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# --- HTML ----------------------------------------------------------------------------------------


@functools.cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("ehospital.glucose", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def report_css() -> str:
    """static/report.css, the report's styles (inlined by `render_page`)."""
    return resources.files("ehospital.web").joinpath("static/report.css").read_text(encoding="utf-8")


def _sufficiency_label(r: Report) -> str:
    if r.active_percent >= 70.0 and r.n_readings:
        return r.text("sufficient" if r.days >= CONSENSUS_DAYS - 1e-9 else "sufficient_short")
    return r.text("insufficient")


def weekday(r: Report, day: DayProfile) -> str:
    names = r.text("weekdays")
    name = names[day.day.weekday()] if r.locale == "zh" else names.split()[day.day.weekday()]
    return r.text("weekday", day=name)


def _context(r: Report) -> dict[str, Any]:
    return {
        "r": r,
        "t": r.text,
        "sufficiency": _sufficiency_label(r),
        "active": format_percent(r.active_percent),
        "days_text": days_phrase(r.locale, r.days),
        "tir_svg": Markup(tir_svg(r)),
        "agp_svg": Markup(agp_svg(r)) if r.agp is not None else None,
        "agp_missing": r.text("agp_missing", days=f"{AGP_MIN_DAYS:g}"),
        "days": [
            {"date": d.day.isoformat(), "weekday": weekday(r, d), "svg": Markup(day_svg(r, d))}
            for d in r.daily
        ],
        "daily_more": (
            r.text("daily_more", shown=len(r.daily), total=r.days_in_window)
            if r.days_in_window > len(r.daily)
            else None
        ),
        "episodes_more": r.episodes_total - len(r.episodes),
        "format_glucose": format_glucose,
        "quantiles": AGP_QUANTILES,
    }


def render_fragment(report: Report) -> str:
    """The report as a <section class="agp-report"> to embed in a page that links report.css."""
    return _env().get_template("report.html").render(standalone=False, **_context(report))


def render_page(report: Report) -> str:
    """The report as a standalone HTML document with its styles inline, printable on A4."""
    return (
        _env()
        .get_template("report.html")
        .render(standalone=True, r=report, css=Markup(report_css()), fragment=Markup(render_fragment(report)))
    )


# --- PDF -----------------------------------------------------------------------------------------

CJK_FONT = "STSong-Light"
PAGE_MARGIN = 36.0
_PDF_FOOTER_Y = 20.0


@functools.cache
def _register_fonts() -> None:
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))


def _font(locale: str, text: str, *, bold: bool = False) -> tuple[str, str]:
    """The font for a string and the string as that font shows it: STSong-Light for Chinese (and
    for anything outside Helvetica's WinAnsi encoding), Helvetica otherwise ("≤" as "<=")."""
    if locale == "zh":
        return CJK_FONT, text
    latin = text.replace("≤", "<=").replace("≥", ">=")
    try:
        latin.encode("cp1252")
    except UnicodeEncodeError:
        return CJK_FONT, text
    return ("Helvetica-Bold" if bold else "Helvetica"), latin


def _colour(hex_colour: str) -> Any:
    return colors.HexColor(hex_colour)


def _pdf_line(x: Any, y: Any) -> str:
    """PDF path operators of a line through the points (a "moveto", then "lineto"s), in tenths."""
    pairs = list(map("{} {}".format, _tenths(x), _tenths(y)))
    return f"{pairs[0]} m {' l '.join(pairs[1:])} l" if len(pairs) > 1 else f"{pairs[0]} m"


class _Chart(Flowable):  # type: ignore[misc]
    """A reportlab Drawing (axes, labels, target band), with the data drawn over it as PDF path
    operators written at once: reportlab's per-point formatting is slow without its C extension."""

    def __init__(self, drawing: Any) -> None:
        super().__init__()
        self.drawing = drawing
        self.paths: list[tuple[str, str, float, str]] = []  # (fill|stroke, colour, width, operators)

    def add_path(self, mode: str, colour: str, width: float, operators: str) -> None:
        if operators:
            self.paths.append((mode, colour, width, operators))

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return float(self.drawing.width), float(self.drawing.height)

    def draw(self) -> None:
        canvas = self.canv
        self.drawing.drawOn(canvas, 0, 0)
        for mode, colour, width, operators in self.paths:
            canvas.saveState()
            canvas.addLiteral("0.1 0 0 0.1 0 0 cm")  # coordinates in tenths
            if mode == "fill":
                canvas.setFillColor(_colour(colour))
                canvas.addLiteral(f"{operators} f")
            else:
                canvas.setStrokeColor(_colour(colour))
                canvas.setLineWidth(width * 10.0)
                canvas.setLineJoin(1)
                canvas.setLineCap(1)
                canvas.addLiteral(f"{operators} S")
            canvas.restoreState()


class _Pdf:
    """The flowables of one report's PDF."""

    def __init__(self, r: Report) -> None:
        self.r = r
        self.styles: dict[str, Any] = {}
        base = ParagraphStyle(
            "body",
            fontName=_font(r.locale, "")[0],
            fontSize=8.5,
            leading=11.5,
            textColor=_colour(INK),
            wordWrap="CJK" if r.locale == "zh" else None,
        )
        self.styles["body"] = base
        self.styles["small"] = ParagraphStyle("small", parent=base, fontSize=7.2, leading=9.2)
        self.styles["muted"] = ParagraphStyle("muted", parent=self.styles["small"], textColor=_colour(MUTED))
        self.styles["note"] = ParagraphStyle("note", parent=base, textColor=_colour("#9a6700"))
        self.styles["title"] = ParagraphStyle("title", parent=base, fontSize=15, leading=19, spaceAfter=4)
        self.styles["h"] = ParagraphStyle(
            "h", parent=base, fontSize=10.5, leading=13, spaceBefore=7, spaceAfter=3
        )

    def para(self, text: str, style: str = "body", *, bold: bool = False) -> Any:
        st = self.styles[style]
        bold = bold or style in ("title", "h")
        font, shown = _font(self.r.locale, text, bold=bold)
        if font != st.fontName:
            st = ParagraphStyle(f"{style}-{font}", parent=st, fontName=font)
        return Paragraph(html.escape(shown, quote=False), st)

    def table(
        self,
        rows: list[list[Any]],
        widths: list[float],
        *,
        size: float = 7.8,
        header: bool = True,
        extra: list[tuple[Any, ...]] | None = None,
    ) -> Any:
        """A table of strings (or flowables), each string in the font it needs."""
        commands: list[tuple[Any, ...]] = [
            ("FONTSIZE", (0, 0), (-1, -1), size),
            ("LEADING", (0, 0), (-1, -1), size + 2),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.6),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.6),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TEXTCOLOR", (0, 0), (-1, -1), _colour(INK)),
            ("LINEBELOW", (0, 0), (-1, -1), 0.4, _colour(GRID_STROKE)),
        ]
        if header:
            commands += [("BACKGROUND", (0, 0), (-1, 0), _colour("#f0f2f5"))]
        cells: list[list[Any]] = []
        for i, row in enumerate(rows):
            out: list[Any] = []
            for j, cell in enumerate(row):
                if isinstance(cell, str):
                    font, shown = _font(self.r.locale, cell, bold=header and i == 0)
                    commands.append(("FONTNAME", (j, i), (j, i), font))
                    out.append(shown)
                else:
                    out.append(cell)
            cells.append(out)
        table = Table(cells, colWidths=widths, hAlign="LEFT")
        table.setStyle(TableStyle(commands + (extra or [])))
        return table

    # The charts.

    def agp_drawing(self, width: float, height: float) -> Any:
        r = self.r
        assert r.agp is not None
        d = Drawing(width, height)
        left, bottom, right, top = 30.0, 16.0, width - 4.0, height - 6.0

        def x(minutes: Any) -> Any:
            return left + np.asarray(minutes, dtype=np.float64) / 1440.0 * (right - left)

        def y(mgdl: Any) -> Any:
            return bottom + np.clip(np.asarray(mgdl, dtype=np.float64), 0.0, Y_MAX) / Y_MAX * (top - bottom)

        d.add(
            Rect(
                left,
                bottom,
                right - left,
                top - bottom,
                fillColor=colors.white,
                strokeColor=_colour(GRID_STROKE),
            )
        )
        self._target(d, left, right - left, y)
        for hour in range(0, 25, 3):
            hx = float(x(hour * 60))
            if 0 < hour < 24:
                d.add(Line(hx, bottom, hx, top, strokeColor=_colour(GRID_STROKE), strokeWidth=0.5))
            d.add(
                String(
                    hx,
                    5,
                    f"{hour:02d}:00",
                    fontName="Helvetica",
                    fontSize=6.5,
                    textAnchor="middle",
                    fillColor=_colour(MUTED),
                )
            )
        for mgdl in _cuts(r):
            cy = float(y(mgdl))
            dash = None if mgdl in (r.targets.low, r.targets.high) else [3, 2]
            d.add(
                Line(
                    left,
                    cy,
                    right,
                    cy,
                    strokeColor=_colour(CUT_STROKE),
                    strokeWidth=0.6,
                    strokeDashArray=dash,
                )
            )
            d.add(
                String(
                    left - 3,
                    cy - 2.2,
                    format_threshold(mgdl, r.unit, with_unit=False),
                    fontName="Helvetica",
                    fontSize=6.5,
                    textAnchor="end",
                    fillColor=_colour(INK),
                )
            )
        d.add(String(2, top - 2, r.unit, fontName="Helvetica", fontSize=6, fillColor=_colour(MUTED)))
        chart = _Chart(d)
        minutes, curves = _agp_curves(r.agp)
        px = x(minutes)
        ys = [y(c) for c in curves]
        for lo, hi, fill in ((0, 4, P5_95_FILL), (1, 3, P25_75_FILL)):
            bands = []
            for a, b in _runs(~np.isnan(curves[lo]) & ~np.isnan(curves[hi])):
                xs = np.concatenate((px[a:b], px[a:b][::-1]))
                bands.append(_pdf_line(xs, np.concatenate((ys[hi][a:b], ys[lo][a:b][::-1]))) + " h")
            chart.add_path("fill", fill, 0.0, " ".join(bands))
        median = [_pdf_line(px[a:b], ys[2][a:b]) for a, b in _runs(~np.isnan(curves[2]))]
        chart.add_path("stroke", MEDIAN_STROKE, 1.6, " ".join(median))
        return chart

    def _target(self, d: Any, left: float, width: float, y: Any) -> None:
        t = self.r.targets
        low, high = float(y(t.low)), float(y(t.high))
        d.add(
            Rect(
                left, low, width, high - low, fillColor=_colour(TARGET_FILL), strokeColor=None, strokeWidth=0
            )
        )

    def tir_drawing(self, width: float, height: float) -> Any:
        r = self.r
        d = Drawing(width, height)
        bottom, bar_h, bar_x, bar_w = 4.0, height - 8.0, 4.0, 26.0
        if r.n_readings == 0:
            d.add(Rect(bar_x, bottom, bar_w, bar_h, fillColor=_colour(GRID_STROKE), strokeColor=None))
            heights = [bar_h / 5.0] * 5
        else:
            heights = _bar_heights([b.percent or 0.0 for b in r.bands], bar_h, 2.0)
        yy = bottom
        centres = []
        for band, h in zip(r.bands, heights, strict=True):
            centres.append(yy + h / 2.0)
            if r.n_readings and h > 0:
                d.add(
                    Rect(
                        bar_x,
                        yy,
                        bar_w,
                        h,
                        fillColor=_colour(BAND_COLOURS[band.key]),
                        strokeColor=None,
                        strokeWidth=0,
                    )
                )
            yy += h
        slot_h = bar_h / 5.0
        for slot, (band, centre) in enumerate(zip(reversed(r.bands), reversed(centres), strict=True)):
            ly = bottom + bar_h - slot_h * (slot + 0.5) - 3.0
            x0 = bar_x + bar_w
            d.add(
                PolyLine(
                    [x0 + 1, centre, x0 + 8, centre, x0 + 16, ly + 3],
                    strokeColor=_colour(CUT_STROKE),
                    strokeWidth=0.5,
                )
            )
            name_font, name = _font(r.locale, r.text("band." + band.key), bold=True)
            d.add(String(x0 + 19, ly + 4, name, fontName=name_font, fontSize=7.5, fillColor=_colour(INK)))
            label_font, label = _font(r.locale, band.label)
            d.add(String(x0 + 19, ly - 5, label, fontName=label_font, fontSize=6.5, fillColor=_colour(MUTED)))
            d.add(
                String(
                    width - 2,
                    ly,
                    format_percent(band.percent),
                    fontName="Helvetica-Bold",
                    fontSize=9,
                    textAnchor="end",
                    fillColor=_colour(BAND_COLOURS[band.key]),
                )
            )
        return d

    def daily_drawing(self, width: float) -> Any:
        r = self.r
        per_row, chart_h, caption_h, gap = 7, 64.0, 10.0, 5.0
        cell_w = width / per_row
        rows = max(1, -(-len(r.daily) // per_row))
        height = rows * (chart_h + caption_h + gap)
        d = Drawing(width, height)
        chart = _Chart(d)
        lines: list[str] = []
        for i, day in enumerate(r.daily):
            col, row = i % per_row, i // per_row
            left = col * cell_w + 1.0
            w = cell_w - 4.0
            bottom = height - (row + 1) * (chart_h + caption_h + gap) + gap
            top = bottom + chart_h

            def x(minutes: Any, left: float = left, w: float = w) -> Any:
                return left + np.asarray(minutes, dtype=np.float64) / 1440.0 * w

            def y(mgdl: Any, bottom: float = bottom) -> Any:
                return bottom + np.clip(np.asarray(mgdl, dtype=np.float64), 0.0, Y_MAX) / Y_MAX * chart_h

            d.add(
                Rect(
                    left,
                    bottom,
                    w,
                    chart_h,
                    fillColor=colors.white,
                    strokeColor=_colour(GRID_STROKE),
                    strokeWidth=0.5,
                )
            )
            self._target(d, left, w, y)
            noon = float(x(720))
            d.add(Line(noon, bottom, noon, top, strokeColor=_colour(GRID_STROKE), strokeWidth=0.4))
            caption_font, caption = _font(r.locale, f"{day.day.strftime('%m-%d')} {weekday(r, day)}")
            d.add(
                String(
                    left + 1, top + 2.5, caption, fontName=caption_font, fontSize=6.5, fillColor=_colour(INK)
                )
            )
            if day.glucose.size == 0:
                font, text = _font(r.locale, r.text("no_data"))
                d.add(
                    String(
                        left + w / 2,
                        bottom + chart_h / 2 - 2,
                        text,
                        fontName=font,
                        fontSize=6,
                        textAnchor="middle",
                        fillColor=_colour(MUTED),
                    )
                )
                continue
            px, py = x(day.minutes), y(day.glucose)
            cuts = [0, *np.flatnonzero(_day_breaks(day, r.sampling_minutes)).tolist(), day.minutes.size]
            for a, b in itertools.pairwise(cuts):
                if b - a == 1:  # a lone reading: a short dash
                    lines.append(_pdf_line(np.array([px[a], px[a] + 0.5]), np.array([py[a], py[a]])))
                else:
                    lines.append(_pdf_line(px[a:b], py[a:b]))
        chart.add_path("stroke", LINE_STROKE, 0.6, " ".join(lines))
        return chart

    # The pages.

    def page_one(self, width: float) -> list[Any]:
        r = self.r
        out: list[Any] = [self.para(r.title, "title")]
        meta = [
            (r.text("patient"), r.patient or "—"),
            (r.text("period"), r.period),
            (r.text("days"), days_phrase(r.locale, r.days)),
            (r.text("active"), format_percent(r.active_percent)),
            (r.text("sufficiency"), _sufficiency_label(r)),
            (r.text("targets"), r.text("preset." + r.targets.preset)),
            (r.text("readings"), str(r.n_readings)),
            (r.text("unit"), r.unit),
        ]
        cells = [[meta[i][0], meta[i][1], meta[i + 1][0], meta[i + 1][1]] for i in range(0, len(meta), 2)]
        quarter = width / 4.0
        out.append(
            self.table(
                cells,
                [quarter * 0.75, quarter * 1.25, quarter * 0.75, quarter * 1.25],
                header=False,
                extra=[
                    ("TEXTCOLOR", (0, 0), (0, -1), _colour(MUTED)),
                    ("TEXTCOLOR", (2, 0), (2, -1), _colour(MUTED)),
                ],
            )
        )
        for note in r.notes:
            out.append(self.para(note, "note"))
        out.append(self.para(r.text("summary"), "h"))
        for sentence in r.summary:
            # "●": the Chinese PDF font (STSong-Light, Adobe-GB1) has no glyph for "•" or "·".
            bullet = "●" if r.locale == "zh" else "•"
            out.append(self.para(f"{bullet} {sentence}", "body"))
        out.append(self.para(r.text("table"), "h"))
        left_w = width * 0.63
        rows: list[list[Any]] = [[r.text("metric"), r.text("value"), r.text("goal"), r.text("result")]]
        extra: list[tuple[Any, ...]] = []
        for i, row in enumerate(r.rows, start=1):
            result = "" if row.met is None else r.text("met" if row.met else "missed")
            rows.append(
                [self.para(row.label, "small"), row.display, row.goal.label if row.goal else "—", result]
            )
            if row.met is not None:
                extra.append(("TEXTCOLOR", (3, i), (3, i), _colour("#1a7f37" if row.met else "#c0392b")))
        table = self.table(rows, [left_w * 0.5, left_w * 0.24, left_w * 0.12, left_w * 0.14], extra=extra)
        tir = self.tir_drawing(width - left_w - 8.0, 170.0)
        holder = Table([[table, tir]], colWidths=[left_w + 4.0, width - left_w - 4.0], hAlign="LEFT")
        holder.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                ]
            )
        )
        out.append(holder)
        out.append(self.para(r.text("agp"), "h"))
        if r.agp is not None:
            out.append(self.agp_drawing(width, 215.0))
            out.append(self.para(r.text("agp_legend"), "muted"))
        else:
            out.append(self.para(r.text("agp_missing", days=f"{AGP_MIN_DAYS:g}"), "note"))
        return out

    def page_two(self, width: float) -> list[Any]:
        r = self.r
        out: list[Any] = [self.para(r.text("daily"), "h"), self.daily_drawing(width)]
        if r.days_in_window > len(r.daily):
            out.append(self.para(r.text("daily_more", shown=len(r.daily), total=r.days_in_window), "muted"))
        out.append(self.para(r.text("episodes"), "h"))
        stats = [["", r.text("episode_count"), r.text("episode_per_day"), r.text("episode_minutes")]]
        for s in r.episode_stats:
            stats.append(
                [
                    s.label,
                    str(s.count),
                    "—" if s.per_day is None else f"{s.per_day:.2f}",
                    "—" if s.mean_minutes is None else f"{s.mean_minutes:.0f}",
                ]
            )
        out.append(self.table(stats, [width * 0.4, width * 0.15, width * 0.15, width * 0.2]))
        out.append(Spacer(1, 6))
        if r.episodes:
            listed = [
                [
                    r.text("episode_start"),
                    r.text("episode_kind"),
                    r.text("episode_duration"),
                    r.text("episode_extreme"),
                ]
            ]
            for e in r.episodes:
                listed.append(
                    [
                        e.start.strftime("%Y-%m-%d %H:%M"),
                        e.label,
                        f"{e.minutes:.0f}",
                        format_glucose(e.extreme, r.unit),
                    ]
                )
            out.append(self.table(listed, [width * 0.25, width * 0.35, width * 0.15, width * 0.2], size=7.2))
            if r.episodes_total > len(r.episodes):
                out.append(
                    self.para(r.text("episodes_more", more=r.episodes_total - len(r.episodes)), "muted")
                )
        else:
            out.append(self.para(r.text("episodes_none"), "body"))
        out.append(self.para(r.text("episodes_rule"), "muted"))
        out.append(Spacer(1, 10))
        out.append(self.para(r.text("footer"), "muted"))
        return out


def render_pdf(report: Report) -> bytes:
    """The report as a two-page A4 PDF with vector charts: page 1 the header, summary, consensus
    table, time in ranges and AGP; page 2 the daily profiles and episodes. Each page's content is
    shrunk to fit should it overflow, so there are always two pages."""
    _register_fonts()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=PAGE_MARGIN,
        rightMargin=PAGE_MARGIN,
        topMargin=PAGE_MARGIN,
        bottomMargin=PAGE_MARGIN,
        title=report.title,
        author="ehospital",
        subject=report.period,
        invariant=1,
        pageCompression=0,  # reportlab's pure-Python ASCII85 of compressed pages is slow
    )
    pdf = _Pdf(report)
    width, height = doc.width - 12.0, doc.height - 14.0
    footer_font, footer = _font(report.locale, f"{report.title} | {report.patient or ''} | {report.period}")

    def on_page(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(footer_font, 6.5)
        canvas.setFillColor(_colour(MUTED))
        canvas.drawString(PAGE_MARGIN, _PDF_FOOTER_Y, footer.replace(" |  | ", " | "))
        canvas.drawRightString(A4[0] - PAGE_MARGIN, _PDF_FOOTER_Y, f"{document.page} / 2")
        canvas.restoreState()

    doc.build(
        [
            KeepInFrame(width, height, pdf.page_one(width), mode="shrink"),
            PageBreak(),
            KeepInFrame(width, height, pdf.page_two(width), mode="shrink"),
        ],
        onFirstPage=on_page,
        onLaterPages=on_page,
    )
    data: bytes = buffer.getvalue()
    return data
