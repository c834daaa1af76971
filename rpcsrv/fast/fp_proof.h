/* Containment proofs on the fast path: the C twin of rpcsrv.export.contain, whose module doc has the
 * theory. In short: an object a request uses is proven inside the export when it is used (a ".."
 * walk by descriptor for a directory; for anything else, one of its links in a proven directory),
 * and a proof is kept only while inotify has reported nothing that can have ended it. Every object
 * is watched, and its entry registered, before its parent or its link is read, so a rename after
 * that is an event; a walk counts only if no event touched what it relied on while it ran.
 *
 *   IN_MOVE_SELF on a proven directory   the epoch is bumped: every directory proof ends (every
 *                                        ancestor of a proven directory is proven, so one of them
 *                                        moving is the only way a directory leaves)
 *   any event on a non-directory         its proof ends (IN_ATTRIB is the link count)
 *   IN_IGNORED                           the kernel dropped the watch: the entry goes
 *   evicting a proven directory          the epoch is bumped (its watch goes)
 *
 * Every procedure applies the queued events (fp_pf_sync: one FIONREAD when nothing is queued)
 * before it uses a proof. Reads also run in a transaction (fp_txn): the reply stands only if
 * fp_pf_held() finds, after applying the events queued meanwhile, that every proof used still
 * holds (otherwise the caller falls back to Python, which runs the read again).
 *
 * Where proofs are not kept: no inotify instance (every use walks, unguarded), a file system not
 * known to change only through this kernel (watches guard the walk, nothing is kept), a whole file
 * system exported from its mount point (nothing to prove: every object reachable by handle through
 * that mount is inside).
 *
 * Threads: one mutex guards the tables, the epoch and the counters; it is held for bookkeeping and
 * for applying events, never across a walk or a lookup. Entries are referred to by key and
 * generation outside the lock, never by pointer. */
#ifndef NFSBULK_FP_PROOF_H
#define NFSBULK_FP_PROOF_H

#define _GNU_SOURCE 1
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "fp_fh.h"

#define FP_PF_TRIES 4                      /* contain.TRIES */
#define FP_PF_CHAIN 64                     /* walk steps remembered; a deeper walk is not kept */
#define FP_PF_DEPTH 4096
#define FP_PF_DEPS 8
#define FP_IN_DIR (IN_MOVE_SELF | IN_DELETE_SELF)
#define FP_IN_FILE (IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB)

typedef struct fp_pf {
    struct fp_pf *knext, *wnext, *prev, *next;   /* key chain, wd chain, LRU */
    uint64_t dev, ino, gen;
    uint32_t epoch;
    int wd;
    uint8_t isdir, ok;
} fp_pf;

typedef struct {
    pthread_mutex_t lock;
    int ifd;                               /* inotify, or -1 */
    int keep;                              /* proofs are kept between uses */
    int whole_fs;                          /* nothing to prove */
    int root_fd, mount_id;
    uint64_t root_dev, root_ino;
    int draining;                          /* __atomic: a thread is applying events */
    uint32_t epoch;
    uint64_t inval, gen;                   /* proofs ended (__atomic: read without the lock); generations */
    fp_pf **kb, **wb;
    uint32_t nb, count, max;
    fp_pf lru;                             /* sentinel: lru.next is the most recent */
    uint64_t hits, walks, steps, links, scans, outside, raced, ended, epochs, evicted, unwatched;
} fp_proofs;

/* A read transaction: the inval count at its start and the proofs used (key, gen, epoch). */
typedef struct {
    uint64_t inval;
    int n, overflow;
    struct { uint64_t dev, ino, gen; uint32_t epoch; int file; } d[FP_PF_DEPS];
} fp_txn;

static const uint32_t fp_local_fs_magic[] = {0xEF53u, 0x58465342u, 0x9123683Eu, 0x01021994u, 0xF2F52010u,
                                             0x52654973u, 0x3153464Au, 0xCA451A4Eu};

