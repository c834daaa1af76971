"""Locustfile for Locust's own CLI: ``locust -f loadgen/locustfile.py --host nfs://SERVER/EXPORT?...``.

Each Locust user is one loadgen client (:class:`loadgen.distributed.locustuser.NfsUser`):
its own libnfs context, ``/clients/client<N>``, the loadgen default workload
or ``--nfs-loadfile FILE`` / ``--nfs-profile rw256k``, one Locust request per NFS
operation.  python-libnfs holds the GIL during a call, so run one user per
process: ``--processes N -u N`` (or workers with one user each).  For the
dbench-style table, JSON and Prometheus metrics use ``loadgen run --master``
and ``loadgen worker`` instead (same user, driven by loadgen).
"""
from loadgen.distributed.locustuser import NfsUser  # noqa: F401  (Locust collects the User classes it finds here)
