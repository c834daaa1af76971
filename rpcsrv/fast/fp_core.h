/* The fast path's common ground: configuration, XDR reading and writing, the RPC call header,
 * AUTH_SYS identity and the mode-bit permission model, errno -> nfsstat3, fattr3 encoding.
 *
 * Every function here is a C twin of a piece of rpcsrv's Python reference path, and gives the same
 * answer on the same input (tests/fast holds the two to byte-identical replies):
 *   fp_parse_call       rpcsrv.proto.rpcmsg.decode_call (accepting only what the fast path serves:
 *                       anything else makes the caller fall back to Python, which answers it)
 *   fp_who, fp_bits,    rpcsrv.nfsd.perm (who, bits, may_read_file, may_write_file,
 *   fp_access           access_from_stat)
 *   fp_nfsstat          rpcsrv.proto.nfs3const.ERRNO_TO_NFSSTAT3 (fp_tables.h's array)
 *   xw_fattr3 & co      rpcsrv.proto.nfs3xdr's attribute encoders (nfstime3 clamping included)
 * No state of its own, no locks: pure functions over the structures passed in. */
#ifndef NFSBULK_FP_CORE_H
#define NFSBULK_FP_CORE_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

/* nfsstat3, the ACCESS3 bits, FP_FHSIZE, FP_MAXNAMLEN, FP_NAME_DECODE_MAX, the errno map: generated
 * from the Python declarations (rpcsrv/fast/gen_tables.py) */
#include "fp_tables.h"

#define FP_PAGE 4096u

/* ---------------------------------------------------------------- configuration */

/* What the fast path knows of the server; filled once by rpcsrv.fast from the Export and the
 * server's config, read-only afterwards (shared by every worker without a lock). */
typedef struct {
    uint8_t mac_key[32], name_key[32], verf_key[32];
    uint8_t export_id[4];
    uint64_t fsid;
    int root_fd;                     /* the Export's O_RDONLY|O_DIRECTORY root fd */
    uint64_t root_dev, root_ino;
    int mount_id;
    uint8_t root_fh[FP_FHSIZE];
    uint32_t root_fh_len;
    int read_only;                   /* config.read_only or the Export's */
    int root_squash;
    uint32_t anon_uid, anon_gid;
    uint8_t write_verf[8];
    uint32_t rtmax, wtmax, dirmax;   /* the TCP transport's limits (svc.XprtLimits) */
    uint8_t fsinfo_xdr[48];          /* FSINFO3resok after the attributes, pre-encoded */
    double fd_ttl;
    uint32_t send_timeout_ms;
} fp_conf;

/* ---------------------------------------------------------------- big-endian words */

static inline uint32_t fp_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t fp_be64(const uint8_t *p) { return ((uint64_t)fp_be32(p) << 32) | fp_be32(p + 4); }
static inline void fp_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void fp_put64(uint8_t *p, uint64_t v) { fp_put32(p, (uint32_t)(v >> 32)); fp_put32(p + 4, (uint32_t)v); }

static inline double fp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- XDR reader (contiguous bytes) */

/* Reads from the call's first page; `bad` becomes 1 at the first short or malformed item, and the
 * caller then falls back (Python answers GARBAGE_ARGS, or decodes what lies past the page). */
typedef struct {
    const uint8_t *p;
    uint32_t len, pos;
    int bad;
} xr_t;

static inline uint32_t xr_u32(xr_t *r) {
    if (r->bad || r->len - r->pos < 4) { r->bad = 1; return 0; }
    r->pos += 4;
    return fp_be32(r->p + r->pos - 4);
}
static inline uint64_t xr_u64(xr_t *r) {
    uint64_t hi = xr_u32(r);
    return (hi << 32) | xr_u32(r);
}
static inline int xr_bool(xr_t *r) {
    uint32_t v = xr_u32(r);
    if (v > 1) r->bad = 1;
    return v == 1;
}
/* Variable-length opaque<max>: a pointer to its bytes and their count; padding skipped. */
static inline const uint8_t *xr_opaque(xr_t *r, uint32_t max, uint32_t *n) {
    uint32_t k = xr_u32(r), padded;
    const uint8_t *d;
    if (r->bad || k > max) { r->bad = 1; *n = 0; return NULL; }
    padded = (k + 3) & ~3u;
    if (r->len - r->pos < padded) { r->bad = 1; *n = 0; return NULL; }
    d = r->p + r->pos;
    r->pos += padded;
    *n = k;
    return d;
}

