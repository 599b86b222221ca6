"""The benchmark's outside tools, from Debian: ``wrk`` or ``hey`` (load), and
``nginx`` (from nginx-light: the fixed-answer upstream).

Found on PATH (or /usr/sbin); when missing and allowed, installed with
``apt-get`` (the harness says so).  Never a runtime dependency of auxot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

PACKAGES = {"wrk": "wrk", "hey": "hey", "nginx": "nginx-light"}


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: str
    installed_now: bool = False

    def describe(self) -> str:
        how = ", installed now with apt-get" if self.installed_now else ""
        return f"{self.name} {self.version} ({self.path}{how})"


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def _version(name: str, path: str) -> str:
    try:
        if name == "wrk":  # "wrk 4.1.0 [epoll] Copyright ...", and exit status 1
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stdout
            return out.split()[1] if out.startswith("wrk ") else "?"
        if name == "nginx":  # "nginx version: nginx/1.22.1" on stderr
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stderr
            return out.strip().rpartition("/")[2] or "?"
        query = subprocess.run(["dpkg-query", "-W", "-f=${Version}", PACKAGES[name]], capture_output=True, text=True, timeout=10)
        return query.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def _apt_install(package: str) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    return subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0


def find(name: str, *, install: bool) -> Tool | None:
    """The tool, or None when it is missing (and could not or may not be installed)."""
    path = _which(name)
    installed_now = False
    if path is None and install and _apt_install(PACKAGES[name]):
        path, installed_now = _which(name), True
    return Tool(name, path, _version(name, path), installed_now) if path else None
