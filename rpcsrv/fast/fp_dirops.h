/* The fast path's directory procedures (LOOKUP, CREATE, REMOVE, READDIRPLUS) and fp_process, which
 * decodes a call and runs its procedure. Same rules as fp_ops.h: C twins of rpcsrv.nfsd.nfs3's
 * handlers, falling back to Python before any side effect for what they do not serve. */
#ifndef NFSBULK_FP_DIROPS_H
#define NFSBULK_FP_DIROPS_H

#include "fp_ops.h"

/* A directory resolved from the cache, and the kernel handle its own handle carries (the parent
 * part of its children's handles). */
typedef struct {
    fp_obj o;
    const uint8_t *fh;
    uint32_t fhlen;
    uint8_t ht;
    const uint8_t *hb;
    uint32_t hn;
} fp_dir;

static int fp_resolve_dir(fp_req *q, const uint8_t *fh, uint32_t n, fp_dir *d) {
    if (fp_fh_check(q->conf, fh, n, &d->ht, &d->hb, &d->hn)) return -1;
    if (fp_resolve(q, fh, n, &d->o)) return -1;
    if (!S_ISDIR(d->o.st.st_mode)) { fp_release(q, &d->o); return -1; }   /* NOTDIR: Python's */
    d->fh = fh;
    d->fhlen = n;
    return 0;
}

static inline int fp_is_root(const fp_req *q, const struct stat *st) {
    return (uint64_t)st->st_dev == q->conf->root_dev && (uint64_t)st->st_ino == q->conf->root_ino;
}

/* Export._child for a name other than "." and "..": open it (O_PATH, no symlink followed), lstat
 * it, and make its handle. 0 with *fd (the caller owns it); an nfsstat3 (*fd -1) for a system
 * call's error (Python's OSError); FP_CHILD_NOFH | status when the object is there but gets no
 * handle (Python's NfsError: a mount point is ACCES, an unencodable handle SERVERFAULT). */
#define FP_CHILD_NOFH 0x40000000u
static uint32_t fp_child(fp_req *q, const fp_dir *d, const uint8_t *name, uint32_t nlen, uint8_t *fh,
                         uint32_t *fhlen, struct stat *st, int *fd) {
    char z[FP_MAXNAMLEN + 1];
    uint8_t ht, hb[128];
    uint32_t hn;
    int mnt, r;
    memcpy(z, name, nlen);
    z[nlen] = 0;
    *fd = openat(d->o.e->fd, z, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0) return fp_nfsstat(errno);
    if (fstat(*fd, st) != 0) { r = errno; close(*fd); *fd = -1; return fp_nfsstat(r); }
    if ((uint64_t)st->st_dev != q->conf->root_dev) { close(*fd); *fd = -1; return FP_CHILD_NOFH | NFS3ERR_ACCES; }
    if (fp_is_root(q, st)) {
        memcpy(fh, q->conf->root_fh, q->conf->root_fh_len);
        *fhlen = q->conf->root_fh_len;
        return 0;
    }
    if ((r = fp_kernel_handle(*fd, &ht, hb, &hn, &mnt)) != 0) {
        close(*fd); *fd = -1;
        return r == -EOVERFLOW ? FP_CHILD_NOFH | NFS3ERR_SERVERFAULT : fp_nfsstat(-r);
    }
    if (mnt != q->conf->mount_id) { close(*fd); *fd = -1; return FP_CHILD_NOFH | NFS3ERR_ACCES; }
    if (8 + hn + FP_FH_MAC > FP_FHSIZE) { close(*fd); *fd = -1; return FP_CHILD_NOFH | NFS3ERR_SERVERFAULT; }
    *fhlen = fp_fh_pack(q->conf, fh, ht, hb, hn, !S_ISDIR(st->st_mode), d->ht, d->hb, d->hn);
    return 0;
}

/* verified_add(): a child found by name in a verified directory is inside; the cache owns fd */
static inline void fp_remember(fp_req *q, const uint8_t *fh, uint32_t n, int fd, const struct stat *st) {
    fp_fhc_insert(q->fhc, fh, n, fd, (uint64_t)st->st_dev, (uint64_t)st->st_ino, fp_now() + q->conf->fd_ttl);
}

