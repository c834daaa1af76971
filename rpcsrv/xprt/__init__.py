"""rpcsrv.xprt: the transports, the only code that touches sockets.

tcp (listener, connections, record marking into pages, sendmsg of replies),
udp (page_pool endpoints) and the compiled page I/O (_pageio, _udpio).
Stands on proto; hands received calls to the server, never imports it.
"""
