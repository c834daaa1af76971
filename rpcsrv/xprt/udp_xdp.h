/*
 * udp_xdp.h: the XDP-like verdict on one RPC-over-UDP datagram (rpcsrv/xprt/_udpfast.pyx).
 *
 * The compiled receive loop asks, per datagram, whether it can answer the
 * call itself. It answers only what it can answer exactly as the Python
 * request core (rpcsrv/svc/svc.py) would, byte for byte:
 *
 *   an NFS version 3 NULL call (program 100003, version 3, procedure 0)
 *   with an RPC version 2 CALL header, an AUTH_NONE credential with an
 *   empty body and an AUTH_NONE verifier with an empty body, received
 *   whole and exactly 40 bytes long: NULL takes no arguments, and the
 *   Python path answers GARBAGE_ARGS to a call with bytes left over after
 *   its arguments, so a NULL with trailing bytes is passed.
 *   The reply is the accepted-SUCCESS header with an AUTH_NONE verifier:
 *   xid, REPLY, MSG_ACCEPTED, AUTH_NONE, 0, SUCCESS (24 bytes).
 *
 * Everything else (other procedures, AUTH_SYS credentials, malformed or
 * short headers, cut datagrams) is XDP_PASS: the Python path decides, with
 * its error accounting, as it does without the compiled loop. The verdict
 * is pure: it reads the datagram and writes only the reply buffer.
 */
#ifndef NFSBULK_UDP_XDP_H
#define NFSBULK_UDP_XDP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define UX_PASS 0               /* hand the datagram to the Python path */
#define UX_NULL 1               /* an NFSv3 NULL call the loop can answer (or drop) */

#define UX_NULL_REPLY_LEN 24
#define UX_HEADER_LEN 40        /* xid .. verf_len with empty credential and verifier bodies */

static inline uint32_t ux_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* d: the datagram; len: its real length (recvmsg with MSG_TRUNC), cap: bytes held in d. */
static inline int ux_classify(const unsigned char *d, size_t len, size_t cap)
{
    if (len > cap || len != UX_HEADER_LEN)
        return UX_PASS;
    if (ux_be32(d + 4) != 0          /* msg_type CALL */
        || ux_be32(d + 8) != 2       /* rpcvers */
        || ux_be32(d + 12) != 100003 /* NFS */
        || ux_be32(d + 16) != 3      /* version 3 */
        || ux_be32(d + 20) != 0      /* NULL */
        || ux_be32(d + 24) != 0 || ux_be32(d + 28) != 0    /* AUTH_NONE, empty body */
        || ux_be32(d + 32) != 0 || ux_be32(d + 36) != 0)   /* AUTH_NONE verifier, empty */
        return UX_PASS;
    return UX_NULL;
}

/* The reply to a NULL call whose first 4 bytes (the xid) are at call; written to out (may be call). */
static inline size_t ux_null_reply(const unsigned char *call, unsigned char *out)
{
    static const unsigned char tail[20] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    memmove(out, call, 4);
    memcpy(out + 4, tail, sizeof(tail));
    return UX_NULL_REPLY_LEN;
}

#endif
