"""The conventions every nfsbulk entry point shares (rpcsrv, loadgen, alloc.bench, alloc.poolbench).

A leaf: imports nothing of the project, so every package may use it.

- **Output paths are proven before any work** (:func:`probe_output`): the directory exists, the
  path is not a directory, and a file can really be created there (a temporary file is made and
  removed, which catches /proc, read-only mounts and full quotas that permission bits do not).
  A bad path is a one-line message and exit status 2 before the first second of a run.
- **SIGTERM is SIGINT** (:func:`sigterm_as_sigint`): timeout(1), systemd and CI stop a run the way
  Ctrl-C does, so the table and the JSON (marked interrupted) of what finished are still written.
  The handler forwards to whatever SIGINT handler is current, so code that counts SIGINTs itself
  sees SIGTERM too.
- **No traceback for the user** (:func:`run_main`): an entry point's errors end as one line
  ``prog: message`` and a documented exit status (:class:`CliError` carries its own; an OSError is 1;
  an interrupt is 130). Anything else is a bug: one line naming the exception, status 1, and the
  traceback only with NFSBULK_TRACEBACK=1.
- **Numbers in the user's units** (:func:`int_arg`, :func:`seconds_arg`): argparse types that refuse
  bad values at parse time with the flag's own units.
- ``--version`` on every parser (:func:`add_version`).

No threads; the signal handler is installed from the main thread.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile

__all__ = ["dumps", "write_json", "check_outputs", "CliError", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_INTERRUPTED", "VERSION", "add_version",
           "int_arg", "number_arg", "probe_output", "run_main", "seconds_arg", "sigterm_as_sigint"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: the project's version (pyproject.toml's); printed by every --version
VERSION = "0.1.0"


class CliError(Exception):
    """An error the user can act on: its message is printed as one line, `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def probe_output(flag: str, path: str | None, allow_stdout: bool = False) -> str | None:
    """None when `path` can be written later; else a one-line message naming the flag.

    None and, with allow_stdout, "-" need no check. The directory must exist, the path must not be
    a directory, an existing file must be writable, and a new file must really be creatable in the
    directory (tried and removed at once)."""
    if path is None or (allow_stdout and path == "-"):
        return None
    if path == "":
        return "%s: empty path" % flag
    if os.path.isdir(path):
        return "%s %s: is a directory" % (flag, path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        return "%s %s: directory %s does not exist" % (flag, path, d)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            return "%s %s: file is not writable" % (flag, path)
        if not os.path.isfile(path):
            return "%s %s: not a regular file" % (flag, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s.probe." % os.path.basename(path), dir=d)
    except OSError as e:
        return "%s %s: cannot create a file in %s: %s" % (flag, path, d, e.strerror or e)
    os.close(fd)
    os.unlink(tmp)
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
    """`doc` as strict JSON (NaN and infinities as null), indented, with a final newline."""
    return json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n"


def write_json(path: str, doc: dict) -> None:
    """Write `doc` to `path` whole (a temporary file in the same directory, then rename: a reader
    never sees half a document), or to stdout when path is "-"."""
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


def check_outputs(*checks) -> None:
    """Raise CliError (status 2) for the first bad one of (flag, path[, allow_stdout]) tuples."""
    for check in checks:
        err = probe_output(*check)
        if err:
            raise CliError(err, EXIT_USAGE)


def _forward_to_sigint(signum, frame):
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)       # default_int_handler raises KeyboardInterrupt
    elif handler == signal.SIG_IGN:
        return
    else:
        raise KeyboardInterrupt


def sigterm_as_sigint() -> None:
    """From now on SIGTERM does what SIGINT does at the moment it arrives (main thread only)."""
    signal.signal(signal.SIGTERM, _forward_to_sigint)


def run_main(prog: str, fn, *args) -> int:
    """Call fn(*args) -> exit status with SIGTERM as SIGINT and no traceback for the user."""
    sigterm_as_sigint()
    try:
        return fn(*args)
    except CliError as e:
        print("%s: %s" % (prog, e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:                  # stdout piped into head(1) and closed
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_FAIL
    except OSError as e:
        where = " %s" % e.filename if getattr(e, "filename", None) else ""
        print("%s:%s %s" % (prog, where, e.strerror or e), file=sys.stderr)
        return EXIT_FAIL
    except Exception as e:                   # a bug: say so in one line
        if os.environ.get("NFSBULK_TRACEBACK"):
            raise
        print("%s: internal error: %s: %s (NFSBULK_TRACEBACK=1 shows where)" % (prog, type(e).__name__, e),
              file=sys.stderr)
        return EXIT_FAIL


def _bounded(v, text: str, lo, hi, unit: str, fmt: str):
    """v if lo <= v <= hi (None: no bound), else ArgumentTypeError in the user's text and unit."""
    if lo is not None and v < lo:
        raise argparse.ArgumentTypeError(("%s: must be " + fmt + "%s or more") % (text, lo, unit))
    if hi is not None and v > hi:
        raise argparse.ArgumentTypeError(("%s: must be " + fmt + "%s or less") % (text, hi, unit))
    return v


def _finite(text: str, kind: str, finite_msg: str) -> float:
    """text as a finite float, else ArgumentTypeError ("'x' is not KIND", or finite_msg)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not %s" % (text, kind)) from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError("%r: %s" % (text, finite_msg))
    return v


def int_arg(lo: int | None = None, hi: int | None = None, what: str = ""):
    """An argparse type: an integer in [lo, hi] (None: unbounded); `what` names the unit in errors."""
    unit = " %s" % what if what else ""       # the flag's own unit, e.g. "MiB", "rounds"

    def parse(text: str) -> int:
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
        return _bounded(v, text, lo, hi, unit, "%d")
    parse.__name__ = "integer"
    return parse


def number_arg(lo: float | None = None, hi: float | None = None, what: str = ""):
    """An argparse type: a finite number in [lo, hi] (None: unbounded), `what` its unit."""
    unit = " %s" % what if what else ""

    def parse(text: str) -> float:
        return _bounded(_finite(text, "a number", "must be a finite number"), text, lo, hi, unit, "%g")
    parse.__name__ = "number"
    return parse


def seconds_arg(positive: bool = True, hi: float | None = None):
    """An argparse type: seconds as a float, > 0 (or >= 0 with positive=False), finite, at most hi."""

    def parse(text: str) -> float:
        v = _finite(text, "a number of seconds", "a finite number of seconds")
        if (v <= 0 if positive else v < 0):
            raise argparse.ArgumentTypeError("%g s: must be %s 0 s" % (v, "more than" if positive else "at least"))
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError("%g s: at most %g s" % (v, hi))
        return v
    parse.__name__ = "seconds"
    return parse


def add_version(parser: argparse.ArgumentParser, prog: str) -> None:
    """--version: prints "prog nfsbulk VERSION" and exits 0."""
    parser.add_argument("--version", action="version", version="%s (nfsbulk) %s" % (prog, VERSION),
                        help="print the version and exit")
