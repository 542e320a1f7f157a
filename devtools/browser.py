"""A headless Chromium for the WebUI's browser test: Debian's, never a download from
anywhere else (Playwright drives it with ``executable_path``).

Found installed (chromium-headless-shell, else chromium), else installed with
``apt-get install`` when running as root (as CI does): unpacking the package alone with
``dpkg -x`` does not suffice, it needs some twenty libraries of its own. Otherwise an error
names the package to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CANDIDATES = (
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
)
PACKAGE = "chromium-headless-shell"


def _installed() -> str | None:
    return next((path for path in CANDIDATES if Path(path).is_file()), None)


def chromium_executable() -> str:
    """The path of a headless Chromium from Debian's packages, installed if need be."""
    found = _installed()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"the browser test needs Debian's Chromium: apt-get install {PACKAGE} (or chromium)"
        )
    install = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    found = _installed()
    if found is None:
        raise RuntimeError(f"apt-get installed {PACKAGE}, but none of {CANDIDATES} exists")
    return found
