"""rpcsrv.nfsd: the RPC programs: NFSv3 (nfs3), MOUNT v3 (mount3), the AUTH_SYS permission
model (perm) and the system calls the handlers need (vfs). Stands on svc and export."""
