/* Calls every function of ccsd_mcp.h, linked against the static library, against a real ccsd:
 * null pointers and bad arguments are refused with CCSD_MCP_E_INVALID and a message, a second
 * attach is refused, and the event-loop API (wait descriptor, prepare_wait) wakes on a request,
 * which is answered with a pushed record, a reply and a close after flush; then a custom record
 * closes every connection of the listener a second client came through.
 *   api_check DIR NAME      (queues.dir and queues.name of a running ccsd) */
#define _POSIX_C_SOURCE 200809L
#include <ccsd_mcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "api_check: line %d: %s failed (%s)\n", __LINE__, #cond,      \
                    ccsd_mcp_last_error());                                              \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

int main(int argc, char **argv) {
    CHECK(argc == 3);
    ccsd_mcp_record rec;
    memset(&rec, 0, sizeof rec);
    ccsd_mcp *mcp = NULL;
    /* Null pointers. */
    CHECK(ccsd_mcp_attach("x.toml", 0, NULL) == CCSD_MCP_E_INVALID);
    CHECK(strstr(ccsd_mcp_last_error(), "null") != NULL);
    CHECK(ccsd_mcp_attach_dir(NULL, "x", 0, &mcp) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_attach_dir(argv[1], NULL, 0, &mcp) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_recv(NULL, &rec, 0) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_reply(NULL, &rec, "x", 1) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_close(NULL, 1, CCSD_MCP_CLOSE_FORCE) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_send(NULL, &rec) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_flush(NULL) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_commit(NULL) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_set_delivery(NULL, CCSD_MCP_AT_LEAST_ONCE) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_wait_fd(NULL) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_prepare_wait(NULL) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_request_lanes(NULL) == 0 && ccsd_mcp_epoch(NULL) == 0);
    ccsd_mcp_detach(NULL);
    for (int code = CCSD_MCP_OK; code >= CCSD_MCP_E_INTERNAL; code--)
        CHECK(strlen(ccsd_mcp_strerror(code)) > 0);
    /* Settings and names that cannot work. */
    CHECK(ccsd_mcp_attach("/nonexistent/ccsd.toml", 0, &mcp) == CCSD_MCP_E_SETTINGS);
    CHECK(ccsd_mcp_attach_dir(argv[1], "a/b", 0, &mcp) == CCSD_MCP_E_INVALID);
    char missing[512];
    snprintf(missing, sizeof missing, "%s.missing", argv[2]);
    CHECK(ccsd_mcp_attach_dir(argv[1], missing, 0, &mcp) == CCSD_MCP_E_NOT_READY);
    /* The real lanes, once; a second handle is refused. */
    CHECK(ccsd_mcp_attach_dir(argv[1], argv[2], 5000, &mcp) == CCSD_MCP_OK);
    ccsd_mcp *second = NULL;
    CHECK(ccsd_mcp_attach_dir(argv[1], argv[2], 0, &second) == CCSD_MCP_E_BUSY);
    CHECK(strstr(ccsd_mcp_last_error(), "another MCP") != NULL);
    CHECK(ccsd_mcp_request_lanes(mcp) == 2 && ccsd_mcp_epoch(mcp) > 0);
    CHECK(ccsd_mcp_recv(mcp, NULL, 0) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_set_delivery(mcp, 7) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_set_delivery(mcp, CCSD_MCP_AT_LEAST_ONCE) == CCSD_MCP_OK);
    CHECK(ccsd_mcp_close(mcp, 1, 9) == CCSD_MCP_E_INVALID);
    CHECK(ccsd_mcp_reply(mcp, &rec, NULL, 1) == CCSD_MCP_E_INVALID);
    /* Sleep in our own poll until a client sends a packet. */
    int fd = ccsd_mcp_wait_fd(mcp);
    CHECK(fd >= 0 && ccsd_mcp_wait_fd(mcp) == fd);
    CHECK(ccsd_mcp_prepare_wait(mcp) == 1);
    fprintf(stderr, "api_check waiting\n");
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 20000) == 1);
    CHECK(ccsd_mcp_recv(mcp, &rec, 0) == 1 && rec.kind == CCSD_MCP_DATA);
    CHECK(rec.transport == CCSD_MCP_TRANSPORT_TCP && rec.peer_addr[10] == 0xff);
    CHECK(rec.payload_len == 6 && memcmp(rec.payload + 4, "hi", 2) == 0);
    /* Answer: a record sent as is (the server-push path), a reply, then close after flush. */
    ccsd_mcp_record push = rec;
    push.kind = 9;
    CHECK(ccsd_mcp_send(mcp, &push) == CCSD_MCP_E_INVALID);
    push.kind = CCSD_MCP_DATA;
    push.payload = (const uint8_t *)"pushed ";
    push.payload_len = 7;
    CHECK(ccsd_mcp_send(mcp, &push) == CCSD_MCP_OK);
    CHECK(ccsd_mcp_reply(mcp, &rec, "reply", 5) == CCSD_MCP_OK);
    CHECK(ccsd_mcp_commit(mcp) == CCSD_MCP_OK);
    CHECK(ccsd_mcp_close(mcp, rec.flow, CCSD_MCP_CLOSE_AFTER_FLUSH) == CCSD_MCP_OK);
    CHECK(ccsd_mcp_flush(mcp) == CCSD_MCP_OK);
    int got;
    while ((got = ccsd_mcp_recv(mcp, &rec, 10000)) == 1 && rec.kind != CCSD_MCP_DISCONNECT) {
    }
    CHECK(got == 1);
    fprintf(stderr, "api_check disconnect reason %u\n", rec.code);
    /* A custom record: close every connection of the listener a second client comes through. */
    while ((got = ccsd_mcp_recv(mcp, &rec, 10000)) == 1 && rec.kind != CCSD_MCP_DATA) {
    }
    CHECK(got == 1);
    ccsd_mcp_record custom;
    memset(&custom, 0, sizeof custom);
    custom.kind = CCSD_MCP_CUSTOM;
    custom.code = CCSD_MCP_OP_CLOSE_PORT_NOW;
    custom.listen_port = rec.listen_port;
    custom.transport = CCSD_MCP_TRANSPORT_NONE;
    CHECK(ccsd_mcp_send(mcp, &custom) == CCSD_MCP_OK);
    while ((got = ccsd_mcp_recv(mcp, &rec, 10000)) == 1 && rec.kind != CCSD_MCP_DISCONNECT) {
    }
    CHECK(got == 1);
    fprintf(stderr, "api_check port closed, reason %u\n", rec.code);
    ccsd_mcp_detach(mcp);
    fprintf(stderr, "api_check done\n");
    return 0;
}