static int fp_local_fs(int fd) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return 0;
    for (size_t i = 0; i < sizeof fp_local_fs_magic / sizeof fp_local_fs_magic[0]; i++)
        if (((uint32_t)s.f_type) == fp_local_fs_magic[i]) return 1;
    return 0;
}

static int fp_pf_init(fp_proofs *P, uint32_t max, int root_fd, uint64_t root_dev, uint64_t root_ino, int mount_id,
                      int whole_fs) {
    memset(P, 0, sizeof *P);
    if (max < 256) max = 256;
    P->nb = 1;
    while (P->nb < max * 2) P->nb <<= 1;
    P->kb = (fp_pf **)calloc(P->nb, sizeof(fp_pf *));
    P->wb = (fp_pf **)calloc(P->nb, sizeof(fp_pf *));
    if (!P->kb || !P->wb) return -1;
    P->max = max;
    P->lru.prev = P->lru.next = &P->lru;
    P->root_fd = root_fd;
    P->root_dev = root_dev;
    P->root_ino = root_ino;
    P->mount_id = mount_id;
    P->whole_fs = whole_fs;
    P->epoch = 1;
    P->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    P->keep = P->ifd >= 0 && fp_local_fs(root_fd);
    pthread_mutex_init(&P->lock, NULL);
    return 0;
}

static void fp_pf_destroy(fp_proofs *P) {
    fp_pf *e, *n;
    if (!P->kb) return;
    for (e = P->lru.next; e && e != &P->lru; e = n) { n = e->next; free(e); }
    P->lru.next = P->lru.prev = &P->lru;
    free(P->kb);
    free(P->wb);
    P->kb = P->wb = NULL;
    if (P->ifd >= 0) close(P->ifd);
    P->ifd = -1;
}

static inline uint32_t fp_pf_kslot(const fp_proofs *P, uint64_t dev, uint64_t ino) {
    return (uint32_t)(((ino ^ (dev << 40)) * 0x9E3779B97F4A7C15ull) >> 32) & (P->nb - 1);
}
static inline uint32_t fp_pf_wslot(const fp_proofs *P, int wd) {
    return (uint32_t)(((uint64_t)(uint32_t)wd * 0x9E3779B97F4A7C15ull) >> 32) & (P->nb - 1);
}

/* The counters, in contain.Containment.counts' order, then entries, proven, epoch. */
#define FP_PF_NSTATS 14
static void fp_pf_stats(fp_proofs *P, uint64_t *out) {
    uint64_t proven = 0;
    fp_pf *e;
    pthread_mutex_lock(&P->lock);
    for (e = P->lru.next; e && e != &P->lru; e = e->next)
        if (e->ok && e->epoch == P->epoch) proven++;
    out[0] = P->hits; out[1] = P->walks; out[2] = P->steps; out[3] = P->links; out[4] = P->scans;
    out[5] = P->outside; out[6] = P->raced; out[7] = P->ended; out[8] = P->epochs; out[9] = P->evicted;
    out[10] = P->unwatched; out[11] = P->count; out[12] = proven; out[13] = P->epoch;
    pthread_mutex_unlock(&P->lock);
}

/* ---------------------------------------------------------------- the table (lock held) */

static fp_pf *fp_pf_find(fp_proofs *P, uint64_t dev, uint64_t ino) {
    fp_pf *e;
    for (e = P->kb[fp_pf_kslot(P, dev, ino)]; e; e = e->knext)
        if (e->ino == ino && e->dev == dev) return e;
    return NULL;
}

static fp_pf *fp_pf_by_wd(fp_proofs *P, int wd) {
    fp_pf *e;
    for (e = P->wb[fp_pf_wslot(P, wd)]; e; e = e->wnext)
        if (e->wd == wd) return e;
    return NULL;
}

static void fp_pf_bump(fp_proofs *P) {
    P->epoch++;
    __atomic_add_fetch(&P->inval, 1, __ATOMIC_SEQ_CST);
    P->epochs++;
}

