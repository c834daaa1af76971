/* The fast path's request and its file procedures: GETATTR, ACCESS, READ, WRITE, COMMIT, FSSTAT,
 * FSINFO, SETATTR (directory procedures: fp_dirops.h, fp_readdir.h).
 *
 * Each is the C twin of its handler in rpcsrv.nfsd.nfs3 and answers byte for byte as it does
 * (nfsd/nfs3.py has the semantics; comments here name the steps). The rule that keeps the two
 * paths equal: a procedure first decodes its arguments and resolves its handles; anything it does
 * not serve here (a decode error, a handle not verified in the cache, an object of another type,
 * a read-only export where the reply would need more) returns FP_FALLBACK before any side effect,
 * and the Python path answers. Once it has started, it answers everything itself, errors included,
 * with the statuses and attributes the Python handler puts in the same reply.
 * A request belongs to one worker thread; the shared structures have their own locks. */
#ifndef NFSBULK_FP_OPS_H
#define NFSBULK_FP_OPS_H

#include <sys/statvfs.h>
#include <sys/uio.h>

#include "fp_drc.h"
#include "fp_fh.h"
#include "fp_listing.h"
#include "fp_proof.h"

enum { FP_SERVED = 0, FP_FALLBACK = 1 };
/* iovecs a page range can need (a 4 MiB payload is 1024 pages) and at most per system call */
#define FP_MAX_IOV 1040
#define FP_IOV_MAX 1024

typedef struct {
    const fp_conf *conf;
    fp_fhcache *fhc;
    fp_drc *drc;
    fp_proofs *pf;                   /* the containment proofs (fp_proof.h) */
    fp_lcache *lc;                   /* READDIRPLUS listings (fp_listing.h) */
    int reading;                     /* a read procedure: proofs in `txn`, checked before the reply goes */
    fp_txn txn;
    char *arena;                     /* the allocator's arena: page p is at arena + (p << 12) */
    int32_t *slots;                  /* the request's page array */
    int nslots;
    uint32_t rec_len;                /* the call record, from slot 0 */
    const uint8_t *rec;              /* its first page */
    uint32_t head_len;               /* min(rec_len, 4096) */
    const uint8_t *peer;             /* the client's address bytes (reply cache key) */
    uint32_t peer_len;
    fp_call call;
    fp_who who;
    xw_t w;                          /* the reply, after the record marker in slot reply_slot */
    int reply_slot;
    uint32_t payload;                /* READ data in the slots after reply_slot (pad not included) */
    uint32_t status;                 /* nfsstat3 of the reply: the metric's status label */
    int send, counted;               /* 0: nothing to send; 0: not counted (a reply cache hit) */
    int drc_state;                   /* -1, or FP_DRC_* of this call */
    uint64_t read_bytes, write_bytes;
} fp_req;

/* A handle resolved from the cache: the pinned entry and the object's current lstat. */
typedef struct {
    fp_fhent *e;
    struct stat st;
} fp_obj;

/* open_handle(): the cached fd of an authentic handle, still on the export's device, linked, and
 * proven inside now (fp_proof.h). 0, or -1 (fall back: the Python path answers STALE, BADHANDLE or
 * JUKEBOX, or opens a handle the cache does not hold). */
static int fp_resolve(fp_req *q, const uint8_t *fh, uint32_t n, fp_obj *o) {
    uint8_t ht;
    const uint8_t *hb;
    uint32_t hn;
    fp_parent par;
    if (fp_fh_check(q->conf, fh, n, &ht, &hb, &hn) != 0) return -1;
    o->e = fp_fhc_get(q->fhc, fh, n);
    if (!o->e) return -1;
    fp_fh_parent(fh, n, &par);
    if (fstat(o->e->fd, &o->st) != 0) {
        fp_fhc_put(q->fhc, o->e);
        o->e = NULL;
        return -1;
    }
    if (o->st.st_nlink == 0) {
        /* removed behind our back: close every fd of it now (its space and inode number go free);
         * Python answers STALE */
        fp_fhc_put(q->fhc, o->e);
        o->e = NULL;
        fp_fhc_forget_ino(q->fhc, (uint64_t)o->st.st_dev, (uint64_t)o->st.st_ino);
        return -1;
    }
    if ((uint64_t)o->st.st_dev != q->conf->root_dev ||
        fp_pf_prove(q->pf, o->e->fd, &o->st, &par, q->reading ? &q->txn : NULL) != 1) {
        fp_fhc_put(q->fhc, o->e);
        o->e = NULL;
        return -1;
    }
    return 0;
}

