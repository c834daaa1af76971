"""Threads (per-thread lists, drain-all reclaim, no deadlock) and page views used for real I/O."""
import os
import socket
import threading

import pytest

from alloc import _core


def test_threaded_stress_conserves_pages(impl):
    a = impl.Allocator(arena_pages=4096, debug=True, batch=8, high=48)
    errors = []
    seen_lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(seed):
        try:
            import random
            rnd = random.Random(seed)
            arr = a.page_array(259)
            lst = a.page_list()
            barrier.wait(timeout=30)
            for _ in range(400):
                k = rnd.randrange(4)
                if k == 0:
                    a.alloc_pages_bulk_array(rnd.randrange(1, 259), arr)
                elif k == 1:
                    a.alloc_pages_bulk_list(rnd.randrange(1, 64), lst)
                elif k == 2:
                    lo = rnd.randrange(259)
                    a.free_pages_bulk(arr, lo, rnd.randrange(lo, 260))
                else:
                    a.free_pages_bulk(lst)
                # pages are never shared: write a thread tag into every held page and re-read it
                if rnd.random() < 0.05:
                    for i in range(259):
                        if arr[i] is not None:
                            m = memoryview(arr.view(i))
                            m[:8] = seed.to_bytes(8, "little")
                            m.release()
                    for i in range(259):
                        if arr[i] is not None:
                            m = memoryview(arr.view(i))
                            assert bytes(m[:8]) == seed.to_bytes(8, "little"), "page shared between threads"
                            m.release()
            barrier.wait(timeout=60)        # everyone still holds their pages
            with seen_lock:
                held = [p for p in arr.pages() if p is not None] + list(lst)
                worker.held.append(held)
            barrier.wait(timeout=60)
            a.free_pages_bulk(arr)
            a.free_pages_bulk(lst)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    worker.held = []
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker did not finish"
    assert not errors, errors
    all_held = [p for h in worker.held for p in h]
    assert len(all_held) == len(set(all_held)), "a page was handed to two threads"
    s = a.stats()
    assert s["threads"] == 4
    assert s["allocated"] == 0
    assert s["free_pages"] + s["pcp_pages"] == 4096
    a.drain_all()
    a.check()


def test_starving_thread_reclaims_pages_idle_on_other_threads_lists(impl):
    """Pages parked on another thread's list are reclaimed by the slow path (drain all)."""
    a = impl.Allocator(arena_pages=512, debug=True, batch=31, high=200)
    parked = threading.Event()
    go_on = threading.Event()

    def parker():
        lst = a.page_list()
        while a.alloc_pages_bulk_list(64, lst):
            pass
        a.free_pages_bulk(lst)          # all of it sits on this thread's list (high is large)
        parked.set()
        go_on.wait(30)

    t = threading.Thread(target=parker)
    t.start()
    assert parked.wait(30)
    assert a.stats()["pcp_pages"] > 100
    held = []
    while (p := a.alloc_page()) is not None:
        held.append(p)
    go_on.set()
    t.join(30)
    s = a.stats()
    assert s["drain_all"] >= 1
    total_min = sum(z["watermarks"]["min"] for z in s["zones"].values())
    assert len(held) >= 512 - total_min - 2
    a.free_pages_bulk(held)
    a.drain_all()
    a.check()


def test_views_work_with_socket_and_file_io(tmp_path):
    a = _core.Allocator(arena_pages=256, debug=True)
    arr = a.page_array(8)
    assert a.alloc_pages_bulk_array(8, arr) == 8
    views = arr.views(0, 4)
    payload = os.urandom(4096 * 3 + 100)
    s1, s2 = socket.socketpair()
    try:
        s1.sendall(payload)
        got = 0
        while got < len(payload):
            n = s2.recvmsg_into(views[got // 4096:])[0] if got % 4096 == 0 else 0
            if n == 0:
                break
            got += n
        assert got == len(payload)
        assert b"".join(bytes(memoryview(v)) for v in views)[:len(payload)] == payload
        # send it back from the pages with one sendmsg
        s2.sendmsg(views)
        back = b""
        while len(back) < 4 * 4096:
            back += s1.recv(65536)
        assert back[:len(payload)] == payload
        # recv_into one view
        s1.sendall(b"x" * 10)
        assert s2.recv_into(arr.view(5), 10) == 10
        assert bytes(memoryview(arr.view(5))[:10]) == b"x" * 10
    finally:
        s1.close()
        s2.close()
    f = tmp_path / "f"
    fd = os.open(f, os.O_RDWR | os.O_CREAT)
    try:
        assert os.pwritev(fd, views, 0) == 4 * 4096
        assert a.free_pages_bulk(arr, 0, 4) == 4
        assert a.alloc_pages_bulk_array(8, arr) == 8
        assert os.preadv(fd, arr.views(0, 4), 0) == 4 * 4096
        assert b"".join(bytes(memoryview(v)) for v in arr.views(0, 4))[:len(payload)] == payload
    finally:
        os.close(fd)
    a.free_pages_bulk(arr)
    a.drain_all()
    a.check()


def test_views_are_persistent_and_pin_their_page():
    a = _core.Allocator(arena_pages=256)
    arr = a.page_array(4)
    assert arr.view(1) is arr.view(1)
    with pytest.raises(BufferError):
        memoryview(arr.view(1))                 # empty slot
    a.alloc_pages_bulk_array(4, arr)
    m = memoryview(arr.view(1))
    with pytest.raises(BufferError):
        a.free_pages_bulk(arr)                  # exported: refuse rather than free under a reader
    assert arr.count_empty() == 0
    m.release()
    assert a.free_pages_bulk(arr) == 4
    with pytest.raises(ValueError):
        arr[0] = 12345                          # not an allocated page
