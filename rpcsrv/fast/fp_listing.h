/* Sorted directory listings for READDIRPLUS, and the cache that lets continuation pages reuse
 * one: the C twin of rpcsrv.export.readdir.DirListings.snapshot.
 *
 * A listing is a directory's entries but "." and "..", sorted by cookie (fp_readdir.h builds it).
 * A listing from cookie 0 is always read afresh and then cached; a continuation page (cookie
 * != 0) may use a cached listing of the same directory (st_dev, st_ino) whose mtime and ctime
 * are those the directory has now and which is at most `ttl` seconds old, exactly the Python
 * path's rule. So paging through a directory of n entries costs one listing per ttl, not one per
 * page (which made it quadratic).
 *
 * Threads: any worker; one mutex guards the slots and the reference counts. A listing is
 * immutable once built; whoever holds a reference (the cache, a request serving a page) may read
 * it without the lock, and the last fp_listing_unref frees it. */
#ifndef NFSBULK_FP_LISTING_H
#define NFSBULK_FP_LISTING_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    uint64_t cookie, ino;
    uint32_t off, len;               /* the name in the names buffer */
} fp_dent;

typedef struct {
    fp_dent *v;
    uint32_t n, cap;
    char *names;
    uint32_t nlen, ncap;
    int refs;                        /* under the cache's lock */
} fp_listing;

#define FP_LCACHE_SLOTS 16

typedef struct {
    uint64_t dev, ino;
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
    double expires, used;
    fp_listing *l;                   /* NULL: a free slot */
} fp_lslot;

typedef struct {
    pthread_mutex_t lock;
    double ttl;
    fp_lslot s[FP_LCACHE_SLOTS];
    uint64_t hits, misses;           /* continuation pages that did / did not find a listing */
} fp_lcache;

static void fp_listing_free(fp_listing *l) {
    free(l->v);
    free(l->names);
}

static void fp_lcache_init(fp_lcache *c, double ttl) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
    c->ttl = ttl;
}

static void fp_unref_locked(fp_listing *l) {
    if (--l->refs == 0) {
        fp_listing_free(l);
        free(l);
    }
}

static void fp_listing_unref(fp_lcache *c, fp_listing *l) {
    pthread_mutex_lock(&c->lock);
    fp_unref_locked(l);
    pthread_mutex_unlock(&c->lock);
}

static int fp_lslot_is(const fp_lslot *s, const struct stat *st) {
    return s->l && s->dev == (uint64_t)st->st_dev && s->ino == (uint64_t)st->st_ino;
}

/* a cached listing of the directory `st` describes now, with a reference for the caller, or NULL */
static fp_listing *fp_lcache_get(fp_lcache *c, const struct stat *st, double now) {
    fp_listing *l = NULL;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < FP_LCACHE_SLOTS; i++) {
        fp_lslot *s = &c->s[i];
        if (!fp_lslot_is(s, st)) continue;
        if (s->expires >= now && s->mtime_s == st->st_mtim.tv_sec && s->mtime_ns == st->st_mtim.tv_nsec &&
            s->ctime_s == st->st_ctim.tv_sec && s->ctime_ns == st->st_ctim.tv_nsec) {
            l = s->l;
            l->refs++;
            s->used = now;
        }
        break;
    }
    if (l) c->hits++; else c->misses++;
    pthread_mutex_unlock(&c->lock);
    return l;
}

/* keep `l` (built now for the directory `st`; the caller keeps its own reference) in the slot of
 * that directory, else a free one, else the least recently used */
static void fp_lcache_put(fp_lcache *c, const struct stat *st, double now, fp_listing *l) {
    fp_lslot *s = NULL;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < FP_LCACHE_SLOTS && !s; i++)
        if (fp_lslot_is(&c->s[i], st)) s = &c->s[i];
    for (int i = 0; i < FP_LCACHE_SLOTS && !s; i++)
        if (!c->s[i].l) s = &c->s[i];
    if (!s) {
        s = &c->s[0];
        for (int i = 1; i < FP_LCACHE_SLOTS; i++)
            if (c->s[i].used < s->used) s = &c->s[i];
    }
    if (s->l) fp_unref_locked(s->l);
    s->l = l;
    l->refs++;
    s->dev = (uint64_t)st->st_dev;
    s->ino = (uint64_t)st->st_ino;
    s->mtime_s = st->st_mtim.tv_sec;
    s->mtime_ns = st->st_mtim.tv_nsec;
    s->ctime_s = st->st_ctim.tv_sec;
    s->ctime_ns = st->st_ctim.tv_nsec;
    s->expires = now + c->ttl;
    s->used = now;
    pthread_mutex_unlock(&c->lock);
}

static void fp_lcache_clear(fp_lcache *c) {
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < FP_LCACHE_SLOTS; i++)
        if (c->s[i].l) { fp_unref_locked(c->s[i].l); c->s[i].l = NULL; }
    pthread_mutex_unlock(&c->lock);
}

#endif
