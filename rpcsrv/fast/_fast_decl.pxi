# Declarations of the C parts (fp_*.h) and of the system calls the loop uses. Included by _fast.pyx.

cdef extern from "fp_process.h" nogil:
    ctypedef struct fp_conf:
        uint8_t mac_key[32]
        uint8_t name_key[32]
        uint8_t verf_key[32]
        uint8_t export_id[4]
        uint64_t fsid
        int root_fd
        uint64_t root_dev
        uint64_t root_ino
        int mount_id
        uint8_t root_fh[64]
        uint32_t root_fh_len
        int read_only
        int root_squash
        uint32_t anon_uid
        uint32_t anon_gid
        uint8_t write_verf[8]
        uint32_t rtmax
        uint32_t wtmax
        uint32_t dirmax
        uint8_t fsinfo_xdr[48]
        double fd_ttl
        uint32_t send_timeout_ms
    ctypedef struct fp_fhcache:
        uint32_t count
        uint64_t hits, misses, expired, inserts, evictions
    ctypedef struct fp_proofs:
        int ifd, keep, whole_fs
    ctypedef struct fp_drckey:
        uint8_t addr[16]
        uint32_t addrlen, xid, prog, vers, proc, len, crc
    ctypedef struct fp_drc:
        uint32_t count
    ctypedef struct fp_lcache:
        double ttl
        uint64_t hits, misses
    ctypedef struct xw_t:
        char *arena
        const int32_t *slots
        int slot
        int nslots
        uint32_t off
        int bad
    ctypedef struct fp_call:
        uint32_t xid, prog, vers, proc
        int have_cred
        uint32_t uid, gid, ngids
        uint32_t gids[16]
        uint32_t args
    ctypedef struct fp_who:
        uint32_t uid, gid
        int ngroups
        uint32_t groups[17]
    ctypedef struct fp_req:
        const fp_conf *conf
        fp_fhcache *fhc
        fp_drc *drc
        fp_proofs *pf
        fp_lcache *lc
        char *arena
        int32_t *slots
        int nslots
        uint32_t rec_len
        const uint8_t *rec
        uint32_t head_len
        const uint8_t *peer
        uint32_t peer_len
        fp_call call
        xw_t w
        int reply_slot
        uint32_t payload
        uint32_t status
        int send
        int counted
        int drc_state
        uint64_t read_bytes, write_bytes
    enum:
        FP_SERVED
        FP_FALLBACK
        FP_MAX_IOV
        FP_IOV_MAX
        FP_DRC_NEW
        FP_DRC_IN_PROGRESS
        FP_DRC_HIT
    int fp_process(fp_req *q)
    int fp_proc_has_fn(uint32_t proc)
    void fp_crc_init()
    uint32_t fp_crc32(const uint8_t *p, uint32_t n)
    int fp_fhc_init(fp_fhcache *c, uint32_t max)
    void fp_fhc_publish(fp_fhcache *c, const fp_conf *conf, const uint8_t *fh, uint32_t n, uint64_t dev,
                        uint64_t ino, double expires)
    void fp_fhc_insert(fp_fhcache *c, const uint8_t *fh, uint32_t n, int fd, uint64_t dev, uint64_t ino,
                       double expires)
    void fp_fhc_forget(fp_fhcache *c, const uint8_t *fh, uint32_t n)
    void fp_fhc_clear(fp_fhcache *c)
    void fp_fhc_sweep(fp_fhcache *c)
    void fp_fhc_forget_ino(fp_fhcache *c, uint64_t dev, uint64_t ino)
    int fp_pf_init(fp_proofs *P, uint32_t max, int root_fd, uint64_t root_dev, uint64_t root_ino, int mount_id,
                   int whole_fs)
    void fp_pf_destroy(fp_proofs *P)
    void fp_lcache_init(fp_lcache *c, double ttl)
    void fp_lcache_clear(fp_lcache *c)
    void fp_pf_stats(fp_proofs *P, uint64_t *out)
    enum:
        FP_PF_NSTATS
    int fp_drc_init(fp_drc *d, uint32_t size)
    int fp_drc_begin(fp_drc *d, const fp_drckey *k, uint8_t *out, uint32_t cap, uint32_t *out_len)
    void fp_drc_finish(fp_drc *d, const fp_drckey *k, const uint8_t *reply, uint32_t len)
    void nb_blake2s(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *inp,
                    size_t inlen)
    void nb_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *inp,
                    size_t inlen)
    void xw_success(xw_t *w, uint32_t xid)
    void xw_u32(xw_t *w, uint32_t v)
    void fp_put32(uint8_t *p, uint32_t v)
    double fp_now()
    # the pure twins the thin wrappers at the end of _fast_worker.pxi expose (tests/fast/test_*_twins.py)
    uint32_t fp_check_name(const uint8_t *n, uint32_t len, int allow_dots)
    void fp_who_from(fp_who *w, const fp_conf *c, int have_cred, uint32_t uid, uint32_t gid,
                     const uint32_t *gids, int ngids)
    int fp_bits(const struct_stat *st, const fp_who *w)
    int fp_may_read(const struct_stat *st, const fp_who *w)
    int fp_may_write(const struct_stat *st, const fp_who *w)
    uint32_t fp_access(const struct_stat *st, uint32_t mask, const fp_who *w, int read_only)
    int fp_parse_call(const uint8_t *p, uint32_t len, fp_call *c)

