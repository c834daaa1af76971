# FastServer (the shared state) and FastConn (one connection). Included by _fast.pyx.

ctypedef struct fconn_t:
    int fd
    uint8_t marker[4]
    int have                       # record-marker bytes received of the current fragment header
    uint32_t record_len            # body bytes of the current record received
    uint32_t frag_left             # body bytes of the current fragment still to come
    int last                       # the current fragment is the record's last
    int empty                      # empty fragments of the current record
    uint32_t max_record
    int32_t *saved                 # pages of a parked partial record (slots 0..saved_slots-1)
    int saved_slots
    double last_active, record_started, ready_at
    int busy, doomed
    int reason, err                # R_* and its errno, when the connection must go
    uint8_t addr[16]
    uint32_t addrlen
    int port


cdef class FastServer:
    """The fast path's shared state (see the module doc). Python configures it, then workers run."""

    cdef fp_conf conf
    cdef fp_fhcache fhc
    cdef fp_drc drc
    cdef fp_proofs pf
    cdef fp_lcache lc
    cdef bint pf_ready
    cdef int epfd, wake_r, wake_w
    cdef pthread_mutex_t park_lock
    cdef int64_t partial_pages, partial_budget
    cdef public int park_short          # a record could not be parked since the sweep last looked
    cdef volatile int stopping
    cdef pthread_mutex_t sweep_lock
    cdef double next_sweep
    cdef double record_timeout
    cdef int secure_ports
    cdef readonly Allocator alloc
    cdef readonly int strategy              # a compiled SVC_* id, or -1: single-py (Python)
    cdef readonly int nslots
    cdef readonly list workers

    def __cinit__(self, Allocator alloc not None, int strategy, int nslots, int drc_size, int fh_cache,
                  int64_t partial_budget, double record_timeout, bint secure_ports):
        cdef int fds[2]
        self.alloc = alloc
        self.strategy = strategy
        self.nslots = nslots
        self.partial_budget = partial_budget
        self.record_timeout = record_timeout
        self.secure_ports = secure_ports
        self.workers = []
        memset(&self.conf, 0, sizeof(fp_conf))
        fp_crc_init()
        if fp_fhc_init(&self.fhc, fh_cache) or fp_drc_init(&self.drc, drc_size):
            raise MemoryError("fast path caches")
        pthread_mutex_init(&self.park_lock, NULL)
        pthread_mutex_init(&self.sweep_lock, NULL)
        fp_lcache_init(&self.lc, 1.0)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0 or pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0:
            raise OSError(errno, "epoll/pipe")
        self.wake_r, self.wake_w = fds[0], fds[1]
        self._add(self.wake_r, TAG_WAKE, False)
        self.next_sweep = fp_now() + 1.0

    def configure(self, *, bytes mac_key, bytes name_key, bytes verf_key, bytes export_id, fsid, int root_fd,
                  root_dev, root_ino, int mount_id, bytes root_fh, bint read_only, bint root_squash,
                  anon_uid, anon_gid, bytes write_verf, rtmax, wtmax, dirmax, bytes fsinfo_xdr,
                  double fd_ttl, double send_timeout, int proof_cache=16384, bint whole_fs=False,
                  double listing_ttl=1.0):
        """Fill fp_conf (the Export's keys and identity, the server's policy, the TCP limits) and
        set up the containment proofs (fp_proof.h: at most proof_cache watched objects; whole_fs:
        the root is a whole file system's mount point, nothing to prove)."""
        memcpy(self.conf.mac_key, <const char *>mac_key, 32)
        memcpy(self.conf.name_key, <const char *>name_key, 32)
        memcpy(self.conf.verf_key, <const char *>verf_key, 32)
        memcpy(self.conf.export_id, <const char *>export_id, 4)
        self.conf.fsid = fsid
        self.conf.root_fd = root_fd
        self.conf.root_dev = root_dev
        self.conf.root_ino = root_ino
        self.conf.mount_id = mount_id
        memcpy(self.conf.root_fh, <const char *>root_fh, len(root_fh))
        self.conf.root_fh_len = len(root_fh)
        self.conf.read_only = read_only
        self.conf.root_squash = root_squash
        self.conf.anon_uid = anon_uid
        self.conf.anon_gid = anon_gid
        memcpy(self.conf.write_verf, <const char *>write_verf, 8)
        self.conf.rtmax = rtmax
        self.conf.wtmax = wtmax
        self.conf.dirmax = dirmax
        memcpy(self.conf.fsinfo_xdr, <const char *>fsinfo_xdr, 48)
        self.conf.fd_ttl = fd_ttl
        self.lc.ttl = listing_ttl        # READDIRPLUS continuation pages: Export.listings.ttl
        self.conf.send_timeout_ms = <uint32_t>(send_timeout * 1000)
        if self.pf_ready:
            fp_pf_destroy(&self.pf)
        if fp_pf_init(&self.pf, proof_cache, root_fd, root_dev, root_ino, mount_id, whole_fs):
            raise MemoryError("containment proofs")
        self.pf_ready = True

    cdef int _add(self, int fd, uint64_t tag, bint oneshot) except -1:
        cdef epoll_event ev
        ev.events = EPOLLIN | (EPOLLONESHOT if oneshot else 0)
        ev.data.u64 = tag
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, fd, &ev) != 0:
            raise OSError(errno, "epoll_ctl")
        return 0

    def add_listener(self, int fd):
        """The listening socket: a worker that gets it returns EV_ACCEPT (then rearm_listener)."""
        self._add(fd, TAG_LISTEN, True)

    def rearm_listener(self, int fd):
        cdef epoll_event ev
        ev.events = EPOLLIN | EPOLLONESHOT
        ev.data.u64 = TAG_LISTEN
        epoll_ctl(self.epfd, EPOLL_CTL_MOD, fd, &ev)

    def add_conn(self, FastConn conn not None):
        cdef epoll_event ev
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT
        ev.data.ptr = <void *>conn.c
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, conn.c.fd, &ev) != 0:
            raise OSError(errno, "epoll_ctl")

    def remove_conn(self, FastConn conn not None):
        epoll_ctl(self.epfd, EPOLL_CTL_DEL, conn.c.fd, NULL)

    def stop(self):
        """Every worker's serve() returns EV_STOP (the wake pipe stays readable)."""
        self.stopping = 1
        write(self.wake_w, b"x", 1)

    @property
    def stopped(self):
        return bool(self.stopping)

    def publish(self, bytes fh, dev, ino, double expires):
        """The Python path opened `fh` (the object (dev, ino)): cache its fd until `expires` (time.monotonic)."""
        fp_fhc_publish(&self.fhc, &self.conf, <const uint8_t *><const char *>fh, len(fh), dev, ino, expires)

    def insert_root(self, int opath_fd, dev, ino):
        """The export root's handle, valid for ever (Export._open_root checks no containment)."""
        fp_fhc_insert(&self.fhc, self.conf.root_fh, self.conf.root_fh_len, opath_fd, dev, ino, 1e300)

    def forget(self, bytes fh):
        fp_fhc_forget(&self.fhc, <const uint8_t *><const char *>fh, len(fh))

    def forget_inode(self, dev, ino):
        fp_fhc_forget_ino(&self.fhc, dev, ino)

    def sweep_caches(self):
        fp_fhc_sweep(&self.fhc)

    def proof_stats(self):
        """The containment proofs' counters (contain.Containment.stats' keys)."""
        cdef uint64_t out[FP_PF_NSTATS]
        fp_pf_stats(&self.pf, out)
        names = ("hits", "walks", "steps", "links", "scans", "outside", "raced", "ended", "epochs",
                 "evicted", "unwatched", "entries", "proven", "epoch")
        d = {names[i]: out[i] for i in range(FP_PF_NSTATS)}
        d["keep"] = bool(self.pf.keep)
        return d

    def release_caches(self):
        """Close every cached descriptor and free the listings: only once no worker runs."""
        fp_fhc_clear(&self.fhc)
        fp_lcache_clear(&self.lc)

    def cache_stats(self):
        return {"handles": self.fhc.count, "hits": self.fhc.hits, "misses": self.fhc.misses,
                "expired": self.fhc.expired, "inserts": self.fhc.inserts, "evictions": self.fhc.evictions,
                "drc_entries": self.drc.count, "listing_hits": self.lc.hits, "listing_misses": self.lc.misses}

    def drc_begin(self, bytes addr, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc, uint32_t length,
                  uint32_t crc):
        """The shared reply cache for the Python path: None (new), False (in progress) or the reply."""
        cdef fp_drckey k
        cdef uint8_t buf[4096]
        cdef uint32_t n = 0
        cdef int r
        self._key(&k, addr, xid, prog, vers, proc, length, crc)
        with nogil:
            r = fp_drc_begin(&self.drc, &k, buf, 4096, &n)
        if r == FP_DRC_NEW:
            return None
        if r == FP_DRC_IN_PROGRESS:
            return False
        return buf[:n]

    def drc_finish(self, bytes addr, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc, uint32_t length,
                   uint32_t crc, reply):
        cdef fp_drckey k
        cdef const uint8_t[:] view
        self._key(&k, addr, xid, prog, vers, proc, length, crc)
        if reply is None:
            fp_drc_finish(&self.drc, &k, NULL, 0)
        else:
            reply = bytes(reply)
            fp_drc_finish(&self.drc, &k, <const uint8_t *><const char *>reply, len(reply))

    cdef void _key(self, fp_drckey *k, bytes addr, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc,
                   uint32_t length, uint32_t crc):
        memset(k, 0, sizeof(fp_drckey))
        memcpy(k.addr, <const char *>addr, min(len(addr), 16))
        k.addrlen = len(addr)
        k.xid, k.prog, k.vers, k.proc, k.len, k.crc = xid, prog, vers, proc, length, crc

    cdef bint _park(self, int n) noexcept nogil:
        cdef bint ok
        pthread_mutex_lock(&self.park_lock)
        ok = self.partial_pages + n <= self.partial_budget
        if ok:
            self.partial_pages += n
        else:
            self.park_short = 1          # the sweep then closes parked records that went idle
        pthread_mutex_unlock(&self.park_lock)
        return ok

    cdef void _unpark(self, int n) noexcept nogil:
        pthread_mutex_lock(&self.park_lock)
        self.partial_pages -= n
        pthread_mutex_unlock(&self.park_lock)

    cdef bint _claim_sweep(self, double now) noexcept nogil:
        cdef bint mine = False
        pthread_mutex_lock(&self.sweep_lock)
        if now >= self.next_sweep:
            self.next_sweep = now + 1.0
            mine = True
        pthread_mutex_unlock(&self.sweep_lock)
        return mine

    def __dealloc__(self):
        if self.epfd > 0:
            close(self.epfd)
            close(self.wake_r)
            close(self.wake_w)
            fp_fhc_clear(&self.fhc)
            fp_lcache_clear(&self.lc)
        if self.pf_ready:
            fp_pf_destroy(&self.pf)


