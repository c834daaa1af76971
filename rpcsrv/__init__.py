"""rpcsrv: an NFSv3 + MOUNT v3 server whose workers refill their request page arrays with a
selectable svc_alloc_arg strategy. Layers, bottom up: proto; svc, xprt, export; nfsd; server;
__main__ (see README's Layout)."""
