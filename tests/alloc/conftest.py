"""Fixtures for allocator tests: both implementations, debug on, leak check at teardown."""
import pytest

from alloc import _core, reference

IMPLS = {"cython": _core, "reference": reference}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    """The allocator module under test: alloc._core and alloc.reference run the same tests."""
    return IMPLS[request.param]


@pytest.fixture
def make(impl):
    """make(**kw) -> a debug Allocator of the implementation under test; checked at teardown."""
    made = []

    def _make(arena_pages=2048, **kw):
        kw.setdefault("debug", True)
        a = impl.Allocator(arena_pages=arena_pages, **kw)
        made.append(a)
        return a

    yield _make
    for a in made:
        a.check()
        assert a.stats()["corrupt_pages"] == 0