static int fp_lookup(fp_req *q, xr_t *r) {
    uint32_t n, nlen, st_;
    const uint8_t *dfh = xr_opaque(r, FP_FHSIZE, &n), *name;
    fp_dir d;
    uint8_t fh[FP_FHSIZE];
    uint32_t fhlen;
    struct stat st;
    int fd;
    name = xr_opaque(r, FP_NAME_DECODE_MAX, &nlen);
    if (r->bad || r->pos != q->rec_len) return FP_FALLBACK;
    if ((nlen == 1 && name[0] == '.') || (nlen == 2 && name[0] == '.' && name[1] == '.')) return FP_FALLBACK;
    if (fp_resolve_dir(q, dfh, n, &d)) return FP_FALLBACK;
    if (q->who.uid != 0 && !(fp_bits(&d.o.st, &q->who) & 1)) st_ = NFS3ERR_ACCES;
    else if ((st_ = fp_check_name(name, nlen, 1)) == 0) {
        st_ = fp_child(q, &d, name, nlen, fh, &fhlen, &st, &fd) & ~FP_CHILD_NOFH;
    }
    fp_begin_reply(q, st_);
    if (st_ == NFS3_OK) {
        xw_opaque(&q->w, fh, fhlen);
        xw_post_attr(&q->w, &st, q->conf->fsid);
        fp_remember(q, fh, fhlen, fd, &st);
    }
    xw_post_attr(&q->w, &d.o.st, q->conf->fsid);
    fp_release(q, &d.o);
    return FP_SERVED;
}

/* The common checks of the modifying directory procedures (nfs3._dir_op_checks) */
static uint32_t fp_dir_op_checks(fp_req *q, const fp_dir *d, const uint8_t *name, uint32_t nlen) {
    uint32_t st;
    if (q->conf->read_only) return NFS3ERR_ROFS;
    if ((st = fp_check_name(name, nlen, 0))) return st;
    if (q->who.uid != 0 && (fp_bits(&d->o.st, &q->who) & 3) != 3) return NFS3ERR_ACCES;
    return 0;
}

/* DiropRes: OK with the handle, attributes and the directory's wcc, or an error with the wcc */
static void fp_diropres(fp_req *q, fp_dir *d, uint32_t st_, const uint8_t *fh, uint32_t fhlen,
                        const struct stat *st) {
    struct stat post;
    fp_begin_reply(q, st_);
    if (st_ == NFS3_OK) {
        xw_u32(&q->w, 1);
        xw_opaque(&q->w, fh, fhlen);
        xw_post_attr(&q->w, st, q->conf->fsid);
    }
    xw_wcc(&q->w, &d->o.st, fp_fstat_ok(d->o.e->fd, &post) ? &post : NULL, q->conf->fsid);
}

/* _created: the new entry's handle and attributes (a LOOKUP of it); the cache keeps it */
static uint32_t fp_created(fp_req *q, fp_dir *d, const uint8_t *name, uint32_t nlen, uint8_t *fh,
                           uint32_t *fhlen, struct stat *st) {
    int fd;
    uint32_t s = fp_child(q, d, name, nlen, fh, fhlen, st, &fd) & ~FP_CHILD_NOFH;
    if (s == 0) fp_remember(q, fh, *fhlen, fd, st);
    return s;
}

#define FP_EXCL_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)

