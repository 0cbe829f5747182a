"""The centre's page: events, station health and an SVG map of stations and epicentres.

Standard-library HTTP server on its own thread, nothing from outside (no tiles, no
scripts): ``/`` is an HTML page that reloads itself every 5 s, ``/events.json`` and
``/stations.json`` the same data for programs. The map is the network's local plane
(equirectangular, north up) with a 10 km scale bar; circles are epicentres sized by
magnitude, triangles stations coloured by health (green online, grey offline or silent,
orange a doubtful clock).
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .network import public

SIZE = 480  # map side, px


def _bounds(points):
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 10.0) * 1.15
    return (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, span


def svg_map(network, now_s: float) -> str:
    """The SVG map of ``network``'s stations and its recent epicentres."""
    stations = network.stations.located()
    sxy = [network.stations.xy_km(s.latitude, s.longitude) for s in stations]
    exy = [network.stations.xy_km(e["latitude"], e["longitude"]) for e in network.events]
    cx, cy, span = _bounds(sxy + exy)
    px = lambda x, y: (SIZE / 2 + (x - cx) / span * SIZE, SIZE / 2 - (y - cy) / span * SIZE)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
        f'viewBox="0 0 {SIZE} {SIZE}" style="background:#f4f1ea;border:1px solid #999">'
    ]
    for s, (x, y) in zip(stations, sxy, strict=False):
        u, v = px(x, y)
        silent = not s.heard_from(now_s, network.config.health_timeout_s)
        colour = (
            "#888"
            if s.status == "offline" or silent
            else "#2a2"
            if s.time_fix in ("gps", "ntp", "node")
            else "#e80"
        )
        parts.append(
            f'<polygon points="{u:.1f},{v - 7:.1f} {u - 6:.1f},{v + 5:.1f} {u + 6:.1f},{v + 5:.1f}" '
            f'fill="{colour}" stroke="#333"><title>{html.escape(s.code)}</title></polygon>'
        )
    for e, (x, y) in zip(network.events, exy, strict=False):
        u, v = px(x, y)
        r = 3 + 3 * max(e.get("magnitude") or 1.0, 0.5)
        parts.append(
            f'<circle cx="{u:.1f}" cy="{v:.1f}" r="{r:.1f}" fill="#d22" fill-opacity="0.45" stroke="#900">'
            f"<title>{html.escape(e['event_id'])} M{e.get('magnitude')}</title></circle>"
        )
    bar = 10.0 / span * SIZE
    parts.append(
        f'<line x1="10" y1="{SIZE - 12}" x2="{10 + bar:.1f}" y2="{SIZE - 12}" stroke="#000" '
        f'stroke-width="2"/><text x="10" y="{SIZE - 16}" font-size="11">10 km</text></svg>'
    )
    return "".join(parts)


def page(network, now_s: float) -> str:
    """The whole HTML page."""
    rows = "".join(
        f"<tr><td>{html.escape(e['event_id'])}</td><td>{e['origin_time']}</td><td>{e['latitude']:.4f}</td>"
        f"<td>{e['longitude']:.4f}</td><td>{e['depth_km']:.1f} ± {e['depth_uncertainty_km']:.1f}</td>"
        f"<td>{e['magnitude'] if e['magnitude'] is not None else '-'}</td><td>{e['n_stations']}</td>"
        f"<td>{e['version']}</td></tr>"
        for e in reversed(network.events[-50:])
    )
    srows = "".join(
        f"<tr><td>{html.escape(s.code)}</td><td>{html.escape(s.status)}</td><td>{html.escape(str(s.time_fix))}</td>"
        f"<td>{'-' if s.last_health_s is None else f'{now_s - s.last_health_s:.0f} s'}</td>"
        f"<td>{s.queued}</td>"
        f"<td>{s.picks}</td></tr>"
        for s in sorted(network.stations.by_code.values(), key=lambda s: s.code)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
        "<title>SeismicTorch network centre</title><style>body{font-family:sans-serif;margin:1em}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>Network centre</h1>{svg_map(network, now_s)}"
        "<h2>Events</h2><table><tr><th>id</th><th>origin (UTC)</th><th>lat</th><th>lon</th><th>depth km</th>"
        f"<th>M</th><th>stations</th><th>version</th></tr>{rows}</table>"
        "<h2>Stations</h2><table><tr><th>station</th><th>status</th><th>clock</th><th>health age</th>"
        f"<th>queued</th><th>picks</th></tr>{srows}</table></body></html>"
    )


class WebServer:
    """``http.server`` on ``host:port``; ``snapshot()`` is called under the centre's lock."""

    def __init__(self, listen: str, network, lock: threading.Lock, clock):
        host, _, port = listen.rpartition(":")
        state = dict(network=network, lock=lock, clock=clock)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                with state["lock"]:
                    net, now = state["network"], state["clock"]()
                    if self.path == "/events.json":
                        body, kind = json.dumps([public(e) for e in net.events]), "application/json"
                    elif self.path == "/stations.json":
                        body = json.dumps([s.to_dict() for s in net.stations.by_code.values()])
                        kind = "application/json"
                    elif self.path in ("/", "/index.html"):
                        body, kind = page(net, now), "text/html; charset=utf-8"
                    else:
                        self.send_error(404)
                        return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="center-web", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
