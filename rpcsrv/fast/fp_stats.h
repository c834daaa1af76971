/* The fast path's counters: one block per worker thread, written by that thread alone with plain
 * increments, read whole at scrape time by rpcsrv.svc.metrics (habit 7: the hot path counts, the
 * scrape exposes). A reader may see a block mid-update (one counter ahead of another); every
 * counter itself is a naturally aligned 64-bit word, read in one piece. */
#ifndef NFSBULK_FP_STATS_H
#define NFSBULK_FP_STATS_H

#include <stdint.h>

#define FP_NPROC 22                  /* NFSPROC3 0..21 */
#define FP_NSTAT 30                  /* nfsstat3 values, densely numbered by fp_stat_index */
#define FP_HBUCKETS 21               /* 20 doubling buckets and +Inf */
#define FP_PBUCKETS 14               /* svc_alloc_arg pages and slots: 0 1 2 4 ... 1024 2048 and +Inf */
#define FP_NERRNO 134

typedef struct {
    uint64_t requests[FP_NPROC][FP_NSTAT];
    uint64_t dur[FP_NPROC][FP_HBUCKETS];     /* per bucket, not cumulative */
    uint64_t dur_sum_ns[FP_NPROC];
    uint64_t fallbacks[FP_NPROC + 1];        /* [FP_NPROC]: not an NFSv3 call */
    uint64_t alloc[FP_HBUCKETS];
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