/* ---------------------------------------------------------------- XDR writer (into reply pages) */

/* Writes a reply into the page slots from `slot`, byte offset `off` from that slot's start; a
 * write past the last slot sets `bad` (the caller answers SYSTEM_ERR, never a cut reply). */
typedef struct {
    char *arena;
    const int32_t *slots;
    int slot, nslots;
    uint32_t off;
    int bad;
} xw_t;

static inline void xw_bytes(xw_t *w, const void *src, uint32_t n) {
    const uint8_t *s = (const uint8_t *)src;
    while (n) {
        int sl = w->slot + (int)(w->off >> 12);
        uint32_t o = w->off & (FP_PAGE - 1), k = FP_PAGE - o;
        if (sl >= w->nslots || w->slots[sl] < 0) { w->bad = 1; return; }
        if (k > n) k = n;
        memcpy(w->arena + ((size_t)w->slots[sl] << 12) + o, s, k);
        w->off += k;
        s += k;
        n -= k;
    }
}
static inline void xw_u32(xw_t *w, uint32_t v) { uint8_t b[4]; fp_put32(b, v); xw_bytes(w, b, 4); }
static inline void xw_u64(xw_t *w, uint64_t v) { uint8_t b[8]; fp_put64(b, v); xw_bytes(w, b, 8); }
static inline void xw_opaque(xw_t *w, const void *d, uint32_t n) {
    static const uint8_t zeros[4] = {0, 0, 0, 0};
    xw_u32(w, n);
    xw_bytes(w, d, n);
    xw_bytes(w, zeros, (-n) & 3u);
}

/* ---------------------------------------------------------------- attributes */

static inline uint32_t fp_ftype(mode_t mode) {
    switch (mode & S_IFMT) {
    case S_IFDIR: return 2;
    case S_IFBLK: return 3;
    case S_IFCHR: return 4;
    case S_IFLNK: return 5;
    case S_IFSOCK: return 6;
    case S_IFIFO: return 7;
    default: return 1;
    }
}

/* nfstime3 of (seconds, nanoseconds): seconds outside uint32 are clamped, as nfs3xdr.nfstime3 */
static inline void xw_time(xw_t *w, struct timespec t) {
    if (t.tv_sec < 0) { xw_u32(w, 0); xw_u32(w, 0); }
    else if ((uint64_t)t.tv_sec > 0xFFFFFFFFull) { xw_u32(w, 0xFFFFFFFFu); xw_u32(w, 999999999u); }
    else { xw_u32(w, (uint32_t)t.tv_sec); xw_u32(w, (uint32_t)t.tv_nsec); }
}

static inline void xw_fattr3(xw_t *w, const struct stat *st, uint64_t fsid) {
    uint8_t b[48];
    mode_t fmt = st->st_mode & S_IFMT;
    uint64_t nlink = st->st_nlink;
    fp_put32(b, fp_ftype(st->st_mode));
    fp_put32(b + 4, st->st_mode & 07777);
    fp_put32(b + 8, nlink > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)nlink);
    fp_put32(b + 12, (uint32_t)st->st_uid);
    fp_put32(b + 16, (uint32_t)st->st_gid);
    fp_put64(b + 20, (uint64_t)st->st_size);
    fp_put64(b + 28, (uint64_t)st->st_blocks * 512);
    if (fmt == S_IFCHR || fmt == S_IFBLK) {
        fp_put32(b + 36, major(st->st_rdev));
        fp_put32(b + 40, minor(st->st_rdev));
    } else {
        fp_put32(b + 36, 0);
        fp_put32(b + 40, 0);
    }
    fp_put32(b + 44, (uint32_t)(fsid >> 32));
    xw_bytes(w, b, 48);
    xw_u32(w, (uint32_t)fsid);
    xw_u64(w, (uint64_t)st->st_ino);
    xw_time(w, st->st_atim);
    xw_time(w, st->st_mtim);
    xw_time(w, st->st_ctim);
}

