"""loadgen: a dbench-like NFSv3 load generator on python-libnfs.

An outside client of the server under test: imports neither ``alloc`` nor
``rpcsrv``.  ``python -m loadgen run URL`` starts N client processes (one
libnfs context and TCP connection each, because python-libnfs holds the GIL
during calls), replays a dbench loadfile (NFS dialect or classic client.txt)
or the rw256k profile, and reports dbench-style lines, a per-op table, JSON
and Prometheus metrics.

Sub-packages, each importing only itself and those before it (tests/test_layers.py):
common (meta, outputs, serverproc, rpcwire) <- run (loadfile, ops, client, runner, stats,
report, metrics, ...: ``loadgen run``) <- capture (``capture-to-loadfile``) <- flood (UDP
packet generators) <- bench (``bench``, ``compare``) <- reliability (``soak``, ``fuzz``) <-
distributed (``run --master``, ``worker``, Locust).  On top: __main__ (the CLI with its
subcommands) and locustfile (for Locust's own CLI).
"""
