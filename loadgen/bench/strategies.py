"""The svc_alloc_arg strategies as the server declares them, and the kernel's page_pool figures.

`loadgen` may not import rpcsrv (it is an outside client), so the strategy table is read from the
server itself: ``python -m rpcsrv --list-strategies`` prints one JSON object per line (name,
summary, kernel, kernel_us, kernel_calls). The table is declared once, in the server; this module
only asks for it (once per process, cached). Pure data otherwise; no threads.

This is also the lower module that both `bench` and `udpbench` stand on for the kernel's figures,
so neither imports the other's constants.
"""

from __future__ import annotations

import json
import subprocess
import sys

__all__ = ["load", "names", "label", "KERNEL_XDP", "StrategyError"]

#: XDP-RX packets/s with page_pool's bulk refill (the seed's second table: mlx5 100G, veth redirect)
KERNEL_XDP = {"single": 3771046, "list": 3940242, "array": 4249224}
_LABELS = {"single": "Single page", "list": "Bulk list", "array": "Bulk array", "range": "Range",
           "nfree": "nfree", "single-py": "Single (Py)"}
_cache: dict = {}


class StrategyError(RuntimeError):
    """The server's strategy table could not be read."""


def load(python: str = sys.executable) -> list[dict]:
    """[{name, summary, kernel, kernel_us, kernel_calls}, ...] in the server's order."""
    if python not in _cache:
        try:
            r = subprocess.run([python, "-m", "rpcsrv", "--list-strategies"], capture_output=True, text=True,
                               timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise StrategyError("python -m rpcsrv --list-strategies: %s" % e) from None
        if r.returncode != 0:
            raise StrategyError("python -m rpcsrv --list-strategies exited %d: %s"
                                % (r.returncode, r.stderr.strip()[-500:]))
        try:
            _cache[python] = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        except ValueError as e:
            raise StrategyError("python -m rpcsrv --list-strategies: not JSON lines: %s" % e) from None
    return _cache[python]


def names(python: str = sys.executable) -> list[str]:
    return [s["name"] for s in load(python)]


def label(name: str) -> str:
    """A short human label for tables and plots (the name itself when none is known); a sweep's
    STRATEGY@SIZE keeps its size."""
    base, at, size = name.partition("@")
    return _LABELS.get(base, base) + (" @" + size if at else "")
