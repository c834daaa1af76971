# cython: language_level=3
"""The compiled UDP receive loop: recvmmsg into page_pool pages, an XDP-like verdict per datagram.

Owns: one XdpLoop per receive queue (one SO_REUSEPORT socket, its PagePool
and its UdpEndpoint), and the loop's receive ring: BATCH slots, each a pool
page the next recvmmsg may fill (a driver's RX ring, refilled from the pool
before each batch).

run(timeout_ms) releases the GIL and loops, each turn:
  1. refill the empty ring slots from the pool (page_pool_alloc_pages; a pool
     that gives no page shortens the batch; with no page at all one datagram
     is read into a scratch buffer and dropped, counted as no_page);
  2. recvmmsg (MSG_DONTWAIT | MSG_TRUNC: a datagram's length is its real one,
     > PAGE_SIZE means it was cut) into the pages; nothing there -> poll up to
     timeout_ms once, then return 0;
  3. per datagram the verdict of udp_xdp.h: an NFSv3 NULL call with AUTH_NONE
     is XDP_TX (the reply is written over the call in its own page and sent
     with one sendmmsg per batch) or XDP_DROP (mode "drop": no reply);
     so is the export root's GETATTR with AUTH_NONE (byte for byte the
     canonical call, set_getattr_call) while the reply the Python path gave
     to it last still holds: the root is fstat'ed once per batch that has
     such a call, and every field a fattr3 carries must equal the snapshot
     taken before that reply was built, else the call is passed and its new
     reply cached (set_getattr_reply);
     anything else is XDP_PASS: the slot is left full and its index noted;
  4. the pages of TX'd and dropped datagrams go back by recycle mode: direct
     (into the pool's cache), ring (the recycle ring) or release (back to the
     page allocator, one lock hold per batch as xdp_return_frame_bulk does:
     the XDP_REDIRECT case, where every datagram needs a fresh page);
and returns to Python when datagrams were passed (their count), after
MAX_TURNS turns, or when nothing came within timeout_ms. The caller then
hands each passed datagram to the UdpEndpoint (pass_to: the page moves to
the endpoint's slot 0, the sender to its peer address) and runs the Python
request core on it, which recycles the page as today.

The receive thread's CPU time (CLOCK_THREAD_CPUTIME_ID) and the monotonic
clock are read when run() starts, after every batch and after every wait,
and the batch's differences charged to the current refill strategy
(rx_cpu_ns, rx_wall_ns): refill, recvmmsg, verdicts, sendmmsg and recycling.
The waits (poll when the socket is empty, the coalescing sleep) and their
wake-ups depend on when datagrams arrive, not on the datagrams: their CPU is
counted apart (idle_cpu_ns) and charged to no strategy. The Python handling
of passed datagrams is outside. One clock read per batch, not per datagram.

interleave=N (an A/B/C test inside one run): every N batches that returned
datagrams the pool's refill strategy moves on (single -> list -> array ->
single ...; PagePool.strategy_id); what is left in its cache goes back to
the allocator first (uncharged, counted as flushed pages: at most 63 per
slice, none when full batches emptied the cache), so each strategy starts
from an empty cache as its own pool would.

coalesce_us=U: after a batch that did not fill, sleep U microseconds before
the next recvmmsg (a NIC's interrupt coalescing, rx-usecs): fewer, fuller
batches when the sender is slower than the loop. 0 (default): none. Load on a shared machine then falls on all three alike;
the counters are kept per strategy either way.

Threads: one XdpLoop belongs to one receive thread (the pool's consumer).
stats() may be read from any thread (plain 64-bit counters, read without a
lock). give_back() runs on the receive thread after its loop, or after it
was joined: the ring's unused pages go back to the pool before it closes.
"""

from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcmp, memset, memcpy

from alloc._core cimport Allocator, NO_PAGE, PAGE_SIZE
from alloc._pool cimport PagePool
from rpcsrv.xprt._udpio cimport UdpEndpoint
from rpcsrv.xprt._sys cimport (MSG_DONTWAIT, MSG_TRUNC, POLLIN, iovec, msghdr, poll, pollfd, recvmsg,
                               sockaddr_storage, socklen_t)

cdef extern from "sys/socket.h" nogil:
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int recvmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags)