static int fp_create(fp_req *q, xr_t *r) {
    uint32_t n, nlen, how, st_;
    const uint8_t *dfh = xr_opaque(r, FP_FHSIZE, &n), *name, *verf = NULL;
    fp_sattr s;
    fp_dir d;
    fp_drckey k;
    uint8_t fh[FP_FHSIZE];
    uint32_t fhlen = 0;
    struct stat st;
    char z[FP_MAXNAMLEN + 1];
    int fd, e;
    name = xr_opaque(r, FP_NAME_DECODE_MAX, &nlen);
    how = xr_u32(r);
    if (how == 0 || how == 1) xr_sattr(r, &s);
    else if (how == 2) {
        if (r->len - r->pos < 8) r->bad = 1;
        else { verf = r->p + r->pos; r->pos += 8; }
    } else r->bad = 1;
    if (r->bad || r->pos != q->rec_len || fp_resolve_dir(q, dfh, n, &d)) return FP_FALLBACK;
    if (fp_drc_check(q, &k) != FP_DRC_NEW) { fp_release(q, &d.o); return FP_SERVED; }
    st_ = fp_dir_op_checks(q, &d, name, nlen);
    if (st_) goto out;
    memcpy(z, name, nlen);
    z[nlen] = 0;
    uint32_t gid_new = (d.o.st.st_mode & S_ISGID) ? (uint32_t)d.o.st.st_gid : q->who.gid;
    if (how == 2) {                                          /* EXCLUSIVE */
        uint32_t vm = fp_be32(verf) & 0x7FFFFFFFu, va = fp_be32(verf + 4) & 0x7FFFFFFFu;
        fd = openat(d.o.e->fd, z, FP_EXCL_FLAGS, 0600);
        if (fd < 0 && errno == EEXIST) {
            if (fstatat(d.o.e->fd, z, &st, AT_SYMLINK_NOFOLLOW) != 0) st_ = fp_nfsstat(errno);
            else if (S_ISREG(st.st_mode) && st.st_size == 0 && st.st_mtim.tv_sec == (time_t)vm &&
                     st.st_mtim.tv_nsec == 0 && st.st_atim.tv_sec == (time_t)va && st.st_atim.tv_nsec == 0)
                st_ = fp_created(q, &d, name, nlen, fh, &fhlen, &st);   /* a retransmission */
            else st_ = NFS3ERR_EXIST;
            goto out;
        }
        if (fd < 0) { st_ = fp_nfsstat(errno); goto out; }
        struct timespec ts[2] = {{(time_t)va, 0}, {(time_t)vm, 0}};
        if ((e = fp_chown(fd, q->who.uid, gid_new)) == 0 && futimens(fd, ts) != 0) e = -errno;
        close(fd);
        st_ = e ? fp_nfsstat(-e) : fp_created(q, &d, name, nlen, fh, &fhlen, &st);
        goto out;
    }
    if ((st_ = fp_check_sattr(NULL, &s, &q->who, 1))) goto out;       /* UNCHECKED, GUARDED */
    fd = openat(d.o.e->fd, z, FP_EXCL_FLAGS, 0600);
    if (fd < 0 && errno == EEXIST) {
        int ofd;
        if (how == 1) { st_ = NFS3ERR_EXIST; goto out; }
        /* UNCHECKED on an existing entry: a regular file gets the size, nothing else (as knfsd) */
        st_ = fp_child(q, &d, name, nlen, fh, &fhlen, &st, &ofd) & ~FP_CHILD_NOFH;
        if (st_) goto out;
        if (!S_ISREG(st.st_mode)) st_ = NFS3ERR_EXIST;
        else if (s.set_size && !fp_may_write(&st, &q->who)) st_ = NFS3ERR_ACCES;
        else if (s.set_size && (e = fp_proc_truncate(ofd, s.size))) st_ = fp_nfsstat(-e);
        else if (fstat(ofd, &st) != 0) st_ = fp_nfsstat(errno);
        if (st_) close(ofd);
        else fp_remember(q, fh, fhlen, ofd, &st);
        goto out;
    }
    if (fd < 0) { st_ = fp_nfsstat(errno); goto out; }
    {                                                        /* vfs.init_new */
        uint32_t uid = s.set_uid ? s.uid : q->who.uid, gid = s.set_gid ? s.gid : gid_new;
        mode_t mode = s.set_mode ? (s.mode & 07777) : 0644;
        if ((mode & S_ISGID) && q->who.uid != 0 && !fp_in_groups(&q->who, gid)) mode &= ~(mode_t)S_ISGID;
        e = fp_chown(fd, uid, gid);
        if (!e) e = fp_proc_chmod(fd, mode);
        if (!e && s.set_size) e = fp_proc_truncate(fd, s.size);
        if (!e && (s.atime_how || s.mtime_how)) e = fp_utimes(fd, &s);
        close(fd);
        st_ = e ? fp_nfsstat(-e) : fp_created(q, &d, name, nlen, fh, &fhlen, &st);
    }
out:
    fp_diropres(q, &d, st_, fh, fhlen, &st);
    fp_drc_store(q, &k);
    fp_release(q, &d.o);
    return FP_SERVED;
}

