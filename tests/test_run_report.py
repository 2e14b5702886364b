"""The HTML report of a run (``report.html`` in the run's folder), opened in headless Chromium
with no network: the tests read the rendered DOM (steps, layers, the failing step's error),
check the page asked for nothing but its own file, and keep a screenshot in ``test-artifacts/``.

Runs are real ``invoke run --local`` runs of baked repos (real notebooks executed).
"""

import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from test_run_local import lambda_task, write_notebook

from fixtures.browser import render
from quetzal_deploy.report import html as report_html
from quetzal_deploy.report.html import MAX_REPORT_MB, ReportUnavailable, write_report
from quetzal_deploy.report.layers import VERTEX_BUDGET
from quetzal_deploy.report.model import Limits, RunView

UTM18N = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}}  # the sample's Montreal
# One Map iteration's output: a layer in UTM metres over the sample scenario, and its OD matrix.
FAN_STEP = f"""
index = argv["index"]
layer = {{"type": "FeatureCollection", "crs": {json.dumps(UTM18N)}, "features": [
    {{"type": "Feature", "properties": {{}}, "geometry": {{"type": "LineString", "coordinates":
        [[611000 + index * 400, 5037000], [612000 + index * 400, 5039500]]}}}}]}}
(outputs / f"fan_{{index}}.geojson").write_text(json.dumps(layer))
matrix = {{"z1": {{"z1": 0, "z2": 7}}, "z2": {{"z1": 5, "z2": 0}}}}
(outputs / f"fan_{{index}}.json").write_text(json.dumps(matrix))
print("fan", index, "done")
"""
FAILING_STEP = """
print("reading the demand")
raise ValueError("the demand table has no column 'zone_id'")
"""


def invoke(repo: Path, tmp_path: Path, *args: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"), AWS_EC2_METADATA_DISABLED="true",
                       AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"), **env)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=repo, capture_output=True, text=True,
                          env=environment, timeout=300)


def printed_report(done: subprocess.CompletedProcess, repo: Path) -> Path:
    """The path the run printed, which must be its run folder's report.html."""
    lines = [line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith("Report:")]
    assert len(lines) == 1, done.stdout + done.stderr
    path = Path(lines[0])
    assert path.parent.parent == repo / ".quetzal" / "runs" and path.name == "report.html"
    assert path.is_file() and path.stat().st_size < MAX_REPORT_MB * 2**20
    return path


def legend(dom: str) -> set[str]:
    """The layer names plotly drew in the map's legend."""
    import re

    return set(re.findall(r'class="legendtext"[^>]*data-unformatted="([^"]*)"', dom))


def test_sample_run_report_shows_its_steps_and_layers_and_asks_nothing_of_the_network(baked_repo, tmp_path):
    done = invoke(baked_repo, tmp_path, "run", "--local", "base")
    assert done.returncode == 0, done.stdout + done.stderr
    page = printed_report(done, baked_repo)

    shown = render(page, "report-sample-run", tmp_path)

    assert shown.network_requests == [], shown.network_requests
    assert 'id="status">SUCCEEDED' in shown.dom
    for step in ("preparation", "assignment"):
        assert f'data-step="{step}" data-status="ok"' in shown.dom
        assert f'data-log="logs/{step}.txt"' in shown.dom
    layers = {f"{step}_{kind}.geojson" for step in ("preparation", "assignment")
              for kind in ("pt", "road", "od")}
    assert layers | {"input: pt/links.geojson", "input: road/road_links.geojson"} <= legend(shown.dom)
    assert shown.dom.count('class="main-svg"') >= 4  # the timeline and the map were drawn
    assert "Lambda 128 MB, /tmp 512 MB" in shown.dom  # the sizing suggestion


