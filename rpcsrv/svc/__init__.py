"""rpcsrv.svc: the request machinery every transport shares.

rqst (SvcRqst: a worker's page array and svc_alloc_arg), dispatch (the
declared procedure tables), svc (svc_process: decode, check, reply cache,
dispatch, account) and metrics. Stands on proto; knows no socket.
"""