cdef class FastConn:
    """One client connection on the fast path (see the module doc). Python owns the socket."""

    cdef fconn_t *c
    cdef readonly object sock, peer
    cdef public object error_reason
    cdef readonly FastServer srv

    def __cinit__(self, FastServer srv not None, sock, peer, bytes addr, uint32_t max_record):
        self.srv = srv
        self.sock = sock
        self.peer = peer
        self.error_reason = None
        self.c = <fconn_t *>calloc(1, sizeof(fconn_t))
        if self.c == NULL:
            raise MemoryError()
        self.c.saved = <int32_t *>malloc(srv.nslots * sizeof(int32_t))
        if self.c.saved == NULL:
            raise MemoryError()
        self.c.fd = sock.fileno()
        self.c.max_record = max_record
        memcpy(self.c.addr, <const char *>addr, min(len(addr), 16))
        self.c.addrlen = len(addr)
        self.c.port = peer[1]
        self.c.last_active = fp_now()

    @property
    def fd(self):
        return self.c.fd

    @property
    def record_len(self):
        return self.c.record_len

    @property
    def busy(self):
        return bool(self.c.busy)

    @property
    def closed(self):
        return self.c.fd < 0

    @property
    def saved_slots(self):
        return self.c.saved_slots

    def idle_for(self, double now):
        return now - self.c.last_active

    def record_age(self, double now):
        return now - self.c.record_started if self.c.record_started else 0.0

    def reason(self):
        """Why the connection is closing: rpcsrv.xprt.tcp's error_reason label, or None."""
        if self.error_reason is not None:
            return self.error_reason
        r = REASONS[self.c.reason]
        if self.c.reason in (R_RECV_ERRNO, R_SEND_ERRNO):
            import errno as _errno
            return r + "_" + _errno.errorcode.get(self.c.err, "error").lower()
        return r

    def doom(self, reason):
        """The sweep's verdict: hand the connection to a worker, which closes it."""
        self.error_reason = reason
        self.c.doomed = 1
        shutdown(self.c.fd, SHUT_RDWR)

    def record_done(self):
        self.c.record_len = 0
        self.c.frag_left = 0
        self.c.have = 0
        self.c.last = 0
        self.c.empty = 0

    def rearm(self):
        """Back into the epoll set, one-shot (the worker is done with it)."""
        cdef epoll_event ev
        self.c.busy = 0
        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT
        ev.data.ptr = <void *>self.c
        return epoll_ctl(self.srv.epfd, EPOLL_CTL_MOD, self.c.fd, &ev) == 0

    def send(self, rqst, Py_ssize_t slot1, Py_ssize_t len1, Py_ssize_t slot2, Py_ssize_t len2, double timeout):
        """xprt.tcpconn.send_reply's transport call: header then payload pages; False if it must go."""
        from rpcsrv.xprt import _pageio
        r = _pageio.send_ranges(self.c.fd, rqst.pages, slot1, len1, slot2, len2, int(timeout * 1000))
        if r < 0:
            import errno as _errno
            self.error_reason = "send_timeout" if r == -_errno.ETIMEDOUT else \
                "send_" + _errno.errorcode.get(-r, "error").lower()
            return False
        self.c.last_active = fp_now()
        return True

    def close(self):
        """Give parked pages back and close the socket; idempotent. The caller took it out of epoll."""
        cdef Py_ssize_t n
        cdef cpu_t *cpu
        if self.c.fd < 0:
            return
        if self.c.saved_slots:
            n = self.c.saved_slots
            cpu = self.srv.alloc.this_cpu()
            self.srv.alloc.free_slots(cpu, self.c.saved, n)
            self.srv._unpark(<int>n)
            self.c.saved_slots = 0
        self.c.fd = -1
        try:
            self.sock.close()
        except OSError:
            pass

    def __dealloc__(self):
        if self.c != NULL:
            free(self.c.saved)
            free(self.c)
