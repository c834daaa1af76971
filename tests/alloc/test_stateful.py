"""Property tests: a hypothesis state machine run on both implementations, and a differential
test replaying random operation sequences against the Cython allocator and the reference.

Invariants after every step: no page is handed out twice (the model's set of held pages is
disjoint and matches the allocator's 'alloc' states); pages are conserved
(free + per-thread + allocated == managed); the allocator's own structural check passes;
its counters equal the operations done. At teardown: after freeing everything and draining,
every zone is back to whole max-order blocks.
"""
import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from alloc import _core, reference

ARENA = 1024 + 512 + 128            # DMA32 and Normal with odd sizes: partial top blocks
NSLOTS = 64


def initial_blocks(a):
    return {z: v["free_blocks_by_order"] for z, v in a.stats()["zones"].items()}


class AllocatorMachine(RuleBasedStateMachine):
    impl = None

    def __init__(self):
        super().__init__()
        self.a = self.impl.Allocator(arena_pages=ARENA, debug=True, batch=4, high=16)
        self.initial = initial_blocks(self.a)
        self.arr = self.a.page_array(NSLOTS)
        self.lst = self.a.page_list()
        self.loose = []                          # pages held as plain ints
        self.calls = {"single": 0, "bulk_list": 0, "bulk_array": 0}
        self.pages = {"single": 0, "bulk_list": 0, "bulk_array": 0}
        self.freed = 0

    def held(self):
        return [p for p in self.arr.pages() if p is not None] + list(self.lst) + self.loose

    @rule()
    def alloc_page(self):
        p = self.a.alloc_page()
        self.calls["single"] += 1
        if p is not None:
            self.pages["single"] += 1
            self.loose.append(p)

    @rule(n=st.integers(-2, 80))
    def bulk_list(self, n):
        before = len(self.lst)
        got = self.a.alloc_pages_bulk_list(n, self.lst)
        assert len(self.lst) == before + got
        assert 0 <= got <= max(n, 0)
        if n > 0:
            self.calls["bulk_list"] += 1
        self.pages["bulk_list"] += got

    @rule(start=st.integers(0, NSLOTS), n=st.integers(-1, NSLOTS))
    def bulk_array(self, start, n):
        n = min(n, NSLOTS - start)
        before = self.arr.pages()
        empty_before = self.arr.count_empty(start, start + max(n, 0))
        r = self.a.alloc_pages_bulk_array(n, self.arr, start)
        after = self.arr.pages()
        if n <= 0:
            assert r == 0 and after == before
            return
        added = empty_before - self.arr.count_empty(start, start + n)
        assert all(after[start + i] is not None for i in range(r))          # populated prefix
        assert all(b is None or a == b for a, b in zip(after, before))      # nothing replaced
        assert after[:start] == before[:start] and after[start + n:] == before[start + n:]
        if empty_before:
            self.calls["bulk_array"] += 1
        self.pages["bulk_array"] += added

    @rule(data=st.data())
    def free_some_slots(self, data):
        start = data.draw(st.integers(0, NSLOTS))
        stop = data.draw(st.integers(start, NSLOTS))
        held = (stop - start) - self.arr.count_empty(start, stop)
        assert self.a.free_pages_bulk(self.arr, start, stop) == held
        self.freed += held
        assert self.arr.count_empty(start, stop) == stop - start

    @rule()
    def free_list(self):
        self.freed += self.a.free_pages_bulk(self.lst)
        assert len(self.lst) == 0

    @precondition(lambda self: self.loose)
    @rule(data=st.data())
    def free_loose(self, data):
        i = data.draw(st.integers(0, len(self.loose) - 1))
        self.a.free_page(self.loose.pop(i))
        self.freed += 1

    @precondition(lambda self: self.loose)
    @rule()
    def double_free_is_refused(self):
        p = self.loose[-1]
        self.a.free_page(p)
        self.loose.pop()
        self.freed += 1
        try:
            self.a.free_page(p)
        except ValueError:
            pass
        else:
            raise AssertionError("double free accepted")

    @rule()
    def move_list_into_array(self):
        self.arr.fill_from_list(self.lst)

    @rule()
    def drain_local(self):
        self.a.drain_local()

    @rule()
    def drain_all(self):
        self.a.drain_all()

    @invariant()
    def no_page_twice_and_conserved(self):
        held = self.held()
        assert len(held) == len(set(held)), "a page is held twice"
        s = self.a.stats()
        assert s["allocated"] == len(held)
        assert s["free_pages"] + s["pcp_pages"] + s["allocated"] == ARENA
        assert all(self.a.page_state(p) == "alloc" for p in held)

    @invariant()
    def counters_match(self):
        s = self.a.stats()
        assert s["calls"] == self.calls
        assert s["pages"] == self.pages
        assert s["freed"] == self.freed
        assert sum(z["pages_alloc"][api] for z in s["zones"].values() for api in self.pages) \
            == sum(self.pages.values())

    @invariant()
    def structure(self):
        self.a.check()

    def teardown(self):
        self.a.free_pages_bulk(self.arr)
        self.a.free_pages_bulk(self.lst)
        self.a.free_pages_bulk(self.loose)
        self.a.drain_all()
        self.a.check()
        s = self.a.stats()
        assert s["allocated"] == 0 and s["pcp_pages"] == 0
        assert initial_blocks(self.a) == self.initial, "zones not back to whole max-order blocks"


