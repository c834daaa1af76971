"""A short run of python -m rpcsrv.fuzz in the suite: mutated records against a live server;
no crash, no hang, no page leaked."""
import io

from loadgen.reliability import fuzz


def test_fuzz_live_server_short_run():
    out = io.StringIO()
    res = fuzz.run(seconds=8, seed=12345, threads=2, hang_timeout=10, out=out)
    assert res["records"] > 1000, out.getvalue()
    assert res["crashes"] == 0 and res["hangs"] == 0, out.getvalue()
    assert res["pages_leaked"] == 0, out.getvalue()
    assert res["replies"] > 0 and res["closed"] > 0        # both outcomes really happened
