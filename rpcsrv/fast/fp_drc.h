/* The duplicate request cache shared by the fast path and the Python path (knfsd's nfsd_cache).
 *
 * The semantics of rpcsrv.svc.svc.ReplyCache, in C so that a retransmission finds the original
 * reply whichever path served the original call: keyed on the client's address, xid,
 * program/version/procedure, the call's length and the CRC-32 of its first 256 bytes; an entry is
 * IN_PROGRESS until its reply is stored; a duplicate arriving meanwhile is dropped; a hit gets the
 * stored reply (without the record marker) byte for byte; `size` entries at most, least recently
 * used first out. Used for the non-idempotent procedures only.
 *
 * Threads: one mutex around everything; replies are copied in and out under it (they are small:
 * the cached procedures' replies are a few hundred bytes). */
#ifndef NFSBULK_FP_DRC_H
#define NFSBULK_FP_DRC_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t addr[16];
    uint32_t addrlen, xid, prog, vers, proc, len, crc;
} fp_drckey;

typedef struct fp_drcent {
    struct fp_drcent *hnext, *prev, *next;
    fp_drckey key;
    uint32_t hash;
    uint8_t *reply;                  /* NULL while IN_PROGRESS */
    uint32_t reply_len;
} fp_drcent;

typedef struct {
    pthread_mutex_t lock;
    fp_drcent **buckets;
    uint32_t nbuckets, count, size;
    fp_drcent lru;                   /* lru.next: most recently used */
} fp_drc;

enum { FP_DRC_NEW = 0, FP_DRC_IN_PROGRESS = 1, FP_DRC_HIT = 2 };

static uint32_t fp_drc_hash(const fp_drckey *k) {
    const uint8_t *p = (const uint8_t *)k;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static int fp_drc_init(fp_drc *d, uint32_t size) {
    d->nbuckets = 1;
    while (d->nbuckets < size * 2) d->nbuckets <<= 1;
    d->buckets = (fp_drcent **)calloc(d->nbuckets, sizeof(fp_drcent *));
    if (!d->buckets) return -1;
    d->count = 0;
    d->size = size ? size : 1;
    d->lru.prev = d->lru.next = &d->lru;
    pthread_mutex_init(&d->lock, NULL);
    return 0;
}

static fp_drcent *fp_drc_find(fp_drc *d, const fp_drckey *k, uint32_t h) {
    fp_drcent *e;
    for (e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && memcmp(&e->key, k, sizeof *k) == 0) return e;
    return NULL;
}

static void fp_drc_unlink(fp_drc *d, fp_drcent *e) {
    fp_drcent **pp = &d->buckets[e->hash & (d->nbuckets - 1)];
    while (*pp != e) pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->prev->next = e->next;
    e->next->prev = e->prev;
    d->count--;
    free(e->reply);
    free(e);
}

static void fp_drc_front(fp_drc *d, fp_drcent *e) {
    e->next = d->lru.next;
    e->prev = &d->lru;
    d->lru.next->prev = e;
    d->lru.next = e;
}

/* ReplyCache.begin: NEW (now in progress), IN_PROGRESS, or HIT with the reply copied into out
 * (at most cap bytes; *out_len its length). A key must be zero-filled before its fields are set. */
static int fp_drc_begin(fp_drc *d, const fp_drckey *k, uint8_t *out, uint32_t cap, uint32_t *out_len) {
    uint32_t h = fp_drc_hash(k);
    fp_drcent *e;
    int r;
    pthread_mutex_lock(&d->lock);
    e = fp_drc_find(d, k, h);
    if (e) {
        e->prev->next = e->next;
        e->next->prev = e->prev;
        fp_drc_front(d, e);
        if (!e->reply) r = FP_DRC_IN_PROGRESS;
        else {
            *out_len = e->reply_len < cap ? e->reply_len : cap;
            memcpy(out, e->reply, *out_len);
            r = FP_DRC_HIT;
        }
        pthread_mutex_unlock(&d->lock);
        return r;
    }
    e = (fp_drcent *)calloc(1, sizeof(fp_drcent));
    if (e) {
        e->key = *k;
        e->hash = h;
        e->hnext = d->buckets[h & (d->nbuckets - 1)];
        d->buckets[h & (d->nbuckets - 1)] = e;
        fp_drc_front(d, e);
        d->count++;
        while (d->count > d->size) fp_drc_unlink(d, d->lru.prev);
    }
    pthread_mutex_unlock(&d->lock);
    return FP_DRC_NEW;
}

/* ReplyCache.finish: store the reply (reply NULL: forget the call, it sent nothing). */
static void fp_drc_finish(fp_drc *d, const fp_drckey *k, const uint8_t *reply, uint32_t len) {
    uint32_t h = fp_drc_hash(k);
    fp_drcent *e;
    uint8_t *copy = NULL;
    if (reply) {
        copy = (uint8_t *)malloc(len ? len : 1);
        if (copy) memcpy(copy, reply, len);
    }
    pthread_mutex_lock(&d->lock);
    e = fp_drc_find(d, k, h);
    if (e && !reply) fp_drc_unlink(d, e);
    else if (e && copy) {
        free(e->reply);
        e->reply = copy;
        e->reply_len = len;
        copy = NULL;
    }
    pthread_mutex_unlock(&d->lock);
    free(copy);
}

#endif
