"""Load from several machines on Locust's distributed runner: distributed (`loadgen run
--master`), distworker (`loadgen worker`), locustuser (the Locust User that is one loadgen client,
on run's executor loop). loadgen/locustfile.py, for Locust's own CLI, imports locustuser."""
