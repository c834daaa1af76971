"""What every part of loadgen stands on: result metadata (meta), output paths checked before any
work (outputs), the one launcher of rpcsrv subprocesses (serverproc) and loadgen's own small
ONC RPC codec (rpcwire). Imports nothing else of loadgen (the bottom of tests/test_layers.py's
LOADGEN_ORDER)."""
