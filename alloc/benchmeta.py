"""The `meta` object of the allocator's benchmark JSON (alloc.bench, alloc.poolbench).

The same fields as loadgen's result files (loadgen/common/meta.py), so a file of either can be told
apart later: timestamp (UTC ISO 8601), hostname, kernel, cpu_model, cpus, python,
nfsbulk_version, git_commit (null outside a git checkout), argv. alloc imports nothing of the
project, so this small reader of the host lives here too. Pure reads; no threads.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import subprocess
import sys

__all__ = ["host_meta"]


def _first_model_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        return names[0] if names else None
    except OSError:
        return None


def host_meta(argv=None) -> dict:
    """meta for a result document; argv defaults to this process's command line."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        r = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    try:
        from importlib.metadata import version
        ver = version("nfsbulk")
    except Exception:           # not installed: no version to report
        ver = None
    return {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hostname": socket.gethostname(), "kernel": platform.release(), "cpu_model": _first_model_name(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "nfsbulk_version": ver,
            "git_commit": commit, "argv": list(sys.argv if argv is None else argv)}
