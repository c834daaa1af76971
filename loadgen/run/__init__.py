"""`loadgen run`: the dbench-like load on python-libnfs.

loadfile (pure parser) and workloads (the shipped loadfiles, rw256k); nfsctx (the only libnfs
importer), ops (one operation -> libnfs calls) with statuses (errno -> NFS3/NT status); replay
(the executor loop every client runs, the open-loop schedule), client (one process), runner
(spawn, phases, gather); stats, metrics (/metrics), report (text, JSON). Stands on common only.
"""