static inline void fp_release(fp_req *q, fp_obj *o) {
    if (o->e) fp_fhc_put(q->fhc, o->e);
    o->e = NULL;
}

/* the reply so far: the success header and the status word */
static inline void fp_begin_reply(fp_req *q, uint32_t status) {
    xw_success(&q->w, q->call.xid);
    xw_u32(&q->w, status);
    q->status = status;
}

static inline int fp_fstat_ok(int fd, struct stat *st) { return fstat(fd, st) == 0; }

/* preadv/pwritev of n bytes at record/page offset `off` from slot `slot`; bytes moved or -errno.
 * A read stops at end of file. */
static ssize_t fp_page_io(fp_req *q, int fd, int slot, uint64_t off, uint64_t n, uint64_t file_off, int write) {
    struct iovec iov[FP_MAX_IOV];
    int cnt = 0;
    uint64_t total = 0;
    while (n) {
        int sl = slot + (int)(off >> 12);
        uint32_t o = off & (FP_PAGE - 1), k = FP_PAGE - o;
        if (sl >= q->nslots || q->slots[sl] < 0 || cnt == FP_MAX_IOV) return -EFAULT;
        if (k > n) k = (uint32_t)n;
        iov[cnt].iov_base = q->arena + ((size_t)q->slots[sl] << 12) + o;
        iov[cnt].iov_len = k;
        cnt++;
        off += k;
        n -= k;
    }
    struct iovec *v = iov;
    while (cnt) {
        int c = cnt < FP_IOV_MAX ? cnt : FP_IOV_MAX;
        ssize_t r = write ? pwritev(fd, v, c, (off_t)(file_off + total))
                          : preadv(fd, v, c, (off_t)(file_off + total));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (r == 0) break;
        total += (uint64_t)r;
        while (cnt && (size_t)r >= v->iov_len) { r -= (ssize_t)v->iov_len; v++; cnt--; }
        if (cnt && r) { v->iov_base = (char *)v->iov_base + r; v->iov_len -= (size_t)r; }
    }
    return (ssize_t)total;
}

/* sattr3 as decoded by nfs3xdr.decode_sattr3: which fields are set, and times as how (0 leave,
 * 1 server time, 2 explicit) */
typedef struct {
    int set_mode, set_uid, set_gid, set_size, atime_how, mtime_how;
    uint32_t mode, uid, gid, at_s, at_ns, mt_s, mt_ns;
    uint64_t size;
} fp_sattr;

static void xr_sattr(xr_t *r, fp_sattr *s) {
    memset(s, 0, sizeof *s);
    if ((s->set_mode = xr_bool(r))) s->mode = xr_u32(r);
    if ((s->set_uid = xr_bool(r))) s->uid = xr_u32(r);
    if ((s->set_gid = xr_bool(r))) s->gid = xr_u32(r);
    if ((s->set_size = xr_bool(r))) s->size = xr_u64(r);
    s->atime_how = (int)xr_u32(r);
    if (s->atime_how == FP_TIME_SET_TO_CLIENT_TIME) { s->at_s = xr_u32(r); s->at_ns = xr_u32(r); }
    s->mtime_how = (int)xr_u32(r);
    if (s->mtime_how == FP_TIME_SET_TO_CLIENT_TIME) { s->mt_s = xr_u32(r); s->mt_ns = xr_u32(r); }
    if (s->atime_how > FP_TIME_SET_TO_CLIENT_TIME || s->mtime_how > FP_TIME_SET_TO_CLIENT_TIME) r->bad = 1;
}

