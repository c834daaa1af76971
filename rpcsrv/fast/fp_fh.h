/* File handles on the fast path: the MAC check, the kernel-handle layout, and the cache of
 * handles with their open fds.
 *
 * Layout and MAC are rpcsrv.export.handles' (see there): the fast path checks the 12-byte keyed
 * BLAKE2s MAC of every handle exactly as HandleCodec.parse does, and packs new handles (LOOKUP,
 * CREATE, READDIRPLUS results) byte for byte as HandleCodec.pack_kernel does. It serves kernel-mode
 * exports only; anything else it cannot judge here makes the caller fall back to Python.
 *
 * The cache is a cache of descriptors, never of trust: an entry says "this authentic handle opened
 * to the object (dev, ino)" and holds an O_PATH fd of it and, once needed, O_RDONLY / O_RDWR fds of
 * a regular file (as the open-file leases do), for fd_ttl seconds after it was made (never extended
 * by a hit). Whether the object is inside the export is proven at every use (fp_proof.h). Entries
 * come from the fast path's own LOOKUP/CREATE/READDIRPLUS results and from the Python path, which
 * publishes the handles it opens; an expired or unknown handle falls back to Python.
 *
 * Threads: one mutex guards the table, the LRU list and the reference counts; it is never held
 * across a system call. An entry in use is pinned by its reference; eviction only unlinks it, and
 * the last reference closes its fds. */
#ifndef NFSBULK_FP_FH_H
#define NFSBULK_FP_FH_H

#define _GNU_SOURCE 1
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "blake2.h"
#include "fp_core.h"

#define FP_FH_MAC 12u
#define FP_FH_MIN (6u + 2u + FP_FH_MAC)
#define FP_KIND_KERNEL 1
#define FP_KIND_KERNEL_PARENT 2

/* Is this a well-formed kernel-mode handle of our export with a good MAC?  Sets the kernel handle
 * (type, bytes) it carries.  0: yes; -1: anything else (BADHANDLE, STALE, inode mode: Python's). */
static int fp_fh_check(const fp_conf *c, const uint8_t *fh, uint32_t n, uint8_t *htype,
                       const uint8_t **hb, uint32_t *hn) {
    uint8_t mac[FP_FH_MAC];
    uint32_t end;
    if (n < FP_FH_MIN || n > FP_FHSIZE || fh[0] != 1) return -1;
    nb_blake2s(mac, FP_FH_MAC, c->mac_key, 32, fh, n - FP_FH_MAC);
    if (memcmp(mac, fh + n - FP_FH_MAC, FP_FH_MAC) != 0) return -1;
    if (memcmp(fh + 2, c->export_id, 4) != 0) return -1;
    if (fh[1] != FP_KIND_KERNEL && fh[1] != FP_KIND_KERNEL_PARENT) return -1;
    *htype = fh[6];
    *hn = fh[7];
    *hb = fh + 8;
    end = 8 + *hn;
    if (fh[1] == FP_KIND_KERNEL_PARENT) {
        if (n - FP_FH_MAC < end + 2) return -1;
        end += 2 + fh[end + 1];
    }
    return end == n - FP_FH_MAC ? 0 : -1;
}

/* The kernel handle a handle records for the object's directory (kind 2), if any. */
typedef struct {
    int have;
    uint8_t type;
    const uint8_t *b;
    uint32_t n;
} fp_parent;

/* fp_fh_check must have accepted fh. */
static inline void fp_fh_parent(const uint8_t *fh, uint32_t n, fp_parent *p) {
    uint32_t end = 8u + fh[7];
    p->have = 0;
    if (fh[1] != FP_KIND_KERNEL_PARENT || end + 2 > n - FP_FH_MAC) return;
    p->type = fh[end];
    p->n = fh[end + 1];
    p->b = fh + end + 2;
    p->have = 1;
}

/* HandleCodec.pack_kernel: the object's kernel handle, its parent's when given, fits and the
 * object is no directory, then the MAC. Returns the length. */