/* post_op_attr: FALSE, or TRUE + fattr3 */
static inline void xw_post_attr(xw_t *w, const struct stat *st, uint64_t fsid) {
    if (!st) { xw_u32(w, 0); return; }
    xw_u32(w, 1);
    xw_fattr3(w, st, fsid);
}

/* wcc_data: pre_op_attr (size, mtime, ctime) then post_op_attr */
static inline void xw_wcc(xw_t *w, const struct stat *pre, const struct stat *post, uint64_t fsid) {
    if (!pre) xw_u32(w, 0);
    else {
        xw_u32(w, 1);
        xw_u64(w, (uint64_t)pre->st_size);
        xw_time(w, pre->st_mtim);
        xw_time(w, pre->st_ctim);
    }
    xw_post_attr(w, post, fsid);
}

/* ---------------------------------------------------------------- errors */

/* rpcsrv.proto.nfs3const.ERRNO_TO_NFSSTAT3 (fp_errno_nfsstat); unknown errnos are SERVERFAULT */
static inline uint32_t fp_nfsstat(int e) {
    return e >= 0 && e < FP_NERRNO_MAP ? fp_errno_nfsstat[e] : NFS3ERR_SERVERFAULT;
}

/* export.check_name's (contain.py) verdict on a filename3: 0, INVAL or NAMETOOLONG (allow_dots: "." and ".."). */
static inline uint32_t fp_check_name(const uint8_t *n, uint32_t len, int allow_dots) {
    if (len == 0) return NFS3ERR_INVAL;
    if (len > FP_MAXNAMLEN) return NFS3ERR_NAMETOOLONG;
    if (memchr(n, '/', len) || memchr(n, 0, len)) return NFS3ERR_INVAL;
    if (!allow_dots && ((len == 1 && n[0] == '.') || (len == 2 && n[0] == '.' && n[1] == '.')))
        return NFS3ERR_INVAL;
    return 0;
}

/* ---------------------------------------------------------------- identity and permissions */

typedef struct {
    uint32_t uid, gid;
    int ngroups;
    uint32_t groups[17];             /* the AUTH_SYS gids plus gid, squashed */
} fp_who;

static inline int fp_in_groups(const fp_who *w, uint32_t g) {
    for (int i = 0; i < w->ngroups; i++) if (w->groups[i] == g) return 1;
    return 0;
}

/* perm.who(): the caller after root squashing; AUTH_NONE (have_cred 0) is anon. */
static inline void fp_who_from(fp_who *w, const fp_conf *c, int have_cred, uint32_t uid, uint32_t gid,
                               const uint32_t *gids, int ngids) {
    w->ngroups = 0;
    if (!have_cred) {
        w->uid = c->anon_uid;
        w->gid = c->anon_gid;
        w->groups[w->ngroups++] = c->anon_gid;
        return;
    }
    if (c->root_squash) {
        if (uid == 0) uid = c->anon_uid;
        if (gid == 0) gid = c->anon_gid;
    }
    w->uid = uid;
    w->gid = gid;
    for (int i = 0; i < ngids; i++) {
        uint32_t g = gids[i];
        if (c->root_squash && g == 0) g = c->anon_gid;
        if (!fp_in_groups(w, g)) w->groups[w->ngroups++] = g;
    }
    if (!fp_in_groups(w, gid)) w->groups[w->ngroups++] = gid;
}

static inline int fp_bits(const struct stat *st, const fp_who *w) {
    if (w->uid == (uint32_t)st->st_uid) return (st->st_mode >> 6) & 7;
    if (fp_in_groups(w, (uint32_t)st->st_gid)) return (st->st_mode >> 3) & 7;
    return st->st_mode & 7;
}
static inline int fp_may_read(const struct stat *st, const fp_who *w) {
    return w->uid == 0 || w->uid == (uint32_t)st->st_uid || (fp_bits(st, w) & 5);
}
static inline int fp_may_write(const struct stat *st, const fp_who *w) {
    return w->uid == 0 || w->uid == (uint32_t)st->st_uid || (fp_bits(st, w) & 2);
}

