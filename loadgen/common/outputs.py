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

import sys

from clikit import dumps, probe_output, write_json

__all__ = ["check_path", "Outputs", "write_json", "dumps"]


def check_path(flag: str, path: str | None, allow_stdout: bool = False) -> str | None:
    """None when `path` can be written later; else a one-line message naming the flag
    (clikit.probe_output: a file is really created there and removed)."""
    return probe_output(flag, path, allow_stdout)


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