# fp_stats.h includes fp_tables.h, the tables generated from the Python declarations
# (rpcsrv/fast/gen_tables.py): they are declared here, with the counters
cdef extern from "fp_stats.h" nogil:
    enum:
        FP_NPROC
        FP_NSTAT
        FP_HBUCKETS
        FP_ABUCKETS
        FP_PBUCKETS
        FP_NERRNO
        FP_NERRNO_MAP
        FP_NFS_PROGRAM
        FP_NFS_V3
        FP_FHSIZE
        FP_MAXNAMLEN
        FP_NAME_DECODE_MAX
        FP_WAIT_DOUBLINGS
        FP_STALL_WAITS
        FP_STALL_PAUSE_US
        FP_PARK_WAIT_MS
        FP_MAX_EMPTY_FRAGMENTS
        ACC_READ
        ACC_LOOKUP
        ACC_MODIFY
        ACC_EXTEND
        ACC_DELETE
        ACC_EXECUTE
        FP_CREATE_UNCHECKED
        FP_CREATE_GUARDED
        FP_CREATE_EXCLUSIVE
        FP_TIME_DONT_CHANGE
        FP_TIME_SET_TO_SERVER_TIME
        FP_TIME_SET_TO_CLIENT_TIME
        FP_STABLE_UNSTABLE
        FP_STABLE_DATA_SYNC
        FP_STABLE_FILE_SYNC
    const uint64_t FP_MAXFILESIZE
    const double FP_WAIT_MIN
    const double FP_WAIT_MAX
    ctypedef struct fp_proc_info:
        const char *name
        uint8_t idempotent, reads, in_c
    const fp_proc_info fp_procs[]
    const char *fp_stat_names[]
    const uint32_t fp_errno_nfsstat[]
    const uint64_t fp_rpc_bounds_ns[]
    const uint64_t fp_page_bounds[]
    ctypedef struct fp_stats:
        uint64_t requests[FP_NPROC][FP_NSTAT]
        uint64_t dur[FP_NPROC][FP_HBUCKETS]
        uint64_t dur_sum_ns[FP_NPROC]
        uint64_t fallbacks[FP_NPROC + 1]
        uint64_t alloc[FP_ABUCKETS]
        uint64_t alloc_sum_ns
        uint64_t pages[FP_PBUCKETS]
        uint64_t pages_sum
        uint64_t scanned[FP_PBUCKETS]
        uint64_t scanned_sum
        uint64_t waits, stalls
        uint64_t queue[FP_HBUCKETS]
        uint64_t queue_sum_ns
        uint64_t read_bytes, write_bytes
        uint64_t drc_hit, drc_miss, drc_in_progress
        uint64_t in_flight
        uint64_t recv_errno[FP_NERRNO]
        uint64_t send_errno[FP_NERRNO]
        uint64_t reply_too_large
    uint32_t fp_stat_values[FP_NSTAT]
    int fp_stat_index(uint32_t s)
    int fp_rpc_bucket(uint64_t v_ns)
    int fp_alloc_bucket(uint64_t v_ns)
    uint64_t fp_alloc_bounds_dns[FP_ABUCKETS - 1]
    int fp_page_bucket(uint64_t pages)
    uint64_t fp_now_ns()

cdef extern from "sys/epoll.h" nogil:
    cdef union epoll_data_t "epoll_data":
        void *ptr
        int fd
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *ev)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    int EPOLLIN, EPOLLRDHUP, EPOLLONESHOT, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, EPOLL_CLOEXEC

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int SHUT_RDWR

cdef extern from "unistd.h" nogil:
    int close(int fd)
    int pipe2(int *fds, int flags)
    ssize_t write(int fd, const void *buf, size_t n)
    int O_CLOEXEC "O_CLOEXEC"
    int O_NONBLOCK "O_NONBLOCK"
    int usleep(unsigned int us)

cdef extern from "pthread.h" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, void *attr)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)

# the tags of the epoll set's non-connection members (connections carry their fconn_t pointer)
cdef enum:
    TAG_LISTEN = 1
    TAG_WAKE = 2

# what serve() returns to Python
cdef enum:
    EV_STOP = 0
    EV_RECORD = 1
    EV_CLOSE = 2
    EV_ACCEPT = 3
    EV_SWEEP = 4
    EV_REFILL = 5

# receive()'s outcomes, and the reasons a connection closes (rpcsrv.xprt.tcp's labels)
cdef enum:
    RX_RECORD = 0
    RX_PARTIAL = 1
    RX_CLOSED = 2

cdef enum:
    R_NONE = 0
    R_TRUNCATED = 1
    R_ZERO_FRAGMENT = 2
    R_TOO_LARGE = 3
    R_RECORD_TIMEOUT = 4
    R_IDLE_TIMEOUT = 5
    R_SEND_TIMEOUT = 6
    R_RECV_ERRNO = 7
    R_SEND_ERRNO = 8
    R_SERVER_BUG = 9
    R_EOF = 10              # the client closed between records: a disconnect, not an error
    R_RESET = 11            # the client reset the connection between records: likewise
    R_EMPTY_RECORD = 12     # a record of 0 bytes (empty fragments only)
    R_PARKING_FULL = 13     # over the parking budget and the rest did not come within FP_PARK_WAIT_MS

REASONS = (None, "truncated_record", "zero_fragment", "record_too_large", "record_timeout",
           "idle_timeout", "send_timeout", "recv", "send", "server_bug", "eof", "reset", "empty_record",
           "parking_full")