/* perm.access_from_stat */
static inline uint32_t fp_access(const struct stat *st, uint32_t mask, const fp_who *w, int read_only) {
    int isdir = S_ISDIR(st->st_mode), r, wr, x;
    uint32_t g = 0;
    if (w->uid == 0) {
        r = wr = 1;
        x = isdir || (st->st_mode & 0111);
    } else {
        int b = fp_bits(st, w);
        r = b & 4; wr = b & 2; x = b & 1;
    }
    if (r) g |= ACC_READ;
    if (isdir) {
        if (x) g |= ACC_LOOKUP;
        if (wr && x) g |= ACC_MODIFY | ACC_EXTEND | ACC_DELETE;
    } else {
        if (wr) g |= ACC_MODIFY | ACC_EXTEND;
        if (x) g |= ACC_EXECUTE;
    }
    if (read_only) g &= ~(uint32_t)(ACC_MODIFY | ACC_EXTEND | ACC_DELETE);
    return g & mask;
}

/* ---------------------------------------------------------------- the RPC call header */

typedef struct {
    uint32_t xid, prog, vers, proc;
    int have_cred;                   /* AUTH_SYS; 0: AUTH_NONE */
    uint32_t uid, gid, ngids, gids[16];
    uint32_t args;                   /* record offset of the arguments */
} fp_call;

/* rpcmsg.decode_call for the calls the fast path serves: a CALL, RPC version 2, an AUTH_NONE or
 * well-formed AUTH_SYS credential and an empty AUTH_NONE verifier, all in the first page.
 * Returns 0 when it is such a call; -1 for anything else (the Python path decides its answer). */
static inline int fp_parse_call(const uint8_t *p, uint32_t len, fp_call *c) {
    xr_t r = {p, len, 0, 0};
    uint32_t flavor, clen, vflavor, vlen, start, n;
    c->xid = xr_u32(&r);
    if (xr_u32(&r) != 0 || xr_u32(&r) != 2) return -1;            /* CALL, rpcvers 2 */
    c->prog = xr_u32(&r);
    c->vers = xr_u32(&r);
    c->proc = xr_u32(&r);
    flavor = xr_u32(&r);
    clen = xr_u32(&r);
    if (r.bad || clen > 400) return -1;
    if (flavor == 0) {
        if (clen) return -1;
        c->have_cred = 0;
        c->ngids = 0;
    } else if (flavor == 1) {
        start = r.pos;
        xr_u32(&r);                                                 /* stamp */
        xr_opaque(&r, 255, &n);                                     /* machinename */
        c->uid = xr_u32(&r);
        c->gid = xr_u32(&r);
        c->ngids = xr_u32(&r);
        if (r.bad || c->ngids > 16) return -1;
        for (uint32_t i = 0; i < c->ngids; i++) c->gids[i] = xr_u32(&r);
        if (r.bad || r.pos - start != clen) return -1;
        c->have_cred = 1;
    } else {
        return -1;
    }
    vflavor = xr_u32(&r);
    vlen = xr_u32(&r);
    if (r.bad || vflavor != 0 || vlen) return -1;
    c->args = r.pos;
    return 0;
}

/* The accepted SUCCESS reply header with an AUTH_NONE verifier (rpcmsg.pack_success). */
static inline void xw_success(xw_t *w, uint32_t xid) {
    uint8_t b[24];
    fp_put32(b, xid);
    fp_put32(b + 4, 1);
    memset(b + 8, 0, 16);
    xw_bytes(w, b, 24);
}

/* ---------------------------------------------------------------- CRC-32 (zlib.crc32's) */

static uint32_t fp_crc_table[256];

static void fp_crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        fp_crc_table[i] = c;
    }
}

static inline uint32_t fp_crc32(const uint8_t *p, uint32_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = fp_crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#endif
