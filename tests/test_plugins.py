"""Packaging guard: both twistd plugins are discoverable from this install."""

import subprocess

from support import twistd_command
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

TAPNAMES = {"octolux", "lxp-simulator"}


def test_plugins_are_discovered_by_getPlugins():
    discovered = {plugin.tapname for plugin in getPlugins(IServiceMaker)}
    assert discovered >= TAPNAMES


def test_twistd_help_lists_both_plugins(tmp_path):
    # Run from an unrelated directory: twistd must find the plugins via the install,
    # not because the checkout happens to be the working directory.
    result = subprocess.run(
        twistd_command() + ["--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")}
    assert listed >= TAPNAMES, result.stdout
