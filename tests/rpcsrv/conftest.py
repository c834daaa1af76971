"""Fixtures shared by the export tests: the handle mode (kernel handles need root)."""
import pytest

from nfsbulk_testlib import kernel_handles_work


@pytest.fixture(params=["kernel", "inode"])
def mode(request, tmp_path):
    """Each test in both handle modes; kernel mode skipped where kernel handles do not work."""
    if request.param == "kernel" and not kernel_handles_work(tmp_path):
        pytest.skip("open_by_handle_at not available (not root?)")
    return request.param
