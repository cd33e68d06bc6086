/*
 * ccsd_mcp.h — libccsd_mcp: the MCP side of ccsd's shared-memory lanes, for C and C++.
 *
 * An MCP attaches to the lanes a ccsd created (or will create), receives records (client
 * packets, connect and disconnect notices, custom records), and answers with replies, close
 * requests and custom records. docs/mcp.md shows a whole echo MCP and how to build against this
 * library; docs/protocol.md specifies the wire format this library implements.
 *
 *   cc my_mcp.c $(pkg-config --cflags --libs ccsd_mcp)
 *
 * Errors: every function that can fail returns an int: >= 0 on success, a negative
 * CCSD_MCP_E_* code on failure. ccsd_mcp_last_error() then describes the failure in words.
 *
 * Threads: a ccsd_mcp handle is not thread-safe. Use it from one thread at a time (it may move
 * between threads when the caller synchronises the hand-over). A program that answers on worker
 * threads passes the answers back to the thread that owns the handle, or serialises every call
 * on the handle with a mutex of its own. ccsd_mcp_last_error() is per thread. Only one handle per set of lanes can exist
 * at a time in the whole system (the MCP lock, {dir}/{name}.mcp.lock): a second attach, in this
 * process or another, fails with CCSD_MCP_E_BUSY.
 *
 * Signals: the library installs no signal handler, and a ccsd_mcp_recv() that waits forever
 * goes on waiting after a signal: to stop on a flag your handler sets, receive with a timeout
 * (say 200 ms) and look at the flag between calls.
 *
 * Memory: the library allocates once per handle (its buffers grow to the largest record seen);
 * nothing on the receive/reply path allocates per record.
 */
#ifndef CCSD_MCP_H
#define CCSD_MCP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define CCSD_MCP_OK 0
#define CCSD_MCP_E_INVALID (-1)   /* a null pointer or an argument out of range */
#define CCSD_MCP_E_NOT_READY (-2) /* ccsd has not created the lanes within the timeout */
#define CCSD_MCP_E_BUSY (-3)      /* another MCP consumes these lanes (holds the MCP lock) */
#define CCSD_MCP_E_LANE (-4)      /* a lane or the lock file exists but cannot be used */
#define CCSD_MCP_E_TOO_LARGE (-5) /* a record larger than the response lane can carry */
#define CCSD_MCP_E_IO (-6)        /* a system call failed */
#define CCSD_MCP_E_SETTINGS (-7)  /* the settings file is unreadable or invalid */
#define CCSD_MCP_E_INTERNAL (-8)  /* a bug in the library; detach the handle */

/* ccsd_mcp_record.kind */
#define CCSD_MCP_DATA 1       /* ccsd -> MCP: a client packet; MCP -> ccsd: bytes for the client */
#define CCSD_MCP_CONNECT 2    /* ccsd -> MCP: a connection opened (if enabled) */
#define CCSD_MCP_DISCONNECT 3 /* ccsd -> MCP: a connection closed; code = CCSD_MCP_REASON_* */
#define CCSD_MCP_CLOSE 4      /* MCP -> ccsd: close a connection; code = CCSD_MCP_CLOSE_* */
#define CCSD_MCP_CUSTOM 5     /* either way: code = CCSD_MCP_OP_* or the application's */

/* ccsd_mcp_record.transport */
#define CCSD_MCP_TRANSPORT_NONE 0
#define CCSD_MCP_TRANSPORT_TCP 1
#define CCSD_MCP_TRANSPORT_UDP 2

/* ccsd_mcp_record.code of a CCSD_MCP_DISCONNECT record */
#define CCSD_MCP_REASON_PEER_CLOSED 1
#define CCSD_MCP_REASON_ERROR 2
#define CCSD_MCP_REASON_TIMEOUT 3
#define CCSD_MCP_REASON_OVERLOAD 4
#define CCSD_MCP_REASON_LOCAL 5
#define CCSD_MCP_REASON_PROTOCOL 6
#define CCSD_MCP_REASON_SHUTDOWN 7

