/* What the fast path's directory procedures share (fp_dirops.h's LOOKUP, CREATE, REMOVE and
 * fp_readdir.h's READDIRPLUS): a directory resolved from the cache, and its children opened by
 * name (Export._child) and remembered in the cache. */
#ifndef NFSBULK_FP_DIR_H
#define NFSBULK_FP_DIR_H

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

#endif
