"""System binaries the deployment tests drive (Prometheus, promtool, systemd-analyze): a missing
one skips locally and fails under CI=true, where .ci/run installs them."""

from __future__ import annotations

import os
import shutil

import pytest


def binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin")
    if found:
        return found
    message = f"{name} is missing (apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
