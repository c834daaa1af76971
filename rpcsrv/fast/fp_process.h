/* fp_process: decodes a call and runs its procedure (fp_ops.h, fp_dirops.h, fp_readdir.h). The
 * header _fast_decl.pxi declares the C parts from: every fp_*.h but fp_stats.h (the counters, a
 * header of its own) is included through it. */
#ifndef NFSBULK_FP_PROCESS_H
#define NFSBULK_FP_PROCESS_H

#include "fp_dirops.h"
#include "fp_readdir.h"

/* NULL: no arguments, nothing to do */
static int fp_null(fp_req *q, xr_t *r) {
    (void)r;
    if (q->rec_len != q->call.args) return FP_FALLBACK;
    xw_success(&q->w, q->call.xid);
    q->status = NFS3_OK;
    return FP_SERVED;
}

static int fp_fsstat(fp_req *q, xr_t *r) { return fp_fsquery(q, r, NFSPROC3_FSSTAT); }
static int fp_fsinfo(fp_req *q, xr_t *r) { return fp_fsquery(q, r, NFSPROC3_FSINFO); }

/* The C function of each procedure the fast path has one for. Which of them serve is fp_procs'
 * in_c (fp_tables.h, from rpcsrv.fast.gen_tables.SERVED_IN_C); a procedure without a function
 * here falls back whatever the table says (_fast.tables() shows the difference). */
typedef int (*fp_proc_fn)(fp_req *q, xr_t *r);
static const fp_proc_fn fp_proc_fns[FP_NPROC] = {
    [NFSPROC3_NULL] = fp_null,
    [NFSPROC3_GETATTR] = fp_getattr,
    [NFSPROC3_SETATTR] = fp_setattr,
    [NFSPROC3_LOOKUP] = fp_lookup,
    [NFSPROC3_ACCESS] = fp_access_proc,
    [NFSPROC3_READ] = fp_read,
    [NFSPROC3_WRITE] = fp_write,
    [NFSPROC3_CREATE] = fp_create,
    [NFSPROC3_REMOVE] = fp_remove,
    [NFSPROC3_READDIRPLUS] = fp_readdirplus,
    [NFSPROC3_FSSTAT] = fp_fsstat,
    [NFSPROC3_FSINFO] = fp_fsinfo,
    [NFSPROC3_COMMIT] = fp_commit,
};

/* The function that serves `proc` in C, or NULL (the Python path answers it). */
static inline fp_proc_fn fp_proc_served(uint32_t proc) {
    return proc < FP_NPROC && fp_procs[proc].in_c ? fp_proc_fns[proc] : NULL;
}

/* 1: fp_proc_fns has a function for `proc` (_fast.tables() reports in_c as the table's flag and this) */
static inline int fp_proc_has_fn(uint32_t proc) { return proc < FP_NPROC && fp_proc_fns[proc] != NULL; }

/* Decode the call held in q's pages and serve it if it is one of ours: FP_SERVED (the reply is in
 * the pages from reply_slot, or there is nothing to send) or FP_FALLBACK (nothing done). */
static int fp_process(fp_req *q) {
    xr_t r;
    int rc;
    fp_proc_fn fn;
    if (fp_parse_call(q->rec, q->head_len, &q->call) != 0) return FP_FALLBACK;
    if (q->call.prog != FP_NFS_PROGRAM || q->call.vers != FP_NFS_V3) return FP_FALLBACK;
    fp_who_from(&q->who, q->conf, q->call.have_cred, q->call.uid, q->call.gid, q->call.gids,
                (int)q->call.ngids);
    r.p = q->rec;
    r.len = q->head_len;
    r.pos = q->call.args;
    r.bad = 0;
    q->payload = 0;
    q->send = q->counted = 1;
    q->drc_state = -1;
    q->read_bytes = q->write_bytes = 0;
    fn = fp_proc_served(q->call.proc);
    /* the read procedures (fp_procs' reads) run in a containment transaction (fp_proof.h); the
     * others prove their handles after applying the queued events */
    q->reading = fn != NULL && fp_procs[q->call.proc].reads;
    if (q->reading) fp_txn_begin(q->pf, &q->txn);
    if (fn == NULL) return FP_FALLBACK;
    rc = fn(q, &r);
    /* a read whose proofs did not hold until now (a local rename raced it): the Python path runs
     * it again (its reply pages are rewritten) */
    if (q->reading && rc == FP_SERVED && !fp_pf_held(q->pf, &q->txn)) return FP_FALLBACK;
    return rc;
}

#endif
