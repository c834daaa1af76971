"""`loadgen capture-to-loadfile`: a dbench NFS loadfile from a packet capture of NFSv3 traffic.

capture_tshark (tshark as the dissector) -> capture (pairing, paths, folding, rendering) with
capture_paths (the handle -> names map) and capture_summary (the counts and their report);
capture_cli (help, flags, exit statuses). Imports nothing of loadgen outside this sub-package.
"""
