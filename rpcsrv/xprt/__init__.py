"""rpcsrv.xprt: the transports, the only code that touches sockets.

tcp (listener, connections, record marking into pages, sendmsg of replies),
udp (page_pool endpoints), the compiled page I/O (_pageio, _udpio) and the
compiled UDP receive loop (_udpfast, its C verdict in udp_xdp.h).
Stands on proto; hands received calls to the server, never imports it.
"""