cdef extern from "time.h" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int, timespec *)
    int nanosleep(const timespec *, timespec *)
    int CLOCK_THREAD_CPUTIME_ID
    int CLOCK_MONOTONIC

cdef extern from "sys/stat.h" nogil:
    cdef struct stat:
        unsigned long st_dev
        unsigned long st_ino
        unsigned int st_mode
        unsigned long st_nlink
        unsigned int st_uid
        unsigned int st_gid
        unsigned long st_rdev
        long st_size
        long st_blocks
        timespec st_atim
        timespec st_mtim
        timespec st_ctim
    int fstat(int fd, stat *buf)

cdef extern from "udp_xdp.h" nogil:
    int UX_PASS
    int UX_NULL
    int ux_classify(const unsigned char *d, size_t length, size_t cap)
    size_t ux_null_reply(const unsigned char *call, unsigned char *out)

cdef enum:
    BATCH = 64                     # ring slots: datagrams per recvmmsg at most
    MAX_TURNS = 256                # batches per run() before Python gets the thread back
    SCRATCH = 65536
    GA_MAX = 256                   # root GETATTR call / reply bytes after the xid, at most

VERDICT_MODES = ("tx", "drop")
RECYCLE_MODES = ("direct", "ring", "release")
MAX_BATCH = BATCH
STRATEGY_NAMES = ("single", "list", "array")   # PagePool.strategy_id order (alloc/_pool.pxd PP_*)

cdef char _scratch[SCRATCH]        # drop target when the pool has no page (content never read)