static void fp_pf_unwd(fp_proofs *P, fp_pf *e) {
    fp_pf **pp;
    if (e->wd < 0) return;
    for (pp = &P->wb[fp_pf_wslot(P, e->wd)]; *pp; pp = &(*pp)->wnext)
        if (*pp == e) { *pp = e->wnext; break; }
    e->wd = -1;
}

/* Take e out of the table; returns its watch for the caller to remove outside the lock (or -1). */
static int fp_pf_drop(fp_proofs *P, fp_pf *e, int keep_watch) {
    fp_pf **pp;
    int wd = keep_watch ? -1 : e->wd;
    if (e->isdir && e->ok && e->epoch == P->epoch) fp_pf_bump(P);
    for (pp = &P->kb[fp_pf_kslot(P, e->dev, e->ino)]; *pp; pp = &(*pp)->knext)
        if (*pp == e) { *pp = e->knext; break; }
    fp_pf_unwd(P, e);
    e->prev->next = e->next;
    e->next->prev = e->prev;
    P->count--;
    free(e);
    return wd;
}

static inline void fp_pf_touch(fp_proofs *P, fp_pf *e) {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = P->lru.next;
    e->prev = &P->lru;
    P->lru.next->prev = e;
    P->lru.next = e;
}

/* The entry of (dev, ino) watched as `wd`, created if need be; its gen. *evict_wd: a watch to remove
 * after the lock (or -1). */
static uint64_t fp_pf_entry(fp_proofs *P, uint64_t dev, uint64_t ino, int isdir, int wd, int *evict_wd) {
    fp_pf *e = fp_pf_find(P, dev, ino), *old;
    *evict_wd = -1;
    if (e && e->isdir != isdir) { fp_pf_drop(P, e, 1); e = NULL; }
    if (!e) {
        e = (fp_pf *)calloc(1, sizeof(fp_pf));
        if (!e) return 0;
        e->dev = dev;
        e->ino = ino;
        e->isdir = (uint8_t)isdir;
        e->wd = -1;
        e->gen = ++P->gen;
        e->knext = P->kb[fp_pf_kslot(P, dev, ino)];
        P->kb[fp_pf_kslot(P, dev, ino)] = e;
        e->next = P->lru.next;
        e->prev = &P->lru;
        P->lru.next->prev = e;
        P->lru.next = e;
        P->count++;
    } else {
        fp_pf_touch(P, e);
    }
    if (e->wd != wd) {
        fp_pf_unwd(P, e);
        if ((old = fp_pf_by_wd(P, wd)) != NULL) fp_pf_drop(P, old, 1);   /* a stale entry of a freed inode */
        e->wd = wd;
        e->wnext = P->wb[fp_pf_wslot(P, wd)];
        P->wb[fp_pf_wslot(P, wd)] = e;
    }
    if (P->count > P->max && P->lru.prev != e) {
        P->evicted++;
        *evict_wd = fp_pf_drop(P, P->lru.prev, 0);
    }
    return e->gen;
}

static inline fp_pf *fp_pf_valid(fp_proofs *P, uint64_t dev, uint64_t ino, int isdir) {
    fp_pf *e = fp_pf_find(P, dev, ino);
    if (e && e->ok && e->isdir == isdir && e->epoch == P->epoch) return e;
    return NULL;
}

/* ---------------------------------------------------------------- events */

static void fp_pf_apply(fp_proofs *P, const char *buf, ssize_t len) {
    ssize_t off = 0;
    while (off + (ssize_t)sizeof(struct inotify_event) <= len) {
        const struct inotify_event *ev = (const struct inotify_event *)(buf + off);
        fp_pf *e;
        off += (ssize_t)sizeof(struct inotify_event) + ev->len;
        if (ev->mask & (IN_Q_OVERFLOW | IN_UNMOUNT)) { fp_pf_bump(P); continue; }
        if ((e = fp_pf_by_wd(P, ev->wd)) == NULL) continue;
        e->gen = ++P->gen;
        __atomic_add_fetch(&P->inval, 1, __ATOMIC_SEQ_CST);
        P->ended++;
        if (e->isdir && (ev->mask & IN_MOVE_SELF) && e->ok && e->epoch == P->epoch) fp_pf_bump(P);
        e->ok = 0;
        if (ev->mask & IN_IGNORED) fp_pf_drop(P, e, 1);
    }
}

