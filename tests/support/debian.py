"""Tools from Debian's packages (Chromium, promtool, Prometheus) for tests that need the real
program: installed with apt-get when missing (the test machines run as root); without it
the test is skipped with the reason, or fails when ``CI`` is set."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def ensure_tool(path: str, package: str) -> str:
    """``path``, installing Debian's ``package`` first when it is not there yet."""
    if not os.path.exists(path) and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=False,
                       capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    if not os.path.exists(path):
        reason = f"no {path} and Debian's {package} could not be installed with apt-get"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return path
