"""Green's function bank presets: cache keys, the fast wavenumber step, the CLI."""

import subprocess
import sys

import numpy as np
import pytest

try:
    import pygrt  # noqa: F401
except ImportError:  # the real Green's function code is the point of these tests
    pytest.fail("pygrt-kit is missing: .venv/bin/pip install -e '.[host]' (or pip install pygrt-kit)",
                pytrace=False)

from conftest import REPO, python_env

from host_training.synthetic import greens


def test_presets_keep_the_cache_names_of_existing_banks():
    # Banks cached before dwm_length existed (45 CPU-minutes for the full one) keep their names.
    assert greens.preset_config("full") == greens.BankConfig()
    assert greens.BankConfig().key() == "f5b9575901dd0c1b"
    assert "dwm_length" not in greens.BankConfig().to_dict()
    small = greens.preset_config("small")
    assert small.key() != greens.BankConfig().key()
    # The quick start's bank keeps the physics the 2 s windows need: 1-200 km, 40 Hz, 35 s.
    assert min(small.distances_km) <= 1.0 and max(small.distances_km) >= 200.0
    assert small.dt_s <= 0.025 and small.nt * small.dt_s >= 30.0
    assert greens.preset_config("small", seed=3).seed == 3
    with pytest.raises(ValueError, match="preset 'huge'"):
        greens.preset_config("huge")
    with pytest.raises(ValueError, match="dwm_length"):
        greens.BankConfig(dwm_length=1.0)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A cache folder holding the tiny preset's bank (a few s of PyGRT)."""
    folder = tmp_path_factory.mktemp("greens")
    greens.build_bank(greens.preset_config("tiny"), cache_dir=folder)
    return folder


def test_short_wavenumber_step_matches_pygrts_own(tiny_cache, tmp_path):
    fast = greens.build_bank(greens.preset_config("tiny"), cache_dir=tiny_cache)
    slow = greens.build_bank(greens.preset_config("tiny", dwm_length=0.0), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("greens-*.npz"))) == 1
    for k in range(len(fast.distances_km)):
        a, b = fast.gf[0, 0, k], slow.gf[0, 0, k]
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.02
    np.testing.assert_allclose(fast.t_p, slow.t_p)
    np.testing.assert_allclose(fast.t_s, slow.t_s)
    # Cached: loaded back with its config, dwm_length included.
    again = greens.GreensBank.load(greens.bank_path(fast.config, tiny_cache))
    assert again.config == fast.config and np.array_equal(again.gf, fast.gf)


def test_cli_builds_a_preset_and_refuses_a_bad_one(tmp_path):  # builds its own: the cold path
    run = lambda *a: subprocess.run([sys.executable, "-m", "host_training.synthetic.greens", *a],  # noqa: E731
                                    cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=120)
    bad = run("--preset", "huge", "--cache-dir", str(tmp_path))
    assert bad.returncode == 2 and "invalid choice: 'huge'" in bad.stderr
    zero = run("--preset", "tiny", "--n-models", "0", "--cache-dir", str(tmp_path))
    assert zero.returncode == 2 and "n_models=0" in zero.stderr and "Traceback" not in zero.stderr
    ok = run("--preset", "tiny", "--cache-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert greens.bank_path(greens.preset_config("tiny"), tmp_path).is_file()


def test_synth_physics_takes_a_bank_preset(tiny_cache, tmp_path):
    import json

    out = tmp_path / "phys"
    r = subprocess.run([sys.executable, "-m", "host_training", "synth", "--generator", "physics",
                        "--bank-preset", "tiny", "--bank-cache", str(tiny_cache), "--n-windows", "60",
                        "--out", str(out)],
                       cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((out / "card.json").read_text())
    assert card["bank"] == greens.preset_config("tiny").to_dict()
    assert len(list(tiny_cache.glob("greens-*.npz"))) == 1  # read from the cache, not built again
