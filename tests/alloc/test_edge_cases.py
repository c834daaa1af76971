"""The edge cases of shared/design/kernel-reference.md ("Edge cases worth testing") that apply
in userspace, one test each, on both implementations; plus the allocator's own contract.

Not applicable here, and why: 7 (remote node) and 8 (cpusets): one node, no cpusets;
13 (prepare_alloc_pages fault injection) and 14 (PAGE_OWNER, memcg, pcp trylock): no
such layers; 15 (svc_alloc_arg) and 16 (page_pool) are tested with rpcsrv and PagePool.
"""
import pytest


def fill(a, arr, slots):
    """Put a freshly allocated page into each listed slot."""
    for i in slots:
        p = a.alloc_page()
        assert p is not None
        arr[i] = p


def counters(a):
    s = a.stats()
    return s["calls"], s["pages"], s["fallbacks"], s["failures"]


def release_all(a, *things):
    for t in things:
        a.free_pages_bulk(t)
    a.drain_all()


# 1 -------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, -1, -259])
def test_1_nonpositive_count_returns_zero_without_stats(make, n):
    a = make()
    arr, lst = a.page_array(8), a.page_list()
    before = a.stats()
    assert a.alloc_pages_bulk_array(n, arr) == 0
    assert a.alloc_pages_bulk_list(n, lst) == 0
    after = a.stats()
    assert arr.count_empty() == 8 and len(lst) == 0
    assert before["calls"] == after["calls"] and before["pages"] == after["pages"]
    assert before["free_pages"] == after["free_pages"]


# 2 -------------------------------------------------------------------------
def test_2_full_array_returns_n_untouched_no_stats(make):
    a = make()
    arr = a.page_array(16)
    fill(a, arr, range(16))
    snapshot = arr.pages()
    before = counters(a)
    assert a.alloc_pages_bulk_array(16, arr) == 16        # 5.13-final returned 0 here
    assert arr.pages() == snapshot
    assert counters(a) == before
    release_all(a, arr)


# 3 -------------------------------------------------------------------------
def test_3_only_last_slot_empty_takes_single_page_path(make):
    a = make()
    arr = a.page_array(8)
    fill(a, arr, range(7))
    before = a.stats()
    assert a.alloc_pages_bulk_array(8, arr) == 8
    after = a.stats()
    assert arr.count_empty() == 0
    assert after["fallbacks"]["last_page"] == before["fallbacks"]["last_page"] + 1
    assert after["pages"]["bulk_array"] == before["pages"]["bulk_array"] + 1
    assert after["calls"]["bulk_array"] == before["calls"]["bulk_array"] + 1
    release_all(a, arr)


def test_3b_single_page_request_in_list_mode_takes_single_page_path(make):
    a = make()
    lst = a.page_list()
    assert a.alloc_pages_bulk_list(1, lst) == 1
    assert a.stats()["fallbacks"]["last_page"] == 1
    release_all(a, lst)


# 4 -------------------------------------------------------------------------
def test_4_holes_after_prefix_are_filled_populated_slots_skipped(make):
    a = make()
    arr = a.page_array(4)
    fill(a, arr, [0, 1, 3])                                # [P, P, NULL, P]
    kept = [arr[0], arr[1], arr[3]]
    r = a.alloc_pages_bulk_array(4, arr)
    assert r == 4
    assert [arr[0], arr[1], arr[3]] == kept                # populated slots untouched
    assert arr[2] is not None and arr[2] not in kept
    assert a.stats()["fallbacks"]["last_page"] == 0        # remaining 2 -> bulk path
    release_all(a, arr)


def test_4b_return_value_is_populated_prefix_not_count(make):
    """[P, NULL, P, P, NULL, ...] with the pcp running dry after one page: r covers only the prefix."""
    a = make(batch=4, high=24)
    arr = a.page_array(8)
    fill(a, arr, [0, 2, 3])
    a.drain_local()                                        # pcp empty: next bulk refills
    a.inject_refill_failures(1, after=1)                   # first refill works, second finds nothing
    r = a.alloc_pages_bulk_array(8, arr)
    # the refill gave 4 pages: slots 1, 4, 5, 6 filled; slot 7 stays empty
    assert r == 7
    assert all(arr[i] is not None for i in range(7)) and arr[7] is None
    assert a.stats()["fallbacks"]["pcp_empty"] == 0        # pages were allocated: no fallback
    release_all(a, arr)


