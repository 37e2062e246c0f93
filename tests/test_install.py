"""`pip install .` from a clean checkout gives working twistd plugins (issue: running it for real).

Slow-ish (a fresh virtualenv and a real install), but it is the only test of
what a user who does not use our scripts gets.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tracked_files():
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in listing.decode().split("\0") if name]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with octolux installed from a copy of the tracked files only."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to know which files a checkout holds")
    work = tmp_path_factory.mktemp("install")
    checkout = work / "checkout"
    for name in _tracked_files():
        source = ROOT / name
        if source.is_file():  # tracked but deleted in the working tree: skip
            target = checkout / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    environment = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(checkout)],
        check=True, env=environment, cwd=work, timeout=600,
    )
    return venv, work


def _run(venv, work, *arguments):
    return subprocess.run(
        [str(venv / "bin" / "twistd"), *arguments],
        capture_output=True, text=True, cwd=work, timeout=120,
    )


def test_twistd_lists_both_plugins_after_a_regular_install(installed):
    venv, work = installed
    result = _run(venv, work, "--help")
    assert result.returncode == 0, result.stderr
    assert "octolux" in result.stdout
    assert "lxp-simulator" in result.stdout


def test_both_plugins_load_their_options(installed):
    venv, work = installed
    simulator = _run(venv, work, "lxp-simulator", "--help")
    assert simulator.returncode == 0, simulator.stderr
    assert "--interval" in simulator.stdout
    bridge = _run(venv, work, "octolux", "--help")
    assert bridge.returncode == 0, bridge.stderr
    assert "--config" in bridge.stdout


def test_the_installed_package_carries_no_plugin_cache(installed):
    venv, _ = installed
    site = next((venv / "lib").glob("python*/site-packages"))
    ours = site / "twisted" / "plugins" / "octolux_plugins.py"
    assert ours.exists()
    # Twisted writes the cache on first use; the wheel itself must not ship one
    # (it would overwrite Twisted's own). The record lists what pip installed.
    record = next(site.glob("octolux-*.dist-info")) / "RECORD"
    assert "dropin.cache" not in record.read_text()


def test_the_installed_package_carries_the_page(installed):
    venv, _ = installed
    site = next((venv / "lib").glob("python*/site-packages"))
    static = site / "octolux" / "web" / "static"
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in static.iterdir()}
    source = ROOT / "octolux" / "web" / "static" / "app.js"
    assert (static / "app.js").read_bytes() == source.read_bytes()