/* mode of ccsd_mcp_close() */
#define CCSD_MCP_CLOSE_AFTER_FLUSH 0 /* close once the replies queued before it are written */
#define CCSD_MCP_CLOSE_FORCE 1       /* close now, dropping replies not yet written */

/* code of a CCSD_MCP_CUSTOM record MCP sends (0 and 128..255 are the application's) */
#define CCSD_MCP_OP_CLOSE_PORT 1     /* close every connection of listen_port after its replies */
#define CCSD_MCP_OP_CLOSE_PORT_NOW 2 /* close every connection of listen_port now */
#define CCSD_MCP_OP_BROADCAST 3      /* write the payload to every connection of listen_port */

/* ccsd_mcp_set_delivery() */
#define CCSD_MCP_AT_MOST_ONCE 0  /* default: a request taken is gone, even if MCP dies now */
#define CCSD_MCP_AT_LEAST_ONCE 1 /* a request is released only once its replies are published */

/* An attached endpoint. */
typedef struct ccsd_mcp ccsd_mcp;

/*
 * One record: its header fields and payload. 72 bytes on 64-bit targets.
 * A received record's payload points into the handle's buffer (CCSD_MCP_AT_MOST_ONCE: copied
 * once out of the lane) or into the lane itself (CCSD_MCP_AT_LEAST_ONCE: not copied; the request
 * stays in the lane until it is answered anyway). Either way it is valid until the next
 * ccsd_mcp_recv(), ccsd_mcp_commit(), ccsd_mcp_set_delivery() or ccsd_mcp_detach() on that
 * handle; read it, never write it. Integers are in host order (the library converts from the
 * little-endian wire format).
 */
typedef struct ccsd_mcp_record {
    uint64_t flow;           /* the connection; replies are routed by it alone */
    uint64_t timestamp_ns;   /* CLOCK_MONOTONIC when the record was written */
    uint64_t echo[2];        /* set by ccsd in a request; a reply carries them back */
    const uint8_t *payload;  /* for DATA from ccsd: the whole client packet, framing included */
    uint32_t payload_len;
    uint16_t listen_port;    /* local port of the listener the client came through */
    uint16_t peer_port;      /* the client's port */
    uint8_t peer_addr[16];   /* the client's IPv6 address; IPv4 as ::ffff:a.b.c.d */
    uint8_t kind;            /* CCSD_MCP_DATA ... CCSD_MCP_CUSTOM */
    uint8_t code;            /* reason, close mode or custom operation, by kind */
    uint8_t transport;       /* CCSD_MCP_TRANSPORT_* */
    uint8_t reserved[5];     /* zero */
} ccsd_mcp_record;

/*
 * Attaches to the lanes the ccsd settings file names ([queues] dir, name, capacity; CCSD_*
 * environment overrides apply as they do for ccsd; NULL: the built-in defaults). While ccsd has
 * not created the lanes, retries for up to timeout_ms (negative: forever; 0: once). Also applies
 * broker.idle_spin. On success stores the handle in *out and returns CCSD_MCP_OK.
 * Fails with CCSD_MCP_E_BUSY while another MCP holds the lanes, CCSD_MCP_E_NOT_READY when the
 * lanes did not appear in time, CCSD_MCP_E_SETTINGS, CCSD_MCP_E_LANE, CCSD_MCP_E_IO.
 */
int ccsd_mcp_attach(const char *settings_file, int timeout_ms, ccsd_mcp **out);

/* Like ccsd_mcp_attach, for the lanes {dir}/{name}.* (queues.dir, queues.name), no settings file. */
int ccsd_mcp_attach_dir(const char *dir, const char *name, int timeout_ms, ccsd_mcp **out);

/* Publishes the replies queued, releases the MCP lock and frees the handle. NULL is ignored. */
void ccsd_mcp_detach(ccsd_mcp *mcp);

/*
 * Takes the next record from the request lanes into *rec: returns 1, or 0 when none came within
 * timeout_ms (0: do not wait; negative: wait until one comes), or a
 * negative code. Before it waits it publishes the replies queued so far. Invalid records are
 * skipped. The previous record's payload is invalid from here on.
 */