# 5 -------------------------------------------------------------------------
def test_5_list_mode_adds_at_head_and_returns_pages_added_this_call(make):
    a = make()
    lst = a.page_list()
    assert a.alloc_pages_bulk_list(5, lst) == 5
    first = list(lst)
    assert a.alloc_pages_bulk_list(3, lst) == 3            # not 8
    now = list(lst)
    assert len(now) == 8 and now[3:] == first              # new pages in front of the old
    assert len(set(now)) == 8
    release_all(a, lst)


# 6 -------------------------------------------------------------------------
def test_6_no_zone_passes_low_plus_n_gives_one_page(make):
    a = make()                                             # 2048 pages: Normal 1536, DMA32 512
    s = a.stats()
    normal = s["zones"]["Normal"]
    n = normal["free"] - normal["watermarks"]["low"] + 1   # LOW + n > free in every zone
    lst = a.page_list()
    assert a.alloc_pages_bulk_list(n, lst) == 1
    assert a.stats()["fallbacks"]["watermark"] == 1
    # the largest n that still passes in Normal: LOW + n < free
    normal = a.stats()["zones"]["Normal"]
    n2 = normal["free"] - normal["watermarks"]["low"] - 1
    lst2 = a.page_list()
    assert a.alloc_pages_bulk_list(n2, lst2) == n2
    assert a.stats()["fallbacks"]["watermark"] == 1
    release_all(a, lst, lst2)


def test_6b_fallback_to_lower_zone_needs_lowmem_reserve(make):
    a = make()
    s = a.stats()
    dma = s["zones"]["DMA32"]
    # exhaust Normal down to its LOW watermark through single pages
    held = []
    while True:
        st = a.stats()["zones"]["Normal"]
        if st["free"] <= st["watermarks"]["low"] + st["batch"]:
            break
        held.append(a.alloc_page())
    a.drain_all()
    # a bulk call for n pages must now pick DMA32, whose check includes lowmem_reserve[Normal]
    n = dma["free"] - dma["watermarks"]["low"] - dma["lowmem_reserve"][1] - 1
    lst = a.page_list()
    got = a.alloc_pages_bulk_list(n, lst)
    assert got == n
    zones = a.stats()["zones"]
    assert zones["DMA32"]["pages_alloc"]["bulk_list"] == n
    lst2 = a.page_list()
    # n + 2: LOW + n + reserve no longer below free in DMA32 -> single page
    before = a.stats()["fallbacks"]["watermark"]
    a.alloc_pages_bulk_list(zones["DMA32"]["free"] - dma["watermarks"]["low"] - dma["lowmem_reserve"][1] + 1, lst2)
    assert a.stats()["fallbacks"]["watermark"] == before + 1
    release_all(a, lst, lst2, held)


# 9 -------------------------------------------------------------------------
def test_9_empty_pcp_and_buddy_on_first_take_falls_back_even_with_prefix(make):
    """5.19+: the fallback is keyed on pages allocated by this call, not on the populated prefix."""
    a = make()
    arr = a.page_array(8)
    fill(a, arr, [0, 1])
    a.drain_local()
    a.inject_refill_failures(1)                            # the bulk path's refill finds nothing
    r = a.alloc_pages_bulk_array(8, arr)
    assert r == 3                                          # prefix 2 + the single-page fallback
    s = a.stats()
    assert s["fallbacks"]["pcp_empty"] == 1
    assert s["failures"]["bulk_array"] == 0
    release_all(a, arr)


def test_9b_fallback_that_also_fails_is_a_failure(make):
    a = make()
    arr = a.page_array(8)
    a.drain_local()
    a.inject_refill_failures(10)                           # everything fails, drain_all included
    assert a.alloc_pages_bulk_array(8, arr) == 0
    s = a.stats()
    assert s["fallbacks"]["pcp_empty"] == 1
    assert s["failures"]["bulk_array"] == 1
    a.inject_refill_failures(0)


# 10 ------------------------------------------------------------------------
def test_10_pcp_runs_dry_mid_batch_gives_partial_result_caller_loops(make):
    a = make(batch=8, high=48)
    lst = a.page_list()
    a.drain_local()
    a.inject_refill_failures(1, after=1)
    assert a.alloc_pages_bulk_list(20, lst) == 8           # one refill of batch, then dry
    assert a.stats()["fallbacks"]["pcp_empty"] == 0
    assert a.alloc_pages_bulk_list(12, lst) == 12          # caller loops; refills work again
    release_all(a, lst)


