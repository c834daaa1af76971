/* fp_process: decodes a call and runs its procedure (fp_ops.h, fp_dirops.h, fp_readdir.h). The
 * header _fast_decl.pxi declares the C parts from: every fp_*.h but fp_stats.h (the counters, a
 * header of its own) is included through it. */
#ifndef NFSBULK_FP_PROCESS_H
#define NFSBULK_FP_PROCESS_H

#include "fp_dirops.h"
#include "fp_readdir.h"

/* Decode the call held in q's pages and serve it if it is one of ours: FP_SERVED (the reply is in
 * the pages from reply_slot, or there is nothing to send) or FP_FALLBACK (nothing done). */
static int fp_process(fp_req *q) {
    xr_t r;
    int rc;
    if (fp_parse_call(q->rec, q->head_len, &q->call) != 0) return FP_FALLBACK;
    if (q->call.prog != 100003 || q->call.vers != 3) return FP_FALLBACK;
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
    /* the read procedures run in a containment transaction (fp_proof.h); the others prove their
     * handles after applying the queued events */
    q->reading = q->call.proc == 1 || q->call.proc == 3 || q->call.proc == 4 || q->call.proc == 6 ||
                 q->call.proc == 17 || q->call.proc == 18 || q->call.proc == 19;
    if (q->reading) fp_txn_begin(q->pf, &q->txn);
    switch (q->call.proc) {
    case 0:
        if (q->rec_len != q->call.args) return FP_FALLBACK;
        xw_success(&q->w, q->call.xid);
        q->status = NFS3_OK;
        return FP_SERVED;
    case 1: rc = fp_getattr(q, &r); break;
    case 2: return fp_setattr(q, &r);
    case 3: rc = fp_lookup(q, &r); break;
    case 4: rc = fp_access_proc(q, &r); break;
    case 6: rc = fp_read(q, &r); break;
    case 7: return fp_write(q, &r);
    case 8: return fp_create(q, &r);
    case 12: return fp_remove(q, &r);
    case 17: rc = fp_readdirplus(q, &r); break;
    case 18: case 19: rc = fp_fsquery(q, &r, (int)q->call.proc); break;
    case 21: return fp_commit(q, &r);
    default: return FP_FALLBACK;
    }
    /* a read whose proofs did not hold until now (a local rename raced it): the Python path runs
     * it again (its reply pages are rewritten) */
    if (rc == FP_SERVED && !fp_pf_held(q->pf, &q->txn)) return FP_FALLBACK;
    return rc;
}

#endif
