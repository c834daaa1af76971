"""rpcsrv.proto: sans-IO codecs (XDR, record marking, RPC messages, NFSv3 constants and codecs).

The floor of rpcsrv: bytes or memoryviews in, values out (or an error that
carries its reply). No I/O, no threads, no locks; imports nothing of rpcsrv
above it.
"""