class CythonMachine(AllocatorMachine):
    impl = _core


class ReferenceMachine(AllocatorMachine):
    impl = reference


_settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
TestCythonAllocator = CythonMachine.TestCase
TestCythonAllocator.settings = _settings
TestReferenceAllocator = ReferenceMachine.TestCase
TestReferenceAllocator.settings = _settings


# --------------------------------------------------------------------------- differential
op = st.one_of(
    st.tuples(st.just("page")),
    st.tuples(st.just("list"), st.integers(-1, 300)),
    st.tuples(st.just("array"), st.integers(0, 259), st.integers(-1, 259)),
    st.tuples(st.just("free_slots"), st.integers(0, 259), st.integers(0, 259)),
    st.tuples(st.just("free_list")),
    st.tuples(st.just("free_loose"), st.integers(0, 1000)),
    st.tuples(st.just("fill")),
    st.tuples(st.just("drain_local")),
    st.tuples(st.just("drain_all")),
    st.tuples(st.just("inject"), st.integers(0, 2), st.integers(0, 2)),
)


def replay(impl, ops, **kw):
    a = impl.Allocator(**kw)
    arr, lst, loose = a.page_array(259), a.page_list(), []
    out = []
    for o in ops:
        kind = o[0]
        if kind == "page":
            p = a.alloc_page()
            out.append(p)
            if p is not None:
                loose.append(p)
        elif kind == "list":
            out.append(a.alloc_pages_bulk_list(o[1], lst))
        elif kind == "array":
            start, n = o[1], min(o[2], 259 - o[1])
            out.append((a.alloc_pages_bulk_array(n, arr, start), tuple(arr.pages())))
        elif kind == "free_slots":
            lo, hi = sorted(o[1:])
            out.append(a.free_pages_bulk(arr, lo, hi))
        elif kind == "free_list":
            out.append(a.free_pages_bulk(lst))
        elif kind == "free_loose":
            if loose:
                a.free_page(loose.pop(o[1] % len(loose)))
        elif kind == "fill":
            out.append(arr.fill_from_list(lst))
        elif kind == "drain_local":
            a.drain_local()
        elif kind == "drain_all":
            a.drain_all()
        elif kind == "inject":
            a.inject_refill_failures(o[1], o[2])
        out.append(tuple(lst))
    a.inject_refill_failures(0)
    s = a.stats()
    del s["debug"]
    return out, s


CONFIGS = [
    dict(arena_pages=600),                         # watermarks, fallbacks, exhaustion
    dict(arena_pages=4096, batch=31, high=93),     # buddy splits and coalescing
    dict(arena_pages=1024, batch=3, high=9),       # frequent per-thread list drains
]


@given(ops=st.lists(op, max_size=60), config=st.sampled_from(CONFIGS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_differential_cython_equals_reference(ops, config):
    kw = dict(config)
    got_c = replay(_core, ops, **kw)
    got_r = replay(reference, ops, **kw)
    assert got_c[0] == got_r[0]
    assert got_c[1] == got_r[1]
