"""Suite-wide set-up: rpcsrv's per-export state (handle keys) goes to a temporary state home.

Every export the tests make is temporary; with the default state home (~/.cache/nfsbulk) each
would leave an entry behind. NFSBULK_STATE_HOME is inherited by the servers the tests start as
subprocesses, and the directory is removed when the session ends.
"""
import os
import shutil
import tempfile

import pytest


@pytest.fixture(scope="session", autouse=True)
def _state_home():
    old = os.environ.get("NFSBULK_STATE_HOME")
    home = tempfile.mkdtemp(prefix="nfsbulk-test-state-")
    os.environ["NFSBULK_STATE_HOME"] = home
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("NFSBULK_STATE_HOME", None)
        else:
            os.environ["NFSBULK_STATE_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)