# 11 ------------------------------------------------------------------------
def test_11_refill_moves_exactly_batch_pages_under_one_lock_hold(make):
    a = make(batch=7, high=42)
    a.drain_all()
    z0 = a.stats()["zones"]["Normal"]
    lst = a.page_list()
    assert a.alloc_pages_bulk_list(3, lst) == 3
    z1 = a.stats()["zones"]["Normal"]
    assert z1["pcp_refills"] == z0["pcp_refills"] + 1
    assert z0["free"] - z1["free"] == 7                    # NR_FREE_PAGES drops by the batch
    assert z1["pcp"] == 4
    assert a.alloc_pages_bulk_list(10, lst) == 10          # 4 left + two more refills
    z2 = a.stats()["zones"]["Normal"]
    assert z2["pcp_refills"] == z0["pcp_refills"] + 2
    assert z1["free"] - z2["free"] == 7 and z2["pcp"] == 1
    release_all(a, lst)


def test_11b_free_drains_batch_when_count_reaches_high(make):
    a = make(batch=5, high=12)
    lst = a.page_list()
    assert a.alloc_pages_bulk_list(30, lst) == 30
    a.drain_all()
    d0 = a.stats()["zones"]["Normal"]["pcp_drains"]
    pages = [lst.pop() for _ in range(12)]
    for p in pages[:11]:
        a.free_page(p)
    z = a.stats()["zones"]["Normal"]
    assert z["pcp"] == 11 and z["pcp_drains"] == d0
    a.free_page(pages[11])                                 # count reaches high: drain batch
    z = a.stats()["zones"]["Normal"]
    assert z["pcp"] == 12 - 5 and z["pcp_drains"] == d0 + 1
    release_all(a, lst)


# 12 ------------------------------------------------------------------------
def test_12_stats_count_pages_allocated_by_the_call_not_populated(make):
    a = make()
    arr = a.page_array(32)
    fill(a, arr, range(0, 32, 2))                          # 16 populated, 16 holes
    b = a.stats()
    assert a.alloc_pages_bulk_array(32, arr) == 32
    s = a.stats()
    assert s["pages"]["bulk_array"] - b["pages"]["bulk_array"] == 16
    assert s["calls"]["bulk_array"] - b["calls"]["bulk_array"] == 1
    release_all(a, arr)


# the API's own contract ------------------------------------------------------
def test_range_refills_exactly_the_given_slots(make):
    a = make()
    arr = a.page_array(259)
    assert a.alloc_pages_bulk_array(259, arr) == 259
    a.free_pages_bulk(arr, 100, 164)
    outside = arr.pages()[:100] + arr.pages()[164:]
    assert a.alloc_pages_bulk_array(64, arr, 100) == 64
    assert arr.count_empty() == 0
    assert arr.pages()[:100] + arr.pages()[164:] == outside
    with pytest.raises(IndexError):
        a.alloc_pages_bulk_array(64, arr, 200)
    release_all(a, arr)


def test_double_free_and_bad_pages_are_refused(make):
    a = make()
    p = a.alloc_page()
    a.free_page(p)
    with pytest.raises(ValueError):
        a.free_page(p)
    with pytest.raises(ValueError):
        a.free_page(a.nr_pages)
    with pytest.raises(ValueError):
        a.free_pages_bulk([a.alloc_page()] * 2)


def test_exhaustion_returns_what_it_could_and_counts_why(make):
    a = make(arena_pages=256)
    held = []
    while True:
        p = a.alloc_page()
        if p is None:
            break
        held.append(p)
    s = a.stats()
    total_min = sum(z["watermarks"]["min"] for z in s["zones"].values())
    # GFP_KERNEL never dips below MIN: every page above it handed out, nothing on any list
    assert s["failures"]["single"] == 1 and s["drain_all"] >= 1 and s["slowpath"] >= 1
    assert s["pcp_pages"] == 0
    assert len(held) >= 256 - total_min - len(s["zones"])
    arr = a.page_array(8)
    assert a.alloc_pages_bulk_array(8, arr) == 0
    assert a.stats()["failures"]["bulk_array"] == 1
    release_all(a, held)


def test_wait_for_free_wakes_on_free(make):
    import threading
    a = make()
    p = a.alloc_page()
    seq = a.free_seq()
    assert a.wait_for_free(seq, 0.01) is False             # nothing freed: times out
    got = []
    t = threading.Thread(target=lambda: got.append(a.wait_for_free(seq, 30)))
    t.start()
    a.free_page(p)
    t.join(30)
    assert got == [True]
    assert a.wait_for_free(seq, 0) is True                 # seq already moved on
