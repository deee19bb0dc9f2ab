"""Notebook widgets for experiment tracking: a searchable runs table and a metric chart.

    from animus.widgets import show_runs, MetricChart
    show_runs("churn", filter="metrics.acc > 0.9", order_by="metrics.acc DESC")
    MetricChart([run_a, run_b], "loss", project="churn")

The widgets are ``ipywidgets`` boxes; everything they draw comes from the pure
functions in the first half of this module (data in, HTML/SVG text out), which
need no kernel. Colours are JupyterLab CSS variables, so the widgets follow the
light and dark themes. API errors are shown in the widget's status line, never as
a traceback.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as W

from .client import AnimusAPIError, Client, ConfigError

__all__ = [
    "MetricChart",
    "RunsTable",
    "Series",
    "column_widths",
    "default_columns",
    "parse_columns",
    "render_chart",
    "render_error",
    "render_header",
    "render_row",
    "series_from_histories",
    "show_runs",
]

DEFAULT_LIMIT = 100
MAX_DEFAULT_METRICS = 8
MAX_COMPARE = 50  # the API's limit
SHORT_ID = 8

# theme-aware colours: JupyterLab variables, with a fallback outside JupyterLab
FG1 = "var(--jp-ui-font-color1, currentColor)"
FG2 = "var(--jp-ui-font-color2, currentColor)"
BORDER = "var(--jp-border-color2, rgba(127,127,127,0.35))"
GRID = "var(--jp-border-color3, rgba(127,127,127,0.2))"
ERROR = "var(--jp-error-color1, #d32f2f)"
STATUS_COLOURS = {
    "running": "var(--jp-info-color1, #0288d1)",
    "queued": FG2,
    "starting": "var(--jp-info-color1, #0288d1)",
    "succeeded": "var(--jp-success-color1, #388e3c)",
    "failed": ERROR,
    "cancelled": "var(--jp-warn-color1, #f57c00)",
}
# a categorical palette that reads on light and dark backgrounds (Tableau 10)
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
DASHES = ["", "6 3", "2 3", "8 3 2 3"]
FONT = "font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px)"

# --- pure helpers: data → text ---------------------------------------------------------

_PREFIXES = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "parameter": "params",
    "parameters": "params",
    "tags": "tags",
    "tag": "tags",
}


@dataclass(frozen=True)
class Column:
    """A table column: ``kind`` is an attribute name (id, name, status, user, start) or metrics/params/tags."""

    kind: str
    key: str = ""

    @property
    def title(self) -> str:
        return {"id": "id", "name": "name", "status": "status", "user": "user", "start": "start (UTC)"}.get(
            self.kind, self.key
        )

    @property
    def numeric(self) -> bool:
        return self.kind == "metrics"


BASE_COLUMNS = [Column("id"), Column("name"), Column("status"), Column("user"), Column("start")]


def parse_columns(columns: Iterable[str]) -> list[Column]:
    """``["metrics.acc", "params.lr", "loss"]`` → columns; a name without a prefix is a metric."""
    out = []
    for c in columns:
        prefix, dot, key = c.partition(".")
        if dot and prefix.lower() in _PREFIXES and key:
            out.append(Column(_PREFIXES[prefix.lower()], key))
        else:
            out.append(Column("metrics", c))
    return list(dict.fromkeys(out))


def default_columns(runs: Sequence[dict], cap: int = MAX_DEFAULT_METRICS) -> list[Column]:
    """The metric keys of the runs shown (sorted, at most ``cap``)."""
    keys = sorted({k for r in runs for k in (r.get("metrics") or {})})
    return [Column("metrics", k) for k in keys[:cap]]


def metric_value(v: Any) -> float | None:
    """A metric value of the API (a number or "NaN"/"Infinity"/"-Infinity") as a float; None if absent."""
    if v is None:
        return None
    if isinstance(v, dict):
        v = v.get("value")
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_number(v: float | None) -> str:
    if v is None:
        return ""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.5g}"


def fmt_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def cell_text(run: dict, col: Column) -> str:
    """What a cell shows, as plain text."""
    if col.kind == "id":
        return (run.get("id") or "")[:SHORT_ID]
    if col.kind == "name":
        return run.get("name") or ""
    if col.kind == "status":
        return run.get("status") or ""
    if col.kind == "user":
        return run.get("user") or ""
    if col.kind == "start":
        return fmt_time(run.get("start_time"))
    values = run.get(col.kind) or {}
    if col.kind == "metrics":
        return fmt_number(metric_value(values.get(col.key)))
    v = values.get(col.key)
    return "" if v is None else str(v)


def column_widths(runs: Sequence[dict], columns: Sequence[Column], cap: int = 28) -> list[int]:
    """A width in ``ch`` for each column: its longest text, at most ``cap``, plus padding."""
    widths = []
    for col in columns:
        longest = max([len(col.title)] + [len(cell_text(r, col)) for r in runs])
        widths.append(min(longest, cap) + 2)
    return widths


def _cell(
    text: str, width: int, *, numeric: bool = False, bold: bool = False, colour: str = "", title: str = ""
) -> str:
    style = (
        f"flex: none; width: {width}ch; padding: 2px 6px; overflow: hidden; text-overflow: ellipsis;"
        f" white-space: nowrap; text-align: {'right' if numeric else 'left'};"
    )
    if bold:
        style += " font-weight: 600;"
    if colour:
        style += f" color: {colour};"
    tip = html.escape(title or text, quote=True)
    return f'<div class="animus-cell" style="{style}" title="{tip}">{html.escape(text)}</div>'


def _line(cells: list[str], *, header: bool = False) -> str:
    border = f"border-bottom: 1px solid {BORDER};" if header else ""
    return (
        f'<div class="animus-row" style="display: flex; align-items: center; color: {FG1}; {FONT};'
        f' font-variant-numeric: tabular-nums; {border}">' + "".join(cells) + "</div>"
    )


def render_header(columns: Sequence[Column], widths: Sequence[int]) -> str:
    """The header line of the runs table."""
    return _line(
        [
            _cell(c.title, w, numeric=c.numeric, bold=True, title=f"{c.kind}.{c.key}" if c.key else c.title)
            for c, w in zip(columns, widths, strict=True)
        ],
        header=True,
    )


def render_row(run: dict, columns: Sequence[Column], widths: Sequence[int]) -> str:
    """One run as a line of the runs table (its cells line up with the header's)."""
    cells = []
    for c, w in zip(columns, widths, strict=True):
        text = cell_text(run, c)
        title = run.get("id", "") if c.kind == "id" else text
        colour = STATUS_COLOURS.get(text, "") if c.kind == "status" else ""
        cells.append(_cell(text, w, numeric=c.numeric, colour=colour, title=title))
    return _line(cells)


def render_status(text: str) -> str:
    return f'<div class="animus-status" style="color: {FG2}; {FONT}">{html.escape(text)}</div>'


def render_error(message: str, text: str | None = None, position: int | None = None) -> str:
    """An error for the status line; with the searched text and a position, a caret under it."""
    out = f'<div class="animus-error" style="color: {ERROR}; {FONT}">{html.escape(message)}</div>'
    if text is not None and position is not None and 0 <= position <= len(text) and "\n" not in text:
        out += (
            f'<pre class="animus-caret" style="margin: 2px 0; color: {FG1};'
            f' font-family: var(--jp-code-font-family, monospace)">'
            f"{html.escape(text)}\n{' ' * position}^</pre>"
        )
    return out


def error_text(e: BaseException) -> str:
    """One line for the status line."""
    if isinstance(e, AnimusAPIError):
        return e.message or str(e)
    if isinstance(e, ConfigError):
        return str(e)
    return f"{type(e).__name__}: {e}"


# --- the chart ---------------------------------------------------------------------------


@dataclass
class Series:
    """One line of a chart: a label and its (step, value) points; non-finite values are skipped when drawn."""

    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    total_points: int = 0
    downsampled: bool = False

    def finite(self) -> list[tuple[float, float]]:
        return [(x, y) for x, y in self.points if math.isfinite(x) and math.isfinite(y)]


def run_labels(runs: Sequence[dict]) -> dict[str, str]:
    """Run id → legend label: the run's name and its short id (short id alone without a name)."""
    out = {}
    for r in runs:
        short = r["id"][:SHORT_ID]
        out[r["id"]] = f"{r['name']} · {short}" if r.get("name") else short
    return out


def series_from_histories(run_ids: Sequence[str], histories: dict[str, dict], labels: dict[str, str]) -> list[Series]:
    """``{run_id: {"points": [...], "total_points", "downsampled"}}`` → one Series per run, in ``run_ids`` order."""
    out = []
    for rid in run_ids:
        h = histories.get(rid) or {}
        pts = []
        for p in h.get("points") or []:
            y = metric_value(p.get("value"))
            if y is not None:
                pts.append((float(p.get("step") or 0), y))
        out.append(
            Series(labels.get(rid, rid[:SHORT_ID]), pts, h.get("total_points", len(pts)), bool(h.get("downsampled")))
        )
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def _extent(values: list[float], pad_fraction: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        return lo - d, hi + d
    pad = (hi - lo) * pad_fraction
    return lo - pad, hi + pad


def _tick_label(v: float) -> str:
    return fmt_number(float(f"{v:.6g}"))


def render_chart(series: Sequence[Series], key: str, *, width: int = 640, height: int = 320) -> str:
    """A line chart (inline SVG) of one metric for several runs, with axis labels and a legend.

    One ``<polyline>`` per series that has at least one finite point; NaN and
    infinite values are left out; a series with few points also gets markers.
    """
    left, right, top, bottom = 64, 16, 28, 44
    pw, ph = width - left - right, height - top - bottom
    finite = [s.finite() for s in series]
    xs = [x for pts in finite for x, _ in pts]
    ys = [y for pts in finite for _, y in pts]
    esc_key = html.escape(key)
    text_style = f"fill: {FG1}; {FONT}"
    parts = [
        f'<svg class="animus-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" style="max-width: 100%; height: auto; overflow: visible"'
        f' role="img" aria-label="{html.escape(key, quote=True)} by step">',
        f'<text x="{left}" y="16" style="{text_style}; font-weight: 600">{esc_key}</text>',
    ]
    if not xs:
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" style="fill: {FG2}; {FONT}">'
            "no finite points to draw</text>"
        )
        x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
    else:
        x0, x1 = _extent(xs, 0.0)
        y0, y1 = _extent(ys, 0.05)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / (y1 - y0) * ph

    # grid, ticks and axes
    if xs:
        for t in nice_ticks(y0, y1):
            y = sy(t)
            parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" style="stroke: {GRID}"/>')
            parts.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" style="fill: {FG2}; {FONT}">{_tick_label(t)}</text>'
            )
        for t in nice_ticks(x0, x1, 6):
            if t != int(t):  # steps are whole numbers
                continue
            x = sx(t)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" style="stroke: {GRID}"/>')
            parts.append(
                f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle" style="fill: {FG2}; {FONT}">{_tick_label(t)}</text>'
            )
    parts.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" style="fill: none; stroke: {BORDER}"/>'
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" style="{text_style}">step</text>'
        f'<text x="14" y="{top + ph / 2}" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2})"'
        f' style="{text_style}">{esc_key}</text>'
    )
    # one line per run
    for i, (s, pts) in enumerate(zip(series, finite, strict=True)):
        if not pts:
            continue
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[(i // len(PALETTE)) % len(DASHES)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash_style = f"; stroke-dasharray: {dash}" if dash else ""
        label = html.escape(s.label)
        parts.append(
            f'<polyline class="animus-series" data-label="{html.escape(s.label, quote=True)}" points="{coords}"'
            f' style="fill: none; stroke: {colour}; stroke-width: 1.8{dash_style}"><title>{label}</title></polyline>'
        )
        if len(pts) <= 30:
            for x, y in pts:
                parts.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" style="fill: {colour}">'
                    f"<title>{label}: step {fmt_number(x)}, {fmt_number(y)}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts) + render_legend(series)


def render_legend(series: Sequence[Series]) -> str:
    items = []
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        n = len(s.finite())
        note = ""
        if n == 0:
            note = " (no points)"
        elif n < len(s.points):
            note = f" ({len(s.points) - n} non-finite skipped)"
        swatch = f'<span style="display: inline-block; width: 14px; height: 3px; background: {colour}; margin-right: 5px; vertical-align: middle"></span>'
        items.append(
            f'<span class="animus-legend-item" style="margin-right: 14px; white-space: nowrap">{swatch}'
            f'{html.escape(s.label)}<span style="color: {FG2}">{html.escape(note)}</span></span>'
        )
    down = [s for s in series if s.downsampled]
    caption = ""
    if down:
        most = max(s.total_points for s in down)
        caption = (
            f'<div class="animus-caption" style="color: {FG2}; {FONT}; margin-left: 64px">Downsampled on the server (lowest and highest value of each step bucket kept);'
            f" longest history: {most} points.</div>"
        )
    return (
        f'<div class="animus-legend" style="color: {FG1}; {FONT}; display: flex; flex-wrap: wrap; margin: 4px 0 0 64px">'
        + "".join(items)
        + "</div>"
        + caption
    )


# --- widgets -------------------------------------------------------------------------------


def _client(client: Client | None) -> Client:
    return client if client is not None else Client()


def _project(project: str | None) -> str | None:
    return project or os.environ.get("ANIMUS_PROJECT") or None


class MetricChart(W.VBox):
    """A line chart of one metric's history for one or several runs, with a dropdown of the runs' metrics."""

    def __init__(
        self,
        run_ids: str | Sequence[str],
        key: str | None = None,
        project: str | None = None,
        max_points: int = 500,
        client: Client | None = None,
    ) -> None:
        self.run_ids = [run_ids] if isinstance(run_ids, str) else list(dict.fromkeys(run_ids))
        self.project = _project(project)
        self.max_points = max(2, int(max_points))
        self._client = client
        self.labels: dict[str, str] = {rid: rid[:SHORT_ID] for rid in self.run_ids}
        self.series: list[Series] = []
        self.key_box = W.Dropdown(description="metric", options=[], layout=W.Layout(width="auto", min_width="16em"))
        self.chart = W.HTML()
        self.status = W.HTML()
        super().__init__([self.key_box, self.chart, self.status])
        self.add_class("animus-metric-chart")
        self._loading = False
        self.key: str | None = key
        self._load(key, first=True)
        self.key_box.observe(self._on_key, names="value")

    @property
    def svg(self) -> str:
        """The chart as drawn (SVG and legend HTML)."""
        return self.chart.value

    def _on_key(self, change: dict) -> None:
        if not self._loading and change["new"] and change["new"] != self.key:
            self._load(change["new"])

    def _fetch(self, key: str | None) -> tuple[list[str], dict[str, dict], str | None]:
        """(metric keys of the runs, histories of ``key`` by run id, the key drawn)."""
        c = _client(self._client)
        self._client = c
        p = self.project
        assert p is not None
        if key and "," not in key:
            cmp = c.compare_runs(p, self.run_ids, metrics=[key], max_points=self.max_points)
            self.labels = run_labels(cmp["runs"])
            return sorted(cmp["metrics"]), cmp["histories"].get(key, {}), key
        # which metrics the runs have (2 points of each is enough to learn that)
        cmp = c.compare_runs(p, self.run_ids, max_points=2)
        self.labels = run_labels(cmp["runs"])
        keys = sorted(cmp["metrics"])
        key = key or (keys[0] if keys else None)
        if not key:
            return keys, {}, None
        if "," in key:  # compare takes comma-separated keys: ask run by run
            return keys, {rid: c.metric_history(p, rid, key, max_points=self.max_points) for rid in self.run_ids}, key
        cmp = c.compare_runs(p, self.run_ids, metrics=[key], max_points=self.max_points)
        return keys, cmp["histories"].get(key, {}), key

    def _load(self, key: str | None, first: bool = False) -> None:
        if not self.project:
            self.status.value = render_error("No project: pass project=... or set $ANIMUS_PROJECT")
            return
        if not self.run_ids:
            self.status.value = render_error("No runs to chart: select at least one run")
            return
        if len(self.run_ids) > MAX_COMPARE:
            self.status.value = render_error(f"Chart at most {MAX_COMPARE} runs at once ({len(self.run_ids)} given)")
            return
        self.status.value = render_status("Loading…")
        try:
            keys, hist, key = self._fetch(key)
        except Exception as e:  # noqa: BLE001 - shown to the user, not raised
            self.status.value = render_error(error_text(e))
            return
        self.key = key
        self._loading = True
        try:
            options = list(keys)
            if key and key not in options:
                options.append(key)
            self.key_box.options = options
            self.key_box.value = key
        finally:
            self._loading = False
        if not key:
            self.chart.value = ""
            self.status.value = render_error("These runs have no metrics")
            return
        self.series = series_from_histories(self.run_ids, hist, self.labels)
        self.chart.value = render_chart(self.series, key)
        missing = [s.label for s in self.series if not s.points]
        if key not in keys:
            self.status.value = render_error(f"None of these runs has the metric {key!r}")
        elif missing:
            self.status.value = render_status(f"No {key!r} points in: {', '.join(missing)}")
        else:
            self.status.value = ""


class RunsTable(W.VBox):
    """A project's runs: a filter box, an order-by box, a table with checkboxes, a status line and Compare."""

    def __init__(
        self,
        project: str | None = None,
        experiment: str | Sequence[str] | None = None,
        filter: str = "",  # noqa: A002 - the API's word
        order_by: str | Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        client: Client | None = None,
        limit: int = DEFAULT_LIMIT,
        max_points: int = 500,
    ) -> None:
        self.project = _project(project)
        self.experiment = [experiment] if isinstance(experiment, str) else list(experiment or [])
        self.limit = max(1, int(limit))
        self.max_points = max_points
        self._client = client
        self._chosen_columns = parse_columns(columns) if columns else None
        self.columns: list[Column] = list(BASE_COLUMNS)
        self.runs: list[dict] = []
        self.more = False
        self.error: str | None = None
        self.chart: MetricChart | None = None

        if isinstance(order_by, str):
            order_text = order_by
        else:
            order_text = ", ".join(order_by or [])
        self.filter_box = W.Text(
            value=filter,
            placeholder="e.g. metrics.acc > 0.9 and params.model = 'rf'",
            description="filter",
            continuous_update=False,
            layout=W.Layout(flex="1 1 auto", min_width="20em"),
        )
        self.order_box = W.Text(
            value=order_text,
            placeholder="e.g. metrics.acc DESC, start_time",
            description="order by",
            continuous_update=False,
            layout=W.Layout(width="22em"),
        )
        self.search_button = W.Button(
            description="Search", icon="search", button_style="primary", layout=W.Layout(width="auto")
        )
        self.compare_button = W.Button(
            description="Compare", icon="line-chart", tooltip="Chart the selected runs", layout=W.Layout(width="auto")
        )
        self.select_all = W.Checkbox(
            value=False, indent=False, description="", tooltip="Select all", layout=W.Layout(width="24px", flex="none")
        )
        self.status = W.HTML(layout=W.Layout(margin="0 0 0 8px"))
        self.rows = W.VBox(layout=W.Layout(overflow="auto", max_height="28em"))
        self.chart_area = W.VBox()
        self.checkboxes: list[W.Checkbox] = []
        self._row_html: list[W.HTML] = []
        self._header = W.HTML()

        self.filter_box.observe(lambda _: self.search(), names="value")  # Enter (or leaving the box)
        self.order_box.observe(lambda _: self.search(), names="value")
        self.search_button.on_click(lambda _: self.search())
        self.compare_button.on_click(lambda _: self.compare())
        self.select_all.observe(self._on_select_all, names="value")

        controls = W.HBox(
            [self.filter_box, self.order_box, self.search_button],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )
        actions = W.HBox([self.compare_button, self.status], layout=W.Layout(align_items="center"))
        super().__init__(
            [
                controls,
                actions,
                W.HBox([self.select_all, self._header], layout=W.Layout(align_items="center")),
                self.rows,
                self.chart_area,
            ]
        )
        self.add_class("animus-runs-table")
        self.search()

    # --- what a user sees -------------------------------------------------------------------

    @property
    def table_html(self) -> str:
        """The header and rows of the table as shown."""
        return self._header.value + "".join(h.value for h in self._row_html)

    @property
    def selected(self) -> list[str]:
        """Ids of the checked runs, in table order."""
        return [r["id"] for r, cb in zip(self.runs, self.checkboxes, strict=True) if cb.value]

    @selected.setter
    def selected(self, run_ids: Iterable[str]) -> None:
        wanted = set(run_ids)
        for r, cb in zip(self.runs, self.checkboxes, strict=True):
            cb.value = r["id"] in wanted

    # --- actions ---------------------------------------------------------------------------------

    def _order_by(self) -> list[str]:
        return [p.strip() for p in self.order_box.value.split(",") if p.strip()]

    def _experiment_ids(self, c: Client) -> list[str] | None:
        if not self.experiment:
            return None
        assert self.project is not None
        known = c.list_experiments(self.project, lifecycle="all")
        ids = []
        for e in self.experiment:
            match = [x["id"] for x in known if e in (x["id"], x["name"])]
            if not match:
                raise ValueError(f"No experiment {e!r} in project {self.project!r}")
            ids.extend(match[:1])
        return ids

    def search(self) -> None:
        """Run the search in the boxes and show its first page (errors go to the status line)."""
        if not self.project:
            self._show_error("No project: pass project=... or set $ANIMUS_PROJECT")
            return
        self.status.value = render_status("Searching…")
        text = self.filter_box.value
        try:
            c = _client(self._client)
            self._client = c
            runs = list(
                c.search_runs(
                    self.project,
                    filter=text,
                    order_by=self._order_by() or None,
                    experiment_ids=self._experiment_ids(c),
                    limit=self.limit + 1,
                )
            )
        except AnimusAPIError as e:
            position = e.details.get("position") if e.reason == "invalid_filter" else None
            self._show_error(error_text(e), text if isinstance(position, int) else None, position)
            return
        except Exception as e:  # noqa: BLE001 - shown to the user, not raised
            self._show_error(error_text(e))
            return
        self.error = None
        self.more = len(runs) > self.limit
        self.runs = runs[: self.limit]
        self._draw()
        n = len(self.runs)
        if self.more:
            msg = f"Showing the first {n} matching runs; narrow the filter to see others."
        else:
            msg = f"{n} run{'s' if n != 1 else ''}" + (" match the filter" if text.strip() else "")
        self.status.value = render_status(msg)

    def _show_error(self, message: str, text: str | None = None, position: int | None = None) -> None:
        self.error = message
        self.status.value = render_error(message, text, position)

    def _draw(self) -> None:
        metric_cols = self._chosen_columns if self._chosen_columns is not None else default_columns(self.runs)
        self.columns = BASE_COLUMNS + [c for c in metric_cols if c not in BASE_COLUMNS]
        widths = column_widths(self.runs, self.columns)
        self._header.value = render_header(self.columns, widths)
        self.checkboxes, self._row_html, rows = [], [], []
        for run in self.runs:
            cb = W.Checkbox(value=False, indent=False, description="", layout=W.Layout(width="24px", flex="none"))
            cell = W.HTML(render_row(run, self.columns, widths))
            self.checkboxes.append(cb)
            self._row_html.append(cell)
            rows.append(W.HBox([cb, cell], layout=W.Layout(align_items="center")))
        self.rows.children = rows
        self.select_all.value = False

    def _on_select_all(self, change: dict) -> None:
        for cb in self.checkboxes:
            cb.value = change["new"]

    def compare(self, key: str | None = None) -> MetricChart | None:
        """Chart the selected runs below the table (``key``: the first metric column by default)."""
        ids = self.selected
        if not ids:
            self._show_error("Select runs to compare (tick their boxes)")
            return None
        if len(ids) > MAX_COMPARE:
            self._show_error(f"Compare at most {MAX_COMPARE} runs at once ({len(ids)} selected)")
            return None
        if key is None:
            key = next((c.key for c in self.columns if c.kind == "metrics"), None)
        self.chart = MetricChart(ids, key, project=self.project, max_points=self.max_points, client=self._client)
        self.chart_area.children = [self.chart]
        return self.chart


def show_runs(
    project: str | None = None,
    experiment: str | Sequence[str] | None = None,
    filter: str = "",  # noqa: A002
    order_by: str | Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    client: Client | None = None,
    **kwargs: Any,
) -> RunsTable:
    """A :class:`RunsTable` (the last expression of a cell displays it)."""
    return RunsTable(project, experiment, filter, order_by, columns, client, **kwargs)
