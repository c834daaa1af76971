# FastWorker: one worker thread's request and its loop. Included by _fast.pyx.

cdef class FastWorker:
    """One worker's request (rq_pages, holes, counters) and the compiled loop (serve)."""

    cdef readonly FastServer srv
    cdef readonly PageArray pages
    cdef readonly PageList page_list
    cdef readonly Py_ssize_t nslots
    cdef readonly list views
    # where the request emptied slots since its last refill (alloc.strategies.Holes' twin): the span
    # (range), the transport's count from slot 0 and the reply's range (nfree); nholes: empty slots
    cdef public Py_ssize_t holes_lo, holes_hi, nfree, resp_lo, resp_hi, nholes
    cdef cpu_t *cpu
    cdef fp_stats *st
    cdef fp_req q
    cdef bint full                 # every slot filled since the last release
    cdef readonly int ret_fd       # the connection of the last EV_RECORD / EV_CLOSE
    cdef readonly uint64_t last_ns, last_holes, last_waits, last_scanned, stalls
    cdef int32_t *_trace               # (kind, pages) pairs when tracing (tests): 0 refill, 1 release
    cdef int _ntrace

    def __cinit__(self, FastServer srv not None):
        self.srv = srv
        self.nslots = srv.nslots
        self.pages = srv.alloc.page_array(srv.nslots)
        self.page_list = srv.alloc.page_list()
        self.views = self.pages.views()
        self._everything()
        self.st = <fp_stats *>calloc(1, sizeof(fp_stats))
        if self.st == NULL:
            raise MemoryError()
        self.ret_fd = -1
        srv.workers.append(self)

    def enable_trace(self):
        """Record refill/release events (rpcsrv.svc.rqst.SvcRqst.trace's twin, for tests)."""
        if self._trace == NULL:
            self._trace = <int32_t *>calloc(2 * 65536, sizeof(int32_t))

    @property
    def trace(self):
        if self._trace == NULL:
            return None
        return [("refill" if self._trace[2 * i] == 0 else "release", self._trace[2 * i + 1])
                for i in range(self._ntrace)]

    cdef inline void _event(self, int kind, Py_ssize_t n) noexcept nogil:
        if self._trace != NULL and self._ntrace < 65536:
            self._trace[2 * self._ntrace] = kind
            self._trace[2 * self._ntrace + 1] = <int32_t>n
            self._ntrace += 1

    def bind_thread(self):
        """Call from the worker's own thread before serve(): its per-thread allocator lists."""
        self.cpu = self.srv.alloc.this_cpu()

    # -- the page array (the rqst interface the Python path and xprt.tcpconn.send_reply use) ----------
    cdef inline void _span(self, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
        if self.holes_lo >= self.holes_hi:
            self.holes_lo, self.holes_hi = lo, hi
        else:
            self.holes_lo = min(self.holes_lo, lo)
            self.holes_hi = max(self.holes_hi, hi)
        self.full = False

    cdef inline void _everything(self) noexcept nogil:
        self.holes_lo, self.holes_hi, self.nfree = 0, self.nslots, self.nslots
        self.resp_lo = self.resp_hi = 0
        self.nholes = self.nslots
        self.full = False

    def note_taken(self, Py_ssize_t n):
        """The transport took the pages of slots [0, n) (SvcRqst.note_taken's twin)."""
        self._taken(n)

    cdef inline void _taken(self, Py_ssize_t n) noexcept nogil:
        if n <= 0:
            return
        if n > self.nfree:
            self.nfree = n
        self.nholes += n
        self._span(0, n)

    def release(self, Py_ssize_t lo, Py_ssize_t hi):
        """Free the pages of slots [lo, hi) in one batch: the next holes."""
        return self._release(lo, hi)

    cdef Py_ssize_t _release(self, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
        cdef Py_ssize_t n
        if lo >= hi:
            return 0
        n = self.srv.alloc.free_slots(self.cpu, self.pages.slots + lo, hi - lo)
        if n > 0:
            self.nholes += n
        if self.resp_lo >= self.resp_hi:
            self.resp_lo, self.resp_hi = lo, hi
        else:
            self.resp_lo = min(self.resp_lo, lo)
            self.resp_hi = max(self.resp_hi, hi)
        self._span(lo, hi)
        self._event(1, n)
        return n

    def release_all(self):
        n = self.srv.alloc.free_pages_bulk(self.pages)
        n += self.srv.alloc.free_pages_bulk(self.page_list)
        self._everything()
        return n

    def refill_done(self, uint64_t ns, uint64_t holes, uint64_t waits, uint64_t scanned):
        """A single-py refill ran in Python: count it as the compiled ones are counted."""
        self._count_refill(ns, holes, waits, scanned)
        self._cleared()

    cdef inline void _cleared(self) noexcept nogil:
        self.holes_lo = self.holes_hi = self.nfree = self.resp_lo = self.resp_hi = 0
        self.nholes = 0
        self.full = True

    cdef void _count_refill(self, uint64_t ns, uint64_t holes, uint64_t waits, uint64_t scanned) noexcept nogil:
        self.last_ns, self.last_holes, self.last_waits, self.last_scanned = ns, holes, waits, scanned
        self.st.scanned[fp_page_bucket(scanned)] += 1
        self.st.scanned_sum += scanned
        self._event(0, <Py_ssize_t>holes)
        self.st.alloc[fp_alloc_bucket(ns)] += 1
        self.st.alloc_sum_ns += ns
        self.st.pages[fp_page_bucket(holes)] += 1
        self.st.pages_sum += holes
        self.st.waits += waits

    cdef Py_ssize_t _empty(self) noexcept nogil:
        cdef Py_ssize_t i, n = 0
        for i in range(self.nslots):
            if self.pages.slots[i] == NO_PAGE:
                n += 1
        return n

    # -- svc_alloc_arg, compiled (rpcsrv.svc.rqst.SvcRqst.svc_alloc_arg's twin) --------------------
    cdef inline Py_ssize_t _svc_refill(self, uint64_t *scanned) noexcept nogil:
        return self.srv.alloc.svc_refill(self.cpu, self.pages, self.srv.strategy, self.holes_lo, self.holes_hi,
                                         self.nfree, self.resp_lo, self.resp_hi, self.page_list, scanned)

    cdef bint _refill(self) noexcept nogil:
        # the holes are counted exactly as they are made (nholes), so no scan of the array
        # stands beside the strategy's own in the time measured or in the server's CPU
        cdef uint64_t t0 = fp_now_ns(), seq, waits = 0, scanned = 0
        cdef Py_ssize_t holes = self.nholes, given_back = 0, left
        cdef double delay
        while True:
            left = self._svc_refill(&scanned)
            if left == 0:
                break
            seq = self.srv.alloc.free_seq_c()
            left = self._svc_refill(&scanned)
            if left == 0:
                break
            waits += 1
            if self.srv.stopping:
                return False
            if waits % FP_STALL_WAITS == 0:      # hold-and-wait: give every page back, start over
                given_back += self.srv.alloc.free_slots(self.cpu, self.pages.slots, self.nslots)
                self._everything()
                self.stalls += 1
                self.st.stalls += 1
                usleep(<unsigned int>(rand() % FP_STALL_PAUSE_US))
                continue
            delay = FP_WAIT_MIN * (1 << min(waits, <uint64_t>FP_WAIT_DOUBLINGS))
            self.srv.alloc.wait_free_c(seq, FP_WAIT_MAX if delay > FP_WAIT_MAX else delay)
        self._count_refill(fp_now_ns() - t0, holes + given_back, waits, scanned)
        self._cleared()
        return True

    # -- receive one record into the pages (xprt.tcpconn.Connection.receive's twin) -------------------
    cdef int _fail(self, fconn_t *c, int reason, int err) noexcept nogil:
        c.reason, c.err = reason, err
        return RX_CLOSED

    cdef int _park_or_wait(self, fconn_t *c) noexcept nogil:
        """No data now: park the partial record in the connection, or (over budget) wait briefly."""
        cdef int n = (c.record_len + PAGE_SIZE - 1) // PAGE_SIZE, i
        cdef pollfd p
        cdef double left
        if n == 0 or self.srv._park(n):
            for i in range(n):
                c.saved[i] = self.pages.slots[i]
                self.pages.slots[i] = NO_PAGE
            c.saved_slots = n
            self._taken(n)
            return RX_PARTIAL
        # over the budget: wait a little for the rest, never --record-timeout (xprt/tcpconn.py's doc)
        left = (c.record_started if c.record_started else fp_now()) + self.srv.record_timeout - fp_now()
        if left <= 0:
            return self._fail(c, R_RECORD_TIMEOUT, 0)
        p.fd, p.events, p.revents = c.fd, POLLIN, 0
        if poll(&p, 1, FP_PARK_WAIT_MS if left * 1000 > FP_PARK_WAIT_MS else <int>(left * 1000) + 1) <= 0:
            return self._fail(c, R_PARKING_FULL if left * 1000 > FP_PARK_WAIT_MS else R_RECORD_TIMEOUT, 0)
        return -1                                  # data came: go on reading

    cdef int _receive(self, fconn_t *c) noexcept nogil:
        cdef int n, i, cnt, r2
        cdef ssize_t r
        cdef uint32_t word, off, k
        cdef iovec iov[272]
        cdef int32_t pfn
        if c.saved_slots:                          # svc_tcp_restore_pages
            n = c.saved_slots
            self.srv.alloc.free_slots(self.cpu, self.pages.slots, n)
            for i in range(n):
                self.pages.slots[i] = c.saved[i]
            c.saved_slots = 0
            self.srv._unpark(n)
        while True:
            if c.frag_left == 0:                   # the fragment header
                r = recv(c.fd, c.marker + c.have, 4 - c.have, MSG_DONTWAIT)
                if r < 0:
                    if errno == EINTR:
                        continue
                    if errno == EAGAIN:
                        r2 = self._park_or_wait(c)
                        if r2 >= 0:
                            return r2
                        continue
                    if errno == ECONNRESET and c.record_len == 0 and c.have == 0:
                        return self._fail(c, R_RESET, 0)
                    return self._fail(c, R_RECV_ERRNO, errno)
                if r == 0:
                    return self._fail(c, R_EOF if c.record_len == 0 and c.have == 0 else R_TRUNCATED, 0)
                if not c.record_started:
                    c.record_started = fp_now()
                c.have += <int>r
                if c.have < 4:
                    continue
                c.have = 0
                word = (<uint32_t>c.marker[0] << 24) | (<uint32_t>c.marker[1] << 16) | \
                       (<uint32_t>c.marker[2] << 8) | c.marker[3]
                c.last = word >> 31
                c.frag_left = word & 0x7FFFFFFF
                if c.frag_left == 0:               # empty fragments are legal (RFC 5531), a few
                    c.empty += 1
                    if c.empty > FP_MAX_EMPTY_FRAGMENTS:
                        return self._fail(c, R_ZERO_FRAGMENT, 0)
                    if not c.last:
                        continue
                    if c.record_len == 0:
                        return self._fail(c, R_EMPTY_RECORD, 0)
                    c.record_started = 0
                    return RX_RECORD
                if <uint64_t>c.record_len + c.frag_left > c.max_record:
                    return self._fail(c, R_TOO_LARGE, 0)
            cnt = 0                                # the body, straight into the pages
            off = c.record_len
            k = c.frag_left
            while k and cnt < 272:
                i = <int>(off >> 12)
                pfn = self.pages.slots[i] if i < self.nslots else NO_PAGE
                if pfn == NO_PAGE:
                    return self._fail(c, R_SERVER_BUG, 0)
                iov[cnt].iov_base = self.srv.alloc.page_address(pfn) + (off & (PAGE_SIZE - 1))
                iov[cnt].iov_len = min(<uint32_t>(PAGE_SIZE - (off & (PAGE_SIZE - 1))), k)
                k -= iov[cnt].iov_len
                off += iov[cnt].iov_len
                cnt += 1
            r = readv(c.fd, iov, cnt)
            if r > 0:
                c.last_active = fp_now()
                c.record_len += <uint32_t>r
                c.frag_left -= <uint32_t>r
                if c.frag_left == 0 and c.last:
                    c.record_started = 0
                    return RX_RECORD
            elif r == 0:
                return self._fail(c, R_TRUNCATED, 0)
            elif errno == EAGAIN:
                r2 = self._park_or_wait(c)
                if r2 >= 0:
                    return r2
            elif errno != EINTR:
                return self._fail(c, R_RECV_ERRNO, errno)

    # -- serve a received call in C, send, release ---------------------------------------------
    cdef int _send(self, fconn_t *c, int slot, uint32_t hdr, uint32_t payload) noexcept nogil:
        """One sendmsg of hdr bytes from `slot` and payload bytes from the slot after the header's
        page; poll out a full socket buffer for the send timeout. 0, or the connection must go."""
        cdef iovec iov[FP_MAX_IOV]
        cdef iovec *v = iov
        cdef int cnt = 0, s = slot, waited = 0, step
        cdef uint32_t k
        cdef msghdr m
        cdef ssize_t r
        cdef pollfd p
        cdef uint32_t timeout = self.srv.conf.send_timeout_ms
        while hdr:
            k = min(hdr, <uint32_t>PAGE_SIZE)
            iov[cnt].iov_base = self.srv.alloc.page_address(self.pages.slots[s])
            iov[cnt].iov_len = k
            hdr -= k
            cnt += 1
            s += 1
        s = slot + 1
        while payload and cnt < FP_MAX_IOV:
            k = min(payload, <uint32_t>PAGE_SIZE)
            iov[cnt].iov_base = self.srv.alloc.page_address(self.pages.slots[s])
            iov[cnt].iov_len = k
            payload -= k
            cnt += 1
            s += 1
        memset(&m, 0, sizeof(m))
        while cnt > 0:
            m.msg_iov = v
            m.msg_iovlen = cnt if cnt < FP_IOV_MAX else FP_IOV_MAX
            r = sendmsg(c.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT)
            if r < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    if <uint32_t>waited >= timeout:
                        c.reason = R_SEND_TIMEOUT
                        return -1
                    step = 50 if timeout - waited > 50 else timeout - waited
                    p.fd, p.events, p.revents = c.fd, POLLOUT, 0
                    if poll(&p, 1, step) == 0:
                        waited += step
                    continue
                c.reason, c.err = R_SEND_ERRNO, errno
                return -1
            while cnt and <size_t>r >= v.iov_len:
                r -= <ssize_t>v.iov_len
                v += 1
                cnt -= 1
            if cnt and r:
                v.iov_base = <char *>v.iov_base + r
                v.iov_len -= <size_t>r
        c.last_active = fp_now()
        return 0

    cdef int _process(self, fconn_t *c) noexcept nogil:
        """FP_SERVED (answered, pages released; -1 if the connection must go) or FP_FALLBACK."""
        cdef fp_req *q = &self.q
        cdef uint64_t t0 = fp_now_ns(), dt
        cdef int rc, reply_slot, end, pi
        cdef uint32_t pad, proc
        cdef uint8_t *page
        if self.srv.secure_ports:
            self.st.fallbacks[FP_NPROC] += 1
            return FP_FALLBACK
        reply_slot = <int>((c.record_len + PAGE_SIZE - 1) // PAGE_SIZE)
        if reply_slot >= self.nslots:
            return FP_FALLBACK
        q.conf = &self.srv.conf
        q.fhc = &self.srv.fhc
        q.drc = &self.srv.drc
        q.pf = &self.srv.pf
        q.lc = &self.srv.lc
        q.arena = self.srv.alloc.page_address(0)
        q.slots = self.pages.slots
        q.nslots = <int>self.nslots
        q.rec_len = c.record_len
        q.rec = <const uint8_t *>self.srv.alloc.page_address(self.pages.slots[0])
        q.head_len = min(c.record_len, <uint32_t>PAGE_SIZE)
        q.peer = c.addr
        q.peer_len = c.addrlen
        q.reply_slot = reply_slot
        q.w.arena, q.w.slots, q.w.slot, q.w.nslots, q.w.off, q.w.bad = q.arena, q.slots, reply_slot, q.nslots, 4, 0
        self.st.in_flight += 1
        rc = fp_process(q)
        if rc == FP_FALLBACK:
            self.st.in_flight -= 1
            proc = q.call.proc if q.call.prog == FP_NFS_PROGRAM and q.call.vers == FP_NFS_V3 and q.call.proc < FP_NPROC \
                else FP_NPROC
            self.st.fallbacks[proc] += 1
            return FP_FALLBACK
        if q.w.bad:                                # never a cut reply: SYSTEM_ERR (as svc.Svc.process)
            self.st.reply_too_large += 1
            q.w.off, q.w.bad, q.payload, q.status = 4, 0, 0, 0xFFFFFFFF
            xw_u32(&q.w, q.call.xid)              # REPLY, accepted, AUTH_NONE verifier, SYSTEM_ERR
            xw_u32(&q.w, 1)
            xw_u32(&q.w, 0)
            xw_u32(&q.w, 0)
            xw_u32(&q.w, 0)
            xw_u32(&q.w, 5)
        rc = 0
        if q.send:
            pad = (-q.payload) & 3
            page = <uint8_t *>self.srv.alloc.page_address(self.pages.slots[reply_slot])
            fp_put32(page, 0x80000000u | (q.w.off - 4 + q.payload + pad))
            rc = self._send(c, reply_slot, q.w.off, q.payload + pad)
            if q.payload:
                end = reply_slot + 1 + <int>((q.payload + pad + PAGE_SIZE - 1) // PAGE_SIZE)
            else:
                end = reply_slot + <int>((q.w.off + PAGE_SIZE - 1) // PAGE_SIZE)
            self._release(reply_slot, end)
        self.st.in_flight -= 1
        self.st.read_bytes += q.read_bytes
        self.st.write_bytes += q.write_bytes
        if q.drc_state == FP_DRC_NEW:
            self.st.drc_miss += 1
        elif q.drc_state == FP_DRC_HIT:
            self.st.drc_hit += 1
        elif q.drc_state == FP_DRC_IN_PROGRESS:
            self.st.drc_in_progress += 1
        if q.counted:
            proc = q.call.proc
            dt = fp_now_ns() - t0
            self.st.requests[proc][fp_stat_index(q.status)] += 1
            self.st.dur[proc][fp_rpc_bucket(dt)] += 1
            self.st.dur_sum_ns[proc] += dt
        return rc

    # -- the loop -------------------------------------------------------------------------------
    def serve(self):
        """Serve until something needs Python; returns EV_* (and ret_fd for EV_RECORD/EV_CLOSE)."""
        cdef int ev
        with nogil:
            ev = self._serve()
        return ev

    cdef int _serve(self) noexcept nogil:
        cdef epoll_event e
        cdef int n, rc, wait_ms
        cdef double now
        while True:
            if self.srv.stopping:
                return EV_STOP
            if not self.full:
                if self.srv.strategy < 0:
                    return EV_REFILL
                if not self._refill():
                    return EV_STOP
            now = fp_now()
            if self.srv._claim_sweep(now):         # once a second, one worker sweeps (in Python)
                return EV_SWEEP
            wait_ms = <int>((self.srv.next_sweep - now) * 1000) + 1
            n = epoll_wait(self.srv.epfd, &e, 1, wait_ms if wait_ms > 0 else 1)
            if n <= 0:
                continue
            if e.data.u64 == TAG_WAKE:
                return EV_STOP
            if e.data.u64 == TAG_LISTEN:
                return EV_ACCEPT
            (<fconn_t *>e.data.ptr).busy = 1
            rc = self.serve_conn(<fconn_t *>e.data.ptr, fp_now())
            if rc >= 0:
                return rc

    cdef int serve_conn(self, fconn_t *c, double ready) noexcept nogil:
        """One turn of a connection the worker holds: -1 (done, re-armed) or an EV_* for Python."""
        cdef int rx, rc
        cdef uint64_t qns
        cdef epoll_event ev
        self.ret_fd = c.fd
        if c.doomed:
            return EV_CLOSE
        qns = <uint64_t>((fp_now() - ready) * 1e9)
        self.st.queue[fp_rpc_bucket(qns)] += 1
        self.st.queue_sum_ns += qns
        rx = self._receive(c)
        if rx == RX_CLOSED:
            return EV_CLOSE
        if rx == RX_RECORD:
            rc = self._process(c)
            if rc == FP_FALLBACK:
                return EV_RECORD
            self.record_done_c(c)
            if rc < 0:
                return EV_CLOSE
        c.busy = 0
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT
        ev.data.ptr = <void *>c
        if epoll_ctl(self.srv.epfd, EPOLL_CTL_MOD, c.fd, &ev) != 0:
            c.busy = 1
            return EV_CLOSE
        return -1

    cdef inline void record_done_c(self, fconn_t *c) noexcept nogil:
        c.record_len = 0
        c.frag_left = 0
        c.have = 0
        c.last = 0
        c.empty = 0

    def stats(self):
        """This worker's counters as plain Python values (rpcsrv.svc.metrics reads them)."""
        cdef fp_stats *s = self.st
        return {
            "requests": [[s.requests[p][i] for i in range(FP_NSTAT)] for p in range(FP_NPROC)],
            "dur": [[s.dur[p][i] for i in range(FP_HBUCKETS)] for p in range(FP_NPROC)],
            "dur_sum": [s.dur_sum_ns[p] * 1e-9 for p in range(FP_NPROC)],
            "fallbacks": [s.fallbacks[p] for p in range(FP_NPROC + 1)],
            "alloc": [s.alloc[i] for i in range(FP_ABUCKETS)], "alloc_sum": s.alloc_sum_ns * 1e-9,
            "pages": [s.pages[i] for i in range(FP_PBUCKETS)], "pages_sum": s.pages_sum,
            "scanned": [s.scanned[i] for i in range(FP_PBUCKETS)], "scanned_sum": s.scanned_sum,
            "waits": s.waits, "stalls": s.stalls,
            "queue": [s.queue[i] for i in range(FP_HBUCKETS)], "queue_sum": s.queue_sum_ns * 1e-9,
            "read_bytes": s.read_bytes, "write_bytes": s.write_bytes,
            "drc": {"hit": s.drc_hit, "miss": s.drc_miss, "in_progress": s.drc_in_progress},
            "in_flight": s.in_flight, "reply_too_large": s.reply_too_large,
        }

    def __dealloc__(self):
        free(self.st)
        free(self._trace)


STATUS_VALUES = tuple(fp_stat_values[i] for i in range(FP_NSTAT))
#: svc_alloc_arg's histogram bounds in tenths of a ns as the C counts them (rpcsrv.svc.metrics.ALLOC_BOUNDS_DNS)
ALLOC_BOUNDS_DNS = tuple(fp_alloc_bounds_dns[i] for i in range(FP_ABUCKETS - 1))


def tables():
    """The tables this module was compiled with (fp_tables.h), in the shape of
    rpcsrv.fast.gen_tables.collect(): tests/fast/test_tables.py holds the two equal. A procedure's
    in_c is the table's flag and fp_process.h having a function for it."""
    cdef int i
    return {
        "nfs_program": FP_NFS_PROGRAM,
        "nfs_version": FP_NFS_V3,
        "status_names": {fp_stat_values[i]: fp_stat_names[i].decode() for i in range(FP_NSTAT - 1)},
        "status_values": STATUS_VALUES,
        "procs": tuple((fp_procs[i].name.decode(), bool(fp_procs[i].idempotent), bool(fp_procs[i].reads),
                        bool(fp_procs[i].in_c and fp_proc_has_fn(i))) for i in range(FP_NPROC)),
        "errno_map": tuple(fp_errno_nfsstat[i] for i in range(FP_NERRNO_MAP)),
        "alloc_bounds_dns": ALLOC_BOUNDS_DNS,
        "rpc_bounds_ns": tuple(fp_rpc_bounds_ns[i] for i in range(FP_HBUCKETS - 1)),
        "page_bounds": tuple(fp_page_bounds[i] for i in range(FP_PBUCKETS - 1)),
        "access": {"read": ACC_READ, "lookup": ACC_LOOKUP, "modify": ACC_MODIFY, "extend": ACC_EXTEND,
                   "delete": ACC_DELETE, "execute": ACC_EXECUTE},
        "enums": {"create": {"unchecked": FP_CREATE_UNCHECKED, "guarded": FP_CREATE_GUARDED,
                             "exclusive": FP_CREATE_EXCLUSIVE},
                  "time": {"dont_change": FP_TIME_DONT_CHANGE, "set_to_server_time": FP_TIME_SET_TO_SERVER_TIME,
                           "set_to_client_time": FP_TIME_SET_TO_CLIENT_TIME},
                  "stable": {"unstable": FP_STABLE_UNSTABLE, "data_sync": FP_STABLE_DATA_SYNC,
                             "file_sync": FP_STABLE_FILE_SYNC}},
        "limits": {"fhsize": FP_FHSIZE, "maxnamlen": FP_MAXNAMLEN, "name_decode_max": FP_NAME_DECODE_MAX,
                   "maxfilesize": FP_MAXFILESIZE},
        "waits": {"wait_min": FP_WAIT_MIN, "wait_max": FP_WAIT_MAX, "wait_doublings": FP_WAIT_DOUBLINGS,
                  "stall_waits": FP_STALL_WAITS, "stall_pause_us": FP_STALL_PAUSE_US,
                  "park_wait_ms": FP_PARK_WAIT_MS, "max_empty_fragments": FP_MAX_EMPTY_FRAGMENTS},
    }


def alloc_bucket(uint64_t ns):
    """The bucket index the fast path counts a svc_alloc_arg call of `ns` nanoseconds in."""
    return fp_alloc_bucket(ns)
EVENTS = {"stop": EV_STOP, "record": EV_RECORD, "close": EV_CLOSE, "accept": EV_ACCEPT, "sweep": EV_SWEEP,
          "refill": EV_REFILL}


def blake2s(bytes key, bytes data, int size):
    """The fast path's BLAKE2s, digest size 1..32, key 0..32 bytes (tests/fast/test_hash_twins.py holds it
    to hashlib.blake2s)."""
    cdef uint8_t out[32]
    nb_blake2s(out, size, <const uint8_t *><const char *>key, len(key), <const uint8_t *><const char *>data,
               len(data))
    return out[:size]


def blake2b(bytes key, bytes data, int size):
    """The fast path's BLAKE2b, digest size 1..64, key 0..64 bytes (tests/fast/test_hash_twins.py holds it
    to hashlib.blake2b)."""
    cdef uint8_t out[64]
    nb_blake2b(out, size, <const uint8_t *><const char *>key, len(key), <const uint8_t *><const char *>data,
               len(data))
    return out[:size]


def crc32(bytes data):
    """The fast path's CRC-32 (tests/fast/test_hash_twins.py holds it to zlib.crc32)."""
    fp_crc_init()
    return fp_crc32(<const uint8_t *><const char *>data, len(data))


# ---- thin wrappers of fp_core.h's pure twins, each one C call (tests/fast/test_name_twins.py,
# test_perm_twins.py and test_call_twins.py hold them to the Python functions they re-implement)

def check_name(bytes name, bint allow_dots=True):
    """fp_check_name: 0 or the nfsstat3 (INVAL, NAMETOOLONG) rpcsrv.export.check_name raises."""
    return fp_check_name(<const uint8_t *><const char *>name, <uint32_t>len(name), allow_dots)


def who_from(bint root_squash, uint32_t anon_uid, uint32_t anon_gid, bint have_cred, uint32_t uid,
             uint32_t gid, gids):
    """fp_who_from (perm.who): (uid, gid, groups in fp_who's order) of the caller after squashing.
    At most 16 gids, as fp_parse_call's fp_call holds."""
    cdef fp_conf c
    cdef fp_who w
    cdef uint32_t g[16]
    cdef int i, n = len(gids)
    if n > 16:
        raise ValueError("at most 16 gids")
    memset(&c, 0, sizeof(c))
    c.root_squash = root_squash
    c.anon_uid = anon_uid
    c.anon_gid = anon_gid
    for i in range(n):
        g[i] = gids[i]
    fp_who_from(&w, &c, have_cred, uid, gid, g, n)
    return w.uid, w.gid, tuple(w.groups[i] for i in range(w.ngroups))


def perm(uint32_t mode, uint32_t st_uid, uint32_t st_gid, uint32_t uid, uint32_t gid, groups,
         uint32_t mask, bint read_only):
    """(fp_bits, fp_may_read, fp_may_write, fp_access) of an object with this st_mode, st_uid, st_gid
    for the fp_who (uid, gid, groups: at most 17, as fp_who holds)."""
    cdef struct_stat st
    cdef fp_who w
    cdef int i, n = len(groups)
    if n > 17:
        raise ValueError("at most 17 groups")
    memset(&st, 0, sizeof(st))
    st.st_mode = mode
    st.st_uid = st_uid
    st.st_gid = st_gid
    w.uid = uid
    w.gid = gid
    w.ngroups = n
    for i in range(n):
        w.groups[i] = groups[i]
    return (fp_bits(&st, &w), bool(fp_may_read(&st, &w)), bool(fp_may_write(&st, &w)),
            fp_access(&st, mask, &w, read_only))


def parse_call(bytes rec):
    """fp_parse_call over rec: None when it refuses the header (-1), else (xid, prog, vers, proc,
    have_cred, uid, gid, gids, args offset); uid, gid and gids are 0/() for AUTH_NONE."""
    cdef fp_call c
    memset(&c, 0, sizeof(c))
    if fp_parse_call(<const uint8_t *><const char *>rec, <uint32_t>len(rec), &c) != 0:
        return None
    return (c.xid, c.prog, c.vers, c.proc, bool(c.have_cred), c.uid, c.gid,
            tuple(c.gids[i] for i in range(c.ngids)), c.args)