/* perm.check_sattr: 0 or the nfsstat3; drops an unchanged uid/gid (not for a new object) */
static uint32_t fp_check_sattr(const struct stat *st, fp_sattr *s, const fp_who *w, int new) {
    int root = w->uid == 0, owner = root || new || w->uid == (uint32_t)st->st_uid;
    if (s->set_uid && (new || s->uid != (uint32_t)st->st_uid)) {
        if (!root && !(new && s->uid == w->uid)) return NFS3ERR_PERM;
    } else s->set_uid = 0;
    if (s->set_gid && (new || s->gid != (uint32_t)st->st_gid)) {
        if (!root && !(owner && fp_in_groups(w, s->gid))) return NFS3ERR_PERM;
    } else s->set_gid = 0;
    if (s->set_mode && !owner) return NFS3ERR_PERM;
    if (s->set_size && !new) {
        if (S_ISDIR(st->st_mode)) return NFS3ERR_ISDIR;
        if (!S_ISREG(st->st_mode)) return NFS3ERR_INVAL;
        if (!fp_may_write(st, w)) return NFS3ERR_ACCES;
        if (s->size > FP_MAXFILESIZE) return NFS3ERR_FBIG;
    }
    if ((s->atime_how || s->mtime_how) && !owner) {
        if (s->atime_how == FP_TIME_SET_TO_CLIENT_TIME || s->mtime_how == FP_TIME_SET_TO_CLIENT_TIME)
            return NFS3ERR_PERM;
        if (!fp_may_write(st, w)) return NFS3ERR_ACCES;
    }
    return 0;
}

static int fp_proc_chmod(int fd, mode_t mode) {
    char p[40];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    return chmod(p, mode) == 0 ? 0 : -errno;
}

static int fp_proc_truncate(int fd, uint64_t size) {
    char p[40];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    return truncate(p, (off_t)size) == 0 ? 0 : -errno;
}

static int fp_utimes(int fd, const fp_sattr *s) {
    struct timespec ts[2];
    ts[0].tv_sec = s->atime_how == FP_TIME_SET_TO_CLIENT_TIME ? s->at_s : 0;
    ts[0].tv_nsec = s->atime_how == FP_TIME_DONT_CHANGE ? UTIME_OMIT
                    : s->atime_how == FP_TIME_SET_TO_SERVER_TIME ? UTIME_NOW : (long)s->at_ns;
    ts[1].tv_sec = s->mtime_how == FP_TIME_SET_TO_CLIENT_TIME ? s->mt_s : 0;
    ts[1].tv_nsec = s->mtime_how == FP_TIME_DONT_CHANGE ? UTIME_OMIT
                    : s->mtime_how == FP_TIME_SET_TO_SERVER_TIME ? UTIME_NOW : (long)s->mt_ns;
    return utimensat(fd, "", ts, AT_EMPTY_PATH) == 0 ? 0 : -errno;
}

