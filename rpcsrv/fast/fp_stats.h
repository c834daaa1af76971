/* The fast path's counters: one block per worker thread, written by that thread alone with plain
 * increments, read whole at scrape time by rpcsrv.svc.metrics (habit 7: the hot path counts, the
 * scrape exposes). A reader may see a block mid-update (one counter ahead of another); every
 * counter itself is a naturally aligned 64-bit word, read in one piece. */
#ifndef NFSBULK_FP_STATS_H
#define NFSBULK_FP_STATS_H

#include <stdint.h>
#include <time.h>

/* FP_NPROC, FP_NSTAT (and fp_stat_values), the bucket counts and bounds: generated from the Python
 * declarations (rpcsrv/fast/gen_tables.py) */
#include "fp_tables.h"

#define FP_NERRNO 134

typedef struct {
    uint64_t requests[FP_NPROC][FP_NSTAT];
    uint64_t dur[FP_NPROC][FP_HBUCKETS];     /* per bucket, not cumulative */
    uint64_t dur_sum_ns[FP_NPROC];
    uint64_t fallbacks[FP_NPROC + 1];        /* [FP_NPROC]: not an NFSv3 call */
    uint64_t alloc[FP_ABUCKETS];
    uint64_t alloc_sum_ns;
    uint64_t pages[FP_PBUCKETS];
    uint64_t pages_sum;
    uint64_t scanned[FP_PBUCKETS];           /* slots the strategy visited per svc_alloc_arg call */
    uint64_t scanned_sum;
    uint64_t waits, stalls;
    uint64_t queue[FP_HBUCKETS];
    uint64_t queue_sum_ns;
    uint64_t read_bytes, write_bytes;
    uint64_t drc_hit, drc_miss, drc_in_progress;
    uint64_t in_flight;
    uint64_t recv_errno[FP_NERRNO], send_errno[FP_NERRNO];
    uint64_t reply_too_large;
} fp_stats;

static inline int fp_stat_index(uint32_t s) {
    for (int i = 0; i < FP_NSTAT - 1; i++) if (fp_stat_values[i] == s) return i;
    return FP_NSTAT - 1;
}

/* RPC and queue times (rpcsrv.svc.metrics.RPC_BUCKETS): the index of the first bound >= v
 * (FP_HBUCKETS - 1: +Inf) */
static inline int fp_rpc_bucket(uint64_t v_ns) {
    int i = 0;
    while (i < FP_HBUCKETS - 1 && v_ns > fp_rpc_bounds_ns[i]) i++;
    return i;
}

/* svc_alloc_arg's bounds are in tenths of a nanosecond (12.5 ns is 125): fp_alloc_bounds_dns,
 * generated from rpcsrv.svc.metrics.ALLOC_BOUNDS_DNS */
/* the index of the first bound >= v (FP_ABUCKETS - 1: +Inf), by bisection */
static inline int fp_alloc_bucket(uint64_t v_ns) {
    uint64_t v = v_ns > UINT64_MAX / 10 ? UINT64_MAX : v_ns * 10;
    int lo = 0, hi = FP_ABUCKETS - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (fp_alloc_bounds_dns[mid] >= v) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* pages and slots per svc_alloc_arg call (rpcsrv.svc.metrics.PAGE_BUCKETS) */
static inline int fp_page_bucket(uint64_t pages) {
    for (int i = 0; i < FP_PBUCKETS - 1; i++) if (pages <= fp_page_bounds[i]) return i;
    return FP_PBUCKETS - 1;
}

static inline uint64_t fp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
