"""Build the Cython extensions.

alloc._core is the allocator. Its debug checks (page poisoning, new-page
checks, full invariant walks) are switched per Allocator instance
(debug=True, or NFSBULK_ALLOC_DEBUG=1 in the environment) rather than by a
second build: rpcsrv's Cython I/O code cimports alloc._core's PageArray, and
a second module would be a different type.
"""
from setuptools import Extension, setup
from Cython.Build import cythonize

CFLAGS = ["-O2", "-g", "-Wno-unused-function", "-Wno-unreachable-code"]

extensions = [
    Extension("alloc._core", ["alloc/_core.pyx"], extra_compile_args=CFLAGS),
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
                                                       "fp_proof.h", "fp_listing.h")]),
]

setup(
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
