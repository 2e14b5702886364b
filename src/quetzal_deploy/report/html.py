"""The report page: one HTML file with plotly.js inlined: it opens offline and fetches nothing
unless the user sets a tile URL.

plotly (a dependency; plotly.js ships inside its wheel) draws the timeline, the OD
heat maps and the layers; the layers are drawn as longitude/latitude on plain axes kept to the
map's aspect (no tiles, no base map fetched). Only when the user sets a tile URL are the XYZ
raster tiles covering the layers placed under them as plotly layout images (``tile_images``).
The page stays under ``MAX_REPORT_MB``: plotly.js (about 4.6 MB), at most ``VERTEX_BUDGET``
vertices, logs cut to their head and tail.
"""

from __future__ import annotations

import html
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from quetzal_deploy.contract.limits import STATE_LIMIT_BYTES
from quetzal_deploy.errors import QuetzalError
from quetzal_deploy.report.layers import Layer, Matrix, read_layers, read_matrices
from quetzal_deploy.report.model import RunView
from quetzal_deploy.sizing import suggest

MAX_REPORT_MB = 15
MAX_MATRICES = 6
STATE_LIMIT_KB = STATE_LIMIT_BYTES / 1024
STATUS_COLOURS = {"ok": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e", "running": "#f9a825"}
INPUT_COLOUR = "#9e9e9e"
CONFIG = {"displaylogo": False, "responsive": True}
TEMPLATE = "plotly_white"
MAP_TILES_ACROSS = 4  # raster tiles across the layers' extent, when the user sets a tile URL
MAX_TILES = 48
MAX_TILE_ZOOM = 19
INSTALL_HINT = "pip install plotly pyproj (quetzal-deploy's own dependencies)"
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em;color:#222}
h1{font-size:1.5em;margin:.2em 0} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;color:#fff;font-weight:600}
.SUCCEEDED{background:#2e7d32}.FAILED,.TIMED_OUT,.ABORTED{background:#c62828}.RUNNING{background:#f9a825}
.error{background:#fdecea;border-left:4px solid #c62828;padding:.6em .8em;white-space:pre-wrap;
font-family:ui-monospace,monospace;font-size:12px;max-height:24em;overflow:auto}
table{border-collapse:collapse;width:100%} td,th{padding:.3em .5em;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} th{font-weight:600;background:#fafafa}
.gauge{width:110px;height:8px;background:#eee;border-radius:4px;overflow:hidden}
.gauge span{display:block;height:100%;background:#43a047}.gauge span.warn{background:#f9a825}
.gauge span.over{background:#c62828} small{color:#666}
tr.failed td:first-child{border-left:4px solid #c62828} .note{color:#666;font-size:12px}
details{margin:.3em 0;border:1px solid #ddd;border-radius:4px} summary{padding:.3em .6em;cursor:pointer}
details.failed summary{background:#fdecea;font-weight:600}
pre{margin:0;padding:.6em;font-size:12px;overflow:auto;max-height:40em;background:#fafafa}
pre .err{background:#fdecea;color:#b71c1c;display:block}
"""


class ReportUnavailable(QuetzalError):
    """plotly or pyproj is missing (an install with --no-deps, or a broken environment)."""


def plotly():
    """The plotly modules the page needs; ReportUnavailable naming the install command if missing."""
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
        import pyproj  # noqa: F401  (layers.py reprojects with it)
        from plotly.offline import get_plotlyjs
    except ImportError as ex:
        raise ReportUnavailable(f"the HTML report needs plotly and pyproj ({ex}): {INSTALL_HINT}") from ex
    return go, pio, get_plotlyjs


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def moment(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def gauge(value: float | None, limit: float | None, unit: str, digits: int = 0) -> str:
    """A small bar of ``value`` against ``limit``: amber past 80 %, red past 100 %."""
    if value is None:
        return "<small>-</small>"
    if not limit:
        return f"<small>{value:.{digits}f} {unit} (no limit)</small>"
    share = value / limit
    level = "over" if share > 1 else "warn" if share > 0.8 else ""
    return (f'<div class="gauge" title="{share:.0%}"><span class="{level}" style="width:{min(share, 1):.1%}">'
            f"</span></div><small>{value:.{digits}f} of {limit:g} {unit} ({share:.0%})</small>")


def figure_html(figure, div_id: str) -> str:
    """A figure's div and script; a figure given as a dict is not validated (big layers)."""
    _, pio, _ = plotly()
    return pio.to_html(figure, full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG,
                       validate=False)


def timeline(run: RunView) -> str:
    """A Gantt of every Task attempt; Map iterations and Parallel branches have rows of their own."""
    go, _, _ = plotly()
    timed = [s for s in run.steps if s.started is not None and s.seconds is not None]
    if not timed:
        return '<p class="note">No step ran.</p>'
    origin = min(s.started for s in timed)
    rows = list(dict.fromkeys(s.label for s in timed))
    texts = [("✗ " if s.status == "failed" else "") + (f"attempt {s.attempt}" if s.attempt > 1 else "")
             for s in timed]
    hover = [f"{esc(s.label)}<br>{s.status}, {s.seconds:.1f} s on {s.platform}"
             + (f"<br>attempt {s.attempt}" if s.attempt > 1 else "")
             + (f"<br>{esc(s.error[:200])}" if s.error else "") for s in timed]
    figure = go.Figure(go.Bar(
        y=[s.label for s in timed], x=[max(s.seconds, 0.01) for s in timed],
        base=[s.started - origin for s in timed], orientation="h", text=texts, textposition="inside",
        marker_color=[STATUS_COLOURS.get(s.status, "#607d8b") for s in timed],
        hovertext=hover, hoverinfo="text", showlegend=False))
    figure.update_layout(template=TEMPLATE, height=min(140 + 26 * len(rows), 2400),
                         margin=dict(l=min(12 + 7 * max(map(len, rows)), 400), r=10, t=10, b=40), bargap=0.25,
                         xaxis_title="seconds since the first step started")
    figure.update_yaxes(categoryorder="array", categoryarray=rows, autorange="reversed", automargin=True)
    return figure_html(figure, "timeline")


def step_rows(run: RunView) -> str:
    rows = []
    for step in run.steps:
        time_limit, memory, storage = run.limits.of(step.platform)
        advice = suggest(step.seconds, step.peak_memory_mb, step.tmp_mb).text if step.status == "ok" else "-"
        last = step.error.strip().splitlines()[-1] if step.error and step.error.strip() else ""
        error = f'<div class="error" title="{esc(step.error)}">{esc(last)}</div>' if last else ""
        retry = f" <small>(attempt {step.attempt})</small>" if step.attempt > 1 else ""
        rows.append(
            f'<tr class="{esc(step.status)}" data-step="{esc(step.label)}" data-status="{esc(step.status)}">'
            f"<td><b>{esc(step.label)}</b>{retry}<br><small>{esc(step.notebook or '')}</small>{error}</td>"
            f"<td>{esc(step.status)}</td><td>{esc(step.platform if step.status != 'skipped' else '-')}</td>"
            f"<td>{gauge(step.seconds, time_limit, 's', 1)}</td>"
            f"<td>{gauge(step.peak_memory_mb, memory, 'MB')}</td><td>{gauge(step.tmp_mb, storage, 'MB')}</td>"
            f"<td>{gauge(step.state_kb, STATE_LIMIT_KB, 'KB', 1)}</td><td>{esc(advice)}</td></tr>")
    return ("<table id=\"steps\"><tr><th>step</th><th>status</th><th>ran on</th><th>time</th>"
            "<th>peak memory</th><th>/tmp used</th><th>state passed on</th><th>suggested size</th></tr>"
            + "".join(rows) + "</table>")


def layer_traces(layer: Layer, colour: str, background: bool) -> list[dict]:
    """A line trace and a point trace of one layer, toggled together from the legend."""
    name = f"input: {layer.name}" if background else layer.name
    common = dict(type="scatter", legendgroup=name, name=name, hoverinfo="name",
                  opacity=0.35 if background else 0.9)
    traces = []
    if layer.lines:
        xs, ys = [], []
        for line in layer.lines:
            xs += [p[0] for p in line] + [None]
            ys += [p[1] for p in line] + [None]
        traces.append(dict(x=xs, y=ys, mode="lines", line=dict(color=colour, width=1 if background else 2),
                           **common))
    if layer.points:
        traces.append(dict(x=[p[0] for p in layer.points], y=[p[1] for p in layer.points], mode="markers",
                           marker=dict(color=colour, size=4 if background else 6), showlegend=not layer.lines,
                           **common))
    return traces


def tile_images(url: str, lons: list[float], lats: list[float]) -> list[dict]:
    """The XYZ tiles of ``url`` covering the layers, as plotly layout images under them.

    plotly's own map traces (MapLibre) are not used: in a page opened from a file, Chromium refuses
    their worker ("cross-origin redirects of the top-level worker script") and they draw no layer.
    Each web-mercator tile is stretched over its longitude/latitude box: at the zooms chosen here
    (a few tiles across) the curve inside one tile is under a pixel or two.
    """
    def column(lon: float, zoom: int) -> int:
        return min(int((lon + 180) / 360 * 2**zoom), 2**zoom - 1)

    def row(lat: float, zoom: int) -> int:
        lat = math.radians(max(min(lat, 85.05), -85.05))
        return min(int((1 - math.asinh(math.tan(lat)) / math.pi) / 2 * 2**zoom), 2**zoom - 1)

    def north(y: int, zoom: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / 2**zoom))))

    span = max(max(lons) - min(lons), 1e-6)
    zoom = max(min(int(math.log2(360 * MAP_TILES_ACROSS / span)), MAX_TILE_ZOOM), 0)
    while True:
        xs = range(column(min(lons), zoom), column(max(lons), zoom) + 1)
        ys = range(row(max(lats), zoom), row(min(lats), zoom) + 1)
        if len(xs) * len(ys) <= MAX_TILES or zoom == 0:
            break
        zoom -= 1
    return [dict(source=url.replace("{z}", str(zoom)).replace("{x}", str(x)).replace("{y}", str(y)),
                 xref="x", yref="y", x=x / 2**zoom * 360 - 180, y=north(y, zoom), sizex=360 / 2**zoom,
                 sizey=north(y, zoom) - north(y + 1, zoom), sizing="stretch", layer="below",
                 xanchor="left", yanchor="top") for x in xs for y in ys]


def tiles_note(tiles: str) -> str:
    """Where the map's pictures come from: the tile host the user set, or nowhere."""
    if not tiles:
        return "it opens offline and requests nothing from the network"
    return ('the map\'s tiles are fetched from <b id="tile-host">' + esc(urlsplit(tiles).netloc)
            + "</b> (REPORT_TILE_URL or --tiles), and nothing else from the network")


def map_figure(outputs: list[Layer], inputs: list[Layer], tiles: str = "") -> str:
    """The layers on plain longitude/latitude axes scaled as a map at their mean latitude, over
    the raster tiles of ``tiles`` (an XYZ URL) when the user set one."""
    _, pio, _ = plotly()
    from plotly.colors import qualitative

    palette = qualitative.D3
    traces = [t for layer in inputs for t in layer_traces(layer, INPUT_COLOUR, True)]
    traces += [t for i, layer in enumerate(outputs)
               for t in layer_traces(layer, palette[i % len(palette)], False)]
    points = [p for layer in outputs + inputs for line in (*layer.lines, layer.points) for p in line]
    lats = [p[1] for p in points]
    if not lats:
        return '<p class="note">No layer to draw.</p>'
    middle = (min(lats) + max(lats)) / 2
    layout = dict(template=pio.templates[TEMPLATE].to_plotly_json(), height=640, showlegend=True,
                  margin=dict(l=10, r=10, t=10, b=10),
                  legend=dict(title=dict(text="layers (click to hide)")), plot_bgcolor="#fbfbf8",
                  xaxis=dict(title=dict(text="longitude"), showgrid=False, zeroline=False),
                  yaxis=dict(title=dict(text="latitude"), showgrid=False, zeroline=False, scaleanchor="x",
                             scaleratio=1 / max(math.cos(math.radians(middle)), 0.05)))
    if tiles:  # tiles over a 2:1 box around the layers: what the aspect-kept axes may show
        lons = [p[0] for p in points]
        scale = max(math.cos(math.radians(middle)), 0.05)
        across, high = (max(lons) - min(lons)) / 2, (max(lats) - min(lats)) / 2
        across, high = max(across, 2 * high / scale), max(high, across * scale)
        west_east = [(min(lons) + max(lons)) / 2 + side * across for side in (-1, 1)]
        layout["images"] = tile_images(tiles, west_east, [middle - high, middle + high])
        layout["xaxis"]["range"] = [min(lons), max(lons)]
        layout["yaxis"]["range"] = [min(lats), max(lats)]
    return figure_html({"data": traces, "layout": layout}, "map")


def matrix_figures(matrices: list[Matrix]) -> str:
    go, _, _ = plotly()
    parts = []
    if len(matrices) > MAX_MATRICES:
        parts.append(f'<p class="note">The first {MAX_MATRICES} of {len(matrices)} OD matrices are drawn.'
                     "</p>")
    for index, matrix in enumerate(matrices[:MAX_MATRICES]):
        figure = go.Figure(go.Heatmap(z=matrix.values, x=matrix.columns, y=matrix.rows, colorscale="Viridis"))
        figure.update_layout(template=TEMPLATE, height=420, width=520, margin=dict(l=10, r=10, t=30, b=10),
                             title=dict(text=esc(matrix.name), font=dict(size=13)))
        figure.update_xaxes(title="destination", type="category")
        figure.update_yaxes(title="origin", type="category", autorange="reversed")
        note = f'<p class="note">{esc(matrix.note)}</p>' if matrix.note else ""
        parts.append(f'<div class="matrix" data-matrix="{esc(matrix.name)}">'
                     f"{figure_html(figure, f'matrix-{index}')}{note}</div>")
    return "".join(parts)


def log_html(text: str, failed: bool) -> str:
    """The log, its traceback (from the first ``Traceback`` line of a failed step) highlighted."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    start = start if failed else None
    return "".join(f'<span class="err">{esc(line)}</span>' if start is not None and i >= start
                   else esc(line) + "\n" for i, line in enumerate(lines))


def layer_notes(layers: list[Layer]) -> str:
    items = [f"<li><b>{esc(layer.name)}</b>: {esc('; '.join(layer.notes))}</li>"
             for layer in layers if layer.notes]
    return f'<ul class="note" id="layer-notes">{"".join(items)}</ul>' if items else ""


def page(run: RunView) -> str:
    """The whole page."""
    _, _, get_plotlyjs = plotly()
    outputs, inputs, notes = read_layers(run.outputs, run.inputs)
    matrices = read_matrices(run.outputs)
    failed = [s for s in run.steps if s.status == "failed"]
    error = ""
    if run.error:
        where = f" in <b>{esc(run.failed_state)}</b>" if run.failed_state else ""
        error = f'<h2>Error{where}</h2><div class="error" id="run-error">{esc(run.error)}</div>'
    logs = "".join(
        f'<details class="{"failed" if log.failed else ""}" data-log="{esc(log.name)}"'
        f'{" open" if log.failed else ""}><summary>{esc(log.name)}{" (failed)" if log.failed else ""}'
        f"</summary><pre>{log_html(log.text, log.failed)}</pre></details>" for log in run.logs)
    drawn = [layer for layer in outputs if layer.vertices]
    layer_list = "".join(f'<li data-layer="{esc(layer.name)}">{esc(layer.name)}: {layer.features:,} '
                         "features</li>" for layer in outputs)
    duration = f", {run.seconds:.1f} s" if run.seconds is not None else ""
    notes_html = "".join(f'<p class="note">{esc(n)}</p>' for n in [*run.notes, *notes])
    body = f"""
<h1>{esc(run.model)} · {esc(run.scenario)}
<span class="badge {esc(run.status)}" id="status">{esc(run.status)}</span></h1>
<p>{esc(run.kind)} <code>{esc(run.name)}</code>, started {moment(run.started)}{duration};
{len(run.steps)} step attempt(s), {len(failed)} failed.</p>
{error}
<h2>Timeline</h2>{timeline(run)}
<h2>Steps against their limits</h2>{step_rows(run)}
<p class="note">Limits: Lambda {run.limits.timeout_s:g} s, {run.limits.memory_mb:g} MB memory,
{run.limits.storage_mb:g} MB /tmp; Step Functions passes at most {STATE_LIMIT_KB:g} KB between states.
Suggested sizes keep 20 % over the measured peak.</p>
<h2>Outputs on a map</h2>
<ul id="layers">{layer_list or "<li>no output layer</li>"}</ul>
{map_figure(drawn, [layer for layer in inputs if layer.vertices], run.tiles) if drawn or inputs else ""}
{layer_notes(outputs + inputs)}{notes_html}
{"<h2>OD matrices</h2>" + matrix_figures(matrices) if matrices else ""}
<h2>Logs</h2>{logs or '<p class="note">No log was written.</p>'}
<p class="note" id="provenance">Written by quetzal-deploy; drawn with plotly.js, included in this file:
{tiles_note(run.tiles)}. Scenario inputs are drawn faintly in grey.</p>"""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(run.model)} · '
            f"{esc(run.scenario)} · {esc(run.status)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>{body}</body></html>")


def write_report(run: RunView, path: Path) -> Path:
    """Write the page to ``path`` in one step (a temporary file renamed): never a half-written report."""
    text = page(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
