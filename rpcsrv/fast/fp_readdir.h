/* READDIRPLUS on the fast path: the C twin of nfs3.nfs3_readdirplus over Export.readdir.
 *
 * Cookies and the verifier are rpcsrv.export.readdir's: a name's cookie is the 63-bit keyed
 * BLAKE2b-64 of the name with the top bit set, "." and ".." are 1 and 2, entries come in cookie
 * order and a page resumes after the client's cookie; the verifier is the keyed BLAKE2s-64 of the
 * directory's inode number. A page from cookie 0 reads the listing afresh; a continuation page
 * reuses a listing of the unchanged directory at most a ttl old (fp_listing.h), as the Python
 * path does. The
 * reply's bytes are counted as nfs3res.DirBudget counts them. Included by fp_process.h. */
#ifndef NFSBULK_FP_READDIR_H
#define NFSBULK_FP_READDIR_H

#include <dirent.h>
#include <sys/syscall.h>

#include "fp_dir.h"

/* qsort_r's comparison (the names buffer as its context: workers sort at once, so no global) */
static int fp_dent_cmp(const void *a, const void *b, void *names) {
    const fp_dent *x = (const fp_dent *)a, *y = (const fp_dent *)b;
    const char *fp_sort_names = (const char *)names;
    uint32_t m;
    int c;
    if (x->cookie != y->cookie) return x->cookie < y->cookie ? -1 : 1;
    m = x->len < y->len ? x->len : y->len;                 /* ties: by name, then inode (as tuples) */
    c = memcmp(fp_sort_names + x->off, fp_sort_names + y->off, m);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static uint64_t fp_name_cookie(const fp_conf *c, const uint8_t *name, uint32_t n) {
    uint8_t h[8];
    nb_blake2b(h, 8, c->name_key, 32, name, n);
    return fp_be64(h) | (1ull << 63);
}

/* the directory's entries but "." and "..", sorted by cookie; 0 or -errno */
static int fp_list(const fp_conf *c, int dir_opath, fp_listing *l) {
    char buf[32768];
    int fd = openat(dir_opath, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    memset(l, 0, sizeof *l);
    if (fd < 0) return -errno;
    for (;;) {
        long k = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (k < 0) { int e = errno; close(fd); fp_listing_free(l); return -e; }
        if (k == 0) break;
        for (long pos = 0; pos < k;) {
            struct dirent64 *de = (struct dirent64 *)(buf + pos);
            uint32_t n = (uint32_t)strlen(de->d_name);
            pos += de->d_reclen;
            if ((n == 1 && de->d_name[0] == '.') || (n == 2 && de->d_name[0] == '.' && de->d_name[1] == '.'))
                continue;
            if (l->n == l->cap) {
                uint32_t cap = l->cap ? l->cap * 2 : 64;
                fp_dent *v = (fp_dent *)realloc(l->v, cap * sizeof *v);
                if (!v) { close(fd); fp_listing_free(l); return -ENOMEM; }
                l->v = v;
                l->cap = cap;
            }
            if (l->nlen + n > l->ncap) {
                uint32_t cap = l->ncap ? l->ncap * 2 : 4096;
                while (cap < l->nlen + n) cap *= 2;
                char *p = (char *)realloc(l->names, cap);
                if (!p) { close(fd); fp_listing_free(l); return -ENOMEM; }
                l->names = p;
                l->ncap = cap;
            }
            memcpy(l->names + l->nlen, de->d_name, n);
            l->v[l->n].off = l->nlen;
            l->v[l->n].len = n;
            l->v[l->n].ino = de->d_ino;
            l->v[l->n].cookie = fp_name_cookie(c, (const uint8_t *)de->d_name, n);
            l->nlen += n;
            l->n++;
        }
    }
    close(fd);
    if (l->n > 1) qsort_r(l->v, l->n, sizeof *l->v, fp_dent_cmp, l->names);
    return 0;
}

/* nfs3res.DirBudget for READDIRPLUS */
typedef struct {
    uint32_t count, limit, total, dirbytes;
} fp_budget;

static int fp_fits(fp_budget *b, uint32_t nlen, uint32_t fhlen) {
    uint32_t n = (nlen + 3) & ~3u;
    uint32_t e = 4 + 8 + 4 + n + 8 + 88 + 4 + 4 + ((fhlen + 3) & ~3u), dsz = 8 + 4 + n + 8;
    if (b->dirbytes + dsz > b->count || b->total + e > b->limit) return 0;
    b->total += e;
    b->dirbytes += dsz;
    return 1;
}

static void fp_entry(fp_req *q, uint64_t fileid, const void *name, uint32_t nlen, uint64_t cookie,
                     const struct stat *st, const uint8_t *fh, uint32_t fhlen) {
    xw_u32(&q->w, 1);
    xw_u64(&q->w, fileid);
    xw_opaque(&q->w, name, nlen);
    xw_u64(&q->w, cookie);
    xw_post_attr(&q->w, st, q->conf->fsid);
    if (fh) { xw_u32(&q->w, 1); xw_opaque(&q->w, fh, fhlen); }
    else xw_u32(&q->w, 0);
}

/* Export._child for "..": the root's handle at the root (or when the parent is the root) */
static uint32_t fp_dotdot(fp_req *q, fp_dir *d, uint8_t *fh, uint32_t *fhlen, struct stat *st) {
    uint8_t ht, hb[128];
    uint32_t hn;
    int mnt, fd;
    int at_root = fp_is_root(q, &d->o.st) || (d->fhlen == q->conf->root_fh_len &&
                                               memcmp(d->fh, q->conf->root_fh, d->fhlen) == 0);
    fd = at_root ? openat(q->conf->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC)
                 : openat(d->o.e->fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 1;
    if (fstat(fd, st) != 0 || (at_root && st->st_nlink == 0)) { close(fd); return 1; }
    if (fp_is_root(q, st)) {
        memcpy(fh, q->conf->root_fh, q->conf->root_fh_len);
        *fhlen = q->conf->root_fh_len;
        close(fd);
        return 0;
    }
    if (fp_kernel_handle(fd, &ht, hb, &hn, &mnt) != 0 || mnt != q->conf->mount_id ||
        8 + hn + FP_FH_MAC > FP_FHSIZE) { close(fd); return 1; }
    close(fd);
    *fhlen = fp_fh_pack(q->conf, fh, ht, hb, hn, 0, 0, NULL, 0);
    return 0;
}

static int fp_readdirplus(fp_req *q, xr_t *r) {
    uint32_t n, dircount, maxcount, limit, st_ = NFS3_OK;
    const uint8_t *dfh = xr_opaque(r, FP_FHSIZE, &n), *cverf;
    uint64_t cookie;
    uint8_t verf[8], ino_be[8];
    fp_dir d;
    fp_listing *lp = NULL;
    fp_budget b;
    uint32_t i, start = 0, eof = 1, nout = 0;
    cookie = xr_u64(r);
    cverf = r->p + r->pos;
    if (r->len - r->pos < 8) r->bad = 1; else r->pos += 8;
    dircount = xr_u32(r);
    maxcount = xr_u32(r);
    if (r->bad || r->pos != q->rec_len || fp_resolve_dir(q, dfh, n, &d)) return FP_FALLBACK;
    if (q->who.uid != 0 && !(fp_bits(&d.o.st, &q->who) & 4)) st_ = NFS3ERR_ACCES;
    if (st_ == NFS3_OK) {
        fp_put64(ino_be, (uint64_t)d.o.st.st_ino);
        nb_blake2s(verf, 8, q->conf->verf_key, 32, ino_be, 8);
        if (cookie != 0) {
            static const uint8_t zero[8] = {0};
            if (memcmp(cverf, verf, 8) && memcmp(cverf, zero, 8)) st_ = NFS3ERR_BAD_COOKIE;
            else if (cookie != 1 && cookie != 2 && !(cookie >> 63)) st_ = NFS3ERR_BAD_COOKIE;
        }
    }
    if (st_ == NFS3_OK) {
        double now = fp_now();
        if (cookie != 0) lp = fp_lcache_get(q->lc, &d.o.st, now);
        if (!lp) {
            int e = -ENOMEM;
            lp = (fp_listing *)calloc(1, sizeof *lp);
            if (lp) e = fp_list(q->conf, d.o.e->fd, lp);
            if (e) {
                free(lp);
                lp = NULL;
                st_ = fp_nfsstat(-e);
            } else {
                lp->refs = 1;                               /* ours; the cache takes its own */
                fp_lcache_put(q->lc, &d.o.st, now, lp);
            }
        }
    }
    if (st_ != NFS3_OK) {
        fp_begin_reply(q, st_);
        xw_post_attr(&q->w, &d.o.st, q->conf->fsid);
        fp_release(q, &d.o);
        return FP_SERVED;
    }
    limit = q->conf->dirmax < (1u << 20) ? q->conf->dirmax : (1u << 20);
    b.count = dircount < limit ? dircount : limit;
    b.limit = maxcount < limit ? maxcount : limit;
    b.total = 4 + 88 + 8 + 4 + 4;
    b.dirbytes = 0;
    fp_begin_reply(q, NFS3_OK);
    xw_post_attr(&q->w, &d.o.st, q->conf->fsid);
    xw_bytes(&q->w, verf, 8);
    /* "." and ".." */
    for (uint64_t ck = 1; ck <= 2 && eof; ck++) {
        uint8_t fh[FP_FHSIZE];
        uint32_t fhlen;
        struct stat st;
        if (cookie >= ck) continue;
        if (ck == 1) {
            int fd = openat(d.o.e->fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0) continue;
            int ok = fstat(fd, &st) == 0;
            close(fd);
            if (!ok) continue;
            memcpy(fh, d.fh, d.fhlen);
            fhlen = d.fhlen;
        } else if (fp_dotdot(q, &d, fh, &fhlen, &st)) continue;
        if (!fp_fits(&b, (uint32_t)ck, fhlen)) { eof = 0; break; }
        fp_entry(q, (uint64_t)st.st_ino, "..", (uint32_t)ck, ck, &st, fh, fhlen);
        nout++;
    }
    if (eof && cookie > 2) {                                  /* the first entry after the cookie */
        uint32_t lo = 0, hi = lp->n;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (lp->v[mid].cookie <= cookie) lo = mid + 1; else hi = mid;
        }
        start = lo;
    }
    for (i = start; eof && i < lp->n; i++) {
        const uint8_t *name = (const uint8_t *)lp->names + lp->v[i].off;
        uint32_t nlen = lp->v[i].len, fhlen = 0, s;
        uint8_t fh[FP_FHSIZE];
        struct stat st;
        int fd;
        s = fp_child(q, &d, name, nlen, fh, &fhlen, &st, &fd);
        if (s & FP_CHILD_NOFH) {                            /* a mount point: no handle */
            char z[FP_MAXNAMLEN + 1];
            memcpy(z, name, nlen);
            z[nlen] = 0;
            if (fstatat(d.o.e->fd, z, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            fhlen = 0;
        } else if (s) continue;                             /* gone since the listing, or unreadable */
        if (!fp_fits(&b, nlen, fhlen)) {
            if (fd >= 0 && s == 0) close(fd);
            eof = 0;
            break;
        }
        fp_entry(q, (uint64_t)st.st_ino, name, nlen, lp->v[i].cookie, &st, s == 0 ? fh : NULL, fhlen);
        if (s == 0) fp_remember(q, fh, fhlen, fd, &st);
        nout++;
    }
    fp_listing_unref(q->lc, lp);
    if (nout == 0 && !eof) {                                /* not even one entry fits */
        q->w.off = 4;
        fp_begin_reply(q, NFS3ERR_TOOSMALL);
        xw_post_attr(&q->w, &d.o.st, q->conf->fsid);
    } else {
        xw_u32(&q->w, 0);
        xw_u32(&q->w, eof);
    }
    fp_release(q, &d.o);
    return FP_SERVED;
}

#endif
