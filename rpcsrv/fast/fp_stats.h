/* The fast path's counters: one block per worker thread, written by that thread alone with plain
 * increments, read whole at scrape time by rpcsrv.svc.metrics (habit 7: the hot path counts, the
 * scrape exposes). A reader may see a block mid-update (one counter ahead of another); every
 * counter itself is a naturally aligned 64-bit word, read in one piece. */
#ifndef NFSBULK_FP_STATS_H
#define NFSBULK_FP_STATS_H

#include <stdint.h>
#include <time.h>

#define FP_NPROC 22                  /* NFSPROC3 0..21 */
#define FP_NSTAT 30                  /* nfsstat3 values, densely numbered by fp_stat_index */
#define FP_HBUCKETS 21               /* RPC and queue times: 20 doubling buckets and +Inf */
#define FP_ABUCKETS 142              /* svc_alloc_arg times: 141 R20 bounds (10 ns .. 100 ms) and +Inf */
#define FP_PBUCKETS 14               /* svc_alloc_arg pages and slots: 0 1 2 4 ... 1024 2048 and +Inf */
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

static const uint32_t fp_stat_values[FP_NSTAT] = {
    0, 1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71,
    10001, 10002, 10003, 10004, 10005, 10006, 10007, 10008, 0xFFFFFFFFu,
};

static inline int fp_stat_index(uint32_t s) {
    for (int i = 0; i < FP_NSTAT - 1; i++) if (fp_stat_values[i] == s) return i;
    return FP_NSTAT - 1;
}

/* doubling buckets from `first_ns`: the index of the first upper bound >= v */
static inline int fp_bucket(uint64_t v_ns, uint64_t first_ns) {
    int i = 0;
    uint64_t le = first_ns;
    while (i < FP_HBUCKETS - 1 && v_ns > le) { le <<= 1; i++; }
    return i;
}

/* svc_alloc_arg's bounds in tenths of a nanosecond (12.5 ns is 125): rpcsrv.svc.metrics.ALLOC_BOUNDS_DNS,
 * the same numbers (tests/fast/test_metrics_buckets.py holds them equal through fp_alloc_bucket) */
static const uint64_t fp_alloc_bounds_dns[FP_ABUCKETS - 1] = {
    100, 112, 125, 140, 160, 180, 200, 224, 250, 280,
    315, 355, 400, 450, 500, 560, 630, 710, 800, 900,
    1000, 1120, 1250, 1400, 1600, 1800, 2000, 2240, 2500, 2800,
    3150, 3550, 4000, 4500, 5000, 5600, 6300, 7100, 8000, 9000,
    10000, 11200, 12500, 14000, 16000, 18000, 20000, 22400, 25000, 28000,
    31500, 35500, 40000, 45000, 50000, 56000, 63000, 71000, 80000, 90000,
    100000, 112000, 125000, 140000, 160000, 180000, 200000, 224000, 250000, 280000,
    315000, 355000, 400000, 450000, 500000, 560000, 630000, 710000, 800000, 900000,
    1000000, 1120000, 1250000, 1400000, 1600000, 1800000, 2000000, 2240000, 2500000, 2800000,
    3150000, 3550000, 4000000, 4500000, 5000000, 5600000, 6300000, 7100000, 8000000, 9000000,
    10000000, 11200000, 12500000, 14000000, 16000000, 18000000, 20000000, 22400000, 25000000, 28000000,
    31500000, 35500000, 40000000, 45000000, 50000000, 56000000, 63000000, 71000000, 80000000, 90000000,
    100000000, 112000000, 125000000, 140000000, 160000000, 180000000, 200000000, 224000000, 250000000, 280000000,
    315000000, 355000000, 400000000, 450000000, 500000000, 560000000, 630000000, 710000000, 800000000, 900000000,
    1000000000,
};

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

static inline int fp_page_bucket(uint64_t pages) {
    static const uint64_t b[FP_PBUCKETS - 1] = {0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048};
    for (int i = 0; i < FP_PBUCKETS - 1; i++) if (pages <= b[i]) return i;
    return FP_PBUCKETS - 1;
}

static inline uint64_t fp_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