static int fp_chown(int fd, int64_t uid, int64_t gid) {
    return fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

/* vfs.apply_sattr on the object behind O_PATH fd with lstat st; 0 or -errno */
static int fp_apply_sattr(int fd, const struct stat *st, const fp_sattr *s, const fp_who *w, int kill_sid) {
    int is_link = S_ISLNK(st->st_mode), r;
    struct stat cur;
    if (is_link || S_ISDIR(st->st_mode)) kill_sid = 0;
    if (s->set_size && !is_link && (r = fp_proc_truncate(fd, s->size))) return r;
    if (s->set_uid || s->set_gid) {
        if ((r = fp_chown(fd, s->set_uid ? (int64_t)s->uid : -1, s->set_gid ? (int64_t)s->gid : -1))) return r;
    } else if (kill_sid && !s->set_mode) {
        mode_t m, n;
        if (fstat(fd, &cur) != 0) return -errno;
        m = cur.st_mode & 07777;
        n = m & ~(mode_t)S_ISUID;
        if (n & S_IXGRP) n &= ~(mode_t)S_ISGID;
        if (n != m && (r = fp_proc_chmod(fd, n))) return r;
    }
    if (s->set_mode && !is_link) {
        mode_t m = s->mode & 07777;
        if (kill_sid) {
            m &= ~(mode_t)S_ISUID;
            if (m & S_IXGRP) m &= ~(mode_t)S_ISGID;
        }
        if ((m & S_ISGID) && w->uid != 0 && !S_ISDIR(st->st_mode)) {
            uint32_t g = s->set_gid ? s->gid : (uint32_t)st->st_gid;
            if (!fp_in_groups(w, g)) m &= ~(mode_t)S_ISGID;
        }
        if ((r = fp_proc_chmod(fd, m))) return r;
    }
    if ((s->atime_how || s->mtime_how) && (r = fp_utimes(fd, s))) return r;
    return 0;
}

/* ---------------------------------------------------------------- the procedures */

static int fp_getattr(fp_req *q, xr_t *r) {
    uint32_t n;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    fp_obj o = {0};
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    xw_success(&q->w, q->call.xid);
    q->status = NFS3_OK;
    xw_u32(&q->w, NFS3_OK);
    xw_fattr3(&q->w, &o.st, q->conf->fsid);
    fp_release(q, &o);
    return FP_SERVED;
}

static int fp_access_proc(fp_req *q, xr_t *r) {
    uint32_t n, mask;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    fp_obj o = {0};
    mask = xr_u32(r);
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    fp_begin_reply(q, NFS3_OK);
    xw_post_attr(&q->w, &o.st, q->conf->fsid);
    xw_u32(&q->w, fp_access(&o.st, mask, &q->who, q->conf->read_only));
    fp_release(q, &o);
    return FP_SERVED;
}

/* the open-file lease: a regular file's I/O fd and its fstat (nlink 0 falls back: STALE) */
static int fp_lease(fp_req *q, fp_obj *o, int write, int *fd, struct stat *st) {
    if (!S_ISREG(o->st.st_mode)) return -1;
    *fd = fp_fhent_iofd(q->fhc, o->e, write);
    if (*fd < 0 || fstat(*fd, st) != 0 || st->st_nlink == 0) return -1;
    return 0;
}

static int fp_read(fp_req *q, xr_t *r) {
    uint32_t n, count, pad;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    uint64_t offset;
    fp_obj o = {0};
    struct stat st, st2;
    int fd;
    ssize_t got;
    offset = xr_u64(r);
    count = xr_u32(r);
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    if (fp_lease(q, &o, 0, &fd, &st)) { fp_release(q, &o); return FP_FALLBACK; }
    if (!fp_may_read(&st, &q->who)) {
        fp_begin_reply(q, NFS3ERR_ACCES);
        xw_post_attr(&q->w, &st, q->conf->fsid);
        fp_release(q, &o);
        return FP_SERVED;
    }
    if (count > q->conf->rtmax) count = q->conf->rtmax;
    if (offset > FP_MAXFILESIZE) {
        fp_begin_reply(q, NFS3_OK);
        xw_post_attr(&q->w, &st, q->conf->fsid);
        xw_u32(&q->w, 0); xw_u32(&q->w, 1); xw_u32(&q->w, 0);
        fp_release(q, &o);
        return FP_SERVED;
    }
    got = 0;
    if (count) {
        uint64_t room = (uint64_t)(q->nslots - q->reply_slot - 1) * FP_PAGE, want = count;
        if (want > room) want = room;
        got = fp_page_io(q, fd, q->reply_slot + 1, 0, want, offset, 0);
    }
    if (got < 0 || fstat(fd, &st2) != 0) {
        fp_begin_reply(q, fp_nfsstat(got < 0 ? (int)-got : errno));
        xw_post_attr(&q->w, &st, q->conf->fsid);
        fp_release(q, &o);
        return FP_SERVED;
    }
    fp_begin_reply(q, NFS3_OK);
    xw_post_attr(&q->w, &st2, q->conf->fsid);
    xw_u32(&q->w, (uint32_t)got);
    xw_u32(&q->w, ((uint32_t)got < count || offset + (uint64_t)got >= (uint64_t)st2.st_size) ? 1 : 0);
    xw_u32(&q->w, (uint32_t)got);
    q->payload = (uint32_t)got;
    pad = (-(uint32_t)got) & 3;
    if (pad) {                                             /* the XDR padding after the data */
        uint64_t at = (uint64_t)got;
        xw_t z = {q->arena, q->slots, q->reply_slot + 1, q->nslots, (uint32_t)at, 0};
        xw_bytes(&z, "\0\0\0", pad);
    }
    q->read_bytes += (uint64_t)got;
    fp_release(q, &o);
    return FP_SERVED;
}

static int fp_write(fp_req *q, xr_t *r) {
    uint32_t n, count, stable, dlen, doff;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    uint64_t offset;
    fp_obj o = {0};
    struct stat pre, post;
    int fd;
    ssize_t got;
    uint32_t length;
    offset = xr_u64(r);
    count = xr_u32(r);
    stable = xr_u32(r);
    dlen = xr_u32(r);
    if (r->bad || stable > FP_STABLE_FILE_SYNC || dlen != count) return FP_FALLBACK;
    doff = r->pos;
    if ((uint64_t)doff + ((dlen + 3u) & ~3u) != q->rec_len) return FP_FALLBACK;  /* trailing bytes */
    if (q->conf->read_only || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    if (fp_lease(q, &o, 1, &fd, &pre)) { fp_release(q, &o); return FP_FALLBACK; }
    if (!fp_may_write(&pre, &q->who)) {
        fp_begin_reply(q, NFS3ERR_ACCES);
        xw_wcc(&q->w, &pre, fp_fstat_ok(fd, &post) ? &post : NULL, q->conf->fsid);
        fp_release(q, &o);
        return FP_SERVED;
    }
    length = dlen > q->conf->wtmax ? q->conf->wtmax : dlen;
    if (offset > FP_MAXFILESIZE || length > FP_MAXFILESIZE - offset) {   /* offset + length, unwrapped */
        fp_begin_reply(q, NFS3ERR_FBIG);
        xw_wcc(&q->w, &pre, fp_fstat_ok(fd, &post) ? &post : NULL, q->conf->fsid);
        fp_release(q, &o);
        return FP_SERVED;
    }
    got = length ? fp_page_io(q, fd, 0, doff, length, offset, 1) : 0;
    if (got >= 0) q->write_bytes += (uint64_t)got;
    if (got >= 0 && stable == FP_STABLE_FILE_SYNC && fsync(fd) != 0) got = -errno;
    else if (got >= 0 && stable == FP_STABLE_DATA_SYNC && fdatasync(fd) != 0) got = -errno;
    if (got < 0 || fstat(fd, &post) != 0) {
        fp_begin_reply(q, fp_nfsstat(got < 0 ? (int)-got : errno));
        xw_wcc(&q->w, &pre, fp_fstat_ok(fd, &post) ? &post : NULL, q->conf->fsid);
        fp_release(q, &o);
        return FP_SERVED;
    }
    fp_begin_reply(q, NFS3_OK);
    xw_wcc(&q->w, &pre, &post, q->conf->fsid);
    xw_u32(&q->w, (uint32_t)got);
    xw_u32(&q->w, stable);
    xw_bytes(&q->w, q->conf->write_verf, 8);
    fp_release(q, &o);
    return FP_SERVED;
}

static int fp_commit(fp_req *q, xr_t *r) {
    uint32_t n;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    fp_obj o = {0};
    struct stat pre, post;
    int fd, ok;
    xr_u64(r);
    xr_u32(r);
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    if (fp_lease(q, &o, 0, &fd, &pre)) { fp_release(q, &o); return FP_FALLBACK; }
    ok = fsync(fd) == 0;
    fp_begin_reply(q, ok ? NFS3_OK : fp_nfsstat(errno));
    xw_wcc(&q->w, &pre, fp_fstat_ok(fd, &post) ? &post : NULL, q->conf->fsid);
    if (ok) xw_bytes(&q->w, q->conf->write_verf, 8);
    fp_release(q, &o);
    return FP_SERVED;
}

static int fp_fsquery(fp_req *q, xr_t *r, int which) {
    uint32_t n;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    fp_obj o = {0};
    struct statvfs v;
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    if (which == NFSPROC3_FSSTAT) {
        if (fstatvfs(o.e->fd, &v) != 0) {
            fp_begin_reply(q, fp_nfsstat(errno));
            xw_post_attr(&q->w, &o.st, q->conf->fsid);
        } else {
            fp_begin_reply(q, NFS3_OK);
            xw_post_attr(&q->w, &o.st, q->conf->fsid);
            xw_u64(&q->w, (uint64_t)v.f_blocks * v.f_frsize);
            xw_u64(&q->w, (uint64_t)v.f_bfree * v.f_frsize);
            xw_u64(&q->w, (uint64_t)v.f_bavail * v.f_frsize);
            xw_u64(&q->w, v.f_files);
            xw_u64(&q->w, v.f_ffree);
            xw_u64(&q->w, v.f_favail);
            xw_u32(&q->w, 0);
        }
    } else {                                               /* FSINFO */
        fp_begin_reply(q, NFS3_OK);
        xw_post_attr(&q->w, &o.st, q->conf->fsid);
        xw_bytes(&q->w, q->conf->fsinfo_xdr, 48);
    }
    fp_release(q, &o);
    return FP_SERVED;
}

/* The reply cache for a non-idempotent call the fast path has committed to serve: FP_DRC_NEW
 * (go on), FP_DRC_IN_PROGRESS (drop it) or FP_DRC_HIT (the stored reply is written). Whether a
 * procedure is idempotent is fp_procs' (fp_tables.h) to say: for one that is, nothing is cached
 * (drc_state stays -1, and fp_drc_store does nothing). */
static int fp_drc_check(fp_req *q, fp_drckey *k) {
    uint8_t buf[FP_PAGE];
    uint32_t len = 0;
    int r;
    memset(k, 0, sizeof *k);
    if (q->call.proc >= FP_NPROC || fp_procs[q->call.proc].idempotent) return FP_DRC_NEW;
    memcpy(k->addr, q->peer, q->peer_len > 16 ? 16 : q->peer_len);
    k->addrlen = q->peer_len;
    k->xid = q->call.xid;
    k->prog = q->call.prog;
    k->vers = q->call.vers;
    k->proc = q->call.proc;
    k->len = q->rec_len;
    k->crc = fp_crc32(q->rec, q->rec_len < 256 ? q->rec_len : 256);
    r = fp_drc_begin(q->drc, k, buf, sizeof buf, &len);
    q->drc_state = r;
    if (r == FP_DRC_HIT) xw_bytes(&q->w, buf, len);
    if (r != FP_DRC_NEW) { q->counted = 0; q->send = r == FP_DRC_HIT; }
    return r;
}

/* store the reply just written (it starts 4 bytes into reply_slot, after the record marker) */
static void fp_drc_store(fp_req *q, const fp_drckey *k) {
    uint8_t buf[FP_PAGE];
    uint32_t len = q->w.off - 4;
    if (q->drc_state != FP_DRC_NEW) return;          /* an idempotent procedure: nothing begun */
    if (q->w.bad || len > sizeof buf - 4) { fp_drc_finish(q->drc, k, NULL, 0); return; }
    memcpy(buf, q->arena + ((size_t)q->slots[q->reply_slot] << 12) + 4,
           len > FP_PAGE - 4 ? FP_PAGE - 4 : len);
    fp_drc_finish(q->drc, k, buf, len > FP_PAGE - 4 ? FP_PAGE - 4 : len);
}

static int fp_setattr(fp_req *q, xr_t *r) {
    uint32_t n, st_ = NFS3_OK;
    const uint8_t *fh = xr_opaque(r, FP_FHSIZE, &n);
    fp_sattr s;
    int guard, kill_sid, e;
    uint32_t g_s = 0, g_ns = 0;
    fp_obj o = {0};
    fp_drckey k;
    struct stat post;
    xr_sattr(r, &s);
    guard = xr_bool(r);
    if (guard) { g_s = xr_u32(r); g_ns = xr_u32(r); }
    if (r->bad || r->pos != q->rec_len || fp_resolve(q, fh, n, &o)) return FP_FALLBACK;
    if (fp_drc_check(q, &k) != FP_DRC_NEW) { fp_release(q, &o); return FP_SERVED; }
    if (q->conf->read_only) st_ = NFS3ERR_ROFS;
    else if (guard) {
        struct timespec c = o.st.st_ctim;
        uint32_t cs = c.tv_sec < 0 ? 0 : (uint64_t)c.tv_sec > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)c.tv_sec;
        uint32_t cn = c.tv_sec < 0 ? 0 : (uint64_t)c.tv_sec > 0xFFFFFFFFull ? 999999999u : (uint32_t)c.tv_nsec;
        if (cs != g_s || cn != g_ns) st_ = NFS3ERR_NOT_SYNC;
    }
    if (st_ == NFS3_OK) {
        kill_sid = (s.set_uid || s.set_gid) && (q->who.uid == 0 || q->who.uid == (uint32_t)o.st.st_uid);
        st_ = fp_check_sattr(&o.st, &s, &q->who, 0);
        if (st_ == NFS3_OK && (e = fp_apply_sattr(o.e->fd, &o.st, &s, &q->who, kill_sid)))
            st_ = fp_nfsstat(-e);
    }
    fp_begin_reply(q, st_);
    xw_wcc(&q->w, &o.st, fp_fstat_ok(o.e->fd, &post) ? &post : NULL, q->conf->fsid);
    fp_drc_store(q, &k);
    fp_release(q, &o);
    return FP_SERVED;
}

#endif