static uint32_t fp_fh_pack(const fp_conf *c, uint8_t *out, uint8_t htype, const uint8_t *hb, uint32_t hn,
                           int with_parent, uint8_t ptype, const uint8_t *pb, uint32_t pn) {
    uint32_t n = 8 + hn;
    out[0] = 1;
    out[1] = FP_KIND_KERNEL;
    memcpy(out + 2, c->export_id, 4);
    out[6] = htype;
    out[7] = (uint8_t)hn;
    memcpy(out + 8, hb, hn);
    if (with_parent && n + 2 + pn + FP_FH_MAC <= FP_FHSIZE) {
        out[1] = FP_KIND_KERNEL_PARENT;
        out[n] = ptype;
        out[n + 1] = (uint8_t)pn;
        memcpy(out + n + 2, pb, pn);
        n += 2 + pn;
    }
    nb_blake2s(out + n, FP_FH_MAC, c->mac_key, 32, out, n);
    return n + FP_FH_MAC;
}

/* name_to_handle_at(fd, "", AT_EMPTY_PATH): the kernel handle and mount id of an O_PATH fd.
 * 0 or -errno; -EOVERFLOW when it does not fit a handle byte count. */
static int fp_kernel_handle(int fd, uint8_t *htype, uint8_t *hb, uint32_t *hn, int *mount_id) {
    struct { struct file_handle fh; unsigned char bytes[128]; } h;
    h.fh.handle_bytes = 128;
    if (name_to_handle_at(fd, "", &h.fh, mount_id, AT_EMPTY_PATH) != 0) return -errno;
    if (h.fh.handle_type < 0 || h.fh.handle_type > 255 || h.fh.handle_bytes > 255) return -EOVERFLOW;
    *htype = (uint8_t)h.fh.handle_type;
    *hn = h.fh.handle_bytes;
    memcpy(hb, h.fh.f_handle, *hn);
    return 0;
}

/* ---------------------------------------------------------------- the cache */

typedef struct fp_fhent {
    struct fp_fhent *hnext, *prev, *next;   /* hash chain; LRU list */
    struct fp_fhent *inext;                /* inode chain (every handle of one object) */
    uint8_t fh[FP_FHSIZE];
    uint32_t fhlen, hash;
    int fd, rfd, wfd;                      /* O_PATH; O_RDONLY / O_RDWR or -1 */
    uint64_t dev, ino;
    double expires;
    int refs;                              /* 1 for the table while in it, + 1 per user */
    int in_table;
} fp_fhent;

typedef struct {
    pthread_mutex_t lock;
    fp_fhent **buckets, **ibuckets;
    uint32_t nbuckets, count, max;
    fp_fhent lru;                          /* sentinel: lru.next is the most recent */
    uint64_t hits, misses, expired, inserts, evictions;
} fp_fhcache;

static uint32_t fp_fh_hash(const uint8_t *fh, uint32_t n) {
    uint32_t h = 2166136261u;                /* FNV-1a: the MAC bytes make it well spread */
    for (uint32_t i = 0; i < n; i++) h = (h ^ fh[i]) * 16777619u;
    return h;
}

static int fp_fhc_init(fp_fhcache *c, uint32_t max) {
    c->nbuckets = 1;
    while (c->nbuckets < max * 2) c->nbuckets <<= 1;
    c->buckets = (fp_fhent **)calloc(c->nbuckets, sizeof(fp_fhent *));
    c->ibuckets = (fp_fhent **)calloc(c->nbuckets, sizeof(fp_fhent *));
    if (!c->buckets || !c->ibuckets) return -1;
    c->count = 0;
    c->max = max;
    c->lru.prev = c->lru.next = &c->lru;
    c->hits = c->misses = c->expired = c->inserts = c->evictions = 0;
    pthread_mutex_init(&c->lock, NULL);
    return 0;
}

static void fp_fhent_free(fp_fhent *e) {
    if (e->fd >= 0) close(e->fd);
    if (e->rfd >= 0) close(e->rfd);
    if (e->wfd >= 0) close(e->wfd);
    free(e);
}

static inline uint32_t fp_ino_slot(const fp_fhcache *c, uint64_t ino) {
    return (uint32_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) & (c->nbuckets - 1);
}

