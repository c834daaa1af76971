"""Build the Cython extensions.

alloc._core is the allocator. Its debug checks (page poisoning, new-page
checks, full invariant walks) are switched per Allocator instance
(debug=True, or NFSBULK_ALLOC_DEBUG=1 in the environment) rather than by a
second build: rpcsrv's Cython I/O code cimports alloc._core's PageArray, and
a second module would be a different type.
"""
import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

ROOT = os.path.dirname(os.path.abspath(__file__))
FAST = "rpcsrv.fast._fast"
#: run rpcsrv/fast/gen_tables.py by path: importing rpcsrv.fast would import _fast, not built yet
_GEN = ("import importlib.util as u, sys; s = u.spec_from_file_location('gen_tables', 'rpcsrv/fast/gen_tables.py'); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); sys.exit(m.main([]))")


def regenerate_tables(quiet=False):
    """Rewrite rpcsrv/fast/fp_tables.h from the Python declarations if it is stale (the generator
    writes only a changed file, so an unchanged one does not rebuild _fast). The declarations'
    modules import alloc._core and rpcsrv.xprt._pageio: in a tree where those are not built yet
    this fails, and the committed fp_tables.h is used (tests/fast/test_tables.py holds it to the
    generator's output). Returns True if the generator ran."""
    r = subprocess.run([sys.executable, "-c", _GEN], cwd=ROOT, capture_output=True, text=True)
    if r.stdout:
        print(r.stdout, end="")
    if r.returncode != 0 and not quiet:
        print("warning: rpcsrv/fast/gen_tables.py did not run (%s); building with the committed fp_tables.h"
              % (r.stderr.strip().splitlines() or ["?"])[-1], file=sys.stderr)
    return r.returncode == 0


class BuildExt(build_ext):
    """Builds rpcsrv.fast._fast last, after regenerating fp_tables.h with the others built (and,
    for --inplace, copied into the tree, where the generator imports them)."""

    def run(self):
        self._to_source = self.inplace       # setuptools builds with inplace off, copies at the end
        super().run()

    def build_extensions(self):
        every = self.extensions
        self.extensions = [e for e in every if e.name != FAST]
        super().build_extensions()
        if getattr(self, "_to_source", False):
            self.copy_extensions_to_source()
        fast = [e for e in every if e.name == FAST]
        if fast:
            regenerate_tables()
            self.extensions = fast
            super().build_extensions()
        self.extensions = every


# before cythonize, if the tree can run the generator already (the built ones are there)
regenerate_tables(quiet=True)

CFLAGS = ["-O2", "-g", "-Wno-unused-function", "-Wno-unreachable-code"]

extensions = [
    Extension("alloc._core", ["alloc/_core.pyx"], extra_compile_args=CFLAGS,
              depends=["alloc/_core_zones.pxi", "alloc/_core_pages.pxi"]),
    Extension("rpcsrv.xprt._pageio", ["rpcsrv/xprt/_pageio.pyx"], extra_compile_args=CFLAGS),
    Extension("alloc._pool", ["alloc/_pool.pyx"], extra_compile_args=CFLAGS),
    Extension("rpcsrv.xprt._udpio", ["rpcsrv/xprt/_udpio.pyx"], extra_compile_args=CFLAGS),
    # the compiled UDP receive loop (recvmmsg, the XDP-like verdict of udp_xdp.h, sendmmsg)
    Extension("rpcsrv.xprt._udpfast", ["rpcsrv/xprt/_udpfast.pyx"], include_dirs=["rpcsrv/xprt"],
              extra_compile_args=CFLAGS + ["-D_GNU_SOURCE"], depends=["rpcsrv/xprt/udp_xdp.h"]),
    # loadgen's compiled flood (sendmmsg loop); loadgen imports neither alloc nor rpcsrv
    Extension("loadgen.flood._flood", ["loadgen/flood/_flood.pyx"], extra_compile_args=CFLAGS + ["-D_GNU_SOURCE"]),
    # the compiled request cycle; its C parts are the fp_*.h headers beside it
    Extension("rpcsrv.fast._fast", ["rpcsrv/fast/_fast.pyx"], include_dirs=["rpcsrv/fast"],
              extra_compile_args=CFLAGS + ["-D_GNU_SOURCE"],
              depends=["rpcsrv/fast/%s" % h for h in ("blake2.h", "fp_core.h", "fp_fh.h", "fp_drc.h",
                                                       "fp_ops.h", "fp_dir.h", "fp_dirops.h",
                                                       "fp_readdir.h", "fp_process.h", "fp_stats.h",
                                                       "fp_proof.h", "fp_listing.h", "fp_tables.h")]),
]

setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