int ccsd_mcp_recv(ccsd_mcp *mcp, ccsd_mcp_record *rec, int timeout_ms);

/*
 * Queues data for the client req came from (its flow, echo values, peer, port, transport are
 * copied; kind and code are ignored). A TCP reply longer than 16 KiB is queued as several records
 * that ccsd writes back to back; a UDP reply is one datagram (CCSD_MCP_E_TOO_LARGE if it cannot
 * fit a record). An empty reply queues nothing. Waits (sleeping, 50 us doubling to 20 ms) while
 * the response lane is full, so nothing is lost. Queued replies are published at the next
 * ccsd_mcp_recv() that finds no request waiting, before it sleeps, every 16 records, or at
 * ccsd_mcp_flush().
 */
int ccsd_mcp_reply(ccsd_mcp *mcp, const ccsd_mcp_record *req, const void *data, size_t len);

/* Queues a request to close the connection flow (mode: CCSD_MCP_CLOSE_*); waits for room. */
int ccsd_mcp_close(ccsd_mcp *mcp, uint64_t flow, int mode);

/*
 * Queues any record (a custom record, a reply to a stored flow — server push): rec->kind, code,
 * flow, echo, peer, listen_port, transport, and payload_len bytes at rec->payload (may be NULL
 * when payload_len is 0). CCSD_MCP_E_INVALID for an unknown kind or transport. Waits for room.
 */
int ccsd_mcp_send(ccsd_mcp *mcp, const ccsd_mcp_record *rec);

/* Makes the queued records visible to ccsd now and wakes it if it sleeps. */
int ccsd_mcp_flush(ccsd_mcp *mcp);

/*
 * Chooses what becomes of a request taken but not answered when this MCP dies
 * (docs/protocol.md, "Delivery guarantees"): CCSD_MCP_AT_MOST_ONCE (default: it is lost) or
 * CCSD_MCP_AT_LEAST_ONCE (the next MCP receives it again; a request counts as answered when the
 * next ccsd_mcp_recv() is called or at ccsd_mcp_commit(), and is released once the replies queued
 * for it are published). An MCP that answers a request after taking the next one (worker threads,
 * asynchronous work) calls ccsd_mcp_commit() only when every request taken so far is answered.
 */
int ccsd_mcp_set_delivery(ccsd_mcp *mcp, int delivery);

/* At least once: declares every request taken so far answered, publishes, then releases them. */
int ccsd_mcp_commit(ccsd_mcp *mcp);

/*
 * For an MCP with its own event loop (poll, epoll, libevent...): a descriptor that becomes
 * readable when records arrive after ccsd_mcp_prepare_wait() returned 1. Owned by the handle
 * (do not close it); the same descriptor for the handle's life.
 * The loop:  while ((r = ccsd_mcp_recv(mcp, &rec, 0)) == 1) handle(&rec);
 *            if (ccsd_mcp_prepare_wait(mcp) == 1) poll on the descriptor (and yours);
 */
int ccsd_mcp_wait_fd(ccsd_mcp *mcp);

/*
 * Publishes queued replies and announces a sleep: returns 1 when the caller may sleep on
 * ccsd_mcp_wait_fd() (ccsd writes a wake-up byte when it publishes), 0 when records are already
 * waiting (receive them instead). The next ccsd_mcp_recv() ends the sleep.
 */
int ccsd_mcp_prepare_wait(ccsd_mcp *mcp);

/* The number of request lanes (ccsd's workers plus its main thread); 0 for NULL. */
unsigned ccsd_mcp_request_lanes(const ccsd_mcp *mcp);

/* The epoch of the ccsd start that wrote the lanes (its low 16 bits are in every flow id). */
uint64_t ccsd_mcp_epoch(const ccsd_mcp *mcp);

/* The message of the last failed call on this thread ("" before any); valid until the next. */
const char *ccsd_mcp_last_error(void);

/* A static description of a CCSD_MCP_E_* code. */
const char *ccsd_mcp_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* CCSD_MCP_H */
