"""RPC-over-UDP packet generators for `loadgen bench --udp-pps`: udpflood (Python, a window of
outstanding calls per process) and xdpflood over _flood.pyx (a compiled sendmmsg loop). Stands on
common's rpcwire; the benches that drive them are bench.udpbench and bench.xdpbench."""
