"""The node's configuration: TOML file, flags over it, one line per bad key, through the real CLI."""

import subprocess
import sys

import pytest
from conftest import REPO, python_env

from edge_runtime.__main__ import main
from edge_runtime.config import ConfigError, build_config, read_toml
from edge_runtime.sensors import get_sensor


def node(*args, timeout=60):
    """The real node process."""
    return subprocess.run([sys.executable, "-m", "edge_runtime", *args], cwd=REPO, env=python_env(),
                          capture_output=True, text=True, timeout=timeout)


def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid_and_complete():
    """deploy/node.toml parses, passes every check and names every section."""
    values = read_toml(REPO / "deploy" / "node.toml")
    config = build_config(values, {})
    assert config.sensor == "adxl355-2g"
    assert config.counts_per_mps2 == pytest.approx(get_sensor("adxl355-2g").counts_per_mps2)
    assert config.port.startswith("/dev/serial/by-id/")


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, '[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\nstep_s = 0.5\n'
                           'sensor = "lis3dh-8g"\n[detector]\noff_s = 4\n')
    config = build_config(read_toml(path), {"step_s": 1.0, "off_s": None})
    assert config.step_s == 1.0 and config.detector.off_s == 4.0
    assert config.counts_per_mps2 == pytest.approx(get_sensor("lis3dh-8g").counts_per_mps2)
    config = build_config(read_toml(path), {"counts_per_mps2": 1000.0})
    assert config.counts_per_mps2 == 1000.0


NODE = '[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\n'


@pytest.mark.parametrize("text,message", [
    (NODE + 'step = 1\n', "[node] unknown key 'step'"),
    ('[nod]\nport = "x"\n', "unknown section [nod]"),
    (NODE + 'step_s = "fast"\n', "[node] step_s = 'fast': must be float"),
    (NODE + 'step_s = 0\n', "[node] step_s = 0.0: must be > 0"),
    (NODE + 'sensor = "adxl999"\n', "sensor = 'adxl999': unknown sensor"),
    ('[detector]\ntrigger_prob = 1.5\n', "[detector] trigger_prob = 1.5: must be between 0 and 1"),
    (NODE + 'board_id = "0xZZ"\n', "board_id = '0xZZ': must be an integer"),
    ('[node\nport = 1\n', "not valid TOML"),
])
def test_bad_file_is_named_in_one_line(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    assert main(["run", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_bad_file_through_the_node_process(tmp_path):
    path = write(tmp_path, '[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\nstep = 1\n')
    result = node("run", "--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {path}: [node] unknown key 'step'; known: " + \
        result.stderr.strip().split("known: ")[1]


@pytest.mark.parametrize("flag,value,message", [
    ("--counts-per-mps2", "0", "--counts-per-mps2 = 0.0: must be > 0"),
    ("--step-s", "0", "--step-s = 0.0: must be > 0"),
    ("--step-s", "-1", "--step-s = -1.0: must be > 0"),
    ("--status-every-s", "0", "--status-every-s = 0.0: must be > 0"),
])
def test_zero_or_negative_flags_are_refused(tmp_path, capsys, flag, value, message):
    path = write(tmp_path, '[node]\nport = "/dev/ttyX"\nmodel = "m.onnx"\n')
    assert main(["run", "--config", str(path), flag, value]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_zero_scale_through_the_node_process():
    result = node("run", "--port", "/dev/ttyX", "--model", "m.onnx", "--counts-per-mps2", "0")
    assert result.returncode == 2 and result.stderr.strip() == "error: --counts-per-mps2 = 0.0: must be > 0"


def test_missing_file_and_missing_port(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such config file" in capsys.readouterr().err
    assert main(["run", "--model", "m.onnx"]) == 2
    assert "port: required" in capsys.readouterr().err


def test_config_error_type_is_value_error():
    with pytest.raises(ConfigError, match="retry_s = 10.0 is above retry_max_s"):
        build_config({"port": "p", "model": "m"}, {"retry_s": 10.0, "retry_max_s": 1.0})


def test_status_command_prints_the_status_file(tmp_path, capsys):
    status = tmp_path / "status.json"
    status.write_text('{"uptime_s": 1.0, "port_open": true}')
    config = write(tmp_path, f'[output]\nstatus = "{status}"\n')
    assert main(["status", "--config", str(config)]) == 0
    assert '"port_open": true' in capsys.readouterr().out
    assert main(["status", str(tmp_path / "none.json")]) == 2
    assert "no status file" in capsys.readouterr().err
