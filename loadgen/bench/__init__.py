"""`loadgen bench` and `loadgen compare`: the strategies compared under load, with CIs.

bench (rounds, the CLI) over harness (one run: a fresh rpcsrv, the load, its metrics), curve
(--curve: latency against offered load), udpbench and xdpbench (--udp-pps, over flood); ci (the
statistics), benchreport (summaries and verdicts), benchplot (--plot), strategies (the server's
strategy table), compare (result files side by side). Stands on common, run and flood.
"""