def test_failed_run_report_marks_the_map_branches_the_retries_and_the_error(baked_repo, tmp_path):
    write_notebook(baked_repo, "fan", FAN_STEP)
    write_notebook(baked_repo, "model", FAILING_STEP)
    common = {"scenario_path_S3.$": "$.scenario_path_S3", "metadata.$": "$.metadata"}
    definition = {"StartAt": "Fan", "States": {
        "Fan": {"Type": "Map", "ItemsPath": "$.launcher_arg.params.fan.zones",
                "ItemSelector": {"index.$": "$$.Map.Item.Index", "launcher_arg.$": "$.launcher_arg",
                                 **common},
                "ItemProcessor": {"StartAt": "fan", "States": {"fan": lambda_task(
                    {"notebook_path": "notebooks/fan.ipynb", "launcher_arg": {
                        "training_folder": "/tmp", "index.$": "$.index"}, **common}, End=True)}},
                "ResultPath": None, "Next": "model"},
        "model": lambda_task({"notebook_path": "notebooks/model.ipynb", "launcher_arg.$": "$.launcher_arg",
                              **common}, Retry=[{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}], End=True),
    }}
    (baked_repo / "step-functions.json").write_text(json.dumps(definition))
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"fan": {"zones": [1, 2]}}))

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--params", str(params))

    assert done.returncode == 1, done.stdout + done.stderr
    shown = render(printed_report(done, baked_repo), "report-failed-run", tmp_path)
    assert shown.network_requests == [], shown.network_requests
    assert 'id="status">FAILED' in shown.dom
    for branch in ("Fan[0] &gt; fan", "Fan[1] &gt; fan"):
        assert f'data-step="{branch}" data-status="ok"' in shown.dom
    assert shown.dom.count('data-step="model" data-status="failed"') == 2  # the attempt and its retry
    assert "(attempt 2)" in shown.dom
    error = "ValueError: the demand table has no column 'zone_id'"
    assert error.replace("'", "&#x27;") in shown.dom.split('id="run-error"', 1)[1].split("</div>", 1)[0] \
        or error in shown.dom.split('id="run-error"', 1)[1].split("</div>", 1)[0]
    for attempt in ("logs/model.txt", "logs/model-2.txt"):  # one log per run of the notebook
        failed_log = shown.dom.split(f'data-log="{attempt}"', 1)[1].split("</details>", 1)[0]
        assert " open" in failed_log.split(">", 1)[0]  # unfolded, the others stay folded
        assert 'class="err"' in failed_log and "no column" in failed_log
    assert " open" not in shown.dom.split('data-log="logs/fan.txt"', 1)[1].split(">", 1)[0]
    assert {"fan_0.geojson", "fan_1.geojson"} <= legend(shown.dom)
    assert "reprojected from urn:ogc:def:crs:EPSG::32618 to WGS 84" in shown.dom
    assert shown.dom.count('data-matrix="fan_') == 2 and "heatmaplayer" in shown.dom


def test_the_network_check_sees_a_page_that_fetches(tmp_path):
    """The control of the tests above: a page asking for an image and a script is caught."""
    page = tmp_path / "fetching.html"
    page.write_text('<html><body><img src="http://example.com/tile.png">'
                    '<script src="https://cdn.example.org/lib.js"></script></body></html>')

    shown = render(page, "network-check-control", tmp_path, height=200)

    assert shown.network_requests == ["http://example.com/tile.png", "https://cdn.example.org/lib.js"]