static int fp_remove(fp_req *q, xr_t *r) {
    uint32_t n, nlen, st_;
    const uint8_t *dfh = xr_opaque(r, FP_FHSIZE, &n), *name;
    fp_dir d;
    fp_drckey k;
    struct stat vst, post;
    char z[FP_MAXNAMLEN + 1];
    name = xr_opaque(r, FP_NAME_DECODE_MAX, &nlen);
    if (r->bad || r->pos != q->rec_len || fp_resolve_dir(q, dfh, n, &d)) return FP_FALLBACK;
    if (fp_drc_check(q, &k) != FP_DRC_NEW) { fp_release(q, &d.o); return FP_SERVED; }
    st_ = fp_dir_op_checks(q, &d, name, nlen);
    if (!st_) {
        memcpy(z, name, nlen);
        z[nlen] = 0;
        if (fstatat(d.o.e->fd, z, &vst, AT_SYMLINK_NOFOLLOW) != 0) st_ = fp_nfsstat(errno);
        else if ((d.o.st.st_mode & S_ISVTX) && q->who.uid != 0 && q->who.uid != (uint32_t)vst.st_uid &&
                 q->who.uid != (uint32_t)d.o.st.st_uid) st_ = NFS3ERR_PERM;
        else if (unlinkat(d.o.e->fd, z, 0) != 0) st_ = fp_nfsstat(errno);
        else if (vst.st_nlink <= 1) fp_fhc_forget_ino(q->fhc, (uint64_t)vst.st_dev, (uint64_t)vst.st_ino);
    }
    fp_begin_reply(q, st_);
    xw_wcc(&q->w, &d.o.st, fp_fstat_ok(d.o.e->fd, &post) ? &post : NULL, q->conf->fsid);
    fp_drc_store(q, &k);
    fp_release(q, &d.o);
    return FP_SERVED;
}

#include "fp_readdir.h"

/* Decode the call held in q's pages and serve it if it is one of ours: FP_SERVED (the reply is in
 * the pages from reply_slot, or there is nothing to send) or FP_FALLBACK (nothing done). */
static int fp_process(fp_req *q) {
    xr_t r;
    int rc;
    if (fp_parse_call(q->rec, q->head_len, &q->call) != 0) return FP_FALLBACK;
    if (q->call.prog != 100003 || q->call.vers != 3) return FP_FALLBACK;
    fp_who_from(&q->who, q->conf, q->call.have_cred, q->call.uid, q->call.gid, q->call.gids,
                (int)q->call.ngids);
    r.p = q->rec;
    r.len = q->head_len;
    r.pos = q->call.args;
    r.bad = 0;
    q->payload = 0;
    q->send = q->counted = 1;
    q->drc_state = -1;
    q->read_bytes = q->write_bytes = 0;
    /* the read procedures run in a containment transaction (fp_proof.h); the others prove their
     * handles after applying the queued events */
    q->reading = q->call.proc == 1 || q->call.proc == 3 || q->call.proc == 4 || q->call.proc == 6 ||
                 q->call.proc == 17 || q->call.proc == 18 || q->call.proc == 19;
    if (q->reading) fp_txn_begin(q->pf, &q->txn);
    switch (q->call.proc) {
    case 0:
        if (q->rec_len != q->call.args) return FP_FALLBACK;
        xw_success(&q->w, q->call.xid);
        q->status = NFS3_OK;
        return FP_SERVED;
    case 1: rc = fp_getattr(q, &r); break;
    case 2: return fp_setattr(q, &r);
    case 3: rc = fp_lookup(q, &r); break;
    case 4: rc = fp_access_proc(q, &r); break;
    case 6: rc = fp_read(q, &r); break;
    case 7: return fp_write(q, &r);
    case 8: return fp_create(q, &r);
    case 12: return fp_remove(q, &r);
    case 17: rc = fp_readdirplus(q, &r); break;
    case 18: case 19: rc = fp_fsquery(q, &r, (int)q->call.proc); break;
    case 21: return fp_commit(q, &r);
    default: return FP_FALLBACK;
    }
    /* a read whose proofs did not hold until now (a local rename raced it): the Python path runs
     * it again (its reply pages are rewritten) */
    if (rc == FP_SERVED && !fp_pf_held(q->pf, &q->txn)) return FP_FALLBACK;
    return rc;
}

#endif
