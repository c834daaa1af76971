"""Where results go: output paths checked before any work starts, JSON to a file or stdout, text.

Invariant: a result is never lost to a bad path. Every output path (`--json`, `--plot`,
`--export`, ...) is checked up front by :func:`check_path` (its directory exists and is writable,
the path is not a directory), so a mistake fails in well under a second with a one-line message
and exit status 2, before the first server starts. Files are written whole (a temporary file in
the same directory, then rename), so a reader never sees half a document.

`--json -` and `--output-format json` put the JSON document on stdout; the human table then goes
to stderr, so stdout stays parseable. No threads.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile

__all__ = ["check_path", "Outputs", "write_json", "dumps"]


def check_path(flag: str, path: str | None, allow_stdout: bool = False) -> str | None:
    """None when `path` can be written later; else a one-line message naming the flag."""
    if path is None or (allow_stdout and path == "-"):
        return None
    if path == "":
        return "%s: empty path" % flag
    if os.path.isdir(path):
        return "%s %s: is a directory" % (flag, path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        return "%s %s: directory %s does not exist" % (flag, path, d)
    if not os.access(d, os.W_OK | os.X_OK):
        return "%s %s: directory %s is not writable" % (flag, path, d)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return "%s %s: file is not writable" % (flag, path)
    return None


def _clean(x):
    """JSON has no NaN or infinity: they become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def dumps(doc: dict) -> str:
    return json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n"


def write_json(path: str, doc: dict) -> None:
    """Write `doc` to `path` whole (temporary file + rename), or to stdout when path is "-"."""
    text = dumps(doc)
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Outputs:
    """The JSON destination (a path, "-" for stdout, or None) and the stream for human text."""

    def __init__(self, json_path: str | None, output_format: str = "text"):
        self.json_to_stdout = json_path == "-" or output_format == "json"
        self.json_file = json_path if json_path not in (None, "-") else None
        self.text = sys.stderr if self.json_to_stdout else sys.stdout

    def say(self, text: str) -> None:
        print(text, file=self.text, flush=True)

    def write(self, doc: dict) -> list[str]:
        """Write the document everywhere asked; returns where it went (for the closing note)."""
        where = []
        if self.json_file:
            write_json(self.json_file, doc)
            where.append(self.json_file)
        if self.json_to_stdout:
            write_json("-", doc)
            where.append("stdout")
        return where
