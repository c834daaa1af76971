"""loadgen: a dbench-like NFSv3 load generator on python-libnfs.

An outside client of the server under test: imports neither ``alloc`` nor
``rpcsrv``.  ``python -m loadgen run URL`` starts N client processes (one
libnfs context and TCP connection each, because python-libnfs holds the GIL
during calls), replays a dbench loadfile (NFS dialect or classic client.txt)
or the rw256k profile, and reports dbench-style lines, a per-op table, JSON
and Prometheus metrics.

Modules: loadfile (pure parser), ops (op -> libnfs calls, status mapping),
nfsctx (the only libnfs importer), client (one process), runner (spawn,
phases, gather), stats (mergeable histograms), report (text, JSON),
metrics (/metrics collector), workloads (default loadfile, rw256k),
__main__ (CLI with subcommands).
"""
