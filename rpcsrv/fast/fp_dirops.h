/* The fast path's directory procedures LOOKUP, CREATE and REMOVE (READDIRPLUS: fp_readdir.h; what
 * they share: fp_dir.h). Same rules as fp_ops.h: C twins of rpcsrv.nfsd.nfs3's handlers, falling
 * back to Python before any side effect for what they do not serve. */
#ifndef NFSBULK_FP_DIROPS_H
#define NFSBULK_FP_DIROPS_H

#include "fp_dir.h"

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
    if (how == FP_CREATE_UNCHECKED || how == FP_CREATE_GUARDED) xr_sattr(r, &s);
    else if (how == FP_CREATE_EXCLUSIVE) {
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
    if (how == FP_CREATE_EXCLUSIVE) {
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
        if (how == FP_CREATE_GUARDED) { st_ = NFS3ERR_EXIST; goto out; }
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

#endif
