/* Echo MCP in C: answers every client packet with the same bytes, to the same connection.
 *   cc -o echo_mcp examples/c/echo_mcp.c $(pkg-config --cflags --libs ccsd_mcp)
 *   ./echo_mcp ccsd.toml [at-least-once]
 * It reads ccsd's settings file to find the lanes, waits for ccsd to create them, and keeps
 * serving across ccsd restarts (the lanes survive them). */
#include <ccsd_mcp.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SETTINGS.toml [at-least-once]\n", argv[0]);
        return 2;
    }
    ccsd_mcp *mcp;
    if (ccsd_mcp_attach(argv[1], -1, &mcp) != CCSD_MCP_OK) {
        fprintf(stderr, "c_echo_mcp: %s\n", ccsd_mcp_last_error());
        return 2;
    }
    if (argc == 3 && strcmp(argv[2], "at-least-once") == 0)
        ccsd_mcp_set_delivery(mcp, CCSD_MCP_AT_LEAST_ONCE);
    fprintf(stderr, "c_echo_mcp attached: %u request lanes\n", ccsd_mcp_request_lanes(mcp));
    ccsd_mcp_record req;
    while (ccsd_mcp_recv(mcp, &req, -1) >= 0) {
        if (req.kind == CCSD_MCP_DATA &&
            ccsd_mcp_reply(mcp, &req, req.payload, req.payload_len) != CCSD_MCP_OK)
            break;
    }
    fprintf(stderr, "c_echo_mcp: %s\n", ccsd_mcp_last_error());
    ccsd_mcp_detach(mcp);
    return 1;
}