/* lock held: take e out of the hash chains and the LRU list; drop the table's reference */
static fp_fhent *fp_fhc_unlink(fp_fhcache *c, fp_fhent *e) {
    fp_fhent **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    pp = &c->ibuckets[fp_ino_slot(c, e->ino)];
    while (*pp != e) pp = &(*pp)->inext;
    *pp = e->inext;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->in_table = 0;
    c->count--;
    return --e->refs == 0 ? e : NULL;       /* the caller frees it outside the lock */
}

/* A pinned entry for a verified, unexpired handle, or NULL. Release it with fp_fhc_put. */
static fp_fhent *fp_fhc_get(fp_fhcache *c, const uint8_t *fh, uint32_t n) {
    uint32_t h = fp_fh_hash(fh, n);
    fp_fhent *e, *dead = NULL;
    double now = fp_now();
    pthread_mutex_lock(&c->lock);
    for (e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->fhlen == n && memcmp(e->fh, fh, n) == 0) break;
    if (e && e->expires < now) {
        dead = fp_fhc_unlink(c, e);
        c->expired++;
        e = NULL;
    }
    if (e) {
        e->refs++;
        e->prev->next = e->next;
        e->next->prev = e->prev;
        e->next = c->lru.next;
        e->prev = &c->lru;
        c->lru.next->prev = e;
        c->lru.next = e;
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->lock);
    if (dead) fp_fhent_free(dead);
    return e;
}

static void fp_fhc_put(fp_fhcache *c, fp_fhent *e) {
    int last;
    pthread_mutex_lock(&c->lock);
    last = --e->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (last) fp_fhent_free(e);
}

/* Insert (or replace) a verified handle whose O_PATH fd is `fd` (the cache now owns it). */
static void fp_fhc_insert(fp_fhcache *c, const uint8_t *fh, uint32_t n, int fd, uint64_t dev, uint64_t ino,
                          double expires) {
    fp_fhent *e = (fp_fhent *)calloc(1, sizeof(fp_fhent)), *old, *dead[2] = {NULL, NULL};
    if (!e) { close(fd); return; }
    memcpy(e->fh, fh, n);
    e->fhlen = n;
    e->hash = fp_fh_hash(fh, n);
    e->fd = fd;
    e->rfd = e->wfd = -1;
    e->dev = dev;
    e->ino = ino;
    e->expires = expires;
    e->refs = 1;
    e->in_table = 1;
    pthread_mutex_lock(&c->lock);
    for (old = c->buckets[e->hash & (c->nbuckets - 1)]; old; old = old->hnext)
        if (old->hash == e->hash && old->fhlen == n && memcmp(old->fh, fh, n) == 0) break;
    if (old) dead[0] = fp_fhc_unlink(c, old);
    if (c->count >= c->max && c->lru.prev != &c->lru) {
        dead[1] = fp_fhc_unlink(c, c->lru.prev);
        c->evictions++;
    }
    e->hnext = c->buckets[e->hash & (c->nbuckets - 1)];
    c->buckets[e->hash & (c->nbuckets - 1)] = e;
    e->inext = c->ibuckets[fp_ino_slot(c, ino)];
    c->ibuckets[fp_ino_slot(c, ino)] = e;
    e->next = c->lru.next;
    e->prev = &c->lru;
    c->lru.next->prev = e;
    c->lru.next = e;
    c->count++;
    c->inserts++;
    pthread_mutex_unlock(&c->lock);
    if (dead[0]) fp_fhent_free(dead[0]);
    if (dead[1]) fp_fhent_free(dead[1]);
}

/* Drop a handle's entry (the Python path saw it go away). */
static void fp_fhc_forget(fp_fhcache *c, const uint8_t *fh, uint32_t n) {
    uint32_t h = fp_fh_hash(fh, n);
    fp_fhent *e, *dead = NULL;
    pthread_mutex_lock(&c->lock);
    for (e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->fhlen == n && memcmp(e->fh, fh, n) == 0) break;
    if (e) dead = fp_fhc_unlink(c, e);
    pthread_mutex_unlock(&c->lock);
    if (dead) fp_fhent_free(dead);
}

/* Drop the expired entries (once a second): their fds close, so a removed file's space is freed
 * even if nobody asks for its handle again. */