/* Apply the queued events (contain.Containment.sync). */
static void fp_pf_sync(fp_proofs *P) {
    int n = 0;
    char buf[8192] __attribute__((aligned(8)));
    if (P->ifd < 0) return;
    if (ioctl(P->ifd, FIONREAD, &n) == 0 && n == 0 && __atomic_load_n(&P->draining, __ATOMIC_SEQ_CST) == 0)
        return;
    pthread_mutex_lock(&P->lock);
    __atomic_add_fetch(&P->draining, 1, __ATOMIC_SEQ_CST);
    /* what is queued now (another thread may have read it meanwhile); later events wait */
    while (ioctl(P->ifd, FIONREAD, &n) == 0 && n > 0) {
        ssize_t r = read(P->ifd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        fp_pf_apply(P, buf, r);
        if ((size_t)n <= sizeof buf) break;
    }
    __atomic_sub_fetch(&P->draining, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&P->lock);
}

/* Watch the object behind fd and register its entry: its gen, or 0 (not watched). */
static uint64_t fp_pf_watch(fp_proofs *P, int fd, int isdir, uint64_t dev, uint64_t ino) {
    char path[40];
    int wd, ev;
    uint64_t gen;
    if (P->ifd < 0) return 0;
    pthread_mutex_lock(&P->lock);                /* an entry that has a watch keeps it */
    {
        fp_pf *e = fp_pf_find(P, dev, ino);
        if (e && e->isdir == isdir && e->wd >= 0) {
            fp_pf_touch(P, e);
            gen = e->gen;
            pthread_mutex_unlock(&P->lock);
            return gen;
        }
    }
    pthread_mutex_unlock(&P->lock);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    wd = inotify_add_watch(P->ifd, path, isdir ? FP_IN_DIR : FP_IN_FILE);
    pthread_mutex_lock(&P->lock);
    if (wd < 0) {
        P->unwatched++;
        pthread_mutex_unlock(&P->lock);
        return 0;
    }
    gen = fp_pf_entry(P, dev, ino, isdir, wd, &ev);
    pthread_mutex_unlock(&P->lock);
    if (ev >= 0) inotify_rm_watch(P->ifd, ev);
    return gen;
}

/* ---------------------------------------------------------------- transactions */

static inline void fp_txn_begin(fp_proofs *P, fp_txn *t) {
    fp_pf_sync(P);
    t->inval = __atomic_load_n(&P->inval, __ATOMIC_SEQ_CST);
    t->n = t->overflow = 0;
}

static inline void fp_txn_dep(fp_txn *t, uint64_t dev, uint64_t ino, uint64_t gen, uint32_t epoch, int file) {
    if (!t) return;
    if (t->n == FP_PF_DEPS) { t->overflow = 1; return; }
    t->d[t->n].dev = dev;
    t->d[t->n].ino = ino;
    t->d[t->n].gen = gen;
    t->d[t->n].epoch = epoch;
    t->d[t->n].file = file;
    t->n++;
}

/* After the events queued so far: did every proof the transaction used hold until now? */
static int fp_pf_held(fp_proofs *P, const fp_txn *t) {
    int ok = 1;
    fp_pf_sync(P);
    if (__atomic_load_n(&P->inval, __ATOMIC_SEQ_CST) == t->inval) return 1;   /* nothing ended */
    pthread_mutex_lock(&P->lock);
    if (t->overflow) ok = 0;
    for (int i = 0; ok && i < t->n; i++) {
        fp_pf *e;
        if (t->d[i].epoch != P->epoch) ok = 0;
        else if (t->d[i].file && ((e = fp_pf_find(P, t->d[i].dev, t->d[i].ino)) == NULL || e->gen != t->d[i].gen))
            ok = 0;
    }
    pthread_mutex_unlock(&P->lock);
    return ok;
}

/* ---------------------------------------------------------------- proofs */

typedef struct { uint64_t dev, ino, gen; } fp_link_t;

/* After a walk or a link search: apply the queue; if the epoch is still e0 and no event touched the
 * entries relied on, the answer stands (and is kept when every one of them is watched). */
static int fp_pf_settle(fp_proofs *P, const fp_link_t *c, int n, int all, uint32_t e0) {
    int ok = 1;
    if (P->ifd < 0) return 1;
    fp_pf_sync(P);
    pthread_mutex_lock(&P->lock);
    if (P->epoch != e0) ok = 0;
    for (int i = 0; ok && i < n; i++) {
        fp_pf *e;
        if (!c[i].gen) continue;
        if ((e = fp_pf_find(P, c[i].dev, c[i].ino)) == NULL || e->gen != c[i].gen) ok = 0;
    }
    if (ok && all && P->keep)
        for (int i = 0; i < n; i++) {
            fp_pf *e = fp_pf_find(P, c[i].dev, c[i].ino);
            if (e) { e->ok = 1; e->epoch = e0; }
        }
    if (!ok) P->raced++;
    pthread_mutex_unlock(&P->lock);
    return ok;
}

static inline int fp_pf_is_root(const fp_proofs *P, const struct stat *st) {
    return (uint64_t)st->st_dev == P->root_dev && (uint64_t)st->st_ino == P->root_ino;
}

static int fp_pf_prove_in(fp_proofs *P, int fd, const struct stat *st, const fp_parent *par, fp_txn *t);

/* A directory: walk ".." (1 inside, 0 outside, -1 raced every try). */
static int fp_pf_dir(fp_proofs *P, int fd, const struct stat *st, fp_txn *t) {
    for (int attempt = 0; attempt < FP_PF_TRIES; attempt++) {
        fp_link_t chain[FP_PF_CHAIN];
        int n = 0, all = 1, inside = 0, cur = fd, nfd, depth;
        struct stat cst = *st, pst;
        uint32_t e0;
        pthread_mutex_lock(&P->lock);
        e0 = P->epoch;
        pthread_mutex_unlock(&P->lock);
        for (depth = 0; depth < FP_PF_DEPTH; depth++) {
            uint64_t gen;
            if (fp_pf_is_root(P, &cst)) { inside = 1; break; }
            if (depth > 0) {
                int v;
                pthread_mutex_lock(&P->lock);
                v = fp_pf_valid(P, (uint64_t)cst.st_dev, (uint64_t)cst.st_ino, 1) != NULL;
                pthread_mutex_unlock(&P->lock);
                if (v) { inside = 1; break; }
            }
            gen = fp_pf_watch(P, cur, 1, (uint64_t)cst.st_dev, (uint64_t)cst.st_ino);
            if (!gen) all = 0;
            if (n < FP_PF_CHAIN) {
                chain[n].dev = (uint64_t)cst.st_dev;
                chain[n].ino = (uint64_t)cst.st_ino;
                chain[n].gen = gen;
                n++;
            } else all = 0;
            nfd = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (nfd < 0) break;
            if (cur != fd) close(cur);
            cur = nfd;
            if (fstat(cur, &pst) != 0) break;
            if ((pst.st_dev == cst.st_dev && pst.st_ino == cst.st_ino) || (uint64_t)pst.st_dev != P->root_dev)
                break;                                       /* the top of the file system, another device */
            cst = pst;
        }
        if (cur != fd) close(cur);
        pthread_mutex_lock(&P->lock);
        P->walks++;
        P->steps += (uint64_t)depth;
        if (!inside) P->outside++;
        pthread_mutex_unlock(&P->lock);
        if (!inside) return 0;
        if (fp_pf_settle(P, chain, n, all, e0)) {
            fp_txn_dep(t, 0, 0, 0, e0, 0);
            return 1;
        }
    }
    return -1;
}

/* Does `name` in the directory lead to (dev, ino), no symlink followed? */
static int fp_pf_links(int dfd, const char *name, uint64_t dev, uint64_t ino) {
    struct stat s;
    if (!*name || fstatat(dfd, name, &s, AT_SYMLINK_NOFOLLOW) != 0) return 0;
    return (uint64_t)s.st_dev == dev && (uint64_t)s.st_ino == ino;
}

static int fp_pf_dir_ok(fp_proofs *P, int dfd, fp_txn *t) {
    struct stat s;
    if (fstat(dfd, &s) != 0 || !S_ISDIR(s.st_mode)) return 0;
    return fp_pf_prove_in(P, dfd, &s, NULL, t);
}

static int fp_pf_open_handle(const fp_proofs *P, uint8_t type, const uint8_t *b, uint32_t n) {
    struct { struct file_handle fh; unsigned char bytes[128]; } h;
    if (n > 128) return -1;
    h.fh.handle_bytes = n;
    h.fh.handle_type = type;
    memcpy(h.fh.f_handle, b, n);
    return open_by_handle_at(P->root_fd, &h.fh, O_PATH | O_CLOEXEC);
}

/* The parent directory of `path` (the kernel's path of the object) below the root's current path,
 * resolved from the root fd one component at a time and reopened by its handle (so a bind mount on
 * the way is refused); -1 if none. *name: its last component, inside `path`. */
static int fp_pf_parent_by_path(const fp_proofs *P, char *path, const char **name) {
    char rl[40], root[4096];
    ssize_t rn;
    size_t pl;
    int cur, nfd;
    char *p, *slash;
    snprintf(rl, sizeof rl, "/proc/self/fd/%d", P->root_fd);
    if ((rn = readlink(rl, root, sizeof root - 1)) <= 0) return -1;
    root[rn] = 0;
    while (rn > 1 && root[rn - 1] == '/') root[--rn] = 0;
    pl = rn == 1 ? 0 : (size_t)rn;                        /* the root "/" is the prefix "" */
    if (strncmp(path, root, pl) != 0 || path[pl] != '/') return -1;
    p = path + pl + 1;
    if ((slash = strrchr(p, '/')) == NULL) slash = p - 1;   /* the object is in the root itself */
    *name = slash + 1;
    cur = openat(P->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    while (cur >= 0 && p < slash) {
        char *e = strchr(p, '/');
        *e = 0;
        if (!*p || !strcmp(p, ".") || !strcmp(p, "..")) { *e = '/'; close(cur); return -1; }
        nfd = openat(cur, p, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        *e = '/';
        close(cur);
        cur = nfd;
        p = e + 1;
    }
    if (cur < 0) return -1;
    if (P->mount_id >= 0) {
        struct { struct file_handle fh; unsigned char bytes[128]; } h;
        int mnt;
        h.fh.handle_bytes = 128;
        if (name_to_handle_at(cur, "", &h.fh, &mnt, AT_EMPTY_PATH) != 0 || mnt != P->mount_id) {
            close(cur);
            return -1;
        }
        close(cur);
        cur = open_by_handle_at(P->root_fd, &h.fh, O_PATH | O_CLOEXEC);
    }
    return cur;
}

/* A non-directory: one of its links in a proven directory (1), none (0), or undecided (-1). */
static int fp_pf_find_link(fp_proofs *P, int fd, const struct stat *st, const fp_parent *par, fp_txn *t) {
    char link[40], path[4096];
    const char *base = NULL, *name;
    ssize_t n;
    int pfd = -1, r = 0, dfd;
    uint64_t dev = (uint64_t)st->st_dev, ino = (uint64_t)st->st_ino;
    pthread_mutex_lock(&P->lock);
    P->links++;
    pthread_mutex_unlock(&P->lock);
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n > 1 && path[0] == '/') {
        path[n] = 0;
        base = strrchr(path, '/') + 1;
    } else path[0] = 0;
    if (par && par->have) pfd = fp_pf_open_handle(P, par->type, par->b, par->n);
    if (pfd >= 0 && base && fp_pf_links(pfd, base, dev, ino) && (r = fp_pf_dir_ok(P, pfd, t)) != 0) goto out;
    if (path[0] && (dfd = fp_pf_parent_by_path(P, path, &name)) >= 0) {
        if (fp_pf_links(dfd, name, dev, ino)) r = fp_pf_dir_ok(P, dfd, t);
        close(dfd);
        if (r != 0) goto out;
    }
    if (pfd >= 0) {                                          /* the recorded parent, scanned */
        int sfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
        struct dirent *de;
        pthread_mutex_lock(&P->lock);
        P->scans++;
        pthread_mutex_unlock(&P->lock);
        if (!d && sfd >= 0) close(sfd);
        while (d && (de = readdir(d)) != NULL) {
            if ((uint64_t)de->d_ino != ino) continue;
            if (fp_pf_links(pfd, de->d_name, dev, ino) && (r = fp_pf_dir_ok(P, pfd, t)) != 0) break;
        }
        if (d) closedir(d);
    }
out:
    if (pfd >= 0) close(pfd);
    return r;
}

static int fp_pf_file(fp_proofs *P, int fd, const struct stat *st, const fp_parent *par, fp_txn *t) {
    for (int attempt = 0; attempt < FP_PF_TRIES; attempt++) {
        fp_link_t me;
        uint32_t e0;
        int r;
        pthread_mutex_lock(&P->lock);
        e0 = P->epoch;
        pthread_mutex_unlock(&P->lock);
        me.dev = (uint64_t)st->st_dev;
        me.ino = (uint64_t)st->st_ino;
        me.gen = fp_pf_watch(P, fd, 0, me.dev, me.ino);
        r = fp_pf_find_link(P, fd, st, par, t);
        if (r <= 0) {
            if (r == 0) { pthread_mutex_lock(&P->lock); P->outside++; pthread_mutex_unlock(&P->lock); }
            return r;
        }
        if (fp_pf_settle(P, &me, 1, me.gen != 0, e0)) {
            if (me.gen) fp_txn_dep(t, me.dev, me.ino, me.gen, e0, 1);
            return 1;
        }
    }
    return -1;
}

static int fp_pf_prove_in(fp_proofs *P, int fd, const struct stat *st, const fp_parent *par, fp_txn *t) {
    int isdir = S_ISDIR(st->st_mode);
    fp_pf *e;
    if (P->whole_fs || fp_pf_is_root(P, st)) return 1;
    if ((uint64_t)st->st_dev != P->root_dev) return 0;
    pthread_mutex_lock(&P->lock);
    if ((e = fp_pf_valid(P, (uint64_t)st->st_dev, (uint64_t)st->st_ino, isdir)) != NULL) {
        P->hits++;
        fp_pf_touch(P, e);
        fp_txn_dep(t, e->dev, e->ino, e->gen, P->epoch, !isdir);
        pthread_mutex_unlock(&P->lock);
        return 1;
    }
    pthread_mutex_unlock(&P->lock);
    return isdir ? fp_pf_dir(P, fd, st, t) : fp_pf_file(P, fd, st, par, t);
}

/* Is the object behind fd (its stat st) inside the export now? `t`: the read transaction (no sync
 * first) or NULL (a modifying procedure: sync first). 1 inside, 0 outside, -1 undecided. */
static int fp_pf_prove(fp_proofs *P, int fd, const struct stat *st, const fp_parent *par, fp_txn *t) {
    if (!t && !P->whole_fs) fp_pf_sync(P);
    return fp_pf_prove_in(P, fd, st, par, t);
}

#endif
