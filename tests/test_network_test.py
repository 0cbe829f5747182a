"""``python -m tools network-test`` end to end: a tiny network through real nodes into the centre.

Five stations about 15 km apart, one M4.2 earthquake inside the network from the
Green's function generator and a knock on every station; every station through its own
pty into its own ``python -m edge_runtime run`` publishing to a real Mosquitto started on
127.0.0.1; the centre declares the earthquake once, near its true place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, python_env


def _mosquitto() -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("the Mosquitto broker is missing: apt-get install mosquitto (make test installs it)")


def test_bad_options_are_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "tools", "network-test", "--stations", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=python_env(),
    )
    assert (
        result.returncode == 2
        and result.stderr.strip() == "error: --stations must be 4 to 60 (each station is a node process)"
    )


@pytest.mark.slow
def test_tiny_network_end_to_end(tiny_model, tmp_path):
    _mosquitto()
    out = tmp_path / "net"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools",
            "network-test",
            "--stations",
            "5",
            "--events",
            "1",
            "--seed",
            "0",
            "--transients",
            "1",
            "--magnitudes",
            "4.2",
            "4.2",
            "--model",
            str(tiny_model["sim"]),
            "--speed",
            "6",
            "--out",
            str(out),
            "--bank-cache",
            str(tmp_path / "banks"),
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    for key in (
        "events",
        "declared",
        "median_epicentre_error_km",
        "median_depth_error_km",
        "median_magnitude_error",
        "false_network_events",
        "single_station_triggers",
        "median_alert_latency_s",
    ):
        assert key in summary, key
    assert summary["events"] == 1 and summary["declared"] == 1, summary
    assert summary["false_network_events"] == 0 and summary["median_epicentre_error_km"] < 10, summary
    assert (out / "map.png").stat().st_size > 1000
    assert list((out / "quakeml").glob("*.xml"))