static void fp_fhc_sweep(fp_fhcache *c) {
    double now = fp_now();
    fp_fhent *dead = NULL, *e, *prev;
    pthread_mutex_lock(&c->lock);
    for (e = c->lru.prev; e != &c->lru; e = prev) {
        prev = e->prev;
        if (e->expires < now) {
            c->expired++;
            if (fp_fhc_unlink(c, e)) { e->hnext = dead; dead = e; }
        }
    }
    pthread_mutex_unlock(&c->lock);
    while (dead) { e = dead->hnext; fp_fhent_free(dead); dead = e; }
}

/* The object (dev, ino) lost its last link (REMOVE): drop its entries so their fds close now and
 * its inode and space are free at once, as they are when nobody holds it open. */
static void fp_fhc_forget_ino(fp_fhcache *c, uint64_t dev, uint64_t ino) {
    fp_fhent *dead = NULL, *e;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        for (e = c->ibuckets[fp_ino_slot(c, ino)]; e; e = e->inext)
            if (e->ino == ino && e->dev == dev) break;
        if (!e) break;
        if (fp_fhc_unlink(c, e)) { e->hnext = dead; dead = e; }
    }
    pthread_mutex_unlock(&c->lock);
    while (dead) { e = dead->hnext; fp_fhent_free(dead); dead = e; }
}

/* Empty the table (server stop). Entries still pinned are freed by their last user. */
static void fp_fhc_clear(fp_fhcache *c) {
    for (;;) {
        fp_fhent *dead = NULL;
        pthread_mutex_lock(&c->lock);
        if (c->lru.next == &c->lru) { pthread_mutex_unlock(&c->lock); break; }
        dead = fp_fhc_unlink(c, c->lru.next);
        pthread_mutex_unlock(&c->lock);
        if (dead) fp_fhent_free(dead);
    }
}

/* The I/O fd of a regular file entry (O_RDWR when `write`, else any), opened once through
 * /proc/self/fd as the Python leases do. -errno on failure. */
static int fp_fhent_iofd(fp_fhcache *c, fp_fhent *e, int write) {
    char path[40];
    int fd, *slot = write ? &e->wfd : &e->rfd, have;
    pthread_mutex_lock(&c->lock);
    have = write ? e->wfd : (e->wfd >= 0 ? e->wfd : e->rfd);
    pthread_mutex_unlock(&c->lock);
    if (have >= 0) return have;
    snprintf(path, sizeof path, "/proc/self/fd/%d", e->fd);
    fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -errno;
    pthread_mutex_lock(&c->lock);
    if (*slot < 0) { *slot = fd; fd = -1; }
    have = *slot;
    pthread_mutex_unlock(&c->lock);
    if (fd >= 0) close(fd);
    return have;
}

/* The Python path opened a handle (and proved it inside): open it by its kernel handle and cache it
 * until `expires` if it is still the object (dev, ino), unless an entry has more than half its life
 * left. */
static void fp_fhc_publish(fp_fhcache *c, const fp_conf *conf, const uint8_t *fh, uint32_t n, uint64_t dev,
                           uint64_t ino, double expires) {
    uint8_t htype;
    const uint8_t *hb;
    uint32_t hn, hash = fp_fh_hash(fh, n);
    struct { struct file_handle fh; unsigned char bytes[128]; } h;
    struct stat st;
    fp_fhent *e;
    int fd, fresh = 0;
    if (fp_fh_check(conf, fh, n, &htype, &hb, &hn) != 0 || hn > 128) return;
    pthread_mutex_lock(&c->lock);
    for (e = c->buckets[hash & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == hash && e->fhlen == n && memcmp(e->fh, fh, n) == 0) break;
    fresh = e && e->dev == dev && e->ino == ino && e->expires - fp_now() > conf->fd_ttl / 2;
    pthread_mutex_unlock(&c->lock);
    if (fresh) return;
    h.fh.handle_bytes = hn;
    h.fh.handle_type = htype;
    memcpy(h.fh.f_handle, hb, hn);
    fd = open_by_handle_at(conf->root_fd, &h.fh, O_PATH | O_CLOEXEC);
    if (fd < 0) return;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
        close(fd);
        return;
    }
    fp_fhc_insert(c, fh, n, fd, dev, ino, expires);
}

#endif
