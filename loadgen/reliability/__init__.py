"""`loadgen soak` (many clients, a server restart in the middle) and `loadgen fuzz` (mutated RPC
records against a live rpcsrv). soak drives the load through run's runner and borrows bench's
harness errors (BenchError, Interrupted); fuzz speaks raw RPC through common's rpcwire."""
