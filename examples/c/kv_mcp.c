/* Key-value MCP in C, for a ccsd listener with framing = "memcache": a subset of memcached's
 * text protocol on one in-memory map shared by every connection.
 *   cc -o kv_mcp examples/c/kv_mcp.c $(pkg-config --cflags --libs ccsd_mcp)
 *   ./kv_mcp ccsd.toml
 * Commands (one per packet, as ccsd's memcache framing cuts them):
 *   set <key> <flags> <exptime> <bytes>   STORED (flags and exptime are ignored: nothing expires)
 *   get <key>                             VALUE <key> 0 <bytes> + data, END
 *   delete <key>                          DELETED or NOT_FOUND
 *   quit                                  closes the connection once earlier replies are written
 *   drop                                  closes the connection now (CCSD_MCP_CLOSE_FORCE)
 * anything else gets ERROR. Each disconnect notice is logged with its reason. */
#include <ccsd_mcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096
#define MAX_KEY 250

struct entry {
    struct entry *next;
    char key[MAX_KEY + 1];
    size_t len;
    char *value;
};

static struct entry *table[BUCKETS];

static struct entry **slot(const char *key) {
    unsigned long h = 5381;
    for (const char *p = key; *p; p++) h = h * 33 + (unsigned char)*p;
    struct entry **e = &table[h % BUCKETS];
    while (*e && strcmp((*e)->key, key) != 0) e = &(*e)->next;
    return e;
}

/* Answers one command; returns the close mode to request after the reply, -1 for none, -2 when
 * the reply failed. */
static int handle(ccsd_mcp *mcp, const ccsd_mcp_record *req, char *out, size_t cap) {
    const char *p = (const char *)req->payload, *end = p + req->payload_len;
    const char *eol = memchr(p, '\n', req->payload_len);
    char line[512], cmd[16], key[MAX_KEY + 2];
    size_t n = eol ? (size_t)(eol - p) : req->payload_len, bytes = 0, len = 0;
    if (n > 0 && p[n - 1] == '\r') n--;
    if (n >= sizeof line) n = sizeof line - 1;
    memcpy(line, p, n);
    line[n] = 0;
    int words = sscanf(line, "%15s %251s %*u %*d %zu", cmd, key, &bytes);
    if (words >= 2 && strlen(key) > MAX_KEY) {
        len = (size_t)snprintf(out, cap, "CLIENT_ERROR key too long\r\n");
    } else if (words == 3 && strcmp(cmd, "set") == 0 && eol && (size_t)(end - eol - 1) >= bytes) {
        struct entry **e = slot(key);
        if (!*e) {
            *e = calloc(1, sizeof **e);
            if (!*e) return CCSD_MCP_CLOSE_FORCE;
            strcpy((*e)->key, key);
        }
        char *value = malloc(bytes ? bytes : 1);
        if (!value) return CCSD_MCP_CLOSE_FORCE;
        memcpy(value, eol + 1, bytes);
        free((*e)->value);
        (*e)->value = value;
        (*e)->len = bytes;
        len = (size_t)snprintf(out, cap, "STORED\r\n");
    } else if (words == 2 && strcmp(cmd, "get") == 0) {
        struct entry *e = *slot(key);
        if (e && e->len + MAX_KEY + 64 <= cap) {
            len = (size_t)snprintf(out, cap, "VALUE %s 0 %zu\r\n", key, e->len);
            memcpy(out + len, e->value, e->len);
            len += e->len;
            len += (size_t)snprintf(out + len, cap - len, "\r\n");
        }
        len += (size_t)snprintf(out + len, cap - len, "END\r\n");
    } else if (words == 2 && strcmp(cmd, "delete") == 0) {
        struct entry **e = slot(key), *gone = *e;
        if (gone) {
            *e = gone->next;
            free(gone->value);
            free(gone);
        }
        len = (size_t)snprintf(out, cap, gone ? "DELETED\r\n" : "NOT_FOUND\r\n");
    } else if (words == 1 && strcmp(cmd, "quit") == 0) {
        return CCSD_MCP_CLOSE_AFTER_FLUSH;
    } else if (words == 1 && strcmp(cmd, "drop") == 0) {
        return CCSD_MCP_CLOSE_FORCE;
    } else {
        len = (size_t)snprintf(out, cap, "ERROR\r\n");
    }
    return ccsd_mcp_reply(mcp, req, out, len) == CCSD_MCP_OK ? -1 : -2;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SETTINGS.toml\n", argv[0]);
        return 2;
    }
    ccsd_mcp *mcp;
    if (ccsd_mcp_attach(argv[1], -1, &mcp) != CCSD_MCP_OK) {
        fprintf(stderr, "c_kv_mcp: %s\n", ccsd_mcp_last_error());
        return 2;
    }
    fprintf(stderr, "c_kv_mcp attached: %u request lanes\n", ccsd_mcp_request_lanes(mcp));
    static char out[1 << 20];
    ccsd_mcp_record req;
    int rc;
    while ((rc = ccsd_mcp_recv(mcp, &req, -1)) >= 0) {
        if (req.kind == CCSD_MCP_DISCONNECT) {
            fprintf(stderr, "c_kv_mcp: disconnect flow %016llx reason %u\n",
                    (unsigned long long)req.flow, req.code);
        } else if (req.kind == CCSD_MCP_DATA) {
            int close = handle(mcp, &req, out, sizeof out);
            if (close == -2) break;
            if (close >= 0 && (rc = ccsd_mcp_close(mcp, req.flow, close)) != CCSD_MCP_OK) break;
        }
    }
    fprintf(stderr, "c_kv_mcp: %s (%s)\n", ccsd_mcp_last_error(), ccsd_mcp_strerror(rc));
    ccsd_mcp_detach(mcp);
    return 1;
}
