"""The `meta` object every result file of loadgen carries, so two files can be compared later.

meta = {timestamp (UTC ISO 8601), hostname, kernel, cpu_model, cpus, python, nfsbulk_version,
git_commit (null outside a git checkout), git_dirty, argv}. The server and load settings sit
beside it in each document (`settings`), and `schema` names the document kind and its version.

Pure reads of the host (/proc/cpuinfo, uname, `git rev-parse` in this checkout); no threads.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys

__all__ = ["build_meta", "SCHEMA_RUN", "SCHEMA_BENCH", "SCHEMA_COMPARE"]

SCHEMA_RUN = "nfsbulk-loadgen/2"
SCHEMA_BENCH = "nfsbulk-bench/2"
SCHEMA_COMPARE = "nfsbulk-compare/1"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") or line.startswith("Model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args) -> str | None:
    try:
        r = subprocess.run(["git", "-C", _REPO, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _version() -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("nfsbulk")
        except PackageNotFoundError:
            return None
    except ImportError:
        return None


def build_meta(argv=None) -> dict:
    """The `meta` object of a result document (argv defaults to this process's command line)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "nfsbulk_version": _version(),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "argv": list(sys.argv if argv is None else argv),
    }