cdef inline int64_t _mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _thread_cpu_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class XdpLoop:
    """XdpLoop(endpoint, verdict="tx", batch=64, answer=True, interleave=0, coalesce_us=0): one queue's compiled loop.

    endpoint: the queue's UdpEndpoint (its socket, pool and recycle mode are used).
    verdict: "tx" (answer NULL calls from C) or "drop" (drop them: XDP_DROP).
    batch: datagrams per recvmmsg (1..64). answer=False passes every datagram to
    Python (the server sets it when --allow or --secure-ports need the Python checks).
    interleave: batches per strategy slice, 0 for none; coalesce_us: see the module doc.
    """

    cdef UdpEndpoint ep
    cdef PagePool pool
    cdef Allocator alloc
    cdef readonly int fd
    cdef readonly int batch
    cdef int drop_mode
    cdef int recycle_mode
    cdef readonly bint answer
    cdef int32_t ring[BATCH]                 # the receive ring: a page per slot, or NO_PAGE
    cdef mmsghdr rx[BATCH]
    cdef iovec rx_iov[BATCH]
    cdef sockaddr_storage rx_addr[BATCH]
    cdef mmsghdr tx[BATCH]
    cdef iovec tx_iov[BATCH]
    cdef int32_t done[BATCH]                 # pages of TX'd / dropped datagrams, recycled per batch
    cdef int pass_idx[BATCH]
    cdef unsigned int pass_len[BATCH]
    cdef char pass_ga[BATCH]                 # passed datagram i is the root GETATTR call (reply wanted)
    cdef readonly int npass                  # datagrams passed by the last run()
    cdef readonly bint passed_getattr        # the datagram pass_to() handed over last is the root GETATTR
    # the export root's GETATTR (see set_getattr_call): call bytes after the xid, the Python path's
    # reply after the xid, and the root's attributes it was built from (reply valid while they hold)
    cdef unsigned char ga_call[GA_MAX]
    cdef int ga_call_len                     # 0: no GETATTR answered from C
    cdef unsigned char ga_reply[GA_MAX]
    cdef int ga_reply_len                    # 0: no valid reply cached
    cdef int root_fd
    cdef stat ga_st
    cdef uint64_t n_ga_tx, n_ga_stale, n_ga_installed
    cdef readonly int interleave             # batches per strategy slice (0: the pool's own strategy)
    cdef readonly int64_t coalesce_ns        # sleep after a batch that did not fill (0: none)
    cdef uint64_t n_flushed                  # pages flushed from the cache at strategy switches
    cdef int slice_left
    cdef int cur                             # strategy index the counters below are charged to
    cdef int64_t t_cpu, t_wall               # clocks at the last accounting point
    # counters per strategy index (the receive thread writes, anyone reads)
    cdef uint64_t n_datagrams[3]
    cdef uint64_t n_tx[3]
    cdef uint64_t n_drop[3]
    cdef uint64_t n_pass[3]
    cdef uint64_t n_no_page[3]
    cdef uint64_t n_batches[3]
    cdef uint64_t n_tx_fail[3]
    cdef uint64_t n_cpu_ns[3]
    cdef uint64_t n_wall_ns[3]
    cdef uint64_t n_switches
    cdef uint64_t n_idle_cpu_ns              # CPU spent waiting (poll, coalescing), charged to no strategy
    cdef uint64_t n_runs

    def __cinit__(self, UdpEndpoint endpoint not None, verdict="tx", int batch=BATCH, bint answer=True,
                  int interleave=0, int coalesce_us=0):
        cdef int i
        if verdict not in VERDICT_MODES:
            raise ValueError("verdict must be one of %s" % ", ".join(VERDICT_MODES))
        if not 1 <= batch <= BATCH:
            raise ValueError("batch must be in 1..%d" % BATCH)
        if interleave < 0:
            raise ValueError("interleave must be >= 0")
        if not 0 <= coalesce_us <= 100000:
            raise ValueError("coalesce_us must be in 0..100000")
        self.coalesce_ns = coalesce_us * 1000
        self.interleave = interleave
        self.slice_left = interleave
        self.cur = endpoint.pool.strategy_id
        self.ep = endpoint
        self.pool = endpoint.pool
        self.alloc = endpoint.pool.allocator
        self.fd = endpoint.fd
        self.batch = batch
        self.drop_mode = verdict == "drop"
        self.recycle_mode = RECYCLE_MODES.index(endpoint.recycle)
        self.answer = answer
        self.npass = 0
        for i in range(BATCH):
            self.ring[i] = NO_PAGE
        memset(self.rx, 0, sizeof(self.rx))
        memset(self.tx, 0, sizeof(self.tx))

    @property
    def verdict(self):
        return VERDICT_MODES[self.drop_mode]

    cdef void _recycle(self, int32_t *pages, int n) noexcept nogil:
        cdef int i
        if n <= 0:
            return
        if self.recycle_mode == 2:
            self.pool._free_to_allocator(pages, n)      # pages we handed out: one lock hold
        else:
            for i in range(n):
                self.pool.put_page(pages[i], self.recycle_mode == 0)

    cdef int _drop_one_no_page(self) noexcept nogil:
        """The pool had no page: read one datagram into the scratch buffer and drop it."""
        cdef msghdr msg
        cdef iovec iov
        cdef ssize_t r
        iov.iov_base = _scratch
        iov.iov_len = SCRATCH
        memset(&msg, 0, sizeof(msg))
        msg.msg_iov = &iov
        msg.msg_iovlen = 1
        r = recvmsg(self.fd, &msg, MSG_DONTWAIT)
        if r >= 0:
            self.n_no_page[self.cur] += 1
            return 1
        return -errno

    cdef int _turn(self) noexcept nogil:
        """One batch: refill, recvmmsg, verdicts, sendmmsg, recycle. Datagrams received, or -errno."""
        cdef int n = 0, i, r, ntx = 0, ndone = 0, k, v, fresh = -1
        cdef bint ga
        cdef int32_t pfn
        cdef unsigned char *d
        cdef unsigned int length
        while n < self.batch:
            if self.ring[n] == NO_PAGE:
                pfn = self.pool.get_page()
                if pfn == NO_PAGE:
                    break
                self.ring[n] = pfn
            n += 1
        if n == 0:
            return self._drop_one_no_page()
        for i in range(n):
            self.rx_iov[i].iov_base = self.alloc.page_address(self.ring[i])
            self.rx_iov[i].iov_len = PAGE_SIZE
            self.rx[i].msg_hdr.msg_name = &self.rx_addr[i]
            self.rx[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            self.rx[i].msg_hdr.msg_iov = &self.rx_iov[i]
            self.rx[i].msg_hdr.msg_iovlen = 1
            self.rx[i].msg_hdr.msg_control = NULL
            self.rx[i].msg_hdr.msg_controllen = 0
            self.rx[i].msg_hdr.msg_flags = 0
            self.rx[i].msg_len = 0
        r = recvmmsg(self.fd, self.rx, n, MSG_DONTWAIT | MSG_TRUNC, NULL)
        if r <= 0:
            return -errno if r < 0 else 0
        self.n_batches[self.cur] += 1
        self.n_datagrams[self.cur] += r
        for i in range(r):
            length = self.rx[i].msg_len
            d = <unsigned char *>self.rx_iov[i].iov_base
            v = ux_classify(d, length, PAGE_SIZE) if self.answer else UX_PASS
            ga = False
            if (v == UX_PASS and self.answer and self.ga_call_len and length == <unsigned int>(4 + self.ga_call_len)
                    and memcmp(d + 4, self.ga_call, self.ga_call_len) == 0):
                if fresh < 0:
                    fresh = self._ga_fresh()        # one fstat of the root per batch, when needed
                ga = True
                if fresh:
                    v = UX_NULL
            if v == UX_PASS:
                self.pass_idx[self.npass] = i
                self.pass_len[self.npass] = length
                self.pass_ga[self.npass] = ga
                self.npass += 1
                continue
            if self.drop_mode:
                self.n_drop[self.cur] += 1
            else:
                self.tx_iov[ntx].iov_base = d
                if ga:
                    memcpy(d + 4, self.ga_reply, self.ga_reply_len)      # the xid stays: d[0:4]
                    self.tx_iov[ntx].iov_len = 4 + self.ga_reply_len
                    self.n_ga_tx += 1
                else:
                    self.tx_iov[ntx].iov_len = ux_null_reply(d, d)
                self.tx[ntx].msg_hdr.msg_name = &self.rx_addr[i]
                self.tx[ntx].msg_hdr.msg_namelen = self.rx[i].msg_hdr.msg_namelen
                self.tx[ntx].msg_hdr.msg_iov = &self.tx_iov[ntx]
                self.tx[ntx].msg_hdr.msg_iovlen = 1
                ntx += 1
            self.done[ndone] = self.ring[i]
            self.ring[i] = NO_PAGE
            ndone += 1
        k = 0
        while k < ntx:
            v = sendmmsg(self.fd, &self.tx[k], ntx - k, MSG_DONTWAIT)
            if v < 0:
                if errno == EINTR:
                    continue
                self.n_tx_fail[self.cur] += ntx - k     # a full socket buffer drops the replies (UDP)
                break
            k += v
        self.n_tx[self.cur] += k
        self._recycle(self.done, ndone)
        return r

    cdef int _ga_fresh(self) noexcept nogil:
        """1 if the cached root GETATTR reply still describes the root (fstat now = the snapshot it
        was built from, every field a fattr3 carries), else 0 (and the cache is dropped)."""
        cdef stat st
        if self.ga_reply_len == 0:
            return 0
        if (fstat(self.root_fd, &st) == 0 and st.st_dev == self.ga_st.st_dev and st.st_ino == self.ga_st.st_ino
                and st.st_mode == self.ga_st.st_mode and st.st_nlink == self.ga_st.st_nlink
                and st.st_uid == self.ga_st.st_uid and st.st_gid == self.ga_st.st_gid
                and st.st_rdev == self.ga_st.st_rdev and st.st_size == self.ga_st.st_size
                and st.st_blocks == self.ga_st.st_blocks
                and st.st_atim.tv_sec == self.ga_st.st_atim.tv_sec and st.st_atim.tv_nsec == self.ga_st.st_atim.tv_nsec
                and st.st_mtim.tv_sec == self.ga_st.st_mtim.tv_sec and st.st_mtim.tv_nsec == self.ga_st.st_mtim.tv_nsec
                and st.st_ctim.tv_sec == self.ga_st.st_ctim.tv_sec and st.st_ctim.tv_nsec == self.ga_st.st_ctim.tv_nsec):
            return 1
        self.ga_reply_len = 0
        self.n_ga_stale += 1
        return 0

    def set_getattr_call(self, bytes root_fh not None, int root_fd):
        """Answer the export root's GETATTR from C too: the canonical call (AUTH_NONE, NFSv3
        GETATTR of root_fh) is recognised byte for byte; root_fd is fstat'ed to tell whether the
        reply the Python path gave last (set_getattr_reply) still holds."""
        cdef bytes call
        cdef Py_ssize_t pad = (-len(root_fh)) & 3
        call = (bytes([0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0x86, 0xa3, 0, 0, 0, 3, 0, 0, 0, 1]) + bytes(16)
                + len(root_fh).to_bytes(4, "big") + root_fh + bytes(pad))
        if len(call) > GA_MAX:
            raise ValueError("root handle too long for the GETATTR cache")
        memcpy(self.ga_call, <const char *>call, len(call))
        self.ga_call_len = len(call)
        self.root_fd = root_fd
        self.ga_reply_len = 0

    def set_getattr_reply(self, reply, st):
        """The Python path's reply (whole, xid first) to the root GETATTR, and os.stat_result of the
        root taken BEFORE the reply was built: a change in between shows as a mismatch at the next
        fstat, never as a stale reply. Kept only if it is accepted SUCCESS with NFS3_OK."""
        cdef bytes b = bytes(reply)
        if self.ga_call_len == 0 or len(b) < 28 or len(b) - 4 > GA_MAX or b[4:28] != bytes(
                [0, 0, 0, 1] + [0] * 20):
            return False
        self.ga_st.st_dev = st.st_dev
        self.ga_st.st_ino = st.st_ino
        self.ga_st.st_mode = st.st_mode
        self.ga_st.st_nlink = st.st_nlink
        self.ga_st.st_uid = st.st_uid
        self.ga_st.st_gid = st.st_gid
        self.ga_st.st_rdev = st.st_rdev
        self.ga_st.st_size = st.st_size
        self.ga_st.st_blocks = st.st_blocks
        self.ga_st.st_atim.tv_sec, self.ga_st.st_atim.tv_nsec = divmod(st.st_atime_ns, 1000000000)
        self.ga_st.st_mtim.tv_sec, self.ga_st.st_mtim.tv_nsec = divmod(st.st_mtime_ns, 1000000000)
        self.ga_st.st_ctim.tv_sec, self.ga_st.st_ctim.tv_nsec = divmod(st.st_ctime_ns, 1000000000)
        memcpy(self.ga_reply, <const char *>b + 4, len(b) - 4)
        self.ga_reply_len = len(b) - 4
        self.n_ga_installed += 1
        return True

    cdef void _account(self) noexcept nogil:
        """Charge the thread CPU and wall time since the last accounting point to the current strategy."""
        cdef int64_t c = _thread_cpu_ns(), w = _mono_ns()
        self.n_cpu_ns[self.cur] += c - self.t_cpu
        self.n_wall_ns[self.cur] += w - self.t_wall
        self.t_cpu = c
        self.t_wall = w

    cdef void _idle(self) noexcept nogil:
        """After a wait (poll, coalescing sleep): its CPU (the sleep and the wake-up) is idle time,
        counted apart and charged to no strategy: it depends on when datagrams arrive, not on them."""
        cdef int64_t c = _thread_cpu_ns(), w = _mono_ns()
        self.n_idle_cpu_ns += c - self.t_cpu
        self.t_cpu = c
        self.t_wall = w

    cdef void _switch(self) noexcept nogil:
        """Next strategy of the rotation: the cache goes back to the allocator first, so the new
        strategy starts from an empty cache as its own pool would; that flush is charged to no one."""
        if self.pool.count:
            self.n_flushed += self.pool.count
            self.pool._free_to_allocator(self.pool.cache, self.pool.count)
            self.pool.count = 0
        self.cur = (self.cur + 1) % 3
        self.pool.strategy_id = self.cur
        self.slice_left = self.interleave
        self.n_switches += 1
        self.t_cpu = _thread_cpu_ns()
        self.t_wall = _mono_ns()

    cdef int _loop(self, int timeout_ms) noexcept nogil:
        cdef int turns = 0, r
        cdef timespec nap
        cdef pollfd p
        cdef bint polled = False
        self.t_cpu = _thread_cpu_ns()
        self.t_wall = _mono_ns()
        while turns < MAX_TURNS:
            r = self._turn()
            turns += 1
            self._account()
            if self.npass:
                return 0
            if r > 0:
                polled = False
                if self.interleave:
                    self.slice_left -= 1
                    if self.slice_left <= 0:
                        self._switch()
                if r < self.batch and self.coalesce_ns > 0:
                    nap.tv_sec = self.coalesce_ns // 1000000000
                    nap.tv_nsec = self.coalesce_ns % 1000000000
                    nanosleep(&nap, NULL)         # let the queue fill: interrupt coalescing (rx-usecs)
                    self._idle()
                continue
            if r < 0 and r != -EAGAIN and r != -EINTR:
                return r
            if polled or timeout_ms <= 0:
                return 0
            p.fd = self.fd
            p.events = POLLIN
            p.revents = 0
            r = poll(&p, 1, timeout_ms)
            self._idle()
            if r <= 0:
                return 0
            polled = True                    # one more turn after the wake-up, then report
        return 0

    def run(self, int timeout_ms):
        """Receive and judge datagrams with the GIL released (see the module doc).

        Returns the number of datagrams passed to Python (pass_to(i) for i below it), 0 when
        the loop returned for another reason (nothing came within timeout_ms, turns used up),
        or -errno from the socket (-EBADF once it is closed).
        """
        cdef int r
        if self.npass:
            raise RuntimeError("%d passed datagrams not handed over yet" % self.npass)
        with nogil:
            r = self._loop(timeout_ms)
        self.n_runs += 1
        if r < 0:
            return r
        self.n_pass[self.cur] += self.npass
        return self.npass

    def pass_to(self, int i):
        """Hand passed datagram i of the last run() to the endpoint: its page into slot 0 and its
        sender as the endpoint's peer. Returns the datagram's real length (> PAGE_SIZE: cut).
        The endpoint's slot 0 must be empty (recycle its pages after each datagram)."""
        cdef int slot
        if not 0 <= i < self.npass:
            raise IndexError("passed datagram %d of %d" % (i, self.npass))
        slot = self.pass_idx[i]
        if self.ring[slot] == NO_PAGE:
            raise ValueError("passed datagram %d was handed over already" % i)
        if self.ep.pages.slots[0] != NO_PAGE:
            raise ValueError("the endpoint's slot 0 still holds a page")
        self.ep.pages.slots[0] = self.ring[slot]
        self.ring[slot] = NO_PAGE
        memcpy(&self.ep.peer_addr, &self.rx_addr[slot], sizeof(sockaddr_storage))
        self.ep.peer_len = self.rx[slot].msg_hdr.msg_namelen
        self.passed_getattr = self.pass_ga[i]
        if i == self.npass - 1:
            self.npass = 0
        return self.pass_len[i]

    def end_pass(self):
        """Forget the passed datagrams not handed over (their pages stay in the ring for reuse)."""
        self.npass = 0

    def give_back(self):
        """Recycle the ring's pages into the pool (before it closes). Returns how many."""
        cdef int i, n = 0
        for i in range(BATCH):
            if self.ring[i] != NO_PAGE:
                self.done[n] = self.ring[i]
                self.ring[i] = NO_PAGE
                n += 1
        self.npass = 0
        self._recycle(self.done, n)
        return n

    def ring_pages(self):
        """Pages held in the receive ring now."""
        cdef int i, n = 0
        for i in range(BATCH):
            if self.ring[i] != NO_PAGE:
                n += 1
        return n

    def stats(self):
        """Counters by strategy ({name: {datagrams, tx, drop, pass, no_page, batches, tx_fail,
        rx_cpu_ns, rx_wall_ns}}; without interleave only the pool's strategy moves), plus runs and
        switches. tx counts replies sent; tx_fail the TX verdicts whose reply was dropped."""
        cdef int i
        out = {"runs": self.n_runs, "switches": self.n_switches, "flushed": self.n_flushed,
               "idle_cpu_ns": self.n_idle_cpu_ns, "getattr_tx": self.n_ga_tx, "getattr_stale": self.n_ga_stale,
               "getattr_installed": self.n_ga_installed,
               "strategy": STRATEGY_NAMES[self.cur],
               "by_strategy": {}}
        for i in range(3):
            out["by_strategy"][STRATEGY_NAMES[i]] = {
                "datagrams": self.n_datagrams[i], "tx": self.n_tx[i], "drop": self.n_drop[i],
                "pass": self.n_pass[i], "no_page": self.n_no_page[i], "batches": self.n_batches[i],
                "tx_fail": self.n_tx_fail[i], "rx_cpu_ns": self.n_cpu_ns[i], "rx_wall_ns": self.n_wall_ns[i]}
        return out
