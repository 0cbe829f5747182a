"""Command line: ``python -m network_center run --config center.toml`` (``seismictorch-center``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

EXAMPLE = """\
[broker]
url = "mqtt://127.0.0.1:1883"      # the broker the nodes publish to
topic = "seismictorch/+"           # the nodes' topic prefixes (+ matches NET.STA)

[velocity]                         # 1-D model: [top_km, vp_kmps, vs_kmps] per layer
layers = [[0.0, 5.5, 3.2], [4.0, 6.1, 3.5], [25.0, 6.8, 3.9], [35.0, 8.0, 4.5]]

[association]
min_stations = 4                   # stations that must agree before an event is declared
min_p_picks = 4

[alert]
magnitude = 4.0
command = ["/usr/local/bin/notify-quake"]   # gets the event JSON on stdin

[outputs]
quakeml_dir = "center-data/quakeml"
web_listen = "127.0.0.1:8090"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m network_center",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="SeismicTorch network centre: subscribes to the nodes' MQTT picks and health, "
        "associates picks from several stations into earthquakes (PyOcto), locates them, "
        "gives a magnitude, and publishes each event on MQTT, as QuakeML and as an alert.",
        epilog="Quick start:\n  1. python -m network_center example-config > center.toml   (edit the broker "
        "and velocity model)\n  2. python -m network_center run --config center.toml\n  3. open "
        "http://127.0.0.1:8090 (with [outputs] web_listen) and watch\n"
        "     mosquitto_sub -t 'seismictorch/center/#' -v\nGuide: docs/network-center.md",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every message and run")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the centre until Ctrl-C or SIGTERM",
        description="Connect to [broker] url, subscribe to the nodes' picks, health and status, "
        "and run until Ctrl-C or SIGTERM. Every key: docs/network-center.md.",
    )
    run.add_argument("--config", required=True, metavar="FILE", help="center.toml")
    sub.add_parser("example-config", help="print a commented center.toml to start from")
    check = sub.add_parser("check-config", help="read center.toml and say whether it can be used")
    check.add_argument("--config", required=True, metavar="FILE")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "example-config":
        sys.stdout.write(EXAMPLE)
        return 0
    from .config import ConfigError, read_config

    try:
        config = read_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok")
        return 0
    return _run(config)


def _run(config) -> int:
    try:
        import paho.mqtt  # noqa: F401
        import pyocto  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is missing: pip install 'seismictorch[center]'", file=sys.stderr)
        return 2
    from .service import Center

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    center = Center(config)
    try:
        center.start()
    except OSError as exc:
        print(f"error: cannot start the centre ({exc})", file=sys.stderr)
        return 1
    logging.getLogger("network_center").info(
        "centre running: broker %s, topic %s", config.broker, config.topic
    )
    try:
        center.run(stop)
    except KeyboardInterrupt:
        pass
    finally:
        center.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