def big_layer(path: Path, lines: int) -> None:
    """A GeoJSON in UTM metres of ``lines`` 10-vertex lines, written as a notebook would."""
    def coordinates(i: int) -> str:
        x, y = 600000 + (i % 500) * 90, 5000000 + (i // 500) * 110
        return ",".join(f"[{x + k * 7.25:.2f},{y + k * 9.5:.2f}]" for k in range(10))

    features = ",".join(f'{{"type":"Feature","properties":{{"id":{i}}},"geometry":{{"type":"LineString",'
                        f'"coordinates":[{coordinates(i)}]}}}}' for i in range(lines))
    path.write_text(f'{{"type":"FeatureCollection","crs":{json.dumps(UTM18N)},"features":[{features}]}}')


def test_a_50_mb_layer_is_simplified_and_the_page_stays_under_its_bound(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    big_layer(outputs / "links.geojson", 160_000)
    assert (outputs / "links.geojson").stat().st_size > 50 * 10**6
    run = RunView("local run", "model", "base", "big", "SUCCEEDED", Limits(300, 1024, 512), outputs=outputs)

    page = write_report(run, tmp_path / "report.html")

    assert page.stat().st_size < MAX_REPORT_MB * 2**20
    text = page.read_text()
    assert "simplified for the picture" in text and "of 160,000 features" in text
    shown = render(page, "report-big-layer", tmp_path, height=1400)
    assert shown.network_requests == []
    assert "links.geojson" in legend(shown.dom)
    points = text.count(",")  # every drawn vertex costs two numbers
    assert points < 4 * VERTEX_BUDGET + 10**6


def test_open_shows_the_report_in_the_users_browser(baked_repo, tmp_path):
    """``--open`` hands the report's file:// URL to the browser ``BROWSER`` names (a recorder here)."""
    opened = tmp_path / "opened.txt"
    recorder = tmp_path / "browser.py"
    recorder.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--open",
                  BROWSER=f"{sys.executable} {recorder} %s")

    assert done.returncode == 0, done.stdout + done.stderr
    assert opened.read_text() == printed_report(done, baked_repo).as_uri()


def test_open_needs_a_local_run(baked_repo, tmp_path):
    done = invoke(baked_repo, tmp_path, "run", "base", "--open")
    assert done.returncode == 2 and "ERROR: --open opens a local run's report" in done.stderr + done.stdout


@pytest.mark.parametrize("missing", ["plotly", "pyproj"])
def test_without_its_drawing_libraries_the_report_says_what_to_install(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ReportUnavailable, match="pip install plotly pyproj"):
        report_html.plotly()


def png(side: int = 256) -> bytes:
    """A plain light-blue PNG tile."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = b"".join(b"\0" + b"\xc8\xdc\xf0" * side for _ in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


class TileServer(http.server.ThreadingHTTPServer):
    """The test's own tile server on loopback: one PNG for any path, each path served recorded."""

    def __init__(self):
        self.served: list[str] = []
        super().__init__(("127.0.0.1", 0), TileHandler)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class TileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.served.append(self.path)
        body = png()
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# Resolves once the browser has fetched every tile image the map placed (resource timing entries).
TILES_FETCHED = """new Promise(done => { const look = () => {
  const images = (document.getElementById('map').layout.images || []).map(i => i.source);
  const got = performance.getEntriesByType('resource').filter(e => images.includes(e.name)).length;
  if (images.length && got >= images.length) return done(got);
  requestAnimationFrame(look); }; look(); })"""


def test_tiles_draw_the_layers_over_the_users_tile_server_and_nothing_else(baked_repo, tmp_path):
    """``--tiles`` with a tile server of the test's own on loopback: the page asks it, and only it."""
    server = TileServer()
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://{server.host}/tiles/{{z}}/{{x}}/{{y}}.png"
        done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--tiles", url)
        assert done.returncode == 0, done.stdout + done.stderr
        shown = render(printed_report(done, baked_repo), "report-tiles", tmp_path, height=1800,
                       direct=(server.host,), settle=TILES_FETCHED)
    finally:
        server.shutdown()
        serving.join()
        server.server_close()

    assert shown.network_requests, "no tile was requested"
    assert all(u.startswith(f"http://{server.host}/tiles/") and u.endswith(".png")
               for u in shown.network_requests), shown.network_requests
    assert {u.split(server.host, 1)[1] for u in shown.network_requests} == set(server.served)
    assert shown.dom.count("<image") == len(set(shown.network_requests))
    assert f'id="tile-host">{server.host}</b>' in shown.dom
    assert "preparation_road.geojson" in legend(shown.dom)


@pytest.mark.parametrize("url", ["ftp://tiles.example.org/{z}/{x}/{y}.png",
                                 "https://tiles.example.org/{z}/{x}.png",
                                 "tiles.example.org/{z}/{x}/{y}.png"])
def test_a_tile_url_that_is_no_xyz_template_is_refused_before_the_run(baked_repo, tmp_path, url):
    runs = baked_repo / ".quetzal" / "runs"
    before = sorted(runs.iterdir()) if runs.is_dir() else []

    done = invoke(baked_repo, tmp_path, "run", "--local", "base", "--tiles", url)

    assert done.returncode == 1
    assert f"ERROR: --tiles={url!r} is not a tile URL: give an http(s) XYZ template" in done.stderr
    assert (sorted(runs.iterdir()) if runs.is_dir() else []) == before


def test_report_tile_url_in_env_is_checked_when_settings_load(baked_repo, tmp_path):
    env = baked_repo / ".env"
    env.write_text(env.read_text() + "\nREPORT_TILE_URL=http://a.example/x.png\n")

    done = invoke(baked_repo, tmp_path, "run", "--local", "base")

    assert done.returncode == 1
    assert "ERROR: REPORT_TILE_URL in .env='http://a.example/x.png' is not a tile URL" in done.stderr
    runs = baked_repo / ".quetzal" / "runs"
    assert not runs.is_dir() or not any(runs.iterdir())
